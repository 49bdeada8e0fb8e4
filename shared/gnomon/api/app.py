"""The management HTTP API: Powertools `APIGatewayHttpResolver` over the services.

Routes are thin: validate (pydantic, through Powertools), call a use case, shape the answer.
Errors are mapped once, in `gnomon.api.errors`. The checks Powertools cannot express — body size,
media type, JSON-ness, unknown query parameters, 405 — happen at the edge in `lambda_handler`.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from pydantic import Field

from gnomon import __version__, console
from gnomon.api.access import enforce_groups
from gnomon.api.admin import router as admin_router
from gnomon.api.common import caller, mutate, query_time
from gnomon.api.errors import document_errors, error_response, json_response, logger, validation_error
from gnomon.domain.errors import (
    BadRequest,
    GnomonError,
    InvalidArgument,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from gnomon.domain.model import (
    ID_RE,
    NAME_RE,
    DefinitionBody,
    DefinitionReplace,
    Doc64,
    Id,
    Map64,
    Mutation,
    OverlapPolicy,
    PreviewRequest,
    ScheduleCreate,
    ScheduleUpdate,
)
from gnomon.domain.timefmt import Instant
from gnomon.ports import Outcome
from gnomon.services.common import Caller, page_size
from gnomon.wiring import configure_network_policy, services

MAX_BODY = 256 * 1024

app = APIGatewayHttpResolver(enable_validation=True)
configure_network_policy()  # request bodies are validated before any use case runs

PageSize = Annotated[str | None, Query(alias="page_size", description="1–1000, default 100")]
PageToken = Annotated[str | None, Query(description="opaque, from next_page_token")]


# --- edge ---------------------------------------------------------------------------------------


@app.exception_handler(GnomonError)
def _gnomon_error(exc: GnomonError) -> Response:
    return error_response(exc)


@app.exception_handler(RequestValidationError)
def _validation_error(exc: RequestValidationError) -> Response:
    return error_response(validation_error(exc))


@app.exception_handler(NotFoundError)
def _not_found(exc: NotFoundError) -> Response:
    event = app.current_event
    path, method = event.path, event.http_method.upper()
    others = {r.method for r in app._static_routes + app._dynamic_routes if r.rule.match(path)}
    if others and method not in others:
        return error_response(
            MethodNotAllowed(f"{method} is not allowed on {path}", {"allowed": sorted(others)})
        )
    return error_response(NotFound(f"route/{method} {path}", f"no route for {method} {path}"))


# Query filters that name a resource: checked here, so an empty or malformed value is a 422 and
# never reaches a store (DynamoDB refuses an empty key value with a 500-shaped error).
_NAME_QUERY = frozenset({"group", "definition", "schedule", "topic", "sub_topic", "tag"})
_ID_QUERY = frozenset({"task_group_id", "run_id"})
_NAME_FORMAT = re.compile(NAME_RE)
_ID_FORMAT = re.compile(ID_RE)


def _unknown_query(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
    """Unknown query parameters are 422 (a typo is never silently dropped), and so are resource
    names and ids in the query that could never exist."""
    route = app.context.get("_route")
    if route is not None:
        known = {p.alias or p.name for p in route.dependant.query_params}
        for name, value in (app.current_event.query_string_parameters or {}).items():
            if name not in known:
                raise InvalidArgument(f"query.{name}", "unknown query parameter")
            if name in _NAME_QUERY and not _NAME_FORMAT.match(value):
                raise InvalidArgument(f"query.{name}", f"must match {NAME_RE}")
            if name in _ID_QUERY and not _ID_FORMAT.match(value):
                raise InvalidArgument(f"query.{name}", f"must match {ID_RE}")
    return next_middleware(app)


app.use(middlewares=[_unknown_query, enforce_groups])


def _edge_checks(event: dict[str, Any]) -> GnomonError | None:
    """Body size, media type and JSON-ness, before routing; an empty action body counts as {}."""
    method = event.get("requestContext", {}).get("http", {}).get("method", "GET").upper()
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
    if len(body) > MAX_BODY:
        return PayloadTooLarge("the body is larger than 256 KB")
    if method not in ("POST", "PUT", "PATCH"):
        return None
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    if not body.strip():
        event["body"], event["isBase64Encoded"] = "{}", False
        headers["content-type"] = "application/json"
        event["headers"] = headers
        return None
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        return UnsupportedMediaType("send the body as application/json")
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return BadRequest("the body is not valid JSON")
    if not isinstance(parsed, dict):
        return BadRequest("the body must be a JSON object")
    event["body"], event["isBase64Encoded"] = body.decode(), False
    headers["content-type"] = "application/json"
    event["headers"] = headers
    return None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway HTTP API (payload v2) entry point."""
    if console.is_console_path(str(event.get("rawPath") or "")):
        return console.handle(event)  # the web console's static files (gnomon.console)
    err = _edge_checks(event)
    if err is not None:
        resp = error_response(err)
        return {
            "statusCode": resp.status_code,
            "headers": {"Content-Type": "application/json"},
            "body": resp.body,
        }
    return app.resolve(event, context)


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    logger.exception("unhandled error")
    return json_response(500, {"error": {"code": "internal", "message": "internal error", "details": {}}})


