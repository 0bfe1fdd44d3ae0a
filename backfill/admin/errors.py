"""The admin API's error answers: a status, the field at fault (when one is), and a sentence naming the problem."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Answered as ``{"error": {"status", "field", "message"}}`` with ``status``; nothing was changed."""

    def __init__(self, status: int, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"status": self.status, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


def bad_request(field: str, message: str) -> ApiError:
    return ApiError(400, f"{field}: {message}", field=field)


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")
