"""Running a Python command as a real process for a test: its exit code and what it printed, bounded in time."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Finished:
    """A process that ended: ``stdout`` holds both streams when they were merged."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def run_python(
    *argv: str, env: dict[str, str], cwd: Path = REPO_ROOT, within: float = 60.0, merge_stderr: bool = False
) -> Finished:
    """``python ARGV`` (this interpreter) in ``cwd`` with exactly ``env``; killed, and the test failed with
    TimeoutError, if it has not ended within ``within`` seconds. ``merge_stderr`` sends stderr into stdout,
    in the order the process wrote them."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(errors="replace"), (err or b"").decode(errors="replace"))
