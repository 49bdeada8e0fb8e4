"""A Python client for the gnomon HTTP API.

    from gnomon.client import Client, SigV4Auth

    with Client("https://abc.execute-api.eu-west-1.amazonaws.com", SigV4Auth()) as gn:
        gn.definitions.add(name="nightly", target={"type": "http", "url": "https://example.com/hook"})
        handle = gn.schedules.create(schedule_id="nightly", definition="nightly",
                                     spec={"cron": ["0 2 * * *"], "timezone": "Europe/Riga"})
        handle.pause(note="maintenance", identity="ops")
        handle.update(lambda d: {**d, "tags": ["reports"]})
        for run in gn.list_runs(schedule="nightly", status=["failed"]):
            print(run["run_id"])

Errors come back as the same typed exceptions the server raises (`gnomon.domain.errors`): a 404
is `NotFound`, a 409 `conflict` is `Conflict` carrying `.current`, a 422 is `InvalidArgument`
with every field error in `.details`, and so on. Answers are the API's JSON as plain dicts.

Retries: 429 is always retried (honouring `Retry-After`), as is a connection that could not be
made; 5xx answers and broken connections are retried only when repeating the request is safe —
GET/PUT/DELETE, or a POST carrying `request_id` or `idempotency_key` (the server then answers a
replay with the first call's body).
"""

from __future__ import annotations

import copy
import os
import random
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, cast

import httpx

from gnomon import __version__
from gnomon.domain import errors as E

if TYPE_CHECKING:
    from gnomon.adapters.sigv4 import SigV4Auth
    from gnomon.apply import Change

__all__ = [
    "ApiError",
    "BearerAuth",
    "Client",
    "HandlerTransport",
    "Definitions",
    "ScheduleHandle",
    "Schedules",
    "SigV4Auth",
    "error_from",
    "http_status",
]

DEFAULT_URL = "http://127.0.0.1:8080"
TERMINAL_RUN_STATUSES = frozenset({"completed", "failed", "canceled", "terminated", "timed_out", "skipped"})
_BY_CODE: dict[str, type[E.GnomonError]] = {
    cls.code: cls
    for cls in (
        E.BadRequest,
        E.InvalidPageToken,
        E.Forbidden,
        E.MethodNotAllowed,
        E.AlreadyExists,
        E.AlreadyClosed,
        E.AlreadyDone,
        E.WrongOwner,
        E.LeaseExpired,
        E.InUse,
        E.PayloadTooLarge,
        E.UnsupportedMediaType,
        E.RateLimited,
    )
}
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Fields of a schedule's describe body that a PUT takes (CONTRACT.md §4).
SCHEDULE_UPDATABLE = ("group", "definition", "spec", "policies", "input", "tags", "memo", "search_attributes")
# `list` is also a method name below: these keep the annotations unambiguous.
Items = list[dict[str, Any]]
Names = list[str]
Changes = list["Change"]


def __getattr__(name: str) -> Any:
    # `from gnomon.client import SigV4Auth` without importing boto3 for every client user.
    if name == "SigV4Auth":
        from gnomon.adapters.sigv4 import SigV4Auth

        return SigV4Auth
    raise AttributeError(name)


class ApiError(E.GnomonError):
    """An error answer without a known code (e.g. API Gateway's own 403, a proxy's 502)."""

    def __init__(self, status: int, message: str, details: Any = None) -> None:
        super().__init__(message, details)
        self.status_code = status


def http_status(exc: E.GnomonError) -> int:
    """The HTTP status an error came with."""
    return exc.status_code if isinstance(exc, ApiError) else exc.status


def error_from(status: int, body: Any) -> E.GnomonError:
    """The typed exception for an error answer in the contract's shape."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        message = body.get("message") if isinstance(body, dict) else None  # API Gateway's own shape
        return ApiError(status, str(message or f"HTTP {status}"), body)
    code, message, details = err.get("code"), str(err.get("message", "")), err.get("details")
    if code == "not_found":
        resource = details.get("resource", "?") if isinstance(details, dict) else "?"
        return E.NotFound(resource, message)
    if code == "conflict":
        return E.Conflict(message, current=details.get("current") if isinstance(details, dict) else None)
    if code == "invalid_argument" and isinstance(details, list) and details:
        return E.InvalidArgument.many(details)
    cls = _BY_CODE.get(str(code))
    return cls(message, details) if cls else ApiError(status, message, details)


class BearerAuth(httpx.Auth):
    """`Authorization: Bearer <token>` (an API with a JWT authorizer)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


