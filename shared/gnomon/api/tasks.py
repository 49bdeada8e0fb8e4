"""The task endpoints of the HTTP API (CONTRACT.md §4 and §8): a Powertools router that
`gnomon.api.app` includes (`app.include_router(router)`, at the end of app.py).

Routes are thin, like app.py's: the body is validated by its pydantic model (unknown fields →
422), one call to the task use cases (`gnomon.services.tasks`), the answer shaped with
`json_response`; domain errors are mapped by app.py's exception handlers. app.py's helpers
(`_mutate` for `request_id` idempotency, `_caller`, `_time`) are imported inside the functions:
app.py imports this module at its end, so a module-level import of app.py here would be circular.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import Field

from gnomon.api.common import caller, mutate, query_time
from gnomon.api.errors import json_response
from gnomon.domain.model import Doc64, Id, Mutation, Name
from gnomon.domain.tasks import DEFAULT_MAX_ATTEMPTS, MAX_LEASE_SECONDS
from gnomon.domain.timefmt import Instant
from gnomon.services.common import Caller, page_size
from gnomon.services.tasks import Tasks, tasks_service

router = APIGatewayHttpRouter()

PageSize = Annotated[str | None, Query(alias="page_size", description="1–1000, default 100")]
PageToken = Annotated[str | None, Query(description="opaque, from next_page_token")]
WorkerId = Annotated[str, Field(min_length=1, max_length=200, description="who holds or asks for the lease")]
LeaseSeconds = Annotated[float, Field(ge=1, le=MAX_LEASE_SECONDS, description="1–43200")]
LeaseToken = Annotated[
    str | None,
    Field(max_length=256, description="when given, must be the current lease's token (else wrong_owner)"),
]
MAX_DELAY_SECONDS = 366 * 24 * 3600


# --- request bodies -------------------------------------------------------------------------------


class TaskCreate(Mutation):
    """A new task; all but `topic` optional."""

    topic: Name
    data: Doc64 = Field(default_factory=dict)
    sub_topic: Name | None = None
    task_group_id: Id | None = None
    max_attempts: int = Field(DEFAULT_MAX_ATTEMPTS, ge=1, le=100)
    not_before: Instant | None = Field(None, description="snoozed until then")
    task_id: Id | None = Field(None, description="generated when omitted")


class TaskReserve(Mutation):
    worker_id: WorkerId
    lease_seconds: LeaseSeconds


class _OwnerCall(Mutation):
    """An owner's call: only `worker_id`, holder of the live lease, may make it."""

    worker_id: WorkerId
    lease_token: LeaseToken = None


class TaskExtendLease(_OwnerCall):
    lease_seconds: LeaseSeconds
    details: Doc64 = Field(None, description="the latest heartbeat details (kept when omitted)")


class TaskComplete(_OwnerCall):
    result: Doc64 = None


class TaskFail(_OwnerCall):
    error: Doc64 = Field(None, description="any JSON")


class TaskSnooze(_OwnerCall):
    delay_seconds: float = Field(
        ge=0, le=MAX_DELAY_SECONDS, description="ready again after this; no attempt counted"
    )


class TaskRelease(_OwnerCall):
    pass


class TaskRevokeLease(Mutation):
    record_version: int = Field(ge=1, description="precondition: the task's current record_version")


# --- helpers --------------------------------------------------------------------------------------


def _mutate(body: Mutation, action: Callable[[], tuple[int, Any]]) -> Response:
    return mutate(router.current_event, body, action)


def _caller(identity: str | None) -> Caller:
    return caller(router.current_event, identity)


def _time(name: str, raw: str | None) -> datetime | None:
    return query_time(name, raw)


def _tasks() -> Tasks:
    return tasks_service()


# --- routes ---------------------------------------------------------------------------------------


@router.post("/v1/tasks", summary="Create a task", tags=["tasks"])
def create_task(body: Annotated[TaskCreate, Body()]):
    caller = _caller(body.identity)
    return _mutate(
        body,
        lambda: _tasks().create(
            body.topic,
            data=body.data,
            sub_topic=body.sub_topic,
            task_group_id=body.task_group_id,
            max_attempts=body.max_attempts,
            not_before=body.not_before,
            task_id=body.task_id,
            caller=caller,
        ),
    )


