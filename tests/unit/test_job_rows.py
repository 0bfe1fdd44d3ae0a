"""jobs_from_rows: the batch decoding of add_jobs' rows agrees with Job.from_record, whatever the columns' order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from backfill.core.jobs import JOB_COLUMNS, Job, jobs_from_rows
from tests.support.records import Record as Row

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _values(job_id: int, flags: str | None, queue_id: int | None) -> dict[str, Any]:
    return {
        "id": job_id,
        "job_queue_id": queue_id,
        "task_id": 7,
        "payload": f'{{"n":{job_id}}}',
        "priority": -1,
        "run_at": NOW,
        "attempts": 0,
        "max_attempts": 5,
        "last_error": None,
        "created_at": NOW,
        "updated_at": NOW,
        "key": None,
        "locked_at": None,
        "locked_by": None,
        "revision": 0,
        "flags": flags,
    }


def _expected(values: dict[str, Any]) -> Job:
    queue = None if values["job_queue_id"] is None else "q"
    return Job.from_record(values, task_identifier="task", queue_name=queue)


def test_rows_in_job_columns_order_decode_like_from_record() -> None:
    values = [_values(1, '{"a": true, "b": true}', 3), _values(2, '{"a": true, "b": true}', None), _values(3, None, 3)]
    assert tuple(values[0]) == JOB_COLUMNS
    jobs = jobs_from_rows([Row(v) for v in values], {7: "task"}, {3: "q"})
    assert jobs == [_expected(v) for v in values]
    assert jobs[0].flags == frozenset({"a", "b"}) and jobs[2].flags == frozenset()


def test_rows_of_another_shape_are_read_by_name() -> None:
    values = _values(1, '{"a": true}', 3)
    reordered = dict(reversed(list(values.items())))
    assert jobs_from_rows([Row(reordered)], {7: "task"}, {3: "q"}) == [_expected(values)]
    assert jobs_from_rows([], {}, {}) == []
