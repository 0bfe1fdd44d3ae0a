"""Structured logging: every line backfill writes goes through structlog, as JSON or for a terminal.

:func:`configure_logging` installs one handler whose :class:`structlog.stdlib.ProcessorFormatter` renders
both structlog events (:func:`get_logger`) and the standard-library records the core writes
(``logging.getLogger("backfill.worker")`` and friends, ``%s``-formatted, some with ``extra=``), so the two
come out in one format with the same fields: ``timestamp``, ``level``, ``logger``, ``event``.

Where the handler goes. By default it is attached to the ``backfill`` logger, which then stops propagating:
an application that configured its own logging keeps it untouched and sees no line twice, and backfill's
lines are rendered by backfill. ``root=True`` attaches it to the root logger instead, for a process backfill
owns (the CLI, the runner), so that handlers' and libraries' own loggers come out in the same format. Loggers
from :func:`get_logger` outside ``backfill.*`` reach the handler only in that mode.

What every line carries and what none does:

* During a job attempt, ``job_id``, ``task``, ``attempt``, ``lane`` and ``queue`` (when the job is in a serial
  queue), read from :data:`backfill.core.run.current.current_job`, which the worker sets around every attempt;
  fields the event already carries (the core's ``ctx.logger`` passes them via ``extra=``) are kept as given.
* No passwords: ``scheme://user:password@`` credentials and ``password=...`` pairs are masked wherever they
  appear (the message, string fields, exception text), and fields named like ``password``, ``secret`` or
  ``token`` are masked whole.
* No payloads unless asked: a ``payload`` field is dropped unless ``log_payloads=True`` (payloads routinely
  hold personal data that has no business in a log aggregator).
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, ExcInfo, Processor, WrappedLogger

from backfill.core import ConfigurationError
from backfill.core.extension import MASK, ScrubbingFormatter, current_job, scrub
from backfill.lanes.lane import lane_of

__all__ = [
    "LOG_FORMATS",
    "add_job_context",
    "configure_cli_logging",
    "configure_logging",
    "get_logger",
    "json_logging_active",
    "make_redactor",
    "parse_log_level",
    "redact_secrets",
]

LOG_FORMATS = ("auto", "json", "console")

# Field names whose values are secrets whatever they look like: password, db_password, api_token, ...
_SECRET_KEY = re.compile(r"(?:^|_)(?:password|passwd|secret|token|api_key|apikey)$", re.IGNORECASE)
_PAYLOAD_KEYS = frozenset({"payload"})
# Nested containers are walked this deep; deeper values are left as they are (log fields are shallow).
_MAX_DEPTH = 4
_PRIMITIVES = (int, float, bool, type(None))

# Marks the handler configure_logging installed, so that a second call replaces it instead of adding one.
_HANDLER_MARK = "_backfill_handler"
_BACKFILL_LOGGER = "backfill"


def redact_secrets(text: str) -> str:
    """``text`` with URL credentials, ``password=`` values and every password backfill was given (see
    :mod:`backfill.core.secrets`) replaced by ``***``."""
    return scrub(text)


def parse_log_level(level: str | int) -> int:
    """A level name (any case; ``WARN`` is ``WARNING``) or number as a :mod:`logging` level number."""
    if isinstance(level, bool):
        raise ConfigurationError(f"log level must be a level name or number, got {level!r}")
    if isinstance(level, int):
        return level
    name = level.strip().upper()
    if name == "WARN":
        name = "WARNING"
    if name in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        return int(getattr(logging, name))
    if name.isdigit():
        return int(name)
    raise ConfigurationError(f"log level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {level!r}")


def add_job_context(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Tag the event with the job the current task is running (fields already present win)."""
    job = current_job.get()
    if job is None:
        return event_dict
    event_dict.setdefault("job_id", job.id)
    event_dict.setdefault("task", job.task_identifier)
    event_dict.setdefault("attempt", job.attempts)
    event_dict.setdefault("lane", lane_of(job.priority, job.flags))
    if job.queue_name is not None:
        event_dict.setdefault("queue", job.queue_name)
    return event_dict


