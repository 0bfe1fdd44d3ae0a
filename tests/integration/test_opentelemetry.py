"""OpenTelemetry end to end: real enqueues, a real runner, spans exported to the SDK's memory.

Each test gets its own tracer provider (never the global one), so tests cannot see each other's spans.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from backfill.client.async_client import BackfillClient, Enqueue
from backfill.client.sync_client import SyncBackfillClient
from backfill.core.enqueue import add_job
from backfill.core.errors import ConfigurationError, PermanentFailure
from backfill.core.tasks import TaskRegistry
from backfill.integrations.opentelemetry import FailedAttempt, instrument
from backfill.runner import WorkerRunner
from backfill.settings import BackfillSettings
from tests.support.waiting import wait_for

JOBS = "graphile_worker._private_jobs"
TRACE_PREFIX = "backfill:trace="


class Spans:
    """A tracer provider exporting to memory, and the finished spans by kind."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def finished(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def of_kind(self, kind: SpanKind) -> list[ReadableSpan]:
        return [span for span in self.finished() if span.kind is kind]

    def one(self, name: str) -> ReadableSpan:
        found = [span for span in self.finished() if span.name == name]
        assert len(found) == 1, [span.name for span in self.finished()]
        return found[0]


@pytest.fixture
def spans() -> Iterator[Spans]:
    memory = Spans()
    yield memory
    memory.provider.shutdown()


def _settings(database_url: str) -> BackfillSettings:
    return BackfillSettings.load(
        env_file=None,
        database_url=database_url,
        fast_queue_concurrency=2,
        bulk_queue_concurrency=2,
        poll_interval_ms=1000,
        shutdown_grace_seconds=5.0,
        dlq_sweep_interval_seconds=0.2,
        queue_stats_interval_seconds=0.2,
    )


def _registry(spans: Spans, seen: list[Any] | None = None) -> TaskRegistry:
    registry = TaskRegistry()
    tracer = spans.provider.get_tracer("tests.handler")

    async def greet(payload: Any) -> None:
        # A span the handler makes: it must be a child of the attempt's span.
        with tracer.start_as_current_span("handler work"):
            if seen is not None:
                seen.append(payload)

    async def explode(payload: Any) -> None:
        raise ValueError("kaboom")

    async def refuse(payload: Any) -> None:
        raise PermanentFailure("not worth retrying")

    def blocking(payload: Any) -> None:  # a synchronous handler, run in a thread
        with tracer.start_as_current_span("thread work"):
            pass

    registry.register("greet", greet)
    registry.register("other", greet)
    registry.register("explode", explode)
    registry.register("refuse", refuse)
    registry.register("blocking", blocking)
    return registry


async def _trace_flags(pool: asyncpg.Pool[Any], job_id: int) -> list[str]:
    names = await pool.fetchval(
        f"select array(select jsonb_object_keys(coalesce(flags, '{{}}'))) from {JOBS} where id = $1::bigint", job_id
    )
    return sorted(name for name in names or () if name.startswith(TRACE_PREFIX))


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _is_linked_to(span: ReadableSpan, target: ReadableSpan) -> bool:
    assert target.context is not None
    return [(link.context.trace_id, link.context.span_id) for link in span.links] == [
        (target.context.trace_id, target.context.span_id)
    ]


