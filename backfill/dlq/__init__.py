"""backfill.dlq: the dead-letter queue — where permanently failed jobs go, and how they come back.

* :class:`DeadLetterMover` (a runner's side task) moves permanently failed jobs out of Graphile's jobs table
  into ``backfill_dlq`` with every error they had, right after a worker fails them for good and in a
  periodic sweep that also catches jobs Node workers failed.
* :class:`DeadLetterQueue` lists, shows, requeues, deletes and annotates entries, and counts them.
* :func:`migrate_dlq` installs the table (backfill's own migration line ``"dlq"``); ``sql/dlq_schema.sql``
  does the same with psql.

Built on :mod:`backfill.core` only: the core worker knows nothing of this package.
"""

from backfill.dlq.api import DeadLetterQueue
from backfill.dlq.migrations import DLQ_LINE, DLQ_MIGRATIONS, DLQ_TABLE, migrate_dlq
from backfill.dlq.models import (
    DLQ_FLAG_PREFIX,
    CountBy,
    DeadLetterEntry,
    DeadLetterFilter,
    DeadLetterPage,
    DeadLetterStats,
    DeleteResult,
    EntryState,
    ErrorRecord,
    MovedJob,
    Reason,
    Requeued,
    RequeueResult,
    Skipped,
)
from backfill.dlq.move import LostJobError
from backfill.dlq.mover import DeadLetterMover

__all__ = [  # noqa: RUF022 - plain sorted order, as in backfill.core
    "CountBy",
    "DLQ_FLAG_PREFIX",
    "DLQ_LINE",
    "DLQ_MIGRATIONS",
    "DLQ_TABLE",
    "DeadLetterEntry",
    "DeadLetterFilter",
    "DeadLetterMover",
    "DeadLetterPage",
    "DeadLetterQueue",
    "DeadLetterStats",
    "DeleteResult",
    "EntryState",
    "ErrorRecord",
    "LostJobError",
    "MovedJob",
    "Reason",
    "RequeueResult",
    "Requeued",
    "Skipped",
    "migrate_dlq",
]
