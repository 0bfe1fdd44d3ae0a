"""``GET /api/overview``: the fleet at a glance, per lane, named queue and task (:mod:`backfill.admin.live`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from backfill.admin.context import AdminContext
from backfill.admin.endpoints import Endpoint


async def overview(request: Request, ctx: AdminContext) -> dict[str, Any]:
    return await ctx.live.overview()


ENDPOINTS = (
    Endpoint(
        "GET",
        "/api/overview",
        "The fleet at a glance",
        overview,
        "overview",
        description="Per lane: slots and busy slots of the live workers, ready and scheduled jobs (counted up to "
        "count_cap per priority: *_capped says the figure is a lower bound), the age of the oldest ready job, "
        "attempts ended per minute over the last hour and over 1, 5, 15 and 60 minutes with the failure rate, "
        "jobs by state (a full count, taken again at most every 1% of the time: counted_at), paused or not. Per "
        "named queue and task: ready jobs and the oldest's age. The worker registry, dead-letter entries, the "
        "pauses in force. One snapshot, at most 2 s old, is shared by every caller.",
    ),
)
