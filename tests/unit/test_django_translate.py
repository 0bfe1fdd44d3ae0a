"""The Django backend's pure parts: how a task's options and arguments become a job, and errors come back."""

from __future__ import annotations

import json
import os
from datetime import datetime

import pytest

from backfill.core import ConfigurationError, JobSpecError
from backfill.integrations.django.database import url_from_django
from backfill.integrations.django.translate import (
    backfill_priority,
    decode_arguments,
    django_priority,
    encode_arguments,
    exception_class_path,
    lane_for_queue,
)
from tests.support.processes import run_python


@pytest.mark.parametrize(("django", "backfill"), [(100, -100), (10, -10), (0, 0), (-5, 5), (-100, 100)])
def test_priority_is_negated_so_higher_still_runs_first(django: int, backfill: int) -> None:
    assert backfill_priority(django) == backfill
    assert django_priority(backfill) == django


def test_the_default_queue_is_the_built_in_lanes_and_others_name_a_lane() -> None:
    assert lane_for_queue("default") is None
    assert lane_for_queue("emails") == "emails"
    for bad in ("Emails", "fast", "a queue"):
        with pytest.raises(JobSpecError):
            lane_for_queue(bad)


def test_arguments_round_trip_as_json() -> None:
    payload = encode_arguments((1, (2, 3)), {"to": "ada"})
    assert payload == {"args": [1, [2, 3]], "kwargs": {"to": "ada"}}
    assert decode_arguments(json.loads(json.dumps(payload))) == ([1, [2, 3]], {"to": "ada"})


def test_an_argument_that_is_not_json_is_named_without_its_value() -> None:
    with pytest.raises(TypeError, match=r"keyword argument 'when' \(a datetime\)") as caught:
        encode_arguments((1,), {"when": datetime(2030, 1, 1)})
    assert "2030" not in str(caught.value)
    with pytest.raises(TypeError, match="argument 0"):
        encode_arguments((float("nan"),), {})


@pytest.mark.parametrize("payload", [None, [], {"args": {}}, {"kwargs": []}, {"args": [], "other": 1}])
def test_a_payload_of_another_shape_is_refused(payload: object) -> None:
    with pytest.raises(JobSpecError):
        decode_arguments(payload)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("ValueError: out of stock", "builtins.ValueError"),
        ("shop.errors.OutOfStock: sku 1", "shop.errors.OutOfStock"),
        ("KeyError", "builtins.KeyError"),
        ("job timed out after 30s", "builtins.Exception"),
        ("len: not an exception", "builtins.Exception"),
        (None, "builtins.Exception"),
    ],
)
def test_the_exception_path_comes_from_the_error_text(text: str | None, path: str) -> None:
    assert exception_class_path(text) == path


def test_the_url_is_built_from_the_django_database_settings() -> None:
    settings = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "shop",
        "USER": "app",
        "PASSWORD": "Xk7q@Vz9:Lm3/Wr8",  # remembered for redaction from now on: nothing a message would hold
        "HOST": "db.internal",
        "PORT": 5433,
        "OPTIONS": {"sslmode": "require", "isolation_level": 1},
    }
    assert (
        url_from_django("default", settings)
        == "postgresql://app:Xk7q%40Vz9%3ALm3%2FWr8@db.internal:5433/shop?sslmode=require"
    )
    socket = {"ENGINE": "django.db.backends.postgresql", "NAME": "shop", "HOST": "/var/run/postgresql"}
    assert url_from_django("default", socket) == "postgresql:///shop?host=%2Fvar%2Frun%2Fpostgresql"


def test_a_database_that_is_not_postgresql_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="needs PostgreSQL"):
        url_from_django("default", {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"})


_LOADED = "import sys, backfill, backfill.core, backfill.integrations.django; print('django' in sys.modules)"


async def test_importing_backfill_and_the_integration_package_loads_no_django() -> None:
    finished = await run_python("-c", _LOADED, env=dict(os.environ))
    assert finished.code == 0, finished.output
    assert finished.stdout.strip() == "False"