async def test_an_attempt_is_linked_to_its_enqueue_with_messaging_attributes(
    database_url: str, pool: asyncpg.Pool[Any], spans: Spans
) -> None:
    client = BackfillClient(pool)
    runner = WorkerRunner(_settings(database_url), tasks=_registry(spans))
    with instrument(client=client, runner=runner, tracer_provider=spans.provider):
        job = await client.enqueue("greet", {"secret": "do-not-export"}, queue="customer-7")
        [flag] = await _trace_flags(pool, job.id)
        await runner.run_once()

    send, process = spans.one("send greet"), spans.one("process greet")
    assert send.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert send.context is not None and process.context is not None
    assert flag == _flag_of(send)
    assert _attributes(send) == {
        "messaging.system": "backfill",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": "greet",
        "messaging.message.id": str(job.id),
    }
    # Linked, not parented (the default): the attempt starts a trace of its own.
    assert _is_linked_to(process, send)
    assert process.parent is None and process.context.trace_id != send.context.trace_id
    attributes = _attributes(process)
    assert attributes.pop("messaging.client.id").startswith(runner.workers["bulk"].worker_id[:8])
    assert attributes == {
        "messaging.system": "backfill",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "greet",
        "messaging.message.id": str(job.id),
        "messaging.backfill.lane": "bulk",
        "messaging.backfill.queue": "customer-7",
        "messaging.backfill.job.attempt": 1,
        "messaging.backfill.job.max_attempts": job.max_attempts,
        "messaging.backfill.job.priority": job.priority,
        "messaging.backfill.job.outcome": "success",
    }
    assert process.status.status_code is StatusCode.UNSET
    # The handler's own span is the attempt's child.
    work = spans.one("handler work")
    assert work.parent is not None and work.parent.span_id == process.context.span_id
    # No payload anywhere in what is exported.
    assert "do-not-export" not in repr([_attributes(s) for s in spans.finished()])


async def test_child_propagation_puts_the_attempt_in_the_enqueuing_trace(
    database_url: str, pool: asyncpg.Pool[Any], spans: Spans
) -> None:
    client = BackfillClient(pool)
    runner = WorkerRunner(_settings(database_url), tasks=_registry(spans))
    request_tracer = spans.provider.get_tracer("tests.web")
    with instrument(client=client, runner=runner, tracer_provider=spans.provider, propagation="child"):
        with request_tracer.start_as_current_span("POST /signup"):
            await client.enqueue_fast("greet", {})
        await runner.run_once()

    request, send, process = spans.one("POST /signup"), spans.one("send greet"), spans.one("process greet")
    assert request.context is not None and send.context is not None and process.context is not None
    assert send.parent is not None and send.parent.span_id == request.context.span_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert process.context.trace_id == request.context.trace_id
    assert _is_linked_to(process, send)
    assert _attributes(process)["messaging.backfill.lane"] == "fast"


async def test_each_attempt_has_its_span_retries_and_the_final_failure_distinguished(
    database_url: str, pool: asyncpg.Pool[Any], spans: Spans
) -> None:
    client = BackfillClient(pool)
    runner = WorkerRunner(_settings(database_url), tasks=_registry(spans))
    with instrument(client=client, runner=runner, tracer_provider=spans.provider):
        job = await client.enqueue("explode", {}, max_attempts=2)
        await runner.run_once()
        # The failure pushed run_at into the future; make the retry due now rather than waiting for it.
        assert await pool.fetchval(f"update {JOBS} set run_at = now() where id = $1 returning attempts", job.id) == 1
        await runner.run_once()
        refused = await client.enqueue("refuse", {}, max_attempts=5)
        await runner.run_once()

    send = spans.one("send explode")
    attempts = sorted(
        (s for s in spans.of_kind(SpanKind.CONSUMER) if s.name == "process explode"),
        key=lambda s: _attributes(s)["messaging.backfill.job.attempt"],
    )
    assert [_attributes(s)["messaging.backfill.job.attempt"] for s in attempts] == [1, 2]
    assert [_attributes(s)["messaging.backfill.job.outcome"] for s in attempts] == ["retry", "failed"]
    for attempt in attempts:
        assert _is_linked_to(attempt, send)
        assert attempt.status.status_code is StatusCode.ERROR
        assert attempt.status.description == "ValueError: kaboom"
        assert _attributes(attempt)["error.type"] == "ValueError"
        [exception] = [event for event in attempt.events if event.name == "exception"]
        assert dict(exception.attributes or {})["exception.type"] == "ValueError"

    permanent = spans.one("process refuse")
    attributes = _attributes(permanent)
    assert (attributes["messaging.message.id"], attributes["messaging.backfill.job.attempt"]) == (str(refused.id), 1)
    assert attributes["messaging.backfill.job.outcome"] == "failed"
    assert attributes["error.type"] == "backfill.core.errors.PermanentFailure"


