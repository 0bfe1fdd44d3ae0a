"""The admin API's access rules, in-process against a real PostgreSQL: who may call it (loopback only without a
token, the bearer token with one), read-only mode, cross-site writes, the security headers, a token check whose
time does not depend on the wrong token, bad input refused with a 4xx naming the field, and the settings that
refuse to serve the API off loopback without a token.

Every refused request is checked to have changed nothing: the pauses, cancellations, audit trail, dead-letter
queue and the jobs themselves are compared before and after.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from backfill.admin import AdminApi
from backfill.admin.params import MAX_BODY_BYTES, MAX_BULK
from backfill.admin.security import MIN_ADMIN_TOKEN_LENGTH, AccessPolicy, is_loopback
from backfill.client.async_client import BackfillClient
from backfill.core import ConfigurationError, SchemaName
from backfill.migrations import migrate_all
from backfill.settings import BackfillSettings

SCHEMA = SchemaName("graphile_worker")
TOKEN = "admin-token-0123456789abcdefghij"
WRONG_TOKEN = "wrong-token-9876543210zyxwvutsrq"
LOOPBACK_CLIENT = ("127.0.0.1", 123)
LOOPBACK_URL = "http://127.0.0.1"
JSON = {"content-type": "application/json"}
A_PAUSE = {"kind": "task", "name": "t"}


@dataclass(frozen=True)
class DatabaseState:
    """What an admin request could change: compared before and after a refused one."""

    pauses: int
    cancellations: int
    audit: int
    dead_letters: int
    jobs: list[str]


async def database_state(pool: asyncpg.Pool[Any]) -> DatabaseState:
    async def count(table: str) -> int:
        return int(await pool.fetchval(f"select count(*) from graphile_worker.{table}"))

    rows = await pool.fetch("select to_jsonb(j)::text as job from graphile_worker._private_jobs j order by id")
    return DatabaseState(
        pauses=await count("backfill_pauses"),
        cancellations=await count("backfill_cancellations"),
        audit=await count("backfill_audit"),
        dead_letters=await count("backfill_dlq"),
        jobs=[str(row["job"]) for row in rows],
    )


@pytest.fixture
async def migrated(database_url: str, pool: asyncpg.Pool[Any]) -> str:
    await migrate_all(pool, SCHEMA)
    return database_url


@pytest.fixture
async def job_ids(migrated: str, pool: asyncpg.Pool[Any]) -> list[int]:
    client = BackfillClient(pool)
    return [(await client.enqueue_bulk("admin.sample", {"n": n})).id for n in range(3)]


@asynccontextmanager
async def admin_client(
    database_url: str,
    *,
    token: str | None = None,
    read_only: bool = False,
    client: tuple[str, int] = LOOPBACK_CLIENT,
    base_url: str = LOOPBACK_URL,
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client calling an :class:`AdminApi` in this process, as ``client`` to the Host of ``base_url``."""
    api = AdminApi(database_url, token=token, read_only=read_only)
    try:
        transport = httpx.ASGITransport(app=api, client=client)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
            yield http
    finally:
        await api.close()


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), response.text
    error: dict[str, Any] = body["error"]
    assert error["status"] == response.status_code, response.text
    return error


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# --- who may call it ------------------------------------------------------------------------------------------


async def test_without_a_token_only_loopback_clients_naming_a_loopback_host_are_answered(
    migrated: str, pool: asyncpg.Pool[Any]
) -> None:
    before = await database_state(pool)
    async with admin_client(migrated) as http:
        answered = await http.get("/api/pauses")
    assert answered.status_code == 200, answered.text
    assert answered.json() == {"pauses": []}

    async with admin_client(migrated, client=("10.1.2.3", 5)) as http:
        remote = await http.get("/api/pauses")
        remote_write = await http.post("/api/pauses", json=A_PAUSE)
    for refused in (remote, remote_write):
        assert refused.status_code == 403, refused.text
        assert "loopback" in error_of(refused)["message"]

    # DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 reaches us from loopback, but
    # its requests still carry its own name as the Host.
    async with admin_client(migrated, base_url="http://evil.example") as http:
        rebound = await http.get("/api/pauses")
        rebound_write = await http.post("/api/pauses", json=A_PAUSE)
    for refused in (rebound, rebound_write):
        assert refused.status_code == 403, refused.text
        assert "loopback" in error_of(refused)["message"]

    async with admin_client(migrated, client=("::1", 5), base_url="http://[::1]") as http:
        ipv6 = await http.get("/api/pauses")
    assert ipv6.status_code == 200, ipv6.text

    async with admin_client(migrated, base_url="http://localhost:8080") as http:
        by_name = await http.get("/api/pauses")
    assert by_name.status_code == 200, by_name.text

    assert await database_state(pool) == before


