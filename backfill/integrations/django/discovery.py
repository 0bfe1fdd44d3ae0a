"""Which Django tasks a worker runs: those of backfill backends, found in the modules Django projects keep
them in.

Each installed app's ``tasks`` module is imported (``shop/tasks.py``, as Django's docs place tasks), then the
modules of the backends' ``OPTIONS["TASK_MODULES"]``. Every ``Task`` object at the top level of those modules
whose backend alias is one of the worker's is run. A task defined elsewhere and imported by none of these
modules is not: its jobs wait for a worker that knows it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

from django.apps import apps
from django.utils.module_loading import autodiscover_modules

from backfill.core import ConfigurationError
from backfill.integrations.django.compat import Task


def task_modules(extra: Iterable[str] = ()) -> list[ModuleType]:
    """The ``tasks`` module of every installed app that has one, then ``extra``, imported."""
    autodiscover_modules("tasks")  # imports <app>.tasks where it exists; an error inside one is raised
    names = [f"{app.name}.tasks" for app in apps.get_app_configs()]
    modules = [sys.modules[name] for name in names if name in sys.modules]
    for name in extra:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as error:
            raise ConfigurationError(f"TASK_MODULES {name}: cannot import module: {error}") from error
    return modules


def tasks_of(modules: Sequence[ModuleType], aliases: Iterable[str]) -> list[Task[Any, Any]]:
    """The tasks defined at the top level of ``modules`` that run on a backend of ``aliases``, one per module
    path (the first found), in a stable order."""
    wanted = set(aliases)
    found: dict[str, Task[Any, Any]] = {}
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, Task) and value.backend in wanted:
                found.setdefault(value.module_path, value)
    return [found[path] for path in sorted(found)]
