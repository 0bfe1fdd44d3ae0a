"""Task registration: ``@backfill.task("identifier")`` and the registry a worker runs from.

A handler is an ``async def`` (run on the event loop) or a plain ``def`` (run in a thread so the loop stays
free for fetching, completions and the listener). It receives the payload as its first argument and, when
it takes a second positional argument, a :class:`~backfill.core.run.context.JobContext`.

A task may declare a payload model — any class with pydantic's ``model_validate`` — either with
``payload_model=`` or as the annotation of the handler's first parameter. The payload is validated before
the handler runs; a payload that does not validate fails the attempt with a message naming the field.

The payload annotation is never silently ignored. An annotation that only describes decoded JSON means "no
validation": the handler gets the payload as decoded. That is no annotation, ``Any``, ``object``, and the JSON
containers — ``dict``, ``Mapping`` or ``MutableMapping`` with ``str`` (or ``Any``) keys, ``list`` or
``Sequence`` (batch jobs) — bare or with items that are JSON again: ``str``, ``int``, ``float``, ``bool``,
``None``, ``Any``, ``object``, such containers, and unions of them (``dict[str, Any]``, ``dict[str, int]``,
``list[dict[str, Any]]``, ``dict[str, Any] | None``). A pydantic model is validated. Anything else (a
dataclass, a ``TypedDict``, ``dict[str, SomeDataclass]``, ``str``, a name that cannot be resolved) is refused
at registration with :class:`TaskDefinitionError`, unless the registering code supplies a
``payload_adapter``: the layer's ``@backfill.task`` does, and validates such types with pydantic's
``TypeAdapter``.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
import functools
import inspect
import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from backfill.core.checks import check_name
from backfill.core.errors import JobSpecError, PayloadValidationError, TaskDefinitionError
from backfill.core.jobs import MAX_IDENTIFIER_LENGTH, check_retention, check_timeout

Handler = Callable[..., Any]


class PayloadModel(Protocol):
    """What validates a task's payload: a pydantic model class, or any object with the same ``model_validate``
    (the layer's adapter for dataclasses and TypedDicts). It returns what the handler receives."""

    def model_validate(self, obj: Any, /) -> Any: ...


# Builds a PayloadModel for a payload type the core cannot validate itself (raises TaskDefinitionError when
# it cannot either). The layer's @backfill.task passes one built on pydantic's TypeAdapter.
PayloadAdapter = Callable[[Any], PayloadModel]


@dataclass(frozen=True, slots=True)
class TaskDefinition:
    """A registered task: its identifier, handler and how to call it."""

    identifier: str
    handler: Handler
    payload_model: PayloadModel | None
    is_async: bool
    wants_context: bool
    # Seconds an attempt may run before it is cancelled and failed; a job's own timeout overrides it.
    timeout: float | None = None
    # Seconds every job's outcome is kept after it ends (backfill_job_results); a job's own flag overrides it.
    keep_result: float | None = None

    @property
    def module(self) -> str:
        return str(getattr(self.handler, "__module__", ""))

    def parse_payload(self, payload: Any) -> Any:
        """The payload as the handler should see it: validated into the model when there is one."""
        if self.payload_model is None:
            return payload
        try:
            return self.payload_model.model_validate(payload)
        except Exception as error:  # pydantic's ValidationError, or any model's own
            # Not chained: pydantic's own message quotes the values (input_value=...), and a chained error
            # would print them in every traceback of the failure. Payloads are never logged by default.
            raise _validation_error(self.identifier, error) from None


def _validation_error(identifier: str, error: Exception) -> PayloadValidationError:
    """The error naming each bad field, what is wrong with it and pydantic's error type, without values."""
    fields: list[str] = []
    details: list[str] = []
    for item in _error_items(error):
        location = ".".join(str(part) for part in item.get("loc", ())) or "payload"
        fields.append(location)
        kind = f" [{item['type']}]" if item.get("type") else ""
        details.append(f"{location}: {item.get('msg', 'invalid')}{kind}")
    # A model's own exception may quote the payload in its message too: only its type is safe to show.
    return PayloadValidationError(
        identifier, fields, "; ".join(details) or f"{type(error).__name__} (message withheld)"
    )


def _error_items(error: Exception) -> list[dict[str, Any]]:
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return []
    try:
        items = errors(include_input=False, include_url=False, include_context=False)
    except TypeError:  # a model whose errors() takes no such arguments (not pydantic's)
        return []
    return [dict(item) for item in items]


class TaskRegistry:
    """A set of tasks by identifier. Module-level ``backfill.task`` registers into :data:`default_registry`."""

    def __init__(self, definitions: Iterable[TaskDefinition] = ()) -> None:
        self._tasks: dict[str, TaskDefinition] = {}
        for definition in definitions:
            self._add(definition)

    def task(
        self,
        identifier: str,
        *,
        payload_model: PayloadModel | type[Any] | None = None,
        timeout: float | None = None,
        keep_result: float | timedelta | None = None,
    ) -> Callable[[Handler], Handler]:
        """Decorator registering the decorated function as the handler of ``identifier``."""

        def decorate(handler: Handler) -> Handler:
            self.register(identifier, handler, payload_model=payload_model, timeout=timeout, keep_result=keep_result)
            return handler

        return decorate

    def register(
        self,
        identifier: str,
        handler: Handler,
        *,
        payload_model: PayloadModel | type[Any] | None = None,
        timeout: float | None = None,
        keep_result: float | timedelta | None = None,
        payload_adapter: PayloadAdapter | None = None,
    ) -> TaskDefinition:
        """Define the task (see :func:`define_task`) and add it; an identifier taken by another handler is refused."""
        definition = define_task(
            identifier,
            handler,
            payload_model=payload_model,
            timeout=timeout,
            keep_result=keep_result,
            payload_adapter=payload_adapter,
        )
        self._add(definition)
        return definition

    def add(self, definition: TaskDefinition) -> None:
        """Register an existing definition (from another registry, say) as it is."""
        self._add(definition)

    def _add(self, definition: TaskDefinition) -> None:
        existing = self._tasks.get(definition.identifier)
        if existing is not None and not _same_function(existing.handler, definition.handler):
            raise TaskDefinitionError(
                f"task {definition.identifier!r} is already registered to {_qualified_name(existing.handler)}"
            )
        self._tasks[definition.identifier] = definition

    def get(self, identifier: str) -> TaskDefinition | None:
        return self._tasks.get(identifier)

    def __getitem__(self, identifier: str) -> TaskDefinition:
        return self._tasks[identifier]

    def __contains__(self, identifier: object) -> bool:
        return identifier in self._tasks

    def __iter__(self) -> Iterator[TaskDefinition]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def identifiers(self) -> list[str]:
        return sorted(self._tasks)

    def from_modules(self, modules: Iterable[str]) -> TaskRegistry:
        """The tasks whose handlers are defined in ``modules`` (or their submodules)."""
        prefixes = tuple(modules)
        return TaskRegistry(d for d in self if any(d.module == p or d.module.startswith(p + ".") for p in prefixes))


default_registry = TaskRegistry()


def task(
    identifier: str,
    *,
    payload_model: PayloadModel | type[Any] | None = None,
    timeout: float | None = None,
    keep_result: float | timedelta | None = None,
) -> Callable[[Handler], Handler]:
    """Register the decorated ``async def`` (or plain ``def``) as the handler of ``identifier``.

    ``payload_model`` (a pydantic model; by default the first parameter's annotation, if it is one) validates
    each payload before the handler runs. The core validates pydantic models only: a dataclass or TypedDict
    annotation is refused here (``@backfill.task`` validates those too; see the module docstring).
    ``timeout`` (seconds) cancels an attempt that runs longer and fails it with a timeout error.
    ``keep_result`` (seconds or a timedelta) keeps each job's outcome and return value that long after it ends.

    >>> @task("send_email", timeout=30)
    ... async def send_email(payload, ctx): ...
    """
    return default_registry.task(identifier, payload_model=payload_model, timeout=timeout, keep_result=keep_result)


def define_task(
    identifier: str,
    handler: Handler,
    *,
    payload_model: PayloadModel | type[Any] | None = None,
    timeout: float | None = None,
    keep_result: float | timedelta | None = None,
    payload_adapter: PayloadAdapter | None = None,
) -> TaskDefinition:
    """Check ``handler``'s shape and build its :class:`TaskDefinition` (no registration).

    The payload model is ``payload_model`` if given, else the first parameter's annotation (see the module
    docstring for which annotations mean "no validation"). A payload type without ``model_validate`` goes to
    ``payload_adapter`` when one is given, and is refused otherwise: never silently left unvalidated."""
    check_name("a task identifier", identifier, error=TaskDefinitionError)
    if len(identifier) > MAX_IDENTIFIER_LENGTH:
        raise TaskDefinitionError(f"task identifier {identifier[:40]!r}… is longer than {MAX_IDENTIFIER_LENGTH}")
    if not callable(handler):
        raise TaskDefinitionError(f"the handler of task {identifier!r} is not callable")
    positional = _positional_parameters(identifier, handler)
    model: PayloadModel | None
    if payload_model is not None:
        model = _payload_model(identifier, payload_model, payload_adapter)
    else:
        model = _annotated_model(identifier, handler, positional[0], payload_adapter)
    if timeout is not None:
        try:
            timeout = check_timeout("timeout", timeout)
        except JobSpecError as error:
            raise TaskDefinitionError(f"task {identifier!r}: {error}") from None
    retention = None
    if keep_result is not None:
        try:
            retention = check_retention("keep_result", keep_result)
        except JobSpecError as error:
            raise TaskDefinitionError(f"task {identifier!r}: {error}") from None
    return TaskDefinition(
        identifier=identifier,
        handler=handler,
        payload_model=model,
        is_async=inspect.iscoroutinefunction(handler)
        or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
        ),
        wants_context=len(positional) == 2,
        timeout=timeout,
        keep_result=retention,
    )


