"""PostgreSQL restarts under load: a throwaway server started for this test only (never the session's)."""

from __future__ import annotations

import asyncio
import random
import shlex
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from backfill.core.migrations.graphile import migrate
from backfill.embedded import start_embedded_postgres
from tests.chaos.harness import JOBS, Fleet, chaos_spec, check_ledger, create_ledger, enqueue, new_key, scaled
from tests.support.waiting import wait_for

pytestmark = pytest.mark.chaos


class OwnServer:
    """An embedded PostgreSQL server (:mod:`backfill.embedded`) in a temporary data directory of its own."""

    def __init__(self) -> None:
        self._server = start_embedded_postgres(prefix="backfill-chaos-pg-")
        self.data_dir = self._server.data_dir
        self._pg_ctl = self._server.binary("pg_ctl")

    @property
    def dsn(self) -> str:
        return self._server.dsn

    def restart(self, outage: float) -> None:
        """Stop the server (``-m fast``: every connection is cut), keep it down ``outage`` seconds, start it again
        with the same options on the same socket."""
        opts = shlex.split((self.data_dir / "postmaster.opts").read_text())
        args = opts[1:]  # drop the binary; keep every option but the data directory
        while "-D" in args:
            at = args.index("-D")
            del args[at : at + 2]
        self._pg_ctl_run("-m", "fast", "stop")
        time.sleep(outage)
        self._pg_ctl_run("-l", str(self.data_dir / "log"), "-o", shlex.join(args), "start")

    def _pg_ctl_run(self, *args: str) -> None:
        subprocess.run(
            [str(self._pg_ctl), "-D", str(self.data_dir), "-w", "-t", "60", *args],
            check=True,
            capture_output=True,
            user=self._server.run_as,  # postgres runs as an unprivileged user of its own when we are root
            timeout=90,
        )

    def cleanup(self) -> None:
        self._server.stop()


@pytest.fixture
async def own_server() -> AsyncIterator[OwnServer]:
    server = await asyncio.to_thread(OwnServer)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.cleanup)


async def test_workers_reconnect_after_a_postgres_restart_and_lose_nothing(
    own_server: OwnServer, tmp_path: Path
) -> None:
    started = time.monotonic()
    dsn = own_server.dsn
    admin = await asyncpg.connect(dsn)
    await migrate(admin)
    await create_ledger(admin)
    await admin.close()

    fleet = Fleet(dsn, tmp_path)
    try:
        job_count = scaled(600)
        restarts = scaled(1)
        workers = await fleet.start(scaled(3, minimum=2), concurrency=4, poll_interval=1.0)
        admin = await asyncpg.connect(dsn)
        specs = [chaos_spec(new_key("rs"), sleep_ms=random.randint(0, 20)) for _ in range(job_count)]
        keys = list(await enqueue(admin, specs))
        excused: set[str] = set()
        for round_number in range(restarts):
            target = job_count * (round_number + 1) // (restarts + 2)

            async def reached(target: int = target, admin: asyncpg.Connection[Any] = admin) -> bool:
                left = await admin.fetchval(f"select count(*) from {JOBS} where key = any($1)", keys)
                return job_count - int(left) >= target

            await wait_for(reached, timeout=60, message=f"{target} jobs done before restart {round_number}")
            rows = await admin.fetch(f"select key from {JOBS} where locked_by is not null")
            excused.update(str(r["key"]) for r in rows)
            await admin.close()
            t0 = time.monotonic()
            outage = random.uniform(1.0, 3.0)
            await asyncio.to_thread(own_server.restart, outage)
            print(
                f"CHAOS postgres-restart: restart {round_number} ({outage:.1f}s down) took {time.monotonic() - t0:.2f}s"
            )
            admin = await asyncpg.connect(dsn)
            for worker in workers:
                assert worker.alive, f"{worker.worker_id} died with the restart:\n{worker.stderr()[-3000:]}"

        async def all_done() -> bool:
            return bool(await admin.fetchval(f"select count(*) from {JOBS} where key = any($1)", keys) == 0)

        t_restarted = time.monotonic()
        await wait_for(all_done, timeout=90, interval=0.1, message="every job done after the restart")
        recovery = time.monotonic() - t_restarted
        assert all(w.alive for w in workers)
        codes = await fleet.stop()
        assert codes == {w.worker_id: 0 for w in workers}, codes
        report = await check_ledger(
            admin,
            "postgres-restart",
            keys,
            faults=restarts,
            excused=excused,
            max_duplicates=restarts * len(workers) * 4,
            started=started,
        )
        print(f"CHAOS postgres-restart: rest of the jobs done {recovery:.2f}s after the last restart")
        assert report.lost == 0
        await admin.close()
    finally:
        await fleet.cleanup()
