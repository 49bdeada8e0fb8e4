"""The Python client, the declarative `apply` and the worker SDK.

Most tests drive the real API handler in-process (`HandlerTransport` over the in-memory stores),
so the client meets real server behaviour; endpoints other engineers are still building are
checked against the contract's paths and bodies with an `httpx.MockTransport`; the worker SDK
runs against `FakeTasks`, an in-process server implementing CONTRACT.md §8 for one topic.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gnomon.apply import ApplyError, Config, ConfigError, apply_plan, parse_config, plan
from gnomon.client import ApiError, Client, HandlerTransport, ScheduleHandle, error_from, http_status
from gnomon.domain import errors as E
from gnomon.worker import LeaseLost, TaskContext, Worker, error_document

HOOK = {"type": "http", "url": "https://example.com/hook"}
LOOPBACK_HOOK = {"type": "http", "url": "http://127.0.0.1:9/hook"}
CRON = {"cron": ["0 9 * * MON-FRI"], "timezone": "Europe/Riga"}


@pytest.fixture
def gn(monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """A client of the real API handler over fresh in-memory stores."""
    from gnomon import wiring
    from gnomon.api.app import lambda_handler

    monkeypatch.setenv("GNOMON_STORE", "memory")
    monkeypatch.setenv("GNOMON_PAGE_TOKEN_SECRET", "test-secret")
    wiring.services.cache_clear()
    with Client("http://gnomon.test", transport=HandlerTransport(lambda_handler)) as client:
        yield client
    wiring.services.cache_clear()


@pytest.fixture
def job(gn: Client) -> Client:
    gn.definitions.add(name="job", target=HOOK)
    return gn


class Recorder:
    """A MockTransport that answers from a list (or a function) and records every request;
    its clients record their retry sleeps instead of sleeping."""

    def __init__(self, answers: list[httpx.Response] | Callable[[httpx.Request], httpx.Response]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if callable(self.answers):
            return self.answers(request)
        return self.answers.pop(0)

    def client(self, **kw: Any) -> Client:
        client = Client("http://gnomon.test", transport=httpx.MockTransport(self), **kw)
        client._sleep = self.sleeps.append
        return client

    @property
    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


def recorder(answers: Any) -> Recorder:
    return Recorder(answers)


def err(status: int, code: str, details: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"code": code, "message": code.replace("_", " "), "details": details or {}}}
    return httpx.Response(status, json=body, headers=headers)


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "details", "cls"),
    [
        (400, "bad_request", {}, E.BadRequest),
        (400, "invalid_page_token", {}, E.InvalidPageToken),
        (403, "forbidden", {}, E.Forbidden),
        (404, "not_found", {"resource": "schedule/x"}, E.NotFound),
        (405, "method_not_allowed", {}, E.MethodNotAllowed),
        (409, "already_exists", {}, E.AlreadyExists),
        (409, "conflict", {"current": {"a": 1}}, E.Conflict),
        (409, "already_closed", {}, E.AlreadyClosed),
        (409, "already_done", {}, E.AlreadyDone),
        (409, "wrong_owner", {}, E.WrongOwner),
        (409, "lease_expired", {}, E.LeaseExpired),
        (409, "in_use", {"schedules": ["s"]}, E.InUse),
        (413, "payload_too_large", {}, E.PayloadTooLarge),
        (415, "unsupported_media_type", {}, E.UnsupportedMediaType),
        (422, "invalid_argument", [{"field": "spec.cron[0]", "message": "bad"}], E.InvalidArgument),
        (429, "rate_limited", {}, E.RateLimited),
    ],
)
def test_every_error_code_maps_to_its_exception(status: int, code: str, details: Any, cls: type) -> None:
    exc = error_from(status, {"error": {"code": code, "message": "m", "details": details}})
    assert type(exc) is cls and http_status(exc) == status
    assert exc.body()["error"]["code"] == code


def test_error_details_survive() -> None:
    conflict = error_from(
        409, {"error": {"code": "conflict", "message": "m", "details": {"current": {"v": 2}}}}
    )
    assert isinstance(conflict, E.Conflict) and conflict.current == {"v": 2}
    missing = error_from(
        404, {"error": {"code": "not_found", "message": "m", "details": {"resource": "run/r"}}}
    )
    assert isinstance(missing, E.NotFound) and missing.resource == "run/r"
    fields = [{"field": "a", "message": "x"}, {"field": "b", "message": "y"}]
    invalid = error_from(422, {"error": {"code": "invalid_argument", "message": "m", "details": fields}})
    assert isinstance(invalid, E.InvalidArgument) and invalid.field == "a" and invalid.details == fields


def test_answers_outside_the_contract_become_api_errors() -> None:
    gateway = error_from(403, {"message": "Forbidden"})  # API Gateway's own shape
    assert isinstance(gateway, ApiError) and gateway.status_code == 403 and gateway.message == "Forbidden"
    assert http_status(gateway) == 403
    odd = error_from(418, {"error": {"code": "teapot", "message": "short and stout"}})
    assert isinstance(odd, ApiError) and odd.status_code == 418
    assert isinstance(error_from(502, None), ApiError)


def test_a_non_json_error_body_is_an_api_error() -> None:
    rec = recorder([httpx.Response(502, text="<html>Bad Gateway</html>")] * 4)
    with pytest.raises(ApiError) as info, rec.client() as client:
        client.get("/v1/health")
    assert info.value.status_code == 502 and "Bad Gateway" in info.value.message


def test_invalid_argument_from_the_real_server_lists_fields(gn: Client) -> None:
    with pytest.raises(E.InvalidArgument) as info:
        gn.definitions.add(
            name="x", target={"type": "http", "url": "https://example.com"}, retry={"max_attempts": 0}
        )
    assert info.value.field == "retry.max_attempts"
    with pytest.raises(E.InvalidArgument) as info:
        gn.definitions.add(name="x", target=HOOK, oops=1)
    assert info.value.field == "oops"


# --- retries, auth --------------------------------------------------------------------------------


def test_429_is_retried_honouring_retry_after() -> None:
    ok = httpx.Response(200, json={"status": "ok"})
    rec = recorder([err(429, "rate_limited", headers={"Retry-After": "3"}), err(429, "rate_limited"), ok])
    with rec.client() as client:
        assert client.post("/v1/definitions/x/execute", {}) == {"status": "ok"}
    assert len(rec.requests) == 3
    assert rec.sleeps[0] == 3.0 and 0 < rec.sleeps[1] <= 0.4


def test_retry_after_as_an_http_date() -> None:
    when = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    rec = recorder([err(503, "unavailable", headers={"Retry-After": when}), httpx.Response(204)])
    with rec.client() as client:
        assert client.get("/v1/x") is None
    assert 25 <= rec.sleeps[0] <= 31


def test_5xx_is_retried_only_when_repeating_is_safe() -> None:
    rec = recorder([httpx.Response(500, json={}), httpx.Response(200, json={"a": 1})])
    with rec.client() as client:
        assert client.get("/v1/runs") == {"a": 1}  # GET
    rec = recorder([httpx.Response(502, json={})] * 2)
    with pytest.raises(ApiError), rec.client() as client:
        client.post("/v1/definitions/x/execute", {"input": {}})  # could run twice: not retried
    assert len(rec.requests) == 1
    rec = recorder([httpx.Response(502, json={}), httpx.Response(201, json={"run_id": "r"})])
    with rec.client() as client:
        assert client.post("/v1/definitions/x/execute", {"request_id": "q-1"}) == {"run_id": "r"}
    rec = recorder([httpx.Response(504, json={}), httpx.Response(201, json={"run_id": "t"})])
    with rec.client() as client:
        assert client.schedule("s").trigger(idempotency_key="k")["run_id"] == "t"


def test_retries_give_up_with_the_typed_error() -> None:
    rec = recorder([err(429, "rate_limited")] * 3)
    with pytest.raises(E.RateLimited), rec.client(retries=2) as client:
        client.get("/v1/schedules")
    assert len(rec.requests) == 3 and len(rec.sleeps) == 2


def test_connection_errors_are_retried_when_nothing_was_sent() -> None:
    calls: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(201, json={"run_id": "r"})

    rec = recorder(flaky)
    with rec.client() as client:
        assert client.execute("job", {}) == {"run_id": "r"}
    assert len(calls) == 3

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    rec = recorder(broken)
    with pytest.raises(httpx.ReadTimeout), rec.client() as client:
        client.execute("job", {})  # it may have arrived: not repeated
    assert len(rec.requests) == 1


def test_bearer_token_and_default_identity() -> None:
    rec = recorder(lambda r: httpx.Response(200, json={}))
    with rec.client(auth="s3cret", identity="ci") as client:
        client.schedule("s").pause(note="n")
        client.schedule("s").unpause(identity="override")
    assert rec.requests[0].headers["Authorization"] == "Bearer s3cret"
    assert rec.bodies == [{"note": "n", "identity": "ci"}, {"catch_up": "none", "identity": "override"}]


def test_sigv4_signs_for_execute_api(monkeypatch: pytest.MonkeyPatch) -> None:
    from gnomon.client import SigV4Auth  # lazily from the adapter

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    rec = recorder(lambda r: httpx.Response(200, json={}))
    url = "https://abc123.execute-api.eu-west-1.amazonaws.com"
    with Client(url, SigV4Auth(region="eu-west-1"), transport=httpx.MockTransport(rec)) as client:
        client.post("/v1/schedules/s/pause", {"note": "a"})
        client.post("/v1/schedules/s/pause", {"note": "b"})
        client.get("/v1/schedules", group="g")
    first, second, third = rec.requests
    auth = first.headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in auth
    assert "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token" in auth
    assert first.headers["X-Amz-Security-Token"] == "session" and first.headers["X-Amz-Date"]
    # the body is signed: another body, another signature
    assert auth.split("Signature=")[1] != second.headers["Authorization"].split("Signature=")[1]
    assert "SignedHeaders=host;x-amz-date" in third.headers["Authorization"]


def test_sigv4_region_comes_from_the_api_url_when_none_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from gnomon.adapters.sigv4 import SigV4Auth

    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    auth = SigV4Auth()
    assert auth.region_for(httpx.URL("https://abc.execute-api.ap-south-1.amazonaws.com/v1")) == "ap-south-1"
    with pytest.raises(RuntimeError, match="region"):
        auth.region_for(httpx.URL("https://api.example.com/v1"))
    assert SigV4Auth(region="eu-north-1").region_for(httpx.URL("https://x.example.com")) == "eu-north-1"


def test_times_need_an_offset() -> None:
    rec = recorder(lambda r: httpx.Response(200, json={"fire_times": [], "runs_created": 0}))
    with rec.client() as client:
        client.schedule("s").backfill(datetime(2026, 1, 1, tzinfo=UTC), "2026-01-02T00:00:00+02:00")
        with pytest.raises(ValueError, match="timezone-aware"):
            client.schedule("s").backfill(datetime(2026, 1, 1), datetime(2026, 1, 2))
    assert rec.bodies[0] == {"start": "2026-01-01T00:00:00+00:00", "end": "2026-01-02T00:00:00+02:00"}


# --- the schedule handle --------------------------------------------------------------------------


def test_handle_verbs_on_the_real_server(job: Client) -> None:
    handle = job.schedules.create(schedule_id="nightly", definition="job", spec=CRON, identity="me")
    assert isinstance(handle, ScheduleHandle) and handle.id == "nightly"
    assert handle.last_description is not None and handle.last_description["info"]["identity"] == "me"
    described = handle.describe()
    assert described["spec"]["cron"] == CRON["cron"] and len(described["info"]["next_fire_times"]) == 10

    until = datetime.now(UTC) + timedelta(hours=1)
    paused = handle.pause(note="maintenance", until=until, identity="ops")
    assert paused["state"]["paused"] is True and paused["state"]["note"] == "maintenance"
    assert paused["state"]["paused_until"] is not None and paused["info"]["identity"] == "ops"
    assert job.schedule("nightly").pause()["state"]["note"] == "paused"  # the default note
    unpaused = handle.unpause(note="back", catch_up="latest")
    assert unpaused["state"] == {**unpaused["state"], "paused": False, "note": "back"}

    run = handle.trigger(overlap="allow_all", input={"x": 1}, idempotency_key="k-1")
    assert run["trigger"] == "trigger" and run["input"] == {"x": 1}
    assert handle.trigger(idempotency_key="k-1")["run_id"] == run["run_id"]
    assert [r["run_id"] for r in handle.runs()] == [run["run_id"]]

    handle.delete(identity="ops")
    with pytest.raises(E.NotFound):
        handle.describe()
    assert job.schedules.get("nightly") is None


def test_request_id_replays_and_refuses_another_body(job: Client) -> None:
    handle = job.schedules.create(schedule_id="s", definition="job", spec=CRON)
    first = handle.pause(note="a", request_id="req-1")
    assert handle.pause(note="a", request_id="req-1") == first
    with pytest.raises(E.Conflict):
        handle.pause(note="b", request_id="req-1")


def test_update_is_read_modify_write(job: Client) -> None:
    handle = job.schedules.create(schedule_id="s", definition="job", spec=CRON, memo={"owner": "a"})
    seen: list[dict[str, Any]] = []

    def add_tag(description: dict[str, Any]) -> dict[str, Any]:
        seen.append(description)
        description["tags"] = ["reports"]
        return description  # the whole describe body goes back

    updated = handle.update(add_tag, identity="me")
    assert updated["tags"] == ["reports"] and updated["memo"] == {"owner": "a"}
    assert updated["conflict_token"] != seen[0]["conflict_token"]
    # only the changed fields
    assert handle.update(lambda d: {"memo": {}})["memo"] == {}


def test_update_retries_when_another_writer_got_in_between(job: Client) -> None:
    handle = job.schedules.create(schedule_id="s", definition="job", spec=CRON)
    calls: list[str] = []

    def updater(description: dict[str, Any]) -> dict[str, Any]:
        calls.append(description["conflict_token"])
        if len(calls) == 1:  # someone else changes it after our read
            job.put("/v1/schedules/s", {"tags": ["theirs"]})
        return {"tags": [*description["tags"], "mine"]}

    assert handle.update(updater)["tags"] == ["theirs", "mine"]
    assert len(calls) == 2 and calls[0] != calls[1]


def test_update_gives_up_after_max_attempts(job: Client) -> None:
    handle = job.schedules.create(schedule_id="s", definition="job", spec=CRON)
    n = iter(range(100))

    def always_raced(description: dict[str, Any]) -> dict[str, Any]:
        job.put("/v1/schedules/s", {"tags": [f"t{next(n)}"]})
        return {"memo": {"x": description["conflict_token"]}}

    with pytest.raises(E.Conflict):
        handle.update(always_raced, max_attempts=3)


def test_an_update_that_changes_nothing_is_not_sent(job: Client) -> None:
    handle = job.schedules.create(schedule_id="s", definition="job", spec=CRON)
    token = handle.describe()["conflict_token"]
    assert handle.update(lambda d: d)["conflict_token"] == token
    assert handle.update(lambda d: None)["conflict_token"] == token
    assert handle.update(lambda d: {"tags": []})["conflict_token"] == token


def test_backfill_sends_the_contract_body() -> None:
    rec = recorder(
        lambda r: httpx.Response(201, json={"fire_times": ["2026-01-01T09:00:00Z"], "runs_created": 1})
    )
    with rec.client() as client:
        answer = client.schedule("s").backfill(
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z",
            overlap="allow_all",
            identity="me",
            request_id="b-1",
        )
        client.schedule("s").backfill("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", dry_run=True)
    assert answer["runs_created"] == 1
    assert [(r.method, r.url.path) for r in rec.requests] == [("POST", "/v1/schedules/s/backfill")] * 2
    assert rec.bodies == [
        {
            "start": "2026-01-01T00:00:00Z",
            "end": "2026-01-02T00:00:00Z",
            "overlap": "allow_all",
            "identity": "me",
            "request_id": "b-1",
        },
        {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z", "dry_run": True},
    ]


def test_schedules_list_preview_and_bulk(job: Client) -> None:
    for sid in ("c", "a", "b"):
        job.schedules.create(schedule_id=sid, definition="job", spec=CRON, group="g" if sid != "b" else "h")
    job.schedule("a").pause()
    assert job.schedules.ids() == ["a", "b", "c"]
    assert job.schedules.ids(group="g") == ["a", "c"]
    assert job.schedules.ids(paused=True) == ["a"]
    assert [s["schedule_id"] for s in job.schedules.list(page_size=1)] == ["a", "b", "c"]
    times = job.preview("0 0 1 * *", start="2027-01-01T00:00:00Z", count=2)
    assert times == ["2027-02-01T00:00:00Z", "2027-03-01T00:00:00Z"]
    assert job.preview(
        {"cron": ["0 9 * * *"]}, timezone="Europe/Riga", start="2027-01-01T00:00:00Z", count=1
    ) == ["2027-01-01T07:00:00Z"]

    pages = iter([{"matched": 1000, "changed": 990, "next_page_token": "p2"}, {"matched": 5, "changed": 5}])
    rec = recorder(lambda r: httpx.Response(200, json=next(pages)))
    with rec.client() as client:
        assert client.schedules.bulk("pause", group="g", note="n") == {"matched": 1005, "changed": 995}
    assert rec.bodies == [
        {"action": "pause", "filter": {"group": "g"}, "note": "n"},
        {"action": "pause", "filter": {"group": "g"}, "note": "n", "page_token": "p2"},
    ]


# --- the definitions registry ---------------------------------------------------------------------


def test_registry_add_get_must_get_list(gn: Client) -> None:
    created = gn.definitions.add({"name": "b", "target": HOOK}, tags=["t"])
    assert created["version"] == 1 and created["signing_secret"]
    with pytest.raises(E.AlreadyExists):
        gn.definitions.add(name="b", target=HOOK)
    gn.definitions.add(name="a", target=HOOK)
    assert gn.definitions.get("ghost") is None
    with pytest.raises(E.NotFound) as info:
        gn.definitions.must_get("ghost")
    assert info.value.resource == "definition/ghost"
    assert gn.definitions.must_get("b")["tags"] == ["t"]
    assert gn.definitions.names() == ["a", "b"] and gn.definitions.names(tag="t") == ["b"]
    assert "a" in gn.definitions and "ghost" not in gn.definitions
    assert [d["name"] for d in gn.definitions] == ["a", "b"]
    replaced = gn.definitions.replace("a", {"target": HOOK, "description": "v2"}, version=1)
    assert replaced["version"] == 2
    with pytest.raises(E.Conflict) as conflict:
        gn.definitions.replace("a", {"target": HOOK}, version=1)
    assert conflict.value.current["version"] == 2
    assert [v["version"] for v in gn.definitions.versions("a")] == [2, 1]
    gn.definitions.delete("a")
    assert gn.definitions.names() == ["b"]


def test_list_follows_page_tokens(gn: Client) -> None:
    for i in range(5):
        gn.definitions.add(name=f"d{i}", target=HOOK)
    assert [d["name"] for d in gn.paginate("/v1/definitions", page_size=2)] == [f"d{i}" for i in range(5)]
    for i in range(3):
        gn.execute("d0", {"i": i}, run_id=f"r-{i}")
    runs = list(gn.list_runs(definition="d0", page_size=1))
    assert sorted(r["run_id"] for r in runs) == ["r-0", "r-1", "r-2"]
    assert len(list(gn.list_runs(page_size=1, limit=2))) == 2


def test_register_all_creates_replaces_and_leaves_equal_ones(gn: Client) -> None:
    first = gn.definitions.register_all([{"name": "a", "target": HOOK}, {"name": "b", "target": HOOK}])
    assert [(c.name, c.action) for c in first] == [("a", "create"), ("b", "create")]
    again = gn.definitions.register_all(
        [{"name": "a", "target": HOOK}, {"name": "b", "target": HOOK, "timeout_seconds": 30}]
    )
    assert [(c.name, c.action, c.fields) for c in again] == [
        ("a", "unchanged", []),
        ("b", "update", ["timeout_seconds"]),
    ]
    assert gn.definitions.must_get("b")["version"] == 2 and gn.definitions.must_get("a")["version"] == 1
    changes = gn.definitions.apply_schedules([{"schedule_id": "s", "definition": "a", "spec": CRON}])
    assert [(c.name, c.action) for c in changes] == [("s", "create")]
    changes = gn.schedules.apply([{"schedule_id": "s", "definition": "b", "spec": CRON}])
    assert [(c.name, c.action, c.fields) for c in changes] == [("s", "update", ["definition"])]
    assert gn.schedule("s").describe()["definition"] == "b"


# --- runs -----------------------------------------------------------------------------------------


def test_runs_on_the_real_server(job: Client) -> None:
    run = job.execute("job", {"a": 1}, run_id="r-1", memo={"m": 1})
    assert run["status"] == "pending" and run["memo"] == {"m": 1}
    assert job.execute("job", {"a": 1}, run_id="r-1") == run
    with pytest.raises(E.AlreadyExists):
        job.execute("job", {"a": 2}, run_id="r-1")
    assert job.get_run("r-1")["input"] == {"a": 1}
    assert job.history("r-1", max_events=0)["run_id"] == "r-1"
    assert [r["run_id"] for r in job.list_runs(status=["pending", "running"])] == ["r-1"]
    assert list(job.list_runs(status="completed")) == []
    with pytest.raises(E.Conflict):
        job.retry("r-1")  # only closed, unsuccessful runs
    with pytest.raises(E.NotFound):
        job.get_run("ghost")


@pytest.mark.parametrize(
    ("call", "method", "path", "body"),
    [
        (lambda c: c.cancel("r", "why"), "POST", "/v1/runs/r/cancel", {"reason": "why"}),
        (lambda c: c.terminate("r", identity="ops"), "POST", "/v1/runs/r/terminate", {"identity": "ops"}),
        (
            lambda c: c.signal("r", "go", {"n": 1}),
            "POST",
            "/v1/runs/r/signal",
            {"name": "go", "payload": {"n": 1}},
        ),
        (lambda c: c.query("r", "progress"), "POST", "/v1/runs/r/query", {"name": "progress", "args": None}),
        (lambda c: c.retry("r", request_id="x"), "POST", "/v1/runs/r/retry", {"request_id": "x"}),
        (
            lambda c: c.complete_run("r", "tok", 1),
            "POST",
            "/v1/runs/r/complete",
            {"callback_token": "tok", "result": 1},
        ),
        (
            lambda c: c.fail_run("r", "tok", "e"),
            "POST",
            "/v1/runs/r/fail",
            {"callback_token": "tok", "error": "e"},
        ),
        (lambda c: c.stats(timezone="Europe/Riga"), "GET", "/v1/stats?timezone=Europe%2FRiga", None),
        (lambda c: c.lateness(), "GET", "/v1/metrics/lateness", None),
        (
            lambda c: c.lateness(schedule="s", include=["firings", "durations"], timezone="Europe/Riga"),
            "GET",
            "/v1/metrics/lateness?schedule=s&include=firings%2Cdurations&timezone=Europe%2FRiga",
            None,
        ),
        (
            lambda c: c.upcoming("2026-01-01T00:00:00Z", "2026-01-01T12:00:00Z"),
            "GET",
            "/v1/upcoming?from=2026-01-01T00%3A00%3A00Z&to=2026-01-01T12%3A00%3A00Z",
            None,
        ),
        (
            lambda c: c.create_calendar({"name": "h", "calendars": []}),
            "POST",
            "/v1/calendars",
            {"name": "h", "calendars": []},
        ),
        (lambda c: c.get_calendar("h"), "GET", "/v1/calendars/h", None),
        (
            lambda c: c.put_group("g", max_schedules=5),
            "PUT",
            "/v1/groups/g",
            {"max_schedules": 5, "max_firings_per_second": None},
        ),
        (
            lambda c: c.send_event("order.created", "o-1", {"a": 1}),
            "POST",
            "/v1/events",
            {"type": "order.created", "key": "o-1", "payload": {"a": 1}},
        ),
        (lambda c: c.restart_operator("d", key="k"), "POST", "/v1/operators/d/restart", {"key": "k"}),
        (
            lambda c: c.create_task("t", {"x": 1}, task_id="t-1"),
            "POST",
            "/v1/tasks",
            {"topic": "t", "data": {"x": 1}, "task_id": "t-1"},
        ),
        (
            lambda c: c.reserve("t", "w", 30),
            "POST",
            "/v1/topics/t/reserve",
            {"worker_id": "w", "lease_seconds": 30},
        ),
        (
            lambda c: c.extend_lease("t-1", "w", 30, {"p": 1}, lease_token="L"),
            "POST",
            "/v1/tasks/t-1/extend-lease",
            {"worker_id": "w", "lease_seconds": 30, "lease_token": "L", "details": {"p": 1}},
        ),
        (
            lambda c: c.complete_task("t-1", "w", 7, lease_token="L"),
            "POST",
            "/v1/tasks/t-1/complete",
            {"worker_id": "w", "result": 7, "lease_token": "L"},
        ),
        (
            lambda c: c.fail_task("t-1", "w", {"code": "x"}),
            "POST",
            "/v1/tasks/t-1/fail",
            {"worker_id": "w", "error": {"code": "x"}},
        ),
        (
            lambda c: c.snooze_task("t-1", "w", 5),
            "POST",
            "/v1/tasks/t-1/snooze",
            {"worker_id": "w", "delay_seconds": 5},
        ),
        (lambda c: c.release_task("t-1", "w"), "POST", "/v1/tasks/t-1/release", {"worker_id": "w"}),
        (lambda c: c.revoke_lease("t-1", 4), "POST", "/v1/tasks/t-1/revoke-lease", {"record_version": 4}),
        (lambda c: c.topic("t"), "GET", "/v1/topics/t", None),
    ],
)
def test_endpoint_paths_and_bodies(call: Callable[[Client], Any], method: str, path: str, body: Any) -> None:
    rec = recorder(lambda r: httpx.Response(200, json={"details": None}))
    with rec.client() as client:
        call(client)
    (request,) = rec.requests
    assert (request.method, request.url.raw_path.decode()) == (method, path)
    assert rec.bodies[0] == body


def test_reserve_answers_none_when_idle() -> None:
    rec = recorder([httpx.Response(204)])
    with rec.client() as client:
        assert client.reserve("t", "w", 30) is None


def test_list_endpoints_follow_tokens() -> None:
    pages = {None: {"items": [{"task_id": "a"}], "next_page_token": "2"}, "2": {"items": [{"task_id": "b"}]}}
    rec = recorder(lambda r: httpx.Response(200, json=pages[r.url.params.get("page_token")]))
    with rec.client() as client:
        assert [t["task_id"] for t in client.list_tasks(topic="t", status="ready")] == ["a", "b"]
    assert rec.requests[1].url.params.get("topic") == "t"


# --- apply ----------------------------------------------------------------------------------------

CONFIG_YAML = """
definitions:
  - name: report
    target: {type: http, url: "https://example.com/hook"}
    tags: [reports]
