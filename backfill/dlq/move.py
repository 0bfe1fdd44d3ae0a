"""The move: permanently failed jobs leave the jobs table and become dead-letter entries, in one statement.

One statement (data-modifying CTEs) deletes the jobs, deletes their error history and writes the entries,
and each batch runs in an explicit transaction, so whatever happens to the process or its connection, a job
is either still in ``_private_jobs`` or in ``backfill_dlq``: never both, never neither. The transaction is
explicit on purpose: a client killed while its statement waits leaves the backend without a COMMIT to read,
so it rolls back, whereas an implicit transaction would commit as soon as the statement ended.

What is moved: unlocked jobs with ``attempts >= max_attempts`` (JobState's "failed"), whoever failed them —
a backfill worker (its every error is in ``backfill_job_errors``) or a Node worker (only ``last_error`` and
``updated_at`` on the row). A running job whose attempts were used up (``add_job`` with its key, or
``remove_job``, disarm a running job that way) is left alone until its worker lets go of it.

Each batch takes at most ``limit`` jobs in id order with ``for update skip locked``: two movers (several
runner processes) share the work instead of queueing behind each other, and a job being failed, rescheduled
or completed right now is skipped and picked up next time.

The entry's errors are the job's history rows in the order they were written, plus one made from the row
itself when its last failure is not in the history (a Node attempt: the history's last attempt or error
differs from the row's). A job carrying ``backfill:dlq=<entry id>`` (a requeue) goes back to that entry:
its new errors are appended and the entry is ``dead`` again. If the entry was deleted meanwhile, a new
entry is written instead: the entry is locked (``for update``) before deciding, so a delete cannot slip in
between and make the job vanish.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

from backfill.core import BackfillError, SchemaName
from backfill.core.extension import Executor, Statements, decode_json, parse_flags
from backfill.dlq.models import DLQ_FLAG_PREFIX, MovedJob, Reason
from backfill.results.queries import OutcomeSql

# Jobs per move statement. Big enough that a backlog of thousands moves in a few round trips, small enough
# that one statement's row locks and WAL stay modest and a crash redoes little.
MOVE_BATCH = 500
# Finished requeues forgotten per statement (see forget_finished_requeues).
GC_BATCH = 1000

# The flag's shape the move accepts: a hand-written "backfill:dlq=abc" must not fail the cast and with it
# every move of its batch, so anything else is treated as an ordinary flag.
_FLAG_PATTERN = f"^{DLQ_FLAG_PREFIX}[0-9]{{1,18}}$"


class MoveSql(Statements, file=("backfill.dlq.sql", "move.sql")):
    """The move of failed jobs into the dead-letter table, and the forgetting of finished requeues."""

    includes = (OutcomeSql,)
    literals = MappingProxyType(
        {
            "dlq_flag_pattern": _FLAG_PATTERN,
            "dlq_entry_id_start": len(DLQ_FLAG_PREFIX) + 1,  # substr's 1-based position of the id in the flag
            "gc_batch": GC_BATCH,
        }
    )
    failed_unlocked_jobs: str
    move_doomed: str
    move_all: str
    move_ids: str
    forget_succeeded: str
    forget_finished_requeues: str


class LostJobError(BackfillError):
    """The move deleted a job it did not write to the dead-letter table; its transaction was rolled back."""


async def move_batch(
    connection: Executor, schema: SchemaName, *, job_ids: Sequence[int] | None, limit: int = MOVE_BATCH
) -> list[MovedJob]:
    """Move up to ``limit`` permanently failed, unlocked jobs (only ``job_ids`` if given), in one transaction."""
    async with connection.transaction():
        statements = MoveSql.for_schema(schema)
        if job_ids is None:
            rows = await connection.fetch(statements.move_all, limit)
        else:
            rows = await connection.fetch(statements.move_ids, limit, list(job_ids))
        lost = [row["job_id"] for row in rows if row["entry_id"] is None]
        if lost:
            raise LostJobError(f"the dead-letter move deleted jobs {lost} without writing them; rolled back")
    return [
        MovedJob(
            entry_id=row["entry_id"],
            job_id=row["job_id"],
            task_identifier=row["task_identifier"],
            priority=row["priority"],
            flags=_flag_set(row["flags"]),
            reason=Reason(row["reason"]),
            returned=row["returned"],
        )
        for row in rows
    ]


async def forget_succeeded(connection: Executor, schema: SchemaName, done: Sequence[tuple[int, int]]) -> list[int]:
    """Delete the entries of requeued jobs that succeeded, given as ``(entry id, job id)``; the ids deleted."""
    if not done:
        return []
    rows = await connection.fetch(
        MoveSql.for_schema(schema).forget_succeeded, [entry for entry, _ in done], [job for _, job in done]
    )
    return [row["id"] for row in rows]


async def forget_finished_requeues(connection: Executor, schema: SchemaName) -> list[int]:
    """Delete up to :data:`GC_BATCH` requeued entries whose job no longer exists; the ids deleted."""
    rows = await connection.fetch(MoveSql.for_schema(schema).forget_finished_requeues)
    return [row["id"] for row in rows]


def _flag_set(flags: object) -> frozenset[str]:
    # Lenient, unlike a claim: the move keeps whatever raw SQL wrote (see dlq_flag_keys) and must report it.
    decoded = decode_json(flags)
    return parse_flags(decoded) if isinstance(decoded, dict) else frozenset()
