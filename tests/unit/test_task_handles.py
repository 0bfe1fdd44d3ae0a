"""Task handles (``@backfill.task`` returns one) and payload types: registration, validation, enqueueing."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
import sys
import typing
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

import pydantic
import pytest
from typing_extensions import TypedDict

import backfill
from backfill.client import default as default_module
from backfill.client import sync_client as sync_module
from backfill.client.async_client import BackfillClient, Enqueue
from backfill.core import JobSpecError, PayloadValidationError, TaskDefinitionError, TaskRegistry
from backfill.core.tasks import define_task
from backfill.tasks.defaults import TASK_DEFAULTS
from backfill.tasks.handles import AsyncTask, JobOptions, Task
from backfill.tasks.payloads import PAYLOAD_CHECKS, PayloadAdapter, checked_payload

if TYPE_CHECKING:
    # Not importable at run time: its annotation must not hide the payload's (see test_context_annotation_...).
    from backfill.core.run.context import JobContext

SECRET = "s3cr3t-value-4471"  # a payload value that must never appear in an error message


@dataclasses.dataclass
class Email:
    to: str
    retries: int = 0


class Sms(TypedDict):
    number: str


class Order(pydantic.BaseModel):
    order_id: int = pydantic.Field(alias="orderId")


class Unvalidatable:
    """A class pydantic has no schema for."""


@pytest.fixture(autouse=True)
def _forget_declarations() -> Iterator[None]:
    # @backfill.task records checks and defaults per process, by identifier: leave none behind.
    checks, defaults = dict(PAYLOAD_CHECKS), dict(TASK_DEFAULTS)
    yield
    PAYLOAD_CHECKS.clear()
    PAYLOAD_CHECKS.update(checks)
    TASK_DEFAULTS.clear()
    TASK_DEFAULTS.update(defaults)


@pytest.fixture
def registry() -> TaskRegistry:
    return TaskRegistry()


# -- the handle is the handler ---------------------------------------------------------------------------------


async def send_email(payload: Email, ctx: JobContext) -> str:
    """Send one email."""
    return f"sent to {payload.to} with {ctx}"


def send_sms(payload: Sms) -> str:
    return payload["number"]


async def test_an_async_handle_calls_like_its_function(registry: TaskRegistry) -> None:
    handle = backfill.task("handles.email", registry=registry)(send_email)
    assert isinstance(handle, AsyncTask) and isinstance(handle, backfill.Task)
    assert await handle(Email("ada@example.com"), "ctx") == "sent to ada@example.com with ctx"
    assert handle.identifier == "handles.email"
    assert handle.handler is send_email
    assert (handle.__name__, handle.__qualname__, handle.__module__) == ("send_email", "send_email", __name__)
    assert handle.__doc__ == "Send one email."
    assert inspect.signature(handle) == inspect.signature(send_email)
    assert inspect.iscoroutinefunction(handle.__call__)
    assert "handles.email" in repr(handle)


def test_a_sync_handle_calls_like_its_function(registry: TaskRegistry) -> None:
    handle = backfill.task("handles.sms", registry=registry)(send_sms)
    assert type(handle) is Task
    assert handle({"number": "+1"}) == "+1"
    assert not inspect.iscoroutinefunction(handle.__call__)


def test_the_registry_holds_the_function_not_the_handle(registry: TaskRegistry) -> None:
    handle = backfill.task("handles.email", registry=registry)(send_email)
    definition = registry["handles.email"]
    assert definition.handler is send_email
    assert handle.definition is definition
    assert definition.is_async and definition.wants_context


def test_the_same_module_level_function_may_be_declared_again(registry: TaskRegistry) -> None:
    # A module imported twice (as `app.tasks` and `tasks`) declares a new function of the same qualified name.
    backfill.task("handles.email", registry=registry)(send_email)

    async def send_email_again(payload: Email, ctx: JobContext) -> str:
        return ""

    send_email_again.__qualname__ = send_email.__qualname__
    again = backfill.task("handles.email", registry=registry)(send_email_again)
    assert registry["handles.email"].handler is send_email_again
    assert again.handler is send_email_again

    with pytest.raises(TaskDefinitionError, match="already registered"):
        backfill.task("handles.email", registry=registry)(send_sms)


async def plain_task(payload: dict[str, Any]) -> None:
    return None


def test_a_module_level_handle_pickles_by_reference(registry: TaskRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    handle = backfill.task("handles.plain", registry=registry)(plain_task)
    monkeypatch.setattr(sys.modules[__name__], "plain_task", handle)  # as `@backfill.task` on plain_task leaves it
    assert pickle.loads(pickle.dumps(handle)) is handle


def test_a_handle_registers_like_its_function(registry: TaskRegistry) -> None:
    handle = backfill.task("handles.plain", registry=registry)(plain_task)
    other = TaskRegistry()
    definition = other.register("handles.plain", handle)
    assert definition.is_async and not definition.wants_context and definition.payload_model is None
    registry.register("handles.plain", handle)  # the same function, seen through its handle


# -- which payload types are validated -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "annotation",
    [
        inspect.Parameter.empty,
        Any,
        object,
        dict,
        dict[str, Any],
        dict[Any, Any],
        dict[str, object],
        typing.Dict[str, Any],  # noqa: UP006 - the old spelling means the same
        Mapping[str, Any],
        list,
        list[Any],
        dict[str, Any] | list[Any],
        dict[str, Any] | None,
        dict[str, int],  # describes the JSON: an annotation of this kind was never validated, and still is not
        dict[str, str | float | bool | None],
        list[dict[str, Any]],
    ],
    ids=repr,
)
def test_plain_annotations_mean_no_validation(registry: TaskRegistry, annotation: Any) -> None:
    def handler(payload: Any) -> None:
        return None

    handler.__annotations__ = {} if annotation is inspect.Parameter.empty else {"payload": annotation}
    for definition in (define_task("core", handler), backfill.task("layer", registry=registry)(handler).definition):
        assert definition.payload_model is None
    assert "layer" not in PAYLOAD_CHECKS


async def takes_order(payload: Order) -> None:
    return None


async def takes_emails(payload: list[Email]) -> None:
    return None


def test_payload_types_the_layer_validates(registry: TaskRegistry) -> None:
    assert backfill.task("handles.order", registry=registry)(takes_order).definition.payload_model is Order
    email = backfill.task("handles.email", registry=registry)(send_email).definition.payload_model
    sms = backfill.task("handles.sms", registry=registry)(send_sms).definition.payload_model
    batch = backfill.task("handles.batch", registry=registry)(takes_emails).definition.payload_model
    assert isinstance(email, PayloadAdapter) and email.payload_type is Email
    assert isinstance(sms, PayloadAdapter) and sms.payload_type is Sms
    assert isinstance(batch, PayloadAdapter) and batch.payload_type == list[Email]
    assert set(PAYLOAD_CHECKS) >= {"handles.order", "handles.email", "handles.sms", "handles.batch"}


def test_payload_model_may_be_a_dataclass(registry: TaskRegistry) -> None:
    def untyped(payload: dict[str, Any]) -> None:
        return None

    model = backfill.task("handles.explicit", registry=registry, payload_model=Email)(untyped).definition.payload_model
    assert isinstance(model, PayloadAdapter) and model.payload_type is Email


def test_the_context_annotation_does_not_hide_the_payloads() -> None:
    # send_email's ctx is annotated with a name imported only under TYPE_CHECKING: get_type_hints fails on it.
    with pytest.raises(NameError):
        typing.get_type_hints(send_email)
    model = define_task("handles.email", send_email, payload_adapter=PayloadAdapter).payload_model
    assert isinstance(model, PayloadAdapter) and model.payload_type is Email


class LegacyTypedDict(typing.TypedDict):
    number: str


def _handler_of(annotation: Any) -> Any:
    def handler(payload: Any) -> None:
        return None

    handler.__annotations__ = {"payload": annotation}
    return handler


@pytest.mark.parametrize(
    ("annotation", "complaint"),
    [
        (Unvalidatable, "pydantic cannot validate the payload type Unvalidatable; use a pydantic model"),
        (str, "the payload type str can never match: a payload is a JSON object"),
        ("NoSuchName", r"cannot resolve its payload annotation 'NoSuchName' \(NameError"),
        pytest.param(
            LegacyTypedDict,
            "typing_extensions.TypedDict",
            marks=pytest.mark.skipif(sys.version_info >= (3, 12), reason="pydantic takes typing.TypedDict from 3.12"),
        ),
    ],
    ids=["arbitrary-class", "scalar", "unresolvable", "typing-typeddict"],
)
def test_annotations_the_layer_cannot_validate_are_refused(
    registry: TaskRegistry, annotation: Any, complaint: str
) -> None:
    with pytest.raises(TaskDefinitionError, match=complaint) as caught:
        backfill.task("handles.bad", registry=registry)(_handler_of(annotation))
    assert str(caught.value).startswith("task 'handles.bad': ")
    assert "handles.bad" not in registry and "handles.bad" not in PAYLOAD_CHECKS


def test_a_payload_model_the_layer_cannot_validate_is_refused(registry: TaskRegistry) -> None:
    with pytest.raises(TaskDefinitionError, match="pydantic cannot validate the payload type Unvalidatable"):
        backfill.task("handles.bad", registry=registry, payload_model=Unvalidatable)(send_sms)


@pytest.mark.parametrize("annotation", [Email, Sms, dict[str, Email], list[Email], str], ids=repr)
def test_the_core_refuses_what_it_cannot_validate(annotation: Any) -> None:
    with pytest.raises(TaskDefinitionError, match=r"backfill\.core validates pydantic models only.*@backfill\.task"):
        define_task("core.bad", _handler_of(annotation))
    with pytest.raises(TaskDefinitionError, match=r"backfill\.core validates pydantic models only"):
        backfill.core.task("core.bad", payload_model=annotation)(send_sms)
    assert "core.bad" not in backfill.core.default_registry


# -- validation, in the worker and at enqueue ------------------------------------------------------------------


def test_the_worker_hands_the_handler_the_validated_value(registry: TaskRegistry) -> None:
    email = backfill.task("handles.email", registry=registry)(send_email).definition
    assert email.parse_payload({"to": "ada@example.com", "retries": "2"}) == Email("ada@example.com", 2)
    sms = backfill.task("handles.sms", registry=registry)(send_sms).definition
    assert sms.parse_payload({"number": "+1", "extra": 1}) == {"number": "+1"}
    with pytest.raises(PayloadValidationError) as caught:
        email.parse_payload({"to": "x", "retries": SECRET})
    assert caught.value.fields == ["retries"]
    assert SECRET not in str(caught.value)


def test_enqueue_serialises_and_validates_a_dataclass(registry: TaskRegistry) -> None:
    backfill.task("handles.email", registry=registry)(send_email)
    assert checked_payload("handles.email", Email("ada@example.com")) == {"to": "ada@example.com", "retries": 0}
    assert checked_payload("handles.email", {"to": "ada@example.com", "retries": "3"}) == {
        "to": "ada@example.com",
        "retries": 3,
    }


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"retries": 1}, "payload.to"),
        ({"to": "x", "retries": SECRET}, "payload.retries"),
        (Email("x", SECRET), "payload.retries"),  # type: ignore[arg-type]  # a dataclass does not check: its dump is
        ({"to": 1, "retries": SECRET}, "payload"),  # two bad fields: the payload, both named in the message
        (None, "payload.to"),  # stored as {}, which the worker would refuse
        ([SECRET], "payload"),
    ],
    ids=["missing", "wrong-type", "bad-instance", "two-fields", "none", "not-an-object"],
)
def test_enqueue_refuses_a_bad_payload_naming_the_field(registry: TaskRegistry, payload: Any, field: str) -> None:
    backfill.task("handles.email", registry=registry)(send_email)
    with pytest.raises(JobSpecError) as caught:
        checked_payload("handles.email", payload)
    assert caught.value.field == field
    assert "invalid payload for task 'handles.email'" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_enqueue_dumps_a_model_by_alias(registry: TaskRegistry) -> None:
    # The worker's model_validate reads the alias: a dump by field name would not validate there.
    backfill.task("handles.order", registry=registry)(takes_order)
    assert checked_payload("handles.order", Order(orderId=7)) == {"orderId": 7}
    assert checked_payload("handles.order", {"orderId": "8"}) == {"orderId": 8}
    with pytest.raises(JobSpecError, match="orderId"):
        checked_payload("handles.order", Order.model_construct(order_id=SECRET))


def test_a_batch_of_dataclasses_is_serialised_item_by_item(registry: TaskRegistry) -> None:
    backfill.task("handles.batch", registry=registry)(takes_emails)
    assert checked_payload("handles.batch", [Email("a"), {"to": "b"}]) == [
        {"to": "a", "retries": 0},
        {"to": "b", "retries": 0},
    ]
    with pytest.raises(JobSpecError) as caught:
        checked_payload("handles.batch", [Email("a"), {"retries": 1}])
    assert caught.value.field == "payload.1.to"


def test_tasks_without_a_payload_type_pass_the_payload_through(registry: TaskRegistry) -> None:
    payload = {"anything": [1]}
    assert checked_payload("handles.unknown", payload) is payload

    def plain(payload: dict[str, Any]) -> None:
        return None

    backfill.task("handles.email", registry=registry)(send_email)
    assert "handles.email" in PAYLOAD_CHECKS
    # Declared again without a payload type (a test, a reload): its old check must not linger.
    plain.__qualname__ = send_email.__qualname__
    backfill.task("handles.email", registry=registry)(plain)
    assert "handles.email" not in PAYLOAD_CHECKS
    assert checked_payload("handles.email", payload) is payload


def test_the_client_validates_by_task_name(registry: TaskRegistry) -> None:
    backfill.task("handles.email", registry=registry, priority=3)(send_email)
    client = BackfillClient("postgresql://unused@127.0.0.1:1/none")  # build_spec needs no connection
    spec = client.build_spec(Enqueue("handles.email", Email("ada@example.com")))
    assert spec.payload_json == '{"to":"ada@example.com","retries":0}'
    with pytest.raises(JobSpecError) as caught:
        client.build_spec(Enqueue("handles.email", {"to": "x", "retries": SECRET}))
    assert caught.value.field == "payload.retries"


async def test_a_bulk_enqueue_validates_every_job(registry: TaskRegistry) -> None:
    # Requests of one shape share a spec, built once: each further payload is still checked.
    backfill.task("handles.email", registry=registry, priority=3)(send_email)
    client = BackfillClient("postgresql://unused@127.0.0.1:1/none")  # the task's defaults are local: no database
    requests = [Enqueue("handles.email", Email(f"{n}@example.com")) for n in range(3)]
    specs = await client._specs_of(requests)
    assert [spec.payload_json for spec in specs][2] == '{"to":"2@example.com","retries":0}'
    requests.append(Enqueue("handles.email", {"to": "x", "retries": SECRET}))
    with pytest.raises(JobSpecError) as caught:
        await client._specs_of(requests)
    assert caught.value.field == "requests[3].payload.retries"
    assert SECRET not in str(caught.value)


# -- enqueueing through the handle -----------------------------------------------------------------------------


class RecordingClient:
    """Stands in for BackfillClient and SyncBackfillClient: what the handle asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    async def enqueue(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append(("enqueue", args, kwargs))
        return "job"

    async def enqueue_many(self, *args: Any, **kwargs: Any) -> list[str]:
        self.calls.append(("enqueue_many", args, kwargs))
        return ["job"]


class RecordingSyncClient(RecordingClient):
    def enqueue(self, *args: Any, **kwargs: Any) -> str:  # type: ignore[override]
        self.calls.append(("enqueue", args, kwargs))
        return "job"

    def enqueue_many(self, *args: Any, **kwargs: Any) -> list[str]:  # type: ignore[override]
        self.calls.append(("enqueue_many", args, kwargs))
        return ["job"]


async def test_enqueue_goes_to_the_given_client_or_the_default_one(
    registry: TaskRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = backfill.task("handles.email", registry=registry)(send_email)
    given, default = RecordingClient(), RecordingClient()
    monkeypatch.setattr(default_module, "default_client", lambda: default)
    email = Email("ada@example.com")

    assert await handle.enqueue(email, client=cast(Any, given), delay=60, priority=-5) == cast(Any, "job")
    await handle.enqueue(email, job_key="k", job_key_mode="preserve_run_at")

    assert given.calls == [
        ("enqueue", ("handles.email", email), {"job_key_mode": None, "connection": None, "delay": 60, "priority": -5})
    ]
    assert default.calls == [
        (
            "enqueue",
            ("handles.email", email),
            {"job_key_mode": "preserve_run_at", "connection": None, "job_key": "k"},
        )
    ]


async def test_enqueue_many_takes_payloads_and_requests(
    registry: TaskRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = backfill.task("handles.email", registry=registry)(send_email)
    default = RecordingClient()
    monkeypatch.setattr(default_module, "default_client", lambda: default)
    first, second = Email("a"), Email("b")
    request = handle.request(second, priority=-5, job_key="b")
    assert request == Enqueue("handles.email", second, priority=-5, job_key="b")

    payloads: list[Email | Enqueue] = [first, request]
    await handle.enqueue_many(iter(payloads), job_key_preserve_run_at=True)  # any iterable

    [(name, args, kwargs)] = default.calls
    assert name == "enqueue_many"
    assert args == ([Enqueue("handles.email", first), request],)
    assert kwargs == {"job_key_preserve_run_at": True, "connection": None}
    await handle.enqueue_many([first], returning=False)
    assert default.calls[-1][2]["returning"] is False


async def test_enqueue_many_refuses_another_tasks_request(registry: TaskRegistry) -> None:
    handle = backfill.task("handles.email", registry=registry)(send_email)
    other = Enqueue("handles.other", {"to": "x"})
    with pytest.raises(JobSpecError) as caught:
        await handle.enqueue_many([Email("a"), other], client=cast(Any, RecordingClient()))
    assert caught.value.field == "requests[1].task"


def test_the_blocking_form_uses_a_sync_client(registry: TaskRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    handle = backfill.task("handles.sms", registry=registry)(send_sms)
    default = RecordingSyncClient()
    monkeypatch.setattr(sync_module, "default_client", lambda: default)
    sms: Sms = {"number": "+1"}

    assert handle.sync.enqueue(sms, delay=5, call_timeout=2) == cast(Any, "job")
    assert handle.sync.enqueue_many([sms, handle.request(sms, queue="q")]) == cast(Any, ["job"])

    assert default.calls[0] == (
        "enqueue",
        ("handles.sms", sms),
        {"job_key_mode": None, "connection": None, "call_timeout": 2, "delay": 5},
    )
    assert default.calls[1] == (
        "enqueue_many",
        ([Enqueue("handles.sms", sms), Enqueue("handles.sms", sms, queue="q")],),
        {"job_key_preserve_run_at": False, "call_timeout": None},
    )


def test_job_options_are_the_enqueue_requests_fields() -> None:
    # The handle's **options and Enqueue's fields must not drift apart; BackfillClient.enqueue takes them all.
    fields = [field.name for field in dataclasses.fields(Enqueue)]
    assert fields[:2] == ["task", "payload"]
    assert list(JobOptions.__annotations__) == fields[2:]
    assert set(fields[2:]) <= set(inspect.signature(BackfillClient.enqueue).parameters)


def test_root_exports_the_handle_types() -> None:
    assert backfill.Task is Task and backfill.AsyncTask is AsyncTask
