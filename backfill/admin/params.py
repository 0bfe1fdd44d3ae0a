"""Reading a request's query parameters and JSON body: each value checked, and a 400 naming the field otherwise.

Limits live here too: the largest page (:data:`MAX_PAGE`), the most rows one bulk action may touch
(:data:`MAX_BULK`), the largest body (:data:`MAX_BODY_BYTES`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from starlette.requests import Request

from backfill.admin.errors import ApiError, bad_request
from backfill.core.extension import BIGINT_MAX, SMALLINT_MAX, SMALLINT_MIN, is_aware

E = TypeVar("E", bound=Enum)

MAX_PAGE = 500  # rows per page of a listing
DEFAULT_PAGE = 50
MAX_BULK = 10_000  # rows one bulk action may touch; more needs another request (a filter narrows, or repeat)
MAX_BODY_BYTES = 1024 * 1024
MAX_TEXT = 1000  # a reason, a note, a filter's text


def query_int(request: Request, name: str, *, default: int | None, low: int, high: int) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise bad_request(name, f"must be an integer, got {text[:40]!r}") from None
    return check_range(name, value, low, high)


def page_size(request: Request) -> int:
    value = query_int(request, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
    assert value is not None
    return value


def query_text(request: Request, name: str) -> str | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    return check_text(name, text)


def query_enum(request: Request, name: str, kind: type[E]) -> E | None:
    text = request.query_params.get(name)
    return None if text is None or text == "" else to_enum(name, text, kind)


def query_time(request: Request, name: str) -> datetime | None:
    text = request.query_params.get(name)
    return None if text is None or text == "" else to_time(name, text)


def query_bool(request: Request, name: str) -> bool:
    text = (request.query_params.get(name) or "").lower()
    if text in ("", "0", "false", "no"):
        return False
    if text in ("1", "true", "yes"):
        return True
    raise bad_request(name, f"must be true or false, got {text[:20]!r}")


def path_id(request: Request, name: str = "id") -> int:
    text = str(request.path_params[name])
    try:
        value = int(text)
    except ValueError:
        raise bad_request(name, f"must be a positive integer, got {text[:40]!r}") from None
    return check_range(name, value, 1, BIGINT_MAX)


async def json_body(request: Request) -> dict[str, Any]:
    """The body, a JSON object of at most MAX_BODY_BYTES (an empty body reads as ``{}``)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise ApiError(413, f"body: larger than {MAX_BODY_BYTES} bytes", field="body")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, f"body: larger than {MAX_BODY_BYTES} bytes", field="body")
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise bad_request("body", f"is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise bad_request("body", f"must be a JSON object, got {type(value).__name__}")
    return value


def known_fields(body: Mapping[str, Any], allowed: set[str]) -> None:
    """A field the endpoint does not take is refused rather than ignored (a typo would do nothing silently)."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad_request(unknown[0], f"unknown field; this endpoint takes {', '.join(sorted(allowed)) or 'none'}")


def body_int(body: Mapping[str, Any], name: str, *, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_request(name, f"must be an integer, got {type(value).__name__}")
    return check_range(name, value, low, high)


def body_priority(body: Mapping[str, Any], name: str = "priority") -> int | None:
    return body_int(body, name, low=SMALLINT_MIN, high=SMALLINT_MAX)


def body_text(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(name, f"must be a string, got {type(value).__name__}")
    return check_text(name, value)


def body_bool(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise bad_request(name, f"must be true or false, got {type(value).__name__}")
    return value


def body_time(body: Mapping[str, Any], name: str) -> datetime | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(name, "must be an ISO 8601 time with a UTC offset, as a string")
    return to_time(name, value)


def body_ids(body: Mapping[str, Any], name: str = "ids") -> list[int] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise bad_request(name, f"must be a list of ids, got {type(value).__name__}")
    if len(value) > MAX_BULK:
        raise bad_request(name, f"at most {MAX_BULK} ids per request, got {len(value)}")
    for item in value:
        if not isinstance(item, int) or isinstance(item, bool) or not 1 <= item <= BIGINT_MAX:
            raise bad_request(name, f"{item!r} is not an id (a positive 64-bit integer)")
    return value


def body_object(body: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request(name, f"must be a JSON object, got {type(value).__name__}")
    return value


def check_range(name: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise bad_request(name, f"must be from {low} to {high}, got {value}")
    return value


def check_text(name: str, value: str) -> str:
    if len(value) > MAX_TEXT:
        raise bad_request(name, f"at most {MAX_TEXT} characters, got {len(value)}")
    if "\x00" in value:
        raise bad_request(name, "must not contain NUL characters")
    return value


def to_enum(name: str, text: str, kind: type[E]) -> E:
    try:
        return kind(text)
    except ValueError:
        known = ", ".join(str(member.value) for member in kind)
        raise bad_request(name, f"must be one of {known}, got {text[:40]!r}") from None


def to_time(name: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(name, f"is not an ISO 8601 time, got {text[:40]!r}") from None
    if not is_aware(value):
        raise bad_request(name, f"needs a UTC offset (e.g. {text}Z), got {text[:40]!r}")
    return value
