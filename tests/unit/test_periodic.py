"""The periodic-service shape: jitter within its bounds, run-once called on its timing, an outage logged by
rate and its end said once, a slow run abandoned at its timeout, and a stop at any moment by cancellation.

Real event loop, short intervals; the tests wait on what the service did (an asyncio.Event set by the run),
never on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest

from backfill.core import retry
from backfill.core.errors import ConfigurationError
from backfill.core.retry import WARNING_INTERVAL_SECONDS, ConsecutiveFailures
from backfill.core.upkeep.periodic import DEFAULT_JITTER, Interval, PeriodicService

LOGGER = "test.periodic"
# Generous: a loaded CI machine may be slow to run a callback, never this slow.
DEADLINE = 5.0


class Runs:
    """A run-once function that records its calls and fails as often as told; ``wait(n)`` waits for run n."""

    def __init__(self, *, failures: int = 0, result: object = "done") -> None:
        self.calls: list[float] = []
        self.failures_left = failures
        self.result = result
        self._changed = asyncio.Event()

    async def __call__(self) -> object:
        self.calls.append(asyncio.get_running_loop().time())
        self._changed.set()
        if self.failures_left:
            self.failures_left -= 1
            raise OSError(f"down ({len(self.calls)})")
        return self.result

    async def wait(self, count: int) -> None:
        async with asyncio.timeout(DEADLINE):
            while len(self.calls) < count:
                self._changed.clear()
                await self._changed.wait()


def service(run_once: Callable[[], Awaitable[Any]], **options: Any) -> PeriodicService[Any]:
    options.setdefault("interval", Interval.around(0.01))
    return PeriodicService(name="test", what="testing", run_once=run_once, logger=logging.getLogger(LOGGER), **options)


@contextlib.asynccontextmanager
async def running(periodic: PeriodicService[Any]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(periodic.run())
    try:
        yield task
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await cancelled(task)


async def cancelled(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it to end, within the deadline; re-raises how it ended.

    ``asyncio.wait``, not ``await task`` under a timeout: the timeout's cancellation would go to the task too,
    and a service that swallowed cancellations would then hang the suite instead of failing the test.
    """
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=DEADLINE)
    assert done, "the service did not stop when cancelled"
    task.result()


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    # This test's logger only: a pool another test left behind may log from its own loop meanwhile.
    return [record for record in caplog.records if record.name == LOGGER]


# -- the interval --------------------------------------------------------------------------------------------


def test_around_spreads_uniformly_within_the_default_twenty_percent() -> None:
    interval = Interval.around(5.0)
    assert (interval.low, interval.high) == (4.0, 6.0)
    assert interval.seconds == 5.0
    assert interval.jitter == pytest.approx(DEFAULT_JITTER)
    draws = [interval.draw() for _ in range(2000)]
    assert all(4.0 <= draw <= 6.0 for draw in draws)
    # Spread over the whole range and centred on the interval, not bunched at one end.
    assert min(draws) < 4.2 and max(draws) > 5.8
    assert statistics.fmean(draws) == pytest.approx(5.0, abs=0.1)


def test_between_keeps_the_bounds_options_give_exactly() -> None:
    # Graphile's stale-lock check, every 8 to 10 minutes: 540 s ± 11%.
    interval = Interval.between(480.0, 600.0)
    assert (interval.low, interval.high) == (480.0, 600.0)
    assert interval.seconds == 540.0
    assert interval.jitter == pytest.approx(1 / 9)
    assert all(480.0 <= interval.draw() <= 600.0 for _ in range(1000))


def test_no_jitter_is_the_interval_itself() -> None:
    interval = Interval.around(2.0, jitter=0)
    assert {interval.draw() for _ in range(100)} == {2.0}


@pytest.mark.parametrize(
    "build",
    [
        lambda: Interval.around(1.0, jitter=1.0),  # could wait zero seconds: a busy loop
        lambda: Interval.around(1.0, jitter=-0.1),
        lambda: Interval.around(0.0),
        lambda: Interval.between(3.0, 2.0),
        lambda: Interval.between(0.0, 1.0),
    ],
)
def test_intervals_that_make_no_sense_are_refused(build: Callable[[], Interval]) -> None:
    with pytest.raises(ConfigurationError):
        build()


# -- running -------------------------------------------------------------------------------------------------


async def test_run_once_is_called_again_and_again_with_its_result_handed_to_on_ran() -> None:
    runs = Runs(result={"released": 3})
    seen: list[object] = []
    async with running(service(runs, on_ran=seen.append)):
        await runs.wait(3)
    assert seen[:2] == [{"released": 3}] * 2
    # Never two at once: each run starts at least one low bound after the previous one started.
    gaps = [later - earlier for earlier, later in zip(runs.calls, runs.calls[1:], strict=False)]
    assert all(gap >= 0.0079 for gap in gaps)


