"""What the controls hand back: pauses, and cancellations with how each request was answered."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backfill.core import ConfigurationError
from backfill.core.extension import check_name

# Graphile's bound on task identifiers and queue names, which the pauses table keeps for lanes too.
MAX_NAME_LENGTH = 128


class PauseKind(enum.StrEnum):
    """What a pause holds back: a lane of the runners, a named queue, or a task."""

    LANE = "lane"
    QUEUE = "queue"
    TASK = "task"


@dataclass(frozen=True, slots=True)
class Pause:
    """Work no backfill runner starts until it is resumed (``backfill_pauses``)."""

    kind: PauseKind
    name: str
    paused_by: str
    paused_at: datetime
    reason: str | None

    @classmethod
    def from_record(cls, row: Any) -> Pause:
        return cls(PauseKind(row["kind"]), row["name"], row["paused_by"], row["paused_at"], row["reason"])


def pause_target(
    *, lane: str | None = None, queue: str | None = None, task: str | None = None
) -> tuple[PauseKind, str]:
    """The one thing a pause or resume names, checked: exactly one of ``lane``, ``queue`` and ``task``."""
    given = [(kind, name) for kind, name in ((PauseKind.LANE, lane), (PauseKind.QUEUE, queue), (PauseKind.TASK, task))]
    chosen = [(kind, name) for kind, name in given if name is not None]
    if len(chosen) != 1:
        raise ConfigurationError("name exactly one of lane, queue or task to pause or resume")
    kind, name = chosen[0]
    check_name(f"{kind.value} name", name, MAX_NAME_LENGTH)
    return kind, name


class CancelState(enum.StrEnum):
    """Where a cancellation stands (``backfill_cancellations.state``)."""

    REQUESTED = "requested"  # the job runs on a live backfill worker, which has been told
    CANCELLED = "cancelled"  # the job will never run (again): deleted, unrun or cut short
    FINISHED = "finished"  # it ended on its own before the request reached its worker


@dataclass(frozen=True, slots=True)
class Cancellation:
    """A cancelled job, or one whose cancellation was asked for: the job as it was, who asked, when, and why."""

    job_id: int
    task_identifier: str
    queue_name: str | None
    priority: int
    attempts: int
    max_attempts: int
    job_key: str | None
    state: CancelState
    worker_id: str | None
    requested_by: str
    requested_at: datetime
    reason: str | None
    ended_at: datetime | None

    @classmethod
    def from_record(cls, row: Any) -> Cancellation:
        return cls(
            row["job_id"],
            row["task_identifier"],
            row["queue_name"],
            row["priority"],
            row["attempts"],
            row["max_attempts"],
            row["job_key"],
            CancelState(row["state"]),
            row["worker_id"],
            row["requested_by"],
            row["requested_at"],
            row["reason"],
            row["ended_at"],
        )


class CancelOutcome(enum.StrEnum):
    """How a request to cancel one job was answered."""

    CANCELLED = "cancelled"  # it was queued (or its worker was dead): deleted, it will never run
    REQUESTED = "requested"  # it is running on a live backfill worker, which was told to cancel it
    ALREADY = "already"  # it was cancelled, or asked to be, before
    NOT_FOUND = "not_found"  # no such job: it finished, was deleted, or never existed
    REFUSED = "refused"  # locked by a worker backfill cannot reach (not a registered backfill worker, e.g. Node)


@dataclass(frozen=True, slots=True)
class CancelResult:
    """The answer for one job id: the outcome, the worker concerned (if any), and a sentence saying why."""

    job_id: int
    outcome: CancelOutcome
    worker_id: str | None
    detail: str
