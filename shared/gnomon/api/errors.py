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
