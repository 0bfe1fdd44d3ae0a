"""The web dashboard's pages in-process against a real PostgreSQL and a real WorkerRunner: what each page shows,
the live fragments, error pages, HTML escaping, read-only mode, the token login with its session cookie and CSRF
token, loopback-only mode, serving under a mount prefix, and the content security policy on every page.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from html.parser import HTMLParser
from http.cookies import Morsel, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from markupsafe import escape
from starlette.applications import Starlette
from starlette.routing import Mount

from backfill.admin import AdminApi
from backfill.admin.security import SESSION_COOKIE, SESSION_SECONDS, Sessions
from backfill.client.async_client import BackfillClient
from backfill.core import PermanentFailure, SchemaName, TaskRegistry, cron_item
from backfill.migrations import migrate_all
from backfill.runner import WorkerRunner
from tests.support.admin import runner_settings
from tests.support.waiting import wait_for

SCHEMA = SchemaName("graphile_worker")
TOKEN = "t" * 24
WRONG_TOKEN = "wrong-token-typed-by-someone-0123"
LOOPBACK_CLIENT = ("127.0.0.1", 40000)
LOOPBACK_URL = "http://127.0.0.1"
HTML = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
JSON_ONLY = {"accept": "application/json"}
LIVE = {"x-backfill-live": "1"}
EVIL_TASK = '<script>alert("task")</script>'
EVIL_ERROR = '<script>alert("error")</script>'
PAYLOAD_MARKER = "payload-marker-5150"


class LedgerMismatchError(Exception):
    """What the failing task raises: a type of its own, to find on the pages."""


class Handlers:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started: set[str] = set()


def _registry(handlers: Handlers) -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("dash.ok")
    async def ok(payload: Any) -> None:
        handlers.started.add(str(payload.get("name")))

    @registry.task("dash.broken")
    async def broken(payload: Any) -> None:
        raise LedgerMismatchError(str(payload.get("message", "ledger 7 does not balance")))

    @registry.task("dash.refuse")
    async def refuse(payload: Any) -> None:
        raise PermanentFailure("card declined")

    @registry.task("dash.hang")
    async def hang(payload: Any) -> None:
        handlers.started.add(str(payload.get("name")))
        await handlers.release.wait()

    return registry


@pytest.fixture
async def migrated(database_url: str, pool: asyncpg.Pool[Any]) -> str:
    await migrate_all(pool, SCHEMA)
    return database_url


@pytest.fixture
def handlers() -> Handlers:
    return Handlers()


@pytest.fixture
async def runner(migrated: str, handlers: Handlers) -> AsyncIterator[WorkerRunner]:
    settings = runner_settings(migrated)
    crontab = [cron_item("*/5 * * * *", "dash.ok", identifier="every-five", fill=timedelta(hours=1))]
    runner = WorkerRunner(settings, tasks=_registry(handlers), crontab=crontab)
    async with runner:
        yield runner
        handlers.release.set()  # the hanging job ends, so the runner stops without waiting out its grace


@asynccontextmanager
async def dashboard(
    database_url: str,
    *,
    runner: WorkerRunner | None = None,
    token: str | None = None,
    read_only: bool = False,
    client: tuple[str, int] = LOOPBACK_CLIENT,
    base_url: str = LOOPBACK_URL,
    mount: str | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client (it asks for HTML) of an :class:`AdminApi` in this process, mounted at ``mount``."""
    admin = AdminApi(database_url, token=token, read_only=read_only, runner=runner)
    app: Any = admin if mount is None else Starlette(routes=[Mount(mount, app=admin)])
    try:
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url=base_url, headers=HTML) as http:
            http.headers["x-backfill-operator"] = "alice"
            yield http
    finally:
        await admin.close()


@pytest.fixture
async def browser(migrated: str, runner: WorkerRunner) -> AsyncIterator[httpx.AsyncClient]:
    async with dashboard(migrated, runner=runner) as http:
        yield http


# --- reading pages ----------------------------------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def tags(html: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser.tags


def meta(html: str, name: str) -> str:
    [content] = [attrs.get("content", "") for tag, attrs in tags(html) if tag == "meta" and attrs.get("name") == name]
    return content


def actions(html: str) -> list[tuple[str, dict[str, str]]]:
    return [(tag, attrs) for tag, attrs in tags(html) if "data-action" in attrs]


def assert_policy(response: httpx.Response) -> None:
    """An HTML response: a content security policy allowing our own scripts only, and no inline script."""
    assert response.headers["content-type"].startswith("text/html"), response.headers
    assert response.headers.get("cache-control") == "no-store" and response.headers.get("x-frame-options") == "DENY"
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy, policy
    text = response.text
    for opening, body in re.findall(r"(<script\b[^>]*>)(.*?)</script>", text, re.S | re.I):
        assert 'src="' in opening and not body.strip(), opening
    handlers = [(tag, name) for tag, attrs in tags(text) for name in attrs if name.startswith("on")]
    assert not handlers, f"inline event handlers: {handlers}"


def page(response: httpx.Response, status: int = 200) -> str:
    assert response.status_code == status, (response.status_code, response.text[:3000])
    assert_policy(response)
    return response.text


