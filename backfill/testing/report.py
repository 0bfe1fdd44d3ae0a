"""What :func:`~backfill.testing.run_jobs` reports: the runner's counts, and each attempt as its worker told it.

The counts are the runner's own :class:`~backfill.core.RunSummary`. The jobs behind them come from the workers'
events (``job:success``, ``job:error``, ``job:failed``, ``job:skipped``, ``job:cancelled``), which carry the job
as it ran and the exception itself, not only its text: a test can check ``failure.error`` with ``isinstance``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backfill.core import Event, Events, Job, RunSummary


@dataclass(frozen=True, slots=True)
class JobFailure:
    """An attempt that failed: the ``job`` as it ran (``job.attempts`` is the attempt), the exception it ended
    with, and whether it was ``permanent`` (no attempt left: the job failed for good and, with the dead-letter
    queue on, was moved there)."""

    job: Job
    error: BaseException
    permanent: bool

    @property
    def task(self) -> str:
        return self.job.task_identifier

    @property
    def attempt(self) -> int:
        return self.job.attempts

    def __str__(self) -> str:
        how = "failed for good" if self.permanent else "failed"
        error = f"{type(self.error).__name__}: {self.error}"
        return f"job {self.job.id} ({self.task}) {how} on attempt {self.attempt}: {error}"


class JobsFailed(AssertionError):
    """Raised by :meth:`RunReport.raise_for_failures`; its cause is the first failure's exception."""


@dataclass(frozen=True)
class RunReport:
    """What one :func:`~backfill.testing.run_jobs` call did.

    ``successes``, ``failures``, ``skipped_jobs`` and ``cancelled_jobs`` list the attempts in the order they ended.
    ``left_due`` counts the jobs still waiting and due now: none of the lanes run took them (a job in a lane the
    settings do not declare, or paused work). ``left_scheduled`` counts those due later (a retry's backoff, a
    delayed job), which :meth:`QueueClock.advance <backfill.testing.QueueClock.advance>` can make due.
    """

    summary: RunSummary
    successes: tuple[Job, ...] = ()
    failures: tuple[JobFailure, ...] = ()
    skipped_jobs: tuple[Job, ...] = ()
    cancelled_jobs: tuple[Job, ...] = ()
    left_due: int = 0
    left_scheduled: int = 0

    @property
    def succeeded(self) -> int:
        return self.summary.succeeded

    @property
    def failed(self) -> int:
        """Attempts that failed, permanently or not (not counting those cut short by a shutdown)."""
        return self.summary.failed

    @property
    def permanently_failed(self) -> int:
        return self.summary.permanently_failed

    @property
    def retryable_failed(self) -> int:
        """Attempts that failed with an attempt left: their job is scheduled again."""
        return self.summary.failed - self.summary.permanently_failed

    @property
    def skipped(self) -> int:
        return self.summary.skipped

    @property
    def cancelled(self) -> int:
        return self.summary.cancelled

    @property
    def timed_out(self) -> int:
        return self.summary.timed_out

    @property
    def processed(self) -> int:
        """Attempts that ran to an end, succeeded or failed."""
        return self.summary.processed

    def raise_for_failures(self) -> None:
        """Raise :class:`JobsFailed` (an ``AssertionError``) listing every failed attempt, if there was one."""
        if self.failures:
            lines = "\n".join(f"  {failure}" for failure in self.failures)
            raise JobsFailed(f"{len(self.failures)} attempt(s) failed:\n{lines}") from self.failures[0].error

    def __str__(self) -> str:
        return (
            f"{self.succeeded} succeeded, {self.failed} failed ({self.permanently_failed} for good), "
            f"{self.skipped} skipped, {self.cancelled} cancelled; left waiting: {self.left_due} due now, "
            f"{self.left_scheduled} due later"
        )


@dataclass
class OutcomeLog:
    """Collects the outcomes the workers of one run emit; :meth:`attach` it to each worker's events."""

    successes: list[Job] = field(default_factory=list)
    failures: list[JobFailure] = field(default_factory=list)
    skipped_jobs: list[Job] = field(default_factory=list)
    cancelled_jobs: list[Job] = field(default_factory=list)

    def attach(self, events: Events) -> None:
        events.on("job:success", self._succeeded)
        events.on("job:error", self._failed)
        events.on("job:failed", self._failed_for_good)
        events.on("job:skipped", self._skipped)
        events.on("job:cancelled", self._cancelled)

    def report(self, summary: RunSummary, *, left_due: int, left_scheduled: int) -> RunReport:
        """The report, once the run is over. Raises ``RuntimeError`` if the events seen do not add up to the
        summary's counts: the workers were not all observed, and a report from half of them would mislead."""
        seen = (
            len(self.successes),
            len(self.failures),
            sum(failure.permanent for failure in self.failures),
            len(self.skipped_jobs),
            len(self.cancelled_jobs),
        )
        counted = (
            summary.succeeded,
            summary.failed + summary.interrupted,  # an interrupted attempt is a job:error too
            summary.permanently_failed,
            summary.skipped,
            summary.cancelled,
        )
        if seen != counted:
            raise RuntimeError(
                f"backfill.testing saw {seen} (succeeded, failed, for good, skipped, cancelled) in the workers' "
                f"events, but their summaries count {counted}: some worker of the runner was not observed"
            )
        return RunReport(
            summary,
            tuple(self.successes),
            tuple(self.failures),
            tuple(self.skipped_jobs),
            tuple(self.cancelled_jobs),
            left_due,
            left_scheduled,
        )

    def _succeeded(self, event: Event) -> None:
        self.successes.append(event["job"])

    def _failed(self, event: Event) -> None:
        self.failures.append(JobFailure(event["job"], event["error"], permanent=False))

    def _failed_for_good(self, event: Event) -> None:
        # Emitted right after the same attempt's job:error, by the same worker, in the same call.
        job: Job = event["job"]
        for position in range(len(self.failures) - 1, -1, -1):
            if self.failures[position].job.id == job.id:
                self.failures[position] = JobFailure(job, event["error"], permanent=True)
                return

    def _skipped(self, event: Event) -> None:
        self.skipped_jobs.append(event["job"])

    def _cancelled(self, event: Event) -> None:
        self.cancelled_jobs.append(event["job"])
