"""The demo's tasks, run by ``backfill run`` with ``BACKFILL_TASK_MODULES=compose_demo.tasks``.

A quick task in the Fast lane and a slow one in the Bulk lane that sometimes fails, so that the dashboard shows
retries and the dead-letter queue too. ``DEMO_REPORT_FAILURE_RATE`` (default 0.1) is the share of report attempts
that fail.
"""

from __future__ import annotations

import asyncio
import os
import random

from pydantic import BaseModel

import backfill

SEND_RECEIPT = "demo.send_receipt"
BUILD_REPORT = "demo.build_report"
TASKS = (SEND_RECEIPT, BUILD_REPORT)


class Receipt(BaseModel):
    order_id: int
    email: str


class Report(BaseModel):
    order_id: int


@backfill.task(SEND_RECEIPT, priority=backfill.Priority.FAST_DEFAULT, retry_policy="fast")
async def send_receipt(payload: Receipt, ctx: backfill.JobContext) -> None:
    await asyncio.sleep(random.uniform(0.01, 0.2))  # an email provider's API call
    ctx.logger.info("receipt for order %s sent", payload.order_id)


@backfill.task(BUILD_REPORT, priority=backfill.Priority.BULK_DEFAULT, retry_policy="fast")
async def build_report(payload: Report) -> None:
    await asyncio.sleep(random.uniform(0.5, 3.0))  # a slow query, a PDF
    if random.random() < float(os.environ.get("DEMO_REPORT_FAILURE_RATE", "0.1")):
        raise RuntimeError(f"report of order {payload.order_id}: the reporting database timed out (simulated)")
