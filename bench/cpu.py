"""CPU time of processes on this machine, read from /proc, for the idle-cost measurement.

The harness runs on the same machine as PostgreSQL (the benchmark is about one machine), so a backend's
CPU time is in ``/proc/PID/stat`` like any process's: fields 14 and 15, user and system time in clock
ticks, every thread included.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def parse_stat_ticks(stat: str) -> int:
    """utime + stime from the text of ``/proc/PID/stat``. The command name (field 2) is in parentheses
    and may hold spaces, so fields are counted after its closing parenthesis."""
    after_name = stat[stat.rindex(")") + 2 :].split()
    # after_name[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(after_name[11]) + int(after_name[12])


def process_ticks(pid: int) -> int | None:
    """CPU ticks used so far by ``pid``, or ``None`` if it is gone (or not ours to read)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return parse_stat_ticks(stat.read())
    except (OSError, ValueError, IndexError):
        return None


def snapshot(pids: Iterable[int]) -> dict[int, int]:
    ticks = {pid: process_ticks(pid) for pid in pids}
    return {pid: value for pid, value in ticks.items() if value is not None}


def percent_of_a_core(before: Mapping[int, int], after: Mapping[int, int], seconds: float) -> float:
    """CPU used between two snapshots, as % of one core over ``seconds``.

    A process first seen in ``after`` was born inside the window, so all of its time counts; one seen only in
    ``before`` ended inside it, and what it used after ``before`` is lost (rare for an idle worker's pool)."""
    used = sum(ticks - before.get(pid, 0) for pid, ticks in after.items())
    return 100.0 * used / TICKS_PER_SECOND / seconds
