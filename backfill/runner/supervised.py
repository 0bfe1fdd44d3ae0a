"""The worker process's side of :mod:`backfill.runner.supervisor`: stop gracefully when the supervisor is gone.

The supervisor passes each process the read end of a pipe whose write end it alone holds, and never writes
to it. A read returns end-of-file only once every write end is closed, which the kernel does when the
supervisor exits, however it dies (SIGKILL and the OOM killer included). The process then sends itself
SIGTERM, which its runner handles as any SIGTERM: running jobs get the grace period, nothing is left locked.
Without this, a killed supervisor would leave its processes running with nobody to stop them.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Mapping
from typing import Final

logger = logging.getLogger("backfill.supervisor")

# Not a setting (no BACKFILL_ prefix, so the check for unknown BACKFILL_* variables leaves it alone): the
# supervisor sets it for its processes, and nobody else should.
SUPERVISOR_FD_VARIABLE: Final = "_BACKFILL_SUPERVISOR_FD"


def watch_supervisor(environ: Mapping[str, str] | None = None) -> bool:
    """If this process was started by a supervisor, start a daemon thread that stops the process gracefully
    when the supervisor exits; whether it was."""
    source = os.environ if environ is None else environ
    value = source.get(SUPERVISOR_FD_VARIABLE)
    if environ is None:
        # Not for the processes this one starts (a handler's subprocess): the descriptor is not theirs, and
        # the same number may be another file there.
        os.environ.pop(SUPERVISOR_FD_VARIABLE, None)
    if not value:
        return False
    try:
        fd = int(value)
        os.fstat(fd)
    except (ValueError, OSError):
        # A stale variable, copied from a supervised process's environment: nothing to watch, and no reason
        # to stop.
        logger.warning("%s=%r names no open descriptor: not watching a supervisor", SUPERVISOR_FD_VARIABLE, value)
        return False
    threading.Thread(target=_wait_for_end_of_file, args=(fd,), name="backfill-supervisor-watch", daemon=True).start()
    return True


def _wait_for_end_of_file(fd: int) -> None:
    try:
        while os.read(fd, 64):
            pass  # the supervisor never writes; should anything arrive, it is not an end
    except OSError:
        pass  # a closed or bad descriptor: as good as the supervisor gone
    logger.warning("the supervisor is gone: stopping gracefully")
    os.kill(os.getpid(), signal.SIGTERM)