def fragment(response: httpx.Response) -> str:
    """A live fragment: the figures, no document around them."""
    text = page(response)
    for whole_page_only in (r"<html\b", r"<head\b", r"<nav\b", r"<body\b", r"<!doctype\b", r"<h1\b"):
        assert not re.search(whole_page_only, text, re.I), whole_page_only
    return text


def lane_card(html: str, lane: str) -> str:
    found = re.search(rf'<article class="card" data-lane="{lane}".*?</article>', html, re.S)
    assert found, f"no card for lane {lane}"
    return found.group(0)


def figure(html: str, name: str) -> str:
    found = re.search(rf'data-figure="{name}">(?:<a [^>]*>)?([^<]*)<', html)
    assert found, f"no figure {name}"
    return found.group(1).strip()


def login_target(response: httpx.Response) -> tuple[str, str | None]:
    """A redirect to the login page: its path and its ``next``."""
    assert response.status_code == 303, (response.status_code, response.text)
    location = urlsplit(response.headers["location"])
    assert not location.netloc
    return location.path, parse_qs(location.query).get("next", [None])[0]


def session_cookie(response: httpx.Response) -> Morsel[str]:
    [header] = [v for v in response.headers.get_list("set-cookie") if v.startswith(f"{SESSION_COOKIE}=")]
    cookie = SimpleCookie()
    cookie.load(header)
    return cookie[SESSION_COOKIE]


async def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


async def _true(value: bool) -> bool:
    return value


async def _errors_recorded(pool: asyncpg.Pool[Any], job_id: int) -> bool:
    return bool(
        await pool.fetchval("select count(*) >= 1 from graphile_worker.backfill_job_errors where job_id = $1", job_id)
    )


async def _dead_entry(pool: asyncpg.Pool[Any], job_id: int) -> int | None:
    found = await pool.fetchval("select id from graphile_worker.backfill_dlq where job_id = $1", job_id)
    return None if found is None else int(found)


# --- every page -------------------------------------------------------------------------------------------------


async def test_overview_lists_the_lanes_with_their_slots_busy_slots_and_throughput(
    browser: httpx.AsyncClient, pool: asyncpg.Pool[Any], handlers: Handlers
) -> None:
    client = BackfillClient(pool)
    await client.enqueue_bulk("dash.hang", {"name": "h"})
    for i in range(3):
        await client.enqueue_fast("dash.ok", {"name": f"ok{i}"})
    await client.enqueue_bulk("dash.unserved", {}, queue="tenant-1")  # no runner serves it: it stays ready
    await wait_for(lambda: _true(handlers.started >= {"h", "ok0", "ok1", "ok2"}))

    html = page(await browser.get("/"))
    assert "<h1>Overview</h1>" in html and meta(html, "backfill-root") == ""
    fast, bulk = lane_card(html, "fast"), lane_card(html, "bulk")
    assert (figure(fast, "slots"), figure(bulk, "slots")) == ("2", "3")
    assert 'href="/workers">2</a>' in html  # workers alive
    assert 'href="/jobs?queue=tenant-1">tenant-1</a>' in html and 'href="/jobs?task=dash.unserved"' in html
    # Not read-only: each lane can be paused from here.
    pause_buttons = [a for _, a in actions(html) if a.get("data-url") == "api/pauses"]
    assert sorted(a["data-body"] for a in pause_buttons) == [
        '{"kind": "lane", "name": "bulk"}',
        '{"kind": "lane", "name": "fast"}',
    ]

    async def busy_and_counted() -> str | None:
        live = fragment(await browser.get("/", headers=LIVE))
        bulk = lane_card(live, "bulk")
        fast = lane_card(live, "fast")
        done = "3 succeeded and 0 failed in the last hour" in fast  # runners flush their counts every 5 s
        return live if figure(bulk, "busy") == "1" and done else None

    live = await wait_for(busy_and_counted, timeout=20)
    fast = lane_card(live, "fast")
    assert '<svg class="chart" role="img"' in fast and 'class="ok"' in fast and 'class="failed"' not in fast
    assert "Last hour: 3 done, 0 failed" in fast and figure(fast, "failure-rate") == "0.0%"
    assert figure(live, "alive") == "2" and figure(live, "dead-letters") == "0"
    # The lane's pause buttons are in the fragment too: the macros work in a block rendered alone.
    assert sorted(a["data-body"] for _, a in actions(live) if a["data-url"] == "api/pauses") == [
        '{"kind": "lane", "name": "bulk"}',
        '{"kind": "lane", "name": "fast"}',
    ]
    assert "<footer" not in live