def _positional_parameters(identifier: str, handler: Handler) -> list[inspect.Parameter]:
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError) as error:
        raise TaskDefinitionError(f"cannot read the signature of task {identifier!r}: {error}") from None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    parameters = [p for p in signature.parameters.values() if p.kind in kinds]
    required = [p for p in parameters if p.default is p.empty]
    if not parameters or len(required) > 2:
        found = f"it requires {len(required)}" if parameters else "it takes none"
        raise TaskDefinitionError(
            f"the handler of task {identifier!r} must take the payload and optionally a job context "
            f"as positional parameters (1 or 2); {found}"
        )
    # A second parameter with a default still receives the context: `def handler(payload, ctx=None)`.
    return parameters[:2]


def _annotated_model(
    identifier: str, handler: Handler, parameter: inspect.Parameter, adapter: PayloadAdapter | None
) -> PayloadModel | None:
    annotation = _payload_annotation(identifier, handler, parameter)
    if _is_plain(annotation):
        return None
    return _payload_model(identifier, annotation, adapter)


def _payload_model(identifier: str, model: Any, adapter: PayloadAdapter | None) -> PayloadModel:
    """``model`` if it validates by itself (pydantic's ``model_validate``), else what ``adapter`` makes of it."""
    if callable(getattr(model, "model_validate", None)):
        return typing.cast(PayloadModel, model)
    if adapter is None:
        raise TaskDefinitionError(
            f"task {identifier!r}: the payload type {_type_name(model)} has no model_validate(), and backfill.core "
            "validates pydantic models only; register the task with @backfill.task (which validates dataclasses "
            "and TypedDicts with pydantic), or annotate the payload dict[str, Any] to receive the JSON unvalidated"
        )
    try:
        return adapter(model)
    except TaskDefinitionError as error:
        raise TaskDefinitionError(f"task {identifier!r}: {error}") from None


