"""Gauges read at scrape time: busy slots, and the queue snapshot a :class:`QueueStatsCollector` last took.

Both are custom collectors rather than ``Gauge`` objects. Busy slots are read from the workers when Prometheus
scrapes, never pushed. The queue gauges are replaced as one snapshot, so a scrape never mixes two rounds and a
lane or queue that emptied is never left at its last value: what a round did not report is simply not in the
next snapshot (see :mod:`backfill.metrics.queue_stats` for how emptied series go to 0 first).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

logger = logging.getLogger("backfill.metrics")


@dataclass(frozen=True, slots=True)
class WaitingJobs:
    """Jobs waiting in one lane or named queue: ``ready`` (runnable now: due, unlocked, attempts left),
    ``scheduled`` (due later) and the age in seconds of the oldest ready one (0 when none is ready)."""

    ready: int = 0
    scheduled: int = 0
    oldest_ready_age: float = 0.0

    def plus(self, other: WaitingJobs) -> WaitingJobs:
        """Both together: counts add up, the oldest age is the larger."""
        return WaitingJobs(
            self.ready + other.ready,
            self.scheduled + other.scheduled,
            max(self.oldest_ready_age, other.oldest_ready_age),
        )


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """One round of queue statistics, with labels already bounded (see ``QueueStatsCollector``)."""

    lanes: Mapping[str, WaitingJobs] = field(default_factory=dict)
    queues: Mapping[str, WaitingJobs] = field(default_factory=dict)
    dead_letters: int = 0  # rows of backfill_dlq in state 'dead'; 0 while that table does not exist
    dead_letters_by_task: Mapping[str, int] = field(default_factory=dict)  # the same, by (bounded) task label
    collected_at: float = 0.0  # Unix time of the round


class QueueGauges:
    """Exposes the latest :class:`QueueSnapshot`; nothing but metadata until the first one arrives."""

    def __init__(self, namespace: str) -> None:
        prefix = f"{namespace}_" if namespace else ""
        self._names = {
            "lane_ready": f"{prefix}lane_ready_jobs",
            "lane_scheduled": f"{prefix}lane_scheduled_jobs",
            "lane_age": f"{prefix}lane_oldest_ready_job_age_seconds",
            "queue_ready": f"{prefix}queue_ready_jobs",
            "queue_scheduled": f"{prefix}queue_scheduled_jobs",
            "queue_age": f"{prefix}queue_oldest_ready_job_age_seconds",
            "dead_letters": f"{prefix}dead_letter_jobs",
            "dead_letters_by_task": f"{prefix}dead_letter_jobs_by_task",
            "collected": f"{prefix}queue_stats_collected_timestamp_seconds",
        }
        self._snapshot: QueueSnapshot | None = None  # replaced whole, never mutated: safe to read from a thread

    def update(self, snapshot: QueueSnapshot) -> None:
        self._snapshot = snapshot

    @property
    def snapshot(self) -> QueueSnapshot | None:
        return self._snapshot

    def describe(self) -> Iterator[Metric]:
        return self._families(None)

    def collect(self) -> Iterator[Metric]:
        return self._families(self._snapshot)

    def _families(self, snapshot: QueueSnapshot | None) -> Iterator[Metric]:
        names = self._names
        for kind, label, rows in (
            ("lane", "lane", snapshot.lanes if snapshot else {}),
            ("queue", "queue", snapshot.queues if snapshot else {}),
        ):
            # The help texts say where the jobs are; named queues are capped to the deepest (the rest: "other").
            where = "per lane" if kind == "lane" else "per named (serial) queue, deepest queues only"
            ready = GaugeMetricFamily(
                names[f"{kind}_ready"], f"Jobs runnable now (due, unlocked, attempts left), {where}", labels=[label]
            )
            scheduled = GaugeMetricFamily(names[f"{kind}_scheduled"], f"Jobs due later, {where}", labels=[label])
            age = GaugeMetricFamily(
                names[f"{kind}_age"],
                f"Seconds since the oldest runnable job became due (0: none), {where}",
                labels=[label],
            )
            for name, waiting in rows.items():
                ready.add_metric([name], waiting.ready)
                scheduled.add_metric([name], waiting.scheduled)
                age.add_metric([name], waiting.oldest_ready_age)
            yield ready
            yield scheduled
            yield age
        dead = GaugeMetricFamily(names["dead_letters"], "Jobs in the dead-letter queue (state 'dead')")
        by_task = GaugeMetricFamily(
            names["dead_letters_by_task"], "Jobs in the dead-letter queue (state 'dead'), by task", labels=["task"]
        )
        collected = GaugeMetricFamily(
            names["collected"], "Unix time of the last successful queue statistics round (stale gauges if old)"
        )
        if snapshot is not None:
            dead.add_metric([], snapshot.dead_letters)
            collected.add_metric([], snapshot.collected_at)
            for task, count in snapshot.dead_letters_by_task.items():
                by_task.add_metric([task], count)
        yield dead
        yield by_task
        yield collected


class BusySlots:
    """``<namespace>_busy_slots{lane}``: running handlers, and ``<namespace>_lane_slots{lane}``: handler slots
    (concurrency), each summed over the workers observed in each lane."""

    def __init__(self, namespace: str) -> None:
        prefix = f"{namespace}_" if namespace else ""
        self._name = f"{prefix}busy_slots"
        self._slots_name = f"{prefix}lane_slots"
        self._sources: dict[int, tuple[str, Callable[[], int] | None, int | None]] = {}
        self._next = 0
        self._lock = threading.Lock()  # sources change on the loop's thread while a scrape reads them on another

    def add(self, lane: str, read: Callable[[], int] | None, slots: int | None = None) -> Callable[[], None]:
        """Read ``read()`` at every scrape into ``lane``'s busy sum, and add ``slots`` to its slots; returns the
        function that stops both."""
        with self._lock:
            token = self._next
            self._next += 1
            self._sources[token] = (lane, read, slots)

        def remove() -> None:
            with self._lock:
                self._sources.pop(token, None)

        return remove

    def describe(self) -> Iterator[Metric]:
        yield self._family(self._name, "Job handlers running now, by lane", {})
        yield self._family(self._slots_name, "Job handler slots (concurrency), by lane", {})

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            sources = list(self._sources.values())
        totals: dict[str, int] = {}
        capacity: dict[str, int] = {}
        for lane, read, slots in sources:
            if slots is not None:
                capacity[lane] = capacity.get(lane, 0) + slots
            if read is None:
                continue
            try:
                busy = int(read())
            except Exception:  # a broken reader must not break the whole scrape
                logger.exception("busy-slots reader %r for lane %s raised; skipped", read, lane)
                continue
            totals[lane] = totals.get(lane, 0) + busy
        yield self._family(self._name, "Job handlers running now, by lane", totals)
        yield self._family(self._slots_name, "Job handler slots (concurrency), by lane", capacity)

    @staticmethod
    def _family(name: str, documentation: str, totals: Mapping[str, int]) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, documentation, labels=["lane"])
        for lane, value in totals.items():
            family.add_metric([lane], value)
        return family
