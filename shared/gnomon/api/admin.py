"""Admin routes (CONTRACT.md §4): named calendars, groups and their quotas, bulk schedule
actions, upcoming firings. A Powertools router that `gnomon.api.app` includes
(`app.include_router(router)`); errors are mapped by the app's handlers, like every route's.

This module does not import `gnomon.api.app` (the app imports it), so the few edge helpers
the routes share with the app are repeated here over `router.current_event`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import Field, StrictBool, StrictInt

from gnomon.api.common import caller, mutate, query_time
from gnomon.api.errors import json_response
from gnomon.domain.errors import InvalidArgument
from gnomon.domain.model import NAME_RE, Mutation, Name, Strict
from gnomon.domain.spec import Calendar
from gnomon.services.admin import Admin
from gnomon.services.common import Caller, page_size
from gnomon.wiring import services

router = APIGatewayHttpRouter()

PageSize = Annotated[str | None, Query(alias="page_size", description="1–1000, default 100")]
PageToken = Annotated[str | None, Query(description="opaque, from next_page_token")]


def admin() -> Admin:
    """The admin use cases over the process-wide services (cheap: no I/O, no state of its own)."""
    s = services()
    return Admin.build(
        catalog=s.catalog,
        schedule_store=s.schedule_store,
        schedules=s.schedules,
        resolve_calendars=s.calendars.resolve,
        clock=s.clock,
        tokens=s.tokens,
        plan_log=s.plan_log,
    )


# --- edge helpers (gnomon.api.common) ----------------------------------------------------------


def _caller(identity: str | None) -> Caller:
    return caller(router.current_event, identity)


def _mutate(body: Mutation, action: Callable[[], tuple[int, Any]]) -> Response:
    return mutate(router.current_event, body, action)


def _time(name: str, raw: str | None) -> datetime:
    t = query_time(name, raw, required=True)
    assert t is not None
    return t


def _name(field: str, value: str) -> str:
    if not re.match(NAME_RE, value):
        raise InvalidArgument(field, f"must match {NAME_RE}")
    return value


# --- named calendars --------------------------------------------------------------------------------


class CalendarBody(Mutation):
    """A named, reusable list of calendars (e.g. holidays), referenced by a schedule's
    `spec.exclude_calendar_refs`."""

    name: Name
    description: str = Field("", max_length=4096)
    calendars: list[Calendar] = Field(max_length=1000)


class CalendarReplace(CalendarBody):
    """PUT body: the calendar whole, optionally with the `version` it replaces."""

    version: int | None = Field(None, ge=1, description="Precondition: mismatch → 409 conflict.")


@router.post("/v1/calendars", summary="Create a named calendar", tags=["calendars"])
def create_calendar(body: Annotated[CalendarBody, Body()]):
    caller = _caller(body.identity)
    return _mutate(
        body, lambda: (201, admin().calendars.create(body.name, body.description, body.calendars, caller))
    )


@router.get("/v1/calendars", summary="List named calendars, sorted by name", tags=["calendars"])
def list_calendars(page_size_: PageSize = None, page_token: PageToken = None):
    return json_response(200, admin().calendars.list(page_token=page_token, page_size=page_size(page_size_)))


@router.get("/v1/calendars/<name>", summary="Describe a named calendar", tags=["calendars"])
def get_calendar(name: str):
    return json_response(200, admin().calendars.get(name))


@router.put(
    "/v1/calendars/<name>",
    summary="Replace a named calendar (version: precondition); schedules using it re-plan",
    tags=["calendars"],
)
def replace_calendar(name: str, body: Annotated[CalendarReplace, Body()]):
    if body.name != name:
        raise InvalidArgument("name", "must equal the name in the path")
    caller = _caller(body.identity)
    return _mutate(
        body,
        lambda: (
            200,
            admin().calendars.replace(name, body.description, body.calendars, body.version, caller),
        ),
    )


@router.delete(
    "/v1/calendars/<name>",
    summary="Delete a named calendar (409 in_use while schedules reference it)",
    tags=["calendars"],
)
def delete_calendar(name: str):
    admin().calendars.delete(name)
    return json_response(204, None)


# --- groups -----------------------------------------------------------------------------------------


class GroupQuotas(Mutation):
    """A group's quotas (null = unlimited). `group` and `schedules` from a GET body are accepted
    so it can be sent back: `group` must equal the path's, `schedules` is ignored."""

    max_schedules: StrictInt | None = Field(
        None, ge=0, le=10_000_000, description="Creates beyond → 422 (field group)."
    )
    max_firings_per_second: (
        Annotated[float, Field(strict=True, ge=0.001, le=1_000_000, allow_inf_nan=False)] | None
    ) = Field(None, description="Firings beyond are delayed to later seconds (counted quota_delayed).")
    group: Name | None = None
    schedules: int | None = Field(None, description="Ignored: the count is the server's.")
    truncated: bool | None = Field(None, description="Ignored.")