class HandlerTransport(httpx.BaseTransport):
    """Call an API Gateway (HTTP API, payload v2) Lambda handler in-process instead of a server:
    `Client(transport=HandlerTransport(gnomon.api.app.lambda_handler))` — for tests and notebooks."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], Any]) -> None:
        self.handler = handler

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        from gnomon.local.http_bridge import build_v2_event, to_http_response

        event = build_v2_event(
            request.method,
            request.url.raw_path.decode("ascii"),
            request.headers.multi_items(),
            request.read(),
            "127.0.0.1",
        )
        status, headers, body = to_http_response(self.handler(event, None))
        return httpx.Response(status, headers=headers, content=body, request=request)


def rfc3339(value: datetime | str | None) -> str | None:
    """A request time: an aware datetime (naive ones are refused: the API needs an offset) or a string."""
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("give a timezone-aware datetime (the API needs an offset)")
    return value.isoformat()


def _drop_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _retry_after(resp: httpx.Response) -> float | None:
    raw = resp.headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class Client:
    """The gnomon API over HTTP.

    `url`: the API's base URL (default `$GNOMON_URL`, else `http://127.0.0.1:8080`). `auth`: None
    (the local stack), a bearer token string, `SigV4Auth(region=None, profile=None)` for an API
    behind the AWS_IAM authorizer, or any `httpx.Auth`. `identity`: recorded beside the caller's
    principal on every change this client makes (each call may override it). `transport`: an
    `httpx.BaseTransport` (tests drive the API handler in-process this way).
    """

    def __init__(
        self,
        url: str | None = None,
        auth: str | httpx.Auth | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.2,
        max_backoff: float = 10.0,
        identity: str | None = None,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = (url or os.environ.get("GNOMON_URL") or DEFAULT_URL).rstrip("/")
        self.identity = identity
        self._retries = retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._sleep: Callable[[float], None] = time.sleep
        self._http = httpx.Client(
            base_url=self.url,
            auth=BearerAuth(auth) if isinstance(auth, str) else auth,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": f"gnomon-client/{__version__}", **(headers or {})},
        )
        self.definitions = Definitions(self)
        self.schedules = Schedules(self)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # -- transport ------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, json: Any = None, params: Any = None) -> Any:
        """Call the API; answer the decoded JSON body (None for 204) or raise a typed error."""
        method = method.upper()
        safe = method in _IDEMPOTENT_METHODS or (
            isinstance(json, dict) and bool(json.get("request_id") or json.get("idempotency_key"))
        )
        attempt = 0
        while True:
            try:
                resp = self._http.request(method, path, json=json, params=params)
            except httpx.TransportError as exc:
                # A connection never made cannot have changed anything; anything else may have.
                if attempt >= self._retries or not (safe or isinstance(exc, httpx.ConnectError)):
                    raise
                self._sleep(self._delay(attempt, None))
                attempt += 1
                continue
            status = resp.status_code
            retryable = status == 429 or (status >= 500 and safe)
            if retryable and attempt < self._retries:
                self._sleep(self._delay(attempt, _retry_after(resp)))
                attempt += 1
                continue
            return self._answer(resp)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, 60.0)
        base = min(self._backoff * 2.0**attempt, self._max_backoff)
        return base / 2 + random.uniform(0, base / 2)  # nosec B311 # jitter: clients do not retry in step

    @staticmethod
    def _answer(resp: httpx.Response) -> Any:
        body: Any = None
        if resp.content:
            try:
                body = resp.json()
            except ValueError:
                body = {"message": resp.text[:500]}
        if resp.status_code >= 400:
            raise error_from(resp.status_code, body)
        return body

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=_query(params))

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json={} if body is None else body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json=body)

    def delete(self, path: str, body: Any = None) -> None:
        self.request("DELETE", path, json=body or None)

    def _get_obj(self, path: str, **params: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self.get(path, **params))

    def _post_obj(self, path: str, body: Any = None) -> dict[str, Any]:
        return cast(dict[str, Any], self.post(path, body))

    def _put_obj(self, path: str, body: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self.put(path, body))

    def paginate(self, path: str, page_size: int | None = None, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a list endpoint, following `next_page_token`."""
        query = _query(params)
        if page_size is not None:
            query.append(("page_size", str(page_size)))
        token: str | None = None
        while True:
            page = self.request("GET", path, params=query + ([("page_token", token)] if token else []))
            yield from page.get("items", [])
            token = page.get("next_page_token")
            if not token:
                return

    def _mutation(self, body: dict[str, Any], identity: str | None, request_id: str | None) -> dict[str, Any]:
        identity = identity if identity is not None else self.identity
        return {**body, **_drop_none(identity=identity, request_id=request_id)}

    # -- meta -----------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """`{"status": "ok"}` (+ `aws_endpoint` on the local stack)."""
        return self._get_obj("/v1/health")

    def openapi(self) -> dict[str, Any]:
        return self._get_obj("/v1/openapi.json")

    # -- schedules ------------------------------------------------------------------------------

    def schedule(self, schedule_id: str) -> ScheduleHandle:
        """A handle to one schedule (no request is made until a method is called)."""
        return ScheduleHandle(self, schedule_id)

    def preview(
        self,
        spec: Mapping[str, Any] | str,
        *,
        start: datetime | str | None = None,
        count: int = 10,
        end: datetime | str | None = None,
        timezone: str | None = None,
    ) -> list[str]:
        """The next nominal times of a spec (a cron string is a one-cron spec) after `start` (now)."""
        return self.schedules.preview(spec, start=start, count=count, end=end, timezone=timezone)

    # -- runs -----------------------------------------------------------------------------------

    def execute(
        self,
        name: str,
        input: Any = None,
        run_id: str | None = None,
        *,
        memo: Mapping[str, Any] | None = None,
        identity: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Run a definition now → the run. The same `run_id` with the same input answers that run."""
        body = _drop_none(input=input, run_id=run_id, memo=dict(memo) if memo is not None else None)
        return self._post_obj(f"/v1/definitions/{name}/execute", self._mutation(body, identity, request_id))

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._get_obj(f"/v1/runs/{run_id}")

    def list_runs(
        self,
        *,
        definition: str | None = None,
        schedule: str | None = None,
        status: str | Iterable[str] | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        page_size: int | None = None,
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Run summaries, newest `nominal_time` first, following page tokens (`limit`: stop after n).

        `start` (inclusive) and `end` (exclusive) bound `nominal_time` (the API's `from`/`to`)."""
        statuses = [status] if isinstance(status, str) else list(status or [])
        params: dict[str, Any] = {
            "definition": definition,
            "schedule": schedule,
            "status": statuses or None,
            "from": rfc3339(start),
            "to": rfc3339(end),
        }
        items = self.paginate("/v1/runs", page_size=page_size, **params)
        for n, item in enumerate(items):
            if limit is not None and n >= limit:
                return
            yield item

    def history(self, run_id: str, max_events: int | None = None) -> dict[str, Any]:
        """`{"run_id", "attempts", "events", "truncated"}` (`max_events`: default 500, 0 = all)."""
        return self._get_obj(f"/v1/runs/{run_id}/history", max_events=max_events)

    def wait_run(
        self, run_id: str, *, timeout: float = 60.0, poll: float = 0.5, statuses: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Poll a run until it is terminal (or in one of `statuses`); TimeoutError after `timeout` s."""
        wanted = set(statuses) or TERMINAL_RUN_STATUSES
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if run.get("status") in wanted:
                return run
            if time.monotonic() >= deadline:
                raise TimeoutError(f"run {run_id} is still {run.get('status')} after {timeout} s")
            time.sleep(poll)

    def _run_action(
        self, run_id: str, action: str, body: dict[str, Any], identity: str | None, request_id: str | None
    ) -> dict[str, Any]:
        return self._post_obj(f"/v1/runs/{run_id}/{action}", self._mutation(body, identity, request_id))

    def cancel(
        self,
        run_id: str,
        reason: str | None = None,
        *,
        identity: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Cancel a run (409 `already_closed` when it is closed)."""
        return self._run_action(run_id, "cancel", _drop_none(reason=reason), identity, request_id)

    def terminate(
        self,
        run_id: str,
        reason: str | None = None,
        *,
        identity: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Terminate a run at once (409 `already_closed` when it is closed)."""
        return self._run_action(run_id, "terminate", _drop_none(reason=reason), identity, request_id)

    def retry(
        self, run_id: str, *, identity: str | None = None, request_id: str | None = None
    ) -> dict[str, Any]:
        """A new attempt for a failed, timed-out, canceled or terminated run."""
        return self._run_action(run_id, "retry", {}, identity, request_id)

    def signal(
        self,
        run_id: str,
        name: str,
        payload: Any = None,
        *,
        identity: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Append `{"name", "payload"}` to the run's inbox (handed to its task worker)."""
        return self._run_action(run_id, "signal", {"name": name, "payload": payload}, identity, request_id)

    def query(self, run_id: str, name: str, args: Any = None) -> Any:
        """The run's latest heartbeat `details` (None for runs without heartbeats)."""
        answer = self.post(f"/v1/runs/{run_id}/query", {"name": name, "args": args})
        return answer.get("details") if isinstance(answer, dict) else answer

    def complete_run(self, run_id: str, callback_token: str, result: Any = None) -> dict[str, Any]:
        """Finish an attempt that an http target accepted with 202."""
        return self._post_obj(
            f"/v1/runs/{run_id}/complete", {"callback_token": callback_token, "result": result}
        )

    def fail_run(self, run_id: str, callback_token: str, error: Any) -> dict[str, Any]:
        """Fail an attempt that an http target accepted with 202."""
        return self._post_obj(f"/v1/runs/{run_id}/fail", {"callback_token": callback_token, "error": error})

    def stats(self, timezone: str | None = None, definition: str | None = None) -> dict[str, Any]:
        """`{"timezone", "running", "pending", "completed_today", "failed_today"}`."""
        return self._get_obj("/v1/stats", timezone=timezone, definition=definition)

    def lateness(
        self,
        *,
        schedule: str | None = None,
        definition: str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        bucket_seconds: int | None = None,
        include: Sequence[str] = (),
        timezone: str | None = None,
    ) -> dict[str, Any]:
        """Start-lateness percentiles per time bucket; `include=("firings", "durations")` adds
        the window's runs by day of week and hour (in `timezone`) and a run-duration histogram."""
        return self._get_obj(
            "/v1/metrics/lateness",
            schedule=schedule,
            definition=definition,
            bucket_seconds=bucket_seconds,
            include=",".join(include) or None,
            timezone=timezone,
            **{"from": rfc3339(start), "to": rfc3339(end)},
        )

    def upcoming(
        self, start: datetime | str, end: datetime | str, *, group: str | None = None
    ) -> list[dict[str, Any]]:
        """Every firing due in [start, end] (≤ 24 h) across all schedules, by time."""
        answer = self.get("/v1/upcoming", group=group, **{"from": rfc3339(start), "to": rfc3339(end)})
        return list(answer.get("items", [])) if isinstance(answer, dict) else list(answer)

    # -- calendars, groups ------------------------------------------------------------------------

    def create_calendar(
        self, body: Mapping[str, Any], *, identity: str | None = None, request_id: str | None = None
    ) -> dict[str, Any]:
        return self._post_obj("/v1/calendars", self._mutation(dict(body), identity, request_id))

    def list_calendars(self) -> list[dict[str, Any]]:
        return list(self.paginate("/v1/calendars"))

    def get_calendar(self, name: str) -> dict[str, Any]:
        return self._get_obj(f"/v1/calendars/{name}")

    def replace_calendar(
        self,
        name: str,
        body: Mapping[str, Any],
        *,
        identity: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        return self._put_obj(f"/v1/calendars/{name}", self._mutation(dict(body), identity, request_id))

    def delete_calendar(self, name: str) -> None:
        self.delete(f"/v1/calendars/{name}")

    def list_groups(self) -> list[dict[str, Any]]:
        return list(self.paginate("/v1/groups"))

    def get_group(self, group: str) -> dict[str, Any]:
        return self._get_obj(f"/v1/groups/{group}")

    def put_group(
        self,
        group: str,
        *,
        max_schedules: int | None = None,
        max_firings_per_second: float | None = None,
        identity: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Set a group's quotas (None = unlimited)."""
        body = {"max_schedules": max_schedules, "max_firings_per_second": max_firings_per_second}
        return self._put_obj(f"/v1/groups/{group}", self._mutation(body, identity, request_id))

    # -- events and operators ---------------------------------------------------------------------

    def send_event(
        self, type: str, key: str, payload: Any = None, *, event_id: str | None = None
    ) -> dict[str, Any] | None:
        """Publish an event for event-triggered definitions (202)."""
        answer = self.post("/v1/events", _drop_none(type=type, key=key, payload=payload, event_id=event_id))
        return answer if isinstance(answer, dict) else None

    def list_operators(self) -> list[dict[str, Any]]:
        return list(self.paginate("/v1/operators"))

    def get_operator(self, definition: str) -> dict[str, Any]:
        return self._get_obj(f"/v1/operators/{definition}")

    def restart_operator(self, definition: str, key: str | None = None) -> dict[str, Any]:
        return self._post_obj(f"/v1/operators/{definition}/restart", _drop_none(key=key))

    # -- dead letters -----------------------------------------------------------------------------

    def dead_letters(self, page_size: int | None = None) -> dict[str, Any]:
        return self._get_obj("/v1/dlq", page_size=page_size)

    def redrive(self, max_messages: int | None = None, *, request_id: str | None = None) -> dict[str, Any]:
        return self._post_obj("/v1/dlq/redrive", _drop_none(max_messages=max_messages, request_id=request_id))

    # -- tasks (CONTRACT.md §8) ---------------------------------------------------------------------

    def create_task(
        self,
        topic: str,
        data: Any = None,
        *,
        task_id: str | None = None,
        sub_topic: str | None = None,
        task_group_id: str | None = None,
        max_attempts: int | None = None,
        not_before: datetime | str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        body = _drop_none(
            topic=topic,
            data=data,
            task_id=task_id,
            sub_topic=sub_topic,
            task_group_id=task_group_id,
            max_attempts=max_attempts,
            not_before=rfc3339(not_before),
            request_id=request_id,
        )
        return self._post_obj("/v1/tasks", body)

    def get_task(self, task_id: str) -> dict[str, Any]:
        return self._get_obj(f"/v1/tasks/{task_id}")

    def list_tasks(
        self,
        *,
        topic: str | None = None,
        sub_topic: str | None = None,
        task_group_id: str | None = None,
        status: str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Task summaries (by creation time), following page tokens."""
        return self.paginate(
            "/v1/tasks",
            page_size=page_size,
            topic=topic,
            sub_topic=sub_topic,
            task_group_id=task_group_id,
            status=status,
            **{"from": rfc3339(start), "to": rfc3339(end)},
        )

    def topic(self, topic: str) -> dict[str, Any]:
        """Topic info: ready, leased and snoozed counts, workers seen."""
        return self._get_obj(f"/v1/topics/{topic}")

    def leases(self, topic: str | None = None) -> list[dict[str, Any]]:
        """Tasks leased or snoozed now."""
        return list(self.paginate("/v1/leases", topic=topic))

    def reserve(self, topic: str, worker_id: str, lease_seconds: int) -> dict[str, Any] | None:
        """Lease the next ready task of `topic`, or None when there is none (204)."""
        answer = self.post(
            f"/v1/topics/{topic}/reserve", {"worker_id": worker_id, "lease_seconds": lease_seconds}
        )
        return answer if isinstance(answer, dict) else None

    def _task_action(self, task_id: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._post_obj(f"/v1/tasks/{task_id}/{action}", body)

    def extend_lease(
        self,
        task_id: str,
        worker_id: str,
        lease_seconds: int,
        details: Any = None,
        *,
        lease_token: str | None = None,
    ) -> dict[str, Any]:
        """Extend a held lease (sending heartbeat `details`); answers the task with its `inbox`."""
        body = _drop_none(worker_id=worker_id, lease_seconds=lease_seconds, lease_token=lease_token)
        if details is not None:
            body["details"] = details
        return self._task_action(task_id, "extend-lease", body)

    def complete_task(
        self, task_id: str, worker_id: str, result: Any = None, *, lease_token: str | None = None
    ) -> dict[str, Any]:
        body = {"worker_id": worker_id, "result": result, **_drop_none(lease_token=lease_token)}
        return self._task_action(task_id, "complete", body)

    def fail_task(
        self, task_id: str, worker_id: str, error: Any, *, lease_token: str | None = None
    ) -> dict[str, Any]:
        body = {"worker_id": worker_id, "error": error, **_drop_none(lease_token=lease_token)}
        return self._task_action(task_id, "fail", body)

    def snooze_task(
        self, task_id: str, worker_id: str, delay_seconds: float, *, lease_token: str | None = None
    ) -> dict[str, Any]:
        body = {"worker_id": worker_id, "delay_seconds": delay_seconds, **_drop_none(lease_token=lease_token)}
        return self._task_action(task_id, "snooze", body)

    def release_task(self, task_id: str, worker_id: str, *, lease_token: str | None = None) -> dict[str, Any]:
        return self._task_action(
            task_id, "release", {"worker_id": worker_id, **_drop_none(lease_token=lease_token)}
        )

    def revoke_lease(self, task_id: str, record_version: int) -> dict[str, Any]:
        return self._task_action(task_id, "revoke-lease", {"record_version": record_version})


def _query(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Query parameters without the None ones; lists repeat the key; booleans are true/false."""
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        values = value if isinstance(value, list | tuple) else [value]
        out.extend((key, _query_value(v)) for v in values)
    return out


def _query_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return rfc3339(v) if isinstance(v, datetime) else str(v)  # type: ignore[return-value]


# --- definitions: a registry in the spirit of a job package ---------------------------------------


class Definitions:
    """The definitions of a gnomon deployment as a registry (`client.definitions`).

    `add` creates (a taken name → `AlreadyExists`); `get` answers None for a missing name where
    `must_get` raises `NotFound`; `list` is sorted by name; `register_all` creates or replaces a
    set of definitions and leaves equal ones alone.
    """

    def __init__(self, client: Client) -> None:
        self._client = client

    def add(
        self,
        definition: Mapping[str, Any] | None = None,
        /,
        *,
        identity: str | None = None,
        request_id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Create a definition → it, with its `signing_secret` (answered only this once)."""
        body = {**(definition or {}), **fields}
        return self._client._post_obj("/v1/definitions", self._client._mutation(body, identity, request_id))

    def get(self, name: str) -> dict[str, Any] | None:
        """The definition, or None when there is none by that name."""
        try:
            return self.must_get(name)
        except E.NotFound:
            return None

    def must_get(self, name: str) -> dict[str, Any]:
        """The definition; `NotFound` when there is none by that name."""
        return self._client._get_obj(f"/v1/definitions/{name}")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.list())

    def list(self, tag: str | None = None) -> Items:
        """Every definition (summaries), sorted by name, across all pages."""
        return sorted(self._client.paginate("/v1/definitions", tag=tag), key=lambda d: d["name"])

    def names(self, tag: str | None = None) -> Names:
        return [d["name"] for d in self.list(tag)]

    def replace(
        self,
        name: str,
        definition: Mapping[str, Any],
        *,
        version: int | None = None,
        identity: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """PUT the definition whole; `version` (optional) must be the current one, else `Conflict`."""
        body = {**definition, "name": name}
        body.pop("version", None)
        if version is not None:
            body["version"] = version
        return self._client._put_obj(
            f"/v1/definitions/{name}", self._client._mutation(body, identity, request_id)
        )

    def delete(self, name: str) -> None:
        """Delete (409 `InUse` while schedules use it, listing them)."""
        self._client.delete(f"/v1/definitions/{name}")

    def versions(self, name: str) -> Items:
        """Every version, newest first."""
        return list(self._client.paginate(f"/v1/definitions/{name}/versions"))

    def execute(self, name: str, input: Any = None, run_id: str | None = None, **kw: Any) -> dict[str, Any]:
        return self._client.execute(name, input, run_id, **kw)

    def register_all(
        self, definitions: Iterable[Mapping[str, Any]], *, identity: str | None = None
    ) -> Changes:
        """Create the missing ones, replace the changed ones (with their `version` as
        precondition), leave equal ones alone → one `gnomon.apply.Change` per definition."""
        from gnomon.apply import Config, apply_plan, plan

        config = Config(definitions=[dict(d) for d in definitions], schedules=[])
        return apply_plan(self._client, plan(self._client, config), identity=identity)

    def apply_schedules(
        self, schedules: Iterable[Mapping[str, Any]], *, identity: str | None = None
    ) -> Changes:
        """Create or update these schedules (see `Schedules.apply`)."""
        return self._client.schedules.apply(schedules, identity=identity)


# --- schedules ----------------------------------------------------------------------------------


class Schedules:
    """`client.schedules`: create, list, preview, bulk; `handle(id)` for one schedule."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def handle(self, schedule_id: str) -> ScheduleHandle:
        return ScheduleHandle(self._client, schedule_id)

    def create(
        self,
        schedule: Mapping[str, Any] | None = None,
        /,
        *,
        identity: str | None = None,
        request_id: str | None = None,
        **fields: Any,
    ) -> ScheduleHandle:
        """Create a schedule → its handle (the describe body is in `handle.last_description`)."""
        body = {**(schedule or {}), **fields}
        answer = self._client.post("/v1/schedules", self._client._mutation(body, identity, request_id))
        handle = ScheduleHandle(self._client, answer["schedule_id"])
        handle.last_description = answer
        return handle

    def get(self, schedule_id: str) -> dict[str, Any] | None:
        """The describe body, or None when there is no such schedule."""
        try:
            return self.handle(schedule_id).describe()
        except E.NotFound:
            return None

    def list(
        self,
        *,
        group: str | None = None,
        definition: str | None = None,
        paused: bool | None = None,
        tag: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Schedule summaries sorted by `schedule_id`, following page tokens."""
        return self._client.paginate(
            "/v1/schedules", page_size=page_size, group=group, definition=definition, paused=paused, tag=tag
        )

    def ids(self, **filters: Any) -> Names:
        return [s["schedule_id"] for s in self.list(**filters)]

    def preview(
        self,
        spec: Mapping[str, Any] | str,
        *,
        start: datetime | str | None = None,
        count: int = 10,
        end: datetime | str | None = None,
        timezone: str | None = None,
    ) -> Names:
        """Nominal times strictly after `start` (default now), at most `count`, none after `end`."""
        body_spec: dict[str, Any] = {"cron": [spec]} if isinstance(spec, str) else dict(spec)
        if timezone is not None:
            body_spec["timezone"] = timezone
        body = _drop_none(
            spec=body_spec,
            start=rfc3339(start) or rfc3339(datetime.now(UTC).replace(microsecond=0)),
            count=count,
            end=rfc3339(end),
        )
        return list(self._client.post("/v1/schedules/preview", body)["fire_times"])

    def bulk(
        self,
        action: str,
        *,
        group: str | None = None,
        definition: str | None = None,
        tag: str | None = None,
        note: str | None = None,
        confirm: bool | None = None,
        request_id: str | None = None,
    ) -> dict[str, int]:
        """pause / unpause / delete every matching schedule, following `next_page_token` until done →
        `{"matched", "changed"}` summed over the calls."""
        flt = _drop_none(group=group, definition=definition, tag=tag)
        totals = {"matched": 0, "changed": 0}
        token: str | None = None
        call = 0
        while True:
            body = _drop_none(action=action, filter=flt, note=note, confirm=confirm, page_token=token)
            if request_id is not None:
                body["request_id"] = f"{request_id}.{call}"
            answer = self._client.post("/v1/schedules/bulk", body)
            totals["matched"] += int(answer.get("matched", 0))
            totals["changed"] += int(answer.get("changed", 0))
            token = answer.get("next_page_token")
            call += 1
            if not token:
                return totals

    def apply(self, schedules: Iterable[Mapping[str, Any]], *, identity: str | None = None) -> Changes:
        """Create the missing schedules, update the changed ones (with their `conflict_token` as
        precondition), leave equal ones alone → one `gnomon.apply.Change` per schedule."""
        from gnomon.apply import Config, apply_plan, plan

        config = Config(definitions=[], schedules=[dict(s) for s in schedules])
        return apply_plan(self._client, plan(self._client, config), identity=identity)


class ScheduleHandle:
    """One schedule, by id (as Temporal's `ScheduleHandle`). Every mutating call takes
    `identity=` (recorded beside the caller's principal) and `request_id=` (a replay within 24 h
    answers the first call and changes nothing)."""

    def __init__(self, client: Client, schedule_id: str) -> None:
        self._client = client
        self.id = schedule_id
        self.last_description: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"ScheduleHandle({self.id!r})"

    @property
    def _path(self) -> str:
        return f"/v1/schedules/{self.id}"

    def _action(self, action: str, body: dict[str, Any], identity: str | None, request_id: str | None) -> Any:
        return self._client.post(f"{self._path}/{action}", self._client._mutation(body, identity, request_id))

    def describe(self) -> dict[str, Any]:
        """The schedule: spec, action (definition + input), policies, state, `info` and `conflict_token`."""
        self.last_description = self._client.get(self._path)
        assert self.last_description is not None
        return self.last_description

    def pause(
        self,
        note: str | None = None,
        until: datetime | str | None = None,
        *,
        identity: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Pause (note default "paused"); with `until` it unpauses by itself then. → describe body."""
        answer: dict[str, Any] = self._action(
            "pause", _drop_none(note=note, until=rfc3339(until)), identity, request_id
        )
        return answer

    def unpause(
        self,
        note: str | None = None,
        catch_up: str = "none",
        *,
        identity: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Unpause; `catch_up` — `none`, `latest` or `all` — says which missed firings run."""
        answer: dict[str, Any] = self._action(
            "unpause", _drop_none(note=note, catch_up=catch_up), identity, request_id
        )
        return answer

    def trigger(
        self,
        overlap: str | None = None,
        input: Any = None,
        idempotency_key: str | None = None,
        *,
        identity: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Run the schedule's action now → the run (maybe `pending` or `skipped` by the overlap
        policy, which `overlap` overrides). `input` (when given) replaces the schedule's input for
        this run. The same `idempotency_key` answers the first run."""
        body = _drop_none(overlap=overlap, input=input, idempotency_key=idempotency_key)
        answer: dict[str, Any] = self._action("trigger", body, identity, request_id)
        return answer

    def backfill(
        self,
        start: datetime | str,
        end: datetime | str,
        overlap: str | None = None,
        dry_run: bool = False,
        *,
        identity: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Runs for the spec's nominal times in [start, end] → `{"fire_times", "runs_created"}`."""
        body = _drop_none(start=rfc3339(start), end=rfc3339(end), overlap=overlap)
        if dry_run:
            body["dry_run"] = True
        answer: dict[str, Any] = self._action("backfill", body, identity, request_id)
        return answer

    def update(
        self,
        updater: Callable[[dict[str, Any]], Mapping[str, Any] | None],
        *,
        identity: str | None = None,
        request_id: str | None = None,
        max_attempts: int = 10,
    ) -> dict[str, Any]:
        """Read-modify-write under the `conflict_token`, as Temporal's `update`.

        `updater` gets a copy of the describe body and returns the schedule as it should be (the
        whole body or only the changed top-level fields), or None to change nothing. When another
        writer got in between (409 `conflict`), the schedule is read again and `updater` called
        again, up to `max_attempts` times. An update that changes nothing is not sent (a PUT
        would drop the firings already enqueued). → the describe body after the update.
        """
        for attempt in range(max_attempts):
            current = self.describe()
            wanted = updater(copy.deepcopy(current))
            if wanted is None:
                return current
            body = {k: v for k, v in wanted.items() if k not in ("info", "generation", "conflict_token")}
            if "state" in body and body["state"] == current.get("state"):
                body.pop("state")
            if all(body.get(k) == current.get(k) for k in body if k != "schedule_id"):
                return current
            body["conflict_token"] = current["conflict_token"]
            try:
                answer: dict[str, Any] = self._client.put(
                    self._path, self._client._mutation(body, identity, request_id)
                )
            except E.Conflict:
                if attempt + 1 >= max_attempts:
                    raise
                continue
            self.last_description = answer
            return answer
        raise AssertionError("unreachable")

    def delete(self, *, identity: str | None = None, request_id: str | None = None) -> None:
        """Delete the schedule (firings already enqueued are dropped; running runs go on).

        `identity` and `request_id` travel in the DELETE's body, which today's API ignores."""
        body = _drop_none(
            identity=identity if identity is not None else self._client.identity, request_id=request_id
        )
        self._client.delete(self._path, body or None)

    def runs(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """This schedule's runs, newest first (the filters of `Client.list_runs`)."""
        return self._client.list_runs(schedule=self.id, **filters)