def _payload_annotation(identifier: str, handler: Handler, parameter: inspect.Parameter) -> Any:
    """The payload parameter's annotation, resolved; ``Any`` when it has none."""
    if parameter.annotation is parameter.empty:
        return Any
    try:
        hints = typing.get_type_hints(handler)
    except Exception:  # any other parameter's annotation may not resolve: see below
        hints = {}
    if parameter.name in hints:
        return hints[parameter.name]
    # get_type_hints resolves every annotation at once: a context annotated with a type imported under
    # TYPE_CHECKING (common with `from __future__ import annotations`) must not hide the payload's, which is
    # resolved here alone, in the handler's module. Callable objects and partials land here too.
    annotation = parameter.annotation
    if not isinstance(annotation, str):
        return annotation
    holder = types.SimpleNamespace(__annotations__={parameter.name: annotation})
    try:
        return typing.get_type_hints(holder, globalns=_globals_of(handler))[parameter.name]
    except Exception as error:  # NameError mostly, but evaluating an annotation may raise anything
        raise TaskDefinitionError(
            f"task {identifier!r}: cannot resolve its payload annotation {annotation!r} "
            f"({type(error).__name__}: {error}); define that type at module level, before the handler, "
            "or pass payload_model="
        ) from None


def _globals_of(handler: Handler) -> dict[str, Any]:
    target: Any = inspect.unwrap(handler)
    while isinstance(target, functools.partial):
        target = inspect.unwrap(target.func)
    namespace = getattr(target, "__globals__", None)
    if isinstance(namespace, dict):
        return namespace
    module = sys.modules.get(str(getattr(target, "__module__", "")))  # a callable object: its class's module
    return vars(module) if module is not None else {}