# --- helpers ------------------------------------------------------------------------------------


def _caller(identity: str | None) -> Caller:
    return caller(app.current_event, identity)


def _mutate(body: Mutation | None, action: Callable[[], tuple[int, Any]]) -> Response:
    return mutate(app.current_event, body, action)


def _flag(name: str, raw: str | None) -> bool | None:
    if raw is None:
        return None
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise InvalidArgument(f"query.{name}", "must be true or false")


# --- health and docs ----------------------------------------------------------------------------


@app.get("/v1/health", summary="Health", tags=["meta"])
def health():
    body: dict[str, Any] = {"status": "ok", "version": __version__}
    if endpoint := os.environ.get("GNOMON_DEV_AWS_ENDPOINT"):
        body["aws_endpoint"] = endpoint
    return json_response(200, body)


@app.get("/v1/openapi.json", summary="The OpenAPI 3.1 document of this API", tags=["meta"])
def openapi():
    doc = document_errors(json.loads(app.get_openapi_json_schema(title="gnomon", version=__version__)))
    return json_response(200, doc)


# --- definitions --------------------------------------------------------------------------------


@app.post("/v1/definitions", summary="Create a definition", tags=["definitions"])
def create_definition(body: Annotated[DefinitionBody, Body()]):
    return _mutate(body, lambda: (201, services().definitions.create(body, _caller(body.identity))))


@app.get("/v1/definitions", summary="List definitions, sorted by name", tags=["definitions"])
def list_definitions(
    tag: Annotated[str | None, Query()] = None, page_size_: PageSize = None, page_token: PageToken = None
):
    return json_response(
        200, services().definitions.list(tag=tag, page_token=page_token, page_size=page_size(page_size_))
    )


@app.get("/v1/definitions/<name>", summary="Describe a definition", tags=["definitions"])
def get_definition(name: str):
    return json_response(200, services().definitions.get(name))


@app.put(
    "/v1/definitions/<name>", summary="Replace a definition (version: precondition)", tags=["definitions"]
)
def replace_definition(name: str, body: Annotated[DefinitionReplace, Body()]):
    return _mutate(body, lambda: (200, services().definitions.replace(name, body, _caller(body.identity))))


@app.delete(
    "/v1/definitions/<name>",
    summary="Delete a definition (409 in_use while schedules use it)",
    tags=["definitions"],
)
def delete_definition(name: str):
    services().definitions.delete(name)
    return json_response(204, None)


@app.get("/v1/definitions/<name>/versions", summary="Every version, newest first", tags=["definitions"])
def definition_versions(name: str, page_size_: PageSize = None, page_token: PageToken = None):
    return json_response(
        200, services().definitions.versions(name, page_token=page_token, page_size=page_size(page_size_))
    )


# --- schedules ----------------------------------------------------------------------------------


class PauseRequest(Mutation):
    note: str | None = Field(None, max_length=4096, description='default "paused"')
    until: Instant | None = Field(None, description="unpause by itself then (catch_up none)")


class UnpauseRequest(Mutation):
    note: str | None = Field(None, max_length=4096, description='default "unpaused"')
    catch_up: Literal["none", "latest", "all"] = "none"


@app.post("/v1/schedules", summary="Create a schedule", tags=["schedules"])
def create_schedule(body: Annotated[ScheduleCreate, Body()]):
    return _mutate(body, lambda: (201, services().schedules.create(body, _caller(body.identity))))


@app.get("/v1/schedules", summary="List schedules, sorted by id", tags=["schedules"])
def list_schedules(
    group: Annotated[str | None, Query()] = None,
    definition: Annotated[str | None, Query()] = None,
    paused: Annotated[str | None, Query(description="true | false")] = None,
    tag: Annotated[str | None, Query()] = None,
    page_size_: PageSize = None,
    page_token: PageToken = None,
):
    answer = services().schedules.list(
        group=group,
        definition=definition,
        paused=_flag("paused", paused),
        tag=tag,
        page_token=page_token,
        page_size=page_size(page_size_),
    )
    return json_response(200, answer)


@app.post("/v1/schedules/preview", summary="Next nominal times of a spec", tags=["schedules"])
def preview_schedule(body: Annotated[PreviewRequest, Body()]):
    return json_response(200, services().schedules.preview(body))