async def test_loopback_is_decided_by_address_not_by_a_prefix_of_the_name() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.8.9.10") and is_loopback("localhost")
    assert is_loopback("::1") and is_loopback("[::1]")
    assert not is_loopback("127.0.0.1.evil.example")
    assert not is_loopback("localhost.evil.example")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("::")
    assert not is_loopback("")


async def test_with_a_token_every_request_needs_it_from_anywhere(
    migrated: str, pool: asyncpg.Pool[Any], job_ids: list[int]
) -> None:
    before = await database_state(pool)
    async with admin_client(migrated, token=TOKEN) as http:
        missing = await http.get("/api/pauses")
        missing_write = await http.post("/api/pauses", json=A_PAUSE)
        wrong = await http.get("/api/pauses", headers=bearer(WRONG_TOKEN))
        wrong_write = await http.post("/api/pauses", json=A_PAUSE, headers=bearer(WRONG_TOKEN))
        wrong_delete = await http.delete(f"/api/jobs/{job_ids[0]}", headers={**JSON, **bearer(WRONG_TOKEN)})
        not_bearer = await http.get("/api/pauses", headers={"authorization": f"Basic {TOKEN}"})
        empty = await http.get("/api/pauses", headers={"authorization": "Bearer "})
        prefix = await http.get("/api/pauses", headers=bearer(TOKEN[:-1]))
    for refused in (missing, missing_write, wrong, wrong_write, wrong_delete, not_bearer, empty, prefix):
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "token" in error_of(refused)["message"]
        assert TOKEN not in refused.text and WRONG_TOKEN not in refused.text
        assert TOKEN not in str(refused.headers) and WRONG_TOKEN not in str(refused.headers)
    assert await database_state(pool) == before

    # The token is the proof: a client off loopback, with any Host, is answered.
    async with admin_client(migrated, token=TOKEN, client=("10.1.2.3", 5), base_url="http://evil.example") as http:
        read = await http.get("/api/pauses", headers=bearer(TOKEN))
        lower_scheme = await http.get("/api/jobs", headers={"authorization": f"bearer {TOKEN}"})
        written = await http.post("/api/pauses", json=A_PAUSE, headers=bearer(TOKEN))
    assert read.status_code == 200, read.text
    assert lower_scheme.status_code == 200, lower_scheme.text
    assert [job["id"] for job in lower_scheme.json()["jobs"]] == job_ids
    assert written.status_code == 200, written.text
    assert await pool.fetchval("select count(*) from graphile_worker.backfill_pauses") == 1
    who = await pool.fetchval("select actor from graphile_worker.backfill_audit")
    assert "token" in who and "10.1.2.3" in who
    assert TOKEN not in str(await pool.fetch("select * from graphile_worker.backfill_audit"))


async def test_a_short_token_is_refused_by_the_api_without_showing_it(migrated: str) -> None:
    short = "x" * (MIN_ADMIN_TOKEN_LENGTH - 1)
    with pytest.raises(ConfigurationError) as raised:
        AdminApi(migrated, token=short)
    assert str(MIN_ADMIN_TOKEN_LENGTH) in str(raised.value)
    assert short not in str(raised.value)


