"""The text of the enqueue statements that Python shapes: add_job for DB-API drivers, and the JSON job specs."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from backfill.core.enqueue import (
    add_job_sql,
    dbapi_form,
    encode_spec_rows,
    insert_jobs_arguments,
    job_spec_json_fields,
)
from backfill.core.jobs import JobSpec
from backfill.core.schema import SchemaName

SCHEMA = SchemaName('My "Odd" Schema')


def test_add_job_for_dbapi_drivers_marks_every_parameter_in_order() -> None:
    asyncpg_form = add_job_sql(SCHEMA)
    dbapi_form = add_job_sql(SCHEMA, dbapi=True)
    assert re.findall(r"\$(\d+)", asyncpg_form) == [str(n) for n in range(1, 10)]
    assert "$" not in dbapi_form
    assert dbapi_form.count("%s") == 9
    assert re.sub(r"\$\d+", "%s", asyncpg_form) == dbapi_form


def test_a_statement_whose_parameters_are_not_in_order_cannot_be_marked_positionally() -> None:
    # %s marks take their arguments in order of appearance: $2 before $1 would swap them silently.
    with pytest.raises(ValueError, match=r"in order"):
        dbapi_form("select $2::text, $1::text")
    with pytest.raises(ValueError, match=r"in order"):
        dbapi_form("select $1::text, $1::text")
    assert dbapi_form("select 5 % $1::int") == "select 5 %% %s::int"


def test_a_job_spec_as_json_keeps_the_payload_text_as_it_is() -> None:
    run_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    spec = JobSpec("send", {"to": "é"}, queue_name="mail", run_at=run_at, max_attempts=3, job_key="k", priority=-1)
    assert job_spec_json_fields(spec) == ["send", '{"to":"é"}', "mail", run_at.isoformat(), 3, "k", -1, None]
    encoded = encode_spec_rows([job_spec_json_fields(spec), job_spec_json_fields(JobSpec("bare", flags=["a"]))])
    assert json.loads(encoded) == [
        ["send", '{"to":"é"}', "mail", "2026-01-02T03:04:05+00:00", 3, "k", -1, None],
        ["bare", "{}", None, None, None, None, None, ["a"]],
    ]
    assert "é" in encoded  # not escaped: the text goes to PostgreSQL as UTF-8


def test_a_batch_sends_what_its_jobs_share_once_per_shape() -> None:
    run_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    specs = [
        JobSpec("send", {"n": 1}, flags=["retry", "lane"], max_attempts=8),
        JobSpec("send", {"n": 2}, run_at=run_at, flags=("retry", "lane"), max_attempts=8),
        JobSpec("send", {"n": 3}, queue_name="mail", priority=-5),
        JobSpec("send", {"n": 4}, flags=[]),
        JobSpec("send", {"n": 5}, flags=["retry", "lane"], max_attempts=8),
    ]
    rows, shapes = insert_jobs_arguments(specs)
    assert json.loads(shapes) == [
        ["send", None, 8, None, {"retry": True, "lane": True}],
        ["send", "mail", None, -5, None],
        ["send", None, None, None, None],  # no flags stored for an empty list, as add_jobs stores none
    ]
    assert json.loads(rows) == [
        [0, '{"n":1}', None],
        [0, '{"n":2}', "2026-01-02T03:04:05+00:00"],
        [1, '{"n":3}', None],
        [2, '{"n":4}', None],
        [0, '{"n":5}', None],
    ]
