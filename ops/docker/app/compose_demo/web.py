"""The demo's web app: ``POST /orders`` enqueues two jobs and answers at once; the runners do the work.

Serve it with ``uvicorn compose_demo.web:app`` (the compose file does). It runs no worker itself. It serves
``/metrics`` (``backfill_jobs_enqueued_total``, which only a client given ``metrics=`` counts) and ``/healthz``.
``DEMO_ORDERS_PER_SECOND`` (default 0) makes it place orders on its own, so that the dashboard has something to
show.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from backfill import BackfillClient
from backfill.metrics import BackfillMetrics
from compose_demo.tasks import BUILD_REPORT, SEND_RECEIPT, TASKS, Receipt, Report

logger = logging.getLogger("compose_demo.web")

metrics = BackfillMetrics(tasks=TASKS)
_order_ids = itertools.count(1)


async def place_order(client: BackfillClient, email: str) -> dict[str, int]:
    """Enqueue the order's receipt (Fast lane) and report (Bulk lane): the tasks' own priorities decide."""
    order_id = next(_order_ids)
    receipt = await client.enqueue(SEND_RECEIPT, Receipt(order_id=order_id, email=email).model_dump())
    report = await client.enqueue(BUILD_REPORT, Report(order_id=order_id).model_dump())
    return {"order_id": order_id, "receipt_job": receipt.id, "report_job": report.id}


async def orders(request: Request) -> JSONResponse:
    try:
        body = await request.json() if await request.body() else {}
    except ValueError:
        return JSONResponse({"error": "the body is not JSON"}, status_code=400)
    email = body.get("email", "customer@example.com") if isinstance(body, dict) else "customer@example.com"
    return JSONResponse(await place_order(request.app.state.client, str(email)), status_code=202)


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def metrics_page(request: Request) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def place_orders_forever(client: BackfillClient, per_second: float) -> None:
    while True:
        try:
            await place_order(client, "load@example.com")
        except Exception:  # the database restarting, say: keep going, as a real app's traffic would
            logger.exception("placing an order failed")
            await asyncio.sleep(1.0)
        await asyncio.sleep(1.0 / per_second)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with BackfillClient.from_env(metrics=metrics) as client:
        app.state.client = client
        per_second = float(os.environ.get("DEMO_ORDERS_PER_SECOND", "0"))
        traffic = asyncio.create_task(place_orders_forever(client, per_second)) if per_second > 0 else None
        try:
            yield
        finally:
            if traffic is not None:
                traffic.cancel()
                with suppress(asyncio.CancelledError):
                    await traffic


app = Starlette(
    routes=[
        Route("/orders", orders, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/metrics", metrics_page),
    ],
    lifespan=lifespan,
)
