"""The runner's side of the controls: apply pauses to its lanes and carry out cancellations of its jobs.

One ``ControlWatcher`` per runner process holds a connection of its own that LISTENs on ``backfill:control``.
It acts on a notification at once, and every ``poll_interval`` seconds (1 by default) it reads the state anyway,
because NOTIFY is a hint: a notification sent while its connection is down is lost. Each round:

* the pauses: each lane's worker gets a :class:`~backfill.core.FetchPause` (the lane's own pause, and every
  paused queue and task), and changes only when it differs, so an unchanged poll costs the worker nothing;
* the cancellations asked of this process's workers: each worker cancels the job if it holds it; the jobs its
  workers report cancelled (``job:cancelled``) are marked so in the table;
* on a poll, the requests no worker can carry out any more (the job ended first, was queued again, or its worker
  died): ``resolve_cancellations``, shared by every runner with SKIP LOCKED.

The three reads of a poll are index lookups on tables of a few rows, one round trip each on the watcher's own
connection: no pool connection, and nothing on the fetch path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg

from backfill.control.models import Pause, PauseKind
from backfill.control.queries import CANCEL_REQUESTED, CONTROL_CHANNEL, PAUSES_CHANGED, ControlSql
from backfill.core import CancelAnswer, DatabaseError, Events, FetchPause, SchemaName, Worker
from backfill.core.extension import (
    ConnectionSource,
    ConsecutiveFailures,
    Executor,
    connect,
    connection_from,
    redact_dsn,
)

logger = logging.getLogger("backfill.control")

DEFAULT_POLL_INTERVAL = 1.0
# What the watcher's connection is called in pg_stat_activity.
APPLICATION_NAME = "backfill-control"
_CONNECTION_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


def fetch_pauses(pauses: list[Pause], lanes: Mapping[str, Worker]) -> dict[str, FetchPause]:
    """What each lane's worker must leave queued under ``pauses``."""
    tasks = frozenset(p.name for p in pauses if p.kind is PauseKind.TASK)
    queues = frozenset(p.name for p in pauses if p.kind is PauseKind.QUEUE)
    paused_lanes = {p.name for p in pauses if p.kind is PauseKind.LANE}
    return {lane: FetchPause(lane in paused_lanes, tasks, queues) for lane in lanes}


class ControlWatcher:
    """Keeps the lanes of one runner in line with the pauses and cancellations in the database."""

    def __init__(
        self,
        dsn: str,
        schema: SchemaName,
        lanes: Callable[[], Mapping[str, Worker]],
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        on_pauses: Callable[[list[Pause]], None] = lambda pauses: None,
    ) -> None:
        self._dsn = dsn
        self._sql = ControlSql.for_schema(schema)
        self._lanes = lanes  # lane name -> its worker, now (run_once makes new workers every round)
        self._poll_interval = poll_interval
        self._on_pauses = on_pauses
        self._pauses: list[Pause] | None = None
        self._wake = asyncio.Event()
        self._pauses_changed = True
        self._cancel_asked = True
        self._resolve_due = True  # on every poll: requests that no worker can carry out any more
        self._unwritten: set[int] = set()  # jobs our workers cancelled, whose completion is not written yet
        self._cancelled: list[int] = []  # jobs our workers cancelled and completed, to mark in the table
        self.rounds = 0

    def observe(self, events: Events) -> None:
        """Mark in the table the jobs the worker of ``events`` cancels, once their completion is committed (a
        completion fenced out, because the job was taken from the worker, leaves the request open: the
        resolve then finds the job under its new worker)."""
        events.on("job:cancelled", self._on_job_cancelled)
        events.on("results:written", self._on_results_written)

    def _on_job_cancelled(self, event: Any) -> None:
        self._unwritten.add(event["job"].id)

    def _on_results_written(self, event: Any) -> None:
        if not self._unwritten:
            return
        for job in event["completed"]:
            if job.id in self._unwritten:
                self._unwritten.discard(job.id)
                self._cancelled.append(job.id)
                self._wake.set()

    async def load(self, source: ConnectionSource) -> None:
        """Read the pauses and apply them: before the lanes start, so that their first claim honours them."""
        async with connection_from(source) as connection:
            rows = await connection.fetch(self._sql.pauses)
        self._apply_pauses([Pause.from_record(row) for row in rows])

    async def run(self) -> None:
        """Watch until cancelled, reconnecting (with backoff) when the connection is lost."""
        failures = ConsecutiveFailures(initial=0.1, maximum=self._poll_interval * 5)
        while True:
            try:
                connection = await connect(self._dsn, server_settings={"application_name": APPLICATION_NAME})
            except (DatabaseError, *_CONNECTION_ERRORS) as error:  # the database is down: try again, never die
                await asyncio.sleep(failures.failed(logger, f"control connection to {redact_dsn(self._dsn)}", error))
                continue
            try:
                await connection.add_listener(CONTROL_CHANNEL, self._on_notification)
                self._pauses_changed = self._cancel_asked = True  # missed while away: read everything
                while True:
                    await self._round(connection)
                    failures.succeeded()
                    if not connection.is_closed():
                        await self._wait()
                    if connection.is_closed():
                        raise ConnectionError("the control connection was closed")
            except Exception as error:  # a lost connection above all; whatever it is, a dead watcher would be silent
                await asyncio.sleep(failures.failed(logger, "watching pauses and cancellations", error))
            finally:
                connection.terminate()

    async def _wait(self) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval)
        except TimeoutError:
            self._pauses_changed = self._cancel_asked = True  # the poll: read everything
            self._resolve_due = True
        self._wake.clear()

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: object) -> None:
        if payload == PAUSES_CHANGED:
            self._pauses_changed = True
        elif payload == CANCEL_REQUESTED:
            self._cancel_asked = True
        else:  # from a newer backfill, say: read everything
            self._pauses_changed = self._cancel_asked = True
        self._wake.set()

    async def _round(self, connection: Executor) -> None:
        self.rounds += 1
        if self._pauses_changed:
            self._pauses_changed = False
            await self.load(connection)
        if self._cancel_asked:
            self._cancel_asked = False
            await self._carry_out_cancels(connection)
        if self._cancelled:
            done, self._cancelled = self._cancelled, []
            try:
                await connection.execute(self._sql.mark_cancelled, done)
            except BaseException:
                self._cancelled.extend(done)
                raise
        if self._resolve_due:
            self._resolve_due = False
            row = await connection.fetchrow(self._sql.resolve_cancellations)
            if row is not None and row["moved"]:
                await connection.execute(self._sql.notify_cancel_requested)

    async def _carry_out_cancels(self, connection: Executor) -> None:
        lanes = self._lanes()
        by_id = {worker.worker_id: worker for worker in lanes.values()}
        if not by_id:
            return
        for row in await connection.fetch(self._sql.requested_of, list(by_id)):
            worker = by_id[row["worker_id"]]
            answer = worker.cancel_job(row["job_id"], row["reason"] or "")
            if answer is CancelAnswer.NOT_HERE:
                self._resolve_due = True  # it ended, or was never started here: the resolve answers for it

    def _apply_pauses(self, pauses: list[Pause]) -> None:
        lanes = self._lanes()
        for lane, pause in fetch_pauses(pauses, lanes).items():
            lanes[lane].set_fetch_pause(pause)
        if pauses != self._pauses:
            if pauses:
                logger.warning("pauses in force: %s", "; ".join(f"{p.kind.value} {p.name}" for p in pauses))
            elif self._pauses:
                logger.warning("every pause lifted")
            self._pauses = pauses
            self._on_pauses(pauses)
