"""The admin API's endpoints, one module per area; :data:`ENDPOINTS` lists them all, in the order documented."""

from __future__ import annotations

from backfill.admin.endpoints import Endpoint
from backfill.admin.routes import controls, dlq, fleet, jobs, overview

ENDPOINTS: tuple[Endpoint, ...] = (
    *overview.ENDPOINTS,
    *jobs.ENDPOINTS,
    *dlq.ENDPOINTS,
    *controls.ENDPOINTS,
    *fleet.ENDPOINTS,
)
