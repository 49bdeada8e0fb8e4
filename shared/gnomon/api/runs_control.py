"""Run control over HTTP: cancel, terminate, signal, query, `GET /v1/stats`, and the purge of a
definition's runs. A Powertools router, included by `gnomon.api.app` (`app.include_router`),
so the app's edge — error mapping, unknown query parameters, body checks — applies unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import Field

from gnomon.api.common import caller, mutate
from gnomon.api.errors import json_response
from gnomon.domain.model import Doc64, Mutation
from gnomon.services.common import Caller, page_size
from gnomon.wiring import services

router = APIGatewayHttpRouter()

PageSize = Annotated[str | None, Query(alias="page_size", description="1–1000, default 100")]
PageToken = Annotated[str | None, Query(description="opaque, from next_page_token")]


class StopRequest(Mutation):
    reason: str | None = Field(None, max_length=4096, description="kept in error.message and history")


class SignalRequest(Mutation):
    name: str = Field(min_length=1, max_length=256)
    payload: Doc64 = None


class QueryRequest(Mutation):
    name: str = Field(min_length=1, max_length=256)
    args: Doc64 = None


# Edge helpers: gnomon.api.common.


def _caller(identity: str | None) -> Caller:
    return caller(router.current_event, identity)


def _mutate(body: Mutation, action: Callable[[], tuple[int, Any]]) -> Response:
    return mutate(router.current_event, body, action)


# --- runs ---------------------------------------------------------------------------------------


@router.post(
    "/v1/runs/<run_id>/cancel",
    summary="Cancel a run (a running one stays canceled; its late finish goes into history)",
    tags=["runs"],
)
def cancel_run(run_id: str, body: Annotated[StopRequest, Body()]):
    caller = _caller(body.identity)
    return _mutate(body, lambda: (200, services().runs.cancel(run_id, body.reason, caller)))


@router.post("/v1/runs/<run_id>/terminate", summary="Terminate a run at once", tags=["runs"])
def terminate_run(run_id: str, body: Annotated[StopRequest, Body()]):
    caller = _caller(body.identity)
    return _mutate(body, lambda: (200, services().runs.terminate(run_id, body.reason, caller)))


@router.post(
    "/v1/runs/<run_id>/signal",
    summary="Append a signal to the run's inbox (newest 100 / 64 KB kept)",
    tags=["runs"],
)
def signal_run(run_id: str, body: Annotated[SignalRequest, Body()]):
    return _mutate(body, lambda: (200, services().runs.signal(run_id, body.name, body.payload)))


@router.post("/v1/runs/<run_id>/query", summary="The run's latest heartbeat details", tags=["runs"])
def query_run(run_id: str, body: Annotated[QueryRequest, Body()]):
    return json_response(200, services().runs.query(run_id, body.name, body.args))


@router.delete(
    "/v1/definitions/<name>/runs",
    summary="Purge a definition's closed runs, one bounded page per call",
    tags=["runs"],
)
def purge_runs(name: str, page_size_: PageSize = None, page_token: PageToken = None):
    answer = services().runs.purge(name, page_token, page_size(page_size_))
    return json_response(200, answer)


# --- stats --------------------------------------------------------------------------------------


@router.get("/v1/stats", summary="Running and pending runs, and today's closes", tags=["operations"])
def stats(
    timezone: Annotated[str | None, Query(description="IANA zone, default UTC")] = None,
    definition: Annotated[str | None, Query()] = None,
):
    return json_response(200, services().stats.today(timezone, definition))  # Services.stats: Stats
