"""Task registration: handler shapes, sync/async detection, payload models and the registry."""

from __future__ import annotations

import functools
import threading
from typing import Any

import pydantic
import pytest

from backfill.core.errors import BackfillError, PayloadValidationError, TaskDefinitionError
from backfill.core.tasks import TaskRegistry, call_handler, define_task


class Order(pydantic.BaseModel):
    order_id: int
    note: str = ""


class Shipment(pydantic.BaseModel):
    order: Order
    carrier: str


async def async_one(payload: Any) -> None:
    return None


async def async_two(payload: Any, ctx: Any) -> None:
    return None


def sync_one(payload: Any) -> None:
    return None


def sync_two(payload: Any, ctx: Any) -> None:
    return None


async def annotated(payload: Order, ctx: Any) -> None:
    return None


def annotated_dict(payload: dict[str, Any]) -> None:
    return None


class AsyncCallable:
    async def __call__(self, payload: Any) -> None:
        return None


@pytest.mark.parametrize(
    ("handler", "is_async", "wants_context"),
    [
        (async_one, True, False),
        (async_two, True, True),
        (sync_one, False, False),
        (sync_two, False, True),
        (lambda payload: None, False, False),
        (AsyncCallable(), True, False),
        (functools.partial(async_two), True, True),
    ],
    ids=["async-1", "async-2", "sync-1", "sync-2", "lambda", "async-callable", "partial"],
)
def test_handler_shape_is_detected(handler: Any, is_async: bool, wants_context: bool) -> None:
    definition = define_task("t", handler)
    assert definition.identifier == "t"
    assert definition.handler is handler
    assert definition.is_async is is_async
    assert definition.wants_context is wants_context
    assert definition.payload_model is None


def test_optional_second_parameter_still_receives_the_context() -> None:
    def handler(payload: Any, ctx: Any = None, extra: Any = None) -> None:
        return None

    assert define_task("t", handler).wants_context is True


def test_payload_model_from_first_parameter_annotation() -> None:
    assert define_task("t", annotated).payload_model is Order
    # A plain dict annotation is not a model: the payload is handed over as decoded JSON.
    assert define_task("t", annotated_dict).payload_model is None


def test_explicit_payload_model_wins_over_annotation() -> None:
    assert define_task("t", annotated, payload_model=Shipment).payload_model is Shipment
    assert define_task("t", sync_one, payload_model=Order).payload_model is Order


def _three_required(a: Any, b: Any, c: Any) -> None:
    return None


def _keyword_only(*, payload: Any) -> None:
    return None


def _no_parameters() -> None:
    return None


@pytest.mark.parametrize(
    ("identifier", "handler", "payload_model", "complaint"),
    [
        ("", sync_one, None, "non-empty string"),
        (None, sync_one, None, "non-empty string"),
        ("t" * 129, sync_one, None, "longer than 128"),
        ("t", "not a function", None, "not callable"),
        ("t", _three_required, None, r"positional parameters \(1 or 2\); it requires 3"),
        ("t", _keyword_only, None, r"positional parameters \(1 or 2\); it takes none"),
        ("t", _no_parameters, None, r"positional parameters \(1 or 2\); it takes none"),
        ("t", sync_one, dict, "no model_validate"),
    ],
    ids=["empty-id", "none-id", "long-id", "not-callable", "three-params", "keyword-only", "no-params", "bad-model"],
)
def test_bad_definitions_are_refused(identifier: Any, handler: Any, payload_model: Any, complaint: str) -> None:
    with pytest.raises(TaskDefinitionError, match=complaint):
        define_task(identifier, handler, payload_model=payload_model)


def test_parse_payload_without_model_passes_the_payload_through() -> None:
    payload = {"anything": [1, 2]}
    assert define_task("t", sync_one).parse_payload(payload) is payload


def test_parse_payload_builds_the_model() -> None:
    parsed = define_task("t", annotated).parse_payload({"order_id": "12", "note": "hi"})
    assert parsed == Order(order_id=12, note="hi")


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"order_id": "twelve"}, ["order_id"]),
        ({}, ["order_id"]),
        ({"order_id": 1, "note": 5}, ["note"]),
        ({"order_id": [], "note": 5}, ["order_id", "note"]),
    ],
)
def test_parse_payload_error_names_the_fields(payload: dict[str, Any], fields: list[str]) -> None:
    definition = define_task("orders.ship", annotated)
    with pytest.raises(PayloadValidationError) as caught:
        definition.parse_payload(payload)
    error = caught.value
    assert error.fields == fields
    assert error.task_identifier == "orders.ship"
    assert isinstance(error, BackfillError)
    message = str(error)
    assert "'orders.ship'" in message
    for field in fields:
        assert field in message


