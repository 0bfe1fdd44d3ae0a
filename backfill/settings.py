"""Settings from the environment: one precedence rule, environment > ``.env`` file > defaults.

:meth:`BackfillSettings.load` is the entry point. It reads every variable listed in ``.env.example`` (where
each one is documented with its default), validates all of them, and reports every bad value at once in a
:class:`~backfill.core.errors.ConfigurationError`, one line per variable, each naming the variable::

    FAST_QUEUE_CONCURRENCY: must be a positive integer, got 'ten'
    BACKFILL_LOG_FORMAT: must be one of auto, json, console, got 'yaml'

A ``DATABASE_URL`` password never appears in an error. A ``BACKFILL_*`` variable backfill does not know (a
typo such as ``BACKFILL_METRIC_PORT``) is reported with :class:`UnknownSettingWarning` rather than ignored.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from backfill.admin.security import MIN_ADMIN_TOKEN_LENGTH, is_loopback
from backfill.client.payload_limit import DEFAULT_MAX_PAYLOAD_BYTES
from backfill.core import ConfigurationError, SchemaName
from backfill.core.extension import (
    DEFAULT_SCHEMA,
    MAX_TIMEOUT_SECONDS,
    MIN_CALLER_POOL_SIZE,
    dsn_problem,
    redact_dsn,
    remember_dsn,
)
from backfill.lanes.lane import BULK_LANE, FAST_LANE, Lane, parse_lanes
from backfill.logs import LOG_FORMATS, parse_log_level, redact_secrets

__all__ = [
    "ENV_PREFIX",
    "RETRY_POLICY_PRESETS",
    "TEST_ONLY_VARIABLES",
    "BackfillSettings",
    "ClientSettings",
    "UnknownSettingWarning",
]

ENV_PREFIX: Final = "BACKFILL_"
RETRY_POLICY_PRESETS: Final = ("fast", "aggressive", "conservative", "default", "graphile")
# Read by the test suite and bench/, not by backfill itself: listed in .env.example's tests section and never
# reported as unknown.
TEST_ONLY_VARIABLES: Final = frozenset({"BACKFILL_CHAOS_SCALE", "BACKFILL_NODE_CACHE"})

LogFormat = Literal["auto", "json", "console"]
RetryPolicyName = Literal["fast", "aggressive", "conservative", "default", "graphile"]
# Here rather than in backfill.runner.success_log, which uses it: importing the runner package from here would
# import the runner, which imports these settings.
SuccessLogLevel = Literal["info", "debug", "off"]

_LEVEL_NAMES = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class UnknownSettingWarning(UserWarning):
    """A ``BACKFILL_*`` variable is set that backfill does not read (most likely a typo)."""


class ClientSettings(BaseSettings):
    """What a process that only enqueues reads (``BackfillClient.from_env``, the module-level ``enqueue``):
    the database, the schema, the default retry policy, prepared statements and the payload size limit. Only
    these are validated, so a web process sharing its environment with workers keeps enqueueing when a worker
    variable is wrong. Build it with :meth:`load`."""

    # Whether load() reports BACKFILL_* variables it does not know: a runner's settings do; a client reads a
    # subset and leaves the rest to the runner.
    warns_about_unknown_variables: ClassVar[bool] = False

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        # `BACKFILL_METRICS_PORT=` in a .env means unset, as a commented-out line would.
        env_ignore_empty=True,
        # A .env file is shared with the application; its other variables are none of our business.
        extra="ignore",
        frozen=True,
    )

    # Each field is read from its validation alias only: the variable's name, as .env.example lists it.
    database_url: str | None = Field(None, validation_alias="DATABASE_URL")
    schema_name: Annotated[SchemaName, NoDecode] = Field(
        SchemaName(DEFAULT_SCHEMA), validation_alias="GRAPHILE_WORKER_SCHEMA"
    )
    default_retry_policy: RetryPolicyName = Field("default", validation_alias="BACKFILL_DEFAULT_RETRY_POLICY")
    prepared_statements: bool = Field(True, validation_alias="BACKFILL_PREPARED_STATEMENTS")
    max_payload_bytes: int = Field(DEFAULT_MAX_PAYLOAD_BYTES, ge=0, validation_alias="BACKFILL_MAX_PAYLOAD_BYTES")

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is not None:
            remember_dsn(value)  # so that no log line or message shows its password, even in pieces
            problem = dsn_problem(value)
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("schema_name", mode="before")
    @classmethod
    def _check_schema(cls, value: Any) -> Any:
        if isinstance(value, SchemaName):
            return value
        try:
            return SchemaName(value)
        except ConfigurationError as error:
            raise ValueError(str(error)) from None

    @field_validator("default_retry_policy", mode="before")
    @classmethod
    def _lower_policy(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def database_url_redacted(self) -> str | None:
        """``DATABASE_URL`` with its password masked, for logs and messages."""
        return None if self.database_url is None else redact_dsn(self.database_url)

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # repr(settings) ends up in logs and tracebacks: never with the database password.
        for name, value in super().__repr_args__():
            yield name, (self.database_url_redacted if name == "database_url" else value)

    # --- loading ---

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Field name → the environment variable it is read from, in declaration order."""
        return {name: str(field.validation_alias) for name, field in cls.model_fields.items()}

    @classmethod
    def load(cls, env_file: str | Path | None = ".env", **overrides: Any) -> Self:
        """The settings from ``overrides`` (by field name), the environment, ``env_file`` and the defaults, in
        that order of precedence. ``env_file=None`` reads no file; a missing file is not an error.

        Raises :class:`ConfigurationError` listing every bad value, one line per variable. Warns with
        :class:`UnknownSettingWarning` for each ``BACKFILL_*`` variable backfill does not read.
        """
        names = cls.env_names()
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ConfigurationError(f"unknown setting(s): {', '.join(unknown)}; known: {', '.join(names)}")
        if cls.warns_about_unknown_variables:
            for message in cls.unknown_variables(env_file):
                warnings.warn(message, UnknownSettingWarning, stacklevel=2)
        # By variable name: pydantic-settings matches init arguments against the aliases, and enabling matching
        # by field name would also make it read LOG_LEVEL, LANES, ... from the environment.
        init: dict[str, Any] = {names[key]: value for key, value in overrides.items()}
        init["_env_file"] = env_file  # BaseSettings' own argument, which the model's synthesized signature hides
        try:
            return cls(**init)
        except ValidationError as error:
            lines = [_describe(detail, names, overridden=set(overrides)) for detail in error.errors()]
            raise ConfigurationError("invalid configuration:\n" + "\n".join(lines)) from None
        except SettingsError as error:  # a source failed before validation (an unreadable .env, say)
            raise ConfigurationError(redact_secrets(str(error))) from None

    @classmethod
    def unknown_variables(
        cls, env_file: str | Path | None = ".env", environ: Mapping[str, str] | None = None
    ) -> list[str]:
        """One message per ``BACKFILL_*`` variable set in ``environ`` (default: the process environment) or
        ``env_file`` that backfill does not read, with the closest known name when there is one."""
        seen = {key.upper() for key in (os.environ if environ is None else environ)}
        if env_file is not None and Path(env_file).is_file():
            seen.update(key.upper() for key in _dotenv_keys(Path(env_file)))
        # Every variable a backfill process reads, whichever subset this class validates.
        known = set(BackfillSettings.env_names().values())
        ours = sorted(known | TEST_ONLY_VARIABLES)
        messages = []
        for key in sorted(seen):
            if key.startswith(ENV_PREFIX) and key not in known and key not in TEST_ONLY_VARIABLES:
                close = difflib.get_close_matches(key, ours, n=1, cutoff=0.8)
                hint = f" (did you mean {close[0]}?)" if close else ""
                messages.append(f"{key} is not a backfill setting and is ignored{hint}")
        return messages


