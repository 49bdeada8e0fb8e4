"""The runs, trigger and operations endpoints through the real handler (in-memory stores)."""

from __future__ import annotations

import re

import pytest

from tests.unit.apiclient import ApiClient

HOOK = {"type": "http", "url": "https://example.com/hook"}


@pytest.fixture
def api2(api: ApiClient) -> ApiClient:
    assert api.post("/v1/definitions", {"name": "job", "target": HOOK}).status == 201
    return api


def test_execute_get_list_history(api2: ApiClient) -> None:
    r = api2.post("/v1/definitions/job/execute", {"input": {"a": 1}})
    assert r.status == 201, r.body
    run = r.body
    assert run["status"] == "pending" and run["trigger"] == "execute" and run["schedule_id"] is None
    assert run["nominal_time"] == run["scheduled_time"] and run["definition_version"] == 1
    assert set(run) >= {
        "run_id",
        "definition",
        "generation",
        "started_at",
        "closed_at",
        "duration_ms",
        "attempt",
        "input",
        "memo",
        "result",
        "result_truncated",
        "error",
        "error_truncated",
        "reason",
        "inbox",
        "details",
    }
    assert "callback_token" not in run and "attempts" not in run
    got = api2.get(f"/v1/runs/{run['run_id']}")
    assert got.status == 200 and got.body == run
    items = api2.get("/v1/runs?definition=job").body["items"]
    assert [i["run_id"] for i in items] == [run["run_id"]] and "input" not in items[0]
    h = api2.get(f"/v1/runs/{run['run_id']}/history")
    assert h.status == 200 and h.body["run_id"] == run["run_id"] and h.body["truncated"] is False
    assert api2.get(f"/v1/runs/{run['run_id']}/history?max_events=-1").status == 422


def test_execute_with_a_run_id_is_idempotent(api2: ApiClient) -> None:
    assert api2.post("/v1/definitions/job/execute", {"input": {}, "run_id": "r-1"}).status == 201
    assert api2.post("/v1/definitions/job/execute", {"input": {}, "run_id": "r-1"}).status == 200
    r = api2.post("/v1/definitions/job/execute", {"input": {"x": 1}, "run_id": "r-1"})
    assert (r.status, r.body["error"]["code"]) == (409, "already_exists")
    r = api2.post("/v1/definitions/ghost/execute", {})
    assert (r.status, r.body["error"]["details"]["resource"]) == (404, "definition/ghost")
    r = api2.post("/v1/definitions/job/execute", {"run_id": "bad id"})
    assert (r.status, r.body["error"]["details"][0]["field"]) == (422, "run_id")


def test_retry_is_only_for_closed_unsuccessful_runs(api2: ApiClient) -> None:
    run_id = api2.post("/v1/definitions/job/execute", {}).body["run_id"]
    r = api2.post(f"/v1/runs/{run_id}/retry")
    assert (r.status, r.body["error"]["code"]) == (409, "conflict")
    assert api2.post("/v1/runs/nope/retry").status == 404


def test_callbacks_need_the_token_of_a_running_attempt(api2: ApiClient) -> None:
    run_id = api2.post("/v1/definitions/job/execute", {}).body["run_id"]
    r = api2.post(f"/v1/runs/{run_id}/complete", {"callback_token": "nope"})
    assert (r.status, r.body["error"]["code"]) == (409, "conflict")
    assert api2.post(f"/v1/runs/{run_id}/complete", {}).status == 422


def test_run_list_query_validation(api2: ApiClient) -> None:
    for q, field in (
        ("status=bogus", "query.status"),
        ("from=2026-01-01", "query.from"),
        ("colour=1", "query.colour"),
    ):
        r = api2.get(f"/v1/runs?{q}")
        assert (r.status, r.body["error"]["details"][0]["field"]) == (422, field), q
    assert api2.get("/v1/runs?status=pending&status=failed").status == 200


def test_trigger_makes_a_trigger_run_and_replays_by_key(api2: ApiClient) -> None:
    api2.post(
        "/v1/schedules",
        {
            "schedule_id": "s1",
            "definition": "job",
            "spec": {"cron": ["0 0 1 1 *"]},
            "state": {"paused": True},
        },
    )
    r = api2.post("/v1/schedules/s1/trigger", {"idempotency_key": "k-1", "input": {"why": "manual"}})
    assert r.status == 201, r.body
    assert re.fullmatch(r"s1-t-[0-9a-f]{12}", r.body["run_id"])
    assert r.body["trigger"] == "trigger" and r.body["input"] == {"why": "manual"}
    again = api2.post("/v1/schedules/s1/trigger", {"idempotency_key": "k-1", "input": {"other": True}})
    assert again.status == 200 and again.body["run_id"] == r.body["run_id"]
    # the first run is still pending: the schedule's overlap policy (skip) skips another
    skipped = api2.post("/v1/schedules/s1/trigger", {})
    assert (
        skipped.status == 201 and skipped.body["status"] == "skipped" and skipped.body["reason"] == "overlap"
    )
    allowed = api2.post("/v1/schedules/s1/trigger", {"overlap": "allow_all"})
    assert allowed.body["status"] == "pending"
    assert api2.post("/v1/schedules/ghost/trigger", {}).status == 404


def test_operations_endpoints(api2: ApiClient) -> None:
    r = api2.get("/v1/metrics/lateness?bucket_seconds=60")
    assert r.status == 200 and r.body["buckets"] == []
    assert api2.get("/v1/metrics/lateness?bucket_seconds=0").status == 422
    assert api2.get("/v1/dlq").body == {"items": [], "next_page_token": None}
    assert api2.post("/v1/dlq/redrive", {}).body == {"redriven": 0}