@app.get("/v1/schedules/<schedule_id>", summary="Describe a schedule", tags=["schedules"])
def describe_schedule(schedule_id: str):
    return json_response(200, services().schedules.describe(schedule_id))


@app.put(
    "/v1/schedules/<schedule_id>",
    summary="Update a schedule (conflict_token: precondition)",
    tags=["schedules"],
)
def update_schedule(schedule_id: str, body: Annotated[ScheduleUpdate, Body()]):
    return _mutate(
        body, lambda: (200, services().schedules.update(schedule_id, body, _caller(body.identity)))
    )


@app.delete("/v1/schedules/<schedule_id>", summary="Delete a schedule", tags=["schedules"])
def delete_schedule(schedule_id: str):
    services().schedules.delete(schedule_id)
    return json_response(204, None)


@app.post("/v1/schedules/<schedule_id>/pause", summary="Pause a schedule", tags=["schedules"])
def pause_schedule(schedule_id: str, body: Annotated[PauseRequest, Body()]):
    caller = _caller(body.identity)
    return _mutate(
        body, lambda: (200, services().schedules.pause(schedule_id, body.note, body.until, caller))
    )


@app.post("/v1/schedules/<schedule_id>/unpause", summary="Unpause a schedule", tags=["schedules"])
def unpause_schedule(schedule_id: str, body: Annotated[UnpauseRequest, Body()]):
    caller = _caller(body.identity)
    return _mutate(
        body, lambda: (200, services().schedules.unpause(schedule_id, body.note, body.catch_up, caller))
    )


# --- runs ---------------------------------------------------------------------------------------


class ExecuteRequest(Mutation):
    input: Doc64 = Field(default_factory=dict)
    run_id: Id | None = None
    memo: Map64 | None = None


class CompleteRequest(Mutation):
    callback_token: str = Field(min_length=1, max_length=512)
    result: Doc64 = None


class FailRequest(Mutation):
    callback_token: str = Field(min_length=1, max_length=512)
    error: Doc64


class RetryRequest(Mutation):
    pass


@app.post("/v1/definitions/<name>/execute", summary="Run a definition now", tags=["runs"])
def execute_definition(name: str, body: Annotated[ExecuteRequest, Body()]):
    return _mutate(body, lambda: services().runs.execute(name, body.input, body.run_id, body.memo))


@app.get("/v1/runs", summary="List runs, newest nominal time first", tags=["runs"])
def list_runs(
    definition: Annotated[str | None, Query()] = None,
    schedule: Annotated[str | None, Query()] = None,
    status: Annotated[list[str] | None, Query(description="repeatable")] = None,
    from_: Annotated[str | None, Query(alias="from", description="RFC 3339, inclusive")] = None,
    to: Annotated[str | None, Query(description="RFC 3339, exclusive")] = None,
    page_size_: PageSize = None,
    page_token: PageToken = None,
):
    statuses = [s for raw in status or [] for s in raw.split(",") if s]
    answer = services().runs.list(
        definition=definition,
        schedule=schedule,
        statuses=statuses or None,
        start=_time("from", from_),
        end=_time("to", to),
        page_token=page_token,
        page_size=page_size(page_size_),
    )
    return json_response(200, answer)


@app.get("/v1/runs/<run_id>", summary="One run", tags=["runs"])
def get_run(run_id: str):
    return json_response(200, services().runs.get(run_id))


@app.get("/v1/runs/<run_id>/history", summary="Attempts and events of a run", tags=["runs"])
def run_history(
    run_id: str, max_events: Annotated[str | None, Query(description="default 500, 0 = all")] = None
):
    n = 500
    if max_events is not None:
        try:
            n = int(max_events)
        except ValueError:
            raise InvalidArgument("query.max_events", "must be an integer ≥ 0") from None
        if n < 0:
            raise InvalidArgument("query.max_events", "must be an integer ≥ 0")
    return json_response(200, services().runs.history(run_id, n))


@app.post("/v1/runs/<run_id>/retry", summary="Give a closed, unsuccessful run a new attempt", tags=["runs"])
def retry_run(run_id: str, body: Annotated[RetryRequest, Body()]):
    return _mutate(body, lambda: (200, services().runs.retry(run_id)))


@app.post("/v1/runs/<run_id>/complete", summary="Finish an accepted (202) attempt", tags=["runs"])
def complete_run(run_id: str, body: Annotated[CompleteRequest, Body()]):
    outcome = Outcome(status="completed", result=body.result)
    return _mutate(body, lambda: (200, services().runs.callback(run_id, body.callback_token, outcome)))


