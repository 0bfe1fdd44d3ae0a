"""The shared polling helper: returns the first truthy value, fails loudly at the deadline."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.waiting import WaitTimeout, wait_for, wait_for_event


async def test_wait_for_returns_first_truthy_value() -> None:
    calls = 0

    async def third_time_lucky() -> str | None:
        nonlocal calls
        calls += 1
        return "ready" if calls == 3 else None

    assert await wait_for(third_time_lucky, interval=0) == "ready"
    assert calls == 3


async def test_wait_for_times_out_with_last_value() -> None:
    async def never() -> int:
        return 0

    with pytest.raises(WaitTimeout, match=r"never-ready did not hold within 0\.05s \(last value: 0\)"):
        await wait_for(never, timeout=0.05, message="never-ready")


async def test_wait_for_propagates_predicate_errors() -> None:
    async def broken() -> bool:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        await wait_for(broken, timeout=5)


async def test_wait_for_bounds_a_hanging_predicate() -> None:
    async def hangs() -> bool:
        await asyncio.Event().wait()
        return True

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(WaitTimeout, match="hung"):
        await wait_for(hangs, timeout=0.05)
    assert loop.time() - started < 3


async def test_wait_for_event() -> None:
    event = asyncio.Event()
    asyncio.get_running_loop().call_soon(event.set)
    await wait_for_event(event, timeout=5)
    with pytest.raises(WaitTimeout, match="never-set was not set"):
        await wait_for_event(asyncio.Event(), timeout=0.01, message="never-set")
