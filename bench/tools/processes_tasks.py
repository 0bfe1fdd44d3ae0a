"""Tasks for bench/tools/processes.py (loaded by the runner through BACKFILL_TASK_MODULES)."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import backfill

# Where procbench.stamp appends each job's start lag (seconds), one line per job; set by the tool.
LAG_FILE_VARIABLE = "PROCBENCH_LAG_FILE"


@backfill.task("procbench.noop")
async def noop(payload: Any) -> None:
    return None


@backfill.task("procbench.cpu")
def cpu(payload: dict[str, Any]) -> None:
    # Pure-Python CPU work, GIL held throughout: a sync task, so it runs in the runner's thread pool as a
    # CPU-heavy task of an application would. About 3.5 ms a job at 1500 rounds on the 2-core test machine.
    data = b"x"
    for _ in range(int(payload["rounds"])):
        data = hashlib.sha256(data).digest()
        _ = sum(range(50))


@backfill.task("procbench.stamp")
async def stamp(payload: dict[str, Any]) -> None:
    lag = time.time() - float(payload["t"])
    # One short line to a local file: microseconds, and an async task measures the loop's own wake-up path.
    with open(os.environ[LAG_FILE_VARIABLE], "a", encoding="utf-8") as file:  # noqa: ASYNC230
        file.write(f"{lag}\n")