# Annotations that describe the decoded JSON, and so mean "unvalidated" (see the module docstring).
_ANYTHING = (Any, object)
_JSON_SCALARS = (str, int, float, bool, type(None))
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_SEQUENCES = (list, collections.abc.Sequence)


def _is_plain(annotation: Any) -> bool:
    # A bare scalar describes JSON too, but never a whole payload (an object, or an array for batch jobs).
    return _is_json(annotation) and not any(annotation is scalar for scalar in _JSON_SCALARS)


def _is_json(annotation: Any) -> bool:
    if any(annotation is known for known in (*_ANYTHING, *_JSON_SCALARS)):
        return True
    origin = typing.get_origin(annotation) or annotation
    arguments = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return all(_is_json(argument) for argument in arguments)
    if any(origin is mapping for mapping in _MAPPINGS):
        return not arguments or (arguments[0] in (str, Any) and _is_json(arguments[1]))
    if any(origin is sequence for sequence in _SEQUENCES):
        return not arguments or _is_json(arguments[0])
    return False


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation).removeprefix("typing.")


def _same_function(old: Handler, new: Handler) -> bool:
    """The same handler, or the same module-level function again (its module imported twice).

    Lambdas and nested functions share qualified names across different bodies, so for them only the
    very same object counts as "the same".
    """
    if old is new:
        return True
    name = _qualified_name(new)
    return name == _qualified_name(old) and "<" not in name


def _qualified_name(handler: Handler) -> str:
    module = getattr(handler, "__module__", "?")
    name = getattr(handler, "__qualname__", repr(handler))
    return f"{module}.{name}"


async def call_handler(definition: TaskDefinition, payload: Any, context: Any, executor: Executor | None = None) -> Any:
    """Run the handler: awaited on the loop when async, in ``executor`` (a thread) when synchronous.

    The caller's context variables travel into the thread, as with ``asyncio.to_thread``.
    """
    args = (payload, context) if definition.wants_context else (payload,)
    if definition.is_async:
        return await definition.handler(*args)
    loop = asyncio.get_running_loop()
    call_context = contextvars.copy_context()
    result = await loop.run_in_executor(executor, functools.partial(call_context.run, definition.handler, *args))
    if inspect.isawaitable(result):  # a plain def that returned a coroutine
        return await result
    return result
