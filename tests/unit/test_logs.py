"""configure_logging: one structlog pipeline for structlog and standard-library records, job context, redaction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from backfill.core.errors import ConfigurationError
from backfill.core.jobs import Job
from backfill.core.run.context import job_logger
from backfill.core.run.current import current_job
from backfill.core.secrets import remember_dsn
from backfill.lanes.lane import lane_flags
from backfill.logs import configure_logging, get_logger, redact_secrets


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back so other tests (caplog) see what they expect."""
    loggers = [logging.getLogger(), logging.getLogger("backfill")]
    saved = [(logger, list(logger.handlers), logger.level, logger.propagate) for logger in loggers]
    yield
    for logger, handlers, level, propagate in saved:
        for handler in list(logger.handlers):
            if handler not in handlers:
                logger.removeHandler(handler)
                handler.close()
        for handler in handlers:  # pytest's capture handlers, if replace_root_handlers removed them
            if handler not in logger.handlers:
                logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    structlog.reset_defaults()


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def make_job(*, priority: int = 0, flags: frozenset[str] = frozenset(), queue_name: str | None = None) -> Job:
    now = datetime.now(UTC)
    return Job(
        id=42,
        task_identifier="send_email",
        payload={"to": "someone@example.com"},
        queue_name=queue_name,
        priority=priority,
        run_at=now,
        attempts=2,
        max_attempts=25,
        last_error=None,
        created_at=now,
        updated_at=now,
        key=None,
        locked_at=now,
        locked_by="backfill-test",
        revision=0,
        flags=flags,
    )


def test_json_lines_have_the_standard_fields() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)  # auto, on a stream that is not a terminal: JSON
    get_logger("backfill.test").info("started", workers=3)
    [line] = json_lines(stream)
    assert line["event"] == "started"
    assert line["level"] == "info"
    assert line["logger"] == "backfill.test"
    assert line["workers"] == 3
    assert datetime.fromisoformat(line["timestamp"]).tzinfo is not None
    assert list(line)[:4] == ["timestamp", "level", "logger", "event"]


def test_stdlib_records_come_out_as_json_with_the_formatted_message() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream, fmt="json")
    logging.getLogger("backfill.worker").warning("job %s failed", 5)
    [line] = json_lines(stream)
    assert line["event"] == "job 5 failed"
    assert (line["level"], line["logger"]) == ("warning", "backfill.worker")
    assert "timestamp" in line


def test_extra_fields_of_the_core_job_logger_are_kept() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream, fmt="json")
    adapter = job_logger(logging.getLogger("backfill.task"), make_job(queue_name="emails"), "backfill-w1")
    adapter.info("sending to %d recipients", 3)
    [line] = json_lines(stream)
    assert line["event"] == "sending to 3 recipients"
    assert (line["job_id"], line["task"], line["attempt"], line["queue"]) == (42, "send_email", 2, "emails")
    assert line["worker_id"] == "backfill-w1"


def test_lines_inside_a_job_attempt_carry_the_job() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream, fmt="json")
    token = current_job.set(make_job(priority=-5))
    try:
        get_logger("backfill.task").info("from structlog")
        logging.getLogger("backfill.worker").info("from logging")
        get_logger().info("explicit fields win", task="other")
    finally:
        current_job.reset(token)
    get_logger().info("after the attempt")
    first, second, third, after = json_lines(stream)
    for line in (first, second):
        assert (line["job_id"], line["task"], line["attempt"], line["lane"]) == (42, "send_email", 2, "fast")
        assert "queue" not in line  # not in a serial queue
    assert third["task"] == "other"
    assert not {"job_id", "task", "attempt", "lane"} & set(after)


def test_job_context_names_custom_lanes_and_queues() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream, fmt="json")
    job = make_job(flags=frozenset(lane_flags("reports")), queue_name="tenant-7")
    token = current_job.set(job)
    try:
        logging.getLogger("backfill.worker").info("working")
    finally:
        current_job.reset(token)
    [line] = json_lines(stream)
    assert (line["lane"], line["queue"]) == ("reports", "tenant-7")


