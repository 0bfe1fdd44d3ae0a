"""The SQL API backfill installs answers Node's WorkerUtils exactly as Node's own install does.

The same script of WorkerUtils calls (job keys in every mode, batch payloads, queues, flags, the admin
functions, locked jobs, a bad key mode) runs against a schema migrated by backfill and one migrated by
graphile-worker; what each call returned, and the tables left behind, must be identical — ids included,
since identity values burnt by one implementation and not the other would show there.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from backfill.core.migrations.graphile import migrate
from tests.compat.conftest import CreateDatabase
from tests.compat.nodejs import NodeRunner

pytestmark = pytest.mark.compat

T1, T2 = "2100-01-01T00:00:00.000Z", "2100-01-02T00:00:00.000Z"


def _add(identifier: str, payload: Any, **spec: Any) -> dict[str, Any]:
    return {"op": "addJob", "identifier": identifier, "payload": payload, "spec": spec}


def _sql(text: str, *values: Any) -> dict[str, Any]:
    return {"op": "sql", "text": text, "values": list(values)}


_LOCK = "update graphile_worker._private_jobs set locked_at = now(), locked_by = 'elsewhere'" + (
    " where key = $1::text returning id::text"
)

OPS: list[dict[str, Any]] = [
    _add("record", {"a": 1}, jobKey="r", runAt=T1, priority=1),  # 0
    _add("record", {"a": 2}, jobKey="r", runAt=T2, priority=2),  # 1: replace
    _add("record", {"b": 1}, jobKey="p", jobKeyMode="preserve_run_at", runAt=T1),  # 2
    _add("record", {"b": 2}, jobKey="p", jobKeyMode="preserve_run_at", runAt=T2),  # 3: keeps T1
    _add("record", {"c": 1}, jobKey="u", jobKeyMode="unsafe_dedupe", runAt=T1),  # 4
    _add("record", {"c": 2}, jobKey="u", jobKeyMode="unsafe_dedupe", runAt=T2),  # 5: keeps c=1
    _add("record", [1, 2], jobKey="batch"),  # 6
    _add("record", [3], jobKey="batch"),  # 7: arrays accumulate
    _add("other", {"q": 1}, queueName="qq", priority=7, maxAttempts=3, flags=["x", "y"]),  # 8
    _add("other", {"q": 2}, queueName="qq"),  # 9: known task and queue, no identity burnt
    _add("record", {"l": 1}, jobKey="locked"),  # 10
    _sql(_LOCK, "locked"),  # 11: as if a worker were running it
    _add("record", {"l": 2}, jobKey="locked"),  # 12: the running job loses its key, a new one is added
    {
        "op": "addJobs",
        "specs": [
            {"identifier": "record", "payload": {"m": 1}, "jobKey": "m", "runAt": T1},
            {"identifier": "record", "payload": {"m": 2}, "queueName": "qq2", "flags": ["z"]},
            {"identifier": "third", "payload": {"m": 3}, "priority": -1, "maxAttempts": 1},
        ],
        "preserveRunAt": False,
    },  # 13
    {
        "op": "addJobs",
        "specs": [{"identifier": "record", "payload": {"m": 9}, "jobKey": "m", "runAt": T2}],
        "preserveRunAt": True,
    },  # 14: throttled, keeps T1
    {
        "op": "rescheduleJobs",
        "refs": [8],
        "options": {"runAt": T2, "priority": 3, "attempts": 1, "maxAttempts": 5},
    },  # 15
    {"op": "permanentlyFailJobs", "refs": [9], "reason": "nope"},  # 16
    {"op": "completeJobs", "refs": [12]},  # 17
    _sql("select id::text from graphile_worker.remove_job($1::text)", "r"),  # 18: deleted
    _sql(_LOCK, "p"),  # 19
    _sql("select id::text from graphile_worker.remove_job($1::text)", "p"),  # 20: locked, so only disarmed
    {"op": "completeJobs", "refs": [10]},  # 21: locked less than 4 hours ago: left alone
    {"op": "permanentlyFailJobs", "refs": [10], "reason": "no"},  # 22: likewise
    {"op": "rescheduleJobs", "refs": [10], "options": {"priority": 9}},  # 23: likewise
    {"op": "forceUnlockWorkers", "workerIds": ["elsewhere"]},  # 24
    _add("record", {"bad": True}, jobKey="bad", jobKeyMode="bogus"),  # 25: GWBKM
    _sql("select id::text from graphile_worker.remove_job($1::text)", "missing"),  # 26
]

_JOBS = """
    select j.id, t.identifier, q.queue_name, j.payload::text as payload, j.priority, j.max_attempts, j.attempts,
           j.key, j.locked_by, j.locked_at is not null as locked, j.revision, j.flags::text as flags, j.last_error,
           -- A defaulted run_at is the enqueueing transaction's now(): name it rather than compare clocks.
           case when j.run_at = j.created_at then 'created_at'
                when j.run_at = j.updated_at then 'updated_at'
                else extract(epoch from j.run_at)::text end as run_at,
           j.updated_at = j.created_at as never_updated
      from graphile_worker._private_jobs as j
      join graphile_worker._private_tasks as t on t.id = j.task_id
      left join graphile_worker._private_job_queues as q on q.id = j.job_queue_id
     order by j.id
"""


async def _state(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    connection = await asyncpg.connect(dsn)
    try:
        return {
            "jobs": [tuple(row) for row in await connection.fetch(_JOBS)],
            "tasks": [tuple(row) for row in await connection.fetch("select * from graphile_worker._private_tasks")],
            "queues": [
                tuple(row) for row in await connection.fetch("select * from graphile_worker._private_job_queues")
            ],
        }
    finally:
        await connection.close()


async def test_worker_utils_get_the_same_answers_from_both_installs(
    create_database: CreateDatabase, node: NodeRunner
) -> None:
    ours_dsn, theirs_dsn = await create_database(), await create_database()
    connection = await asyncpg.connect(ours_dsn)
    try:
        await migrate(connection)
    finally:
        await connection.close()
    await node.schema_only(theirs_dsn)

    ours_results, theirs_results = await node.utils(ours_dsn, OPS), await node.utils(theirs_dsn, OPS)
    ours, theirs = await _state(ours_dsn), await _state(theirs_dsn)

    assert ours_results == theirs_results
    assert ours["tasks"] == theirs["tasks"]
    assert ours["queues"] == theirs["queues"]
    for ours_job, theirs_job in zip(ours["jobs"], theirs["jobs"], strict=True):
        assert ours_job == theirs_job
    # The script did what its comments claim (on Node's install, so this checks the script, not us).
    assert theirs_results[25] == {"error": "GWBKM"}
    assert theirs_results[21] == theirs_results[22] == theirs_results[23] == []
    payloads = {row[7]: row[3] for row in theirs["jobs"] if row[7] is not None}
    assert (payloads["m"], payloads["u"], payloads["batch"]) == ('{"m":9}', '{"c":1}', "[1, 2, 3]")