schedules:
  - schedule_id: nightly
    definition: report
    spec: {cron: ["0 2 * * *"], timezone: Europe/Riga}
"""


def test_config_files_json_and_yaml() -> None:
    cfg = parse_config(CONFIG_YAML)
    assert [d["name"] for d in cfg.definitions] == ["report"] and cfg.schedules[0]["schedule_id"] == "nightly"
    as_json = parse_config(json.dumps({"definitions": cfg.definitions, "schedules": cfg.schedules}))
    assert as_json.definitions == cfg.definitions and as_json.schedules == cfg.schedules
    assert parse_config("").definitions == []


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"definitions": [], "schedule": []}', "schedule"),
        ('{"definitions": {}}', "definitions"),
        ('{"definitions": [1]}', "definitions[0]"),
        ('{"definitions": [{"target": {}}]}', "definitions[0].name"),
        (
            '{"definitions": [{"name": "a", "target": {"type": "http", "url": "https://x"}},'
            ' {"name": "a", "target": {"type": "http", "url": "https://x"}}]}',
            "definitions[1].name",
        ),
        ("[1, 2]", ""),
        ("{nope", ""),
        ("a: [", ""),
    ],
)
def test_config_errors_name_the_field(text: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="f.yaml")
    assert info.value.errors[0]["field"] == field and str(info.value).startswith("f.yaml: ")


def test_plan_errors_name_the_field_before_anything_changes(gn: Client) -> None:
    bad = Config(definitions=[{"name": "a", "target": HOOK, "retry": {"max_attempts": 0}}])
    with pytest.raises(ConfigError) as info:
        plan(gn, bad)
    assert info.value.errors[0]["field"] == "definitions[0].retry.max_attempts"
    bad = Config(schedules=[{"schedule_id": "s", "definition": "a", "spec": {"cron": ["61 * * * *"]}}])
    with pytest.raises(ConfigError) as info:
        plan(gn, bad)
    assert info.value.errors[0]["field"].startswith("schedules[0].spec")
    assert gn.definitions.names() == []


def test_plan_apply_then_unchanged(monkeypatch: pytest.MonkeyPatch, gn: Client) -> None:
    monkeypatch.setattr(
        "gnomon.domain.netpolicy._policy.allowed", [__import__("ipaddress").ip_network("127.0.0.0/8")]
    )
    cfg = parse_config(CONFIG_YAML)
    first = plan(gn, cfg)
    assert first.lines() == ["+ create definition report", "+ create schedule nightly"]
    assert first.summary() == "2 to create, 0 to update, 0 to delete, 0 unchanged"
    done = apply_plan(gn, first, identity="ci")
    assert all(c.result for c in done)
    assert gn.schedule("nightly").describe()["info"]["identity"] == "ci"
    again = plan(gn, cfg)
    assert again.lines() == ["= unchanged definition report", "= unchanged schedule nightly"]
    assert not again.has_changes

    # a pause by an operator is not drift
    gn.schedule("nightly").pause(note="incident")
    assert not plan(gn, cfg).has_changes

    cfg.definitions[0]["timeout_seconds"] = 30
    cfg.schedules[0]["spec"]["cron"] = ["0 3 * * *"]
    cfg.schedules[0]["tags"] = ["x"]
    changed = plan(gn, cfg)
    assert changed.lines() == [
        "~ update definition report (timeout_seconds)",
        "~ update schedule nightly (spec, tags)",
    ]
    apply_plan(gn, changed)
    assert gn.definitions.must_get("report")["version"] == 2
    described = gn.schedule("nightly").describe()
    assert described["spec"]["cron"] == ["0 3 * * *"] and described["state"]["paused"] is True
    assert not plan(gn, cfg).has_changes

    # leaving a field out means its default
    del cfg.definitions[0]["timeout_seconds"]
    assert plan(gn, cfg).lines()[0] == "~ update definition report (timeout_seconds)"


def test_the_target_network_policy_is_left_to_the_server(gn: Client) -> None:
    # dev allows loopback targets, AWS does not: planning must not decide that locally
    the_plan = plan(gn, Config(definitions=[{"name": "local", "target": LOOPBACK_HOOK}]))
    assert the_plan.lines() == ["+ create definition local"]
    assert the_plan.changes[0].desired["target"]["url"] == LOOPBACK_HOOK["url"]
    with pytest.raises(ApplyError) as info:  # this in-process server refuses loopback
        apply_plan(gn, the_plan)
    assert isinstance(info.value.cause, E.InvalidArgument) and info.value.cause.field == "target.url"


def test_prune_deletes_what_the_file_does_not_name(gn: Client) -> None:
    gn.definitions.add(name="keep", target=HOOK)
    gn.definitions.add(name="old", target=HOOK)
    gn.schedules.create(schedule_id="old-s", definition="old", spec=CRON)
    cfg = Config(definitions=[{"name": "keep", "target": HOOK}])
    assert [c.action for c in plan(gn, cfg).changes] == ["unchanged"]
    pruning = plan(gn, cfg, prune=True)
    assert pruning.lines() == [
        "= unchanged definition keep",
        "- delete schedule old-s",
        "- delete definition old",
    ]
    apply_plan(gn, pruning)
    assert gn.definitions.names() == ["keep"] and gn.schedules.ids() == []


def test_prune_refuses_to_delete_a_definition_the_file_still_uses(gn: Client) -> None:
    gn.definitions.add(name="outside", target=HOOK)
    cfg = Config(schedules=[{"schedule_id": "s", "definition": "outside", "spec": CRON}])
    assert plan(gn, cfg).lines() == ["+ create schedule s"]
    with pytest.raises(ConfigError) as info:
        plan(gn, cfg, prune=True)
    assert info.value.errors[0]["field"] == "schedules[0].definition"


def test_a_change_between_plan_and_apply_is_a_conflict(gn: Client) -> None:
    gn.definitions.add(name="a", target=HOOK)
    the_plan = plan(gn, Config(definitions=[{"name": "a", "target": HOOK, "description": "mine"}]))
    gn.definitions.replace("a", {"target": HOOK, "description": "theirs"})
    with pytest.raises(ApplyError) as info:
        apply_plan(gn, the_plan)
    assert isinstance(info.value.cause, E.Conflict) and info.value.applied == []
    assert gn.definitions.must_get("a")["description"] == "theirs"


# --- the worker SDK against a fake tasks API ------------------------------------------------------


class FakeTasks:
    """CONTRACT.md §8 for one topic, in-process: reserve (oldest ready first, else 204), and the
    lease life cycle with its checks in the contract's order and `lease_token` fencing."""

    def __init__(self, topic: str = "jobs", skew: float = 0.0) -> None:
        self.topic = topic
        self.skew = skew
        self.tasks: dict[str, dict[str, Any]] = {}
        self.ready_at: dict[str, float] = {}
        self.expires: dict[str, float] = {}
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str, Any]] = []

    def client(self) -> Client:
        return Client("http://fake.test", transport=httpx.MockTransport(self.handle), retries=0)

    def add(self, data: Any = None, task_id: str | None = None, max_attempts: int = 3) -> str:
        with self.lock:
            tid = task_id or f"t-{len(self.tasks):03d}"
            self.tasks[tid] = {
                "task_id": tid,
                "topic": self.topic,
                "data": data,
                "status": "ready",
                "attempts": 0,
                "max_attempts": max_attempts,
                "lease": None,
                "inbox": [],
                "details": None,
                "record_version": 1,
                "result": None,
                "error": None,
            }
            self.ready_at[tid] = time.monotonic()
            return tid

    def signal(self, task_id: str, name: str, payload: Any = None) -> None:
        with self.lock:
            self.tasks[task_id]["inbox"].append({"name": name, "payload": payload})

    def revoke(self, task_id: str) -> None:
        with self.lock:
            self._free(self.tasks[task_id], "ready")

    def count(self, action: str) -> int:
        return sum(1 for _, path, _ in self.calls if path.endswith("/" + action))

    def _free(self, task: dict[str, Any], status: str) -> None:
        task.update(status=status, lease=None)
        task["record_version"] += 1
        self.ready_at[task["task_id"]] = time.monotonic()

    def _sweep(self, now: float) -> None:
        for tid, task in self.tasks.items():
            if task["status"] == "snoozed" and now >= self.ready_at[tid]:
                task["status"] = "ready"
            if task["status"] == "leased" and now >= self.expires[tid] + self.skew:
                task["attempts"] += 1
                if task["attempts"] >= task["max_attempts"]:
                    task["error"] = {"code": "lease_expired"}
                    self._free(task, "failed")
                else:
                    self._free(task, "ready")

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        parts = request.url.path.strip("/").split("/")
        with self.lock:
            self.calls.append((request.method, request.url.path, body))
            now = time.monotonic()
            self._sweep(now)
            if parts[:2] == ["v1", "topics"] and parts[3:] == ["reserve"]:
                return self._reserve(parts[2], body, now)
            if parts[:2] == ["v1", "tasks"] and len(parts) == 4:
                return self._act(parts[2], parts[3], body, now)
        return err(404, "not_found", {"resource": f"route/{request.method} {request.url.path}"})

    def _reserve(self, topic: str, body: dict[str, Any], now: float) -> httpx.Response:
        ready = [t for t in self.tasks.values() if t["status"] == "ready" and t["topic"] == topic]
        if not ready:
            return httpx.Response(204)
        task = min(ready, key=lambda t: (self.ready_at[t["task_id"]], t["task_id"]))
        self.expires[task["task_id"]] = now + body["lease_seconds"]
        task.update(status="leased", lease={"owner": body["worker_id"], "token": uuid.uuid4().hex})
        task["record_version"] += 1
        return httpx.Response(200, json=task)

    def _act(self, tid: str, action: str, body: dict[str, Any], now: float) -> httpx.Response:
        task = self.tasks.get(tid)
        if task is None:
            return err(404, "not_found", {"resource": f"task/{tid}"})
        if task["status"] in ("completed", "failed"):
            return err(409, "already_done")
        lease = task["lease"]
        if task["status"] != "leased" or lease["owner"] != body.get("worker_id"):
            return err(409, "wrong_owner")
        if now >= self.expires[tid]:
            return err(409, "lease_expired")
        if "lease_token" in body and body["lease_token"] != lease["token"]:
            return err(409, "wrong_owner")
        task["record_version"] += 1
        if action == "extend-lease":
            self.expires[tid] = now + body["lease_seconds"]
            if "details" in body:
                task["details"] = body["details"]
        elif action == "complete":
            task["result"] = body.get("result")
            self._free(task, "completed")
        elif action == "fail":
            task["attempts"] += 1
            task["error"] = body["error"]
            self._free(task, "ready" if task["attempts"] < task["max_attempts"] else "failed")
        elif action == "snooze":
            self._free(task, "snoozed")
            self.ready_at[tid] = now + body["delay_seconds"]
        elif action == "release":
            self._free(task, "ready")
        return httpx.Response(200, json=task)


