"""``/api/pauses`` and ``/api/cancellations``: pause and resume work fleet-wide, see the cancellations."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from backfill.admin.context import AdminContext
from backfill.admin.endpoints import LIMIT, STRING, Endpoint, Param, body_of
from backfill.admin.errors import bad_request, not_found
from backfill.admin.params import body_text, json_body, known_fields, page_size, query_enum, to_enum
from backfill.control import CancelState, PauseKind, cancellations, list_pauses, pause, resume

_KINDS = [kind.value for kind in PauseKind]


async def pauses(request: Request, ctx: AdminContext) -> dict[str, Any]:
    return {"pauses": await list_pauses(ctx.pool, ctx.schema)}


async def add_pause(request: Request, ctx: AdminContext) -> Any:
    body = await json_body(request)
    known_fields(body, {"kind", "name", "reason"})
    kind_text, name = body_text(body, "kind"), body_text(body, "name")
    if kind_text is None:
        raise bad_request("kind", f"required: one of {', '.join(_KINDS)}")
    if name is None:
        raise bad_request("name", "required: the lane, queue or task to pause")
    kind = to_enum("kind", kind_text, PauseKind)
    caller = request.state.caller
    made = await pause(
        ctx.pool, ctx.schema, **{kind.value: name}, by=caller.describe(), reason=body_text(body, "reason")
    )
    await ctx.audit(caller, "pause", {"kind": kind.value, "name": name}, 1)
    return made


async def remove_pause(request: Request, ctx: AdminContext) -> Any:
    kind = to_enum("kind", str(request.path_params["kind"]), PauseKind)
    name = str(request.path_params["name"])
    lifted = await resume(ctx.pool, ctx.schema, **{kind.value: name})
    await ctx.audit(request.state.caller, "resume", {"kind": kind.value, "name": name}, 0 if lifted is None else 1)
    if lifted is None:
        raise not_found(f"pause of {kind.value} {name!r}")
    return lifted


async def list_cancellations(request: Request, ctx: AdminContext) -> dict[str, Any]:
    state = query_enum(request, "state", CancelState)
    return {"cancellations": await cancellations(ctx.pool, ctx.schema, state=state, limit=page_size(request))}


ENDPOINTS = (
    Endpoint("GET", "/api/pauses", "The pauses in force", pauses, "pauses"),
    Endpoint(
        "POST",
        "/api/pauses",
        "Pause a lane, named queue or task",
        add_pause,
        "pauses",
        body=body_of({"kind": {"enum": _KINDS}, "name": STRING, "reason": STRING}, required=["kind", "name"]),
        writes=True,
        description="Every backfill runner stops starting its jobs within about a second; running jobs finish. "
        "Node workers do not honour pauses.",
    ),
    Endpoint(
        "DELETE",
        "/api/pauses/{kind}/{name}",
        "Resume (lift a pause)",
        remove_pause,
        "pauses",
        params=(
            Param("kind", {"enum": _KINDS}, "lane, queue or task", where="path"),
            Param("name", STRING, "its name", where="path"),
        ),
        writes=True,
    ),
    Endpoint(
        "GET",
        "/api/cancellations",
        "Recent cancellations",
        list_cancellations,
        "jobs",
        params=(Param("state", {"enum": [s.value for s in CancelState]}, "requested, cancelled or finished"), LIMIT),
    ),
)