def _drop_empty_queue(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # The core's job logger always passes queue=, None for jobs outside a serial queue: say nothing instead.
    if "queue" in event_dict and event_dict["queue"] is None:
        del event_dict["queue"]
    return event_dict


_LEADING_KEYS = ("timestamp", "level", "logger", "event")


def _leading_keys_first(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # JSON lines read best (and grep best) when every line starts the same way.
    ordered = {key: event_dict.pop(key) for key in _LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _redact_value(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return redact_secrets(value)
    if isinstance(value, _PRIMITIVES) or depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {
            key: MASK if isinstance(key, str) and _SECRET_KEY.search(key) else _redact_value(item, depth + 1)
            for key, item in value.items()
        }
    if type(value) is list:
        return [_redact_value(item, depth + 1) for item in value]
    if type(value) is tuple:
        return tuple(_redact_value(item, depth + 1) for item in value)
    # Anything else is rendered with repr() (JSON fallback, console): an exception or an object holding a
    # DSN would show it, so such a value is replaced by its redacted repr, and left alone otherwise.
    text = repr(value)
    redacted = redact_secrets(text)
    return value if redacted == text else redacted


def make_redactor(log_payloads: bool = False) -> Processor:
    """A processor that masks secrets in every field and drops ``payload`` unless ``log_payloads``."""

    def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        for key in list(event_dict):
            if key.startswith("_"):  # structlog's _record and _from_structlog
                continue
            if key in _PAYLOAD_KEYS and not log_payloads:
                del event_dict[key]
            elif _SECRET_KEY.search(key):
                event_dict[key] = MASK
            elif key != "exc_info":
                event_dict[key] = _redact_value(event_dict[key], 0)
        return event_dict

    return redact


def _redacting_traceback(sio: TextIO, exc_info: ExcInfo) -> None:
    # Plain tracebacks, never rich's: rich shows every frame's locals by default, payloads and DSNs included.
    buffer = io.StringIO()
    structlog.dev.plain_traceback(buffer, exc_info)
    sio.write(redact_secrets(buffer.getvalue()))


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class _BackfillHandler(logging.StreamHandler[TextIO]):
    """The handler configure_logging installs; its class is how a later call finds and replaces it."""


class _ScrubbingProcessorFormatter(structlog.stdlib.ProcessorFormatter):
    """The last line of defence: the rendered line, tracebacks included, with every known password masked
    (the redactor before it only sees fields, and asyncpg may quote a piece of a password anywhere)."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class _State:
    # Whether backfill's handler renders JSON on the root logger: the CLI then reports its errors as JSON too.
    json_on_root = False


def json_logging_active() -> bool:
    """Whether :func:`configure_logging` last installed a JSON handler on the root logger."""
    return _State.json_on_root


def configure_cli_logging(level: int) -> None:
    """Plain ``time LEVEL logger: message`` lines on stderr for the CLI, passwords masked; a later
    :func:`configure_logging` (``backfill run``) replaces this handler rather than adding to it."""
    root = logging.getLogger()
    _remove_our_handlers(root)
    handler = _BackfillHandler(sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(ScrubbingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)


def _remove_our_handlers(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            logger.removeHandler(handler)
            handler.close()


def configure_logging(
    *,
    level: str | int = "INFO",
    fmt: str = "auto",
    log_payloads: bool = False,
    stream: TextIO | None = None,
    root: bool = False,
    replace_root_handlers: bool = False,
) -> None:
    """Send backfill's logs (structlog and standard-library) through one structlog handler.

    * ``level`` — a level name (any case) or number.
    * ``fmt`` — ``json`` (one JSON object per line), ``console`` (readable, coloured on a terminal unless
      ``NO_COLOR`` is set), or ``auto``: console when ``stream`` is a terminal, JSON otherwise.
    * ``log_payloads`` — keep ``payload`` fields instead of dropping them.
    * ``stream`` — where lines go (default: standard error).
    * ``root`` — attach the handler to the root logger rather than to ``backfill`` (see the module docstring),
      and send :mod:`warnings` through it. When the root logger already has handlers of the application's
      own, they are kept and backfill's handler goes on the ``backfill`` logger as without ``root``, unless
      ``replace_root_handlers`` is true, which removes them.

    Calling it again replaces the previous configuration rather than adding a second handler.
    """
    level_number = parse_log_level(level)
    fmt_name = fmt.strip().lower() if isinstance(fmt, str) else fmt
    if fmt_name not in LOG_FORMATS:
        raise ConfigurationError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    out = stream if stream is not None else sys.stderr
    tty = _is_tty(out)
    as_json = fmt_name == "json" or (fmt_name == "auto" and not tty)

    renderer: Processor
    if as_json:
        # format_exc_info turns exc_info into an `exception` string before redaction sees the event.
        final: list[Processor] = [
            structlog.processors.format_exc_info,
            _leading_keys_first,
            structlog.processors.JSONRenderer(),
        ]
        renderer = final[-1]
    else:
        colors = tty and not os.environ.get("NO_COLOR")
        renderer = structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=_redacting_traceback)
        final = [renderer]

    shared: list[Processor] = [
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        add_job_context,
        _drop_empty_queue,
        structlog.processors.StackInfoRenderer(),
        *final[:-1],
        make_redactor(log_payloads),
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        renderer,
    ]
    formatter = _ScrubbingProcessorFormatter(
        # Only for standard-library records: their extra= fields (job_id, task, ... from ctx.logger) and any
        # context bound with structlog.contextvars.
        foreign_pre_chain=[structlog.contextvars.merge_contextvars, structlog.stdlib.ExtraAdder()],
        processors=shared,
    )
    handler = _BackfillHandler(out)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(formatter)

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached, so that loggers created before a reconfiguration follow it.
        cache_logger_on_first_use=False,
    )

    backfill_logger = logging.getLogger(_BACKFILL_LOGGER)
    root_logger = logging.getLogger()
    _remove_our_handlers(backfill_logger)
    _remove_our_handlers(root_logger)
    theirs = list(root_logger.handlers)
    # An application that embeds a runner (a FastAPI lifespan, Django) configured its root logger itself: its
    # handlers stay, and backfill's lines go to backfill's handler alone (so none is printed twice).
    if root and (replace_root_handlers or not theirs):
        for other in theirs:
            root_logger.removeHandler(other)
        root_logger.addHandler(handler)
        root_logger.setLevel(level_number)
        backfill_logger.setLevel(logging.NOTSET)
        backfill_logger.propagate = True
        logging.captureWarnings(True)  # a warning is a line like any other: JSON in JSON mode
        _State.json_on_root = as_json
    else:
        _State.json_on_root = False
        backfill_logger.addHandler(handler)
        backfill_logger.setLevel(level_number)
        backfill_logger.propagate = False


def get_logger(name: str | None = None, **initial_values: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger writing to the standard-library logger ``name`` (default ``backfill``).

    Only ``backfill.*`` names reach backfill's handler unless :func:`configure_logging` was called with
    ``root=True``.
    """
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name or _BACKFILL_LOGGER, **initial_values)
    return logger
