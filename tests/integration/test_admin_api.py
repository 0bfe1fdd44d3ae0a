"""Every endpoint of the admin API against a real PostgreSQL, with a real WorkerRunner in this process running
the jobs: what each answers, what each changes, and the audit row each change leaves.

The API is called in-process through httpx's ASGI transport from a loopback address (no token needed); the
security rules have their own tests (test_admin_security.py), and the served port its own (test_admin_process.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from backfill.admin import AdminApi
from backfill.client.async_client import BackfillClient
from backfill.core import SchemaName, TaskRegistry, cron_item
from backfill.migrations import migrate_all
from backfill.runner import WorkerRunner
from tests.support.admin import runner_settings
from tests.support.waiting import wait_for

SCHEMA = SchemaName("graphile_worker")
JOBS = "graphile_worker._private_jobs"


class Handlers:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started: set[str] = set()
        self.cancelled: set[str] = set()


def _registry(handlers: Handlers) -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("api.ok")
    async def ok(payload: Any) -> None:
        handlers.started.add(str(payload.get("name")))

    @registry.task("api.broken")
    async def broken(payload: Any) -> None:
        raise KeyError("email")

    @registry.task("api.hang")
    async def hang(payload: Any) -> None:
        handlers.started.add(str(payload.get("name")))
        try:
            await handlers.release.wait()
        except asyncio.CancelledError:
            handlers.cancelled.add(str(payload.get("name")))
            raise

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
    crontab = [cron_item("*/5 * * * *", "api.ok", identifier="every-five", fill=timedelta(hours=1))]
    runner = WorkerRunner(settings, tasks=_registry(handlers), crontab=crontab)
    async with runner:
        yield runner


@pytest.fixture
async def api(migrated: str, runner: WorkerRunner) -> AsyncIterator[httpx.AsyncClient]:
    admin = AdminApi(migrated, runner=runner)
    transport = httpx.ASGITransport(app=admin, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        client.headers["x-backfill-operator"] = "alice"
        yield client
    await admin.close()


async def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


async def _audit(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    return list((await _ok(await api.get("/api/audit")))["entries"])


async def _gone(pool: asyncpg.Pool[Any], job_id: int) -> bool:
    return bool(await pool.fetchval(f"select count(*) = 0 from {JOBS} where id = $1", job_id))


async def test_overview_counts_lanes_queues_tasks_workers_and_throughput(
    api: httpx.AsyncClient, pool: asyncpg.Pool[Any], runner: WorkerRunner, handlers: Handlers
) -> None:
    client = BackfillClient(pool)
    await client.enqueue_bulk("api.hang", {"name": "h"})
    for i in range(3):
        await client.enqueue_fast("api.ok", {"name": f"ok{i}"})
    await wait_for(lambda: _true(handlers.started >= {"h", "ok0", "ok1", "ok2"}))
    await client.enqueue_bulk("api.ok", {"name": "later"}, delay=3600)
    await client.enqueue_bulk("api.other", {}, queue="tenant-1")  # no runner serves this task: it stays ready

    async def throughput_recorded() -> Any:
        body = await _ok(await api.get("/api/overview"))
        fast = next(lane for lane in body["lanes"] if lane["name"] == "fast")
        return body if fast["throughput"]["5m"]["succeeded"] >= 3 else None

    body = await wait_for(throughput_recorded, timeout=15)  # runners flush their counts every 5 s
    lanes = {lane["name"]: lane for lane in body["lanes"]}
    assert (lanes["fast"]["slots"], lanes["bulk"]["slots"]) == (2, 3)
    assert lanes["bulk"]["busy"] >= 1 and lanes["bulk"]["jobs"]["running"] >= 1
    assert lanes["bulk"]["jobs"]["scheduled"] == 1
    assert lanes["fast"]["throughput"]["5m"]["failure_rate"] == 0.0
    assert body["workers"]["alive"] == 2 and body["workers"]["dead"] == 0
    assert lanes["bulk"]["ready"] >= 1 and lanes["bulk"]["oldest_ready_seconds"] >= 0
    assert [(q["name"], q["ready"], q["paused"]) for q in body["queues"]] == [("tenant-1", 1, False)]
    assert ("api.other", 1) in [(t["name"], t["ready"]) for t in body["tasks"]]
    assert not any(lane["paused"] for lane in body["lanes"])
    handlers.release.set()


async def test_jobs_list_pages_by_id_without_repeats_and_filters(
    api: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    await pool.execute(
        "select graphile_worker.add_job('api.unrun', '{\"secret\": 1}', run_at => now() + interval '1 day')"
    )
    for _ in range(4):
        await pool.execute("select graphile_worker.add_job('api.unrun', '{}', run_at => now() + interval '1 day')")
    await pool.execute("select graphile_worker.add_job('api.other', '{}', run_at => now() + interval '1 day')")
    seen: list[int] = []
    after: int | None = None
    while True:
        params: dict[str, Any] = {"task": "api.unrun", "limit": 2}
        if after is not None:
            params["after"] = after
        page = await _ok(await api.get("/api/jobs", params=params))
        seen += [job["id"] for job in page["jobs"]]
        assert all("payload" not in job for job in page["jobs"])  # on request only
        if after is None:  # a job added meanwhile lands on a later page, never shifts this walk
            await pool.execute("select graphile_worker.add_job('api.unrun', '{}', run_at => now() + interval '1 day')")
        after = page["next_after"]
        if after is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 6
    with_payload = await _ok(
        await api.get("/api/jobs", params={"task": "api.unrun", "limit": 1, "include_payload": "true"})
    )
    assert with_payload["jobs"][0]["payload"] == {"secret": 1}
    scheduled = await _ok(await api.get("/api/jobs", params={"state": "scheduled", "task": "api.other"}))
    assert [job["task_identifier"] for job in scheduled["jobs"]] == ["api.other"]


async def test_jobs_list_filters_by_error_text_creation_time_and_lane(
    api: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    client = BackfillClient(pool)
    # An hour away, so the runner leaves them alone while they are listed.
    fast = await client.enqueue_fast("api.find", {}, delay=3600)
    bulk = await client.enqueue_bulk("api.find", {}, delay=3600)
    custom = await client.enqueue("api.find", {}, lane="reports", delay=3600)
    old = await client.enqueue_bulk("api.find", {}, delay=3600)
    await pool.execute(f"update {JOBS} set last_error = 'Timeout: 100% of the Budget_A used' where id = $1", fast.id)
    await pool.execute(f"update {JOBS} set last_error = 'timeout: budget a' where id = $1", bulk.id)
    base = datetime(2024, 5, 1, 12, tzinfo=UTC)
    await pool.execute(f"update {JOBS} set created_at = $2 where id = $1", old.id, base)
    await pool.execute(f"update {JOBS} set created_at = $2 where id = $1", custom.id, base + timedelta(hours=1))

    async def listed(**params: Any) -> list[int]:
        page = await _ok(await api.get("/api/jobs", params={"task": "api.find", **params}))
        return [job["id"] for job in page["jobs"]]

    assert await listed() == [fast.id, bulk.id, custom.id, old.id]
    # Any case, and literally: "%" and "_" are characters to find, not wildcards.
    assert await listed(error="TIMEOUT") == [fast.id, bulk.id]
    assert await listed(error="100% of") == [fast.id]
    assert await listed(error="budget_a") == [fast.id]
    assert await listed(error="budget%a") == []
    # After is inclusive, before exclusive; the offset is honoured (14:00+02:00 is 12:00 UTC).
    assert await listed(created_after=base.isoformat(), created_before=(base + timedelta(hours=1)).isoformat()) == [
        old.id
    ]
    assert await listed(created_before="2024-05-01T14:00:00+02:00") == []
    assert await listed(created_after="2024-05-01T14:00:01+02:00") == [fast.id, bulk.id, custom.id]
    assert await listed(created_after=base.isoformat(), created_before=(base + timedelta(days=1)).isoformat()) == [
        custom.id,
        old.id,
    ]
    # A lane is what its workers fetch: a custom lane's jobs are in neither built-in lane.
    assert await listed(lane="fast") == [fast.id]
    assert await listed(lane="bulk") == [bulk.id, old.id]
    assert await listed(lane="reports") == [custom.id]
    assert await listed(lane="nobody-uses-this") == []
    assert await listed(lane="bulk", error="timeout", created_after=base.isoformat()) == [bulk.id]

    for name, value, problem in (
        ("created_after", "not-a-time", "ISO 8601"),
        ("created_before", "2024-05-01T12:00:00", "UTC offset"),
        ("lane", "x" * 129, "lane"),
        ("lane", "Not A Lane!", "lane"),  # no lane can have this name: a typo, said so rather than an empty list
        ("error", "a\x00b", "NUL"),
    ):
        refused = await api.get("/api/jobs", params={name: value})
        assert refused.status_code == 400, (name, refused.text)
        assert refused.json()["error"]["field"] == name and problem in refused.json()["error"]["message"]
    document = await _ok(await api.get("/api/openapi.json"))
    described = {param["name"] for param in document["paths"]["/api/jobs"]["get"]["parameters"]}
    assert {"error", "created_after", "created_before", "lane"} <= described


async def test_a_job_shows_its_error_history(api: httpx.AsyncClient, pool: asyncpg.Pool[Any]) -> None:
    job = await BackfillClient(pool).enqueue_bulk("api.broken", {}, max_attempts=5)
    await wait_for(
        lambda: pool.fetchval("select count(*) >= 1 from graphile_worker.backfill_job_errors where job_id = $1", job.id)
    )
    shown = await _ok(await api.get(f"/api/jobs/{job.id}"))
    assert shown["job"]["id"] == job.id and "payload" not in shown["job"]
    [first, *_] = shown["errors"]
    assert first["attempt"] == 1 and first["exception_type"] == "KeyError" and "KeyError" in first["traceback"]
    missing = await api.get("/api/jobs/99999999")
    assert missing.status_code == 404 and "job 99999999 not found" in missing.json()["error"]["message"]


async def test_reschedule_priority_retry_and_delete_change_the_job_and_are_audited(
    api: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    job_id = await pool.fetchval(
        "select id from graphile_worker.add_job('api.unrun', '{}', run_at => now() + interval '1 day', "
        "max_attempts => 2)"
    )
    later = datetime.now(UTC) + timedelta(days=2)
    moved = await _ok(
        await api.post(f"/api/jobs/{job_id}/reschedule", json={"run_at": later.isoformat(), "max_attempts": 4})
    )
    assert moved["job"]["max_attempts"] == 4 and datetime.fromisoformat(moved["job"]["run_at"]) == later
    assert (await _ok(await api.post(f"/api/jobs/{job_id}/priority", json={"priority": 7})))["job"]["priority"] == 7
    await pool.execute(f"update {JOBS} set attempts = 4, last_error = 'x' where id = $1", job_id)  # failed for good
    retried = await _ok(await api.post(f"/api/jobs/{job_id}/retry", json={}))
    assert retried["job"]["attempts"] == 0 and datetime.fromisoformat(retried["job"]["run_at"]) <= datetime.now(UTC)
    deleted = await api.delete(f"/api/jobs/{job_id}")
    assert deleted.status_code == 200 and deleted.json() == {"deleted": [job_id]}
    assert await _gone(pool, job_id)
    actions = [(entry["action"], entry["count"], entry["target"]["ids"]) for entry in await _audit(api)]
    assert actions[:4] == [
        ("jobs.delete", 1, [job_id]),
        ("jobs.retry", 1, [job_id]),
        ("jobs.priority", 1, [job_id]),
        ("jobs.reschedule", 1, [job_id]),
    ]
    assert (await _audit(api))[0]["actor"] == "alice (loopback, 127.0.0.1)"
    assert (await api.post("/api/jobs/99999999/priority", json={"priority": 1})).status_code == 404


async def test_a_running_job_cannot_be_deleted_but_can_be_cancelled(
    api: httpx.AsyncClient, pool: asyncpg.Pool[Any], handlers: Handlers
) -> None:
    job = await BackfillClient(pool).enqueue_bulk("api.hang", {"name": "running"})
    await wait_for(lambda: _true("running" in handlers.started))
    refused = await api.delete(f"/api/jobs/{job.id}")
    assert refused.status_code == 409 and "cancel it instead" in refused.json()["error"]["message"]
    answer = await _ok(await api.post(f"/api/jobs/{job.id}/cancel", json={"reason": "stuck"}))
    assert answer["answer"]["outcome"] == "requested"
    await wait_for(lambda: _true("running" in handlers.cancelled))
    await wait_for(lambda: _gone(pool, job.id))

    async def cancelled() -> bool:
        listed = await _ok(await api.get("/api/cancellations", params={"state": "cancelled"}))
        return any(c["job_id"] == job.id for c in listed["cancellations"])

    await wait_for(cancelled)
    shown = await _ok(await api.get(f"/api/jobs/{job.id}"))  # gone, but its cancellation is there to see
    assert shown["job"] is None and shown["cancellation"]["reason"] == "stuck"
    assert shown["cancellation"]["requested_by"] == "alice (loopback, 127.0.0.1)"
    again = await api.post(f"/api/jobs/{job.id}/cancel", json={})
    assert again.status_code == 200 and again.json()["answer"]["outcome"] == "already"


async def test_bulk_cancel_by_filter_with_a_dry_run_first(api: httpx.AsyncClient, pool: asyncpg.Pool[Any]) -> None:
    for _ in range(3):
        await pool.execute("select graphile_worker.add_job('api.unrun', '{}', run_at => now() + interval '1 day')")
    keep = await pool.fetchval(
        "select id from graphile_worker.add_job('api.other', '{}', run_at => now() + interval '1 day')"
    )
    dry = await _ok(await api.post("/api/jobs/cancel", json={"filter": {"task": "api.unrun"}, "dry_run": True}))
    assert dry == {"dry_run": True, "count": 3}
    assert await pool.fetchval(f"select count(*) from {JOBS}") == 4
    done = await _ok(await api.post("/api/jobs/cancel", json={"filter": {"task": "api.unrun"}, "reason": "cleanup"}))
    assert [a["outcome"] for a in done["answers"]] == ["cancelled"] * 3 and done["more"] is False
    assert [row["id"] for row in await pool.fetch(f"select id from {JOBS}")] == [keep]
    [entry, dry_entry, *_] = await _audit(api)
    assert (entry["action"], entry["count"], entry["dry_run"], entry["target"]) == (
        "jobs.cancel", 3, False, {"filter": {"task": "api.unrun"}}
    )  # fmt: skip
    assert (dry_entry["count"], dry_entry["dry_run"]) == (3, True)


async def test_dead_letter_entries_listed_shown_requeued_and_deleted(
    api: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    client = BackfillClient(pool)
    dead = [await client.enqueue_bulk("api.broken", {"n": i}, max_attempts=1) for i in range(3)]
    await wait_for(lambda: pool.fetchval("select count(*) = 3 from graphile_worker.backfill_dlq"))
    listed = await _ok(await api.get("/api/dlq", params={"task": "api.broken", "limit": 2}))
    assert len(listed["entries"]) == 2 and listed["next_cursor"]
    rest = await _ok(await api.get("/api/dlq", params={"task": "api.broken", "after": listed["next_cursor"]}))
    entries = [*listed["entries"], *rest["entries"]]
    assert sorted(e["job_id"] for e in entries) == sorted(job.id for job in dead)
    shown = await _ok(await api.get(f"/api/dlq/{entries[0]['id']}"))
    assert shown["errors"][0]["error"].startswith("KeyError")
    assert (await _ok(await api.get("/api/dlq/stats")))["dead"] == 3

    dry = await _ok(await api.post("/api/dlq/requeue", json={"ids": [entries[0]["id"]], "dry_run": True}))
    assert dry["dry_run"] is True and len(dry["requeued"]) == 1
    assert await pool.fetchval("select count(*) from graphile_worker.backfill_dlq where state = 'dead'") == 3
    requeued = await _ok(await api.post("/api/dlq/requeue", json={"ids": [entries[0]["id"]], "note": "fixed"}))
    assert requeued["requeued"][0]["job_id"] is not None
    # The handler still fails: the requeued job dies again and returns to its entry.
    await wait_for(
        lambda: pool.fetchval(
            "select state = 'dead' and requeue_count = 1 from graphile_worker.backfill_dlq where id = $1",
            entries[0]["id"],
        )
    )
    removed = await _ok(await api.post("/api/dlq/delete", json={"filter": {"task": "api.broken"}}))
    assert len(removed["deleted"]) == 3
    assert await pool.fetchval("select count(*) from graphile_worker.backfill_dlq") == 0
    assert [e["action"] for e in (await _audit(api))[:3]] == ["dlq.delete", "dlq.requeue", "dlq.requeue"]
    bad_cursor = await api.get("/api/dlq", params={"after": "not-a-cursor"})
    assert bad_cursor.status_code == 400 and bad_cursor.json()["error"]["field"] == "after"


async def test_dead_letter_entries_filtered_by_exception_type_in_the_query_and_the_body(
    api: httpx.AsyncClient, pool: asyncpg.Pool[Any]
) -> None:
    client = BackfillClient(pool)
    dead = [await client.enqueue_bulk("api.broken", {"n": i}, max_attempts=1) for i in range(3)]
    await wait_for(lambda: pool.fetchval("select count(*) = 3 from graphile_worker.backfill_dlq"))
    rows = await pool.fetch("select id, job_id from graphile_worker.backfill_dlq where exception_type = 'KeyError'")
    ids = {row["job_id"]: row["id"] for row in rows}
    key_error, upstream, node = (ids[job.id] for job in dead)
    # One entry of another type (its error text does not name it), one a Node worker made (no type recorded).
    await pool.execute(
        "update graphile_worker.backfill_dlq set exception_type = 'myapp.errors.Upstream', last_error = 'gone'"
        " where id = $1",
        upstream,
    )
    await pool.execute("update graphile_worker.backfill_dlq set exception_type = null where id = $1", node)

    async def listed(**params: Any) -> set[int]:
        return {e["id"] for e in (await _ok(await api.get("/api/dlq", params=params)))["entries"]}

    assert await listed(exception_type="KeyError") == {key_error}
    assert await listed(exception_type="myapp.errors.Upstream") == {upstream}
    assert await listed(exception_type="myapp.errors.Upstream", task="api.other") == set()
    assert await listed(exception_type="keyerror") == set()
    assert await listed(exception_type="(unknown)") == set()
    assert await listed(exception_type="") == {key_error, upstream, node}  # empty: no filter, as for the others
    by_type = {g["value"]: g["count"] for g in (await _ok(await api.get("/api/dlq/stats")))["by_exception_type"]}
    assert by_type == {"KeyError": 1, "myapp.errors.Upstream": 1, "(unknown)": 1}

    body = {"filter": {"exception_type": "myapp.errors.Upstream"}, "dry_run": True}
    dry = await _ok(await api.post("/api/dlq/requeue", json=body))
    assert dry["dry_run"] is True and [r["entry_id"] for r in dry["requeued"]] == [upstream]
    dry = await _ok(await api.post("/api/dlq/delete", json={"filter": {"exception_type": "KeyError"}, "dry_run": True}))
    assert dry["deleted"] == [key_error]
    assert await pool.fetchval("select count(*) from graphile_worker.backfill_dlq where state = 'dead'") == 3
    removed = await _ok(await api.post("/api/dlq/delete", json={"filter": {"exception_type": "KeyError"}}))
    assert removed["deleted"] == [key_error]
    [audited, *_] = await _audit(api)
    assert (audited["action"], audited["target"]) == ("dlq.delete", {"filter": {"exception_type": "KeyError"}})
    assert await listed() == {upstream, node}

    for name, value, problem in (("exception_type", "Key\x00Error", "NUL"), ("exception_type", "E" * 1001, "1000")):
        refused = await api.get("/api/dlq", params={name: value})
        assert refused.status_code == 400, (name, refused.text)
        assert refused.json()["error"]["field"] == name and problem in refused.json()["error"]["message"]
    for path in ("/api/dlq/requeue", "/api/dlq/delete"):
        bad: tuple[tuple[object, str], ...] = (("Key\x00Error", "NUL"), ("E" * 1001, "1000"), (7, "string"))
        for given, problem in bad:
            refused = await api.post(path, json={"filter": {"exception_type": given}, "dry_run": True})
            assert refused.status_code == 400, (path, refused.text)
            error = refused.json()["error"]
            assert error["field"] == "filter.exception_type" and problem in error["message"], (path, error)
    # The NUL check holds for the body filter's other text fields too (they reached the database before).
    refused = await api.post("/api/dlq/delete", json={"filter": {"task": "a\x00b"}, "dry_run": True})
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "filter.task"
    assert await pool.fetchval("select count(*) from graphile_worker.backfill_dlq") == 2

    document = await _ok(await api.get("/api/openapi.json"))
    described = {param["name"] for param in document["paths"]["/api/dlq"]["get"]["parameters"]}
    assert "exception_type" in described
    for path in ("/api/dlq/requeue", "/api/dlq/delete"):
        schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert "exception_type" in schema["properties"]["filter"]["properties"]


async def test_workers_and_cron(api: httpx.AsyncClient, runner: WorkerRunner) -> None:
    workers = (await _ok(await api.get("/api/workers")))["workers"]
    assert sorted(w["lane"] for w in workers if w["registered"]) == ["bulk", "fast"]
    assert all(w["alive"] for w in workers)
    schedules = (await _ok(await api.get("/api/cron")))["schedules"]
    [every_five] = [s for s in schedules if s["identifier"] == "every-five"]
    assert (every_five["task"], every_five["pattern"], every_five["fill_seconds"]) == ("api.ok", "*/5 * * * *", 3600)
    upcoming = datetime.fromisoformat(every_five["next_run"])
    assert upcoming.minute % 5 == 0 and timedelta(0) < upcoming - datetime.now(UTC) <= timedelta(minutes=5)


async def test_pauses_through_the_api_reach_the_runner(
    api: httpx.AsyncClient, pool: asyncpg.Pool[Any], runner: WorkerRunner, handlers: Handlers
) -> None:
    made = await _ok(await api.post("/api/pauses", json={"kind": "lane", "name": "bulk", "reason": "deploy"}))
    assert (made["kind"], made["name"], made["paused_by"]) == ("lane", "bulk", "alice (loopback, 127.0.0.1)")
    await wait_for(lambda: _true(runner.workers["bulk"].fetch_pause.everything))
    assert (await _ok(await api.get("/api/pauses")))["pauses"][0]["reason"] == "deploy"
    overview = await _ok(await api.get("/api/overview"))
    assert {lane["name"]: lane["paused"] for lane in overview["lanes"]}["bulk"] is True
    lifted = await api.delete("/api/pauses/lane/bulk")
    assert lifted.status_code == 200 and lifted.json()["name"] == "bulk"
    await wait_for(lambda: _true(not runner.workers["bulk"].fetch_pause.everything))
    assert (await api.delete("/api/pauses/lane/bulk")).status_code == 404
    assert [e["action"] for e in (await _audit(api))[:3]] == ["resume", "resume", "pause"]


async def test_the_openapi_description_lists_every_endpoint(api: httpx.AsyncClient) -> None:
    document = await _ok(await api.get("/api/openapi.json"))
    assert document["openapi"] == "3.1.0"
    operations = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert ("GET", "/api/overview") in operations and ("POST", "/api/jobs/cancel") in operations
    assert len(operations) == len(AdminApi("postgresql://unused").endpoints)
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


async def _true(value: bool) -> bool:
    return value


async def test_the_api_connections_run_without_jit_and_with_a_statement_timeout(migrated: str) -> None:
    """Its statements are bounded or page through an index: JIT only adds compile time (a generic plan of the job
    list took 0.4-3 s with it over a million jobs), and a filter that walks a big table must not hold a
    connection without end. Named, so an operator can tell its connections apart in pg_stat_activity."""
    admin = AdminApi(migrated)
    try:
        pool = await admin._pool.get()
        async with pool.acquire() as connection:
            settings = await connection.fetchrow(
                "select current_setting('jit') as jit, current_setting('statement_timeout') as timeout,"
                " current_setting('application_name') as name"
            )
        assert settings is not None and tuple(settings) == ("off", "30s", "backfill-admin")
    finally:
        await admin.close()
