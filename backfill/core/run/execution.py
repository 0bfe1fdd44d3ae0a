"""Running one attempt of a job: interceptors, payload validation, the handler under its deadline, batch results.

The worker's runners call :meth:`AttemptRunner.run` for every job that is not on the fast path (a plain
``async def`` taking only the payload, with no timeout, interceptor or listener to serve). It never raises
for a failed attempt: the failure is in the returned :class:`Outcome`. Cancellation by the worker itself
(shutdown) is the one thing that propagates, so that the worker can record the job as interrupted.

Timeouts. The handler runs in a task of its own and is cancelled at its deadline. It then gets
``cancel_grace`` seconds to unwind; one that is still running after that (it swallowed the cancellation, or
it is a synchronous handler, whose thread Python cannot stop) is reported as stuck and abandoned: the
attempt fails with a timeout error, the runner moves on, and for a thread the pool gets a spare thread so
other synchronous jobs are not starved.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backfill.core.errors import BatchJobError, JobTimeoutError, PermanentFailure, TaskControl
from backfill.core.hooks import Fail, Hooks, JobResult, Skip
from backfill.core.jobs import Job, encode_payload
from backfill.core.run.context import JobContext
from backfill.core.run.threads import DaemonThreadExecutor
from backfill.core.tasks import TaskDefinition, TaskRegistry, call_handler

logger = logging.getLogger("backfill.worker")


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended."""

    error: BaseException | None = None
    value: Any = None
    permanent: bool = False  # fail with no further attempts (PermanentFailure, or a Fail verdict)
    replacement_payload: str | None = None  # batch jobs: JSON of the items to retry
    skipped: str | None = None  # an interceptor completed the job without running it; the reason


class AttemptRunner:
    """Runs attempts for one worker. ``on_stuck(job)`` is told about handlers abandoned after a timeout."""

    def __init__(
        self,
        registry: TaskRegistry,
        hooks: Hooks,
        threads: DaemonThreadExecutor,
        *,
        context_for: Callable[[Job], JobContext],
        cancel_grace: float,
        on_stuck: Callable[[Job], None],
    ) -> None:
        self._registry = registry
        self._hooks = hooks
        self._threads = threads
        self._context_for = context_for
        self._cancel_grace = cancel_grace
        self._on_stuck = on_stuck

    async def run(self, job: Job) -> Outcome:
        definition = self._registry.get(job.task_identifier)
        if definition is None:  # not reachable through our fetch, which filters on our identifiers
            return Outcome(error=LookupError(f"Unsupported task '{job.task_identifier}'"))
        try:
            verdict = await self._hooks.check_before_run(job)
        except Exception as error:
            return Outcome(error=error)
        if isinstance(verdict, Skip):
            return Outcome(skipped=verdict.reason)
        if isinstance(verdict, Fail):
            # Task-control errors, like a handler's PermanentFailure: last_error is the verdict's message alone.
            refusal = PermanentFailure(verdict.message) if verdict.permanent else TaskControl(verdict.message)
            return Outcome(error=refusal, permanent=verdict.permanent)

        outcome = await self._call(job, definition)
        if self._hooks.after_run:
            result = await self._hooks.apply_after_run(job, JobResult(outcome.error, outcome.value))
            if result.error is not outcome.error or result.value is not outcome.value:
                keep_batch = result.error is outcome.error  # the partial payload belongs to that batch error
                outcome = Outcome(
                    error=result.error,
                    value=result.value,
                    permanent=isinstance(result.error, PermanentFailure),
                    replacement_payload=outcome.replacement_payload if keep_batch else None,
                )
        return outcome

    async def _call(self, job: Job, definition: TaskDefinition) -> Outcome:
        try:
            payload = definition.parse_payload(job.payload)
            context = self._context_for(job) if definition.wants_context else None
            timeout = job.timeout or definition.timeout
            if timeout is None:
                value = await call_handler(definition, payload, context, self._threads)
            else:
                value = await self._call_with_deadline(job, definition, payload, context, timeout)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the worker is cancelling this job (shutdown): it records the interruption
            return Outcome(error=asyncio.CancelledError("CancelledError: the handler was cancelled"))
        except Exception as error:
            return Outcome(error=error, permanent=isinstance(error, PermanentFailure))
        return await settle_batch(job, value)

    async def _call_with_deadline(
        self,
        job: Job,
        definition: TaskDefinition,
        payload: Any,
        context: JobContext | None,
        timeout: float,  # noqa: ASYNC109
    ) -> Any:
        attempt = asyncio.ensure_future(call_handler(definition, payload, context, self._threads))
        try:
            done, _ = await asyncio.wait({attempt}, timeout=timeout)
        except asyncio.CancelledError:
            attempt.cancel()  # the worker cancelled us: pass it on, and give the handler its grace to unwind
            await asyncio.wait({attempt}, timeout=self._cancel_grace)
            raise
        if done:
            return attempt.result()
        if context is not None:
            context.abort_signal.set()  # cooperative handlers (threads above all) can see it and stop
        attempt.cancel()
        await asyncio.wait({attempt}, timeout=self._cancel_grace)
        # A synchronous handler's asyncio wrapper ends at once on cancel while its thread runs on.
        stuck = not attempt.done() or not definition.is_async
        if stuck:
            self._report_stuck(job, definition, attempt, timeout)
        elif not attempt.cancelled() and attempt.exception() is None:
            return attempt.result()  # it finished in the same instant as the deadline: keep its result
        raise JobTimeoutError(timeout, stuck=stuck)

    def _report_stuck(self, job: Job, definition: TaskDefinition, attempt: asyncio.Future[Any], timeout: float) -> None:
        logger.error(
            "job %s (%s) is stuck: its %s handler was cancelled after its %gs timeout and has not stopped %gs "
            "later; its slot is given up and the attempt failed (the handler keeps running in the background)",
            job.id,
            job.task_identifier,
            "async" if definition.is_async else "synchronous (thread)",
            timeout,
            self._cancel_grace,
        )
        if not definition.is_async:
            self._threads.add_thread()
        attempt.add_done_callback(_log_late_end(job))
        self._on_stuck(job)


