"""Crontab parsing: Graphile Worker's line format, read into :class:`CronItem` values.

A line is ``MIN HOUR DOM MON DOW task ?options {json payload}``, for example::

    0 4 * * * send_report ?id=daily-report&fill=2d&max=3&queue=reports {"to": "ops"}

The time fields accept what Graphile's accept (``*``, ``n``, ``a-b``, ``*/n``, lists) plus ``a-b/n``.
Matching follows Graphile rather than Vixie cron in one corner: day-of-month and day-of-week are OR-ed only
when *both* are restricted, and a field listing every value (``1-31``, ``0-6``) counts as unrestricted.
A Node worker and a backfill worker reading one crontab must agree on every minute, or the minutes where
they disagree would be scheduled by one and not the other.

croniter expands each field (steps, ranges, 7 meaning Sunday); the expanded sets are kept, so matching a
minute is a few set lookups, cheap enough to walk a week of minutes for ``fill``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from backfill.core.checks import SMALLINT_MAX, SMALLINT_MIN, check_int
from backfill.core.errors import ConfigurationError

JOB_KEY_MODES = ("replace", "preserve_run_at", "unsafe_dedupe")
KNOWN_OPTIONS = ("fill", "id", "jobKey", "jobKeyMode", "max", "priority", "queue", "tz")
ONE_MINUTE = timedelta(minutes=1)

# Five time fields (only the characters Graphile allows in them), then the command.
_LINE = re.compile(r"^([0-9*/,-]+)\s+([0-9*/,-]+)\s+([0-9*/,-]+)\s+([0-9*/,-]+)\s+([0-9*/,-]+)\s+(.*)$")
# Task, optional ?query-string, optional {payload}. Graphile's task characters, plus "." for dotted Python names.
_COMMAND = re.compile(r"^([_a-zA-Z][_a-zA-Z0-9:/.-]*)(?:\s+\?(\S+))?(?:\s+(\{.*\}))?$")
_TASK = re.compile(r"^[_a-zA-Z][_a-zA-Z0-9:/.-]*$")
_IDENTIFIER = re.compile(r"^[_a-zA-Z][-_a-zA-Z0-9]*$")
_QUEUE = re.compile(r"^[-a-zA-Z0-9_:]+$")
_FILL = re.compile(r"^(?:[0-9]+[smhdw])+$")
_FILL_PART = re.compile(r"([0-9]+)([smhdw])")
_INTEGER = re.compile(r"^-?[0-9]+$")
_FIELD_PART = re.compile(r"^(?:\*|([0-9]+)(?:-([0-9]+))?)(?:/([0-9]+))?$")
_FILL_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# (name, lowest, highest) of each time field; day of week also accepts 7 for Sunday.
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_FULL = (
    frozenset(range(60)),
    frozenset(range(24)),
    frozenset(range(1, 32)),
    frozenset(range(1, 13)),
    frozenset(range(7)),
)


class CrontabError(ConfigurationError):
    """A crontab line that cannot be used. ``source`` names the crontab, ``line`` the 1-based line number."""

    def __init__(self, reason: str, *, source: str, line: int) -> None:
        super().__init__(f"{source} line {line}: {reason}")
        self.reason = reason
        self.source = source
        self.line = line


class _Invalid(ValueError):
    """A reason, raised by the checks below and given a location by whoever called them."""


class _ItemError(ConfigurationError):
    """A bad :class:`CronItem`; keeps the bare ``reason`` so a crontab line can report it with its number."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"cron item {name!r}: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Matcher:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    def matches(self, local: datetime) -> bool:
        if local.minute not in self.minutes or local.hour not in self.hours or local.month not in self.months:
            return False
        day = local.day in self.days
        weekday = local.isoweekday() % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day or weekday
        return day and weekday


def _check_field(text: str, name: str, low: int, high: int) -> None:
    for part in text.split(","):
        found = _FIELD_PART.match(part)
        if found is None:
            raise _Invalid(f"{name} field {text!r}: {part!r} is not a number, a range or a */step")
        first, last, step = found.groups()
        for value in (first, last):
            if value is not None and not low <= int(value) <= high:
                raise _Invalid(f"{name} field {text!r}: {value} is outside {low}-{high}")
        if first is not None and last is not None and int(last) < int(first):
            raise _Invalid(f"{name} field {text!r}: range {part!r} ends before it starts")
        if step is not None and int(step) == 0:
            raise _Invalid(f"{name} field {text!r}: step must be at least 1")


