"""Task handles: what ``@backfill.task`` returns, to enqueue the task with a payload type mypy checks.

::

    @backfill.task("send_email", priority=Priority.FAST_DEFAULT)
    async def send_email(payload: Email, ctx: JobContext) -> None: ...

    job = await send_email.enqueue(Email(to="ada@example.com"), delay=60)
    jobs = await send_email.enqueue_many([Email(...), send_email.request(Email(...), priority=-5)])
    job = send_email.sync.enqueue(Email(...))  # blocking, like SyncBackfillClient

The handle is still the handler: calling it calls the function, and the registry holds the function itself.
Its type, ``Task[P, R]``, takes ``P`` from the handler's first parameter, so ``send_email.enqueue(Sms(...))``
is a mypy error; ``R`` is what calling the handler returns. An ``async def`` handler's handle is an
``AsyncTask[P, R]`` (a ``Task[P, Coroutine[Any, Any, R]]``), ``R`` being its awaited result. At run time the
payload is validated at enqueue when the task has a payload type (see :mod:`backfill.tasks.payloads`).
Enqueueing uses ``client=`` if given, else the module's default client
(:func:`backfill.client.default.default_client`, built from the environment).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, Generic, Literal, ParamSpec, Protocol, TypedDict, TypeVar, overload

from backfill.core import Job, JobKeyMode, JobSpecError, TaskDefinition
from backfill.tasks.retry_policies import RetryPolicy

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from backfill.client.async_client import BackfillClient, Enqueue
    from backfill.client.sync_client import SyncBackfillClient
    from backfill.core.extension import ConnectionSource

P = TypeVar("P")
R = TypeVar("R")
Params = ParamSpec("Params")


class JobOptions(TypedDict, total=False):
    """The per-job options of :meth:`BackfillClient.enqueue` (and the fields of ``Enqueue``), for ``**options``;
    they mean what they mean there."""

    priority: int | None
    queue: str | None
    lane: str | None
    run_at: datetime | None
    delay: float | timedelta | None
    job_key: str | None
    max_attempts: int | None
    retry_policy: RetryPolicy | str | None
    flags: Sequence[str] | None
    timeout: float | None
    keep_result: float | timedelta | None


class Task(Generic[P, R]):
    """A registered task: callable as its handler, and the way to enqueue it. See the module docstring."""

    # Copied from the handler (functools.update_wrapper), as a decorator's wrapper function would have them.
    __name__: str
    __qualname__: str
    __wrapped__: Callable[..., R]

    def __init__(self, definition: TaskDefinition, handler: Callable[..., R]) -> None:
        self.identifier = definition.identifier
        self.definition = definition
        self.handler = handler
        # The function's name, module, docstring and annotations, and __wrapped__: the registry's "same function"
        # rule and inspect.signature see the handler through the handle.
        functools.update_wrapper(self, handler)
        self.sync = SyncTaskEnqueuer[P](self.identifier)

    def __call__(self, payload: P, /, *args: Any, **kwargs: Any) -> R:
        return self.handler(payload, *args, **kwargs)

    def __reduce__(self) -> str:
        # Pickled by reference, as the function was: the module attribute of that name is now this handle.
        return self.__qualname__

    def __repr__(self) -> str:
        name = getattr(self.handler, "__qualname__", type(self.handler).__qualname__)
        return f"<{type(self).__name__} {self.identifier!r}: {getattr(self.handler, '__module__', '?')}.{name}>"

    async def enqueue(
        self,
        payload: P,
        /,
        *,
        client: BackfillClient | None = None,
        job_key_mode: JobKeyMode | str | None = None,
        connection: ConnectionSource | None = None,
        **options: Unpack[JobOptions],
    ) -> Job:
        """Enqueue one job of this task (:meth:`BackfillClient.enqueue`'s options) and return its row."""
        target = client if client is not None else _default_client()
        return await target.enqueue(
            self.identifier, payload, job_key_mode=job_key_mode, connection=connection, **options
        )

    def request(self, payload: P, /, **options: Unpack[JobOptions]) -> Enqueue:
        """One job with options of its own, for :meth:`enqueue_many` (or any client's ``enqueue_many``)."""
        from backfill.client.async_client import Enqueue  # the client imports this package: not at the top

        return Enqueue(self.identifier, payload, **options)

    @overload
    async def enqueue_many(
        self,
        payloads: Iterable[P | Enqueue],
        *,
        client: BackfillClient | None = None,
        job_key_preserve_run_at: bool = False,
        connection: ConnectionSource | None = None,
        returning: Literal[True] = True,
    ) -> list[Job]: ...

    @overload
    async def enqueue_many(
        self,
        payloads: Iterable[P | Enqueue],
        *,
        client: BackfillClient | None = None,
        job_key_preserve_run_at: bool = False,
        connection: ConnectionSource | None = None,
        returning: Literal[False],
    ) -> int: ...

    async def enqueue_many(
        self,
        payloads: Iterable[P | Enqueue],
        *,
        client: BackfillClient | None = None,
        job_key_preserve_run_at: bool = False,
        connection: ConnectionSource | None = None,
        returning: bool = True,
    ) -> list[Job] | int:
        """Enqueue many jobs of this task in one statement (:meth:`BackfillClient.enqueue_many`): payloads, or
        requests (:meth:`request`) for jobs with options of their own. A bad one is reported by its position."""
        requests = _requests(self.identifier, payloads)
        target = client if client is not None else _default_client()
        if returning:
            return await target.enqueue_many(
                requests, job_key_preserve_run_at=job_key_preserve_run_at, connection=connection
            )
        return await target.enqueue_many(
            requests, job_key_preserve_run_at=job_key_preserve_run_at, connection=connection, returning=False
        )


class AsyncTask(Task[P, Coroutine[Any, Any, R]]):
    """The handle of an ``async def`` handler. Calling it is an ``async def`` too, so code that inspects the handle
    (``inspect.iscoroutinefunction``, a registry given the handle) sees an async handler."""

    async def __call__(self, payload: P, /, *args: Any, **kwargs: Any) -> R:
        return await self.handler(payload, *args, **kwargs)


class SyncTaskEnqueuer(Generic[P]):
    """``task.sync``: the handle's enqueueing, blocking, through a
    :class:`~backfill.client.sync_client.SyncBackfillClient` (``client=``, else the default synchronous one)."""

    def __init__(self, identifier: str) -> None:
        self.identifier = identifier

    def enqueue(
        self,
        payload: P,
        /,
        *,
        client: SyncBackfillClient | None = None,
        job_key_mode: JobKeyMode | str | None = None,
        connection: Any = None,
        call_timeout: float | None = None,
        **options: Unpack[JobOptions],
    ) -> Job:
        """:meth:`SyncBackfillClient.enqueue` for this task: ``connection`` is a DB-API one (your transaction)."""
        target = client if client is not None else _default_sync_client()
        return target.enqueue(
            self.identifier,
            payload,
            job_key_mode=job_key_mode,
            connection=connection,
            call_timeout=call_timeout,
            **options,
        )

    def enqueue_many(
        self,
        payloads: Iterable[P | Enqueue],
        *,
        client: SyncBackfillClient | None = None,
        job_key_preserve_run_at: bool = False,
        call_timeout: float | None = None,
    ) -> list[Job]:
        """:meth:`SyncBackfillClient.enqueue_many` for this task: payloads, or requests (``task.request(...)``)."""
        requests = _requests(self.identifier, payloads)
        target = client if client is not None else _default_sync_client()
        return target.enqueue_many(requests, job_key_preserve_run_at=job_key_preserve_run_at, call_timeout=call_timeout)


class TaskDecorator(Protocol):
    """What ``@backfill.task(...)`` returns: the decorator that registers a handler and returns its handle.

    ``Concatenate[P, Params]`` takes ``P`` from the first parameter, whatever follows (a context, defaults)."""

    @overload
    def __call__(self, handler: Callable[Concatenate[P, Params], Coroutine[Any, Any, R]], /) -> AsyncTask[P, R]: ...

    @overload
    def __call__(self, handler: Callable[Concatenate[P, Params], R], /) -> Task[P, R]: ...


def handle_of(definition: TaskDefinition, handler: Callable[..., Any]) -> Task[Any, Any]:
    """The handle of ``handler``, just registered as ``definition``."""
    if definition.is_async:
        return AsyncTask[Any, Any](definition, handler)
    return Task[Any, Any](definition, handler)


def _requests(identifier: str, payloads: Iterable[Any]) -> list[Enqueue]:
    from backfill.client.async_client import Enqueue  # the client imports this package: not at the top

    requests = []
    for position, item in enumerate(payloads):
        if isinstance(item, Enqueue):
            if item.task != identifier:
                raise JobSpecError(f"requests[{position}].task", f"is not {identifier!r}, the task of this handle")
            requests.append(item)
        else:
            requests.append(Enqueue(identifier, item))
    return requests


def _default_client() -> BackfillClient:
    from backfill.client.default import default_client

    return default_client()


def _default_sync_client() -> SyncBackfillClient:
    from backfill.client.sync_client import default_client

    return default_client()