def serve(
    fake: FakeTasks, handler: Callable[[dict[str, Any], TaskContext], Any], **kw: Any
) -> tuple[Worker, threading.Thread]:
    kw.setdefault("idle_backoff", (0.01, 0.05))
    kw.setdefault("install_signal_handlers", False)
    worker = Worker(fake.topic, handler, client=fake.client(), worker_id="w-1", **kw)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return worker, thread


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def stop(worker: Worker, thread: threading.Thread) -> None:
    worker.stop()
    thread.join(10)
    assert not thread.is_alive()


def test_worker_completes_with_the_result_and_fences_with_the_token() -> None:
    fake = FakeTasks()
    tid = fake.add({"n": 2})
    worker, thread = serve(fake, lambda task, ctx: {"double": task["data"]["n"] * 2})
    wait_for(lambda: fake.tasks[tid]["status"] == "completed")
    stop(worker, thread)
    assert fake.tasks[tid]["result"] == {"double": 4}
    complete = [body for _, path, body in fake.calls if path.endswith("/complete")]
    assert complete[0]["lease_token"] and complete[0]["worker_id"] == "w-1"
    assert worker.stats.completed == 1 and worker.stats.reserved == 1


def test_worker_fails_with_the_exception_then_the_retry_succeeds() -> None:
    fake = FakeTasks()
    tid = fake.add({})

    def flaky(task: dict[str, Any], ctx: TaskContext) -> str:
        if ctx.attempt == 1:
            raise ValueError("not yet")
        return "done"

    worker, thread = serve(fake, flaky)
    wait_for(lambda: fake.tasks[tid]["status"] == "completed")
    stop(worker, thread)
    assert fake.tasks[tid]["attempts"] == 1 and fake.tasks[tid]["result"] == "done"
    error = fake.tasks[tid]["error"]
    assert error["code"] == "ValueError" and error["message"] == "not yet"
    assert "Traceback" in error["details"]["traceback"]
    assert (worker.stats.failed, worker.stats.completed) == (1, 1)


