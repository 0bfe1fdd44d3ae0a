"""A task with a payload model, for the tests that search every output for a payload's values."""

from __future__ import annotations

import pydantic

import backfill

# A value shaped like a secret: it must never reach a log line, an error or a traceback.
SECRET_VALUE = "sk_live_payload_4f9a2c"


class Charge(pydantic.BaseModel):
    card_token: str
    amount_cents: int


@backfill.task("payload.charge")
async def charge(payload: Charge) -> None:
    return None
