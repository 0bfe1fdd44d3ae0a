"""A runner started as a real process by the tests: its output collected as it comes, signals sent to it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.support.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[3]

# The ways an application runs a WorkerRunner as its process: `backfill run`, `runner.main()` as the
# container's entry point, and an app of its own with the runner in its background (a FastAPI lifespan).
ENTRY_POINTS: dict[str, list[str]] = {
    "backfill run": ["-m", "backfill", "run", "--env-file", os.devnull],
    "runner.main()": ["-c", "import sys; from backfill.runner import main; sys.exit(main())"],
    "background": ["-m", "tests.integration.worker_support.background_app"],
}


def runner_environment(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKFILL_", "GRAPHILE_"))}
    env.update(
        DATABASE_URL=database_url,
        BACKFILL_TASK_MODULES="tests.integration.worker_support.shutdown_tasks",
        BACKFILL_LOG_FORMAT="json",
        POLL_INTERVAL_MS="100",
        **extra,
    )
    return env


class RunnerProcess:
    """One process; ``stdout``/``stderr`` hold what it printed so far."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.stdout = ""
        self.stderr = ""
        self._readers = [
            asyncio.ensure_future(self._collect(process.stdout, "stdout")),
            asyncio.ensure_future(self._collect(process.stderr, "stderr")),
        ]

    @classmethod
    async def start(cls, entry_point: str, env: dict[str, str]) -> RunnerProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *ENTRY_POINTS[entry_point],
            cwd=REPO_ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _collect(self, stream: asyncio.StreamReader | None, name: str) -> None:
        assert stream is not None
        while chunk := await stream.read(4096):
            setattr(self, name, getattr(self, name) + chunk.decode(errors="replace"))

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    async def wait_for_output(self, text: str, within: float = 30) -> None:
        async def printed() -> bool:
            if self.process.returncode is not None:
                raise AssertionError(f"the process exited ({self.process.returncode}) first:\n{self.output[-3000:]}")
            return text in self.output

        await wait_for(printed, timeout=within, message=f"{text!r} never printed")

    def send(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    async def exit_code(self, within: float) -> int:
        """The exit code, waiting up to ``within`` seconds; a process still running then fails the test."""
        try:
            code = await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            raise AssertionError(f"still running after {within} s:\n{self.output[-3000:]}") from None
        await asyncio.gather(*self._readers)
        return code

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
