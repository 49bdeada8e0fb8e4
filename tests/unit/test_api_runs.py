"""The runs, trigger and operations endpoints through the real handler (in-memory stores)."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

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


def test_lateness_metrics_with_firings_and_durations(api2: ApiClient) -> None:
    """`include=firings,durations` (repeated or comma-separated) adds the overview's heatmap
    and duration histogram to the percentiles; the runs of the window are counted."""
    run = api2.post("/v1/definitions/job/execute", {"input": {}}).body
    plain = api2.get("/v1/metrics/lateness")
    assert plain.status == 200 and set(plain.body) == {"from", "to", "bucket_seconds", "buckets", "truncated"}
    for query in ("include=firings,durations", "include=firings&include=durations"):
        r = api2.get(f"/v1/metrics/lateness?{query}&timezone=Asia/Tokyo")
        assert r.status == 200, r.body
        firings = r.body["firings"]
        assert (firings["timezone"], firings["total"], firings["by_status"]) == (
            "Asia/Tokyo",
            1,
            {"pending": 1},
        )
        local = datetime.fromisoformat(run["nominal_time"]).astimezone(ZoneInfo("Asia/Tokyo"))
        assert firings["by_day_hour"][local.weekday()][local.hour] == 1
        durations = r.body["durations"]
        assert durations["count"] == 0 and durations["p50_ms"] is None  # not closed: no duration
        assert [b["lower_ms"] for b in durations["bins"][:3]] == [0, 1, 2]
        assert durations["bins"][-1]["upper_ms"] is None
    r = api2.get("/v1/metrics/lateness?include=durations")
    assert "durations" in r.body and "firings" not in r.body
    assert "firings" in api2.get("/v1/metrics/lateness?include=firings&include=").body


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("include=heatmap", "query.include"),
        ("include=firings,runs", "query.include"),
        ("include=firings&timezone=Mars/Olympus", "query.timezone"),
        ("timezone=%2E%2E%2Fetc", "query.timezone"),
        ("include=firings&from=2026-12-01T10:00:00", "query.from"),  # no offset
        ("include=durations&from=2026-12-01T10:00:00Z&to=2026-12-01T09:00:00Z", "query.from"),
        ("include=firings&bucket_seconds=x", "query.bucket_seconds"),
    ],
)
def test_lateness_metrics_bad_input(api2: ApiClient, query: str, field: str) -> None:
    r = api2.get(f"/v1/metrics/lateness?{query}")
    assert r.status == 422, r.body
    assert r.body["error"]["code"] == "invalid_argument"
    assert r.body["error"]["details"][0]["field"] == field


def test_openapi_documents_the_lateness_extras(api2: ApiClient) -> None:
    op = api2.get("/v1/openapi.json").body["paths"]["/v1/metrics/lateness"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert {"schedule", "definition", "from", "to", "bucket_seconds", "include", "timezone"} <= set(params)
    assert "firings" in params["include"]["description"] and "durations" in params["include"]["description"]


def test_operations_endpoints(api2: ApiClient) -> None:
    r = api2.get("/v1/metrics/lateness?bucket_seconds=60")
    assert r.status == 200 and r.body["buckets"] == []
    assert api2.get("/v1/metrics/lateness?bucket_seconds=0").status == 422
    assert api2.get("/v1/dlq").body == {"items": [], "next_page_token": None}
    assert api2.post("/v1/dlq/redrive", {}).body == {"redriven": 0}
