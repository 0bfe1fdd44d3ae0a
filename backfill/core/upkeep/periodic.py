"""One shape for every periodic service: a name, a jittered interval, a run-once function, outage logging.

The stale-lock release and the dead-worker sweeper (:mod:`backfill.core.upkeep`), the heartbeat
(:mod:`backfill.core.run.heartbeat`), and in the layer the dead-letter mover and the queue statistics all do
one thing again and again until they are cancelled. Each describes itself as a :class:`PeriodicService` and
awaits :meth:`PeriodicService.run`, so that they agree on:

* **Timing.** A run, then a wait drawn from the :class:`Interval`, then the next run: the wait counts from
  the end of one run, so a slow run never overlaps the next. The first run comes at once (``at_start``: the
  mover and the queue statistics have something to catch up on, or to show, at start-up) or after one wait
  (the heartbeat, which has just registered; the sweeper and the stale-lock release, as they always have:
  the workers of one deploy then do not all sweep in their first second).
* **One jitter convention.** Every wait is a uniform draw within ±``jitter`` of the interval's mean
  (``Interval.around(5, 0.2)``: 4 to 6 s). Symmetric, so the mean stays the configured interval and "every
  N seconds" holds on average (a dead worker's jobs are back in about ``dead_after`` + one sweep). A
  fraction of the interval, so 2-second sweeps and 9-minute lock checks spread in proportion. Bounded on
  both sides, unlike the full jitter of retries (:func:`~backfill.core.retry.backoff_delays`): a service
  never runs twice in a burst, nor waits far longer than asked. ±20% (:data:`DEFAULT_JITTER`, the mover's
  from the start): each wait moves a worker's phase by up to a fifth of the interval, so the workers of one
  deploy are out of step after a few runs. The options that give
  bounds instead are read the same way: :meth:`Interval.between` (``stale_lock_check_interval``, Graphile's
  8-10 minutes, is 540 s ±11%; ``sweep_interval`` (2, 4) is 3 s ±33%). Two services keep jitter 0: the
  heartbeat, whose interval is a promise checked against ``dead_after`` (a late beat eats the margin, and
  beats in step cost one small update each: nothing to spread), and the queue statistics, whose advice is
  one collector per database (no herd to spread).
* **Outages.** A run that raises is counted by a :class:`~backfill.core.retry.ConsecutiveFailures`: the
  first failure of an outage is a warning, then at most one warning per ``warning_interval`` (the rest at
  debug), and the first success after it says so at info. The next run comes after a normal wait, or, with
  ``retry_sooner``, after the counter's backoff (the heartbeat, which must not lose a whole interval of
  margin to a blip). A run past ``timeout`` is cancelled and counted as a failure.
* **Stopping.** Only by cancellation, whether it waits or runs (a run in flight is cancelled with it):
  :meth:`~PeriodicService.run` never returns, and raises nothing else unless ``on_ran`` does.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from backfill.core.errors import ConfigurationError
from backfill.core.retry import ConsecutiveFailures

T = TypeVar("T")

DEFAULT_JITTER = 0.2


@dataclass(frozen=True, slots=True)
class Interval:
    """The wait between two runs: a uniform draw from ``low`` to ``high`` seconds (see the module docstring).

    Build it with :meth:`around` (a mean and a fraction) or :meth:`between` (bounds, as some options give).
    """

    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0 < self.low <= self.high:
            raise ConfigurationError(f"an interval needs 0 < low <= high, got ({self.low!r}, {self.high!r})")

    @classmethod
    def around(cls, seconds: float, jitter: float = DEFAULT_JITTER) -> Interval:
        """From ``seconds`` less ``jitter`` of it to ``seconds`` plus as much; ``jitter`` from 0 (none) to below 1."""
        if not 0 <= jitter < 1:
            raise ConfigurationError(f"jitter must be a fraction from 0 to below 1, got {jitter!r}")
        return cls(seconds * (1 - jitter), seconds * (1 + jitter))

    @classmethod
    def between(cls, low: float, high: float) -> Interval:
        """From ``low`` to ``high``: ``around((low + high) / 2, (high - low) / (high + low))``, kept exact."""
        return cls(low, high)

    @property
    def seconds(self) -> float:
        """The mean wait."""
        return (self.low + self.high) / 2

    @property
    def jitter(self) -> float:
        """How far a wait may stray from the mean, as a fraction of it."""
        return (self.high - self.low) / (self.high + self.low)

    def draw(self) -> float:
        """One wait."""
        return self.low if self.low == self.high else random.uniform(self.low, self.high)


@dataclass(frozen=True, kw_only=True)
class PeriodicService(Generic[T]):
    """A side task that calls ``run_once`` every ``interval`` until cancelled; see the module docstring.

    * ``name`` — short and stable (``"sweeper"``): the name of the task that runs it.
    * ``what`` — the operation in a log line: ``"<what> failed (3 in a row): <error>"``.
    * ``on_ran`` — called with what a successful run returned: the service's event (``sweep:recovered``) or
      report. It runs outside the failure count, so it must not raise.
    * ``failures`` — the outage record; pass one to share it with another path of the same service (the
      mover's immediate moves), or to choose its backoff and warning rate.
    * ``recovered`` — the info line that ends an outage, a ``str.format`` template with ``{what}`` and
      ``{failures}`` (how many runs failed in a row).
    """

    name: str
    what: str
    run_once: Callable[[], Awaitable[T]]
    interval: Interval
    logger: logging.Logger
    at_start: bool = False
    timeout: float | None = None
    retry_sooner: bool = False
    on_ran: Callable[[T], object] | None = None
    failures: ConsecutiveFailures = field(default_factory=ConsecutiveFailures)
    recovered: str = "{what} works again"

    async def run(self) -> None:
        """Run until cancelled; see the module docstring. Never returns."""
        delay = 0.0 if self.at_start else self.interval.draw()
        while True:
            if delay:
                await asyncio.sleep(delay)
            try:
                async with asyncio.timeout(self.timeout):
                    result = await self.run_once()
            except Exception as error:  # a periodic service outlives outages: the next run tries again
                backoff = self.failures.failed(self.logger, self.what, error)
                delay = backoff if self.retry_sooner else self.interval.draw()
                continue
            failed_runs = self.failures.count
            if self.failures.succeeded():
                # A template, not %-style: the record then carries the finished line and no arguments.
                self.logger.info(self.recovered.format(what=self.what, failures=failed_runs))
            if self.on_ran is not None:
                self.on_ran(result)
            delay = self.interval.draw()
