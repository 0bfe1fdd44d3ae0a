"""The statements of job outcomes as callers read them (``sql/results.sql``), and the part other files include."""

from __future__ import annotations

from types import MappingProxyType

from backfill.core.extension import MAX_RESULT_RETENTION_SECONDS, RESULT_FLAG, Statements


class OutcomeSql(Statements, file=("backfill.results.sql", "results.sql")):
    """The outcomes of jobs by id; ``flag_retention``, which the control and dead-letter files include."""

    literals = MappingProxyType(
        {"result_flag_prefix": RESULT_FLAG.prefix, "max_retention": int(MAX_RESULT_RETENTION_SECONDS)}
    )
    outcomes: str
    flag_retention: str
