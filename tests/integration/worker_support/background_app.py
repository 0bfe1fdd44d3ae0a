"""An application that runs a WorkerRunner in its background, as a FastAPI lifespan does: the app owns the
signals, and on SIGTERM leaves ``async with runner:``, which must give running jobs their grace period."""

from __future__ import annotations

import asyncio
import signal
import sys

from backfill.runner import WorkerRunner


async def serve() -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    async with WorkerRunner.from_env() as runner:
        print("app: runner started", flush=True)
        await stopping.wait()
        print("app: leaving the runner's block", flush=True)
    print(f"app: runner stopped: {runner.summary}", flush=True)


if __name__ == "__main__":
    asyncio.run(serve())
    sys.exit(0)
