"""A job's outcome as callers see it: how it ended, its return value, its timings."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from backfill.core import JobFailedError


class OutcomeState(StrEnum):
    """How a job ended for good."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # no attempt left, or failed permanently
    CANCELLED = "cancelled"  # by an operator (backfill.control)


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """The end of one job: ``state``, the handler's return value (``value``, decoded JSON; ``None`` unless it
    succeeded), ``error`` (the last error of a failure, a cancellation's reason, or why a value was not kept) and
    when it was enqueued, claimed for its last attempt and finished.

    ``kept`` is false for a job failed for good that did not ask to keep its outcome, or was failed by something
    other than a backfill worker (a Node worker, an operator): what its job row says is reported, as long as the
    row is there."""

    job_id: int
    task_identifier: str
    state: OutcomeState
    value: Any
    error: str | None
    attempts: int
    max_attempts: int
    queue_name: str | None
    job_key: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration: float | None  # seconds the last attempt ran, as its worker measured
    expires_at: datetime | None  # when the kept row is pruned
    kept: bool = True

    @property
    def succeeded(self) -> bool:
        return self.state is OutcomeState.SUCCEEDED

    def unwrap(self) -> Any:
        """The return value of a job that succeeded; :class:`~backfill.core.errors.JobFailedError` otherwise."""
        if self.state is not OutcomeState.SUCCEEDED:
            raise JobFailedError(self.job_id, self.state.value, self.error)
        return self.value

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (times as ISO 8601), for the CLI and the admin API."""
        return {
            "job_id": self.job_id,
            "task_identifier": self.task_identifier,
            "state": self.state.value,
            "value": self.value,
            "error": self.error,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "queue_name": self.queue_name,
            "job_key": self.job_key,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration": self.duration,
            "expires_at": _iso(self.expires_at),
            "kept": self.kept,
        }

    @classmethod
    def from_kept(cls, row: Mapping[str, Any]) -> JobOutcome:
        """From a row of ``backfill_job_results`` (as results.sql's ``outcomes`` names its columns)."""
        result = row["result"]
        return cls(
            job_id=row["job_id"],
            task_identifier=row["task_identifier"],
            state=OutcomeState(row["state"]),
            value=json.loads(result) if isinstance(result, str) else result,
            error=row["error"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            queue_name=row["queue_name"],
            job_key=row["job_key"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            duration=row["duration"],
            expires_at=row["expires_at"],
        )

    @classmethod
    def from_dead_job(cls, row: Mapping[str, Any]) -> JobOutcome:
        """From the row of a job that has failed for good and is still in Graphile's table (nothing kept)."""
        return cls(
            job_id=row["job_id"],
            task_identifier=row["job_task"],
            state=OutcomeState.FAILED,
            value=None,
            error=row["job_last_error"],
            attempts=row["job_attempts"],
            max_attempts=row["job_max_attempts"],
            queue_name=row["job_queue"],
            job_key=row["job_key_now"],
            created_at=row["job_created_at"],
            started_at=None,
            finished_at=None,
            duration=None,
            expires_at=None,
            kept=False,
        )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
