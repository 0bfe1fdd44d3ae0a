"""The supervisor of ``BACKFILL_PROCESSES=N`` (``backfill run --processes N``): N worker processes, each the
single-process runner, for tasks whose CPU work one Python process (one GIL, so about one core) cannot keep up
with.

* **Fresh interpreters.** Each worker process is ``python -m backfill run`` started anew, not a fork of this
  one: forking after asyncio, asyncpg and threads are set up copies their state half-way. It reads the same
  environment, with ``BACKFILL_PROCESSES=1``, and imports its tasks itself (so they must be named by
  ``BACKFILL_TASK_MODULES`` or ``--tasks``).
* **Restarts.** A process that dies while the supervisor is not stopping is started again, after a delay that
  doubles while it keeps dying within :data:`MIN_UPTIME` of its start (0.5 s, 1 s, 2 s … 10 s). After
  :data:`MAX_QUICK_DEATHS` such deaths in a row the supervisor gives up: it stops the others and exits 1
  (runtime failure). A process that exits 2 (configuration) or 57 (incompatible schema) would only do it
  again: the supervisor stops the others at once and exits with that code. The jobs a dead process held are
  released by the sweeper of a living one (or of its successor), as for any dead worker.
* **Signals.** SIGTERM/SIGINT is forwarded to every process, which stops as the single-process runner does:
  the first one gracefully within ``BACKFILL_SHUTDOWN_GRACE_SECONDS``, the second one at once. The processes
  run in a session of their own, so a Ctrl-C in a terminal (sent to the whole foreground group) reaches them
  once, through the supervisor, rather than twice. A process still running :data:`KILL_MARGIN` seconds past
  the grace period is killed. The exit code is 0 when every process stopped cleanly, else 1.
* **Orphans.** Each process holds the read end of a pipe whose write end only the supervisor has. If the
  supervisor dies (even of SIGKILL) the pipe closes, and each process stops itself gracefully
  (:mod:`backfill.runner.supervised`).
* **One endpoint.** With ``BACKFILL_METRICS_PORT`` set, each process serves on a loopback port of its own and
  the supervisor serves ``/metrics`` (their pages merged), ``/healthz`` and ``/readyz`` on the configured port
  (:mod:`backfill.metrics.processes`).
* **One admin API.** With ``BACKFILL_ADMIN_PORT`` set, process 1 serves it on that port (the others are not
  given the variable): its answers come from the database, so one process answers for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from backfill.core import ConfigurationError
from backfill.core.extension import StopSignals
from backfill.exit_codes import EXIT_FAILURE, EXIT_INCOMPATIBLE_SCHEMA, EXIT_OK, EXIT_USAGE
from backfill.metrics.health import LoopLiveness
from backfill.metrics.processes import ProcessesEndpoint, WorkerEndpoint
from backfill.metrics.server import MetricsServer, serve_text
from backfill.runner.supervised import SUPERVISOR_FD_VARIABLE
from backfill.settings import BackfillSettings

logger = logging.getLogger("backfill.supervisor")

# A process that dies sooner than this after its start "dies at once": the cause is likely to be there again
# (the database refuses connections, a task module fails at import), so restarts slow down and then stop.
MIN_UPTIME: Final = 10.0
MAX_QUICK_DEATHS: Final = 5
FIRST_RESTART_DELAY: Final = 0.5
MAX_RESTART_DELAY: Final = 10.0
# Past the grace period, a process needs a moment to cancel its jobs, record them and close its pool; one
# still running this much later is stuck, and killing it is what an orchestrator would do next anyway.
KILL_MARGIN: Final = 30.0
# Exit codes that another start would only repeat.
_NOT_WORTH_RESTARTING: Final = frozenset({EXIT_USAGE, EXIT_INCOMPATIBLE_SCHEMA})


@dataclass
class _Slot:
    """Worker process ``number`` (1..N), and its current incarnation."""

    number: int
    process: asyncio.subprocess.Process | None = None
    port: int | None = None
    started_at: float = 0.0
    quick_deaths: int = 0


class Supervisor:
    """Runs ``processes`` worker processes until stopped; :meth:`run` returns the exit code."""

    def __init__(
        self,
        settings: BackfillSettings,
        *,
        processes: int,
        child_args: Sequence[str],
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if processes < 1:
            raise ConfigurationError(f"BACKFILL_PROCESSES: must be a positive integer, got {processes}")
        self.settings = settings
        self._slots = [_Slot(number) for number in range(1, processes + 1)]
        self._child_args = list(child_args)
        self._environ = dict(os.environ if environ is None else environ)
        self._stopping = asyncio.Event()
        self._signals_received = 0
        self._exit_code: int | None = None  # set when a process's death decides it
        self._clean_exit = True
        self._restarts = 0
        self._server: MetricsServer | None = None
        self._pipe: tuple[int, int] | None = None

    async def run(self) -> int:
        signals = StopSignals(self._on_signal)
        signals.install()  # a signal recorded during start-up (imports) arrives now
        self._pipe = os.pipe()
        try:
            self._serve_endpoint()
            logger.info("supervisor started: %d worker processes", len(self._slots))
            await asyncio.gather(*(self._keep_running(slot) for slot in self._slots))
        finally:
            if self._server is not None:
                self._server.close()
            for end in self._pipe:
                os.close(end)
            signals.remove()
        if self._exit_code is not None:
            return self._exit_code
        return EXIT_OK if self._clean_exit else EXIT_FAILURE

    # -- signals ---------------------------------------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        self._signals_received += 1
        name = signal.Signals(signum).name
        first = self._signals_received == 1
        logger.warning(
            "received %s: %s",
            name,
            "stopping the worker processes gracefully (send again to stop now)"
            if first
            else "stopping the worker processes now",
        )
        self._stop(signum)

    def _stop(self, signum: int) -> None:
        """Forward ``signum`` to every running process; the first call also ends restarts and arms the kill."""
        if not self._stopping.is_set():
            self._stopping.set()
            asyncio.get_running_loop().call_later(
                self.settings.shutdown_grace_seconds + KILL_MARGIN, self._kill_the_stuck
            )
        for slot in self._slots:
            if slot.process is not None and slot.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.process.send_signal(signum)

    def _kill_the_stuck(self) -> None:
        for slot in self._slots:
            if slot.process is not None and slot.process.returncode is None:
                logger.error(
                    "worker process %d (pid %d) still running %gs after the grace period: killing it",
                    slot.number,
                    slot.process.pid,
                    KILL_MARGIN,
                )
                with contextlib.suppress(ProcessLookupError):
                    slot.process.kill()

    # -- processes -------------------------------------------------------------------------------------------------

    async def _keep_running(self, slot: _Slot) -> None:
        while not self._stopping.is_set():
            process = await self._start(slot)
            code = await process.wait()
            slot.process, slot.port = None, None
            if self._stopping.is_set():
                self._note_final(slot, code)
                return
            uptime = time.monotonic() - slot.started_at
            logger.error(
                "worker process %d (pid %d) exited unexpectedly (%s) after %.1fs",
                slot.number,
                process.pid,
                _describe_exit(code),
                uptime,
            )
            if code in _NOT_WORTH_RESTARTING:
                self._give_up(code, f"worker process {slot.number} exited {code}: another start would do the same")
                return
            slot.quick_deaths = slot.quick_deaths + 1 if uptime < MIN_UPTIME else 0
            if slot.quick_deaths >= MAX_QUICK_DEATHS:
                self._give_up(
                    EXIT_FAILURE,
                    f"worker process {slot.number} died {slot.quick_deaths} times in a row within "
                    f"{MIN_UPTIME:g}s of starting (last: {_describe_exit(code)})",
                )
                return
            delay = 0.0 if slot.quick_deaths == 0 else restart_delay(slot.quick_deaths)
            logger.warning("restarting worker process %d in %.1fs", slot.number, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if not self._stopping.is_set():
                self._restarts += 1

    async def _start(self, slot: _Slot) -> asyncio.subprocess.Process:
        assert self._pipe is not None
        read_end = self._pipe[0]
        env = dict(self._environ)
        env["BACKFILL_PROCESSES"] = "1"
        env[SUPERVISOR_FD_VARIABLE] = str(read_end)
        if self._server is not None:
            # Picked here rather than by the process (port 0) so the supervisor knows it without a reply. If
            # another program takes it in the moment between, the process fails to serve, exits 1 and is
            # restarted on another port.
            slot.port = free_loopback_port()
            env["BACKFILL_METRICS_HOST"] = "127.0.0.1"
            env["BACKFILL_METRICS_PORT"] = str(slot.port)
        else:
            env.pop("BACKFILL_METRICS_PORT", None)
        if slot.number != 1:
            # One admin API on BACKFILL_ADMIN_PORT: process 1 serves it (the API reads the database, so any one
            # process can answer for the fleet); a restarted process 1 serves it again.
            env.pop("BACKFILL_ADMIN_PORT", None)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *self._child_args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            pass_fds=(read_end,),
            start_new_session=True,  # see the module docstring (Signals)
        )
        slot.process, slot.started_at = process, time.monotonic()
        logger.info("worker process %d started (pid %d)", slot.number, process.pid)
        if self._stopping.is_set():  # a stop arrived while it was being started: it gets the news too
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        return process

    def _note_final(self, slot: _Slot, code: int) -> None:
        # Killed by the signal it was forwarded before its runner could catch it (still in interpreter
        # start-up): it had claimed nothing, which is a clean stop too.
        if code not in (EXIT_OK, -signal.SIGTERM, -signal.SIGINT):
            self._clean_exit = False
            logger.error("worker process %d stopped with %s", slot.number, _describe_exit(code))

    def _give_up(self, code: int, reason: str) -> None:
        logger.error("giving up: %s; stopping the other worker processes", reason)
        if self._exit_code is None:
            self._exit_code = code
        self._stop(signal.SIGTERM)

    # -- the endpoint ----------------------------------------------------------------------------------------------

    def _serve_endpoint(self) -> None:
        settings = self.settings
        if settings.metrics_port is None:
            return
        endpoint = ProcessesEndpoint(
            self._endpoints, own_metrics=self._own_metrics, liveness=LoopLiveness(asyncio.get_running_loop())
        )
        self._server = serve_text(
            endpoint.metrics,
            host=settings.metrics_host,
            port=settings.metrics_port,
            liveness=endpoint.healthz,
            readiness=endpoint.readyz,
        )
        logger.info(
            "metrics of every worker process served on http://%s:%s/metrics", settings.metrics_host, self._server.port
        )

    def _endpoints(self) -> list[WorkerEndpoint]:
        # Called from the server's threads: reads each slot's port once, a plain attribute read.
        return [WorkerEndpoint(slot.number, slot.port) for slot in self._slots]

    def _own_metrics(self) -> str:
        running = sum(1 for slot in self._slots if slot.process is not None and slot.process.returncode is None)
        return (
            "# HELP backfill_worker_processes Worker processes running under the supervisor\n"
            "# TYPE backfill_worker_processes gauge\n"
            f"backfill_worker_processes {float(running)!r}\n"
            "# HELP backfill_worker_process_restarts_total Worker processes restarted after an unexpected exit\n"
            "# TYPE backfill_worker_process_restarts_total counter\n"
            f"backfill_worker_process_restarts_total {float(self._restarts)!r}\n"
        )


def restart_delay(quick_deaths: int) -> float:
    """Seconds before restarting a process that died at once ``quick_deaths`` times in a row (1, 2, …)."""
    return float(min(FIRST_RESTART_DELAY * 2 ** (quick_deaths - 1), MAX_RESTART_DELAY))


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


async def supervise(
    settings: BackfillSettings,
    *,
    processes: int,
    extra_task_modules: Sequence[str] = (),
    env_file: str | None = None,
) -> int:
    """Run ``processes`` worker processes (``python -m backfill run``) until stopped; the exit code.

    ``extra_task_modules`` are passed on as ``--tasks``; ``env_file`` as ``--env-file`` (the processes inherit
    this process's environment, which the CLI has already filled from its file).
    """
    if not settings.task_modules and not extra_task_modules:
        raise ConfigurationError(
            f"BACKFILL_PROCESSES={processes}: each worker process imports its tasks itself; name their modules in "
            "BACKFILL_TASK_MODULES (or --tasks)"
        )
    args = ["-m", "backfill", "run", "--env-file", env_file or os.devnull]
    for module in extra_task_modules:
        args += ["--tasks", module]
    return await Supervisor(settings, processes=processes, child_args=args).run()


def run_supervisor(settings: BackfillSettings, *, env_file: str | None = ".env") -> int:
    """:func:`supervise` with ``settings.processes`` processes, blocking; the exit code (2 for a configuration
    error). For :func:`backfill.runner.main`, whose ``.env`` (read by the settings, not put in the environment)
    each process reads again."""
    file = env_file if env_file is not None and os.path.isfile(env_file) else None
    try:
        return asyncio.run(supervise(settings, processes=settings.processes, env_file=file))
    except ConfigurationError as error:
        logger.error("configuration error: %s", error)
        return EXIT_USAGE
