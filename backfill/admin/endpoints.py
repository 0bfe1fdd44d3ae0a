"""The API as data: each endpoint's method, path, handler, parameters and body, from which the routes and the
OpenAPI description are both made, so the description cannot drift from what is served."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from starlette.requests import Request

    from backfill.admin.context import AdminContext

Handler = Callable[["Request", "AdminContext"], Awaitable[Any]]
JsonSchema = dict[str, Any]

INTEGER: JsonSchema = {"type": "integer"}
STRING: JsonSchema = {"type": "string"}
BOOLEAN: JsonSchema = {"type": "boolean"}
TIME: JsonSchema = {"type": "string", "format": "date-time"}
IDS: JsonSchema = {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": 10_000}


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    schema: JsonSchema
    description: str
    where: Literal["query", "path"] = "query"


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    summary: str
    handler: Handler
    tag: str
    params: tuple[Param, ...] = ()
    body: JsonSchema | None = None  # the JSON object a write takes (its properties)
    writes: bool = False
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


ID = Param("id", {"type": "integer", "minimum": 1}, "the id", where="path")
LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "page size")


def body_of(properties: dict[str, JsonSchema], *, required: Sequence[str] = ()) -> JsonSchema:
    schema: JsonSchema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def openapi(endpoints: Sequence[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    """An OpenAPI 3.1 description of ``endpoints``."""
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        operation: dict[str, Any] = {
            "summary": endpoint.summary,
            "tags": [endpoint.tag],
            "operationId": _operation_id(endpoint),
            "parameters": [
                {
                    "name": param.name,
                    "in": param.where,
                    "required": param.where == "path",
                    "description": param.description,
                    "schema": param.schema,
                }
                for param in endpoint.params
            ],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {}}},
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "403": {"$ref": "#/components/responses/Error"},
            },
        }
        if endpoint.description:
            operation["description"] = endpoint.description
        if endpoint.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": endpoint.body}},
            }
        if endpoint.writes:
            operation["responses"]["415"] = {"$ref": "#/components/responses/Error"}
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {
                    "description": "The request was refused; nothing was changed",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "error": {
                                        "type": "object",
                                        "properties": {"status": INTEGER, "message": STRING, "field": STRING},
                                        "required": ["status", "message"],
                                    }
                                },
                            }
                        }
                    },
                }
            },
        },
        "security": [{"bearer": []}],
    }


def _operation_id(endpoint: Endpoint) -> str:
    """``get_api_jobs_id`` for ``GET /api/jobs/{id}``: unique per method and path."""
    path = endpoint.path.strip("/").replace("/", "_").replace("{", "").replace("}", "")
    return f"{endpoint.method.lower()}_{path}"
