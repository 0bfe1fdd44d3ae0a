"""backfill.testing's surface: its names, the plugin's entry point, and fixture names that clash with nobody's."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import backfill.testing
import backfill.testing.plugin
import tests.conftest
import tests.integration.conftest

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_all_is_sorted_and_every_name_resolves() -> None:
    names = list(backfill.testing.__all__)
    assert names == sorted(names)
    for name in names:
        assert getattr(backfill.testing, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'run_job'"):
        _ = backfill.testing.run_job  # type: ignore[attr-defined]


def test_the_plugin_is_registered_by_entry_point() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["entry-points"]["pytest11"] == {"backfill": "backfill.testing.plugin"}


def test_every_fixture_is_prefixed_and_none_shadows_ours() -> None:
    fixture = type(tests.conftest.pool)  # what @pytest.fixture makes of a function

    def fixtures_of(module: object) -> set[str]:
        return {name for name in dir(module) if isinstance(getattr(module, name), fixture)}

    plugin = fixtures_of(backfill.testing.plugin)
    assert plugin == {
        "backfill_client",
        "backfill_clock",
        "backfill_database",
        "backfill_database_url",
        "backfill_databases",
        "backfill_job_context",
        "backfill_run_jobs",
    }
    assert plugin.isdisjoint(fixtures_of(tests.conftest) | fixtures_of(tests.integration.conftest))