def test_a_result_that_is_not_json_fails_the_task() -> None:
    fake = FakeTasks()
    tid = fake.add({}, max_attempts=1)
    worker, thread = serve(fake, lambda task, ctx: {1, 2})
    wait_for(lambda: fake.tasks[tid]["status"] == "failed")
    stop(worker, thread)
    assert fake.tasks[tid]["error"]["code"] == "TypeError"


def test_the_lease_is_extended_on_a_timer_with_heartbeat_details() -> None:
    fake = FakeTasks()
    tid = fake.add({})

    def slow(task: dict[str, Any], ctx: TaskContext) -> str:
        for i in range(6):
            ctx.heartbeat({"step": i})
            time.sleep(0.25)
        return "ok"

    worker, thread = serve(fake, slow, lease_seconds=1, heartbeat_every=0.3)
    wait_for(lambda: fake.tasks[tid]["status"] == "completed")
    stop(worker, thread)
    assert fake.tasks[tid]["attempts"] == 0  # the 1 s lease never ran out in 1.5 s of work
    extends = [body for _, path, body in fake.calls if path.endswith("/extend-lease")]
    assert len(extends) >= 3 and all(b["lease_token"] == extends[0]["lease_token"] for b in extends)
    assert extends[-1]["details"]["step"] >= 3 and fake.tasks[tid]["details"] == extends[-1]["details"]