def _compile_pattern(pattern: str) -> _Matcher:
    fields = pattern.split()
    if len(fields) != 5:
        raise _Invalid(f"pattern {pattern!r} must have 5 fields (minute hour day-of-month month day-of-week)")
    for text, (name, low, high) in zip(fields, _FIELDS, strict=True):
        _check_field(text, name, low, high)
    try:
        expanded = croniter(" ".join(fields)).expanded
    except (ValueError, KeyError) as error:  # croniter's own errors; the checks above should leave none
        raise _Invalid(f"pattern {pattern!r}: {error}") from None
    # croniter writes a field that covers every value as ["*"]; turn it back into the full set.
    sets = [
        full if values == ["*"] else frozenset(int(value) % 7 if full is _FULL[4] else int(value) for value in values)
        for values, full in zip(expanded, _FULL, strict=True)
    ]
    minutes, hours, days, months, weekdays = sets
    return _Matcher(
        minutes,
        hours,
        days,
        months,
        weekdays,
        days_restricted=days != _FULL[2],
        weekdays_restricted=weekdays != _FULL[4],
    )


def parse_fill(text: str) -> timedelta:
    """A duration such as ``1w2d3h4m5s`` (any combination of s m h d w), as Graphile's ``fill`` reads it."""
    if not _FILL.match(text):
        raise _Invalid(f"fill {text!r} is not a duration like 1w2d3h4m5s (units s, m, h, d, w)")
    total = timedelta()
    for amount, unit in _FILL_PART.findall(text):
        total += timedelta(**{_FILL_UNITS[unit]: int(amount)})
    return total


@dataclass(frozen=True, slots=True)
class CronItem:
    """One recurring job: run ``task`` at every minute that ``pattern`` matches in ``timezone`` (UTC if None).

    ``identifier`` (the task name by default) is what ``_private_known_crontabs`` tracks, so it must be unique
    in a crontab and stable across deployments; ``fill`` is how far back missed minutes are scheduled late.
    """

    task: str
    pattern: str
    identifier: str = ""
    payload: dict[str, Any] = field(default_factory=dict, hash=False)
    fill: timedelta = timedelta()
    max_attempts: int | None = None
    queue_name: str | None = None
    job_key: str | None = None
    job_key_mode: str | None = None
    priority: int | None = None
    timezone: str | None = None
    _matcher: _Matcher = field(init=False, repr=False, compare=False)
    _zone: ZoneInfo | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            self._validate()
        except _Invalid as error:
            raise _ItemError(str(self.identifier or self.task), str(error)) from None

    def _validate(self) -> None:
        if not isinstance(self.task, str) or not _TASK.match(self.task) or len(self.task) > 128:
            raise _Invalid(f"task {self.task!r} must start with a letter or _ and hold only letters, digits, _:/.-")
        if not self.identifier:
            object.__setattr__(self, "identifier", self.task)
        elif not isinstance(self.identifier, str) or not _IDENTIFIER.match(self.identifier):
            raise _Invalid(f"id {self.identifier!r} must start with a letter or _ and hold only letters, digits, _-")
        if not isinstance(self.pattern, str):
            raise _Invalid(f"pattern must be a string, not {type(self.pattern).__name__}")
        object.__setattr__(self, "_matcher", _compile_pattern(self.pattern))
        object.__setattr__(self, "pattern", " ".join(self.pattern.split()))
        if not isinstance(self.payload, dict):
            raise _Invalid(f"payload must be a JSON object, not {type(self.payload).__name__}")
        object.__setattr__(self, "payload", dict(self.payload))  # the caller's dict may change later; ours not
        try:
            json.dumps(self.payload, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise _Invalid(f"payload is not JSON-serialisable: {error}") from None
        if not isinstance(self.fill, timedelta) or self.fill < timedelta():
            raise _Invalid(f"fill must be a non-negative timedelta, got {self.fill!r}")
        for name, value, low in (("max", self.max_attempts, 1), ("priority", self.priority, SMALLINT_MIN)):
            must = f"an integer between {low} and {SMALLINT_MAX}"
            check_int(name, value, low, SMALLINT_MAX, must=must, optional=True, error=_Invalid)
        if self.queue_name is not None and (not isinstance(self.queue_name, str) or not _QUEUE.match(self.queue_name)):
            raise _Invalid(f"queue {self.queue_name!r} must hold only letters, digits and _:-")
        if self.job_key is not None and (not isinstance(self.job_key, str) or not 1 <= len(self.job_key) <= 512):
            raise _Invalid("jobKey must be a string of 1 to 512 characters")
        if self.job_key_mode is not None and self.job_key_mode not in JOB_KEY_MODES:
            raise _Invalid(f"jobKeyMode {self.job_key_mode!r} must be one of {', '.join(JOB_KEY_MODES)}")
        if self.job_key is not None and self.job_key_mode is None:
            object.__setattr__(self, "job_key_mode", "replace")  # Graphile's default once a key is given
        zone = None
        if self.timezone is not None:
            try:
                zone = ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError, TypeError):
                raise _Invalid(f"tz {self.timezone!r} is not a known IANA time zone (e.g. Europe/Paris)") from None
        object.__setattr__(self, "_zone", zone)

    def matches(self, moment: datetime) -> bool:
        """Whether the item runs at ``moment`` (an aware datetime; seconds are ignored), read in its time zone."""
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("moment must be timezone-aware")
        return self._matcher.matches(moment.astimezone(self._zone or UTC))

    def occurrences(self, since: datetime, until: datetime) -> Iterator[datetime]:
        """The whole UTC minutes ``m`` with ``since <= m < until`` at which the item runs, oldest first."""
        moment = ceil_minute(since.astimezone(UTC))
        end = until.astimezone(UTC)
        while moment < end:
            if self.matches(moment):
                yield moment
            moment += ONE_MINUTE


