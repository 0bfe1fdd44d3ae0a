"""Example task module: run it with ``python -m backfill worker --tasks examples.tasks``.

Enqueue jobs for it with ``python -m examples.enqueue`` (both need DATABASE_URL).
"""

from __future__ import annotations

import hashlib
import logging

from pydantic import BaseModel, Field

import backfill

logger = logging.getLogger(__name__)


class WelcomeEmail(BaseModel):
    """Validated before the handler runs: a bad address fails the attempt with 'to' in the error."""

    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    name: str


@backfill.task("examples.send_welcome_email")
async def send_welcome_email(payload: WelcomeEmail, ctx: backfill.JobContext) -> None:
    ctx.logger.info("welcoming %s (attempt %s)", payload.name, ctx.attempt)
    # A follow-up job, enqueued through the worker's own pool and schema.
    await ctx.add_job("examples.fingerprint", {"text": payload.name}, queue_name=f"user:{payload.to}")


@backfill.task("examples.fingerprint")
def fingerprint(payload: dict[str, str]) -> None:
    # A plain `def` runs in a thread: CPU or blocking work here does not stall the worker's event loop.
    digest = hashlib.sha256(payload["text"].encode()).hexdigest()
    logger.info("fingerprint of %r is %s", payload["text"], digest[:12])