def _log_late_end(job: Job) -> Callable[[asyncio.Future[Any]], None]:
    def on_done(attempt: asyncio.Future[Any]) -> None:
        error = None if attempt.cancelled() else attempt.exception()  # retrieved, so asyncio does not warn
        logger.warning("stuck job %s (%s) finally ended (%s)", job.id, job.task_identifier, error or "returned")

    return on_done


def is_batch_result(payload: Any, value: Any) -> bool:
    """Whether a handler's return value is a batch job's per-item results (see :func:`settle_batch`).

    The one test both paths use: the fast path calls it on every job, so it stays two type checks.
    """
    return type(payload) is list and isinstance(value, (list, tuple))


async def settle_batch(job: Job, value: Any) -> Outcome:
    """A handler's return value as an outcome, treating one result per item of an array payload as a batch.

    Like Graphile: when the payload is a list and the handler returns a list of the same length, each item
    is a result — an awaitable is awaited, an exception (raised or returned) marks that item failed — and
    the job is retried with only the failed items as its payload. Any other return value is a plain success.
    """
    payload = job.payload
    if not is_batch_result(payload, value):
        return Outcome(value=value)
    if len(value) != len(payload):
        logger.warning(
            "task %r returned %s results for a batch of %s items; treated as full success (return one result per "
            "item, or nothing)",
            job.task_identifier,
            len(value),
            len(payload),
        )
        return Outcome(value=value)
    settled = await asyncio.gather(*(_settle(item) for item in value))
    failed = [i for i, item in enumerate(settled) if isinstance(item, BaseException)]
    if not failed:
        return Outcome(value=settled)
    errors = [settled[i] for i in failed]
    return Outcome(
        error=BatchJobError(errors),
        value=settled,
        replacement_payload=encode_payload([payload[i] for i in failed]),
    )


async def _settle(item: Any) -> Any:
    if inspect.isawaitable(item):
        try:
            return await item
        except Exception as error:
            return error
    return item
