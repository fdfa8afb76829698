"""The pieces the OpenAPI document is built of (:mod:`~electives.web.openapi` and the advisor's part,
:mod:`~electives.web.advisor_openapi`): schemas, references and answers, each a new dict."""

from __future__ import annotations

from typing import Any


def string_schema(max_chars: int, description: str, example: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": max_chars, "description": description}
    if example is not None:
        out["example"] = example
    return out


def error_answer(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out = json_answer(description, ref("Error"))
    if headers:
        out["headers"] = headers
    return out


def nullable(type_: str) -> dict[str, Any]:
    # A new dict each time: a caller may change the document it gets without changing the next one.
    return {"type": type_, "nullable": True}


def ref(schema: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{schema}"}


def json_answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A response with a JSON body of ``schema``."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def get_path(operation_id: str, summary: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A GET path with one 200 answer."""
    return {
        "get": {"operationId": operation_id, "summary": summary, "responses": {"200": json_answer(description, schema)}}
    }


def rate_limited_answer() -> dict[str, Any]:
    return error_answer(
        "too many requests from this address (per worker process)",
        {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}},
    )
