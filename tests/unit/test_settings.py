"""BackfillSettings: defaults, environment > .env > defaults, errors naming their variable, .env.example parity."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from backfill.core.errors import ConfigurationError
from backfill.core.schema import SchemaName
from backfill.lanes.lane import Lane
from backfill.settings import TEST_ONLY_VARIABLES, BackfillSettings, UnknownSettingWarning

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
TESTS_SECTION = "# --- Tests only"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No variable of the developer's shell and no .env of the checkout may leak into a test."""
    known = set(BackfillSettings.env_names().values())
    for key in list(os.environ):
        if key.upper() in known or key.upper().startswith("BACKFILL_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    yield


def load(**overrides: object) -> BackfillSettings:
    return BackfillSettings.load(env_file=None, **overrides)


def error_lines(excinfo: pytest.ExceptionInfo[ConfigurationError]) -> list[str]:
    return str(excinfo.value).splitlines()[1:]


def test_defaults() -> None:
    settings = load()
    assert settings.database_url is None
    assert settings.database_url_redacted is None
    assert settings.schema_name == SchemaName("graphile_worker")
    assert (settings.fast_queue_concurrency, settings.bulk_queue_concurrency) == (10, 5)
    assert settings.poll_interval_ms == 200
    assert settings.poll_interval_seconds == 0.2
    assert settings.lanes == ()
    assert settings.shutdown_grace_seconds == 30
    assert settings.metrics_port is None
    assert settings.metrics_host == "0.0.0.0"
    assert (settings.log_format, settings.log_level, settings.log_payloads) == ("auto", "INFO", False)
    assert settings.heartbeat_interval_seconds == 2
    assert settings.dead_worker_after_seconds == 15
    assert settings.sweep_interval_seconds == 3
    assert settings.sweep_interval == (2.0, 4.0)
    assert settings.max_recoveries == 3
    assert settings.dlq_enabled is True
    assert settings.dlq_sweep_interval_seconds == 5
    assert settings.control_poll_seconds == 1
    assert (settings.admin_port, settings.admin_host, settings.admin_token, settings.admin_read_only) == (
        None, "127.0.0.1", None, False
    )  # fmt: skip
    assert settings.task_modules == ()
    assert settings.crontab is None
    assert settings.default_retry_policy == "default"
    assert settings.max_pool_size is None
    assert settings.prepared_statements is True
    assert settings.queue_stats_interval_seconds == 15
    assert settings.job_timeout_seconds is None
    assert settings.max_payload_bytes == 1024 * 1024
    assert settings.processes == 1
    assert settings.all_lanes == (Lane("fast", 10), Lane("bulk", 5))


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "DATABASE_URL": "postgresql://app:s3cret@db:5432/app",
        "GRAPHILE_WORKER_SCHEMA": "jobs",
        "FAST_QUEUE_CONCURRENCY": "20",
        "BULK_QUEUE_CONCURRENCY": "2",
        "POLL_INTERVAL_MS": "1500",
        "BACKFILL_LANES": "reports=3, exports=1",
        "BACKFILL_SHUTDOWN_GRACE_SECONDS": "0",
        "BACKFILL_METRICS_PORT": "9090",
        "BACKFILL_METRICS_HOST": "127.0.0.1",
        "BACKFILL_LOG_FORMAT": "JSON",
        "BACKFILL_LOG_LEVEL": "debug",
        "BACKFILL_LOG_PAYLOADS": "yes",
        "BACKFILL_SUCCESS_LOG": "debug",
        "BACKFILL_SUCCESS_LOG_SAMPLE_RATE": "0.25",
        "BACKFILL_HEARTBEAT_INTERVAL_SECONDS": "1",
        "BACKFILL_DEAD_WORKER_AFTER_SECONDS": "2",
        "BACKFILL_SWEEP_INTERVAL_SECONDS": "6",
        "BACKFILL_MAX_RECOVERIES": "5",
        "BACKFILL_DLQ_ENABLED": "false",
        "BACKFILL_DLQ_SWEEP_INTERVAL_SECONDS": "0.5",
        "BACKFILL_CONTROL_POLL_SECONDS": "0.25",
        "BACKFILL_ADMIN_PORT": "8081",
        "BACKFILL_ADMIN_HOST": "0.0.0.0",
        "BACKFILL_ADMIN_TOKEN": "a-token-of-at-least-16-chars",
        "BACKFILL_ADMIN_READ_ONLY": "true",
        "BACKFILL_TASK_MODULES": "myapp.tasks, myapp.reports",
        "BACKFILL_CRONTAB": "/etc/backfill/crontab",
        "BACKFILL_DEFAULT_RETRY_POLICY": "Aggressive",
        "BACKFILL_MAX_POOL_SIZE": "12",
        "BACKFILL_PREPARED_STATEMENTS": "0",
        "BACKFILL_QUEUE_STATS_INTERVAL_SECONDS": "30",
        "BACKFILL_JOB_TIMEOUT_SECONDS": "90.5",
        "BACKFILL_CONNECT_TIMEOUT_SECONDS": "4",
        "BACKFILL_MAX_PAYLOAD_BYTES": "2048",
        "BACKFILL_PROCESSES": "4",
    }
    assert set(values) == set(BackfillSettings.env_names().values()), "every variable is exercised here"
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    settings = load()
    assert settings.database_url == "postgresql://app:s3cret@db:5432/app"
    assert settings.database_url_redacted == "postgresql://app:***@db:5432/app"
    assert "s3cret" not in repr(settings)
    assert settings.schema_name.quoted == '"jobs"'
    assert load(schema_name="other").schema_name == SchemaName("other")
    assert (settings.fast_queue_concurrency, settings.bulk_queue_concurrency) == (20, 2)
    assert settings.poll_interval_seconds == 1.5
    assert settings.lanes == (Lane("reports", 3), Lane("exports", 1))
    assert settings.custom_lanes == settings.lanes
    assert settings.all_lanes[2:] == settings.lanes
    assert settings.shutdown_grace_seconds == 0
    assert (settings.metrics_port, settings.metrics_host) == (9090, "127.0.0.1")
    assert (settings.log_format, settings.log_level, settings.log_payloads) == ("json", "DEBUG", True)
    assert (settings.success_log, settings.success_log_sample_rate) == ("debug", 0.25)
    assert settings.log_level_number == 10
    assert (settings.heartbeat_interval_seconds, settings.dead_worker_after_seconds) == (1, 2)
    assert settings.sweep_interval == (4.0, 8.0)
    assert settings.max_recoveries == 5
    assert settings.dlq_enabled is False
    assert settings.dlq_sweep_interval_seconds == 0.5
    assert settings.control_poll_seconds == 0.25
    assert (settings.admin_port, settings.admin_host, settings.admin_read_only) == (8081, "0.0.0.0", True)
    assert (
        settings.admin_token is not None and settings.admin_token.get_secret_value() == "a-token-of-at-least-16-chars"
    )
    assert "a-token-of-at-least-16-chars" not in repr(settings)
    assert settings.task_modules == ("myapp.tasks", "myapp.reports")
    assert settings.crontab == Path("/etc/backfill/crontab")
    assert settings.default_retry_policy == "aggressive"
    assert settings.max_pool_size == 12
    assert settings.prepared_statements is False
    assert settings.queue_stats_interval_seconds == 30
    assert settings.job_timeout_seconds == 90.5
    assert settings.connect_timeout_seconds == 4.0
    assert settings.max_payload_bytes == 2048
    assert settings.processes == 4