def test_signals_arrive_with_the_next_extension() -> None:
    fake = FakeTasks()
    tid = fake.add({})
    got: list[Any] = []

    def waits_for_go(task: dict[str, Any], ctx: TaskContext) -> Any:
        signal_ = ctx.wait_signal(timeout=5)
        got.append(signal_)
        got.append(ctx.signals())
        return signal_["payload"] if signal_ else None

    worker, thread = serve(fake, waits_for_go, lease_seconds=5, heartbeat_every=0.1)
    wait_for(lambda: fake.tasks[tid]["status"] == "leased")
    fake.signal(tid, "go", {"speed": 3})
    wait_for(lambda: fake.tasks[tid]["status"] == "completed")
    stop(worker, thread)
    assert got == [{"name": "go", "payload": {"speed": 3}}, []] and fake.tasks[tid]["result"] == {"speed": 3}


def test_inbox_signals_are_delivered_once_whether_cumulative_or_drained() -> None:
    ctx = TaskContext({"task_id": "t", "inbox": []}, "w", threading.Event())
    ctx._deliver([{"n": 1}])
    ctx._deliver([{"n": 1}, {"n": 2}])  # a cumulative inbox
    ctx._deliver([{"n": 3}])  # an inbox drained on delivery
    assert ctx.signals() == [{"n": 1}, {"n": 2}, {"n": 3}] and ctx.signals() == []
    assert ctx.inbox == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_snooze_hands_the_task_back_without_an_attempt() -> None:
    fake = FakeTasks()
    tid = fake.add({})
    worker, thread = serve(fake, lambda task, ctx: ctx.snooze(60))
    wait_for(lambda: fake.tasks[tid]["status"] == "snoozed")
    stop(worker, thread)
    assert fake.tasks[tid]["attempts"] == 0 and worker.stats.snoozed == 1 and fake.count("complete") == 0