async def test_jobs_page_lists_jobs_and_a_task_filter_narrows_it(
    browser: httpx.AsyncClient, pool: asyncpg.Pool[Any], handlers: Handlers
) -> None:
    client = BackfillClient(pool)
    later = [await client.enqueue_bulk("dash.later", {"n": n}, delay=3600) for n in range(2)]
    other = await client.enqueue_bulk("dash.other", {}, delay=3600)
    running = await client.enqueue_bulk("dash.hang", {"name": "r"})
    await wait_for(lambda: _true("r" in handlers.started))

    html = page(await browser.get("/jobs"))
    listed = {int(a["data-job"]) for tag, a in tags(html) if tag == "tr" and "data-job" in a}
    assert {job.id for job in [*later, other, running]} <= listed
    assert f'href="/jobs/{other.id}"' in html

    narrowed = page(await browser.get("/jobs", params={"task": "dash.later"}))
    listed = {int(a["data-job"]) for tag, a in tags(narrowed) if tag == "tr" and "data-job" in a}
    assert listed == {job.id for job in later}
    assert 'name="task" value="dash.later"' in narrowed  # the filter form shows what is applied
    [cancel_all] = [a for _, a in actions(narrowed) if "data-filter" in a]
    assert cancel_all["data-filter"] == '{"task": "dash.later"}' and cancel_all["data-url"] == "api/jobs/cancel"

    by_state = page(await browser.get("/jobs", params={"state": "running"}))
    listed = {int(a["data-job"]) for tag, a in tags(by_state) if tag == "tr" and "data-job" in a}
    assert listed == {running.id}

    live = fragment(await browser.get("/jobs", params={"task": "dash.later"}, headers=LIVE))
    assert all(f'data-job="{job.id}"' in live for job in later) and f'data-job="{other.id}"' not in live
    assert 'role="search"' not in live  # the filter form is not a figure


