"""``/api/jobs``: list with filters and stable pages, show with the error history, a job's kept outcome (waiting
for it on request), and the actions on a job (reschedule, change priority, retry now, cancel, delete), one by
one or, for cancel, in bulk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request

from backfill.admin.context import AdminContext
from backfill.admin.endpoints import BOOLEAN, ID, IDS, INTEGER, LIMIT, STRING, TIME, Endpoint, Param, body_of
from backfill.admin.errors import ApiError, bad_request, not_found
from backfill.admin.params import (
    MAX_BULK,
    body_bool,
    body_ids,
    body_int,
    body_object,
    body_priority,
    body_text,
    body_time,
    json_body,
    known_fields,
    page_size,
    path_id,
    query_bool,
    query_enum,
    query_int,
    query_text,
    query_time,
    to_enum,
)
from backfill.admin.queries import AdminSql
from backfill.control import CancelOutcome, cancel_jobs, cancellations
from backfill.control.models import MAX_NAME_LENGTH
from backfill.core import ConfigurationError, JobInfo, JobSlice, JobState, ResultTimeoutError, ResultUnavailableError
from backfill.core.extension import BIGINT_MAX, SMALLINT_MAX, JobFilter
from backfill.jsonable import to_jsonable
from backfill.lanes.lane import Lane
from backfill.results.models import JobOutcome

_STATE_VALUES = [state.value for state in JobState]


def _job(job: JobInfo, *, payload: bool) -> dict[str, Any]:
    shown: dict[str, Any] = to_jsonable(job)
    if not payload:
        shown.pop("payload", None)  # on request only: payloads may hold personal data, and can be large
    return shown


async def list_jobs(request: Request, ctx: AdminContext) -> dict[str, Any]:
    limit = page_size(request)
    lane = _lane_slice(request)
    jobs = await ctx.utils.list_jobs(
        task=query_text(request, "task"),
        queue=query_text(request, "queue"),
        state=query_enum(request, "state", JobState),
        key=query_text(request, "key"),
        locked_by=query_text(request, "locked_by"),
        exception_type=query_text(request, "exception_type"),
        error=query_text(request, "error"),
        created_after=query_time(request, "created_after"),
        created_before=query_time(request, "created_before"),
        after_id=query_int(request, "after", default=None, low=0, high=BIGINT_MAX),
        limit=limit + 1,
        min_priority=None if lane is None else lane.min_priority,
        max_priority=None if lane is None else lane.max_priority,
        # An empty list is not "no filter" to the query: required_flags=[] would match no job at all.
        required_flags=list(lane.required_flags) if lane is not None and lane.required_flags else None,
        forbidden_flags=list(lane.forbidden_flags) if lane is not None and lane.forbidden_flags else None,
    )
    payload = query_bool(request, "include_payload")
    page = jobs[:limit]
    return {
        "jobs": [_job(job, payload=payload) for job in page],
        # Pages by ascending id: a job added meanwhile appears on a later page, never shifts this one.
        "next_after": page[-1].id if len(jobs) > limit else None,
    }


def _lane_slice(request: Request) -> JobSlice | None:
    """``lane``: the slice of the jobs table that lane's workers fetch (fast, bulk, or a custom lane's). A lane no
    runner declared is an empty one (the API cannot know every runner's lanes); a name no lane can have is a 400."""
    name = query_text(request, "lane")
    if name is None:
        return None
    try:
        return Lane(name, 1).job_slice
    except ConfigurationError:
        raise bad_request("lane", f"no lane can be called {name[:40]!r} (see backfill.lanes.check_lane_name)") from None


async def show_job(request: Request, ctx: AdminContext) -> dict[str, Any]:
    job_id = path_id(request)
    job = await ctx.utils.get_job(job_id)
    if job is None:
        found = await cancellations(ctx.pool, ctx.schema, job_ids=[job_id])
        if found:  # gone, but cancelled: say so rather than "not found"
            return {"job": None, "cancellation": found[0], "errors": []}
        raise not_found(f"job {job_id}")
    sql: AdminSql = ctx.sql
    errors = await ctx.pool.fetch(sql.job_errors, job_id)
    cancelled = await cancellations(ctx.pool, ctx.schema, job_ids=[job_id])
    return {
        "job": _job(job, payload=query_bool(request, "include_payload")),
        "errors": [dict(row) for row in errors],
        "cancellation": cancelled[0] if cancelled else None,
    }


# The longest a request may wait for an outcome: long polls stay below the usual proxy timeouts (60 s), and each
# one holds the API's listening connection only while it waits (one for all of them).
MAX_RESULT_WAIT_SECONDS = 30


async def job_result(request: Request, ctx: AdminContext) -> dict[str, Any]:
    """The job's outcome, or ``{"state": "pending"}``; with ``wait=N``, after waiting up to N seconds for it."""
    job_id = path_id(request)
    wait = query_int(request, "wait", default=0, low=0, high=MAX_RESULT_WAIT_SECONDS) or 0
    outcome: JobOutcome | None
    try:
        if wait:
            outcome = await ctx.waiter.wait(job_id, lambda: ctx.outcomes.outcome(job_id), timeout=wait)
        else:
            outcome = await ctx.outcomes.outcome(job_id)
    except ResultUnavailableError as error:
        raise ApiError(404, str(error)) from None
    except ResultTimeoutError:
        outcome = None
    if outcome is None:
        return {"job_id": job_id, "state": "pending"}
    return outcome.as_dict()


async def _acted_on(ctx: AdminContext, job_id: int, changed: list[Any], action: str) -> None:
    if changed:
        return
    job = await ctx.utils.get_job(job_id)
    if job is None:
        raise not_found(f"job {job_id}")
    raise ApiError(409, f"job {job_id} is locked by worker {job.locked_by}: it cannot be {action} while it runs")


async def reschedule(request: Request, ctx: AdminContext) -> dict[str, Any]:
    job_id = path_id(request)
    body = await json_body(request)
    known_fields(body, {"run_at", "delay_seconds", "priority", "max_attempts", "attempts"})
    run_at = body_time(body, "run_at")
    delay = body_int(body, "delay_seconds", low=0, high=10 * 365 * 86400)
    if run_at is not None and delay is not None:
        raise bad_request("delay_seconds", "give run_at or delay_seconds, not both")
    if delay is not None:
        run_at = datetime.now(UTC) + timedelta(seconds=delay)
    priority = body_priority(body)
    max_attempts = body_int(body, "max_attempts", low=1, high=SMALLINT_MAX)
    attempts = body_int(body, "attempts", low=0, high=SMALLINT_MAX)
    if run_at is None and priority is None and max_attempts is None and attempts is None:
        raise bad_request("body", "give at least one of run_at, delay_seconds, priority, max_attempts, attempts")
    changed = await ctx.utils.reschedule_jobs(
        [job_id], run_at=run_at, priority=priority, max_attempts=max_attempts, attempts=attempts
    )
    await _acted_on(ctx, job_id, changed, "rescheduled")
    await ctx.audit(request.state.caller, "jobs.reschedule", {"ids": [job_id], **_given(body)}, len(changed))
    return {"job": _job(await _info(ctx, job_id), payload=False)}


async def change_priority(request: Request, ctx: AdminContext) -> dict[str, Any]:
    job_id = path_id(request)
    body = await json_body(request)
    known_fields(body, {"priority"})
    priority = body_priority(body)
    if priority is None:
        raise bad_request("priority", "required: an integer (lower runs first; negative is the Fast lane)")
    changed = await ctx.utils.reschedule_jobs([job_id], priority=priority)
    await _acted_on(ctx, job_id, changed, "changed")
    await ctx.audit(request.state.caller, "jobs.priority", {"ids": [job_id], "priority": priority}, len(changed))
    return {"job": _job(await _info(ctx, job_id), payload=False)}


async def retry_now(request: Request, ctx: AdminContext) -> dict[str, Any]:
    """Due now; a job that has used up its attempts gets them back (attempts = 0), or it would never run."""
    job_id = path_id(request)
    known_fields(await json_body(request), set())
    job = await ctx.utils.get_job(job_id)
    if job is None:
        raise not_found(f"job {job_id}")
    attempts = 0 if job.attempts >= job.max_attempts else None
    changed = await ctx.utils.reschedule_jobs([job_id], run_at=datetime.now(UTC), attempts=attempts)
    await _acted_on(ctx, job_id, changed, "retried")
    await ctx.audit(request.state.caller, "jobs.retry", {"ids": [job_id]}, len(changed))
    return {"job": _job(await _info(ctx, job_id), payload=False)}


async def delete_job(request: Request, ctx: AdminContext) -> dict[str, Any]:
    """Deleted unrun (Graphile's complete_jobs, which leaves a locked job alone: cancel a running one)."""
    job_id = path_id(request)
    changed = await ctx.utils.complete_jobs([job_id])
    await _acted_on(ctx, job_id, changed, "deleted (cancel it instead)")
    await ctx.audit(request.state.caller, "jobs.delete", {"ids": [job_id]}, len(changed))
    return {"deleted": [job.id for job in changed]}


async def cancel_one(request: Request, ctx: AdminContext) -> dict[str, Any]:
    job_id = path_id(request)
    body = await json_body(request)
    known_fields(body, {"reason"})
    caller = request.state.caller
    [answer] = await cancel_jobs(ctx.pool, ctx.schema, [job_id], by=caller.describe(), reason=body_text(body, "reason"))
    acted = answer.outcome in (CancelOutcome.CANCELLED, CancelOutcome.REQUESTED)
    await ctx.audit(caller, "jobs.cancel", {"ids": [job_id]}, 1 if acted else 0)
    if answer.outcome is CancelOutcome.NOT_FOUND:
        raise ApiError(404, f"job {job_id}: {answer.detail}")
    if answer.outcome is CancelOutcome.REFUSED:
        raise ApiError(409, f"job {job_id}: {answer.detail}")
    return {"answer": answer}


async def cancel_many(request: Request, ctx: AdminContext) -> dict[str, Any]:
    """By ids (at most MAX_BULK) or by filter (the first MAX_BULK matching, by id; ``more`` says if others
    remain: send the request again). A dry run counts and changes nothing."""
    body = await json_body(request)
    known_fields(body, {"ids", "filter", "dry_run", "reason"})
    ids = body_ids(body)
    chosen = _job_filter(body_object(body, "filter"))
    if (ids is None) == (chosen is None):
        raise bad_request("ids", "give ids or a filter (exactly one)")
    dry_run = body_bool(body, "dry_run")
    caller = request.state.caller
    more = False
    if ids is None:
        assert chosen is not None
        if dry_run:
            count = await ctx.utils.count_jobs(chosen)
            await ctx.audit(caller, "jobs.cancel", {"filter": body.get("filter")}, count, dry_run=True)
            return {"dry_run": True, "count": count}
        page = await ctx.utils.job_id_page(chosen, limit=MAX_BULK + 1)
        ids, more = page[:MAX_BULK], len(page) > MAX_BULK
    elif dry_run:
        count = len(set(ids))
        await ctx.audit(caller, "jobs.cancel", {"ids": sorted(set(ids))[:100]}, count, dry_run=True)
        return {"dry_run": True, "count": count}
    answers = await cancel_jobs(ctx.pool, ctx.schema, ids, by=caller.describe(), reason=body_text(body, "reason"))
    acted = sum(1 for answer in answers if answer.outcome in (CancelOutcome.CANCELLED, CancelOutcome.REQUESTED))
    target = {"filter": body.get("filter")} if "filter" in body else {"ids": sorted(set(ids))[:100], "count": len(ids)}
    await ctx.audit(caller, "jobs.cancel", target, acted)
    return {"answers": answers, "more": more}


def _job_filter(raw: dict[str, Any] | None) -> JobFilter | None:
    if raw is None:
        return None
    known_fields(raw, {"task", "queue", "state"})
    state = raw.get("state")
    for name in ("task", "queue", "state"):
        if raw.get(name) is not None and not isinstance(raw[name], str):
            raise bad_request(f"filter.{name}", "must be a string")
    if not any(raw.get(name) for name in ("task", "queue", "state")):
        raise bad_request("filter", "needs at least one of task, queue, state (no filter would be every job)")
    return JobFilter(
        task=raw.get("task"),
        queue=raw.get("queue"),
        state=None if state is None else to_enum("filter.state", state, JobState),
    )


def _given(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


async def _info(ctx: AdminContext, job_id: int) -> JobInfo:
    job = await ctx.utils.get_job(job_id)
    if job is None:  # changed, then finished at once by a worker
        raise not_found(f"job {job_id}")
    return job


_JOB_FILTER = {"type": "object", "properties": {"task": STRING, "queue": STRING, "state": {"enum": _STATE_VALUES}}}
_PAYLOAD = Param("include_payload", BOOLEAN, "include the payload (off by default)")
ENDPOINTS = (
    Endpoint(
        "GET",
        "/api/jobs",
        "List jobs",
        list_jobs,
        "jobs",
        params=(
            Param("task", STRING, "task identifier"),
            Param("queue", STRING, "named queue"),
            Param("state", {"enum": _STATE_VALUES}, "derived state"),
            Param("key", STRING, "job key"),
            Param("locked_by", STRING, "worker id holding the job"),
            Param("exception_type", STRING, "type of the exception that failed the last attempt"),
            Param("error", STRING, "text in the last error, in any case (taken literally, no wildcards)"),
            Param("created_after", TIME, "created at or after this time (ISO 8601 with a UTC offset)"),
            Param("created_before", TIME, "created before this time (ISO 8601 with a UTC offset)"),
            Param(
                "lane",
                {"type": "string", "maxLength": MAX_NAME_LENGTH},
                "the lane whose workers would run the job: fast, bulk or a custom lane's name",
            ),
            Param("after", INTEGER, "the previous page's next_after"),
            LIMIT,
            _PAYLOAD,
        ),
        description="By ascending id; pass next_after as after for the next page (null: last page).",
    ),
    Endpoint(
        "GET",
        "/api/jobs/{id}",
        "Show a job, its error history and cancellation",
        show_job,
        "jobs",
        params=(ID, _PAYLOAD),
    ),
    Endpoint(
        "GET",
        "/api/jobs/{id}/result",
        "A job's outcome: how it ended, its return value and timings",
        job_result,
        "jobs",
        params=(
            ID,
            Param(
                "wait",
                {"type": "integer", "minimum": 0, "maximum": MAX_RESULT_WAIT_SECONDS, "default": 0},
                "seconds to wait for the job to end (a long poll); 0 answers at once",
            ),
        ),
        description=(
            "Kept for jobs enqueued with keep_result, or of tasks that declare it. State succeeded, failed or "
            "cancelled; pending while the job is queued or running (or did not end within wait). 404 when no "
            "outcome is kept for the job and none will be."
        ),
    ),
    Endpoint(
        "POST",
        "/api/jobs/{id}/reschedule",
        "Change when and how a job runs",
        reschedule,
        "jobs",
        params=(ID,),
        body=body_of(
            {
                "run_at": TIME,
                "delay_seconds": INTEGER,
                "priority": INTEGER,
                "max_attempts": INTEGER,
                "attempts": INTEGER,
            }
        ),
        writes=True,
    ),
    Endpoint(
        "POST",
        "/api/jobs/{id}/priority",
        "Change a job's priority",
        change_priority,
        "jobs",
        params=(ID,),
        body=body_of({"priority": INTEGER}, required=["priority"]),
        writes=True,
    ),
    Endpoint(
        "POST",
        "/api/jobs/{id}/retry",
        "Retry a job now",
        retry_now,
        "jobs",
        params=(ID,),
        body=body_of({}),
        writes=True,
    ),
    Endpoint(
        "POST",
        "/api/jobs/{id}/cancel",
        "Cancel a job, queued or running",
        cancel_one,
        "jobs",
        params=(ID,),
        body=body_of({"reason": STRING}),
        writes=True,
    ),
    Endpoint(
        "DELETE", "/api/jobs/{id}", "Delete a job that is not running", delete_job, "jobs", params=(ID,), writes=True
    ),
    Endpoint(
        "POST",
        "/api/jobs/cancel",
        "Cancel jobs by ids or by filter",
        cancel_many,
        "jobs",
        body=body_of({"ids": IDS, "filter": _JOB_FILTER, "dry_run": BOOLEAN, "reason": STRING}),
        writes=True,
        description=f"At most {MAX_BULK} jobs per request; by filter, `more` says whether others remain.",
    ),
)
