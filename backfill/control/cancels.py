"""Cancel jobs: a queued one never runs; a running one is cut short by the worker that runs it.

One transaction per call locks the jobs asked for (a claim in flight finishes first) and sees who holds each:

* nobody (queued), or a backfill worker whose heartbeat stopped: the job is deleted and recorded as cancelled.
  A dead worker's late result is fenced out, so nothing it does later can bring the job back;
* a live backfill worker: the request is recorded with that worker's id and the runners are told by NOTIFY.
  The runner holding the job cancels its handler (``async def``: task cancellation; ``def``: the context's
  abort signal), completes the job and marks the request cancelled. Runners also read open requests every
  second, so a lost notification delays a cancel by a second at most;
* a worker that never registered (Node's graphile-worker): refused. Backfill cannot reach it, and deleting the
  row under it would not stop its handler.

Either way the job is never retried and never dead-lettered: a cancellation is not a failure.
"""

from __future__ import annotations

from collections.abc import Sequence

from backfill.control.models import Cancellation, CancelOutcome, CancelResult, CancelState
from backfill.control.queries import ControlSql, control_errors
from backfill.core import ConfigurationError, SchemaName
from backfill.core.extension import BIGINT_MAX, ConnectionSource, connection_from

# Jobs one call may cancel: a larger selection goes in several calls (the CLI and the API walk it in pages).
MAX_CANCEL_BATCH = 10_000
MAX_LISTED = 1000


async def cancel_jobs(
    executor: ConnectionSource,
    schema: SchemaName,
    job_ids: Sequence[int],
    *,
    by: str,
    reason: str | None = None,
) -> list[CancelResult]:
    """Cancel the jobs ``job_ids``, in one transaction; one answer per distinct id, in ascending id order."""
    ids = sorted(set(_checked_ids(job_ids)))
    if not ids:
        return []
    sql = ControlSql.for_schema(schema)
    answers: dict[int, CancelResult] = {}
    async with control_errors("cancelling jobs"), connection_from(executor) as connection:
        async with connection.transaction():
            rows = await connection.fetch(sql.lock_for_cancel, ids)
            now: list[int] = []
            running: list[int] = []
            for row in rows:
                job_id, owner, worker = row["id"], row["owner"], row["locked_by"]
                if owner is None:
                    now.append(job_id)
                    answers[job_id] = CancelResult(job_id, CancelOutcome.CANCELLED, None, "it was queued")
                elif owner == "dead":
                    now.append(job_id)
                    answers[job_id] = CancelResult(
                        job_id,
                        CancelOutcome.CANCELLED,
                        worker,
                        f"its worker {worker} is dead; its result, if any, will be discarded",
                    )
                elif owner == "alive":
                    running.append(job_id)
                    answers[job_id] = CancelResult(
                        job_id, CancelOutcome.REQUESTED, worker, f"running on worker {worker}, which was told"
                    )
                else:
                    answers[job_id] = CancelResult(
                        job_id,
                        CancelOutcome.REFUSED,
                        worker,
                        f"locked by {worker}, which is not a backfill worker (Node?): backfill cannot stop it",
                    )
            if now:
                await connection.fetch(sql.cancel_now, now, by, reason)
            if running:
                await connection.fetch(sql.request_cancel, running, by, reason)
        missing = [job_id for job_id in ids if job_id not in answers]
        if missing:
            earlier = {row["job_id"]: row for row in await connection.fetch(sql.cancellations_of, missing)}
            for job_id in missing:
                row = earlier.get(job_id)
                if row is None:
                    answers[job_id] = CancelResult(
                        job_id, CancelOutcome.NOT_FOUND, None, "no such job: it finished, was deleted, or never existed"
                    )
                else:
                    answers[job_id] = CancelResult(
                        job_id,
                        CancelOutcome.ALREADY,
                        row["worker_id"],
                        f"{row['state']} earlier, by {row['requested_by']} at {row['requested_at'].isoformat()}",
                    )
    return [answers[job_id] for job_id in ids]


async def cancellations(
    executor: ConnectionSource,
    schema: SchemaName,
    *,
    job_ids: Sequence[int] | None = None,
    state: CancelState | str | None = None,
    limit: int = 100,
) -> list[Cancellation]:
    """Cancellations of ``job_ids``, or the ``limit`` most recent (of one ``state``), newest first."""
    sql = ControlSql.for_schema(schema)
    async with control_errors("listing cancellations"), connection_from(executor) as connection:
        if job_ids is not None:
            rows = await connection.fetch(sql.cancellations_of, sorted(set(_checked_ids(job_ids))))
        else:
            if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LISTED:
                raise ConfigurationError(f"limit: must be an integer from 1 to {MAX_LISTED}, got {limit!r}")
            chosen = None if state is None else _state(state).value
            rows = await connection.fetch(sql.recent_cancellations, chosen, limit)
    return [Cancellation.from_record(row) for row in rows]


def _checked_ids(job_ids: Sequence[int]) -> list[int]:
    if isinstance(job_ids, (str, bytes)):
        raise ConfigurationError("job ids: give a list of integers, not a string")
    ids = list(job_ids)
    if len(ids) > MAX_CANCEL_BATCH:
        raise ConfigurationError(f"job ids: at most {MAX_CANCEL_BATCH} per call, got {len(ids)}")
    for job_id in ids:
        if not isinstance(job_id, int) or isinstance(job_id, bool) or not 1 <= job_id <= BIGINT_MAX:
            raise ConfigurationError(f"job ids: {job_id!r} is not a job id (a positive 64-bit integer)")
    return ids


def _state(state: CancelState | str) -> CancelState:
    try:
        return CancelState(state)
    except ValueError:
        known = ", ".join(member.value for member in CancelState)
        raise ConfigurationError(f"state: {state!r} is not one of {known}") from None