def test_a_lost_lease_is_never_completed() -> None:
    fake = FakeTasks()
    tid = fake.add({})
    noticed: list[str] = []

    def stubborn(task: dict[str, Any], ctx: TaskContext) -> str:
        if noticed:
            return "second holder"
        fake.revoke(tid)  # e.g. an operator's revoke-lease, or expiry and another worker's reserve
        try:
            for _ in range(100):
                ctx.heartbeat()
                time.sleep(0.05)
        except LeaseLost:
            noticed.append("lost")
        return "too late"

    worker, thread = serve(fake, stubborn, lease_seconds=5, heartbeat_every=0.05, concurrency=1)
    wait_for(lambda: fake.tasks[tid]["status"] == "completed")
    stop(worker, thread)
    assert noticed == ["lost"] and worker.stats.lost == 1
    assert fake.tasks[tid]["result"] == "second holder" and fake.count("complete") == 1


def test_a_stale_token_is_refused_even_for_the_same_worker_id() -> None:
    fake = FakeTasks()
    tid = fake.add({})
    client = fake.client()
    first = client.reserve("jobs", "w-1", 30)
    assert first is not None
    fake.revoke(tid)
    second = client.reserve("jobs", "w-1", 30)
    assert second is not None and second["lease"]["token"] != first["lease"]["token"]
    with pytest.raises(E.WrongOwner):
        client.complete_task(tid, "w-1", "x", lease_token=first["lease"]["token"])
    client.complete_task(tid, "w-1", "x", lease_token=second["lease"]["token"])
    with pytest.raises(E.AlreadyDone):
        client.complete_task(tid, "w-1", "x")


