"""The OpenTelemetry integration's parts without a database: the carrier, the batch copies, the span life cycle
from synthetic events, the failure reporter, and what importing costs."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN, NonRecordingSpan, SpanContext, TraceFlags

from backfill.client.async_client import Enqueue
from backfill.core import Events, Job
from backfill.integrations.opentelemetry import FailedAttempt, FailureReporter, WorkerTracing
from backfill.integrations.opentelemetry.carrier import creation_context, trace_flag
from backfill.integrations.opentelemetry.producer import _carried
from backfill.integrations.opentelemetry.semconv import error_type
from tests.support.processes import run_python

CONTEXT = SpanContext(
    0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=False, trace_flags=TraceFlags(1)
)
FLAG = "backfill:trace=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _job(job_id: int = 1, *, attempts: int = 1, flags: frozenset[str] = frozenset()) -> Job:
    now = datetime.now(UTC)
    return Job(job_id, "greet", {}, None, 0, now, attempts, 3, None, now, now, None, now, "w", 1, flags)


def test_the_carrier_is_a_w3c_traceparent_and_reads_back() -> None:
    assert trace_flag(NonRecordingSpan(CONTEXT)) == FLAG
    read = creation_context(frozenset({"backfill:retry=default", FLAG}))
    assert read is not None and (read.trace_id, read.span_id, read.is_remote) == (
        CONTEXT.trace_id,
        CONTEXT.span_id,
        True,
    )


@pytest.mark.parametrize(
    "flags",
    [
        frozenset(),
        frozenset({"backfill:trace"}),
        frozenset({"backfill:trace=garbage"}),
        frozenset({"backfill:trace=00-00000000000000000000000000000000-b7ad6b7169203331-01"}),  # all-zero trace id
    ],
    ids=["none", "bare", "garbage", "invalid-ids"],
)
def test_a_missing_or_broken_carrier_reads_as_no_context(flags: frozenset[str]) -> None:
    assert creation_context(flags) is None


def test_a_span_without_ids_writes_no_flag() -> None:
    # The API without an SDK: nothing to carry, so an untraced process writes no flag at all.
    assert trace_flag(INVALID_SPAN) is None


def test_a_batch_gets_copies_sharing_one_flags_tuple_per_shape() -> None:
    mine = Enqueue("greet", {"n": 2}, flags=["backfill:trace=00-11111111111111111111111111111111-2222222222222222-01"])
    bad = Enqueue("greet", {}, flags="not-a-list")
    odd: object = "not a request"
    requests: list[object] = [Enqueue("greet", {"n": 0}), Enqueue("greet", {"n": 1}), mine, bad, odd]
    carried: list[object] = list(_carried(NonRecordingSpan(CONTEXT), requests))  # type: ignore[arg-type]

    original = requests[0]
    assert isinstance(original, Enqueue) and original.flags is None
    first, second = carried[0], carried[1]
    assert isinstance(first, Enqueue) and isinstance(second, Enqueue)
    assert first is not original and first.payload == {"n": 0}
    assert first.flags == (FLAG,) and first.flags is second.flags
    # A context of the caller's own is kept; what the client must refuse reaches it unchanged.
    assert carried[2] is mine and carried[3] is bad and carried[4] is odd


def test_error_type_is_the_fully_qualified_class_name() -> None:
    class Custom(Exception):
        pass

    assert error_type(ValueError("x")) == "ValueError"
    assert error_type(Custom()) == f"{__name__}.test_error_type_is_the_fully_qualified_class_name.<locals>.Custom"


def _fail(events: Events, job: Job, error: BaseException, *, final: bool) -> None:
    # What the recorder emits for a failed attempt, in its order.
    events.emit("job:error", worker_id="w1", job=job, error=error, duration=0.1)
    if final:
        events.emit("job:failed", worker_id="w1", job=job, error=error)
    events.emit("job:complete", worker_id="w1", job=job, error=error)


def test_the_reporter_tells_each_failed_attempt_and_whether_it_was_final() -> None:
    events, reported = Events(), list[FailedAttempt]()
    reporter = FailureReporter(reported.append)
    reporter.observe(events, "bulk")
    first, last = _job(attempts=1), _job(attempts=3)
    error = KeyError("email")
    _fail(events, first, error, final=False)
    events.emit("job:complete", worker_id="w1", job=_job(2), error=None)  # a success is not reported
    _fail(events, last, error, final=True)

    assert reported == [
        FailedAttempt(job=first, error=error, final=False, lane="bulk", worker_id="w1"),
        FailedAttempt(job=last, error=error, final=True, lane="bulk", worker_id="w1"),
    ]
    assert [(r.attempt, r.task) for r in reported] == [(1, "greet"), (3, "greet")]
    reporter.close()
    assert not events.listens("job:error") and not events.listens("job:complete")


def test_final_only_and_a_callback_that_raises_does_not_reach_the_worker(caplog: pytest.LogCaptureFixture) -> None:
    events, calls = Events(), []

    def broken(failed: FailedAttempt) -> None:
        calls.append(failed.final)
        raise RuntimeError("tracker down")

    FailureReporter(broken, final_only=True).observe(events)
    _fail(events, _job(), ValueError("x"), final=False)
    with caplog.at_level(logging.ERROR):
        _fail(events, _job(), ValueError("x"), final=True)
    assert calls == [True]
    assert "failure callback" in caplog.text and "tracker down" in caplog.text


def _tracing() -> tuple[WorkerTracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return WorkerTracing(provider.get_tracer("test")), exporter


def test_a_cancelled_attempt_ends_its_span_without_an_error() -> None:
    tracing, exporter = _tracing()
    events, job = Events(), _job(flags=frozenset({FLAG}))
    tracing.observe(events, "fast")
    events.emit("job:start", worker_id="w1", job=job)
    events.emit("job:cancelled", worker_id="w1", job=job, reason="operator", started=True)
    [span] = exporter.get_finished_spans()
    assert (span.attributes or {})["messaging.backfill.job.outcome"] == "cancelled"
    assert span.status.is_ok and [link.context.span_id for link in span.links] == [CONTEXT.span_id]
    assert tracing.running == 0


def test_close_waits_for_running_attempts_before_letting_go_of_the_workers() -> None:
    tracing, exporter = _tracing()
    events, job = Events(), _job()
    tracing.observe(events)
    events.emit("job:start", worker_id="w1", job=job)
    tracing.close()
    # No new attempt is traced, but the running one still ends its span (and restores the runner's context).
    assert not events.listens("job:start") and events.listens("job:complete")
    events.emit("job:start", worker_id="w1", job=_job(2))
    events.emit("job:complete", worker_id="w1", job=job, error=None)
    assert [span.name for span in exporter.get_finished_spans()] == ["process greet"]
    assert not events.listens("job:complete") and not events.listens("job:error")
    with pytest.raises(RuntimeError, match="closed"):
        tracing.observe(events)


def test_propagation_is_link_or_child() -> None:
    with pytest.raises(ValueError, match="'link' or 'child'"):
        WorkerTracing(TracerProvider().get_tracer("test"), propagation="parent")  # type: ignore[arg-type]


_IMPORTS = """
import json, sys
import backfill, backfill.core, backfill.client, backfill.runner
import backfill.integrations.opentelemetry.failures, backfill.integrations.opentelemetry.flag
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")))
"""


async def test_nothing_imports_opentelemetry_until_tracing_is_asked_for() -> None:
    # The layer, the client, the runner, the error-tracker hook and the flag's registration: none of them
    # loads OpenTelemetry (a fresh interpreter: this one has imported it already).
    finished = await run_python("-c", _IMPORTS, env=dict(os.environ))
    assert finished.code == 0, finished.output
    assert json.loads(finished.output.strip().splitlines()[-1]) == []


def test_the_package_resolves_its_names_lazily() -> None:
    import backfill.integrations.opentelemetry as package

    assert sorted(package.__all__) == package.__all__
    assert all(getattr(package, name) is not None for name in package.__all__)
    with pytest.raises(AttributeError):
        package.nothing_here  # noqa: B018