class BackfillSettings(ClientSettings):
    """Every setting of a backfill process. Build it with :meth:`load`; fields are named after the
    variables (``FAST_QUEUE_CONCURRENCY`` → ``fast_queue_concurrency``; ``BACKFILL_`` dropped), and
    ``GRAPHILE_WORKER_SCHEMA`` is ``schema_name``, a validated :class:`SchemaName` that core calls accept."""

    warns_about_unknown_variables: ClassVar[bool] = True

    fast_queue_concurrency: int = Field(10, ge=1, validation_alias="FAST_QUEUE_CONCURRENCY")
    bulk_queue_concurrency: int = Field(5, ge=1, validation_alias="BULK_QUEUE_CONCURRENCY")
    poll_interval_ms: int = Field(200, ge=1, validation_alias="POLL_INTERVAL_MS")
    lanes: Annotated[tuple[Lane, ...], NoDecode] = Field((), validation_alias="BACKFILL_LANES")
    shutdown_grace_seconds: float = Field(
        30.0, ge=0, allow_inf_nan=False, validation_alias="BACKFILL_SHUTDOWN_GRACE_SECONDS"
    )
    metrics_port: int | None = Field(None, ge=1, le=65535, validation_alias="BACKFILL_METRICS_PORT")
    metrics_host: str = Field("0.0.0.0", min_length=1, validation_alias="BACKFILL_METRICS_HOST")
    admin_port: int | None = Field(None, ge=0, le=65535, validation_alias="BACKFILL_ADMIN_PORT")
    admin_host: str = Field("127.0.0.1", min_length=1, validation_alias="BACKFILL_ADMIN_HOST")
    admin_read_only: bool = Field(False, validation_alias="BACKFILL_ADMIN_READ_ONLY")
    # A secret: SecretStr keeps it out of repr(settings), logs and tracebacks.
    admin_token: SecretStr | None = Field(None, validate_default=True, validation_alias="BACKFILL_ADMIN_TOKEN")
    log_format: LogFormat = Field("auto", validation_alias="BACKFILL_LOG_FORMAT")
    log_level: str = Field("INFO", validation_alias="BACKFILL_LOG_LEVEL")
    log_payloads: bool = Field(False, validation_alias="BACKFILL_LOG_PAYLOADS")
    success_log: SuccessLogLevel = Field("info", validation_alias="BACKFILL_SUCCESS_LOG")
    success_log_sample_rate: float = Field(
        1.0, ge=0, le=1, allow_inf_nan=False, validation_alias="BACKFILL_SUCCESS_LOG_SAMPLE_RATE"
    )
    heartbeat_interval_seconds: float = Field(
        2.0, gt=0, allow_inf_nan=False, validation_alias="BACKFILL_HEARTBEAT_INTERVAL_SECONDS"
    )
    dead_worker_after_seconds: float = Field(
        15.0, gt=0, allow_inf_nan=False, validation_alias="BACKFILL_DEAD_WORKER_AFTER_SECONDS"
    )
    sweep_interval_seconds: float = Field(
        3.0, gt=0, allow_inf_nan=False, validation_alias="BACKFILL_SWEEP_INTERVAL_SECONDS"
    )
    max_recoveries: int = Field(3, ge=1, validation_alias="BACKFILL_MAX_RECOVERIES")
    dlq_enabled: bool = Field(True, validation_alias="BACKFILL_DLQ_ENABLED")
    dlq_sweep_interval_seconds: float = Field(
        5.0, gt=0, allow_inf_nan=False, validation_alias="BACKFILL_DLQ_SWEEP_INTERVAL_SECONDS"
    )
    control_poll_seconds: float = Field(
        1.0, gt=0, le=60, allow_inf_nan=False, validation_alias="BACKFILL_CONTROL_POLL_SECONDS"
    )
    task_modules: Annotated[tuple[str, ...], NoDecode] = Field((), validation_alias="BACKFILL_TASK_MODULES")
    crontab: Path | None = Field(None, validation_alias="BACKFILL_CRONTAB")
    max_pool_size: int | None = Field(None, ge=MIN_CALLER_POOL_SIZE, validation_alias="BACKFILL_MAX_POOL_SIZE")
    queue_stats_interval_seconds: float = Field(
        15.0, gt=0, allow_inf_nan=False, validation_alias="BACKFILL_QUEUE_STATS_INTERVAL_SECONDS"
    )
    job_timeout_seconds: float | None = Field(
        None, gt=0, le=MAX_TIMEOUT_SECONDS, allow_inf_nan=False, validation_alias="BACKFILL_JOB_TIMEOUT_SECONDS"
    )
    connect_timeout_seconds: float = Field(
        30.0, ge=0, allow_inf_nan=False, validation_alias="BACKFILL_CONNECT_TIMEOUT_SECONDS"
    )
    # Worker processes of `backfill run` (a supervisor starts them when more than 1): for CPU-bound tasks, which
    # one process runs on one core at a time (the GIL).
    processes: int = Field(1, ge=1, validation_alias="BACKFILL_PROCESSES")

    # --- validators: a ValueError's message becomes "<VARIABLE>: <message>, got <value>" (see _describe) ---

    @field_validator("lanes", mode="before")
    @classmethod
    def _parse_lanes(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return parse_lanes(value)
            except ConfigurationError as error:
                raise ValueError(str(error)) from None
        return value

    @field_validator("task_modules", mode="before")
    @classmethod
    def _split_modules(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("task_modules")
    @classmethod
    def _check_modules(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not all(part.isidentifier() for part in name.split(".")):
                raise ValueError(f"{name!r} is not a module name; give dotted module names separated by commas")
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _check_level(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value  # refused by the str type
        name = value.strip().upper()
        name = "WARNING" if name == "WARN" else name
        if name not in _LEVEL_NAMES:
            raise ValueError(f"must be one of {', '.join(_LEVEL_NAMES)} (any case)")
        return name

    @field_validator("admin_token")
    @classmethod
    def _check_admin_token(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # Secure by default: off loopback the admin API answers only with a token, so none there refuses to start.
        if value is not None and len(value.get_secret_value()) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_ADMIN_TOKEN_LENGTH} characters (e.g. `openssl rand -hex 32`)")
        host = info.data.get("admin_host")
        if value is None and info.data.get("admin_port") is not None and host is not None and not is_loopback(host):
            raise ValueError(
                f"required when BACKFILL_ADMIN_HOST ({host}) is not a loopback address: the admin API changes jobs, "
                "and off loopback it answers only requests that carry this token"
            )
        return value

    @field_validator("dead_worker_after_seconds")
    @classmethod
    def _check_dead_after(cls, value: float, info: ValidationInfo) -> float:
        # Checked here rather than in a model validator so that it is reported with every other bad value.
        heartbeat = info.data.get("heartbeat_interval_seconds")
        if heartbeat is not None and value < 2 * heartbeat:
            raise ValueError(
                f"must be at least twice BACKFILL_HEARTBEAT_INTERVAL_SECONDS ({heartbeat:g}), or live workers "
                "would be declared dead between two heartbeats"
            )
        return value

    # --- derived values ---

    @property
    def poll_interval_seconds(self) -> float:
        """``POLL_INTERVAL_MS`` in seconds."""
        return self.poll_interval_ms / 1000

    @property
    def sweep_interval(self) -> tuple[float, float]:
        """The (low, high) range a dead-worker sweep interval is drawn from: 2/3 x to 4/3 x, so workers started
        together do not sweep in step."""
        return (self.sweep_interval_seconds * 2 / 3, self.sweep_interval_seconds * 4 / 3)

    @property
    def custom_lanes(self) -> tuple[Lane, ...]:
        """The lanes from ``BACKFILL_LANES`` (same as :attr:`lanes`)."""
        return self.lanes

    @property
    def all_lanes(self) -> tuple[Lane, ...]:
        """The Fast and Bulk lanes with their concurrency, then the custom lanes."""
        return (Lane(FAST_LANE, self.fast_queue_concurrency), Lane(BULK_LANE, self.bulk_queue_concurrency), *self.lanes)

    @property
    def log_level_number(self) -> int:
        """``BACKFILL_LOG_LEVEL`` as a :mod:`logging` level number."""
        return parse_log_level(self.log_level)


def _dotenv_keys(path: Path) -> list[str]:
    from dotenv import dotenv_values  # pydantic-settings' own .env reader, so both agree on the syntax

    return list(dotenv_values(path, encoding="utf-8"))


# What a value must be, for errors pydantic raises itself (a type or a bound); validators say it themselves.
_MUST: Final[dict[str, str]] = {
    "fast_queue_concurrency": "must be a positive integer",
    "bulk_queue_concurrency": "must be a positive integer",
    "poll_interval_ms": "must be a positive integer (milliseconds)",
    "shutdown_grace_seconds": "must be a number of seconds, 0 or more",
    "metrics_port": "must be a port number from 1 to 65535 (or unset to turn metrics off)",
    "metrics_host": "must be a host name or address",
    "admin_port": "must be a port number from 0 to 65535 (or unset to turn the admin API off)",
    "admin_host": "must be a host name or address",
    "admin_read_only": "must be true or false",
    "log_format": f"must be one of {', '.join(LOG_FORMATS)}",
    "log_payloads": "must be true or false",
    "success_log": "must be one of info, debug, off",
    "success_log_sample_rate": "must be a number from 0 to 1 (the share of successes logged)",
    "heartbeat_interval_seconds": "must be a positive number of seconds",
    "dead_worker_after_seconds": "must be a positive number of seconds",
    "sweep_interval_seconds": "must be a positive number of seconds",
    "max_recoveries": "must be a positive integer",
    "dlq_enabled": "must be true or false",
    "dlq_sweep_interval_seconds": "must be a positive number of seconds",
    "control_poll_seconds": "must be a number of seconds in (0, 60]",
    "default_retry_policy": f"must be one of {', '.join(RETRY_POLICY_PRESETS)}",
    "max_pool_size": f"must be an integer, at least {MIN_CALLER_POOL_SIZE} (or unset to let the runner choose)",
    "prepared_statements": "must be true or false",
    "queue_stats_interval_seconds": "must be a positive number of seconds",
    "max_payload_bytes": "must be a number of bytes, 0 or more (0: no limit)",
    "job_timeout_seconds": f"must be a number of seconds in (0, {MAX_TIMEOUT_SECONDS:g}] (or unset for none)",
    "processes": "must be a positive integer (worker processes)",
}


def _describe(detail: ErrorDetails, names: dict[str, str], *, overridden: set[str]) -> str:
    """One error line: the variable (or the override's field name), what it must be, what it was."""
    by_alias = {alias: name for name, alias in names.items()}
    head = str(detail["loc"][0]) if detail["loc"] else ""
    field = by_alias.get(head, head)
    label = field if field in overridden else names.get(field, head or "configuration")
    if detail["type"] == "value_error":
        requirement = str(detail.get("ctx", {}).get("error", detail["msg"]))
    else:
        requirement = _MUST.get(field, detail["msg"])
    value = detail.get("input")
    if field == "database_url" and isinstance(value, str):
        shown = redact_dsn(value)
    elif field == "admin_token":
        shown = "<hidden>"  # a secret, even a wrong one (it may be the right one with a typo)
    elif isinstance(value, str):
        shown = redact_secrets(value)
    else:
        shown = value
    # A validator's message may quote the value too (the schema name's does): redact the line as a whole.
    return redact_secrets(f"{label}: {requirement}, got {shown!r}")
