"""The ``backfill:`` flags: one owner of the namespace, one parser, one formatter.

Graphile's jobs table stores flags as a jsonb object (``{"flag": true, ...}``); a Node worker keeps them and
ignores the ones it does not know. backfill stores what Graphile's schema has no column for under its own
prefix, so that one name cannot mean two things. A name comes in two forms, and its owner may use either or
both: the bare flag ``backfill:<name>`` and valued flags ``backfill:<name>=<value>``.

The core registers its own names here (``suspect``, ``timeout``); the layer registers its names from its own
modules (a lane, a retry policy, a dead-letter entry) through :func:`register_flag`, so the core never needs
to know them. A name registered twice by different modules is refused at import, before two parts of the code
can read one flag two ways.

Reading is done per job on the worker's hot path (``Job.timeout``), so the parser is a ``startswith`` over the
few flags a job carries, never a regular expression.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from backfill.core.errors import ConfigurationError

NAMESPACE = "backfill:"
# What may follow the namespace: no ':' (it would look like a sub-namespace) and no '=' (it ends the name).
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_NO_FLAGS: frozenset[str] = frozenset()
_CACHE_LIMIT = 1024  # distinct flag texts / flag sets remembered by the caches below
K = TypeVar("K")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Flag:
    """A registered name: ``bare`` is the flag ``backfill:<name>``, ``prefix`` starts its valued flags."""

    name: str
    owner: str  # the module that registered it, named when another module asks for the same name
    bare: str
    prefix: str

    def with_value(self, value: str) -> str:
        """The valued flag ``backfill:<name>=<value>``."""
        return self.prefix + value


_registered: dict[str, Flag] = {}


def register_flag(name: str, *, owner: str) -> Flag:
    """Claim ``backfill:<name>`` for ``owner`` (a module's ``__name__``).

    Refused when another owner holds the name. The same owner registering again gets the same flag (a module
    imported twice under one name, as ``importlib.reload`` does)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"flag name must be lower-case letters, digits, '_' or '-' starting with a letter, got {name!r}"
        )
    existing = _registered.get(name)
    if existing is not None:
        if existing.owner != owner:
            raise ConfigurationError(
                f"flag {NAMESPACE}{name} is registered by {existing.owner}; {owner} cannot register it too"
            )
        return existing
    flag = _registered[name] = Flag(name, owner, NAMESPACE + name, f"{NAMESPACE}{name}=")
    return flag


def registered_flags() -> Mapping[str, Flag]:
    """Every name registered so far (the layer's only once its modules are imported), by name."""
    return MappingProxyType(dict(_registered))


def value_of(flags: Iterable[str] | None, flag: Flag) -> str | None:
    """The value of the first valued ``flag`` among ``flags`` (``None``: there is none). A job should carry
    one; of several, which is first follows the order of ``flags`` (arbitrary for a frozenset)."""
    if flags:
        prefix = flag.prefix
        for candidate in flags:
            if candidate.startswith(prefix):
                return candidate[len(prefix) :]
    return None


def values_of(flags: Iterable[str] | None, flag: Flag) -> Iterator[str]:
    """The values of every valued ``flag`` among ``flags``, for readers that skip a value they cannot use."""
    prefix = flag.prefix
    for candidate in flags or ():
        if candidate.startswith(prefix):
            yield candidate[len(prefix) :]


def _remembered(read: Callable[[K], T]) -> Callable[[K], T]:
    """``read`` worked out once per distinct argument, then looked up; bounded, since the arguments (flag
    texts, flag sets) are the enqueuers' to choose. An unhashable argument is read each time."""
    cache: dict[K, T] = {}

    def cached(key: K) -> T:
        try:
            return cache[key]
        except KeyError:
            pass
        except TypeError:
            return read(key)
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        value = cache[key] = read(key)
        return value

    cached.__doc__ = read.__doc__
    cached.__name__ = getattr(read, "__name__", "cached")
    return cached


def per_flag_set(read: Callable[[frozenset[str]], T]) -> Callable[[frozenset[str]], T]:
    """``read`` (a function of a job's flags) worked out once per distinct flag set, then looked up.

    For readers the worker calls on every job (the timeout, a dead-letter entry id): jobs share a few flag
    sets, and a frozenset keeps its hash, so a call is one dictionary lookup instead of a scan of the flags.
    A job built by hand with a list of flags (unhashable) is read each time."""
    return _remembered(read)


def is_set(flags: Collection[str] | None, flag: Flag) -> bool:
    """Whether the bare ``flag`` is among ``flags``."""
    return flags is not None and flag.bare in flags


def without_values(flags: Iterable[str] | None, flag: Flag) -> tuple[str, ...]:
    """``flags`` minus every valued ``flag`` (the bare one is kept), in their order: what is left before a new
    value is given, so that a job never carries two."""
    prefix = flag.prefix
    return tuple(candidate for candidate in flags or () if not candidate.startswith(prefix))


def parse_flags(stored: Any) -> frozenset[str]:
    """A row's ``flags`` column (jsonb ``{"flag": true, ...}``, as text or decoded) as the set of flags that
    are on; SQL ``null`` and ``{}`` give the empty set.

    Text is decoded once per distinct text: a worker reads the flags of every job it claims, and most jobs of
    a deployment carry one of a handful of flag sets (a retry policy, a lane), so the set is looked up rather
    than parsed again (the parse was about a tenth of a flagged no-op job's cost in the worker)."""
    if isinstance(stored, str):
        return _parse_text(stored)
    return _flag_set(stored)


def _flag_set(decoded: Any) -> frozenset[str]:
    return frozenset(name for name, on in decoded.items() if on) if decoded else _NO_FLAGS


@_remembered
def _parse_text(text: str) -> frozenset[str]:
    return _flag_set(json.loads(text))


# The core's own names. A per-job timeout travels as a flag (backfill:timeout=<seconds>) because Graphile's
# jobs table has no column for it and its schema must stay identical to Node's; flags are returned with every
# claim already, and Node workers ignore unknown ones.
TIMEOUT = register_flag("timeout", owner=__name__)
# Set by the sweeper on a job found in two dead workers: it may be what killed them, so a backfill worker runs
# it alone (see Worker's isolation), which makes the next death, if any, conclusive evidence against it.
SUSPECT = register_flag("suspect", owner=__name__)
# A job whose outcome is kept after its row is gone: backfill:result=<seconds of retention>. A flag rather than
# a column for the same reason as the timeout; the worker also keeps the outcome of a task that declares a
# retention (TaskDefinition.keep_result), so jobs enqueued without the flag (by Node, by SQL) are kept too.
RESULT = register_flag("result", owner=__name__)