def test_parse_payload_error_names_nested_fields_with_dots() -> None:
    definition = define_task("t", sync_one, payload_model=Shipment)
    with pytest.raises(PayloadValidationError) as caught:
        definition.parse_payload({"order": {"order_id": "x"}, "carrier": "ups"})
    assert caught.value.fields == ["order.order_id"]


def test_parse_payload_of_the_wrong_json_type() -> None:
    # A batch (array) payload sent to a task expecting an object: the whole payload is at fault.
    with pytest.raises(PayloadValidationError) as caught:
        define_task("t", annotated).parse_payload([1, 2])
    assert caught.value.fields == ["payload"]


def test_registry_registers_and_looks_up() -> None:
    registry = TaskRegistry()
    decorated = registry.task("b.second")(sync_two)
    assert decorated is sync_two  # the decorator hands the function back unchanged
    registry.register("a.first", async_one)
    assert len(registry) == 2
    assert registry.identifiers == ["a.first", "b.second"]
    assert "a.first" in registry and "missing" not in registry
    assert registry["a.first"].handler is async_one
    assert registry.get("missing") is None
    assert {d.identifier for d in registry} == {"a.first", "b.second"}
    with pytest.raises(KeyError):
        registry["missing"]


def test_registry_decorator_takes_a_payload_model() -> None:
    registry = TaskRegistry()
    registry.task("t", payload_model=Order)(sync_one)
    assert registry["t"].payload_model is Order


def test_registering_another_handler_under_a_taken_identifier_is_refused() -> None:
    registry = TaskRegistry()
    registry.register("t", sync_one)
    with pytest.raises(TaskDefinitionError, match="already registered"):
        registry.register("t", sync_two)
    assert registry["t"].handler is sync_one


def test_two_different_lambdas_under_one_identifier_are_refused() -> None:
    # Lambdas all share the qualified name "<lambda>": only the very same object may register twice.
    registry = TaskRegistry()
    registry.register("t", lambda payload: None)
    with pytest.raises(TaskDefinitionError, match="already registered"):
        registry.register("t", lambda payload: 1)


def test_registering_the_same_handler_again_is_harmless() -> None:
    registry = TaskRegistry()
    registry.register("t", sync_one)
    registry.register("t", sync_one, payload_model=Order)
    assert len(registry) == 1
    assert registry["t"].payload_model is Order


def test_registry_rejects_bad_shapes_at_registration() -> None:
    registry = TaskRegistry()
    with pytest.raises(TaskDefinitionError):
        registry.task("t")(_three_required)
    assert len(registry) == 0


def test_from_modules_selects_by_module_prefix() -> None:
    registry = TaskRegistry([define_task("here", sync_one), define_task("json", __import__("json").dumps)])
    assert registry.from_modules([__name__]).identifiers == ["here"]
    assert registry.from_modules(["tests"]).identifiers == ["here"]  # submodules count
    assert registry.from_modules(["test"]).identifiers == []  # a prefix must end at a dot


async def test_call_handler_awaits_async_handlers_on_the_loop() -> None:
    seen: list[Any] = []

    async def handler(payload: Any, ctx: Any) -> str:
        seen.append((payload, ctx, threading.get_ident()))
        return "done"

    result = await call_handler(define_task("t", handler), {"p": 1}, "context")
    assert result == "done"
    assert seen == [({"p": 1}, "context", threading.get_ident())]


async def test_call_handler_runs_sync_handlers_in_a_thread_without_context() -> None:
    seen: list[Any] = []

    def handler(payload: Any) -> str:
        seen.append((payload, threading.get_ident()))
        return "done"

    assert await call_handler(define_task("t", handler), {"p": 2}, "unused") == "done"
    assert seen[0][0] == {"p": 2}
    assert seen[0][1] != threading.get_ident()


async def test_call_handler_awaits_a_coroutine_returned_by_a_plain_def() -> None:
    async def inner() -> str:
        return "from coroutine"

    def handler(payload: Any) -> Any:
        return inner()

    assert await call_handler(define_task("t", handler), {}, None) == "from coroutine"