def test_empty_value_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKFILL_METRICS_PORT", "")
    monkeypatch.setenv("FAST_QUEUE_CONCURRENCY", "")
    settings = load()
    assert settings.metrics_port is None
    assert settings.fast_queue_concurrency == 10


def test_dotenv_file_is_read_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "FAST_QUEUE_CONCURRENCY=7\nBULK_QUEUE_CONCURRENCY=3\nSOME_APP_SETTING=whatever\n", encoding="utf-8"
    )
    monkeypatch.setenv("BULK_QUEUE_CONCURRENCY", "9")
    settings = BackfillSettings.load()  # .env in the working directory, by default
    assert settings.fast_queue_concurrency == 7  # from .env
    assert settings.bulk_queue_concurrency == 9  # the environment beats .env
    assert settings.poll_interval_ms == 200  # the default where neither says
    assert BackfillSettings.load(env_file=None).fast_queue_concurrency == 10  # None: no file read


def test_dotenv_at_another_path_and_overrides_win(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "conf" / "backfill.env"
    path.parent.mkdir()
    path.write_text("POLL_INTERVAL_MS=1000\nBACKFILL_LANES=reports=2\n", encoding="utf-8")
    monkeypatch.setenv("POLL_INTERVAL_MS", "500")
    settings = BackfillSettings.load(path, poll_interval_ms=50)
    assert settings.poll_interval_ms == 50
    assert settings.lanes == (Lane("reports", 2),)
    assert BackfillSettings.load(tmp_path / "missing.env").poll_interval_ms == 500  # a missing file is no error


def test_overrides_accept_parsed_and_unparsed_values() -> None:
    assert load(lanes="a=1").lanes == (Lane("a", 1),)
    assert load(lanes=(Lane("b", 2),)).lanes == (Lane("b", 2),)
    assert load(task_modules=["x.y"]).task_modules == ("x.y",)
    with pytest.raises(ConfigurationError, match=r"unknown setting.*fast_concurrency"):
        load(fast_concurrency=3)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("FAST_QUEUE_CONCURRENCY", "ten", "FAST_QUEUE_CONCURRENCY: must be a positive integer, got 'ten'"),
        ("FAST_QUEUE_CONCURRENCY", "0", "FAST_QUEUE_CONCURRENCY: must be a positive integer, got '0'"),
        ("BULK_QUEUE_CONCURRENCY", "1.5", "BULK_QUEUE_CONCURRENCY: must be a positive integer, got '1.5'"),
        ("POLL_INTERVAL_MS", "-1", "POLL_INTERVAL_MS: must be a positive integer"),
        ("GRAPHILE_WORKER_SCHEMA", "pg_jobs", "GRAPHILE_WORKER_SCHEMA: schema name 'pg_jobs' is reserved"),
        ("BACKFILL_LANES", "reports", "BACKFILL_LANES: custom lane 'reports' must be written name=concurrency"),
        ("BACKFILL_LANES", "fast=3", "BACKFILL_LANES: 'fast' is a built-in lane"),
        ("BACKFILL_LANES", "a=1,a=2", "BACKFILL_LANES: custom lane 'a' is defined twice"),
        ("BACKFILL_SHUTDOWN_GRACE_SECONDS", "-1", "BACKFILL_SHUTDOWN_GRACE_SECONDS: must be a number of seconds"),
        ("BACKFILL_METRICS_PORT", "70000", "BACKFILL_METRICS_PORT: must be a port number from 1 to 65535"),
        ("BACKFILL_METRICS_PORT", "http", "BACKFILL_METRICS_PORT: must be a port number"),
        ("BACKFILL_LOG_FORMAT", "yaml", "BACKFILL_LOG_FORMAT: must be one of auto, json, console, got 'yaml'"),
        ("BACKFILL_LOG_LEVEL", "loud", "BACKFILL_LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("BACKFILL_LOG_PAYLOADS", "sometimes", "BACKFILL_LOG_PAYLOADS: must be true or false, got 'sometimes'"),
        ("BACKFILL_HEARTBEAT_INTERVAL_SECONDS", "0", "BACKFILL_HEARTBEAT_INTERVAL_SECONDS: must be a positive"),
        ("BACKFILL_SWEEP_INTERVAL_SECONDS", "inf", "BACKFILL_SWEEP_INTERVAL_SECONDS: must be a positive number"),
        ("BACKFILL_MAX_RECOVERIES", "0", "BACKFILL_MAX_RECOVERIES: must be a positive integer"),
        ("BACKFILL_DLQ_ENABLED", "maybe", "BACKFILL_DLQ_ENABLED: must be true or false"),
        ("BACKFILL_DLQ_SWEEP_INTERVAL_SECONDS", "soon", "BACKFILL_DLQ_SWEEP_INTERVAL_SECONDS: must be a positive"),
        ("BACKFILL_CONTROL_POLL_SECONDS", "120", "BACKFILL_CONTROL_POLL_SECONDS: must be a number of seconds in"),
        ("BACKFILL_TASK_MODULES", "app.tasks,app-2", "BACKFILL_TASK_MODULES: 'app-2' is not a module name"),
        ("BACKFILL_DEFAULT_RETRY_POLICY", "eager", "BACKFILL_DEFAULT_RETRY_POLICY: must be one of fast, aggressive"),
        ("BACKFILL_MAX_POOL_SIZE", "3", "BACKFILL_MAX_POOL_SIZE: must be an integer, at least 4"),
        ("BACKFILL_PREPARED_STATEMENTS", "2", "BACKFILL_PREPARED_STATEMENTS: must be true or false"),
        ("BACKFILL_QUEUE_STATS_INTERVAL_SECONDS", "-5", "BACKFILL_QUEUE_STATS_INTERVAL_SECONDS: must be a positive"),
        ("BACKFILL_JOB_TIMEOUT_SECONDS", "nan", "BACKFILL_JOB_TIMEOUT_SECONDS: must be a number of seconds in (0,"),
        ("BACKFILL_JOB_TIMEOUT_SECONDS", "0", "BACKFILL_JOB_TIMEOUT_SECONDS: must be a number of seconds in (0,"),
        ("DATABASE_URL", "mysql://root@db/app", "DATABASE_URL: must be a postgres:// or postgresql:// URL"),
        ("BACKFILL_PROCESSES", "0", "BACKFILL_PROCESSES: must be a positive integer (worker processes), got '0'"),
        ("BACKFILL_PROCESSES", "two", "BACKFILL_PROCESSES: must be a positive integer (worker processes)"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as excinfo:
        load()
    lines = error_lines(excinfo)
    assert len(lines) == 1
    assert lines[0].startswith(expected), lines[0]
    assert "\n" not in lines[0] and "validation error" not in str(excinfo.value)
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__


def test_every_bad_value_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAST_QUEUE_CONCURRENCY", "ten")
    monkeypatch.setenv("BACKFILL_LOG_FORMAT", "yaml")
    monkeypatch.setenv("BACKFILL_METRICS_PORT", "0")
    monkeypatch.setenv("BACKFILL_LANES", "reports")
    with pytest.raises(ConfigurationError) as excinfo:
        load(poll_interval_ms=0)
    variables = [line.split(":", 1)[0] for line in error_lines(excinfo)]
    assert sorted(variables) == sorted(
        ["FAST_QUEUE_CONCURRENCY", "BACKFILL_LOG_FORMAT", "BACKFILL_METRICS_PORT", "BACKFILL_LANES", "poll_interval_ms"]
    )  # an override is named by its field, since it did not come from a variable


def test_database_url_password_never_appears_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://app:hunter2@db/app")
    monkeypatch.setenv("BACKFILL_METRICS_HOST", "")  # empty: ignored, not an error
    monkeypatch.setenv("GRAPHILE_WORKER_SCHEMA", "pg_postgres://u:hunter2@h")  # a secret in the wrong variable
    with pytest.raises(ConfigurationError) as excinfo:
        load()
    message = str(excinfo.value)
    assert "hunter2" not in message
    assert "DATABASE_URL: must be a postgres:// or postgresql:// URL, got 'mysql://app:***@db/app'" in message
    monkeypatch.setenv("DATABASE_URL", "host=db password=hunter2")  # libpq's keyword form is not a URL
    with pytest.raises(ConfigurationError) as excinfo:
        load()
    assert "hunter2" not in str(excinfo.value)
    assert "password=***" in str(excinfo.value)


def test_dead_worker_after_must_be_twice_the_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKFILL_DEAD_WORKER_AFTER_SECONDS", "3")
    with pytest.raises(ConfigurationError) as excinfo:
        load()
    assert error_lines(excinfo) == [
        "BACKFILL_DEAD_WORKER_AFTER_SECONDS: must be at least twice BACKFILL_HEARTBEAT_INTERVAL_SECONDS (2), or "
        "live workers would be declared dead between two heartbeats, got '3'"
    ]
    monkeypatch.setenv("BACKFILL_HEARTBEAT_INTERVAL_SECONDS", "1.5")
    assert load().dead_worker_after_seconds == 3
    # Reported alongside the other bad values, not only once they are fixed.
    monkeypatch.setenv("BACKFILL_DEAD_WORKER_AFTER_SECONDS", "2")
    monkeypatch.setenv("FAST_QUEUE_CONCURRENCY", "x")
    with pytest.raises(ConfigurationError) as excinfo:
        load()
    assert [line.split(":")[0] for line in error_lines(excinfo)] == [
        "FAST_QUEUE_CONCURRENCY",
        "BACKFILL_DEAD_WORKER_AFTER_SECONDS",
    ]


def test_lanes_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKFILL_LANES", " reports=3 ,, exports=1, ")
    assert load().lanes == (Lane("reports", 3), Lane("exports", 1))
    monkeypatch.setenv("BACKFILL_LANES", "Reports=3")
    with pytest.raises(ConfigurationError, match=r"^invalid configuration:\nBACKFILL_LANES: lane name: lane: must be"):
        load()


def test_unknown_backfill_variables_warn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BACKFILL_METRIC_PORT", "9090")
    monkeypatch.setenv("BACKFILL_NODE_CACHE", "/tmp/node")  # test-only: known, not read
    monkeypatch.setenv("UNRELATED_SETTING", "1")  # not ours to judge
    (tmp_path / ".env").write_text("BACKFILL_FROBNICATE=1\nBACKFILL_LOG_LEVEL=info\n", encoding="utf-8")
    with pytest.warns(UnknownSettingWarning) as record:
        settings = BackfillSettings.load()
    messages = sorted(str(warning.message) for warning in record)
    assert messages == [
        "BACKFILL_FROBNICATE is not a backfill setting and is ignored",
        "BACKFILL_METRIC_PORT is not a backfill setting and is ignored (did you mean BACKFILL_METRICS_PORT?)",
    ]
    assert settings.metrics_port is None  # the typo really was ignored
    assert BackfillSettings.unknown_variables(None, environ={"BACKFILL_LANE": "a=1"}) == [
        "BACKFILL_LANE is not a backfill setting and is ignored (did you mean BACKFILL_LANES?)"
    ]


def test_known_variables_do_not_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKFILL_LANES", "a=1")
    monkeypatch.setenv("BACKFILL_CHAOS_SCALE", "2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load()


# --- .env.example ---


def _example_sections() -> tuple[list[str], list[str]]:
    """Variables assigned in .env.example's main part, and those (commented out) in its tests section."""
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert TESTS_SECTION in text, "the tests section marker moved; update this test"
    main, tests = text.split(TESTS_SECTION, 1)
    assigned = re.findall(r"^([A-Z][A-Z0-9_]*)=", main, re.MULTILINE)
    test_only = re.findall(r"^#\s*([A-Z][A-Z0-9_]*)=", tests, re.MULTILINE)
    return assigned, test_only


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    assigned, test_only = _example_sections()
    assert len(assigned) == len(set(assigned)), "a variable is listed twice"
    assert set(assigned) == set(BackfillSettings.env_names().values())
    assert set(test_only) == {*TEST_ONLY_VARIABLES, "CI"}


def test_env_example_entries_each_have_a_comment() -> None:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").split(TESTS_SECTION, 1)[0].splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^[A-Z][A-Z0-9_]*=", line):
            assert lines[index - 1].startswith("# "), f"{line.split('=')[0]} has no line of meaning above it"


def test_env_example_values_are_the_defaults() -> None:
    from_example = BackfillSettings.load(env_file=ENV_EXAMPLE)
    defaults = load()
    # DATABASE_URL is an example of the form, not a default (there is none).
    assert from_example.model_dump(exclude={"database_url"}) == defaults.model_dump(exclude={"database_url"})


def test_a_negative_payload_limit_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKFILL_MAX_PAYLOAD_BYTES", "-1")
    with pytest.raises(ConfigurationError) as raised:
        load()
    assert error_lines(raised) == [
        "BACKFILL_MAX_PAYLOAD_BYTES: must be a number of bytes, 0 or more (0: no limit), got '-1'"
    ]
