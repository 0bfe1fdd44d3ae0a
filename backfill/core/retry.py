"""Retrying an operation through an outage: jittered, capped delays and logs that do not flood.

The listener's reconnects, the fetcher and the completer all retry the same way: wait a little longer after
each failure in a row (with jitter, so many workers do not retry in step after a database restart), say the
first failure of an outage at warning level, then at most one warning every 30 seconds (the rest at debug),
and start over once it works again. The periodic services (:mod:`backfill.core.upkeep.periodic`) log their
outages through the same counter.

Not tenacity: ``backfill.core`` depends on the standard library, asyncpg and croniter only, and these loops
need two behaviours tenacity does not give directly — retrying forever while logging by rate, and telling
the caller when an outage ended (the fetcher then releases orphaned locks).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator

WARNING_INTERVAL_SECONDS = 30.0


def exponential_delays(*, initial: float, maximum: float, factor: float) -> Iterator[float]:
    """``initial``, then each delay ``factor`` times the last, capped at ``maximum``: the curve without jitter.

    Cron retries on it as is, because Graphile's cron does (200 ms growing by half up to a minute); everything
    else draws below it with :func:`backoff_delays`.
    """
    delay = initial
    while True:
        yield delay
        delay = min(maximum, delay * factor)


def backoff_delays(*, initial: float = 0.05, maximum: float = 5.0, factor: float = 2.0) -> Iterator[float]:
    """Delays growing exponentially from ``initial`` up to ``maximum``, each with full jitter.

    Full jitter (a uniform draw below the ceiling) spreads the retries of many workers after a database
    restart instead of letting them arrive in waves.
    """
    for ceiling in exponential_delays(initial=initial, maximum=maximum, factor=factor):
        yield random.uniform(initial / 2, ceiling)


class ConsecutiveFailures:
    """The failures of one operation in a row, and how long to wait before the next try."""

    def __init__(
        self, *, initial: float = 0.05, maximum: float = 5.0, warning_interval: float = WARNING_INTERVAL_SECONDS
    ) -> None:
        self._initial = initial
        self._maximum = maximum
        self._warning_interval = warning_interval
        self.count = 0
        self._delays = backoff_delays(initial=initial, maximum=maximum)
        self._last_warning = 0.0

    def failed(self, logger: logging.Logger, what: str, error: BaseException) -> float:
        """Count a failure, log it (a warning for the first of an outage and then every ``warning_interval``
        seconds at most, debug otherwise) and return the delay before the next try."""
        self.count += 1
        now = time.monotonic()
        if self.count == 1 or now - self._last_warning >= self._warning_interval:
            self._last_warning = now
            logger.warning("%s failed (%s in a row): %s", what, self.count, error)
        else:
            logger.debug("%s failed (%s in a row): %s", what, self.count, error)
        return next(self._delays)

    def succeeded(self) -> bool:
        """Start over after a success; ``True`` when it ends an outage."""
        ended_outage = self.count > 0
        if ended_outage:
            self.count = 0
            self._delays = backoff_delays(initial=self._initial, maximum=self._maximum)
        return ended_outage
