"""Schedule semantics as tables: the overlap decision, where a schedule sits in the due index,
what counts as running; and the backfill / trigger_immediately / initial_backfill API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gnomon.domain.spec import Spec, compile_spec
from gnomon.domain.timefmt import fmt
from gnomon.ports import RunRecord
from gnomon.services.execute import BUFFER_LIMIT, counts_as_running, decide
from gnomon.services.tick import due_at, missed_while_paused
from tests.unit.apiclient import ApiClient

T = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)

# -- the overlap decision ---------------------------------------------------------------------------
# waiting: run ids oldest first, "id:policy" for an entry with its own policy (a backfill's or a
# trigger's); running: how many count as running → started, still waiting, skipped (id:reason),
# cancel / terminate what runs.
DECIDE = [
    # policy, max_concurrency, waiting, running, start, buffer, skipped, cancel, terminate
    ("skip", None, "a", 0, "a", "", "", False, False),
    ("skip", None, "a", 1, "", "", "a:overlap", False, False),
    ("skip", None, "a b", 0, "a", "", "b:overlap", False, False),
    ("buffer_one", None, "a", 1, "", "a", "", False, False),
    ("buffer_one", None, "a b c", 1, "", "a", "b:overlap c:overlap", False, False),
    ("buffer_one", None, "a b c", 0, "a", "b", "c:overlap", False, False),
    ("buffer_all", None, "a b c", 1, "", "a b c", "", False, False),
    ("buffer_all", None, "a b c", 0, "a", "b c", "", False, False),
    ("buffer_all", 2, "a b c", 0, "a b", "c", "", False, False),
    ("buffer_all", 2, "a b c", 1, "a", "b c", "", False, False),
    ("allow_all", None, "a b c", 5, "a b c", "", "", False, False),
    ("allow_all", 2, "a b c", 1, "a", "b c", "", False, False),
    ("cancel_other", None, "a", 1, "", "a", "", True, False),
    ("cancel_other", None, "a b", 1, "", "a b", "", True, False),
    ("cancel_other", None, "a b", 0, "b", "", "a:overlap", False, False),  # the newest wins
    ("terminate_other", None, "a", 1, "", "a", "", False, True),
    ("terminate_other", None, "a b", 0, "b", "", "a:overlap", False, False),
    # entries with their own policy (a backfill's), under a schedule policy of skip
    ("skip", None, "a:buffer_all b:buffer_all", 1, "", "a b", "", False, False),
    ("skip", None, "a:allow_all b", 1, "a", "", "b:overlap", False, False),
    ("buffer_all", None, "a b:skip", 1, "", "a", "b:overlap", False, False),
]


def _entries(spec: str) -> list[dict[str, Any]]:
    out = []
    for token in spec.split():
        run_id, _, policy = token.partition(":")
        out.append({"run_id": run_id, "overlap": policy or None})
    return out


@pytest.mark.parametrize(
    ("policy", "cap", "waiting", "running", "start", "buffer", "skipped", "cancel", "terminate"), DECIDE
)
def test_decide(
    policy: str,
    cap: int | None,
    waiting: str,
    running: int,
    start: str,
    buffer: str,
    skipped: str,
    cancel: bool,
    terminate: bool,
) -> None:
    out = decide(_entries(waiting), running, policy, cap)
    assert " ".join(e["run_id"] for e in out.start) == start
    assert " ".join(e["run_id"] for e in out.buffer) == buffer
    assert " ".join(f"{e['run_id']}:{reason}" for e, reason in out.skipped) == skipped
    assert (out.cancel, out.terminate) == (cancel, terminate)
    assert out.blocked == bool(buffer or skipped or cancel or terminate)


def test_decide_buffers_at_most_the_limit() -> None:
    waiting = [{"run_id": f"r{i}", "overlap": None} for i in range(BUFFER_LIMIT + 2)]
    out = decide(waiting, 1, "buffer_all", None)
    assert len(out.buffer) == BUFFER_LIMIT
    assert [(e["run_id"], r) for e, r in out.skipped] == [
        (f"r{BUFFER_LIMIT}", "buffer_full"),
        (f"r{BUFFER_LIMIT + 1}", "buffer_full"),
    ]


# -- what counts as running ---------------------------------------------------------------------------
LEASE_OK = {"lease": {"owner": "w", "expires_at": fmt(T + timedelta(seconds=30))}}
LEASE_GONE = {"lease": {"owner": "w", "expires_at": fmt(T - timedelta(seconds=1))}}
RUNNING = [
    ("pending", {}, True),  # between attempts, or started and not yet claimed
    ("running", LEASE_OK, True),
    ("canceled", LEASE_OK, True),  # canceled, its attempt still out
    ("canceled", LEASE_GONE, False),  # its worker is gone
    ("canceled", {}, False),  # canceled before it started, or its attempt closed
    ("terminated", {}, False),
    ("completed", {}, False),
    ("failed", {}, False),
    ("timed_out", {}, False),
    ("skipped", {}, False),
]


@pytest.mark.parametrize(("status", "doc", "expected"), RUNNING)
def test_counts_as_running(status: str, doc: dict[str, Any], expected: bool) -> None:
    run = RunRecord(run_id="r", doc=doc, schedule_id="s", definition="d", nominal_time=T, status=status)
    assert counts_as_running(run, T) is expected


# -- where a schedule sits in the due index --------------------------------------------------------
CURSOR = T + timedelta(minutes=5)
DUE = [
    # state, extra document fields → next_fire_at
    ({}, {}, CURSOR),
    ({"remaining_actions": 0}, {}, None),
    ({"paused": True}, {}, None),
    ({"paused": True, "paused_until": fmt(T + timedelta(hours=1))}, {}, T + timedelta(hours=1)),
    ({"paused": True}, {"kick": [{"run_id": "x", "at": fmt(T)}]}, T),  # a trigger while paused
    (
        {},
        {"flight": {"running": [{"run_id": "x"}], "check_at": fmt(T + timedelta(minutes=1))}},
        T + timedelta(minutes=1),
    ),
    ({"paused": True}, {"finish_at": fmt(T + timedelta(minutes=2))}, T + timedelta(minutes=2)),
]


@pytest.mark.parametrize(("state", "extra", "expected"), DUE)
def test_due_at(state: dict[str, Any], extra: dict[str, Any], expected: datetime | None) -> None:
    doc = {"state": {"paused": False, "remaining_actions": None, **state}, **extra}
    assert due_at(doc, CURSOR) == expected


def test_firings_missed_while_paused_leave_out_what_was_enqueued_before() -> None:
    every_10s = compile_spec(Spec.model_validate({"intervals": [{"every_seconds": 10}]}))
    state = {"paused": True, "paused_at": fmt(T + timedelta(seconds=1))}
    now = T + timedelta(seconds=125)
    # planned (enqueued) up to 10:01:00 before the pause: those are counted as they arrive
    missed = missed_while_paused(every_10s, state, T + timedelta(seconds=70), now)
    assert [fmt(t) for t in missed] == [fmt(T + timedelta(seconds=s)) for s in range(70, 121, 10)]
    assert len(missed_while_paused(every_10s, state, None, now)) == 12


# -- the API ----------------------------------------------------------------------------------------
HOOK = {"type": "http", "url": "https://example.com/hook"}


@pytest.fixture
def api_with_schedule(api: ApiClient) -> ApiClient:
    assert api.post("/v1/definitions", {"name": "job", "target": HOOK}).status == 201
    body = {"schedule_id": "hourly", "definition": "job", "spec": {"cron": ["0 * * * *"]}}
    assert api.post("/v1/schedules", body).status == 201
    return api


BAD_BACKFILLS = [
    ({"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "end"),
    ({"start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "end"),  # > 10 000 times
    ({"start": "2026-01-01T00:00:00", "end": "2026-01-01T05:00:00Z"}, "start"),  # no offset
    ({"start": "2026-01-01T00:00:00Z"}, "end"),
    ({"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T05:00:00Z", "overlap": "nope"}, "overlap"),
    ({"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T05:00:00Z", "rate": 3}, "rate"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BACKFILLS)
def test_backfill_refuses_bad_ranges(api_with_schedule: ApiClient, body: dict[str, Any], field: str) -> None:
    r = api_with_schedule.post("/v1/schedules/hourly/backfill", body)
    assert r.status == 422, r.body
    assert r.body["error"]["code"] == "invalid_argument"
    assert field in str(r.body["error"]["details"])
    assert api_with_schedule.get("/v1/runs?schedule=hourly").body["items"] == []


def test_backfill_dry_run_then_real_then_again(api_with_schedule: ApiClient) -> None:
    body = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T05:00:00+00:00", "overlap": "buffer_all"}
    times = [f"2026-01-01T0{h}:00:00Z" for h in range(6)]
    r = api_with_schedule.post("/v1/schedules/hourly/backfill", {**body, "dry_run": True})
    assert (r.status, r.body) == (200, {"fire_times": times, "runs_created": 0})
    assert api_with_schedule.get("/v1/runs?schedule=hourly").body["items"] == []
    r = api_with_schedule.post("/v1/schedules/hourly/backfill", {**body, "request_id": "bf-1"})
    assert (r.status, r.body) == (201, {"fire_times": times, "runs_created": 6})
    replay = api_with_schedule.post("/v1/schedules/hourly/backfill", {**body, "request_id": "bf-1"})
    assert (replay.status, replay.body) == (200, r.body)
    runs = api_with_schedule.get("/v1/runs?schedule=hourly").body["items"]
    assert sorted(x["nominal_time"] for x in runs) == times
    assert {(x["status"], x["trigger"]) for x in runs} == {("pending", "backfill")}
    # the same range again: every time already has its run
    r = api_with_schedule.post("/v1/schedules/hourly/backfill", body)
    assert (r.status, r.body["runs_created"]) == (201, 0)
    described = api_with_schedule.get("/v1/schedules/hourly").body
    first = described["info"]["backfills"][0]
    assert {k: first[k] for k in ("start", "end", "total", "started", "overlap")} == {
        "start": "2026-01-01T00:00:00Z",
        "end": "2026-01-01T05:00:00Z",
        "total": 6,
        "started": 0,
        "overlap": "buffer_all",
    }
    # internal bookkeeping never shows at the top level (a GET body can be sent back as a PUT)
    assert not {"cursor", "flight", "kick", "finish_at", "backfill_next_at", "planned"} & set(described)
    put = api_with_schedule.request("PUT", "/v1/schedules/hourly", described)
    assert put.status == 200, put.body
    assert api_with_schedule.post("/v1/schedules/nope/backfill", body).status == 404


def test_create_with_trigger_immediately_and_initial_backfill(api_with_schedule: ApiClient) -> None:
    body = {
        "schedule_id": "daily",
        "definition": "job",
        "spec": {"cron": ["30 6 * * *"]},
        "trigger_immediately": True,
        "initial_backfill": [{"start": "2026-01-01T00:00:00Z", "end": "2026-01-03T23:59:59Z"}],
    }
    r = api_with_schedule.post("/v1/schedules", body)
    assert r.status == 201, r.body
    assert [(b["total"], b["overlap"]) for b in r.body["info"]["backfills"]] == [(3, "skip")]
    runs = api_with_schedule.get("/v1/runs?schedule=daily").body["items"]
    assert sorted(x["trigger"] for x in runs) == ["backfill", "backfill", "backfill", "trigger"]
    triggered = next(x for x in runs if x["trigger"] == "trigger")
    assert triggered["run_id"].startswith("daily-t-") and triggered["status"] == "pending"


def test_a_bad_initial_backfill_creates_nothing(api_with_schedule: ApiClient) -> None:
    body = {
        "schedule_id": "daily",
        "definition": "job",
        "spec": {"cron": ["30 6 * * *"]},
        "initial_backfill": [
            {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"},
            {"start": "2026-01-05T00:00:00Z", "end": "2026-01-04T00:00:00Z"},
        ],
    }
    r = api_with_schedule.post("/v1/schedules", body)
    assert r.status == 422
    assert r.body["error"]["details"][0]["field"] == "initial_backfill[1].end"
    assert api_with_schedule.get("/v1/schedules/daily").status == 404