async def test_a_bulk_enqueue_is_one_send_span_and_its_jobs_share_one_context(
    database_url: str, pool: asyncpg.Pool[Any], spans: Spans
) -> None:
    client = BackfillClient(pool)
    runner = WorkerRunner(_settings(database_url), tasks=_registry(spans))
    requests = [Enqueue("greet", {"n": n}) for n in range(3)] + [Enqueue("other", {"n": 3}, flags=["mine"])]
    with instrument(client=client, runner=runner, tracer_provider=spans.provider):
        jobs = await client.enqueue_many(requests)
        flags = [await _trace_flags(pool, job.id) for job in jobs]
        await runner.run_once()

    assert [request.flags for request in requests] == [None, None, None, ["mine"]]  # the caller's are untouched
    send = spans.one("send")  # two tasks: no single destination
    assert send.kind is SpanKind.PRODUCER
    assert _attributes(send)["messaging.batch.message_count"] == 4
    assert "messaging.destination.name" not in _attributes(send)
    assert len({tuple(f) for f in flags}) == 1 and len(flags[0]) == 1
    processed = spans.of_kind(SpanKind.CONSUMER)
    assert len(processed) == 4
    assert all(_is_linked_to(span, send) for span in processed)
    assert sorted(_attributes(span)["messaging.message.id"] for span in processed) == sorted(
        str(job.id) for job in jobs
    )


async def test_a_single_task_batch_is_named_after_it(database_url: str, pool: asyncpg.Pool[Any], spans: Spans) -> None:
    client = BackfillClient(pool)
    with instrument(client=client, tracer_provider=spans.provider):
        written = await client.enqueue_many([Enqueue("greet", {"n": n}) for n in range(5)], returning=False)
    assert written == 5
    send = spans.one("send greet")
    assert _attributes(send)["messaging.batch.message_count"] == 5
    count = await pool.fetchval(f"select count(*) from {JOBS} where flags ? $1::text", _flag_of(send))
    assert count == 5


def _span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def _flag_of(span: ReadableSpan) -> str:
    assert span.context is not None
    context = span.context
    return f"{TRACE_PREFIX}00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


async def test_the_sync_client_traces_in_the_callers_thread_and_context(
    database_url: str, pool: asyncpg.Pool[Any], spans: Spans
) -> None:
    tracer = spans.provider.get_tracer("tests.web")
    with SyncBackfillClient(database_url) as client, instrument(client=client, tracer_provider=spans.provider):

        def handle_request() -> tuple[int, int]:
            with tracer.start_as_current_span("GET /report"):
                one = client.enqueue("greet", {"n": 1})
                many = client.enqueue_many([Enqueue("greet", {"n": 2})])
            return one.id, many[0].id

        one_id, many_id = await asyncio.to_thread(handle_request)

    request = spans.one("GET /report")
    sends = [span for span in spans.finished() if span.name == "send greet"]
    assert request.context is not None and len(sends) == 2
    assert all(send.parent is not None and send.parent.span_id == request.context.span_id for send in sends)
    assert [_flag_of(send) for send in sends] == [*await _trace_flags(pool, one_id), *await _trace_flags(pool, many_id)]


async def test_a_job_without_trace_context_is_a_root_attempt_and_sync_handlers_see_the_span(
    database_url: str, pool: asyncpg.Pool[Any], spans: Spans
) -> None:
    runner = WorkerRunner(_settings(database_url), tasks=_registry(spans))
    # As Node, SQL or an untraced process would enqueue it: no backfill:trace flag; and one that is garbage.
    async with pool.acquire() as connection:
        await add_job(connection, "greet", {})
        await add_job(connection, "blocking", {}, flags=[f"{TRACE_PREFIX}not-a-traceparent"])
    with instrument(runner=runner, tracer_provider=spans.provider):
        await runner.run_once()

    for name in ("process greet", "process blocking"):
        span = spans.one(name)
        assert span.parent is None and list(span.links) == []
        assert _attributes(span)["messaging.backfill.job.outcome"] == "success"
    thread_work, blocking = spans.one("thread work"), spans.one("process blocking")
    assert blocking.context is not None
    assert thread_work.parent is not None and thread_work.parent.span_id == blocking.context.span_id