def cron_item(pattern: str, task: str, **options: Any) -> CronItem:
    """``CronItem(task=task, pattern=pattern, **options)``, with ``fill`` also accepted as text (``"2d"``)."""
    fill = options.get("fill")
    if isinstance(fill, str):
        try:
            options["fill"] = parse_fill(fill)
        except _Invalid as error:
            raise _ItemError(str(options.get("identifier") or task), str(error)) from None
    return CronItem(task=task, pattern=pattern, **options)


def floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def ceil_minute(moment: datetime) -> datetime:
    floored = floor_minute(moment)
    return floored if floored == moment else floored + ONE_MINUTE


def _options(text: str | None) -> dict[str, Any]:
    """The ``?key=value&...`` part, checked key by key, as CronItem keyword arguments."""
    if text is None:
        return {}
    result: dict[str, Any] = {}
    seen: set[str] = set()
    for key, value in parse_qsl(text, keep_blank_values=True):
        if key in seen:
            raise _Invalid(f"option {key!r} is given more than once")
        seen.add(key)
        if key not in KNOWN_OPTIONS:
            raise _Invalid(f"unknown option {key!r} (known: {', '.join(KNOWN_OPTIONS)})")
        if key in ("max", "priority"):
            if not _INTEGER.match(value):
                raise _Invalid(f"{key} {value!r} is not an integer")
            result["max_attempts" if key == "max" else "priority"] = int(value)
        elif key == "fill":
            result["fill"] = parse_fill(value)
        else:
            names = {"id": "identifier", "queue": "queue_name", "jobKey": "job_key", "jobKeyMode": "job_key_mode"}
            result[names.get(key, "timezone")] = value
    return result


def _parse_line(text: str) -> CronItem:
    line = _LINE.match(text)
    if line is None:
        raise _Invalid("expected 5 time fields (digits, * / , -) followed by a task name")
    pattern = " ".join(line.groups()[:5])
    command = _COMMAND.match(line.group(6).strip())
    if command is None:
        raise _Invalid(f"expected 'task ?options {{json payload}}' after the time fields, got {line.group(6)!r}")
    task, options_text, payload_text = command.groups()
    options = _options(options_text)
    payload: Any = {}
    if payload_text is not None:
        try:
            payload = json.loads(payload_text)
        except ValueError as error:
            raise _Invalid(f"payload is not valid JSON: {error}") from None
        if not isinstance(payload, dict):
            raise _Invalid("payload must be a JSON object")
    try:
        return CronItem(task=task, pattern=pattern, payload=payload, **options)
    except _ItemError as error:
        # On a line, the line number says which item it is, so only the reason is kept.
        raise _Invalid(error.reason) from None


def parse_crontab(text: str, *, source: str = "crontab") -> list[CronItem]:
    """Every item of a crontab, in line order; a bad line raises :class:`CrontabError` naming it."""
    items: list[CronItem] = []
    lines_of: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            item = _parse_line(stripped)
        except _Invalid as error:
            raise CrontabError(str(error), source=source, line=number) from None
        earlier = lines_of.setdefault(item.identifier, number)
        if earlier != number:
            raise CrontabError(
                f"identifier {item.identifier!r} is already used by line {earlier}; add ?id=... to tell them apart",
                source=source,
                line=number,
            )
        items.append(item)
    return items


def load_crontab_file(path: str | Path) -> list[CronItem]:
    """:func:`parse_crontab` of a file; errors name the file as the source."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"crontab file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"crontab file {str(path)!r} cannot be read: {error}") from None
    return parse_crontab(text, source=str(path))
