"""The metrics themselves, and the event listeners that feed them from a core worker.

Every label is bounded, so a deployment's series count cannot grow with its data: ``task`` is one of the
tasks named at construction or ``other``; ``lane`` one of the lanes named at construction or ``other``;
``priority_band`` one of :data:`backfill.priorities.PRIORITY_BANDS`. Named (serial) queues, which may be one
per customer, are only a label of the queue gauges, capped there (see :mod:`backfill.metrics.queue_stats`).

A job's ``lane`` label is the lane its priority and flags put it in (:func:`backfill.lanes.lane.lane_of`), the same
for the enqueue, start, outcome and dead-letter counters, so ``enqueued - succeeded - failed_permanently``
can be read per lane whichever worker ran the job.
"""

from __future__ import annotations

import importlib.metadata
import platform
import time
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime, timedelta
from itertools import repeat
from operator import attrgetter, itemgetter, sub
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Info,
    PlatformCollector,
    ProcessCollector,
)

from backfill.core import LATEST_REVISION, Event, Events, Job
from backfill.lanes.lane import BUILT_IN_LANES, lane_of
from backfill.metrics.gauges import BusySlots, QueueGauges
from backfill.metrics.timings import BatchHistogram
from backfill.priorities import priority_band

OTHER = "other"

# From 5 ms (a cache refresh) to 4 h (a nightly export): roughly 1-2.5-5 steps, 20 buckets. Used for both job
# duration and schedule-to-start lag, whose healthy range is the same milliseconds and whose sick one is hours.
DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0,
)  # fmt: skip

_JOB_LABELS = ("task", "lane", "priority_band")
_PER_JOB_CACHE_LIMIT = 10_000
_TIMING_LABELS = ("task", "lane")


class _JobSeries:
    """The counter children of one (task, lane, priority_band), looked up once and then reused."""

    __slots__ = (
        "cancelled",
        "dead_lettered",
        "enqueued",
        "failed",
        "failed_permanently",
        "retried",
        "started",
        "succeeded",
        "timed_out",
    )

    def __init__(self, metrics: BackfillMetrics, labels: tuple[str, str, str]) -> None:
        self.enqueued = metrics.jobs_enqueued.labels(*labels)
        self.started = metrics.jobs_started.labels(*labels)
        self.succeeded = metrics.jobs_succeeded.labels(*labels)
        self.failed = metrics.jobs_failed.labels(*labels)
        self.retried = metrics.jobs_retried.labels(*labels)
        self.failed_permanently = metrics.jobs_failed_permanently.labels(*labels)
        self.timed_out = metrics.jobs_timed_out.labels(*labels)
        self.dead_lettered = metrics.jobs_dead_lettered.labels(*labels)
        self.cancelled = metrics.jobs_cancelled.labels(*labels)


class _TimingSeries:
    __slots__ = ("duration", "lag")

    def __init__(self, metrics: BackfillMetrics, labels: tuple[str, str]) -> None:
        self.duration = metrics.job_duration.labels(*labels)
        self.lag = metrics.job_start_lag.labels(*labels)


