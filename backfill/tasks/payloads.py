"""Payload validation of the layer's tasks: pydantic beyond models, and at enqueue as well as in the worker.

The core validates a payload with its task's pydantic model before the handler runs, and refuses any other
payload annotation. ``@backfill.task`` gives the core a :class:`PayloadAdapter` (pydantic's ``TypeAdapter``)
for the rest — a dataclass, a ``TypedDict``, ``list[...]`` of them for batch jobs — so those are validated too,
and the handler receives the validated value (a dataclass instance, a dict).

When this process declared a task with a payload type, enqueueing it validates the payload first, by the
task's name (``client.enqueue("send_email", ...)``) or through its handle: a bad payload raises
:class:`~backfill.core.JobSpecError` naming the field, and nothing is written. The job then carries the
validated value as pydantic serialises it (JSON mode, by alias), which is exactly what the worker validates
again. Tasks without a payload type cost one dict lookup at enqueue (:func:`checked_payload`).

pydantic is imported only when a task with such a payload type is registered: the client imports this module,
and a process that declares no payload types need not load pydantic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backfill.core import (
    JobSpecError,
    PayloadValidationError,
    TaskDefinition,
    TaskDefinitionError,
    TaskRegistry,
)
from backfill.core.extension import Handler

# A payload is a JSON object or array: a handler annotated with one of these could never receive its payload.
_SCALARS = (str, bytes, int, float, bool, type(None))

_SUPPORTED = (
    "use a pydantic model, a dataclass or a TypedDict, or annotate the payload dict[str, Any] to receive the JSON "
    "unvalidated"
)

# identifier -> its check, for the tasks declared with @backfill.task (in any registry) that validate their
# payload. Like the tasks' defaults, it is per process and by identifier: the latest declaration wins.
PAYLOAD_CHECKS: dict[str, PayloadCheck] = {}


class PayloadAdapter:
    """pydantic's ``TypeAdapter`` for a payload type that is not a model, with the one method the core calls on
    a payload model (``model_validate``), and :meth:`dump` for enqueueing."""

    def __init__(self, payload_type: Any) -> None:
        import pydantic  # here, not at the top: see the module docstring

        self.payload_type = payload_type
        if any(payload_type is scalar for scalar in _SCALARS):
            raise TaskDefinitionError(
                f"the payload type {_type_name(payload_type)} can never match: a payload is a JSON object (or an "
                "array, for batch jobs)"
            )
        try:
            self._adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(payload_type)
        except pydantic.PydanticSchemaGenerationError:  # an arbitrary class; pydantic's advice is for models
            raise TaskDefinitionError(
                f"pydantic cannot validate the payload type {_type_name(payload_type)}; {_SUPPORTED}"
            ) from None
        except pydantic.PydanticUserError as error:  # typing.TypedDict before Python 3.12, say: pydantic says why
            reason = str(error).split("\n", 1)[0]
            raise TaskDefinitionError(
                f"pydantic cannot validate the payload type {_type_name(payload_type)}: {reason}"
            ) from None

    def model_validate(self, payload: Any, /) -> Any:
        return self._adapter.validate_python(payload)

    def dump(self, value: Any) -> Any:
        """``value`` (validated) as JSON-ready data. ``warnings="none"``: pydantic's serialisation warnings quote
        the values, and a payload's values must not reach logs; a value that does not serialise as its type says
        is caught by validating the dump instead (see :class:`PayloadCheck`)."""
        return self._adapter.dump_python(value, mode="json", by_alias=True, round_trip=True, warnings="none")

    def __repr__(self) -> str:
        return f"PayloadAdapter({_type_name(self.payload_type)})"


def register_task(
    registry: TaskRegistry,
    identifier: str,
    handler: Handler,
    *,
    payload_model: Any = None,
    timeout: float | None = None,
    keep_result: float | None = None,
) -> TaskDefinition:
    """Register ``handler`` in ``registry`` with :class:`PayloadAdapter` for the payload types the core does not
    validate itself, and remember the task's payload check for enqueueing."""
    definition = registry.register(
        identifier,
        handler,
        payload_model=payload_model,
        timeout=timeout,
        keep_result=keep_result,
        payload_adapter=PayloadAdapter,
    )
    check = PayloadCheck.of(definition)
    if check is None:
        PAYLOAD_CHECKS.pop(identifier, None)  # declared again, without a payload type
    else:
        PAYLOAD_CHECKS[identifier] = check
    return definition


def checked_payload(task: str, payload: Any) -> Any:
    """``payload`` as a ``task`` job should carry it: validated and serialised when this process declared the task
    with a payload type (:class:`~backfill.core.JobSpecError` if it does not validate), as given otherwise."""
    check = PAYLOAD_CHECKS.get(task)
    return payload if check is None else check(payload)


@dataclass(frozen=True, slots=True)
class PayloadCheck:
    """Validation of one task's payloads at enqueue, with the same model the worker uses."""

    definition: TaskDefinition
    # The validated value as JSON-ready data; None for a model that is not pydantic's (the payload is then
    # validated, and sent as given).
    dump: Callable[[Any], Any] | None

    @classmethod
    def of(cls, definition: TaskDefinition) -> PayloadCheck | None:
        model = definition.payload_model
        if model is None:
            return None
        if isinstance(model, PayloadAdapter):
            return cls(definition, model.dump)
        import pydantic  # most likely loaded already: the task has a model

        if isinstance(model, type) and issubclass(model, pydantic.BaseModel):
            return cls(definition, _dump_model)
        return cls(definition, None)

    def __call__(self, payload: Any) -> Any:
        source = {} if payload is None else payload  # what the worker will receive: the core stores None as {}
        value = self._validate(source)
        if self.dump is None:
            return payload
        data = self.dump(value)
        if type(source) is not dict and type(source) is not list:
            # pydantic passes instances through without revalidating them (a dataclass's fields are not checked
            # on assignment, a model may be built with model_construct): check the JSON the worker will get.
            self._validate(data)
        return data

    def _validate(self, payload: Any) -> Any:
        try:
            return self.definition.parse_payload(payload)
        except PayloadValidationError as error:  # its message names the fields, never their values
            fields = error.fields
            field = f"payload.{fields[0]}" if len(fields) == 1 and fields[0] != "payload" else "payload"
            raise JobSpecError(field, str(error)) from None


def _dump_model(value: Any) -> Any:
    # By alias: the worker's model_validate reads aliases (the core's own dump of a model does not use them).
    return value.model_dump(mode="json", by_alias=True, round_trip=True, warnings="none")


def _type_name(payload_type: Any) -> str:
    if isinstance(payload_type, type):
        return payload_type.__qualname__
    return repr(payload_type).removeprefix("typing.")
