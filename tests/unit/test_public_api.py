"""The public surface is explicit: sorted ``__all__`` lists whose every name resolves."""

from __future__ import annotations

import ast
import graphlib
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

import backfill
import backfill.core
import backfill.core.extension
from tests.support.processes import run_python

PACKAGE_DIR = Path(backfill.__file__).parent
CORE_DIR = Path(backfill.core.__file__).parent
# The core may import only these third-party top-level packages (style.md: dependencies point down).
CORE_ALLOWED_THIRD_PARTY = {"asyncpg", "croniter"}
# What the layer needs and the core must not load: a core-only process may not even have them installed.
LAYER_DEPENDENCIES = {"prometheus_client", "pydantic", "pydantic_core", "pydantic_settings", "structlog", "tenacity"}


@pytest.mark.parametrize("module", [backfill, backfill.core, backfill.core.extension], ids=lambda m: m.__name__)
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


# Run by a fresh interpreter (this one has imported the whole layer already); the argv names the dependencies.
_LOADED_BY_THE_CORE = """
import json, sys
import backfill.core
layer = [m for m in sys.modules if m.startswith("backfill.") and not m.startswith("backfill.core")]
print(json.dumps(sorted(layer + [m for m in sys.modules if m.split(".")[0] in sys.argv[1:]])))
"""


async def test_importing_the_core_loads_nothing_of_the_layer() -> None:
    # `import backfill.core` runs backfill/__init__.py first, which must import neither the layer's modules
    # nor their dependencies.
    finished = await run_python("-c", _LOADED_BY_THE_CORE, *sorted(LAYER_DEPENDENCIES), env=dict(os.environ))
    assert finished.code == 0, finished.output
    assert json.loads(finished.stdout) == []


def test_root_names_are_imported_from_where_type_checkers_see_them() -> None:
    # The lazy table and the TYPE_CHECKING imports say the same thing twice (one for the interpreter, one for
    # mypy and IDEs): they must not drift apart.
    tree = ast.parse(Path(backfill.__file__).read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    seen: dict[str, set[str]] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module is not None
        seen.setdefault(node.module, set()).update(alias.name for alias in node.names)
    lazy = {module: set(names) for module, names in backfill._EXPORTS.items()}
    assert seen == lazy
    assert {name for names in lazy.values() for name in names} | {"__version__"} == set(backfill.__all__)


def test_root_resolves_its_subpackages_and_refuses_unknown_names() -> None:
    # A bare `import backfill` used to import (and so bind) these subpackages; code may still name them.
    for name in ("client", "core", "dlq", "lanes", "logs", "metrics", "migrations", "priorities", "runner"):
        assert isinstance(getattr(backfill, name), ModuleType)
    assert set(backfill.__all__) <= set(dir(backfill))
    with pytest.raises(AttributeError, match="no attribute 'Wroker'"):
        _ = backfill.Wroker  # type: ignore[attr-defined]


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


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_on_load(path: Path) -> set[str]:
    """What a module imports while it loads: its top-level import statements (those in functions run later,
    those under ``if TYPE_CHECKING:`` never), with ``from a import b`` also naming a possible submodule a.b."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_import_cycles() -> None:
    # The root used to import the whole layer eagerly, in one fixed order, and that hid a cycle (settings ->
    # runner -> settings) from whoever imported backfill.settings first. Lazy, the order is the caller's.
    modules = {_module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        parts = name.split(".")
        own_packages = {".".join(parts[:n]) for n in range(1, len(parts) + 1)}  # already loading when it loads
        needs: set[str] = set()
        for imported in _imported_on_load(path):
            pieces = imported.split(".")
            # Importing a.b.c loads a and a.b first: a cycle can run through a package's __init__.
            needs.update(".".join(pieces[:n]) for n in range(1, len(pieces) + 1))
        graph[name] = {needed for needed in needs if needed in modules and needed not in own_packages}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        # graphlib lists each module before the ones that import it; reversed, each one imports the next.
        pytest.fail(f"import cycle: {' imports '.join(reversed(error.args[1]))}")


def _core_imports_of_the_layer() -> list[tuple[str, str, str]]:
    """``(file, module, name)`` for every import of the core in a layer file (``name`` is ``""`` for an ``import``
    statement, which binds the module itself)."""
    found = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if CORE_DIR in path.parents:
            continue
        where = str(path.relative_to(PACKAGE_DIR))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found += [(where, alias.name, "") for alias in node.names if alias.name.startswith("backfill.core")]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.startswith("backfill.core"):
                    found += [(where, node.module, alias.name) for alias in node.names]
                elif node.module == "backfill":
                    found += [(where, "backfill", alias.name) for alias in node.names if alias.name == "core"]
    return found


def test_the_layer_uses_only_the_cores_public_and_extension_api() -> None:
    """The seam between the layer and the core is declared: ``backfill.core``'s public names and
    ``backfill.core.extension``'s, imported from those two modules, and nothing else of the core."""
    allowed = {
        "backfill.core": set(backfill.core.__all__),
        "backfill.core.extension": set(backfill.core.extension.__all__),
    }
    imports = _core_imports_of_the_layer()
    assert any(module == "backfill.core.extension" for _, module, _ in imports)  # the scan sees the imports
    offenders = [
        f"{where}: {module}{'.' + name if name else ''}"
        for where, module, name in imports
        if module not in allowed or name not in allowed[module]
    ]
    assert offenders == []


def test_the_extension_api_is_used_by_the_layer() -> None:
    """A name declared for the layer that no layer module imports is not a seam any more: drop it."""
    imported = {name for _, module, name in _core_imports_of_the_layer() if module == "backfill.core.extension"}
    assert sorted(set(backfill.core.extension.__all__) - imported) == []