def test_an_idle_worker_backs_off() -> None:
    fake = FakeTasks()
    worker, thread = serve(fake, lambda task, ctx: None, idle_backoff=(0.05, 0.2))
    time.sleep(1.0)
    stop(worker, thread)
    reserves = fake.count("reserve")
    assert 3 <= reserves <= 12  # 0.05, 0.1, 0.2, 0.2, … — not a busy loop


def test_concurrency_bounds_the_handlers_running_at_once() -> None:
    fake = FakeTasks()
    ids = [fake.add({"i": i}) for i in range(6)]
    running: list[int] = []
    peak: list[int] = []
    lock = threading.Lock()

    def work(task: dict[str, Any], ctx: TaskContext) -> int:
        with lock:
            running.append(1)
            peak.append(len(running))
        time.sleep(0.1)
        with lock:
            running.pop()
        return int(task["data"]["i"])

    worker, thread = serve(fake, work, concurrency=2)
    wait_for(lambda: all(fake.tasks[t]["status"] == "completed" for t in ids))
    stop(worker, thread)
    assert max(peak) == 2 and worker.stats.completed == 6


def test_shutdown_finishes_running_work() -> None:
    fake = FakeTasks()
    tid = fake.add({})
    started = threading.Event()

    def short(task: dict[str, Any], ctx: TaskContext) -> str:
        started.set()
        time.sleep(0.3)
        return "finished"

    worker, thread = serve(fake, short, shutdown_grace=5)
    started.wait(5)
    stop(worker, thread)
    assert fake.tasks[tid]["status"] == "completed" and worker.stats.released == 0


