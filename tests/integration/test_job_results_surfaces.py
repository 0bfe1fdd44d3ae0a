"""Kept outcomes through the command line and the admin API, against a real PostgreSQL and a real worker.

``backfill jobs result`` answers with an exit code per ending (0 succeeded, 4 failed or cancelled, 5 not ended,
3 nothing kept); ``GET /api/jobs/{id}/result`` with the outcome, ``pending``, or a 404, and waits with ``wait=N``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from backfill.admin import AdminApi
from backfill.client.async_client import BackfillClient
from backfill.core import SchemaName, TaskRegistry, Worker
from backfill.exit_codes import EXIT_JOB_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_PENDING, EXIT_USAGE
from backfill.migrations import migrate_all
from tests.integration.worker_support.cli import Cli
from tests.integration.worker_support.helpers import fast_options

SCHEMA = SchemaName("graphile_worker")


def _registry() -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("surface.total", keep_result=600)
    async def total(payload: Any) -> dict[str, int]:
        return {"total": sum(payload["items"])}

    @registry.task("surface.broken", keep_result=600)
    async def broken(payload: Any) -> None:
        raise KeyError("email")

    @registry.task("surface.forgetful")
    async def forgetful(payload: Any) -> int:
        return 1

    return registry


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[BackfillClient]:
    async with BackfillClient(database_url) as created:
        await migrate_all(await created._get_pool(), SCHEMA)
        yield created


@pytest.fixture
async def api(client: BackfillClient, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    admin = AdminApi(database_url)
    transport = httpx.ASGITransport(app=admin, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield http
    await admin.close()


async def _run(database_url: str) -> None:
    await Worker(database_url, tasks=_registry(), options=fast_options()).run_once()


async def test_the_cli_shows_each_ending_with_its_exit_code(
    client: BackfillClient, database_url: str, cli: Cli
) -> None:
    done = await client.enqueue("surface.total", {"items": [1, 2, 3]})
    failed = await client.enqueue("surface.broken", {}, max_attempts=1)
    forgetful = await client.enqueue("surface.forgetful", {})

    code, out, _ = await cli("jobs", "result", str(done.id))
    assert code == EXIT_PENDING
    assert f"job {done.id} has not ended" in out

    await _run(database_url)

    code, out, _ = await cli("jobs", "result", str(done.id))
    assert code == EXIT_OK
    assert "succeeded" in out and '"total": 6' in out
    body = await cli.json("jobs", "result", str(done.id))
    assert (body["state"], body["value"], body["attempts"]) == ("succeeded", {"total": 6}, 1)

    code, out, _ = await cli("jobs", "result", str(failed.id))
    assert code == EXIT_JOB_FAILED
    assert "failed" in out and "KeyError: 'email'" in out

    code, _, err = await cli("jobs", "result", str(forgetful.id))
    assert code == EXIT_NOT_FOUND
    assert f"job {forgetful.id}: no outcome is kept" in err


async def test_the_cli_waits_for_the_end_and_gives_up_after_its_timeout(
    client: BackfillClient, database_url: str, cli: Cli
) -> None:
    job = await client.enqueue("surface.total", {"items": [4, 5]})

    code, _, err = await cli("jobs", "result", str(job.id), "--wait", "--timeout", "0.2")
    assert code == EXIT_PENDING
    assert f"job {job.id} did not end within 0.2s" in err

    waiting = asyncio.create_task(cli("jobs", "result", str(job.id), "--wait", "--timeout", "30"))
    await _run(database_url)
    code, out, _ = await asyncio.wait_for(waiting, 40)
    assert code == EXIT_OK
    assert '"total": 9' in out


async def test_the_cli_refuses_a_timeout_without_wait(cli: Cli, client: BackfillClient) -> None:
    code, _, err = await cli("jobs", "result", "1", "--timeout", "5")

    assert code == EXIT_USAGE
    assert "--timeout needs --wait" in err


async def test_backfill_add_keep_result_asks_for_the_outcome(
    client: BackfillClient, database_url: str, cli: Cli
) -> None:
    added = await cli.json("add", "surface.forgetful", "{}", "--keep-result", "90")
    assert "backfill:result=90" in added["flags"]

    await _run(database_url)

    body = await cli.json("jobs", "result", str(added["id"]))
    assert (body["state"], body["value"]) == ("succeeded", 1)


async def test_the_api_answers_pending_then_the_outcome_and_404_for_nothing_kept(
    api: httpx.AsyncClient, client: BackfillClient, database_url: str
) -> None:
    job = await client.enqueue("surface.total", {"items": [10, 20]})
    forgetful = await client.enqueue("surface.forgetful", {})

    response = await api.get(f"/api/jobs/{job.id}/result")
    assert (response.status_code, response.json()) == (200, {"job_id": job.id, "state": "pending"})

    await _run(database_url)

    body = (await api.get(f"/api/jobs/{job.id}/result")).json()
    assert (body["state"], body["value"], body["kept"]) == ("succeeded", {"total": 30}, True)
    assert body["finished_at"] is not None and body["expires_at"] is not None
    missing = await api.get(f"/api/jobs/{forgetful.id}/result")
    assert missing.status_code == 404
    assert "no outcome is kept" in missing.json()["error"]["message"]


async def test_the_api_long_polls_with_wait_and_bounds_it(
    api: httpx.AsyncClient, client: BackfillClient, database_url: str
) -> None:
    job = await client.enqueue("surface.total", {"items": [7]})

    polling = asyncio.create_task(api.get(f"/api/jobs/{job.id}/result", params={"wait": 30}))
    await _run(database_url)
    response = await asyncio.wait_for(polling, 40)
    assert (response.status_code, response.json()["value"]) == (200, {"total": 7})

    too_long = await api.get(f"/api/jobs/{job.id}/result", params={"wait": 31})
    assert too_long.status_code == 400
    assert too_long.json()["error"]["field"] == "wait"