async def test_read_only_mode_answers_reads_and_refuses_every_change(
    migrated: str, pool: asyncpg.Pool[Any], job_ids: list[int]
) -> None:
    before = await database_state(pool)
    async with admin_client(migrated, read_only=True) as http:
        pauses = await http.get("/api/pauses")
        jobs = await http.get("/api/jobs")
        one = await http.get(f"/api/jobs/{job_ids[0]}")
        overview = await http.get("/api/overview")
        refused = [
            await http.post("/api/pauses", json=A_PAUSE),
            await http.delete(f"/api/jobs/{job_ids[0]}", headers=JSON),
            await http.delete(f"/api/jobs/{job_ids[0]}"),
            await http.post(f"/api/jobs/{job_ids[1]}/cancel", json={}),
            await http.post("/api/jobs/cancel", json={"ids": job_ids}),
            await http.post(f"/api/jobs/{job_ids[2]}/priority", json={"priority": 5}),
            await http.delete("/api/pauses/task/t"),
        ]
    for read in (pauses, jobs, one, overview):
        assert read.status_code == 200, read.text
    assert [job["id"] for job in jobs.json()["jobs"]] == job_ids
    assert one.json()["job"]["id"] == job_ids[0]
    for answer in refused:
        assert answer.status_code == 403, f"{answer.request.method} {answer.request.url}: {answer.text}"
        assert "read-only" in error_of(answer)["message"]
    assert await database_state(pool) == before


async def test_cross_site_requests_cannot_change_anything(
    migrated: str, pool: asyncpg.Pool[Any], job_ids: list[int]
) -> None:
    before = await database_state(pool)
    async with admin_client(migrated) as http:
        other_origin = await http.post("/api/pauses", json=A_PAUSE, headers={"origin": "http://evil.example"})
        other_port = await http.post("/api/pauses", json=A_PAUSE, headers={"origin": "http://127.0.0.1:9999"})
        null_origin = await http.post("/api/pauses", json=A_PAUSE, headers={"origin": "null"})
        cross_site = await http.post("/api/pauses", json=A_PAUSE, headers={"sec-fetch-site": "cross-site"})
        same_site = await http.post("/api/pauses", json=A_PAUSE, headers={"sec-fetch-site": "same-site"})
        cross_delete = await http.delete(f"/api/jobs/{job_ids[0]}", headers={"origin": "http://evil.example"})
        cross_site_delete = await http.delete(f"/api/jobs/{job_ids[0]}", headers={"sec-fetch-site": "cross-site"})
        # What an HTML form can send cross-site without a preflight: a "simple" content type.
        plain = await http.post(
            "/api/pauses", content='{"kind":"task","name":"t"}', headers={"content-type": "text/plain"}
        )
        form = await http.post("/api/pauses", data={"kind": "task", "name": "t"})
        untyped_cancel = await http.post(f"/api/jobs/{job_ids[1]}/cancel")
    for answer in (other_origin, other_port, null_origin, cross_site, same_site, cross_delete, cross_site_delete):
        assert answer.status_code == 403, answer.text
        assert "cross-site" in error_of(answer)["message"]
    for answer in (plain, form, untyped_cancel):
        assert answer.status_code == 415, answer.text
        assert "application/json" in error_of(answer)["message"]
    assert await database_state(pool) == before

    async with admin_client(migrated) as http:
        same_origin = await http.post(
            "/api/pauses", json=A_PAUSE, headers={"origin": "http://127.0.0.1", "sec-fetch-site": "same-origin"}
        )
        with_charset = await http.post(
            "/api/pauses",
            content='{"kind":"task","name":"u"}',
            headers={"content-type": "application/json; charset=utf-8"},
        )
        # Only a POST can be sent cross-site without a CORS preflight (which the API never grants), so only a
        # POST must be JSON: a DELETE carries no body and needs no content type.
        untyped_delete = await http.delete(f"/api/jobs/{job_ids[0]}", headers={"origin": "http://127.0.0.1"})
    assert same_origin.status_code == 200, same_origin.text
    assert with_charset.status_code == 200, with_charset.text
    assert untyped_delete.status_code == 200, untyped_delete.text
    assert untyped_delete.json() == {"deleted": [job_ids[0]]}
    names = await pool.fetch("select kind, name from graphile_worker.backfill_pauses order by name")
    assert [(row["kind"], row["name"]) for row in names] == [("task", "t"), ("task", "u")]
    remaining = await pool.fetch("select id from graphile_worker._private_jobs order by id")
    assert [row["id"] for row in remaining] == job_ids[1:]