async def test_job_page_shows_the_error_history_with_its_traceback_and_the_payload_on_request(
    browser: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    job = await BackfillClient(pool).enqueue_bulk(
        "dash.broken", {"message": "ledger 7 does not balance", "secret": PAYLOAD_MARKER}, max_attempts=5
    )
    await wait_for(lambda: _errors_recorded(pool, job.id))

    html = page(await browser.get(f"/jobs/{job.id}"))
    assert f"<h1>Job {job.id}</h1>" in html and "<dd>dash.broken</dd>" in html
    history = html[html.index("<h2>Error history</h2>") :]
    assert "<strong>Attempt 1</strong>" in history and "LedgerMismatchError</code>" in history
    assert "LedgerMismatchError: ledger 7 does not balance" in history
    traceback = re.search(
        r"<details><summary>Traceback</summary><pre class=\"traceback\">(.*?)</pre></details>", html, re.S
    )
    assert traceback, "no traceback in a <details>"
    assert "Traceback (most recent call last)" in traceback.group(1) and "ledger 7 does not balance" in traceback.group(
        1
    )

    assert PAYLOAD_MARKER not in html and f'href="/jobs/{job.id}?include_payload=true"' in html
    with_payload = page(await browser.get(f"/jobs/{job.id}", params={"include_payload": "true"}))
    assert PAYLOAD_MARKER in with_payload and '<pre class="payload">' in with_payload

    live = fragment(await browser.get(f"/jobs/{job.id}", headers=LIVE))
    assert "<strong>Attempt 1</strong>" in live and "<dd>dash.broken</dd>" in live


async def test_job_page_with_include_payload_false_shows_no_payload(
    browser: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    held = await BackfillClient(pool).enqueue_bulk("dash.later", {"secret": PAYLOAD_MARKER}, delay=3600)
    html = page(await browser.get(f"/jobs/{held.id}", params={"include_payload": "false"}))
    assert PAYLOAD_MARKER not in html


async def test_dead_letter_page_with_include_payload_false_shows_no_payload(
    browser: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    job = await BackfillClient(pool).enqueue_bulk("dash.broken", {"secret": PAYLOAD_MARKER}, max_attempts=1)
    entry = await wait_for(lambda: _dead_entry(pool, job.id))
    html = page(await browser.get(f"/dlq/{entry}", params={"include_payload": "false"}))
    assert PAYLOAD_MARKER not in html


async def test_dead_letter_pages_group_by_task_and_exception_type_and_show_the_entry(
    browser: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    job = await BackfillClient(pool).enqueue_bulk("dash.broken", {"secret": PAYLOAD_MARKER}, max_attempts=1)
    entry = await wait_for(lambda: _dead_entry(pool, job.id))

    html = page(await browser.get("/dlq"))
    assert "1 dead, 0 requeued" in html
    by_task = html[html.index("<caption>By task</caption>") : html.index("<caption>By exception type</caption>")]
    assert 'href="/dlq?task=dash.broken">dash.broken</a>' in by_task and '<td class="num">1</td>' in by_task
    by_type = html[html.index("<caption>By exception type</caption>") :]
    by_type = by_type[: by_type.index("</table>")]
    assert "LedgerMismatchError</a>" in by_type and '<td class="num">1</td>' in by_type
    assert f'<tr data-entry="{entry}">' in html and f'href="/dlq/{entry}"' in html
    assert "LedgerMismatchError: ledger 7 does not balance" in html
    assert {a["data-url"] for _, a in actions(html)} == {"api/dlq/requeue", "api/dlq/delete"}

    narrowed = page(await browser.get("/dlq", params={"task": "dash.other"}))
    assert "No entry matches." in narrowed and f'data-entry="{entry}"' not in narrowed
    live = fragment(await browser.get("/dlq", headers=LIVE))
    assert f'data-entry="{entry}"' in live and "By task" not in live

    shown = page(await browser.get(f"/dlq/{entry}"))
    assert f"<h1>Dead letter {entry}</h1>" in shown and "<dd>dash.broken</dd>" in shown
    assert f"<dd>{job.id}</dd>" in shown and "<dd>1 of 1</dd>" in shown
    assert "<strong>Attempt 1</strong>" in shown and "LedgerMismatchError: ledger 7 does not balance</pre>" in shown
    last = re.search(
        r"<details open><summary>Last traceback \(([^)]*)\)</summary><pre class=\"traceback\">(.*?)</pre>", shown, re.S
    )
    assert (
        last and last.group(1).endswith("LedgerMismatchError") and "Traceback (most recent call last)" in last.group(2)
    )
    assert PAYLOAD_MARKER not in shown
    with_payload = page(await browser.get(f"/dlq/{entry}", params={"include_payload": "true"}))
    assert PAYLOAD_MARKER in with_payload
    assert {a["data-url"] for _, a in actions(shown)} == {"api/dlq/requeue", "api/dlq/delete"}


async def test_workers_page_lists_the_runners_workers(browser: httpx.AsyncClient) -> None:
    workers = (await _ok(await browser.get("/api/workers", headers=JSON_ONLY)))["workers"]
    registered = {w["worker_id"]: w["lane"] for w in workers if w["registered"]}
    assert sorted(registered.values()) == ["bulk", "fast"]

    html = page(await browser.get("/workers"))
    assert "2 alive, 0 dead" in html
    for worker_id, lane in registered.items():
        row = re.search(rf'<tr data-worker="{re.escape(worker_id)}">.*?</tr>', html, re.S)
        assert row, worker_id
        assert f"<td>{lane}</td>" in row.group(0) and '<span class="state alive">alive</span>' in row.group(0)
    live = fragment(await browser.get("/workers", headers=LIVE))
    assert all(f'data-worker="{worker_id}"' in live for worker_id in registered)


async def test_queues_page_shows_a_pause_made_through_the_api(
    browser: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    await BackfillClient(pool).enqueue_bulk("dash.unserved", {}, queue="tenant-1")
    before = page(await browser.get("/queues"))
    assert "Nothing is paused." in before

    made = await browser.post(
        "/api/pauses", json={"kind": "queue", "name": "tenant-1", "reason": "deploy friday"}, headers=JSON_ONLY
    )
    assert made.status_code == 200, made.text
    html = page(await browser.get("/queues"))
    row = re.search(r'<tr data-pause="queue:tenant-1">.*?</tr>', html, re.S)
    assert row, html
    assert "deploy friday" in row.group(0) and "alice (loopback, 127.0.0.1)" in row.group(0)
    [resume] = [a for _, a in actions(row.group(0))]
    assert (resume["data-action"], resume["data-url"]) == ("DELETE", "api/pauses/queue/tenant-1")
    assert '<span class="badge paused">paused</span>' in html  # the ready queue is marked paused
    [pause_form] = [a for t, a in actions(html) if t == "form"]
    assert pause_form["data-url"] == "api/pauses"
    assert figure(page(await browser.get("/")), "pauses") == "1"
    live = fragment(await browser.get("/queues", headers=LIVE))
    assert 'data-pause="queue:tenant-1"' in live


async def test_cron_page_lists_the_runners_schedule(browser: httpx.AsyncClient, migrated: str) -> None:
    html = page(await browser.get("/cron"))
    row = re.search(r"<tr><th scope=\"row\"><code>every-five</code></th>.*?</tr>", html, re.S)
    assert row, html
    assert "<td>dash.ok</td>" in row.group(0) and "<code>*/5 * * * *</code>" in row.group(0)
    assert "<td>1h 0m</td>" in row.group(0) and '<time datetime="' in row.group(0)
    assert "not served by a runner" not in html

    async with dashboard(migrated) as alone:  # no runner: the patterns are in the runners' processes
        assert "not served by a runner" in page(await alone.get("/cron"))


# --- errors and escaping --------------------------------------------------------------------------------------


async def test_errors_are_pages_with_the_apis_status_and_message_and_no_traceback(
    browser: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    job = await BackfillClient(pool).enqueue_bulk("dash.later", {}, delay=3600)
    cases = [
        ("/jobs?state=nope", 400, "state: "),
        ("/jobs/999999", 404, "job 999999 not found"),
        ("/jobs/abc", 400, "id: must be a positive integer"),
        (f"/jobs/{job.id}?include_payload=perhaps", 400, "include_payload: "),
        ("/jobs/0", 400, "id: "),
        ("/dlq/999999", 404, "dead-letter entry 999999 not found"),
        ("/dlq?after=not-a-cursor", 400, "after: "),
    ]
    for path, status, message in cases:
        for headers in ({}, LIVE):  # the live fragment of a failing page is the error page
            html = page(await browser.get(path, headers=headers), status)
            alert = re.search(r'<div class="notice error" role="alert"><p>(.*?)</p></div>', html, re.S)
            assert alert and message in alert.group(1), (path, html)
            assert "Traceback" not in html and 'File "' not in html, path
            assert "<nav" in html  # the whole page, to find one's way back
    invalid = page(await browser.get("/jobs?state=nope"), 400)
    assert "state" in invalid and "waiting" in invalid  # names the field and the allowed states


async def test_task_names_and_error_texts_are_escaped(browser: httpx.AsyncClient, pool: asyncpg.Pool[Any]) -> None:
    evil_job = int(await pool.fetchval("select id from graphile_worker.add_job($1, '{}')", EVIL_TASK))
    client = BackfillClient(pool)
    failing = await client.enqueue_bulk("dash.broken", {"message": EVIL_ERROR}, max_attempts=5)
    dying = await client.enqueue_bulk("dash.broken", {"message": EVIL_ERROR}, max_attempts=1)
    await wait_for(lambda: _errors_recorded(pool, failing.id))
    entry = await wait_for(lambda: _dead_entry(pool, dying.id))

    pages = {
        "/": (200, EVIL_TASK),
        "/jobs": (200, EVIL_TASK),
        f"/jobs/{evil_job}": (200, EVIL_TASK),
        f"/jobs?task={EVIL_TASK}": (200, EVIL_TASK),
        f"/jobs/{failing.id}": (200, EVIL_ERROR),
        "/dlq": (200, EVIL_ERROR),
        f"/dlq/{entry}": (200, EVIL_ERROR),
        f"/jobs?state={EVIL_TASK}": (400, EVIL_TASK[:20]),  # an error page quoting (the start of) the bad value
    }
    for path, (status, evil) in pages.items():
        html = page(await browser.get(path), status)
        assert "<script>alert(" not in html, path
        assert str(escape(evil)) in html, (path, evil)
    overview = page(await browser.get("/"))
    assert 'href="/jobs?task=%3Cscript%3Ealert%28%22task%22%29%3C/script%3E"' in overview  # the link's query


# --- read-only --------------------------------------------------------------------------------------------------


async def test_read_only_pages_offer_no_action_and_writes_are_refused(
    migrated: str, runner: WorkerRunner, pool: asyncpg.Pool[Any]
) -> None:
    client = BackfillClient(pool)
    held = await client.enqueue_bulk("dash.later", {}, delay=3600, queue="tenant-1")
    await client.enqueue_bulk("dash.unserved", {}, queue="tenant-1")
    dying = await client.enqueue_bulk("dash.broken", {}, max_attempts=1)
    entry = await wait_for(lambda: _dead_entry(pool, dying.id))
    async with dashboard(migrated, runner=runner) as writable:
        assert (await writable.post("/api/pauses", json={"kind": "task", "name": "dash.later"})).status_code == 200

    async with dashboard(migrated, runner=runner, read_only=True) as http:
        for path in ("/", "/jobs", "/jobs?task=dash.later", f"/jobs/{held.id}", "/dlq", "/dlq?task=dash.broken",
                     f"/dlq/{entry}", "/workers", "/queues", "/cron"):  # fmt: skip
            html = page(await http.get(path))
            assert actions(html) == [], path
            assert "data-action" not in html and 'type="checkbox"' not in html, path
            assert 'class="badge" title="BACKFILL_ADMIN_READ_ONLY' in html, path
            live = fragment(await http.get(path, headers=LIVE))
            assert "data-action" not in live and 'type="checkbox"' not in live, path
        assert "dash.later" in page(await http.get("/queues"))  # the pause is shown, without its Resume button

        refused = await http.post("/api/pauses", json={"kind": "queue", "name": "tenant-1"}, headers=JSON_ONLY)
        assert refused.status_code == 403 and "read-only" in refused.json()["error"]["message"]
        resumed = await http.delete("/api/pauses/task/dash.later", headers=JSON_ONLY)
        assert resumed.status_code == 403
        # Signing in and out is allowed, and changes nothing: loopback needs no login.
        assert (await http.post("/login", data={"token": "x"})).headers["location"] == "/"
    assert await pool.fetchval("select count(*) from graphile_worker.backfill_pauses") == 1


async def test_read_only_with_a_token_lets_one_sign_in_and_out_and_do_nothing_else(migrated: str) -> None:
    async with dashboard(migrated, token=TOKEN, read_only=True) as http:
        signed_in = await http.post("/login", data={"token": TOKEN, "next": "/queues"})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/queues"
        html = page(await http.get("/queues"))
        # The only button is signing out (a session's own business, allowed in read-only mode).
        assert [a["data-url"] for _, a in actions(html)] == ["logout"]
        csrf = {"x-backfill-csrf": meta(html, "backfill-csrf")}
        refused = await http.post("/api/pauses", json={"kind": "lane", "name": "bulk"}, headers=csrf)
        assert refused.status_code == 403 and "read-only" in refused.json()["error"]["message"]
        out = await http.post("/logout", headers=csrf)
        assert out.status_code == 303 and out.headers["location"] == "/login"


# --- token mode: login, session cookie, CSRF ----------------------------------------------------------------------


async def test_token_mode_sends_a_browser_to_the_login_page_and_serves_static_files_without_auth(
    migrated: str,
) -> None:
    async with dashboard(migrated, token=TOKEN) as http:
        for path, target in (("/", "/"), ("/jobs?state=waiting", "/jobs?state=waiting"), ("/dlq/3", "/dlq/3")):
            assert login_target(await http.get(path)) == ("/login", target)
        api_call = await http.get("/api/overview", headers=JSON_ONLY)
        assert api_call.status_code == 401 and api_call.headers["www-authenticate"] == "Bearer"
        assert api_call.headers["content-type"] == "application/json"
        script_fetch = await http.get("/jobs", headers=JSON_ONLY)  # not a navigation: no redirect
        assert script_fetch.status_code == 401

        for name, kind in (("dashboard.css", "text/css"), ("dashboard.js", "javascript")):
            served = await http.get(f"/static/{name}")
            assert served.status_code == 200 and kind in served.headers["content-type"] and served.content

        form = page(await http.get("/login", params={"next": "/jobs"}))
        assert 'action="/login"' in form and 'name="token" type="password"' in form
        assert 'name="next" value="/jobs"' in form and meta(form, "backfill-csrf") == ""
        reflected = page(await http.get("/login", params={"next": '"><script>alert(1)</script>'}))
        assert "<script>alert(1)" not in reflected


async def test_a_wrong_token_is_refused_and_not_logged(migrated: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with dashboard(migrated, token=TOKEN) as http:
        refused = await http.post("/login", data={"token": WRONG_TOKEN, "next": "/jobs"})
        empty = await http.post("/login", data={"token": "", "next": "/jobs"})
        not_a_form = await http.post("/login", json={"token": TOKEN})
        too_long = await http.post("/login", data={"token": TOKEN, "next": "/" + "x" * 5000})
    assert refused.status_code == 401 and empty.status_code == 401
    assert not_a_form.status_code == 400 and too_long.status_code == 400
    for response in (refused, empty, not_a_form, too_long):
        assert_policy(response)
        assert "set-cookie" not in response.headers and WRONG_TOKEN not in response.text
        assert "That token is not this dashboard" in response.text
    assert 'name="next" value="/jobs"' in refused.text  # a second try goes to the same page
    assert WRONG_TOKEN not in caplog.text
    assert all(WRONG_TOKEN not in record.getMessage() and TOKEN not in record.getMessage() for record in caplog.records)
    warnings = [
        r.getMessage() for r in caplog.records if r.name == "backfill.dashboard" and r.levelno == logging.WARNING
    ]
    assert warnings and all("127.0.0.1" in message for message in warnings)


async def test_login_sets_a_strict_session_cookie_and_writes_need_the_pages_csrf_token(
    migrated: str, pool: asyncpg.Pool[Any]
) -> None:
    async with dashboard(migrated, token=TOKEN) as http:
        signed_in = await http.post("/login", data={"token": TOKEN, "next": "/queues?x=1"})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/queues?x=1"
        cookie = session_cookie(signed_in)
        assert cookie["httponly"] is True and cookie["samesite"].lower() == "strict"
        assert cookie["path"] == "/" and not cookie["secure"]
        assert int(cookie["max-age"]) == SESSION_SECONDS and Sessions(TOKEN).valid(cookie.value)
        assert TOKEN not in signed_in.headers["set-cookie"]

        html = page(await http.get("/queues"))
        csrf = meta(html, "backfill-csrf")
        assert csrf == Sessions(TOKEN).csrf_token(cookie.value)
        assert [a["data-url"] for _, a in actions(html) if a.get("data-url") == "logout"] == ["logout"]
        for path in ("/", "/jobs", "/dlq", "/workers", "/cron"):
            assert meta(page(await http.get(path)), "backfill-csrf") == csrf

        pause = {"kind": "lane", "name": "bulk"}
        for headers in ({}, {"x-backfill-csrf": ""}, {"x-backfill-csrf": "0" * 64}):
            refused = await http.post("/api/pauses", json=pause, headers=headers)
            assert refused.status_code == 403 and "CSRF" in refused.json()["error"]["message"], headers
        another = Sessions(TOKEN).csrf_token(Sessions(TOKEN).issue())
        assert (await http.post("/api/pauses", json=pause, headers={"x-backfill-csrf": another})).status_code == 403
        assert (await http.delete("/api/pauses/lane/bulk")).status_code == 403
        assert await pool.fetchval("select count(*) from graphile_worker.backfill_pauses") == 0

        made = await _ok(await http.post("/api/pauses", json=pause, headers={"x-backfill-csrf": csrf}))
        assert made["paused_by"] == "alice (session, 127.0.0.1)"
        cross = await http.post(
            "/api/pauses", json={"kind": "lane", "name": "fast"},
            headers={"x-backfill-csrf": csrf, "origin": "http://evil.example"},
        )  # fmt: skip
        assert cross.status_code == 403
        as_form = await http.post("/api/pauses", data=pause, headers={"x-backfill-csrf": csrf})
        assert as_form.status_code == 415
        lifted = await http.delete("/api/pauses/lane/bulk", headers={"x-backfill-csrf": csrf})
        assert lifted.status_code == 200, lifted.text

        assert (await http.post("/logout")).status_code == 403  # logging out is a write: it needs the token too
        out = await http.post("/logout", headers={"x-backfill-csrf": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        cleared = session_cookie(out)
        assert cleared.value == "" and cleared["max-age"] == "0" and cleared["path"] == "/"
        assert SESSION_COOKIE not in http.cookies
        assert login_target(await http.get("/queues")) == ("/login", "/queues")


async def test_the_cookie_is_secure_over_https(migrated: str) -> None:
    async with dashboard(migrated, token=TOKEN, base_url="https://127.0.0.1") as http:
        signed_in = await http.post("/login", data={"token": TOKEN, "next": "/"})
        assert signed_in.status_code == 303 and session_cookie(signed_in)["secure"] is True


async def test_forged_tampered_and_expired_cookies_are_sent_to_the_login_page(migrated: str) -> None:
    sessions = Sessions(TOKEN)
    good = sessions.issue()
    expires, nonce, mac = good.split(".")
    forged = {
        "tampered mac": f"{expires}.{nonce}.{mac[:-1]}{'0' if mac[-1] != '0' else '1'}",
        "extended": f"{int(expires) + 3600}.{nonce}.{mac}",
        "other nonce": f"{expires}.{nonce}x.{mac}",
        "expired": sessions.issue(now=time.time() - SESSION_SECONDS - 60),
        "another token's": Sessions("another-token-0123456789").issue(),
        "garbage": "not-a-session",
        "empty": "",
    }
    async with dashboard(migrated, token=TOKEN) as http:
        for what, value in forged.items():
            jar = {"cookie": f"{SESSION_COOKIE}={value}"}
            assert login_target(await http.get("/jobs", headers=jar)) == ("/login", "/jobs"), what
            api_call = await http.get("/api/overview", headers={**jar, **JSON_ONLY})
            assert api_call.status_code == 401, what
            csrf = sessions.csrf_token(value) if value.count(".") == 2 else "x"
            write = await http.post("/api/pauses", json={"kind": "lane", "name": "bulk"},
                                    headers={**jar, "x-backfill-csrf": csrf})  # fmt: skip
            assert write.status_code == 401, what
        assert page(await http.get("/jobs", headers={"cookie": f"{SESSION_COOKIE}={good}"})).count("<h1>Jobs</h1>") == 1


async def test_after_login_the_next_page_is_always_this_dashboards(migrated: str) -> None:
    cases = {
        "//evil.example": "/",
        "//evil.example/jobs": "/",
        "https://evil.example/": "/",
        "/\\evil.example": "/",
        "\\\\evil.example": "/",
        "javascript:alert(1)": "/",
        "jobs": "/",
        "": "/",
        "/dlq?task=a%20b": "/dlq?task=a%20b",
    }
    async with dashboard(migrated, token=TOKEN) as http:
        for target, expected in cases.items():
            answer = await http.post("/login", data={"token": TOKEN, "next": target})
            assert answer.status_code == 303 and answer.headers["location"] == expected, target
        # Browsers drop tabs and newlines from a URL: "/\t/evil" must not become "//evil".
        for sneaky in ("/\t/evil.example", "/\n/evil.example", "/\r/evil.example"):
            answer = await http.post("/login", data={"token": TOKEN, "next": sneaky})
            location = re.sub(r"[\t\n\r]", "", answer.headers["location"])
            assert location.startswith("/") and not location.startswith("//"), (sneaky, location)


async def test_the_bearer_token_still_works_for_the_api_and_the_pages(migrated: str) -> None:
    bearer = {"authorization": f"Bearer {TOKEN}"}
    async with dashboard(migrated, token=TOKEN) as http:
        assert (await http.get("/api/overview", headers={**bearer, **JSON_ONLY})).status_code == 200
        made = await http.post("/api/pauses", json={"kind": "task", "name": "t"}, headers=bearer)  # no CSRF needed
        assert made.status_code == 200 and made.json()["paused_by"] == "alice (token, 127.0.0.1)"
        html = page(await http.get("/queues", headers=bearer))
        assert 'data-pause="task:t"' in html and meta(html, "backfill-csrf") == ""
        assert all(a.get("data-url") != "logout" for _, a in actions(html))  # not signed in: nothing to sign out of
        wrong = await http.get("/api/overview", headers={"authorization": f"Bearer {WRONG_TOKEN}", **JSON_ONLY})
        assert wrong.status_code == 401 and WRONG_TOKEN not in wrong.text


# --- loopback-only mode and mounting ------------------------------------------------------------------------------


async def test_without_a_token_pages_are_for_loopback_only(migrated: str) -> None:
    async with dashboard(migrated, client=("192.0.2.9", 40000), base_url="http://dash.example") as http:
        for path in ("/", "/jobs", "/login", "/static/dashboard.css"):
            refused = await http.get(path)
            assert refused.status_code == 403 and "loopback" in refused.json()["error"]["message"], path
        assert (await http.post("/login", data={"token": TOKEN})).status_code == 403
    async with dashboard(migrated, base_url="http://dash.example") as rebound:  # DNS rebinding
        assert (await rebound.get("/")).status_code == 403
    async with dashboard(migrated, client=("192.0.2.9", 40000)) as remote:
        assert (await remote.get("/")).status_code == 403
    async with dashboard(migrated) as local:
        html = page(await local.get("/"))
        assert meta(html, "backfill-csrf") == "" and "Sign out" not in html
        to_overview = await local.get("/login")
        assert to_overview.status_code == 303 and to_overview.headers["location"] == "/"


async def test_mounted_under_a_prefix_links_cookies_and_redirects_use_it(migrated: str, runner: WorkerRunner) -> None:
    async with dashboard(migrated, runner=runner, mount="/backfill") as http:
        for path in ("/backfill/", "/backfill/jobs", "/backfill/dlq", "/backfill/workers", "/backfill/queues",
                     "/backfill/cron"):  # fmt: skip
            html = page(await http.get(path))
            assert meta(html, "backfill-root") == "/backfill", path
            links = [a.get("href") or a.get("src") or a.get("action") or "" for _, a in tags(html)]
            own = [link for link in links if link.startswith("/")]
            assert own and all(link.startswith("/backfill/") for link in own), (path, own)
            assert 'href="/backfill/static/dashboard.css"' in html and 'src="/backfill/static/dashboard.js"' in html
        assert 'href="/backfill/jobs"' in page(await http.get("/backfill/"))
        assert (await http.get("/backfill/static/dashboard.js")).status_code == 200
        assert (await http.get("/backfill/api/overview", headers=JSON_ONLY)).status_code == 200

    async with dashboard(migrated, token=TOKEN, mount="/backfill") as http:
        assert login_target(await http.get("/backfill/jobs?state=waiting")) == (
            "/backfill/login",
            "/jobs?state=waiting",
        )
        form = page(await http.get("/backfill/login", params={"next": "/jobs"}))
        assert 'action="/backfill/login"' in form
        assert (await http.get("/backfill/static/dashboard.css")).status_code == 200
        signed_in = await http.post("/backfill/login", data={"token": TOKEN, "next": "/jobs?state=waiting"})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/backfill/jobs?state=waiting"
        assert session_cookie(signed_in)["path"] == "/backfill/"
        evil = await http.post("/backfill/login", data={"token": TOKEN, "next": "//evil.example"})
        assert evil.headers["location"] == "/backfill/"

        html = page(await http.get("/backfill/jobs"))  # the jar sends the cookie under its path
        csrf = meta(html, "backfill-csrf")
        assert csrf and meta(html, "backfill-root") == "/backfill"
        made = await http.post("/backfill/api/pauses", json={"kind": "lane", "name": "bulk"},
                               headers={"x-backfill-csrf": csrf})  # fmt: skip
        assert made.status_code == 200, made.text
        out = await http.post("/backfill/logout", headers={"x-backfill-csrf": csrf})
        assert out.headers["location"] == "/backfill/login" and session_cookie(out)["path"] == "/backfill/"
        assert login_target(await http.get("/backfill/")) == ("/backfill/login", "/")


async def _exception_type_link(browser: httpx.AsyncClient, pool: asyncpg.Pool[Any], task: str) -> list[str]:
    """Kill a job of ``task``; follow the link of its group under "By exception type": the entries it lists."""
    job = await BackfillClient(pool).enqueue_bulk(task, {}, max_attempts=1)
    await wait_for(lambda: _dead_entry(pool, job.id))
    html = page(await browser.get("/dlq"))
    by_type = html[html.index("<caption>By exception type</caption>") :]
    [link] = [a["href"] for tag, a in tags(by_type[: by_type.index("</table>")]) if tag == "a"]
    listed = page(await browser.get(link))
    return [a["data-entry"] for tag, a in tags(listed) if tag == "tr" and "data-entry" in a]


async def test_an_exception_type_group_links_to_its_entries(
    browser: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    assert len(await _exception_type_link(browser, pool, "dash.broken")) == 1


async def test_the_permanent_failure_group_links_to_its_entries(
    browser: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    assert len(await _exception_type_link(browser, pool, "dash.refuse")) == 1


async def test_a_remote_browser_signs_in_with_the_token(migrated: str) -> None:
    async with dashboard(migrated, token=TOKEN, client=("192.0.2.9", 40000), base_url="https://dash.example") as http:
        assert login_target(await http.get("/dlq")) == ("/login", "/dlq")
        assert "Sign in" in page(await http.get("/login"))
        forged_origin = await http.post(
            "/login", data={"token": TOKEN, "next": "/"}, headers={"origin": "https://evil.example"}
        )
        assert forged_origin.status_code == 403 and "set-cookie" not in forged_origin.headers  # login CSRF
        cross_site = await http.post("/login", data={"token": TOKEN}, headers={"sec-fetch-site": "cross-site"})
        assert cross_site.status_code == 403
        signed_in = await http.post(
            "/login", data={"token": TOKEN, "next": "/dlq"}, headers={"origin": "https://dash.example"}
        )
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/dlq"
        assert session_cookie(signed_in)["secure"] is True
        html = page(await http.get("/dlq"))
        made = await http.post(
            "/api/pauses",
            json={"kind": "queue", "name": "q"},
            headers={"x-backfill-csrf": meta(html, "backfill-csrf"), "origin": "https://dash.example"},
        )
        assert made.status_code == 200 and made.json()["paused_by"] == "alice (session, 192.0.2.9)"
