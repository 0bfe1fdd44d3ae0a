"""encode_payload: objects and arrays become compact JSON; anything a handler could not sensibly get is refused."""

from __future__ import annotations

import json
import math
from typing import Any

import pydantic
import pytest

from backfill.core.errors import JobSpecError
from backfill.core.jobs import decode_json, encode_payload


class Invoice(pydantic.BaseModel):
    number: int
    amount: float
    tags: list[str] = []


def test_none_becomes_an_empty_object() -> None:
    assert encode_payload(None) == "{}"


def test_dict_is_compact_json_in_insertion_order() -> None:
    assert encode_payload({"b": 1, "a": [1, 2], "c": {"d": None}}) == '{"b":1,"a":[1,2],"c":{"d":null}}'


def test_list_and_tuple_are_arrays() -> None:
    # Arrays are batch-job payloads: keyed jobs concatenate them.
    assert encode_payload([{"id": 1}, {"id": 2}]) == '[{"id":1},{"id":2}]'
    assert encode_payload(("a", "b")) == '["a","b"]'


def test_pydantic_model_is_dumped_in_json_mode() -> None:
    assert json.loads(encode_payload(Invoice(number=7, amount=1.5, tags=["x"]))) == {
        "number": 7,
        "amount": 1.5,
        "tags": ["x"],
    }


def test_unicode_survives() -> None:
    assert decode_json(encode_payload({"name": "Zoë 🚀"})) == {"name": "Zoë 🚀"}


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(value: float) -> None:
    # JSON has no NaN/Infinity; PostgreSQL's json type would reject the text anyway, mid-batch.
    with pytest.raises(JobSpecError, match="not JSON-serialisable") as caught:
        encode_payload({"x": [value]})
    assert caught.value.field == "payload"


@pytest.mark.parametrize("value", [0, 1.5, "text", True, b"bytes", {1, 2}, Invoice])
def test_scalars_and_other_types_are_refused(value: Any) -> None:
    with pytest.raises(JobSpecError, match="must be a dict, a list or a pydantic model") as caught:
        encode_payload(value)
    assert caught.value.field == "payload"


def test_unserialisable_member_is_refused_with_the_given_field_name() -> None:
    with pytest.raises(JobSpecError) as caught:
        encode_payload({"when": object()}, field_name="specs[3].payload")
    assert caught.value.field == "specs[3].payload"


def test_decode_json_accepts_text_or_decoded_values() -> None:
    assert decode_json('{"a":1}') == {"a": 1}
    assert decode_json({"a": 1}) == {"a": 1}
    assert decode_json(None) is None


def test_a_payload_that_contains_itself_is_refused() -> None:
    looped: dict[str, Any] = {"a": 1}
    looped["self"] = looped
    with pytest.raises(JobSpecError) as caught:
        encode_payload(looped)
    assert caught.value.field == "payload"
    assert "contains itself" in str(caught.value)


def test_a_payload_refused_half_way_is_accepted_once_fixed() -> None:
    # The shared encoder must keep nothing of a failed call: the same dict, fixed, encodes.
    inner: dict[str, Any] = {"n": 1}
    payload: dict[str, Any] = {"inner": inner, "bad": object()}
    with pytest.raises(JobSpecError):
        encode_payload(payload)
    del payload["bad"]
    assert encode_payload(payload) == '{"inner":{"n":1}}'
    assert encode_payload([inner, inner]) == '[{"n":1},{"n":1}]'  # the same object twice is no loop


@pytest.mark.parametrize(
    "payload",
    [
        {"s": 'quote " backslash \\ tab \t nul \x00 é 😀 \u2028', "f": [0.1, -0.0, 1e300, 12345678901234567890]},
        {1: "int key", 2.5: "float key", False: "bool key", None: "null key"},
        [[], {}, [[[]]], (1, 2), {"nested": ({"t": (1,)},)}],
    ],
)
def test_text_is_what_the_standard_encoder_writes(payload: Any) -> None:
    assert encode_payload(payload) == json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


class Signup(pydantic.BaseModel):
    email_address: str = pydantic.Field(alias="emailAddress")


def test_a_model_with_aliases_is_dumped_as_it_validates() -> None:
    # Pydantic validates by alias: dumped by field name, the payload would fail the worker's validation.
    text = encode_payload(Signup(emailAddress="ada@example.com"))

    assert decode_json(text) == {"emailAddress": "ada@example.com"}
    assert Signup.model_validate(decode_json(text)).email_address == "ada@example.com"
