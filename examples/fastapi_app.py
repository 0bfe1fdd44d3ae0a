"""A web application that enqueues jobs and runs the workers in its own process, started by its lifespan.

Serve it with FastAPI and uvicorn installed (neither is a dependency of backfill)::

    DATABASE_URL=postgresql://... uvicorn --factory examples.fastapi_app:create_app

``python -m examples.fastapi_app`` runs the same lifespan and endpoint without a web server (and, if FastAPI is
installed, once more through FastAPI's test client), then prints what the worker did.

Embedding is for small services: every web process is then also a worker, and a deploy restarts both. Run
``backfill run`` as its own process when the two should scale or restart apart (docs/how-to/deployment.md).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import BaseModel

import backfill
from backfill.client.default import close_default_client
from backfill.runner import WorkerRunner

WELCOMED: list[str] = []


class Signup(BaseModel):
    email: str


@backfill.task("webapp.send_welcome", priority=backfill.Priority.FAST_DEFAULT, retry_policy="fast")
async def send_welcome(payload: Signup) -> None:
    WELCOMED.append(payload.email)


async def create_signup(signup: Signup) -> dict[str, int]:
    """The endpoint: answer at once, leave the slow part (the email) to a job."""
    job = await backfill.enqueue("webapp.send_welcome", signup.model_dump())
    return {"job_id": job.id}


@asynccontextmanager
async def lifespan(app: object = None) -> AsyncIterator[None]:
    """Start the runner's lanes with the application and stop them with it: on shutdown running jobs get
    ``BACKFILL_SHUTDOWN_GRACE_SECONDS`` to finish, and unstarted ones are handed back for other workers."""
    async with WorkerRunner.from_env():
        try:
            yield
        finally:
            # The module-level enqueue functions opened a pool on this event loop; close it with the app.
            await close_default_client()


def create_app() -> Any:
    """The FastAPI application. FastAPI is imported here, so this module imports and type-checks without it."""
    fastapi = importlib.import_module("fastapi")
    app = fastapi.FastAPI(lifespan=lifespan)
    # add_api_route rather than the @app.post decorator: the same thing, and it type-checks without FastAPI.
    app.add_api_route("/signups", create_signup, methods=["POST"], status_code=202)
    return app


async def wait_for_welcomes(count: int) -> None:
    async with asyncio.timeout(10):
        while len(WELCOMED) < count:  # noqa: ASYNC110 - a demo's wait for the worker, not a pattern to copy
            await asyncio.sleep(0.02)


async def without_a_web_server() -> None:
    async with lifespan():
        reply = await create_signup(Signup(email="ada@example.com"))
        print(f"POST /signups (called directly) -> {reply}")
        await wait_for_welcomes(1)


def through_fastapi() -> None:
    # FastAPI's test client drives the app in its own event loop and runs the lifespan on entering `with`.
    test_client = importlib.import_module("fastapi.testclient")
    with test_client.TestClient(create_app()) as http:
        response = http.post("/signups", json={"email": "alan@example.com"})
        print(f"POST /signups (through FastAPI) -> {response.status_code} {response.json()}")
        http.portal.call(wait_for_welcomes, 2)


def main() -> int:
    asyncio.run(without_a_web_server())
    expected = 1
    if importlib.util.find_spec("fastapi") is not None and importlib.util.find_spec("httpx") is not None:
        through_fastapi()
        expected = 2
    else:
        print("FastAPI (with httpx) is not installed: skipped the run through FastAPI's test client")
    print(f"welcome emails sent by the worker: {', '.join(WELCOMED)}")
    return 0 if len(WELCOMED) == expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