async def test_uninstrument_restores_the_untraced_client_and_the_fast_path(
    database_url: str, pool: asyncpg.Pool[Any], spans: Spans
) -> None:
    client = BackfillClient(pool)
    runner = WorkerRunner(_settings(database_url), tasks=_registry(spans))
    tracing = instrument(client=client, runner=runner, tracer_provider=spans.provider)

    async def drained() -> bool:
        return bool(await pool.fetchval(f"select count(*) = 0 from {JOBS}"))

    async with runner:
        await client.enqueue("greet", {})
        await wait_for(drained)
        assert all(worker.events.listens("job:start") for worker in runner.workers.values())
        tracing.uninstrument()
        # No job:* listener of ours is left, so the lanes take their fast path again; the client is its class's.
        assert not any(worker.events.listens(name) for worker in runner.workers.values() for name in _JOB_EVENTS)
        assert "enqueue" not in vars(client) and "enqueue_many" not in vars(client)
        job = await client.enqueue("greet", {})
        assert await _trace_flags(pool, job.id) == []
        await wait_for(drained)

    # One traced enqueue and attempt; the second attempt's handler span has no attempt to belong to.
    assert sorted(span.name for span in spans.finished()) == [
        "handler work",
        "handler work",
        "process greet",
        "send greet",
    ]
    assert [span.parent is None for span in spans.finished() if span.name == "handler work"] == [False, True]


# The events whose listeners send every job down the observed path (job:cancelled is not one: the runner's
# metrics and control listen to it anyway).
_JOB_EVENTS = ("job:start", "job:success", "job:error", "job:failed", "job:complete", "job:skipped", "job:timeout")


async def test_a_second_instrument_of_one_client_is_refused(pool: asyncpg.Pool[Any], spans: Spans) -> None:
    client = BackfillClient(pool)
    with (
        instrument(client=client, tracer_provider=spans.provider),
        pytest.raises(ConfigurationError, match="traced already"),
    ):
        instrument(client=client, tracer_provider=spans.provider)


async def test_an_untraced_process_writes_no_flag(pool: asyncpg.Pool[Any]) -> None:
    # Instrumented, but with no SDK behind the API: spans have no ids, and the jobs carry nothing.
    client = BackfillClient(pool)
    with instrument(client=client, tracer_provider=trace.NoOpTracerProvider()):
        job = await client.enqueue("greet", {})
        jobs = await client.enqueue_many([Enqueue("greet", {})])
    assert await _trace_flags(pool, job.id) == [] and await _trace_flags(pool, jobs[0].id) == []


async def test_on_failure_gets_each_failed_attempt_inside_its_span(
    database_url: str, pool: asyncpg.Pool[Any], spans: Spans
) -> None:
    client = BackfillClient(pool)
    runner = WorkerRunner(_settings(database_url), tasks=_registry(spans))
    reported: list[tuple[FailedAttempt, int]] = []

    def capture(failed: FailedAttempt) -> None:  # what a Sentry hook would do, with the current trace at hand
        reported.append((failed, trace.get_current_span().get_span_context().span_id))

    with instrument(client=client, runner=runner, tracer_provider=spans.provider, on_failure=capture):
        job = await client.enqueue("explode", {}, max_attempts=2)
        await client.enqueue("greet", {})
        await runner.run_once()
        await pool.execute(f"update {JOBS} set run_at = now() where id = $1", job.id)
        await runner.run_once()

    assert [(f.job.id, f.attempt, f.final, f.lane, f.task) for f, _ in reported] == [
        (job.id, 1, False, "bulk", "explode"),
        (job.id, 2, True, "bulk", "explode"),
    ]
    assert all(isinstance(f.error, ValueError) and str(f.error) == "kaboom" for f, _ in reported)
    attempt_spans = {
        _attributes(s)["messaging.backfill.job.attempt"]: s for s in spans.finished() if s.name == "process explode"
    }
    assert [span_id for _, span_id in reported] == [
        _span_id(attempt_spans[1]),
        _span_id(attempt_spans[2]),
    ]