@router.get("/v1/tasks", summary="List tasks, oldest first within a topic or group", tags=["tasks"])
def list_tasks(
    topic: Annotated[str | None, Query()] = None,
    sub_topic: Annotated[str | None, Query()] = None,
    task_group_id: Annotated[str | None, Query()] = None,
    status: Annotated[list[str] | None, Query(description="repeatable")] = None,
    from_: Annotated[str | None, Query(alias="from", description="created at or after (RFC 3339)")] = None,
    to: Annotated[str | None, Query(description="created before (RFC 3339)")] = None,
    page_size_: PageSize = None,
    page_token: PageToken = None,
):
    statuses = [s for raw in status or [] for s in raw.split(",") if s]
    answer = _tasks().list(
        topic=topic,
        sub_topic=sub_topic,
        task_group_id=task_group_id,
        statuses=statuses or None,
        start=_time("from", from_),
        end=_time("to", to),
        page_token=page_token,
        page_size=page_size(page_size_),
    )
    return json_response(200, answer)


@router.get("/v1/tasks/<task_id>", summary="One task", tags=["tasks"])
def get_task(task_id: str):
    return json_response(200, _tasks().get(task_id))


@router.post("/v1/topics/<topic>/reserve", summary="Lease the next ready task (204: none)", tags=["tasks"])
def reserve_task(topic: str, body: Annotated[TaskReserve, Body()]):
    caller = _caller(body.identity)

    def action() -> tuple[int, Any]:
        task = _tasks().reserve(topic, body.worker_id, body.lease_seconds, caller)
        return (200, task) if task is not None else (204, None)

    return _mutate(body, action)


@router.get("/v1/topics/<topic>", summary="Ready, leased and snoozed counts; workers seen", tags=["tasks"])
def topic_info(topic: str):
    return json_response(200, _tasks().topic_info(topic))


@router.post("/v1/tasks/<task_id>/extend-lease", summary="Heartbeat: extend the lease", tags=["tasks"])
def extend_lease(task_id: str, body: Annotated[TaskExtendLease, Body()]):
    caller = _caller(body.identity)
    return _mutate(
        body,
        lambda: (
            200,
            _tasks().extend_lease(
                task_id,
                body.worker_id,
                body.lease_seconds,
                details=body.details,
                set_details="details" in body.model_fields_set,
                lease_token=body.lease_token,
                caller=caller,
            ),
        ),
    )


@router.post("/v1/tasks/<task_id>/complete", summary="Complete a leased task", tags=["tasks"])
def complete_task(task_id: str, body: Annotated[TaskComplete, Body()]):
    caller = _caller(body.identity)
    return _mutate(
        body,
        lambda: (
            200,
            _tasks().complete(
                task_id, body.worker_id, body.result, lease_token=body.lease_token, caller=caller
            ),
        ),
    )


@router.post(
    "/v1/tasks/<task_id>/fail", summary="Fail the attempt (ready again while attempts remain)", tags=["tasks"]
)
def fail_task(task_id: str, body: Annotated[TaskFail, Body()]):
    caller = _caller(body.identity)
    return _mutate(
        body,
        lambda: (
            200,
            _tasks().fail(task_id, body.worker_id, body.error, lease_token=body.lease_token, caller=caller),
        ),
    )


@router.post(
    "/v1/tasks/<task_id>/snooze", summary="Give the task back until later (no attempt)", tags=["tasks"]
)
def snooze_task(task_id: str, body: Annotated[TaskSnooze, Body()]):
    caller = _caller(body.identity)
    return _mutate(
        body,
        lambda: (
            200,
            _tasks().snooze(
                task_id, body.worker_id, body.delay_seconds, lease_token=body.lease_token, caller=caller
            ),
        ),
    )


@router.post("/v1/tasks/<task_id>/release", summary="Give the task back now (no attempt)", tags=["tasks"])
def release_task(task_id: str, body: Annotated[TaskRelease, Body()]):
    caller = _caller(body.identity)
    return _mutate(
        body,
        lambda: (200, _tasks().release(task_id, body.worker_id, lease_token=body.lease_token, caller=caller)),
    )


@router.post(
    "/v1/tasks/<task_id>/revoke-lease", summary="Free a lease (record_version precondition)", tags=["tasks"]
)
def revoke_lease(task_id: str, body: Annotated[TaskRevokeLease, Body()]):
    caller = _caller(body.identity)
    return _mutate(body, lambda: (200, _tasks().revoke_lease(task_id, body.record_version, caller)))


@router.get("/v1/leases", summary="Tasks leased or snoozed now", tags=["tasks"])
def list_leases(
    topic: Annotated[str | None, Query()] = None, page_size_: PageSize = None, page_token: PageToken = None
):
    return json_response(
        200, _tasks().leases(topic=topic, page_token=page_token, page_size=page_size(page_size_))
    )