async def test_the_first_run_comes_at_once_with_at_start_and_after_one_wait_without() -> None:
    loop = asyncio.get_running_loop()
    at_once = Runs()
    started = loop.time()
    async with running(service(at_once, at_start=True, interval=Interval.around(60.0))):
        await at_once.wait(1)
    assert at_once.calls[0] - started < 1.0  # far less than the 48 s the interval's low bound would take

    after_a_wait = Runs()
    started = loop.time()
    async with running(service(after_a_wait, interval=Interval.around(0.2, jitter=0))):
        await after_a_wait.wait(1)
    assert after_a_wait.calls[0] - started >= 0.199


async def test_an_outage_warns_once_says_when_it_ended_and_skips_on_ran_meanwhile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = Runs(failures=5)
    seen: list[object] = []
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        async with running(service(runs, on_ran=seen.append)) as task:
            await runs.wait(7)  # five failures, then two runs that work
            assert not task.done()  # an outage never ends the service
    logged = [(record.levelno, record.getMessage()) for record in records(caplog)]
    # Five failures within a fraction of a second: one warning, the rest at debug, then one line at the end.
    assert logged == [
        (logging.WARNING, "testing failed (1 in a row): down (1)"),
        *[(logging.DEBUG, f"testing failed ({n} in a row): down ({n})") for n in range(2, 6)],
        (logging.INFO, "testing works again"),
    ]
    # A run records its call, returns and reaches on_ran in one step of the loop: every run that worked.
    assert seen == ["done"] * (len(runs.calls) - 5)


async def test_outage_warnings_come_by_rate_not_by_failure(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The clock of the failure record only: the event loop keeps the real one.
    now = [1000.0]
    monkeypatch.setattr(retry, "time", SimpleNamespace(monotonic=lambda: now[0]))
    runs = Runs(failures=10**6)

    async def failing_as_time_passes() -> object:
        now[0] += WARNING_INTERVAL_SECONDS / 4  # four failed runs per warning interval
        return await runs()

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        async with running(service(failing_as_time_passes)):
            await runs.wait(13)
    # Runs 1, 5, 9, 13 fall at the start of the outage and then once every WARNING_INTERVAL_SECONDS.
    warned = [record.getMessage() for record in records(caplog)]
    assert warned[:4] == [f"testing failed ({n} in a row): down ({n})" for n in (1, 5, 9, 13)]


async def test_the_end_of_an_outage_can_be_told_with_the_count_of_failed_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = Runs(failures=3)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        async with running(service(runs, recovered="{what} work again after {failures} failed rounds")):
            await runs.wait(4)
    assert "testing work again after 3 failed rounds" in [record.getMessage() for record in records(caplog)]


async def test_a_shared_failure_record_counts_the_service_and_another_path_as_one_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = ConsecutiveFailures()
    failures.failed(logging.getLogger(LOGGER), "the other path", OSError("down"))  # warned here already
    runs = Runs(failures=1)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        async with running(service(runs, failures=failures)):
            await runs.wait(2)
    logged = [(record.levelno, record.getMessage()) for record in records(caplog)]
    assert logged[:3] == [
        (logging.WARNING, "the other path failed (1 in a row): down"),
        (logging.DEBUG, "testing failed (2 in a row): down (1)"),
        (logging.INFO, "testing works again"),
    ]


async def test_retry_sooner_waits_the_backoff_after_a_failure_instead_of_the_interval() -> None:
    runs = Runs(failures=3)
    quick = ConsecutiveFailures(initial=0.001, maximum=0.01)
    # An interval of a minute: only the backoff can bring the second, third and fourth runs in time.
    periodic = service(runs, at_start=True, interval=Interval.around(60.0), retry_sooner=True, failures=quick)
    async with running(periodic):
        await runs.wait(4)


async def test_a_run_past_its_timeout_is_cancelled_and_counted_as_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    cancelled = asyncio.Event()
    runs = Runs()

    async def hangs_the_first_time() -> object:
        if not runs.calls:
            await runs()
            try:
                await asyncio.Future()  # a statement stuck behind a dead socket
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return await runs()

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        async with running(service(hangs_the_first_time, timeout=0.05)):
            await runs.wait(2)
    assert cancelled.is_set()
    assert any(record.getMessage().startswith("testing failed (1 in a row)") for record in records(caplog))


# -- stopping ------------------------------------------------------------------------------------------------


async def test_cancelling_a_service_that_waits_stops_it_at_once() -> None:
    runs = Runs()
    task = asyncio.create_task(service(runs, at_start=True, interval=Interval.around(60.0)).run())
    await runs.wait(1)  # now it waits about a minute for the next run
    with pytest.raises(asyncio.CancelledError):
        await cancelled(task)
    assert len(runs.calls) == 1


async def test_cancelling_a_service_mid_run_cancels_the_run_and_logs_no_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inside = asyncio.Event()
    cleaned_up = asyncio.Event()

    async def long_run() -> None:
        inside.set()
        try:
            await asyncio.Future()
        finally:
            cleaned_up.set()

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        task = asyncio.create_task(service(long_run, at_start=True).run())
        async with asyncio.timeout(DEADLINE):
            await inside.wait()
        with pytest.raises(asyncio.CancelledError):
            await cancelled(task)
    assert cleaned_up.is_set()
    assert records(caplog) == []  # a stop is not an outage