async def test_answers_and_refusals_carry_the_security_headers(migrated: str, pool: asyncpg.Pool[Any]) -> None:
    before = await database_state(pool)
    async with admin_client(migrated) as http:
        answered = await http.get("/api/pauses")
        bad_input = await http.get("/api/jobs", params={"limit": "0"})
        unknown = await http.get("/api/nothing-here")
        refused_write = await http.post("/api/pauses", json=A_PAUSE, headers={"origin": "http://evil.example"})
    async with admin_client(migrated, client=("10.1.2.3", 5)) as http:
        refused_caller = await http.get("/api/pauses")
    async with admin_client(migrated, token=TOKEN) as http:
        unauthorized = await http.get("/api/pauses")
    cases = [(answered, 200), (bad_input, 400), (unknown, 404), (refused_write, 403), (refused_caller, 403)]
    for answer, status in [*cases, (unauthorized, 401)]:
        assert answer.status_code == status, answer.text
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.headers.get_list("x-frame-options") == ["DENY"], "set once"
    assert await database_state(pool) == before


async def test_the_token_check_takes_the_same_time_wherever_a_wrong_token_differs() -> None:
    # The one place a timing measurement is the behaviour under test: a check whose time grows with the length of
    # the prefix a guess got right lets an attacker find the token one character at a time. A very long token
    # makes a naive comparison's difference large (a memcmp over 200 kB), so the same loop measuring `==` shows
    # this measurement can tell the two apart; the policy's check must not.
    secret = "0123456789abcdef" * 12_500  # 200 000 characters
    policy = AccessPolicy(token=secret)
    first_wrong = "X" + secret[1:]
    last_wrong = secret[:-1] + "X"
    shorter = secret[:-1]  # a different length: a naive comparison answers at once, telling the length
    candidates = {"first": first_wrong, "last": last_wrong, "shorter": shorter}

    def median_times(check: Callable[[str], bool], rounds: int) -> dict[str, float]:
        times: dict[str, list[int]] = {name: [] for name in candidates}
        for _ in range(rounds):
            for name, candidate in candidates.items():  # interleaved, so that drift affects each alike
                start = time.perf_counter_ns()
                check(candidate)
                times[name].append(time.perf_counter_ns() - start)
        return {name: statistics.median(values) for name, values in times.items()}

    def naive(candidate: str) -> bool:
        return candidate == secret

    assert not any(policy.token_matches(candidate) for candidate in candidates.values())
    assert policy.token_matches(secret)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        started = time.monotonic()
        checked = median_times(policy.token_matches, 300)
        compared = median_times(naive, 300)
        elapsed = time.monotonic() - started
    finally:
        if gc_was_enabled:
            gc.enable()
    assert elapsed < 5, f"the measurement took {elapsed:.1f} s"
    # The measurement discriminates: a naive comparison of the same candidates is far slower when the guess is
    # right up to its last character than when it is wrong at once, or of another length.
    assert compared["last"] >= 3 * compared["first"], compared
    assert compared["last"] >= 3 * compared["shorter"], compared
    # The policy's check does not: where the guess differs, and whether its length is right, do not show.
    assert 0.7 <= checked["last"] / checked["first"] <= 1.4, checked
    assert 0.7 <= checked["shorter"] / checked["first"] <= 1.4, checked


# --- bad input --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadRequest:
    method: str
    path: str
    status: int
    field: str | None = None
    says: str | None = None
    json: Any = None
    content: bytes | None = None
    params: dict[str, str] | None = None


def _chunks(size: int) -> Callable[[], AsyncIterator[bytes]]:
    async def body() -> AsyncIterator[bytes]:
        sent, chunk = 0, b" " * 65536
        while sent < size:
            yield chunk
            sent += len(chunk)

    return body