def test_database_passwords_are_redacted_everywhere() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream, fmt="json")
    logging.getLogger("backfill.worker").error("cannot connect to %s", "postgres://app:hunter2@db:5432/app")
    get_logger().info(
        "connecting",
        dsn="postgresql://app:hunter2@db/app",
        options={"nested": ["host=db password=hunter2"]},
        password="hunter2",
        db_password="hunter2",
        api_token="hunter2",
    )
    try:
        raise RuntimeError("connection to postgres://app:hunter2@db/app refused")
    except RuntimeError:
        logging.getLogger("backfill.worker").exception("failed")
    output = stream.getvalue()
    assert "hunter2" not in output
    first, second, third = json_lines(stream)
    assert first["event"] == "cannot connect to postgres://app:***@db:5432/app"
    assert second["dsn"] == "postgresql://app:***@db/app"
    assert second["options"] == {"nested": ["host=db password=***"]}
    assert second["password"] == second["db_password"] == second["api_token"] == "***"
    assert "RuntimeError: connection to postgres://app:***@db/app refused" in third["exception"]


def test_redact_secrets() -> None:
    assert redact_secrets("postgres://u:p@ss:w@host/db x") == "postgres://u:***@host/db x"
    assert redact_secrets("postgresql://:pw@host") == "postgresql://:***@host"
    assert redact_secrets("postgres://user@host:5432/db") == "postgres://user@host:5432/db"  # no password
    assert redact_secrets("postgres://host:5432/db?password=pw&sslmode=require") == (
        "postgres://host:5432/db?password=***&sslmode=require"
    )
    assert redact_secrets("host=db password='a b' user=x") == "host=db password=*** user=x"
    assert redact_secrets("no secrets here") == "no secrets here"


def test_payload_is_dropped_unless_asked_for() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream, fmt="json")
    get_logger().info("enqueued", payload={"email": "someone@example.com"}, task="send_email")
    logging.getLogger("backfill.worker").info("enqueued", extra={"payload": {"email": "someone@example.com"}})
    assert "someone@example.com" not in stream.getvalue()
    assert all("payload" not in line for line in json_lines(stream))

    stream = io.StringIO()
    configure_logging(stream=stream, fmt="json", log_payloads=True)
    get_logger().info("enqueued", payload={"email": "someone@example.com"})
    [line] = json_lines(stream)
    assert line["payload"] == {"email": "someone@example.com"}


def test_console_format_on_a_terminal_is_not_json() -> None:
    stream = FakeTerminal()
    configure_logging(stream=stream)  # auto, on a terminal: console
    logging.getLogger("backfill.worker").warning("job %s failed", 5)
    try:
        raise ValueError("postgres://app:hunter2@db/app is down")
    except ValueError:
        get_logger().exception("crashed")
    output = stream.getvalue()
    first_line = output.splitlines()[0]
    with pytest.raises(json.JSONDecodeError):
        json.loads(first_line)
    assert "job 5 failed" in first_line
    assert "Traceback (most recent call last)" in output
    assert "postgres://app:***@db/app is down" in output
    assert "hunter2" not in output


def test_forced_formats_ignore_the_stream() -> None:
    terminal = FakeTerminal()
    configure_logging(stream=terminal, fmt="json")
    get_logger().info("x")
    assert json.loads(terminal.getvalue())["event"] == "x"
    plain = io.StringIO()
    configure_logging(stream=plain, fmt="console")
    get_logger().info("y")
    assert "\x1b[" not in plain.getvalue()  # not a terminal: no colour codes
    with pytest.raises(json.JSONDecodeError):
        json.loads(plain.getvalue())


def test_exceptions_in_json_are_a_string_field() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream, fmt="json")
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        get_logger().exception("division")
    [line] = json_lines(stream)
    assert isinstance(line["exception"], str)
    assert line["exception"].startswith("Traceback")
    assert "ZeroDivisionError" in line["exception"]