class BackfillMetrics:
    """backfill's Prometheus metrics, registered in ``registry`` (default: a new, private registry).

    Pass ``prometheus_client.REGISTRY`` to expose them beside the application's own metrics; two instances on
    one registry clash (their names are the same), unless their ``namespace`` differs. A private registry (none
    passed) also gets prometheus-client's process, GC and platform collectors (``process_*``, ``python_gc_*``,
    ``python_info``), so that its ``/metrics`` describes the whole process; a registry passed in is left to
    have them or not (the default one has them already, and registering them twice would fail).

    ``tasks`` and ``lanes`` are the label values kept as they are; any other task or lane is counted as
    ``other``. With no ``tasks`` every task is ``other``, so name the ones you want to tell apart.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        tasks: Iterable[str] = (),
        lanes: Iterable[str] = BUILT_IN_LANES,
        namespace: str = "backfill",
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        if registry is None:
            ProcessCollector(registry=self.registry)
            GCCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        self.tasks: frozenset[str] = frozenset(tasks)
        self.lanes: tuple[str, ...] = tuple(dict.fromkeys(lanes))
        self.namespace = namespace
        self._lane_set = frozenset(self.lanes)

        def counter(name: str, documentation: str, labels: Iterable[str] = _JOB_LABELS) -> Counter:
            return Counter(name, documentation, labels, namespace=namespace, registry=self.registry)

        def histogram(name: str, documentation: str) -> BatchHistogram:
            timings = BatchHistogram(f"{namespace}_{name}", documentation, _TIMING_LABELS, DURATION_BUCKETS)
            self.registry.register(timings)
            return timings

        self.jobs_enqueued = counter("jobs_enqueued", "Jobs enqueued (counted by the client after its commit)")
        self.jobs_started = counter("jobs_started", "Job attempts started")
        self.jobs_succeeded = counter("jobs_succeeded", "Job attempts that succeeded")
        self.jobs_failed = counter("jobs_failed", "Job attempts that failed (every failed attempt, retried or not)")
        self.jobs_retried = counter("jobs_retried", "Failed job attempts that leave another attempt (a retry)")
        self.jobs_failed_permanently = counter(
            "jobs_failed_permanently", "Failed job attempts that leave no attempt (out of attempts, or permanent)"
        )
        self.jobs_timed_out = counter("jobs_timed_out", "Job attempts cancelled at their deadline (also failed)")
        self.jobs_dead_lettered = counter(
            "jobs_dead_lettered", "Permanently failed jobs moved to the dead-letter queue"
        )
        self.jobs_cancelled = counter(
            "jobs_cancelled", "Jobs an operator cancelled that a worker of this process held (running or claimed)"
        )
        self.paused = Gauge(
            "paused",
            "1 for each pause in force (kind: lane, queue or task), as this process last read them",
            ("kind", "name"),
            namespace=namespace,
            registry=self.registry,
        )
        self.job_duration = histogram("job_duration_seconds", "How long job attempts ran, failed ones included")
        self.job_start_lag = histogram(
            "job_start_lag_seconds", "From a job's run_at to its attempt's start (0 when the clocks disagree)"
        )
        self.lost_leases = counter(
            "lost_lease_jobs", "Job results discarded because the job's lock was no longer ours", ("lane", "action")
        )
        self.recovered_jobs = counter(
            "recovered_jobs",
            "Jobs recovered from dead workers: released for another attempt, or failed as probable poison pills",
            ("outcome",),
        )
        self.dead_workers = counter("dead_workers", "Workers declared dead by a sweep (their jobs recovered)", ())
        self.loop_blocks = counter("event_loop_blocks", "Times something blocked the event loop past the threshold", ())
        self.loop_blocked_seconds = counter(
            "event_loop_blocked_seconds", "Seconds the event loop was reported blocked", ()
        )
        self.build_info = Info("build", "What is running: backfill's version, Python's, the Graphile schema revision",
                               namespace=namespace, registry=self.registry)  # fmt: skip
        self.build_info.info(_build_labels())
        self.queue_gauges = QueueGauges(namespace)
        self.registry.register(self.queue_gauges)
        self.busy_slots = BusySlots(namespace)
        self.registry.register(self.busy_slots)

        self._series: dict[tuple[str, str, str], _JobSeries] = {}
        self._timings: dict[tuple[str, str], _TimingSeries] = {}
        # (task, priority, flags) -> its series: one dict lookup per event on the hot path instead of working
        # out three labels. Bounded, since priorities and flags are the enqueuers' to choose.
        self._per_job: dict[tuple[str, int, Any], tuple[_JobSeries, _TimingSeries]] = {}
        self._bands: dict[int, str] = {}

    # -- labels -----------------------------------------------------------------------------------------------

    def task_label(self, task: str) -> str:
        return task if task in self.tasks else OTHER

    def lane_label(self, lane: str) -> str:
        return lane if lane in self._lane_set else OTHER

    def band_label(self, priority: int) -> str:
        band = self._bands.get(priority)
        if band is None:  # at most one entry per distinct priority (a smallint): bounded
            band = self._bands[priority] = priority_band(priority)
        return band

    def _series_of(self, task: str, priority: int, flags: Collection[str] | None) -> tuple[_JobSeries, _TimingSeries]:
        key = (task, priority, flags)
        found = self._per_job.get(key)
        if found is None:
            if len(self._per_job) >= _PER_JOB_CACHE_LIMIT:
                self._per_job.clear()
            found = self._per_job[key] = (
                self._job_series(task, priority, flags),
                self._timing(task, priority, flags),
            )
        return found

    def _job_series(self, task: str, priority: int, flags: Collection[str] | None) -> _JobSeries:
        key = (self.task_label(task), self.lane_label(lane_of(priority, flags)), self.band_label(priority))
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _JobSeries(self, key)
        return series

    def _timing(self, task: str, priority: int, flags: Collection[str] | None) -> _TimingSeries:
        key = (self.task_label(task), self.lane_label(lane_of(priority, flags)))
        timing = self._timings.get(key)
        if timing is None:
            timing = self._timings[key] = _TimingSeries(self, key)
        return timing

    # -- producers outside the worker -------------------------------------------------------------------------

    def job_enqueued(self, task: str, priority: int, flags: Collection[str] | None, count: int = 1) -> None:
        """Count ``count`` jobs enqueued; call it once the enqueue has committed."""
        self._job_series(task, priority, flags).enqueued.inc(count)

    def dead_lettered(self, task: str, priority: int, flags: Collection[str] | None, count: int = 1) -> None:
        """Count ``count`` jobs moved to the dead-letter queue; call it once the move has committed."""
        self._job_series(task, priority, flags).dead_lettered.inc(count)

    def pauses_in_force(self, pauses: Iterable[tuple[str, str]]) -> None:
        """Set ``paused`` to the pauses in force now, as (kind, name) pairs; those lifted disappear."""
        self.paused.clear()
        for kind, name in pauses:
            self.paused.labels(kind, name).set(1)

    # -- a worker's events ------------------------------------------------------------------------------------

    def observe_worker(
        self,
        events: Events,
        lane: str,
        *,
        busy_slots: Callable[[], int] | None = None,
        slots: int | None = None,
    ) -> Callable[[], None]:
        """Count what the worker emitting ``events`` does; returns the function that stops counting.

        ``lane`` is the lane that worker runs: it labels busy slots and lost leases (job counters use each
        job's own lane). ``busy_slots`` (``lambda: worker.busy_slots``) is read at scrape time; ``slots``
        (the worker's concurrency) is added to ``lane_slots``, so that busy / slots is the lane's use. Observe each
        ``Events`` once: sweeps and loop blocks are counted per observer.

        Jobs are counted from ``attempts:batch``, which leaves the worker its fast path: per job, the listener
        looks up the job's series (cached by task, priority and flags) and bins its timings; each counter is
        added to once per series and batch.
        """
        lane_label = self.lane_label(lane)
        series_of = self._series_of

        def on_attempts(event: Event) -> None:
            # Per series, each counter is added to once and each histogram fed a list: the per-job work is the
            # grouping and the lag's arithmetic, done by map() over C functions (see _by_series).
            started = event["started"]
            if started:
                now_wall = time.time()
                now = datetime.fromtimestamp(now_wall, UTC)
            for key, pairs in _by_series(started).items():
                series, timing = series_of(*key)
                series.started.inc(len(pairs))
                ordered, total, bounds = _start_lags(pairs, now, now_wall)
                timing.lag.observe_sorted(ordered, total, bounds)
            for key, pairs in _by_series(event["succeeded"]).items():
                series, timing = series_of(*key)
                series.succeeded.inc(len(pairs))
                timing.duration.observe_many(list(map(_second, pairs)))
            for failure in event["failed"]:  # rare enough to count one by one
                job = failure.job
                series, timing = series_of(job.task_identifier, job.priority, job.flags)
                series.failed.inc()
                if failure.duration is not None:  # None: cut short before the handler's time was measured
                    timing.duration.observe(failure.duration)
                (series.failed_permanently if failure.final else series.retried).inc()
                if failure.timed_out:
                    series.timed_out.inc()

        def on_cancelled(event: Event) -> None:
            job = event["job"]
            series_of(job.task_identifier, job.priority, job.flags)[0].cancelled.inc()

        def on_lost_lease(event: Event) -> None:
            self.lost_leases.labels(lane_label, str(event["action"])).inc(len(event["job_ids"]))

        def on_recovered(event: Event) -> None:
            self.recovered_jobs.labels("released").inc(len(event["released_jobs"]))
            self.recovered_jobs.labels("poisoned").inc(len(event["poisoned_jobs"]))
            self.dead_workers.inc(len(event["dead_workers"]))

        def on_blocked(event: Event) -> None:
            self.loop_blocks.inc()
            self.loop_blocked_seconds.inc(max(float(event["seconds"]), 0.0))

        stops = [
            events.on("attempts:batch", on_attempts),
            events.on("job:lostLease", on_lost_lease),
            events.on("job:cancelled", on_cancelled),
            events.on("sweep:recovered", on_recovered),
            events.on("loop:blocked", on_blocked),
        ]
        if busy_slots is not None or slots is not None:
            stops.append(self.busy_slots.add(lane_label, busy_slots, slots))

        def stop() -> None:
            while stops:
                stops.pop()()

        return stop


_first, _second = itemgetter(0), itemgetter(1)
_series_key = attrgetter("task_identifier", "priority", "flags")  # what _series_of caches a job's series by
_run_at = attrgetter("run_at")


_LAG_BOUNDS = tuple(timedelta(seconds=bound) for bound in DURATION_BUCKETS)
_NO_TIME = timedelta(0)
_LAG_APPROXIMATION = 0.001  # seconds a batch's starts may precede it and still be binned as of the batch


def _start_lags(
    pairs: list[tuple[Job, float]], now: datetime, now_wall: float
) -> tuple[list[timedelta] | list[float], float, tuple[timedelta, ...] | None]:
    """The start lags of ``(job, started_at)`` pairs, sorted, their sum in seconds, and the bounds to bin them
    by (``None``: the histogram's own).

    A lag is the job's start (our wall clock) minus its ``run_at`` (the database's); one that reads negative
    (our clock behind the database's) counts as none. Turning each run_at into seconds (``datetime.timestamp``)
    was half of what metrics cost per job, so when every job of the batch started within a millisecond of
    ``now`` (the usual case: a batch goes out on the loop turn after its attempts started), the lags are taken
    as ``timedelta`` values as of ``now``, a subtraction in C, binned against bounds of that type; the sum is
    made exact by taking off how long before ``now`` each job started. A bucket is then that of the lag as of
    ``now``, at most a millisecond above the job's own. Otherwise (the loop was held up), each lag is exact."""
    if now_wall - min(map(_second, pairs)) > _LAG_APPROXIMATION:
        lags = sorted(map(sub, map(_second, pairs), map(datetime.timestamp, map(_run_at, map(_first, pairs)))))
        if lags[0] < 0.0:
            lags = [lag if lag > 0.0 else 0.0 for lag in lags]
        return lags, sum(lags), None
    ordered = sorted(map(sub, repeat(now), map(_run_at, map(_first, pairs))))
    if ordered[0] < _NO_TIME:
        ordered = [lag if lag > _NO_TIME else _NO_TIME for lag in ordered]
    before_now = len(pairs) * now_wall - sum(map(_second, pairs))
    total = sum(ordered, _NO_TIME).total_seconds() - before_now
    return ordered, total if total > 0.0 else 0.0, _LAG_BOUNDS


def _by_series(pairs: list[tuple[Job, Any]]) -> dict[tuple[str, int, Any], list[tuple[Job, Any]]]:
    """``(job, value)`` pairs grouped by the key of the job's series. A batch is mostly one series (one task,
    priority and flag set); that case is found with list methods alone, without a Python step per job."""
    if not pairs:
        return {}
    keys = list(map(_series_key, map(_first, pairs)))
    first = keys[0]
    if keys.count(first) == len(keys):
        return {first: pairs}
    groups: dict[tuple[str, int, Any], list[tuple[Job, Any]]] = {}
    for key, pair in zip(keys, pairs, strict=True):
        group = groups.get(key)
        if group is None:
            groups[key] = [pair]
        else:
            group.append(pair)
    return groups


def _build_labels() -> dict[str, str]:
    try:
        version = importlib.metadata.version("backfill")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "unknown"
    return {
        "version": version,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "graphile_schema_revision": str(LATEST_REVISION),
    }
