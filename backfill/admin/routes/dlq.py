"""``/api/dlq``: the dead-letter queue: list (newest failure first, cursor pages), show with the error history,
statistics, and requeue or delete by ids or by filter, with a dry run. At most MAX_BULK entries per request."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from backfill.admin.context import AdminContext
from backfill.admin.endpoints import BOOLEAN, ID, IDS, INTEGER, LIMIT, STRING, TIME, Endpoint, Param, body_of
from backfill.admin.errors import bad_request, not_found
from backfill.admin.params import (
    MAX_BULK,
    body_bool,
    body_ids,
    body_int,
    body_object,
    body_priority,
    body_text,
    check_text,
    json_body,
    known_fields,
    page_size,
    path_id,
    query_enum,
    query_text,
    query_time,
    to_enum,
    to_time,
)
from backfill.core import ConfigurationError
from backfill.core.extension import SMALLINT_MAX
from backfill.dlq import DeadLetterFilter, EntryState

_STATES = [state.value for state in EntryState]


def _query_filter(request: Request) -> DeadLetterFilter:
    return DeadLetterFilter(
        task=query_text(request, "task"),
        queue=query_text(request, "queue"),
        since=query_time(request, "since"),
        until=query_time(request, "until"),
        error=query_text(request, "error"),
        state=query_enum(request, "state", EntryState),
        exception_type=query_text(request, "exception_type"),
    )


async def list_entries(request: Request, ctx: AdminContext) -> dict[str, Any]:
    after = query_text(request, "after")
    try:
        page = await ctx.dlq.list(_query_filter(request), limit=page_size(request), after=after)
    except ConfigurationError as error:  # a cursor not from this API
        raise bad_request("after", str(error)) from None
    return {"entries": page.entries, "next_cursor": page.next_cursor}


async def show_entry(request: Request, ctx: AdminContext) -> Any:
    entry_id = path_id(request)
    entry = await ctx.dlq.get(entry_id)
    if entry is None:
        raise not_found(f"dead-letter entry {entry_id}")
    return entry


async def stats(request: Request, ctx: AdminContext) -> Any:
    return await ctx.dlq.stats()


def _body_filter(raw: dict[str, Any] | None) -> DeadLetterFilter | None:
    if raw is None:
        return None
    known_fields(raw, {"task", "queue", "since", "until", "error", "state", "exception_type"})
    values: dict[str, Any] = {}
    for name in ("task", "queue", "error", "exception_type"):
        value = raw.get(name)
        if value is not None and not isinstance(value, str):
            raise bad_request(f"filter.{name}", "must be a string")
        values[name] = check_text(f"filter.{name}", value) if value else None
    for name in ("since", "until"):
        value = raw.get(name)
        if value is not None and not isinstance(value, str):
            raise bad_request(f"filter.{name}", "must be an ISO 8601 time, as a string")
        values[name] = None if value is None else to_time(f"filter.{name}", value)
    state = raw.get("state")
    values["state"] = None if state is None else to_enum("filter.state", str(state), EntryState)
    chosen = DeadLetterFilter(**values)
    if chosen.is_empty:
        raise bad_request("filter", "needs at least one condition (no filter would be every entry)")
    return chosen


async def _chosen(
    body: dict[str, Any], ctx: AdminContext, *, dead_only: bool
) -> tuple[list[int] | None, DeadLetterFilter | None]:
    ids = body_ids(body)
    where = _body_filter(body_object(body, "filter"))
    if (ids is None) == (where is None):
        raise bad_request("ids", "give ids or a filter (exactly one)")
    if where is not None:
        matching = await ctx.dlq.count(where, dead_only=dead_only)
        if matching > MAX_BULK:
            raise bad_request("filter", f"matches {matching} entries, more than {MAX_BULK} per request: narrow it")
    return ids, where


async def requeue(request: Request, ctx: AdminContext) -> Any:
    body = await json_body(request)
    known_fields(body, {"ids", "filter", "dry_run", "priority", "max_attempts", "note"})
    ids, where = await _chosen(body, ctx, dead_only=True)
    dry_run = body_bool(body, "dry_run")
    result = await ctx.dlq.requeue(
        ids,
        filter=where,
        dry_run=dry_run,
        priority=body_priority(body),
        max_attempts=body_int(body, "max_attempts", low=1, high=SMALLINT_MAX),
        note=body_text(body, "note"),
    )
    target = {"ids": ids[:100]} if ids is not None else {"filter": body.get("filter")}
    await ctx.audit(request.state.caller, "dlq.requeue", target, len(result.requeued), dry_run=dry_run)
    return result


async def delete(request: Request, ctx: AdminContext) -> Any:
    body = await json_body(request)
    known_fields(body, {"ids", "filter", "dry_run"})
    ids, where = await _chosen(body, ctx, dead_only=False)
    dry_run = body_bool(body, "dry_run")
    result = await ctx.dlq.delete(ids, filter=where, dry_run=dry_run)
    target = {"ids": ids[:100]} if ids is not None else {"filter": body.get("filter")}
    await ctx.audit(request.state.caller, "dlq.delete", target, len(result.deleted), dry_run=dry_run)
    return result


_FILTER = {
    "type": "object",
    "properties": {
        "task": STRING,
        "queue": STRING,
        "since": TIME,
        "until": TIME,
        "error": STRING,
        "state": {"enum": _STATES},
        "exception_type": STRING,
    },
}
ENDPOINTS = (
    Endpoint(
        "GET",
        "/api/dlq",
        "List dead-letter entries",
        list_entries,
        "dead-letter queue",
        params=(
            Param("task", STRING, "task identifier"),
            Param("queue", STRING, "named queue"),
            Param("since", TIME, "failed at or after"),
            Param("until", TIME, "failed before"),
            Param("error", STRING, "text in any recorded error (case-insensitive)"),
            Param("state", {"enum": _STATES}, "dead or requeued"),
            Param("exception_type", STRING, "the last attempt's exception type, exactly (KeyError, myapp.Error)"),
            Param("after", STRING, "the previous page's next_cursor"),
            LIMIT,
        ),
        description="Newest failure first; pages are stable while entries are added.",
    ),
    Endpoint("GET", "/api/dlq/stats", "Dead-letter statistics", stats, "dead-letter queue"),
    Endpoint(
        "GET", "/api/dlq/{id}", "Show an entry with its error history", show_entry, "dead-letter queue", params=(ID,)
    ),
    Endpoint(
        "POST",
        "/api/dlq/requeue",
        "Requeue entries by ids or by filter",
        requeue,
        "dead-letter queue",
        body=body_of(
            {
                "ids": IDS,
                "filter": _FILTER,
                "dry_run": BOOLEAN,
                "priority": INTEGER,
                "max_attempts": INTEGER,
                "note": STRING,
            }
        ),
        writes=True,
        description=f"At most {MAX_BULK} entries per request; a dry run says what would happen.",
    ),
    Endpoint(
        "POST",
        "/api/dlq/delete",
        "Delete entries by ids or by filter",
        delete,
        "dead-letter queue",
        body=body_of({"ids": IDS, "filter": _FILTER, "dry_run": BOOLEAN}),
        writes=True,
    ),
)