def test_reconfiguring_replaces_the_handler_and_applies_the_level() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(stream=first, level="info")
    logger = get_logger("backfill.test")  # created before the second call: follows it too
    configure_logging(stream=second, level="warning", fmt="json")
    logger.info("dropped")
    logging.getLogger("backfill.worker").info("dropped too")
    logger.warning("kept")
    assert first.getvalue() == ""
    assert [line["event"] for line in json_lines(second)] == ["kept"]
    assert len([h for h in logging.getLogger("backfill").handlers if h.formatter is not None]) == 1


def test_default_leaves_the_application_root_logger_alone() -> None:
    root_stream, ours = io.StringIO(), io.StringIO()
    app_handler = logging.StreamHandler(root_stream)
    root = logging.getLogger()
    root.addHandler(app_handler)
    try:
        configure_logging(stream=ours, fmt="json")
        logging.getLogger("backfill.worker").warning("ours")
        logging.getLogger("myapp").warning("theirs")
    finally:
        root.removeHandler(app_handler)
    assert [line["event"] for line in json_lines(ours)] == ["ours"]
    assert root_stream.getvalue() == "theirs\n"  # no duplicate of backfill's line, app's line untouched


def test_root_mode_keeps_an_application_root_handler_unless_asked() -> None:
    app_stream, ours = io.StringIO(), io.StringIO()
    app_handler = logging.StreamHandler(app_stream)
    root = logging.getLogger()
    root.addHandler(app_handler)
    try:
        configure_logging(stream=ours, fmt="json", root=True)  # what WorkerRunner.from_env does in an app
        assert app_handler in root.handlers
        logging.getLogger("backfill.worker").warning("ours")
        logging.getLogger("myapp").warning("theirs")
        assert [line["event"] for line in json_lines(ours)] == ["ours"]
        assert app_stream.getvalue() == "theirs\n"  # the app's line in the app's format, no duplicate of ours

        configure_logging(stream=ours, fmt="json", root=True, replace_root_handlers=True)
        assert app_handler not in root.handlers
    finally:
        root.removeHandler(app_handler)


def test_root_mode_renders_every_logger() -> None:
    stream = io.StringIO()
    # pytest's own capture handlers sit on the root logger: replacing them is asked for here.
    configure_logging(stream=stream, fmt="json", root=True, replace_root_handlers=True)
    logging.getLogger("myapp").warning("from the app")
    get_logger("myapp.tasks").info("structlog in the app")
    logging.getLogger("backfill.worker").info("from backfill")
    assert [line["logger"] for line in json_lines(stream)] == ["myapp", "myapp.tasks", "backfill.worker"]
    configure_logging(stream=stream, fmt="json")  # back to the default: the root handler is removed
    assert not [h for h in logging.getLogger().handlers if getattr(h, "_backfill_handler", False)]


@pytest.mark.parametrize("level", ["debug", "INFO", "Warn", logging.ERROR])
def test_levels_are_accepted_in_any_case(level: str | int) -> None:
    configure_logging(stream=io.StringIO(), level=level)


def test_bad_level_or_format_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="log level"):
        configure_logging(level="loud")
    with pytest.raises(ConfigurationError, match="log format"):
        configure_logging(fmt="yaml")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_remembered_password_is_masked_in_tracebacks_too(fmt: str) -> None:
    # asyncpg quotes a piece of a password it cannot parse; no pattern could recognise it, the memory does.
    remember_dsn("postgresql://app:Kangaroo5#Dingo6@db/app")
    stream = io.StringIO()
    configure_logging(stream=stream, fmt=fmt)
    try:
        raise ValueError("invalid literal for int() with base 10: 'Kangaroo5'")
    except ValueError:
        logging.getLogger("backfill.cli").exception("could not connect (Dingo6)")
    text = stream.getvalue()
    assert "invalid literal" in text and "could not connect" in text
    assert "Kangaroo5" not in text and "Dingo6" not in text
