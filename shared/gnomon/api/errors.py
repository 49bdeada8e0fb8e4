"""The edge: every error becomes the contract's shape here, and only here (CONTRACT.md §3)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from gnomon.domain.errors import BadRequest, GnomonError, InvalidArgument

logger = Logger(service="gnomon")


def json_response(status: int, body: Any) -> Response:
    """A JSON answer (204 has no body)."""
    if status == 204:
        return Response(status_code=204, content_type=None, body="")
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
    )


def error_response(err: GnomonError) -> Response:
    return json_response(err.status, err.body())


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """`("body", "spec", "cron", 0)` → `spec.cron[0]`; `("query", "x")` → `query.x`."""
    parts: list[str] = []
    items = list(loc)
    if items and items[0] == "body":
        items = items[1:]
    for item in items:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif (
            isinstance(item, str) and "[" not in item and not item.startswith(("function-after", "function-"))
        ):
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "body"


def validation_error(exc: RequestValidationError) -> GnomonError:
    """Pydantic's errors as one 422 `invalid_argument` listing every field (JSON errors → 400)."""
    details: list[dict[str, str]] = []
    for e in exc.errors():
        if e.get("type") == "json_invalid":
            return BadRequest("the body is not valid JSON")
        loc = tuple(e.get("loc", ()))
        # A discriminated union reports the chosen tag in loc ("target", "http", "url"): drop it.
        loc = tuple(
            p
            for i, p in enumerate(loc)
            if not (i > 0 and loc[i - 1] == "target" and isinstance(p, str) and p != "type")
        )
        if e.get("type") == "extra_forbidden":
            msg = "unknown field"
        else:
            msg = str(e.get("msg", "invalid value")).removeprefix("Value error, ")
        details.append({"field": field_path(loc), "message": msg})
    if not details:
        details = [{"field": "body", "message": "invalid request"}]
    return InvalidArgument.many(details)


ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "description": "Every error gnomon answers (CONTRACT.md §3).",
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {
                    "description": "an object; for invalid_argument a list of {field, message}",
                    "anyOf": [
                        {"type": "object"},
                        {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["field", "message"],
                                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                            },
                        },
                    ],
                },
            },
        }
    },
}


ERROR_STATUSES = {
    "400": "bad_request, invalid_page_token",
    "403": "forbidden",
    "404": "not_found",
    "405": "method_not_allowed",
    "409": "already_exists, conflict, already_closed, already_done, wrong_owner, lease_expired, in_use",
    "413": "payload_too_large",
    "415": "unsupported_media_type",
    "422": "invalid_argument",
    "429": "rate_limited",
}
NO_CONTENT = ("/reserve",)  # besides every DELETE: 204 when nothing is ready


def document_errors(doc: dict[str, Any]) -> dict[str, Any]:
    """The generated OpenAPI document, with the statuses and error shape gnomon really answers:
    Powertools documents every success as 200 and its own 422 body (`HTTPValidationError`), which
    the exception handlers replace with the contract's `Error`."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR_SCHEMA
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            ok = responses.get("200", {"description": "Successful Response"})
            if method == "delete":
                responses.pop("200", None)
            if method == "delete" or path.endswith(NO_CONTENT):
                responses["204"] = {"description": "No Content"}
            if method == "post":  # creates answer 201, replays 200
                responses["201"] = {**ok, "description": "Created"}
            for status, codes in ERROR_STATUSES.items():
                responses[status] = {"description": codes, "content": error}
    return doc