@router.get("/v1/groups", summary="Schedule groups with their quotas and schedule counts", tags=["groups"])
def list_groups(page_size_: PageSize = None, page_token: PageToken = None):
    return json_response(200, admin().groups.list(page_token=page_token, page_size=page_size(page_size_)))


@router.get("/v1/groups/<group>", summary="One group: quotas and schedule count", tags=["groups"])
def get_group(group: str):
    return json_response(200, admin().groups.get(group))


@router.put("/v1/groups/<group>", summary="Set a group's quotas", tags=["groups"])
def put_group(group: str, body: Annotated[GroupQuotas, Body()]):
    _name("group", group)
    if body.group is not None and body.group != group:
        raise InvalidArgument("group", "must equal the group in the path")
    caller = _caller(body.identity)
    return _mutate(
        body,
        lambda: (200, admin().groups.put(group, body.max_schedules, body.max_firings_per_second, caller)),
    )


# --- bulk ---------------------------------------------------------------------------------------------


class BulkFilter(Strict):
    """Which schedules: all of the given fields must match (none given = every schedule)."""

    group: Name | None = None
    definition: Name | None = None
    tag: Name | None = None


class BulkRequest(Mutation):
    action: Literal["pause", "unpause", "delete"]
    filter: BulkFilter = Field(default_factory=BulkFilter)
    note: str | None = Field(None, max_length=4096, description="pause/unpause note (their defaults)")
    catch_up: Literal["none", "latest", "all"] = Field("none", description="unpause only")
    confirm: StrictBool = Field(False, description="required (true) for a delete with an empty filter")
    page_token: str | None = Field(None, description="next_page_token of the previous call")


@router.post(
    "/v1/schedules/bulk",
    summary="Pause, unpause or delete the schedules matching a filter (≤ 1 000 per call)",
    tags=["schedules"],
)
def bulk_schedules(body: Annotated[BulkRequest, Body()]):
    caller = _caller(body.identity)
    f = body.filter
    return _mutate(
        body,
        lambda: (
            200,
            admin().bulk.run(
                body.action,
                group=f.group,
                definition=f.definition,
                tag=f.tag,
                note=body.note,
                catch_up=body.catch_up,
                confirm=body.confirm,
                page_token=body.page_token,
                caller=caller,
            ),
        ),
    )


# --- upcoming -----------------------------------------------------------------------------------------


@router.get(
    "/v1/upcoming",
    summary="Every firing due in a window (≤ 24 h) across all schedules, by scheduled time",
    tags=["schedules"],
)
def upcoming(
    from_: Annotated[str | None, Query(alias="from", description="RFC 3339, inclusive")] = None,
    to: Annotated[str | None, Query(description="RFC 3339, exclusive; at most 24 h after from")] = None,
    group: Annotated[str | None, Query()] = None,
    page_size_: PageSize = None,
    page_token: PageToken = None,
):
    answer = admin().upcoming.list(
        start=_time("from", from_),
        end=_time("to", to),
        group=group,
        page_token=page_token,
        page_size=page_size(page_size_),
    )
    return json_response(200, answer)
