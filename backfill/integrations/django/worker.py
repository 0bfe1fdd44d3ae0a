"""The worker runner of a Django project: backfill's :class:`~backfill.runner.WorkerRunner` running the Django
tasks of one or more :class:`BackfillBackend` aliases (``manage.py backfill_worker`` builds it here).

The database and schema are the backends' (see :mod:`.database`): every alias it serves must use the same ones.
Everything else comes from backfill's environment variables, as for ``backfill run``: lanes and their
concurrency (``FAST_QUEUE_CONCURRENCY``, ``BACKFILL_LANES``), shutdown grace, logs, metrics, the dead-letter
queue. Tasks declared with ``@backfill.task`` in ``BACKFILL_TASK_MODULES`` run in the same runner.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from backfill.core import ConfigurationError, TaskRegistry
from backfill.integrations.django.backend import BackfillBackend
from backfill.integrations.django.compat import task_backends
from backfill.integrations.django.discovery import task_modules, tasks_of
from backfill.integrations.django.dispatch import registry_for
from backfill.logs import configure_logging
from backfill.runner import WorkerRunner
from backfill.settings import BackfillSettings
from backfill.tasks.modules import load_tasks


def backfill_backends(aliases: Sequence[str] = ()) -> list[BackfillBackend]:
    """The backends named (every ``TASKS`` alias whose backend is a :class:`BackfillBackend` when none is)."""
    if not aliases:
        found = [backend for backend in task_backends.all() if isinstance(backend, BackfillBackend)]
        if not found:
            raise ConfigurationError(
                "settings.TASKS: no backend is backfill.integrations.django.backend.BackfillBackend"
            )
        return found
    backends = []
    for alias in aliases:
        if alias not in task_backends.settings:
            raise ConfigurationError(f"--backend {alias}: no such alias in settings.TASKS")
        backend = task_backends[alias]
        if not isinstance(backend, BackfillBackend):
            raise ConfigurationError(f"--backend {alias}: its BACKEND is {type(backend).__name__}, not BackfillBackend")
        backends.append(backend)
    return backends


def build_runner(aliases: Sequence[str] = (), *, env_file: str | Path | None = ".env") -> WorkerRunner:
    """A runner for the Django tasks of ``aliases`` (see :func:`backfill_backends`), logging configured."""
    backends = backfill_backends(aliases)
    first = backends[0]
    for other in backends[1:]:
        if (other.database_url, other.schema) != (first.database_url, first.schema):
            raise ConfigurationError(
                f"TASKS[{other.alias!r}] and TASKS[{first.alias!r}] use different databases or schemas: "
                "run one backfill_worker per database, with --backend"
            )
    with warnings.catch_warnings(record=True) as early:  # before logging is configured: held back, as from_env
        warnings.simplefilter("always")
        # Django's settings name the database; the environment configures the rest of the worker.
        settings = BackfillSettings.load(env_file, database_url=first.database_url, schema_name=first.schema)
    configure_logging(level=settings.log_level, fmt=settings.log_format, log_payloads=settings.log_payloads, root=True)
    for warning in early:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    modules = task_modules(module for backend in backends for module in backend.task_modules)
    registry = TaskRegistry()
    for backend in backends:
        for definition in registry_for(tasks_of(modules, [backend.alias]), keep_result=backend.keep_result):
            registry.add(definition)
    if len(registry) == 0:
        raise ConfigurationError(
            f"no Django tasks found for the backend(s) {', '.join(b.alias for b in backends)}: define them in an "
            "installed app's tasks module, or list their modules in OPTIONS['TASK_MODULES']"
        )
    if settings.task_modules:
        for definition in load_tasks(settings.task_modules, source="BACKFILL_TASK_MODULES"):
            registry.add(definition)
    return WorkerRunner(settings, tasks=registry)
