"""Events: known names only, "*" sees everything, unsubscribe, and a broken listener never breaks emit()."""

from __future__ import annotations

import asyncio
import logging

import pytest

from backfill.core.errors import ConfigurationError
from backfill.core.events import EVENT_NAMES, Event, Events
from tests.support.waiting import wait_for


def test_an_unknown_event_name_is_refused_and_named() -> None:
    events = Events()
    with pytest.raises(ConfigurationError, match="'job:sucess'"):
        events.on("job:sucess", lambda event: None)
    assert not events.listens("job:sucess")


def test_a_listener_that_is_not_callable_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="job:start"):
        Events().on("job:start", "not a function")  # type: ignore[arg-type]


def test_a_listener_gets_its_event_with_the_data_and_only_its_event() -> None:
    events = Events()
    seen: list[Event] = []
    events.on("job:start", seen.append)

    events.emit("job:start", worker_id="w", job="the job")
    events.emit("job:success", worker_id="w", job="the job", duration=0.1)

    assert [event.name for event in seen] == ["job:start"]
    assert seen[0]["job"] == "the job"
    assert seen[0].get("worker_id") == "w"
    assert seen[0].get("missing", "default") == "default"


def test_star_receives_every_event_after_the_named_listeners() -> None:
    events = Events()
    order: list[str] = []
    events.on("*", lambda event: order.append(f"*:{event.name}"))
    events.on("job:start", lambda event: order.append("named:job:start"))

    for name in EVENT_NAMES:
        events.emit(name)

    start = order.index("named:job:start")
    assert order[start : start + 2] == ["named:job:start", "*:job:start"]
    assert [entry for entry in order if entry.startswith("*:")] == [f"*:{name}" for name in EVENT_NAMES]
    assert all(events.listens(name) for name in EVENT_NAMES)


def test_unsubscribe_stops_delivery_and_clears_listens() -> None:
    events = Events()
    seen: list[str] = []
    unsubscribe = events.on("job:start", lambda event: seen.append(event.name))
    unsubscribe_all = events.on("*", lambda event: seen.append("*"))
    assert events.listens("job:start")
    revision = events.revision

    unsubscribe()
    unsubscribe_all()
    events.emit("job:start")

    assert seen == []
    assert not events.listens("job:start")
    assert events.revision > revision
    unsubscribe()  # a second call is harmless


def test_a_sync_listener_that_raises_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    events = Events()
    seen: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    events.on("job:start", broken)
    events.on("job:start", lambda event: seen.append("after"))
    events.on("*", lambda event: seen.append("star"))

    with caplog.at_level(logging.ERROR, logger="backfill.events"):
        events.emit("job:start")

    assert seen == ["after", "star"]
    [record] = [r for r in caplog.records if r.name == "backfill.events"]
    assert "job:start" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


async def test_an_async_listener_runs_on_the_loop_and_its_error_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    events = Events()
    ran: list[str] = []

    async def good(event: Event) -> None:
        await asyncio.sleep(0)
        ran.append(event.name)

    async def broken(event: Event) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("async listener bug")

    events.on("job:success", broken)
    events.on("job:success", good)
    with caplog.at_level(logging.ERROR, logger="backfill.events"):
        events.emit("job:success")  # returns at once; the coroutines run on the loop

        async def logged() -> bool:
            return any("async listener" in r.getMessage() for r in caplog.records) and ran == ["job:success"]

        await wait_for(logged, timeout=2, message="both async listeners ran")


def test_an_async_listener_emitted_outside_a_loop_is_skipped_without_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = Events()
    started: list[str] = []

    async def listener(event: Event) -> None:
        started.append(event.name)

    events.on("job:start", listener)
    with caplog.at_level(logging.ERROR, logger="backfill.events"):
        events.emit("job:start")

    assert started == []  # the coroutine was closed, never run
    assert any("outside an event loop" in r.getMessage() for r in caplog.records)


def test_emit_with_no_listeners_is_a_no_op() -> None:
    events = Events()
    events.emit("job:start", job=object())  # nothing to call, nothing raised
    assert not events.listens("job:start")
