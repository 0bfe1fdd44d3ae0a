"""Interceptors: code that may change what happens to a job, unlike event listeners, which only watch.

Three points of interception, each a list of callables applied in order:

* ``before_run(job)`` — before the handler. Return ``None`` to go on, :class:`Skip` to complete the job
  without running it (a kill switch, say), or :class:`Fail` to fail the attempt (permanently if asked). It
  may be an ``async def``. An interceptor that raises fails the attempt with its error: a job must not run
  when the code that guards it is broken.
* ``after_run(job, result)`` — after the handler, with a :class:`JobResult`. Return ``None`` to keep it or a
  new :class:`JobResult` to replace it (turn an expected error into a success, or a success that returned
  something wrong into a failure). May be async. An interceptor that raises is logged and the result it was
  given stands: the handler's work is done, and failing it because an observer broke would run it again.
* ``retry_planner(job, error)`` — one callable (not a list), asked after every failed attempt except one cut
  short by shutdown. Return a :class:`RetryDecision` to choose the delay before the next attempt or to fail
  the job permanently, or ``None`` for Graphile's backoff. Synchronous; one that raises is logged and ignored.
  The backfill layer's retry policies are built on it.
* ``before_schedule(spec)`` — before a job is enqueued through the worker (``ctx.add_job``, cron) or through
  :class:`~backfill.core.admin.utils.WorkerUtils`. Return the spec, a changed spec, or ``None`` to drop the job.
  Synchronous, because enqueueing is often done inside the caller's transaction, where a slow hook would
  hold locks.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from backfill.core.checks import check_number
from backfill.core.jobs import Job, JobSpec

logger = logging.getLogger("backfill.hooks")


@dataclass(frozen=True, slots=True)
class Skip:
    """``before_run`` verdict: complete the job without running its handler."""

    reason: str = "skipped by an interceptor"


@dataclass(frozen=True, slots=True)
class Fail:
    """``before_run`` verdict: fail this attempt with ``message`` (no further attempts if ``permanent``)."""

    message: str
    permanent: bool = False


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """``retry_planner`` verdict: the next attempt runs ``delay`` seconds after the failure is recorded
    (``None``: Graphile's backoff); ``permanent`` fails the job now, with no further attempts."""

    delay: float | None = None
    permanent: bool = False

    def __post_init__(self) -> None:
        check_number(
            "RetryDecision.delay",
            self.delay,
            at_least=0,
            below=1e9,
            must="a non-negative number of seconds",
            optional=True,
            error=ValueError,
        )


@dataclass(frozen=True, slots=True)
class JobResult:
    """How an attempt ended: ``error`` is ``None`` on success; ``value`` is what the handler returned."""

    error: BaseException | None = None
    value: Any = None

    @property
    def succeeded(self) -> bool:
        return self.error is None


BeforeRun = Callable[[Job], "Skip | Fail | Awaitable[Skip | Fail | None] | None"]
AfterRun = Callable[[Job, JobResult], "JobResult | Awaitable[JobResult | None] | None"]
BeforeSchedule = Callable[[JobSpec], "JobSpec | None"]
RetryPlanner = Callable[[Job, "BaseException | None"], "RetryDecision | None"]


@dataclass(slots=True)
class Hooks:
    """The interceptors of one worker (or one :class:`~backfill.core.admin.utils.WorkerUtils`)."""

    before_run: list[BeforeRun] = field(default_factory=list)
    after_run: list[AfterRun] = field(default_factory=list)
    before_schedule: list[BeforeSchedule] = field(default_factory=list)
    retry_planner: RetryPlanner | None = None

    def __post_init__(self) -> None:
        self.before_run = list(self.before_run)
        self.after_run = list(self.after_run)
        self.before_schedule = list(self.before_schedule)

    @property
    def intercepts_runs(self) -> bool:
        return bool(self.before_run or self.after_run)

    async def check_before_run(self, job: Job) -> Skip | Fail | None:
        """The first verdict that is not ``None``; an interceptor that raises propagates (see module doc)."""
        for interceptor in self.before_run:
            verdict = interceptor(job)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if verdict is not None:
                if not isinstance(verdict, (Skip, Fail)):
                    raise TypeError(f"before_run interceptor {interceptor!r} returned {verdict!r}, not Skip/Fail/None")
                return verdict
        return None

    async def apply_after_run(self, job: Job, result: JobResult) -> JobResult:
        for interceptor in self.after_run:
            try:
                replaced = interceptor(job, result)
                if inspect.isawaitable(replaced):
                    replaced = await replaced
            except Exception:
                logger.exception("after_run interceptor %r raised on job %s; the result stands", interceptor, job.id)
                continue
            if replaced is None:
                continue
            if not isinstance(replaced, JobResult):
                logger.error("after_run interceptor %r returned %r, not a JobResult; ignored", interceptor, replaced)
                continue
            result = replaced
        return result

    def transform(self, spec: JobSpec) -> JobSpec | None:
        """``spec`` after every ``before_schedule`` interceptor; ``None`` when one of them dropped it."""
        current: JobSpec | None = spec
        for interceptor in self.before_schedule:
            if current is None:
                return None
            current = interceptor(current)
            if current is not None and not isinstance(current, JobSpec):
                raise TypeError(f"before_schedule interceptor {interceptor!r} returned {current!r}, not a JobSpec")
        return current