@app.post("/v1/runs/<run_id>/fail", summary="Fail an accepted (202) attempt", tags=["runs"])
def fail_run(run_id: str, body: Annotated[FailRequest, Body()]):
    error = body.error if isinstance(body.error, dict) else {"code": "failed", "message": str(body.error)}
    outcome = Outcome(status="failed", error=error)
    return _mutate(body, lambda: (200, services().runs.callback(run_id, body.callback_token, outcome)))


def _time(name: str, raw: str | None) -> datetime | None:
    return query_time(name, raw)


class TriggerRequest(Mutation):
    overlap: OverlapPolicy | None = None
    input: Doc64 = None
    idempotency_key: Id | None = None


@app.post("/v1/schedules/<schedule_id>/trigger", summary="Run a schedule's action now", tags=["schedules"])
def trigger_schedule(schedule_id: str, body: Annotated[TriggerRequest, Body()]):
    overlap = body.overlap.value if body.overlap else None
    return _mutate(
        body, lambda: services().runs.trigger(schedule_id, overlap, body.input, body.idempotency_key)
    )


# --- operations ---------------------------------------------------------------------------------


class RedriveRequest(Mutation):
    max_messages: int = Field(100, ge=1, le=10_000)


@app.get("/v1/dlq", summary="Dead-lettered firing messages with their reason", tags=["operations"])
def list_dlq(page_size_: PageSize = None):
    return json_response(200, services().ops.dead_letters(page_size(page_size_)))


@app.post("/v1/dlq/redrive", summary="Move dead letters back to the firing queue", tags=["operations"])
def redrive_dlq(body: Annotated[RedriveRequest, Body()]):
    return _mutate(body, lambda: (200, services().ops.redrive(body.max_messages)))


@app.get(
    "/v1/metrics/lateness",
    summary="Start lateness percentiles per time bucket (and, on request, firings by day and hour, run durations)",
    tags=["operations"],
)
def lateness_metrics(
    schedule: Annotated[str | None, Query()] = None,
    definition: Annotated[str | None, Query()] = None,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: Annotated[str | None, Query()] = None,
    bucket_seconds: Annotated[str | None, Query(description="default 60")] = None,
    include: Annotated[
        list[str] | None,
        Query(
            description="repeatable or comma-separated, optional: `firings` adds `firings` — the "
            "window's runs counted by day of week and hour of their nominal time in `timezone` "
            "(`by_day_hour[d][h]`, d = 0 Monday … 6 Sunday, h = 0 … 23) and by status; "
            "`durations` adds `durations` — a histogram of the closed runs' `duration_ms` in "
            "log-spaced bins (1-2-5 ms … 5 000 s, `upper_ms` exclusive, null on the last), "
            "with p50/p95/max. Both come from the runs the percentiles read (`truncated` "
            "applies to them too), never from whole run documents."
        ),
    ] = None,
    timezone: Annotated[str | None, Query(description="IANA zone of `firings`, default UTC")] = None,
):
    try:
        bucket = int(bucket_seconds) if bucket_seconds is not None else 60
    except ValueError:
        raise InvalidArgument("query.bucket_seconds", "must be an integer ≥ 1") from None
    answer = services().ops.lateness(
        schedule=schedule,
        definition=definition,
        start=_time("from", from_),
        end=_time("to", to),
        bucket_seconds=bucket,
        include=[part for raw in include or [] for part in raw.split(",") if part],
        timezone=timezone,
    )
    return json_response(200, answer)


class BackfillBody(Mutation):
    start: Instant
    end: Instant = Field(description="inclusive")
    overlap: OverlapPolicy | None = Field(None, description="default the schedule's policy")
    dry_run: bool = False


@app.post(
    "/v1/schedules/<schedule_id>/backfill",
    summary="Run the action for the fire times of a range (backfill)",
    tags=["schedules"],
)
def backfill_schedule(schedule_id: str, body: Annotated[BackfillBody, Body()]):
    overlap = body.overlap.value if body.overlap else None
    return _mutate(
        body,
        lambda: services().schedules.backfill(
            schedule_id, body.start, body.end, overlap, dry_run=body.dry_run
        ),
    )


# --- the other areas' routers (after every route above) ----------------------------------------

app.include_router(admin_router)

# tasks (CONTRACT.md §8): gnomon.api.tasks imports this module's helpers lazily
from gnomon.api.tasks import router as tasks_router  # noqa: E402

app.include_router(tasks_router)


# --- run control (cancel, terminate, signal, query, purge) and stats ---------------------------

from gnomon.api.runs_control import router as runs_control_router  # noqa: E402

app.include_router(runs_control_router)


# --- events and operators (CONTRACT.md §7) ------------------------------------------------------

from gnomon.api.events import router as events_router  # noqa: E402

app.include_router(events_router)