def test_shutdown_releases_leases_after_the_grace_period() -> None:
    fake = FakeTasks()
    tid = fake.add({})
    started, saw_stop = threading.Event(), []

    def long(task: dict[str, Any], ctx: TaskContext) -> str:
        started.set()
        while not ctx.lease_lost.is_set():
            time.sleep(0.02)
        saw_stop.append(ctx.stopping.is_set())
        return "discarded"

    worker, thread = serve(fake, long, shutdown_grace=0.2)
    started.wait(5)
    stop(worker, thread)
    assert fake.tasks[tid]["status"] == "ready" and fake.tasks[tid]["attempts"] == 0
    assert worker.stats.released == 1
    wait_for(lambda: saw_stop == [True])
    time.sleep(0.05)
    assert fake.count("complete") == 0


def test_sigterm_stops_the_worker_gracefully() -> None:
    fake = FakeTasks()
    tid = fake.add({})
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()

    def work(task: dict[str, Any], ctx: TaskContext) -> str:
        time.sleep(0.5)  # the signal arrives while this runs: it still completes
        return "ok"

    worker = Worker(fake.topic, work, client=fake.client(), idle_backoff=(0.01, 0.05), shutdown_grace=5)
    stats = worker.run()  # in the main thread: installs the handlers
    timer.join()
    assert stats.completed == 1 and fake.tasks[tid]["status"] == "completed"
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_missing_tasks_api_stops_the_worker() -> None:
    def no_route(request: httpx.Request) -> httpx.Response:
        return err(404, "not_found", {"resource": "route/POST /v1/topics/x/reserve"})

    client = Client("http://x.test", transport=httpx.MockTransport(no_route))
    with pytest.raises(E.NotFound):
        Worker("x", lambda t, c: None, client=client, install_signal_handlers=False).run()


def test_error_document_shape() -> None:
    try:
        raise KeyError("k")
    except KeyError as exc:
        doc = error_document(exc)
    assert doc["code"] == "KeyError" and doc["details"]["type"] == "builtins.KeyError"
