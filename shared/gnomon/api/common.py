"""Edge helpers every router of the API shares: who is calling, `request_id` idempotency, and
query-string times. They take the current event, so `gnomon.api.app` and the routers it
includes use one copy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

from gnomon.api.errors import json_response
from gnomon.domain.errors import InvalidArgument
from gnomon.domain.model import Mutation
from gnomon.domain.timefmt import EARLIEST, LATEST
from gnomon.domain.timefmt import parse as parse_time
from gnomon.services.common import Caller
from gnomon.services.idempotency import run_once
from gnomon.wiring import services

DEV_PRINCIPAL = "anonymous"


def caller(event: BaseProxyEvent, identity: str | None) -> Caller:
    """The IAM principal (or JWT subject) of the request, with the `identity` it states."""
    ctx = event.raw_event.get("requestContext", {})
    auth = ctx.get("authorizer") or {}
    principal = (
        (auth.get("iam") or {}).get("userArn")
        or ((auth.get("jwt") or {}).get("claims") or {}).get("sub")
        or DEV_PRINCIPAL
    )
    return Caller(principal=principal, identity=identity)


def mutate(event: BaseProxyEvent, body: Mutation | None, action: Callable[[], tuple[int, Any]]) -> Response:
    """Run a mutating use case once per `request_id`; a replay answers 200 with the first body."""
    s = services()
    request_id = body.request_id if body is not None else None
    scope = f"{event.http_method} {event.path}"
    status, answer = run_once(s.requests, scope, request_id, event.json_body, s.clock.now(), action)
    return json_response(status, answer)


def query_time(name: str, raw: str | None, *, required: bool = False) -> datetime | None:
    """`?<name>=` as an RFC 3339 time with an offset (422 on `query.<name>` otherwise)."""
    if raw is None:
        if required:
            raise InvalidArgument(f"query.{name}", "required: an RFC 3339 time with an offset")
        return None
    try:
        t = parse_time(raw)
    except ValueError as exc:
        raise InvalidArgument(f"query.{name}", str(exc)) from None
    if not EARLIEST <= t < LATEST:
        raise InvalidArgument(f"query.{name}", "the time must lie between 1970-01-01 and 9000-01-01")
    return t
