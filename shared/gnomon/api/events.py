"""Events and operators over HTTP (CONTRACT.md §4, §7): `POST /v1/events` (202),
`GET /v1/operators`, `GET /v1/operators/{definition}`, `POST /v1/operators/{definition}/restart`.
A Powertools router included by `gnomon.api.app`, so the app's edge applies unchanged."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from gnomon.api.common import mutate
from gnomon.api.errors import json_response
from gnomon.services.common import page_size
from gnomon.services.events import EventIn, RestartIn
from gnomon.wiring import services

router = APIGatewayHttpRouter()

PageSize = Annotated[str | None, Query(alias="page_size", description="1–1000, default 100")]
PageToken = Annotated[str | None, Query(description="opaque, from next_page_token")]


@router.post(
    "/v1/events",
    summary="Publish an event: each definition it triggers runs once for it, in order per key (202)",
    tags=["events"],
)
def publish_event(body: Annotated[EventIn, Body()]):
    return mutate(router.current_event, body, lambda: (202, services().events.publish(body)))


@router.get("/v1/operators", summary="Event-triggered definitions and their status", tags=["events"])
def list_operators(page_size_: PageSize = None, page_token: PageToken = None):
    return json_response(200, services().events.operators(page_token, page_size(page_size_)))


@router.get(
    "/v1/operators/<definition>",
    summary="An event-triggered definition: status, halted keys (error, since), busy keys",
    tags=["events"],
)
def get_operator(definition: str):
    return json_response(200, services().events.operator(definition))


@router.post(
    "/v1/operators/<definition>/restart",
    summary="Resume halted keys (all, or `key`) from their failed event",
    tags=["events"],
)
def restart_operator(definition: str, body: Annotated[RestartIn, Body()]):
    return mutate(router.current_event, body, lambda: (200, services().events.restart(definition, body.key)))
