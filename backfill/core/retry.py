"""Retrying an operation through an outage: jittered, capped delays and logs that do not flood.

The listener's reconnects, the fetcher and the completer all retry the same way: wait a little longer after
each failure in a row (with jitter, so many workers do not retry in step after a database restart), say the
first failure of an outage at warning level and the rest at debug, and start over once it works again.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator


def backoff_delays(*, initial: float = 0.05, maximum: float = 5.0, factor: float = 2.0) -> Iterator[float]:
    """Delays growing exponentially from ``initial`` up to ``maximum``, each with full jitter.

    Full jitter (a uniform draw below the ceiling) spreads the retries of many workers after a database
    restart instead of letting them arrive in waves.
    """
    ceiling = initial
    while True:
        yield random.uniform(initial / 2, ceiling)
        ceiling = min(maximum, ceiling * factor)


class ConsecutiveFailures:
    """The failures of one operation in a row, and how long to wait before the next try."""

    def __init__(self, *, initial: float = 0.05, maximum: float = 5.0) -> None:
        self._initial = initial
        self._maximum = maximum
        self.count = 0
        self._delays = backoff_delays(initial=initial, maximum=maximum)

    def failed(self, logger: logging.Logger, what: str, error: BaseException) -> float:
        """Count a failure, log it (warning for the first of an outage, debug after) and return the delay."""
        self.count += 1
        log = logger.warning if self.count == 1 else logger.debug
        log("%s failed (%s in a row): %s", what, self.count, error)
        return next(self._delays)

    def succeeded(self) -> bool:
        """Start over after a success; ``True`` when it ends an outage."""
        ended_outage = self.count > 0
        if ended_outage:
            self.count = 0
            self._delays = backoff_delays(initial=self._initial, maximum=self._maximum)
        return ended_outage