BAD_REQUESTS = [
    BadRequest("GET", "/api/jobs", 400, "limit", "500", params={"limit": "100000"}),
    BadRequest("GET", "/api/jobs", 400, "limit", params={"limit": "0"}),
    BadRequest("GET", "/api/jobs", 400, "limit", params={"limit": "ten"}),
    BadRequest("GET", "/api/jobs", 400, "state", "bogus", params={"state": "bogus"}),
    BadRequest("GET", "/api/jobs/abc", 400, "id", "abc"),
    BadRequest("GET", "/api/jobs/0", 400, "id"),
    BadRequest("GET", "/api/jobs/-1", 400, "id"),
    BadRequest("GET", "/api/jobs/99999999999999999999", 400, "id"),
    BadRequest("GET", "/api/dlq", 400, "since", "yesterday", params={"since": "yesterday"}),
    BadRequest("GET", "/api/dlq", 400, "since", "UTC offset", params={"since": "2024-01-01T00:00:00"}),
    BadRequest("POST", "/api/jobs/cancel", 400, "ids", json={"ids": ["x"]}),
    BadRequest("POST", "/api/jobs/cancel", 400, "ids", json={"ids": [True]}),
    BadRequest("POST", "/api/jobs/cancel", 400, "ids", str(MAX_BULK), json={"ids": list(range(1, MAX_BULK + 2))}),
    BadRequest("POST", "/api/jobs/cancel", 400, "nope", json={"filter": {"nope": 1}}),
    BadRequest("POST", "/api/jobs/cancel", 400, "filter", json={"filter": {}}),
    BadRequest("POST", "/api/jobs/cancel", 400, "ids", json={}),
    BadRequest("POST", "/api/jobs/cancel", 400, "ids", json={"ids": [1], "filter": {"task": "admin.sample"}}),
    BadRequest("POST", "/api/pauses", 400, "body", "JSON", content=b"not json"),
    BadRequest("POST", "/api/pauses", 400, "body", "object", json=[A_PAUSE]),
    BadRequest("POST", "/api/pauses", 400, "extra", json={**A_PAUSE, "extra": 1}),
    BadRequest("POST", "/api/pauses", 400, "kind", json={"kind": "bogus", "name": "t"}),
    BadRequest("POST", "/api/pauses", 400, "name", json={"kind": "task"}),
    BadRequest("POST", "/api/pauses", 400, "kind", json={"name": "t"}),
    BadRequest("POST", "/api/pauses", 400, None, "no such lane", json={"kind": "lane", "name": "reprots"}),
    BadRequest("POST", "/api/pauses", 413, "body", str(MAX_BODY_BYTES), content=b" " * (MAX_BODY_BYTES + 1)),
    BadRequest("POST", "/api/pauses", 413, "body", json={**A_PAUSE, "reason": "r" * MAX_BODY_BYTES}),
]


async def test_bad_input_is_a_4xx_naming_the_field_and_changes_nothing(
    migrated: str, pool: asyncpg.Pool[Any], job_ids: list[int]
) -> None:
    before = await database_state(pool)
    problems: list[str] = []
    async with admin_client(migrated) as http:
        for case in BAD_REQUESTS:
            headers = JSON if case.method != "GET" else {}
            answer = await http.request(
                case.method, case.path, json=case.json, content=case.content, params=case.params, headers=headers
            )
            what = f"{case.method} {case.path} {case.params or ''}{str(case.json)[:60] if case.json else ''}"
            if answer.status_code != case.status:
                problems.append(f"{what}: {answer.status_code} {answer.text[:300]}, wanted {case.status}")
                continue
            error = error_of(answer)
            if case.field is not None and error.get("field") != case.field:
                problems.append(f"{what}: field {error.get('field')!r}, wanted {case.field!r} ({error['message']})")
            if case.says is not None and case.says not in error["message"]:
                problems.append(f"{what}: message {error['message']!r} does not mention {case.says!r}")
        # A body larger than the limit without a Content-Length (chunked) is cut off while it is read.
        streamed = await http.post("/api/pauses", content=_chunks(MAX_BODY_BYTES + 65536)(), headers=JSON)
        if "content-length" in streamed.request.headers:
            problems.append("the streamed body was sent with a Content-Length: not the case meant")
        if streamed.status_code != 413 or error_of(streamed).get("field") != "body":
            problems.append(f"streamed body over the limit: {streamed.status_code} {streamed.text[:300]}")
    assert not problems, "\n".join(problems)
    after = await database_state(pool)
    assert after == before
    assert (after.pauses, after.cancellations, after.audit) == (0, 0, 0)
    assert len(after.jobs) == len(job_ids)


