"""WorkerOptions and Worker refuse unusable settings with a ConfigurationError that names the option."""

from __future__ import annotations

import math
from typing import Any

import asyncpg
import pytest

from backfill.core.errors import ConfigurationError
from backfill.core.run.options import WorkerOptions
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry

BAD_VALUES: list[tuple[str, Any]] = [
    ("concurrency", 0),
    ("concurrency", -1),
    ("concurrency", 1.5),
    ("concurrency", True),
    ("concurrency", "4"),
    ("local_queue_size", 0),
    ("max_pool_size", 0),
    ("max_pool_size", 2),
    ("poll_interval", 0),
    ("poll_interval", -1.0),
    ("poll_interval", math.nan),
    ("poll_interval", math.inf),
    ("poll_interval", "2"),
    ("lookahead", -0.1),
    ("shutdown_grace_period", -1),
    ("shutdown_grace_period", math.inf),
    ("interrupted_retry_delay", math.nan),
    ("stale_lock_check_interval", (0.0, 10.0)),
    ("stale_lock_check_interval", (10.0, 5.0)),
    ("forbidden_flags", "paused"),
    ("forbidden_flags", ["paused", 3]),
    ("worker_id", ""),
    ("worker_id", 42),
]


@pytest.mark.parametrize(("option", "value"), BAD_VALUES, ids=[f"{o}={v!r}" for o, v in BAD_VALUES])
def test_bad_option_value_raises_configuration_error_naming_it(option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=option):
        WorkerOptions(**{option: value})


def test_bad_schema_name_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="schema"):
        WorkerOptions(schema="bad$name")


def test_defaults_are_valid_and_worker_ids_are_unique() -> None:
    first, second = WorkerOptions(), WorkerOptions()
    assert first.concurrency >= 1
    assert first.worker_id != second.worker_id
    assert WorkerOptions(forbidden_flags=["a", "b"]).forbidden_flags == ("a", "b")


def test_worker_without_tasks_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="no tasks"):
        Worker("postgresql://localhost/none", tasks=TaskRegistry())


def test_worker_with_a_database_of_the_wrong_type_is_a_configuration_error() -> None:
    registry = TaskRegistry()
    registry.register("noop", _noop)
    with pytest.raises(ConfigurationError, match="database"):
        Worker(42, tasks=registry)  # type: ignore[arg-type]


def _noop(payload: Any) -> None:
    return None


async def test_a_caller_pool_too_small_for_the_worker_is_refused_with_the_reason(database_url: str) -> None:
    # Listener, fetcher and completer each hold a connection: with max_size=3 a handler using ctx.pool, or the
    # shutdown's own statements, would wait forever.
    registry = TaskRegistry()

    @registry.task("noop")
    async def noop(payload: dict[str, Any]) -> None:
        return None

    async with asyncpg.create_pool(database_url, min_size=1, max_size=3) as small_pool:
        worker = Worker(small_pool, tasks=registry)
        with pytest.raises(ConfigurationError, match="max_size=3"):
            await worker.run_once()
