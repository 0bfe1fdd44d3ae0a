"""Cron inside a running worker: a crontab given to the Worker is scheduled (here through fill after
"downtime", so the test needs no wall-clock minute), its jobs run, and before_schedule interceptors apply."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from backfill.core.hooks import Hooks
from backfill.core.jobs import JobSpec
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from backfill.core.upkeep.crontab import CrontabError
from tests.integration.worker_support.helpers import fast_options, running
from tests.support.waiting import wait_for

KNOWN_CRONTABS = "graphile_worker._private_known_crontabs"


def recording_registry(seen: list[dict[str, Any]]) -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("tick")
    async def tick(payload: dict[str, Any]) -> None:
        seen.append(payload)

    return registry


async def seed_last_run(conn: asyncpg.Connection[Any], identifier: str, minutes_ago: int) -> datetime:
    """Pretend the crontab last ran ``minutes_ago`` minutes ago, so a start-up fill schedules the minutes since."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    last = now - timedelta(minutes=minutes_ago)
    await conn.execute(
        f"insert into {KNOWN_CRONTABS} (identifier, known_since, last_execution) values ($1, $2, $3)",
        identifier,
        last - timedelta(days=1),
        last,
    )
    return last


async def test_a_worker_given_a_crontab_fills_missed_minutes_and_runs_the_jobs(
    database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    last = await seed_last_run(conn, "ticker", minutes_ago=3)
    seen: list[dict[str, Any]] = []
    worker = Worker(
        database_url,
        tasks=recording_registry(seen),
        options=fast_options(),
        crontab='* * * * * tick ?id=ticker&fill=10m {"source": "crontab"}',
    )
    async with running(worker):

        async def filled() -> bool:
            return len(seen) >= 2

        await wait_for(filled, message="the filled minutes ran")
    stamps = sorted(datetime.fromisoformat(payload["_cron"]["ts"]) for payload in seen)
    assert all(payload["_cron"]["backfilled"] for payload in seen[:2])
    assert all(payload["source"] == "crontab" for payload in seen)
    assert stamps[0] == last + timedelta(minutes=1)  # the first minute after the last run, not the last run
    assert len(set(stamps)) == len(stamps)  # one job per minute


async def test_before_schedule_interceptors_apply_to_cron_jobs(
    database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    await seed_last_run(conn, "ticker", minutes_ago=2)

    def mark(spec: JobSpec) -> JobSpec:
        payload = dict(spec.payload)
        payload["marked"] = True
        return JobSpec(spec.identifier, payload, spec.queue_name, spec.run_at, spec.max_attempts, spec.job_key)

    seen: list[dict[str, Any]] = []
    worker = Worker(
        database_url,
        tasks=recording_registry(seen),
        options=fast_options(),
        crontab="* * * * * tick ?id=ticker&fill=5m",
        hooks=Hooks(before_schedule=[mark]),
    )
    async with running(worker):

        async def ran() -> bool:
            return bool(seen)

        await wait_for(ran, message="a filled cron job ran")
    assert all(payload.get("marked") is True for payload in seen), json.dumps(seen)


def test_a_malformed_crontab_is_refused_when_the_worker_is_built(database_url: str) -> None:
    with pytest.raises(CrontabError, match=r"crontab line 2: .*minute"):
        Worker(database_url, tasks=recording_registry([]), crontab="* * * * * tick\n61 * * * * tick ?id=two")