# --- settings -----------------------------------------------------------------------------------------------------


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, database_url: str) -> str:
    """No BACKFILL_* variable of the caller's leaks into the settings under test; DATABASE_URL is the test's."""
    for name in list(os.environ):
        if name.startswith(("BACKFILL_", "GRAPHILE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", database_url)
    return database_url


async def test_settings_refuse_an_admin_api_off_loopback_without_a_token(
    clean_environment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError) as by_override:
        BackfillSettings.load(env_file=None, database_url=clean_environment, admin_port=8080, admin_host="0.0.0.0")
    assert "BACKFILL_ADMIN_TOKEN" in str(by_override.value)

    for host in ("0.0.0.0", "::", "10.1.2.3", "admin.example", "127.0.0.1.evil.example"):
        monkeypatch.setenv("BACKFILL_ADMIN_PORT", "8080")
        monkeypatch.setenv("BACKFILL_ADMIN_HOST", host)
        with pytest.raises(ConfigurationError) as by_environment:
            BackfillSettings.load(env_file=None)
        message = str(by_environment.value)
        assert "BACKFILL_ADMIN_TOKEN" in message, message
        assert host in message, message


async def test_settings_refuse_a_short_admin_token_without_showing_it(
    clean_environment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = "Sh0rt-s3cret-42"
    assert len(short) == MIN_ADMIN_TOKEN_LENGTH - 1
    monkeypatch.setenv("BACKFILL_ADMIN_PORT", "8080")
    monkeypatch.setenv("BACKFILL_ADMIN_TOKEN", short)
    with pytest.raises(ConfigurationError) as by_environment:
        BackfillSettings.load(env_file=None)
    with pytest.raises(ConfigurationError) as by_override:
        BackfillSettings.load(env_file=None, admin_token=short)
    for raised, named in ((by_environment, "BACKFILL_ADMIN_TOKEN"), (by_override, "admin_token")):
        message = str(raised.value)
        assert named in message and str(MIN_ADMIN_TOKEN_LENGTH) in message, message
        assert short not in message
        assert short not in repr(raised.value)
        assert short not in "".join(traceback.format_exception(raised.value)), "a logged traceback shows it"


async def test_settings_accept_any_host_with_a_token_and_loopback_without_one(
    clean_environment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = BackfillSettings.load(env_file=None, admin_port=8080, admin_host="0.0.0.0", admin_token=TOKEN)
    assert settings.admin_host == "0.0.0.0" and settings.admin_port == 8080
    assert settings.admin_token is not None and settings.admin_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings)

    monkeypatch.setenv("BACKFILL_ADMIN_PORT", "8080")
    monkeypatch.setenv("BACKFILL_ADMIN_HOST", "0.0.0.0")
    monkeypatch.setenv("BACKFILL_ADMIN_TOKEN", TOKEN)
    from_environment = BackfillSettings.load(env_file=None)
    assert from_environment.admin_token is not None and from_environment.admin_token.get_secret_value() == TOKEN

    monkeypatch.delenv("BACKFILL_ADMIN_TOKEN")
    for host in ("127.0.0.1", "localhost", "::1"):
        monkeypatch.setenv("BACKFILL_ADMIN_HOST", host)
        loopback = BackfillSettings.load(env_file=None)
        assert loopback.admin_host == host and loopback.admin_port == 8080 and loopback.admin_token is None

    # No admin port: no API, so no token needed wherever the host points.
    monkeypatch.delenv("BACKFILL_ADMIN_PORT")
    monkeypatch.setenv("BACKFILL_ADMIN_HOST", "0.0.0.0")
    assert BackfillSettings.load(env_file=None).admin_port is None
