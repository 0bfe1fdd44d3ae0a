"""Importing the modules that define tasks, for a worker started from the command line or the environment."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from backfill.core import ConfigurationError, TaskRegistry, default_registry


def load_tasks(modules: Sequence[str], *, source: str = "--tasks") -> TaskRegistry:
    """Import ``modules`` and collect the tasks they define (with ``@backfill.task`` or in a module-level
    ``TaskRegistry``). ``source`` names where the module list came from, for error messages (``--tasks`` or
    ``BACKFILL_TASK_MODULES``)."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `backfill worker --tasks app.tasks` run from the project root
    collected = TaskRegistry()
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as error:
            raise ConfigurationError(f"{source} {name}: cannot import module: {error}") from error
        for definition in default_registry.from_modules([name]):
            collected.add(definition)  # as defined: payload model and timeout included
        for value in vars(module).values():
            if isinstance(value, TaskRegistry) and value is not default_registry:
                for definition in value:
                    collected.add(definition)
    if len(collected) == 0:
        raise ConfigurationError(
            f"{source} {', '.join(modules)}: no tasks found (decorate handlers with @backfill.task)"
        )
    return collected
