"""Retries and the dead-letter queue: a flaky job that succeeds on a retry, and jobs that can never succeed.

* ``retries.fetch_rates`` fails twice with a network error; the ``fast`` retry policy retries it after about
  0.1 s and 0.2 s, and the third attempt succeeds.
* ``retries.charge_card`` raises :class:`backfill.PermanentFailure`: no retry, straight to the dead-letter queue.
* ``retries.send_sms`` is steered by :class:`backfill.ErrorRules` given to the worker: a rate limit is retried
  after the delay the rule names, an invalid number is permanent.

Run it with ``DATABASE_URL`` set: ``python -m examples.retries_and_dlq``. See docs/how-to/retries.md.
"""

from __future__ import annotations

import asyncio
import time

import backfill
from backfill.dlq import DeadLetterEntry, DeadLetterQueue
from backfill.runner import WorkerRunner
from backfill.settings import BackfillSettings

SUCCEEDED: list[str] = []
STARTED = time.monotonic()


class RateLimited(Exception):
    """What an HTTP client might raise on a 429."""


class InvalidPhoneNumber(ValueError):
    """Retrying cannot fix this one."""


@backfill.task("retries.fetch_rates", retry_policy="fast")
async def fetch_rates(payload: dict[str, str], ctx: backfill.JobContext) -> None:
    print(f"{time.monotonic() - STARTED:5.2f}s fetch_rates attempt {ctx.attempt} of {ctx.job.max_attempts}")
    if ctx.attempt < 3:
        raise ConnectionError("rates service timed out")  # any other exception: retried by the job's policy
    SUCCEEDED.append("fetch_rates")


@backfill.task("retries.charge_card")
async def charge_card(payload: dict[str, str]) -> None:
    # The handler knows this will never work: say so, and skip the remaining attempts.
    raise backfill.PermanentFailure(f"card {payload['card']} was declined")


@backfill.task("retries.send_sms", retry_policy="fast")
async def send_sms(payload: dict[str, str], ctx: backfill.JobContext) -> None:
    print(f"{time.monotonic() - STARTED:5.2f}s send_sms to {payload['to']}, attempt {ctx.attempt}")
    if not payload["to"].startswith("+"):
        raise InvalidPhoneNumber(f"{payload['to']!r} is not an international number")
    if ctx.attempt == 1:
        raise RateLimited("429 Too Many Requests")
    SUCCEEDED.append("send_sms")


# Rules for exceptions the handlers do not own (library errors): classify them once, for every task.
RULES = backfill.ErrorRules(permanent=(InvalidPhoneNumber,), retry_after={RateLimited: 0.5})


async def main() -> int:
    # Poll often so that the short retry delays show; the default poll interval is 200 ms.
    settings = BackfillSettings.load(poll_interval_ms=50)
    async with WorkerRunner(settings, error_rules=RULES) as runner:  # starts the lanes; the exit drains them
        async with backfill.BackfillClient(runner.pool) as client:
            jobs = [
                await client.enqueue("retries.fetch_rates", {"currency": "EUR"}),
                await client.enqueue("retries.charge_card", {"card": "4000 0000 0000 0002"}),
                await client.enqueue("retries.send_sms", {"to": "+441632960961"}),
                await client.enqueue("retries.send_sms", {"to": "01632 960961"}),
            ]
        ours = {job.id for job in jobs}
        dlq = DeadLetterQueue(runner.pool)  # on the runner's pool: no connections of its own

        async def dead_entries() -> list[DeadLetterEntry]:
            return [entry for entry in (await dlq.list()).entries if entry.job_id in ours]

        deadline = time.monotonic() + 15
        # The dead-letter entries appear in the database, so poll it (the runner moves a job within moments).
        while (len(SUCCEEDED) < 2 or len(await dead_entries()) < 2) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

        entries = await dead_entries()
        for entry in entries:
            print(
                f"dead-letter entry {entry.id}: {entry.task_identifier} {entry.payload}, {entry.reason.value} "
                f"after {entry.attempts} of {entry.max_attempts} attempt(s)"
            )
            for error in entry.errors:
                print(f"    attempt {error.attempt}: {error.error} (permanent: {error.permanent})")

    print(f"succeeded: {', '.join(sorted(SUCCEEDED))}; dead-letter entries: {len(entries)}")
    return 0 if sorted(SUCCEEDED) == ["fetch_rates", "send_sms"] and len(entries) == 2 else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
