"""The exit codes of the ``backfill`` command and of ``WorkerRunner.run()``, in one place: scripts and
orchestrators branch on them, so they never change meaning.

Beside the CLI rather than in it, so that the runner can return them without importing the CLI package (which
imports the runner). Documented in docs/cli.md ("Exit codes").
"""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
# A runtime failure: the database is unreachable, a statement failed, the worker stopped on an internal error.
EXIT_FAILURE: Final = 1
# Bad usage or configuration: an unknown option, a bad JSON payload or time, a missing DATABASE_URL.
EXIT_USAGE: Final = 2
# The command ran but found nothing to act on: an unknown job id or key, ids none of which could be changed.
EXIT_NOT_FOUND: Final = 3
# `backfill jobs result`: the job ended, but not in success (failed for good, or cancelled).
EXIT_JOB_FAILED: Final = 4
# `backfill jobs result`: the job has not ended (still queued or running), or did not end within --timeout.
EXIT_PENDING: Final = 5
# The database holds a breaking schema revision newer than ours (Node's graphile-worker uses 57 for this too).
EXIT_INCOMPATIBLE_SCHEMA: Final = 57
# Stopped by Ctrl-C before a worker could install its own signal handling (the shell convention, 128 + SIGINT).
EXIT_INTERRUPTED: Final = 130
