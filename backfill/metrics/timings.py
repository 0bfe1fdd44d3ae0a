"""Histograms the worker fills in batches, without a lock per observation.

prometheus-client's ``Histogram`` takes a lock for every observation (it may be observed from any thread),
which at thousands of jobs a second and two histograms per job was a third of what metrics cost a worker.
Job timings are only ever observed on the event loop's thread, from one ``attempts:batch`` listener, so a
cell here is a plain list of counts: an observation is a bisection and an increment. A scrape (from the
metrics server's thread) copies the counts before summing them, so the count it reports always equals its
``+Inf`` bucket; the sum may trail them by an observation in flight, which Prometheus tolerates.

The exposition is a histogram's as prometheus-client writes it (``_bucket`` with ``le``, ``_count``,
``_sum``), under the same name, labels and buckets as before.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# The "le" text prometheus-client writes for a bound ("0.005", "30.0"), so the series keep their labels.
_le_text: Callable[[float], str] = floatToGoString


class HistogramCell:
    """The counts of one label set: ``counts[i]`` observations fell in bucket ``i`` (the last: above every bound)."""

    __slots__ = ("_bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, which is Prometheus's "le" (a value equal to a bound is in it).
        self.counts[bisect_left(self._bounds, value)] += 1
        self.total += value

    def observe_many(self, values: Sequence[float]) -> None:
        """Observe each of ``values``: sorted once (in C), then binned by :meth:`observe_sorted`."""
        ordered = sorted(values)
        self.observe_sorted(ordered, sum(ordered))

    def observe_sorted(self, ordered: Sequence[Any], total: float, bounds: Sequence[Any] | None = None) -> None:
        """Observe values already sorted, whose sum is ``total``: each bucket's share is one bisection, stopping
        at the bucket that holds the largest, so a thousand quick jobs' timings, all under the first bound, cost
        one bisection. ``bounds``: the buckets' bounds in the values' own type, when they are not floats
        (``timedelta`` lags, say), in the same order as the cell's."""
        bounds = self._bounds if bounds is None else bounds
        size = len(ordered)
        counts = self.counts
        placed = 0
        for bucket, bound in enumerate(bounds):
            upto = bisect_right(ordered, bound, placed)  # the values <= bound: Prometheus's "le"
            counts[bucket] += upto - placed
            placed = upto
            if placed == size:
                break
        else:
            counts[-1] += size - placed  # above every bound
        self.total += total


class BatchHistogram(Collector):
    """A histogram metric whose cells (one per label set) are filled from the event loop. See the module."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]) -> None:
        self.name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._bounds = tuple(float(bound) for bound in buckets)
        if list(self._bounds) != sorted(set(self._bounds)):
            raise ValueError(f"{name}: buckets must be increasing, got {buckets!r}")
        self._le = [_le_text(bound) for bound in self._bounds] + ["+Inf"]
        self._cells: dict[tuple[str, ...], HistogramCell] = {}

    def labels(self, *values: str) -> HistogramCell:
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self.name}: expected labels {self._labelnames}, got {values!r}")
        cell = self._cells.get(values)
        if cell is None:
            cell = self._cells[values] = HistogramCell(self._bounds)
        return cell

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self._documentation, labels=self._labelnames)
        for values, cell in list(self._cells.items()):
            counts = list(cell.counts)  # one copy, so the cumulative buckets agree with each other and the count
            running = 0
            buckets = []
            for le, count in zip(self._le, counts, strict=True):
                running += count
                buckets.append((le, float(running)))
            family.add_metric(list(values), buckets, cell.total)
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self._documentation, labels=self._labelnames)
