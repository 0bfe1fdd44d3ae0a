"""Operator controls: pause and resume work fleet-wide, cancel queued and running jobs.

The API (``pause``, ``resume``, ``list_pauses``, ``cancel_jobs``, ``cancellations``) writes to backfill's own
tables (migration line ``"control"``) and notifies the runners; each runner's :class:`ControlWatcher` applies
what it reads to its lanes. ``BackfillClient`` and the CLI (``backfill pause|resume|pauses``, ``backfill jobs
cancel``) are built on these functions.
"""

from backfill.control.cancels import cancel_jobs, cancellations
from backfill.control.migrations import CONTROL_MIGRATION_LINE, migrate_control
from backfill.control.models import Cancellation, CancelOutcome, CancelResult, CancelState, Pause, PauseKind
from backfill.control.pauses import list_pauses, pause, resume
from backfill.control.watcher import ControlWatcher

__all__ = [
    "CONTROL_MIGRATION_LINE",
    "CancelOutcome",
    "CancelResult",
    "CancelState",
    "Cancellation",
    "ControlWatcher",
    "Pause",
    "PauseKind",
    "cancel_jobs",
    "cancellations",
    "list_pauses",
    "migrate_control",
    "pause",
    "resume",
]
