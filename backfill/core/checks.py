"""The checks every entry point runs on the values it is given: integers, numbers, names, datetimes.

Each check takes the name of the field it checks, so that its error names it, and words the error the way
backfill always has (callers and tests compare messages). There are two wordings:

* with ``must`` (what the value must be), one sentence that shows the value:
  ``limit must be an integer between 1 and 10000, got 0``;
* without it, the wording of a job's fields, which names a wrong type rather than showing the value, then the
  bound: ``must be an integer, not str``, then ``must be between 1 and 32767, got 0``.

``error`` is the exception raised: a :class:`JobSpecError` keeps the field apart (its message reads
``max_attempts: must be ...``); any other class gets one message that starts with the field, so a caller
whose messages read ``call_timeout: must be ...`` passes ``"call_timeout:"``. ``optional=True`` lets
``None`` through, for a field left unset. Values only: no SQL and no I/O.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import NoReturn, TypeGuard

from backfill.core.errors import ConfigurationError, JobSpecError

# PostgreSQL's smallint (priority, attempts, max_attempts) and the largest bigint (job ids, dead-letter entry
# ids and the cursors that page through them).
SMALLINT_MIN, SMALLINT_MAX = -32768, 32767
BIGINT_MAX = 2**63 - 1

ErrorClass = type[Exception]


def is_int(value: object) -> TypeGuard[int]:
    """An int, and not a bool: ``True`` is an int to Python but never a count, an id or a priority."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """An int or a float, not a bool (NaN and the infinities included: :func:`check_number` refuses them)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_aware(value: object) -> TypeGuard[datetime]:
    """A datetime with a UTC offset: a naive one would be read in the database server's time zone."""
    return isinstance(value, datetime) and value.tzinfo is not None and value.utcoffset() is not None


def fail(error: ErrorClass, field: str, problem: str) -> NoReturn:
    """Raise ``error`` for ``field``: ``problem`` is what is wrong, starting with "must"."""
    if issubclass(error, JobSpecError):
        raise error(field, problem)
    raise error(f"{field} {problem}")


def check_int(
    field: str,
    value: object,
    low: int | None = None,
    high: int | None = None,
    *,
    must: str | None = None,
    optional: bool = False,
    error: ErrorClass = ConfigurationError,
) -> None:
    """An int (not a bool) from ``low`` to ``high`` inclusive; a bound left ``None`` is no bound. Without
    ``must``, give both bounds or neither."""
    if optional and value is None:
        return
    in_range = is_int(value) and (low is None or value >= low) and (high is None or value <= high)
    if in_range:
        return
    if must is not None:
        fail(error, field, f"must be {must}, got {value!r}")
    if not is_int(value):
        fail(error, field, f"must be an integer, not {type(value).__name__}")
    fail(error, field, f"must be between {low} and {high}, got {value}")


def check_number(
    field: str,
    value: object,
    *,
    must: str,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
    finite: bool = True,
    optional: bool = False,
    error: ErrorClass = ConfigurationError,
) -> None:
    """An int or a float (not a bool) within the bounds given: ``above``/``below`` exclusive,
    ``at_least``/``at_most`` inclusive. NaN fails every bound; ``finite=False`` lets infinity through a bound
    that allows it."""
    if optional and value is None:
        return
    if not (
        is_number(value)
        and (above is None or value > above)
        and (at_least is None or value >= at_least)
        and (below is None or value < below)
        and (at_most is None or value <= at_most)
        # After the bounds, which compare an int of any size exactly, where isfinite would convert it.
        and (not finite or math.isfinite(value))
    ):
        fail(error, field, f"must be {must}, got {value!r}")


def check_name(
    field: str,
    value: object,
    max_length: int | None = None,
    *,
    must: str | None = None,
    optional: bool = False,
    error: ErrorClass = ConfigurationError,
) -> None:
    """A non-empty string of at most ``max_length`` characters (``None``: any length)."""
    if optional and value is None:
        return
    if isinstance(value, str) and value and (max_length is None or len(value) <= max_length):
        return
    if must is not None:
        fail(error, field, f"must be {must}, got {value!r}")
    if not isinstance(value, str) or not value:
        fail(error, field, "must be a non-empty string")
    fail(error, field, f"must be at most {max_length} characters")


def check_aware(
    field: str,
    value: object,
    *,
    must: str | None = None,
    optional: bool = False,
    error: ErrorClass = ConfigurationError,
) -> None:
    """A timezone-aware datetime (see :func:`is_aware`)."""
    if (optional and value is None) or is_aware(value):
        return
    if must is not None:
        fail(error, field, f"must be {must}, got {value!r}")
    if not isinstance(value, datetime):
        fail(error, field, f"must be a datetime, not {type(value).__name__}")
    fail(error, field, "must be timezone-aware (e.g. datetime.now(timezone.utc))")
