"""The public surface is explicit: sorted ``__all__`` lists whose every name resolves."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from types import ModuleType

import pytest

import backfill
import backfill.core

CORE_DIR = Path(backfill.core.__file__).parent
# The core may import only these third-party top-level packages (style.md: dependencies point down).
CORE_ALLOWED_THIRD_PARTY = {"asyncpg", "croniter"}


@pytest.mark.parametrize("module", [backfill, backfill.core], ids=lambda m: m.__name__)
def test_all_is_sorted_and_resolves(module: ModuleType) -> None:
    names = list(module.__all__)
    assert names == sorted(names), f"{module.__name__}.__all__ is not sorted"
    assert len(names) == len(set(names)), "duplicate names in __all__"
    missing = [name for name in names if not hasattr(module, name)]
    assert missing == []


def test_root_reexports_the_decorator_and_worker() -> None:
    # Outside code relies on `@backfill.task("identifier")` and these names staying where they are. The root
    # task decorator is the layer's: the core's options plus per-task defaults (priority, lane, policy).
    from backfill.tasks.defaults import task as layer_task

    assert backfill.task is layer_task
    assert backfill.Worker is backfill.core.Worker
    assert backfill.add_job is backfill.core.add_job


def _imported_top_level_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_core_imports_only_stdlib_asyncpg_croniter_and_itself() -> None:
    offenders: dict[str, set[str]] = {}
    for path in sorted(CORE_DIR.rglob("*.py")):
        outside = {
            name
            for name in _imported_top_level_packages(path)
            if name not in sys.stdlib_module_names and name != "backfill" and name not in CORE_ALLOWED_THIRD_PARTY
        }
        if outside:
            offenders[str(path.relative_to(CORE_DIR))] = outside
    assert offenders == {}


def test_core_does_not_import_the_convenience_layer() -> None:
    offenders = []
    for path in sorted(CORE_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and module.startswith("backfill.") and not module.startswith("backfill.core"):
                offenders.append(f"{path.name}: {module}")
    assert offenders == []
