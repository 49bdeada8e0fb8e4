"""The task endpoints (CONTRACT.md §4, §8) through the real API handler over in-memory stores.

Until app.py includes the task router, the `tapi` fixture includes it into `gnomon.api.app.app`
itself (once per process; a no-op once app.py does). Time is frozen with time_machine, so lease
expiry and snoozes are moved by `clock.shift(seconds)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine

from gnomon.services.tasks import tasks_service
from tests.unit.apiclient import Answer, ApiClient

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _include_task_router() -> None:
    from gnomon.api.app import app
    from gnomon.api.tasks import router

    routes = app._static_routes + app._dynamic_routes
    if not any(r.rule.match("/v1/leases") for r in routes):
        app.include_router(router)


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def _fresh_tasks_service() -> None:
    """Forget the cached task service (a no-op once it is built by the cached `wiring.services()`,
    which the `api` fixture clears)."""
    clear = getattr(tasks_service, "cache_clear", None)
    if clear is not None:
        clear()


@pytest.fixture
def tapi(api: ApiClient, clock: time_machine.Coordinates) -> Iterator[ApiClient]:
    _include_task_router()
    _fresh_tasks_service()
    yield api
    _fresh_tasks_service()


def create(api: ApiClient, task_id: str = "t-1", **body: Any) -> dict[str, Any]:
    r = api.post("/v1/tasks", {"topic": "reports", "task_id": task_id, **body})
    assert r.status == 201, r.body
    return dict(r.body)


def reserve(api: ApiClient, worker: str = "w1", lease_seconds: float = 30, topic: str = "reports") -> Answer:
    return api.post(f"/v1/topics/{topic}/reserve", {"worker_id": worker, "lease_seconds": lease_seconds})


def code(r: Answer) -> tuple[int, str | None]:
    return r.status, (r.body or {}).get("error", {}).get("code")


# --- create and read ------------------------------------------------------------------------------


def test_create_answers_every_field_with_defaults(tapi: ApiClient) -> None:
    r = tapi.post("/v1/tasks", {"topic": "reports"})
    assert r.status == 201, r.body
    b = dict(r.body)
    assert b.pop("task_id").startswith("t-")
    assert b.pop("updated_by").startswith("arn:aws:iam::") and b.pop("identity") is None
    assert b == {
        "topic": "reports",
        "sub_topic": None,
        "task_group_id": None,
        "data": {},
        "status": "ready",
        "attempts": 0,
        "max_attempts": 3,
        "not_before": None,
        "lease": None,
        "inbox": [],
        "details": None,
        "record_version": 1,
        "result": None,
        "error": None,
        "run_id": None,
        "created_at": "2026-12-01T10:00:00Z",
        "updated_at": "2026-12-01T10:00:00Z",
    }
    got = tapi.get(f"/v1/tasks/{r.body['task_id']}")
    assert got.status == 200 and got.body == r.body


def test_create_with_every_field(tapi: ApiClient) -> None:
    b = create(
        tapi,
        "t-123",
        data={"n": 1},
        sub_topic="pdf",
        task_group_id="batch-7",
        max_attempts=5,
        not_before="2026-12-01T12:00:00+02:00",
        identity="alice",
    )
    assert (b["task_id"], b["sub_topic"], b["task_group_id"], b["max_attempts"]) == (
        "t-123",
        "pdf",
        "batch-7",
        5,
    )
    assert b["data"] == {"n": 1} and b["identity"] == "alice"
    assert b["status"] == "ready" and b["not_before"] == "2026-12-01T10:00:00Z"  # not in the future


def test_same_task_id_again_is_already_exists_and_a_replay_is_200(tapi: ApiClient) -> None:
    first = tapi.post("/v1/tasks", {"topic": "reports", "task_id": "t-1", "request_id": "r-1"})
    assert first.status == 201
    replay = tapi.post("/v1/tasks", {"topic": "reports", "task_id": "t-1", "request_id": "r-1"})
    assert replay.status == 200 and replay.body == first.body
    assert code(tapi.post("/v1/tasks", {"topic": "reports", "task_id": "t-1"})) == (409, "already_exists")
    other = tapi.post("/v1/tasks", {"topic": "other", "task_id": "t-1", "request_id": "r-1"})
    assert code(other) == (409, "conflict")


def test_get_unknown_task_is_404(tapi: ApiClient) -> None:
    r = tapi.get("/v1/tasks/nope")
    assert code(r) == (404, "not_found") and r.body["error"]["details"]["resource"] == "task/nope"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "topic"),
        ({"topic": "has space"}, "topic"),
        ({"topic": "r", "task_id": "-bad"}, "task_id"),
        ({"topic": "r", "max_attempts": 0}, "max_attempts"),
        ({"topic": "r", "max_attempts": "many"}, "max_attempts"),
        ({"topic": "r", "not_before": "2026-12-01T10:00:00"}, "not_before"),
        ({"topic": "r", "not_before": "soon"}, "not_before"),
        ({"topic": "r", "data": {"x": "a" * (65 * 1024)}}, "data"),
        ({"topic": "r", "sub_topic": "a b"}, "sub_topic"),
        ({"topic": "r", "task_group_id": ""}, "task_group_id"),
        ({"topic": "r", "colour": "red"}, "colour"),
    ],
)
def test_bad_creates_are_422_naming_the_field(tapi: ApiClient, body: dict[str, Any], field: str) -> None:
    r = tapi.post("/v1/tasks", body)
    assert code(r) == (422, "invalid_argument"), r.body
    assert r.body["error"]["details"][0]["field"] == field, r.body
    assert tapi.get("/v1/tasks").body["items"] == []


def test_server_owned_fields_are_ignored_on_create(tapi: ApiClient) -> None:
    b = create(tapi, status="completed", record_version=9, created_at="2020-01-01T00:00:00Z")
    assert (b["status"], b["record_version"], b["created_at"]) == ("ready", 1, "2026-12-01T10:00:00Z")


# --- reserve --------------------------------------------------------------------------------------


def test_reserve_leases_the_oldest_ready_task_or_answers_204(tapi: ApiClient, clock: Any) -> None:
    assert reserve(tapi).status == 204
    create(tapi, "b")
    create(tapi, "a")  # same instant: by task_id
    clock.shift(1)
    create(tapi, "0-newer")
    got = [reserve(tapi, f"w{i}") for i in range(4)]
    assert [r.status for r in got] == [200, 200, 200, 204]
    assert [r.body["task_id"] for r in got[:3]] == ["a", "b", "0-newer"]
    first = got[0].body
    assert first["status"] == "leased" and first["record_version"] == 2
    assert first["lease"]["owner"] == "w0" and first["lease"]["expires_at"] == "2026-12-01T10:00:31Z"
    assert len({r.body["lease"]["token"] for r in got[:3]}) == 3
    assert reserve(tapi, topic="other").status == 204


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lease_seconds": 30}, "worker_id"),
        ({"worker_id": "w"}, "lease_seconds"),
        ({"worker_id": "w", "lease_seconds": 0}, "lease_seconds"),
        ({"worker_id": "w", "lease_seconds": 43201}, "lease_seconds"),
        ({"worker_id": "", "lease_seconds": 30}, "worker_id"),
        ({"worker_id": "w", "lease_seconds": 30, "extra": 1}, "extra"),
    ],
)
def test_bad_reserves_are_422(tapi: ApiClient, body: dict[str, Any], field: str) -> None:
    create(tapi)
    r = tapi.post("/v1/topics/reports/reserve", body)
    assert code(r) == (422, "invalid_argument") and r.body["error"]["details"][0]["field"] == field
    assert tapi.get("/v1/tasks/t-1").body["status"] == "ready"


def test_empty_action_body_counts_as_empty_object(tapi: ApiClient) -> None:
    r = tapi.request("POST", "/v1/topics/reports/reserve", raw=b"")
    assert code(r) == (422, "invalid_argument")
    assert {d["field"] for d in r.body["error"]["details"]} == {"worker_id", "lease_seconds"}


def test_lease_seconds_bounds_are_accepted(tapi: ApiClient) -> None:
    create(tapi, "a")
    create(tapi, "b")
    assert reserve(tapi, lease_seconds=1).body["lease"]["expires_at"] == "2026-12-01T10:00:01Z"
    assert reserve(tapi, lease_seconds=43200).body["lease"]["expires_at"] == "2026-12-01T22:00:00Z"


def test_a_new_reservation_gets_a_new_token(tapi: ApiClient, clock: Any) -> None:
    create(tapi)
    first = reserve(tapi, "w1", 10).body["lease"]["token"]
    tapi.post("/v1/tasks/t-1/release", {"worker_id": "w1"})
    second = reserve(tapi, "w1", 10).body["lease"]["token"]
    assert first != second


# --- the owner's calls and §8's error order ---------------------------------------------------------


def test_extend_lease_moves_expiry_keeps_token_records_details_and_answers_inbox(
    tapi: ApiClient, clock: Any
) -> None:
    create(tapi)
    lease = reserve(tapi, "w1", 30).body["lease"]
    clock.shift(20)
    r = tapi.post(
        "/v1/tasks/t-1/extend-lease", {"worker_id": "w1", "lease_seconds": 60, "details": {"pct": 40}}
    )
    assert r.status == 200, r.body
    assert r.body["lease"] == {**lease, "expires_at": "2026-12-01T10:01:20Z"}
    assert r.body["details"] == {"pct": 40} and r.body["inbox"] == [] and r.body["record_version"] == 3
    clock.shift(50)  # past the first expiry, within the extended one
    r = tapi.post(
        "/v1/tasks/t-1/extend-lease", {"worker_id": "w1", "lease_seconds": 5, "lease_token": lease["token"]}
    )
    assert r.status == 200 and r.body["details"] == {"pct": 40}  # omitted details are kept
    r = tapi.post("/v1/tasks/t-1/extend-lease", {"worker_id": "w1", "lease_seconds": 5, "details": None})
    assert r.status == 200 and r.body["details"] is None


def test_extend_answers_signals_in_the_inbox(tapi: ApiClient) -> None:
    create(tapi)
    reserve(tapi, "w1")
    tasks_service().signal("t-1", {"name": "stop", "payload": {"why": "test"}})
    r = tapi.post("/v1/tasks/t-1/extend-lease", {"worker_id": "w1", "lease_seconds": 30})
    assert r.body["inbox"] == [{"name": "stop", "payload": {"why": "test"}}]


ACTIONS: list[tuple[str, dict[str, Any]]] = [
    ("extend-lease", {"lease_seconds": 30}),
    ("complete", {"result": {"ok": True}}),
    ("fail", {"error": "boom"}),
    ("snooze", {"delay_seconds": 10}),
    ("release", {}),
]


@pytest.mark.parametrize(("action", "extra"), ACTIONS)
def test_owner_errors_in_contract_order(
    tapi: ApiClient, clock: Any, action: str, extra: dict[str, Any]
) -> None:
    def call(task_id: str, worker: str, **more: Any) -> tuple[int, str | None]:
        return code(tapi.post(f"/v1/tasks/{task_id}/{action}", {"worker_id": worker, **extra, **more}))

    # 404 first
    assert call("nope", "w1") == (404, "not_found")
    # not leased → wrong_owner
    create(tapi, "ready")
    assert call("ready", "w1") == (409, "wrong_owner")
    # done → already_done, before ownership and the token
    create(tapi, "done")
    assert {reserve(tapi, "w1").body["task_id"] for _ in range(2)} == {"done", "ready"}
    assert tapi.post("/v1/tasks/done/complete", {"worker_id": "w1"}).status == 200
    assert call("done", "w2", lease_token="forged") == (409, "already_done")
    # leased to another → wrong_owner
    assert call("ready", "w2") == (409, "wrong_owner")
    # the owner with another lease's token → wrong_owner
    assert call("ready", "w1", lease_token="not-the-token") == (409, "wrong_owner")
    # expired (now ≥ expires_at): another worker still hears wrong_owner, the owner lease_expired
    clock.shift(30)
    assert call("ready", "w2") == (409, "wrong_owner")
    assert call("ready", "w1", lease_token="not-the-token") == (409, "lease_expired")
    clock.shift(5)  # past the skew allowance, not yet reserved by another: still the owner's to hear
    assert call("ready", "w1") == (409, "lease_expired")
    # nothing above changed the task
    assert tapi.get("/v1/tasks/ready").body["record_version"] == 2


def test_a_lapsed_last_lease_is_already_done(tapi: ApiClient, clock: Any) -> None:
    create(tapi, max_attempts=1)
    reserve(tapi, "w1", 10)
    clock.shift(10.5)
    assert code(tapi.post("/v1/tasks/t-1/complete", {"worker_id": "w1"})) == (409, "already_done")
    b = tapi.get("/v1/tasks/t-1").body
    assert b["status"] == "failed" and b["error"]["code"] == "lease_expired" and b["attempts"] == 1


def test_the_right_token_is_accepted(tapi: ApiClient) -> None:
    create(tapi)
    token = reserve(tapi, "w1").body["lease"]["token"]
    r = tapi.post("/v1/tasks/t-1/complete", {"worker_id": "w1", "lease_token": token, "result": [1, 2]})
    assert r.status == 200 and r.body["status"] == "completed" and r.body["result"] == [1, 2]
    assert r.body["lease"] is None and r.body["attempts"] == 0


@pytest.mark.parametrize(
    ("action", "body", "field"),
    [
        ("extend-lease", {"worker_id": "w1"}, "lease_seconds"),
        ("extend-lease", {"worker_id": "w1", "lease_seconds": 0.5}, "lease_seconds"),
        ("extend-lease", {"lease_seconds": 30}, "worker_id"),
        ("complete", {"worker_id": "w1", "result": {"x": "a" * (65 * 1024)}}, "result"),
        ("fail", {"worker_id": "w1", "reason": "x"}, "reason"),
        ("snooze", {"worker_id": "w1"}, "delay_seconds"),
        ("snooze", {"worker_id": "w1", "delay_seconds": -1}, "delay_seconds"),
        ("release", {}, "worker_id"),
        ("release", {"worker_id": "w1", "lease_token": 5}, "lease_token"),
        ("revoke-lease", {}, "record_version"),
        ("revoke-lease", {"record_version": "two"}, "record_version"),
    ],
)
def test_bad_action_bodies_are_422_and_change_nothing(
    tapi: ApiClient, action: str, body: dict[str, Any], field: str
) -> None:
    create(tapi)
    reserve(tapi, "w1")
    r = tapi.post(f"/v1/tasks/t-1/{action}", body)
    assert code(r) == (422, "invalid_argument"), r.body
    assert r.body["error"]["details"][0]["field"] == field, r.body
    assert tapi.get("/v1/tasks/t-1").body["record_version"] == 2


# --- fail, snooze, release, revoke --------------------------------------------------------------------


def test_fail_is_ready_again_until_attempts_run_out(tapi: ApiClient) -> None:
    create(tapi, max_attempts=2)
    reserve(tapi, "w1")
    r = tapi.post("/v1/tasks/t-1/fail", {"worker_id": "w1", "error": {"code": "E1", "detail": [1]}})
    assert r.status == 200
    assert (r.body["status"], r.body["attempts"], r.body["lease"]) == ("ready", 1, None)
    assert r.body["error"] == {"code": "E1", "detail": [1]}
    again = reserve(tapi, "w2")
    assert again.status == 200 and again.body["attempts"] == 1
    r = tapi.post("/v1/tasks/t-1/fail", {"worker_id": "w2", "error": "second"})
    assert (r.body["status"], r.body["attempts"], r.body["error"]) == ("failed", 2, "second")
    assert reserve(tapi, "w3").status == 204
    assert code(tapi.post("/v1/tasks/t-1/fail", {"worker_id": "w2"})) == (409, "already_done")


def test_snooze_then_ready_at_not_before(tapi: ApiClient, clock: Any) -> None:
    create(tapi)
    reserve(tapi, "w1")
    r = tapi.post("/v1/tasks/t-1/snooze", {"worker_id": "w1", "delay_seconds": 60})
    assert r.status == 200
    assert (r.body["status"], r.body["attempts"], r.body["lease"]) == ("snoozed", 0, None)
    assert r.body["not_before"] == "2026-12-01T10:01:00Z"
    assert reserve(tapi, "w2").status == 204
    clock.shift(59.999)
    assert tapi.get("/v1/tasks/t-1").body["status"] == "snoozed"
    clock.shift(0.001)
    assert tapi.get("/v1/tasks/t-1").body["status"] == "ready"
    got = reserve(tapi, "w2")
    assert got.status == 200 and got.body["attempts"] == 0


def test_created_snoozed_until_not_before(tapi: ApiClient, clock: Any) -> None:
    b = create(tapi, not_before="2026-12-01T10:05:00Z")
    assert b["status"] == "snoozed" and b["lease"] is None
    assert reserve(tapi).status == 204
    clock.shift(300)
    assert reserve(tapi).status == 200


def test_release_frees_the_lease_without_an_attempt(tapi: ApiClient) -> None:
    create(tapi)
    reserve(tapi, "w1")
    r = tapi.post("/v1/tasks/t-1/release", {"worker_id": "w1"})
    assert (r.status, r.body["status"], r.body["attempts"], r.body["lease"]) == (200, "ready", 0, None)
    assert reserve(tapi, "w2").body["lease"]["owner"] == "w2"


def test_revoke_lease(tapi: ApiClient) -> None:
    create(tapi)
    # an unleased task → conflict
    r = tapi.post("/v1/tasks/t-1/revoke-lease", {"record_version": 1})
    assert code(r) == (409, "conflict") and r.body["error"]["details"]["current"]["status"] == "ready"
    leased = reserve(tapi, "w1").body
    # a stale record_version → conflict carrying the current task
    r = tapi.post("/v1/tasks/t-1/revoke-lease", {"record_version": 1})
    assert code(r) == (409, "conflict")
    assert r.body["error"]["details"]["current"]["record_version"] == 2
    assert r.body["error"]["details"]["current"]["lease"]["owner"] == "w1"
    r = tapi.post("/v1/tasks/t-1/revoke-lease", {"record_version": leased["record_version"]})
    assert r.status == 200, r.body
    assert (r.body["status"], r.body["lease"], r.body["attempts"], r.body["record_version"]) == (
        "ready",
        None,
        0,
        3,
    )
    # the old owner has lost it
    assert code(tapi.post("/v1/tasks/t-1/complete", {"worker_id": "w1"})) == (409, "wrong_owner")
    assert code(tapi.post("/v1/tasks/nope/revoke-lease", {"record_version": 1})) == (404, "not_found")


def test_record_version_grows_by_one_with_every_change(tapi: ApiClient, clock: Any) -> None:
    versions = [create(tapi, max_attempts=5)["record_version"]]
    versions.append(reserve(tapi, "w1").body["record_version"])
    steps: list[tuple[str, dict[str, Any]]] = [
        ("extend-lease", {"worker_id": "w1", "lease_seconds": 30}),
        ("fail", {"worker_id": "w1"}),
    ]
    for action, body in steps:
        versions.append(tapi.post(f"/v1/tasks/t-1/{action}", body).body["record_version"])
    versions.append(reserve(tapi, "w1").body["record_version"])
    versions.append(
        tapi.post("/v1/tasks/t-1/snooze", {"worker_id": "w1", "delay_seconds": 1}).body["record_version"]
    )
    clock.shift(1)
    assert tapi.get("/v1/tasks/t-1").body["record_version"] == versions[-1]  # time alone writes nothing
    versions.append(reserve(tapi, "w1").body["record_version"])
    versions.append(tapi.post("/v1/tasks/t-1/release", {"worker_id": "w1"}).body["record_version"])
    versions.append(reserve(tapi, "w1").body["record_version"])
    current = tapi.get("/v1/tasks/t-1").body["record_version"]
    versions.append(
        tapi.post("/v1/tasks/t-1/revoke-lease", {"record_version": current}).body["record_version"]
    )
    versions.append(reserve(tapi, "w1").body["record_version"])
    versions.append(tapi.post("/v1/tasks/t-1/complete", {"worker_id": "w1"}).body["record_version"])
    assert versions == list(range(1, len(versions) + 1))


# --- lease expiry -------------------------------------------------------------------------------------


def test_an_expired_lease_is_reservable_after_the_skew_allowance(tapi: ApiClient, clock: Any) -> None:
    create(tapi)
    first = reserve(tapi, "w1", 10).body
    clock.shift(10)
    assert reserve(tapi, "w2").status == 204  # expired for its owner, not yet free for others
    assert code(tapi.post("/v1/tasks/t-1/extend-lease", {"worker_id": "w1", "lease_seconds": 10})) == (
        409,
        "lease_expired",
    )
    clock.shift(0.5)
    b = tapi.get("/v1/tasks/t-1").body
    assert (b["status"], b["attempts"], b["lease"]) == ("ready", 1, None)
    second = reserve(tapi, "w2", 10)
    assert second.status == 200 and second.body["lease"]["owner"] == "w2"
    assert second.body["lease"]["token"] != first["lease"]["token"] and second.body["attempts"] == 1
    assert code(tapi.post("/v1/tasks/t-1/complete", {"worker_id": "w1"})) == (409, "wrong_owner")
    assert tapi.post("/v1/tasks/t-1/complete", {"worker_id": "w2"}).status == 200


def test_an_expiry_that_exhausts_attempts_fails_the_task(tapi: ApiClient, clock: Any) -> None:
    create(tapi, max_attempts=2)
    reserve(tapi, "w1", 5)
    clock.shift(6)
    reserve(tapi, "w2", 5)
    clock.shift(6)
    b = tapi.get("/v1/tasks/t-1").body
    assert (b["status"], b["attempts"], b["error"]["code"]) == ("failed", 2, "lease_expired")
    assert reserve(tapi, "w3").status == 204
    assert tapi.get("/v1/tasks?status=failed").body["items"][0]["task_id"] == "t-1"


# --- lists, topic info, leases --------------------------------------------------------------------------


def test_list_filters_and_summaries(tapi: ApiClient, clock: Any) -> None:
    create(tapi, "a1", data={"big": 1}, sub_topic="pdf", task_group_id="g1")
    clock.shift(1)
    create(tapi, "a2", sub_topic="csv", task_group_id="g1")
    clock.shift(1)
    create(tapi, "b1", topic="beta", task_group_id="g1")
    create(tapi, "a3", not_before="2026-12-01T11:00:00Z")
    reserve(tapi, "w1")  # a1

    def listed(query: str) -> list[str]:
        r = tapi.get(f"/v1/tasks?{query}")
        assert r.status == 200, r.body
        return [t["task_id"] for t in r.body["items"]]

    assert listed("topic=reports") == ["a1", "a2", "a3"]
    assert listed("topic=reports&sub_topic=pdf") == ["a1"]
    assert listed("task_group_id=g1") == ["a1", "a2", "b1"]
    assert listed("topic=reports&status=leased") == ["a1"]
    assert listed("topic=reports&status=ready&status=snoozed") == ["a2", "a3"]
    assert listed("topic=reports&status=ready,leased") == ["a1", "a2"]
    assert listed("topic=reports&from=2026-12-01T10:00:01Z") == ["a2", "a3"]
    assert listed("topic=reports&to=2026-12-01T10:00:01Z") == ["a1"]
    assert sorted(listed("")) == ["a1", "a2", "a3", "b1"]
    item = tapi.get("/v1/tasks?topic=reports").body["items"][0]
    assert not {"data", "result", "error", "inbox", "details"} & set(item)
    assert item["lease"]["owner"] == "w1" and item["record_version"] == 2


@pytest.mark.parametrize(
    ("query", "status", "error", "field"),
    [
        ("status=sleeping", 422, "invalid_argument", "query.status"),
        ("from=yesterday", 422, "invalid_argument", "query.from"),
        ("to=2026-12-01T10:00:00", 422, "invalid_argument", "query.to"),
        ("colour=red", 422, "invalid_argument", "query.colour"),
        ("page_size=0", 400, "bad_request", None),
        ("page_size=1001", 400, "bad_request", None),
        ("page_token=garbage", 400, "invalid_page_token", None),
    ],
)
def test_bad_list_queries(tapi: ApiClient, query: str, status: int, error: str, field: str | None) -> None:
    r = tapi.get(f"/v1/tasks?{query}")
    assert code(r) == (status, error), r.body
    if field is not None:
        assert r.body["error"]["details"][0]["field"] == field


def test_list_pages_with_tokens_bound_to_filters(tapi: ApiClient, clock: Any) -> None:
    for i in range(5):
        create(tapi, f"t{i}")
        clock.shift(1)
    seen: list[str] = []
    token = None
    for _ in range(10):
        r = tapi.get("/v1/tasks?topic=reports&page_size=2" + (f"&page_token={token}" if token else ""))
        assert r.status == 200 and len(r.body["items"]) <= 2
        seen += [t["task_id"] for t in r.body["items"]]
        token = r.body["next_page_token"]
        if token is None:
            break
    assert seen == ["t0", "t1", "t2", "t3", "t4"]
    token = tapi.get("/v1/tasks?topic=reports&page_size=2").body["next_page_token"]
    assert code(tapi.get(f"/v1/tasks?topic=other&page_token={token}")) == (400, "invalid_page_token")


def test_topic_info(tapi: ApiClient, clock: Any) -> None:
    for i in range(3):
        create(tapi, f"r{i}")
    create(tapi, "later", not_before="2026-12-01T12:00:00Z")
    reserve(tapi, "w1")
    clock.shift(2)
    reserve(tapi, "w2")
    r = tapi.get("/v1/topics/reports")
    assert r.status == 200
    assert r.body == {
        "topic": "reports",
        "ready": 1,
        "leased": 2,
        "snoozed": 1,
        "workers": [
            {"worker_id": "w2", "last_seen": "2026-12-01T10:00:02Z"},
            {"worker_id": "w1", "last_seen": "2026-12-01T10:00:00Z"},
        ],
    }
    empty = tapi.get("/v1/topics/quiet").body
    assert (empty["ready"], empty["leased"], empty["snoozed"], empty["workers"]) == (0, 0, 0, [])


def test_leases_lists_what_is_leased_or_snoozed_now(tapi: ApiClient, clock: Any) -> None:
    create(tapi, "a")
    create(tapi, "b")
    create(tapi, "c", topic="other")
    create(tapi, "later", not_before="2026-12-01T10:10:00Z")
    create(tapi, "free")
    reserve(tapi, "w1", 30)  # a
    reserve(tapi, "w2", 30, topic="other")  # c
    reserve(tapi, "w1", 5)  # b

    def leases(query: str = "") -> list[str]:
        r = tapi.get(f"/v1/leases{query}")
        assert r.status == 200, r.body
        return sorted(t["task_id"] for t in r.body["items"])

    assert leases("?topic=reports") == ["a", "b", "later"]
    assert leases() == ["a", "b", "c", "later"]
    assert leases("?topic=other") == ["c"]
    clock.shift(6)  # b's lease lapsed (5 s + skew): no longer leased
    assert leases("?topic=reports") == ["a", "later"]
    page = tapi.get("/v1/leases?page_size=1").body
    assert len(page["items"]) <= 1 and page["next_page_token"]
    assert code(tapi.get(f"/v1/leases?topic=reports&page_token={page['next_page_token']}")) == (
        400,
        "invalid_page_token",
    )


def test_routes_and_openapi(tapi: ApiClient) -> None:
    r = tapi.request("PUT", "/v1/tasks/t-1", {})
    assert code(r) == (405, "method_not_allowed")
    doc = tapi.get("/v1/openapi.json").body
    for path in (
        "/v1/tasks",
        "/v1/tasks/{task_id}",
        "/v1/topics/{topic}/reserve",
        "/v1/topics/{topic}",
        "/v1/tasks/{task_id}/extend-lease",
        "/v1/tasks/{task_id}/complete",
        "/v1/tasks/{task_id}/fail",
        "/v1/tasks/{task_id}/snooze",
        "/v1/tasks/{task_id}/release",
        "/v1/tasks/{task_id}/revoke-lease",
        "/v1/leases",
    ):
        assert path in doc["paths"], path


# --- the pure rules behind them (gnomon.domain.tasks), one row per case ---------------------------

LEASED_TO_W1 = {"status": "leased", "lease": ("w1", 30, "tok")}


@pytest.mark.parametrize(
    ("state", "worker", "token", "now", "expected"),
    [
        (None, "w1", None, 0, "not_found"),
        ({"status": "completed"}, "w2", "x", 0, "already_done"),
        ({"status": "failed"}, "w1", None, 0, "already_done"),
        ({**LEASED_TO_W1, "max_attempts": 1}, "w1", None, 30.5, "already_done"),  # lapsed last lease
        ({"status": "ready"}, "w1", None, 0, "wrong_owner"),
        ({"status": "snoozed", "not_before": 60}, "w1", None, 0, "wrong_owner"),
        (LEASED_TO_W1, "w2", None, 0, "wrong_owner"),
        (LEASED_TO_W1, "w2", None, 40, "wrong_owner"),  # wrong_owner before lease_expired
        (LEASED_TO_W1, "w1", None, 30, "lease_expired"),  # now == expires_at
        (LEASED_TO_W1, "w1", "bad", 31, "lease_expired"),  # lease_expired before the token
        (LEASED_TO_W1, "w1", "bad", 29.999, "wrong_owner"),
        (LEASED_TO_W1, "w1", "tok", 29.999, None),
        (LEASED_TO_W1, "w1", None, 0, None),
    ],
)
def test_check_owner_order(
    state: dict[str, Any] | None, worker: str, token: str | None, now: float, expected: str | None
) -> None:
    from datetime import timedelta

    from gnomon.domain.errors import GnomonError
    from gnomon.domain.tasks import Lease, Task, TaskStatus, check_owner

    def t(seconds: float) -> datetime:
        return T0 + timedelta(seconds=seconds)

    task = None
    if state is not None:
        lease = state.get("lease")
        task = Task(
            task_id="t-1",
            topic="reports",
            created_at=T0,
            updated_at=T0,
            status=TaskStatus(state["status"]),
            max_attempts=state.get("max_attempts", 3),
            not_before=t(state["not_before"]) if "not_before" in state else None,
            lease=Lease(lease[0], t(lease[1]), lease[2]) if lease else None,
        )
    try:
        check_owner(task, worker, token, t(now), task_id="t-1")
        got = None
    except GnomonError as exc:
        got = exc.code
    assert got == expected


@pytest.mark.parametrize(
    ("state", "now", "status", "attempts"),
    [
        ({"status": "snoozed", "not_before": 10}, 9.999, "snoozed", 0),
        ({"status": "snoozed", "not_before": 10}, 10, "ready", 0),
        ({**LEASED_TO_W1}, 30, "leased", 0),  # expired for the owner, not yet lapsed
        ({**LEASED_TO_W1}, 30.499, "leased", 0),
        ({**LEASED_TO_W1}, 30.5, "ready", 1),  # + the 0.5 s skew allowance: an attempt counted
        ({**LEASED_TO_W1, "attempts": 2}, 30.5, "failed", 3),
        ({"status": "completed"}, 1000, "completed", 0),
    ],
)
def test_effective_status(state: dict[str, Any], now: float, status: str, attempts: int) -> None:
    from datetime import timedelta

    from gnomon.domain.tasks import Lease, Task, TaskStatus, effective, reservable

    def t(seconds: float) -> datetime:
        return T0 + timedelta(seconds=seconds)

    lease = state.get("lease")
    task = Task(
        task_id="t-1",
        topic="reports",
        created_at=T0,
        updated_at=T0,
        status=TaskStatus(state["status"]),
        attempts=state.get("attempts", 0),
        not_before=t(state["not_before"]) if "not_before" in state else None,
        lease=Lease(lease[0], t(lease[1]), lease[2]) if lease else None,
    )
    got = effective(task, t(now))
    assert (got.status.value, got.attempts) == (status, attempts)
    assert reservable(task, t(now)) is (status == "ready")
    if status == "failed":
        assert got.error["code"] == "lease_expired" and got.lease is None


def test_transitions_are_data() -> None:
    from gnomon.domain.errors import AlreadyDone, Conflict
    from gnomon.domain.tasks import TRANSITIONS, TaskStatus, check_transition

    assert set(TRANSITIONS) == set(TaskStatus)
    for current, allowed in TRANSITIONS.items():
        for new in TaskStatus:
            if new in allowed:
                check_transition(current, new)
            else:
                with pytest.raises(AlreadyDone if current.value in ("completed", "failed") else Conflict):
                    check_transition(current, new)
