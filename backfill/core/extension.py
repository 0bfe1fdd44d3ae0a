"""The core's extension API: what code building on the core may use beyond :mod:`backfill.core`'s public names.

The backfill layer (client, lanes, retry policies, dead-letter queue, metrics, runner, CLI) is built on the core
through these names and the public ones only; ``tests/unit/test_public_api.py`` holds it to that. Anything
else in ``backfill.core`` is the core's own business and may change without notice. What they let the layer do:

* connect: one executor type for a pool, a connection or a lazy pool; DSN handling that never logs a password
  (``db``, ``secrets``);
* speak SQL: named statements in ``.sql`` files, and the core's fragments about job rows that layer statements
  include (``Statements``, ``JobSql``); enqueue through Graphile's ``add_job`` as the clients do;
* own flags: register the layer's ``backfill:`` flags (lane, retry, dlq) and read them (``flags``);
* check values the one way, with the column bounds of Graphile's table (``checks``);
* install its own migration lines beside the core's (``migrations.own``);
* run periodic services and ride out outages with the one shape and backoff (``PeriodicService``,
  ``ConsecutiveFailures``);
* run a process: the current job (for log fields), stop signals, the pool size a caller must give;
* act as an operator: job selections for bulk actions, the cleanup tasks.
"""

from backfill.core.admin.job_selection import JobFilter
from backfill.core.admin.utils import CLEANUP_TASKS, DEFAULT_CLEANUP_TASKS
from backfill.core.checks import (
    BIGINT_MAX,
    SMALLINT_MAX,
    SMALLINT_MIN,
    check_aware,
    check_int,
    check_name,
    check_number,
    is_aware,
    is_int,
    is_number,
)
from backfill.core.db import (
    ConnectionSource,
    Executor,
    LazyPool,
    abandon_after_fork,
    connect,
    connection_from,
    database_url_from_env,
    redact_dsn,
)
from backfill.core.enqueue import add_job_spec, dbapi_form, enqueue_statement
from backfill.core.errors import CallTimeoutError
from backfill.core.flags import RESULT as RESULT_FLAG
from backfill.core.flags import is_set, parse_flags, per_flag_set, register_flag, value_of, values_of, without_values
from backfill.core.jobs import (
    MAX_RESULT_RETENTION_SECONDS,
    MAX_TIMEOUT_SECONDS,
    SUSPECT_FLAG,
    JobSql,
    check_retention,
    decode_json,
    result_flag,
)
from backfill.core.migrations.own import CORE_LINES, MigrationLine, OwnMigration, migrate_lines
from backfill.core.retry import ConsecutiveFailures
from backfill.core.run.current import current_job
from backfill.core.run.options import MIN_CALLER_POOL_SIZE
from backfill.core.run.signals import StopSignals, record_stop_signals
from backfill.core.schema import DEFAULT_SCHEMA
from backfill.core.secrets import MASK, ScrubbingFormatter, dsn_problem, remember_dsn, scrub
from backfill.core.statements import Statements
from backfill.core.tasks import Handler
from backfill.core.upkeep.periodic import Interval, PeriodicService

__all__ = [  # noqa: RUF022 - plain sorted order, checked by tests/unit/test_public_api.py
    "BIGINT_MAX",
    "CLEANUP_TASKS",
    "CORE_LINES",
    "CallTimeoutError",
    "ConnectionSource",
    "ConsecutiveFailures",
    "DEFAULT_CLEANUP_TASKS",
    "DEFAULT_SCHEMA",
    "Executor",
    "Handler",
    "Interval",
    "JobFilter",
    "JobSql",
    "LazyPool",
    "MASK",
    "MAX_RESULT_RETENTION_SECONDS",
    "MAX_TIMEOUT_SECONDS",
    "MIN_CALLER_POOL_SIZE",
    "MigrationLine",
    "OwnMigration",
    "PeriodicService",
    "RESULT_FLAG",
    "SMALLINT_MAX",
    "SMALLINT_MIN",
    "SUSPECT_FLAG",
    "ScrubbingFormatter",
    "Statements",
    "StopSignals",
    "abandon_after_fork",
    "add_job_spec",
    "check_aware",
    "check_int",
    "check_name",
    "check_number",
    "check_retention",
    "connect",
    "connection_from",
    "current_job",
    "database_url_from_env",
    "dbapi_form",
    "decode_json",
    "dsn_problem",
    "enqueue_statement",
    "is_aware",
    "is_int",
    "is_number",
    "is_set",
    "migrate_lines",
    "parse_flags",
    "per_flag_set",
    "record_stop_signals",
    "redact_dsn",
    "register_flag",
    "remember_dsn",
    "result_flag",
    "scrub",
    "value_of",
    "values_of",
    "without_values",
]
