"""Every CLI verb, in one walk through a user's day, against the real API handler in-process
(typer's runner; see test_cli.py). The walk must cover every verb the CLI offers: a verb added
without a step here fails the last test."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from gnomon import clicommands
from tests.unit.test_cli import Cli, cli  # noqa: F401 - the fixture

HOOK = {"type": "http", "url": "https://example.com/hook"}
CUSTOM = {("dev",), ("apply",), ("export",)}  # covered by test_cli.py / test_apply_export.py / e2e
EXERCISED: set[tuple[str, str]] = set()


def _run(gnomon: Cli, collection: str, verb: str, *args: str, code: int = 0) -> Any:
    EXERCISED.add((collection, verb))
    result = gnomon.run(collection, verb, *args, "--output", "json")
    assert result.exit_code == code, (collection, verb, result.stdout, result.stderr)
    out = result.stdout.strip()
    return json.loads(out) if out and code == 0 else None


def _data(body: Any) -> tuple[str, str]:
    return ("--data", json.dumps(body))


def test_every_verb(cli: Cli) -> None:  # noqa: F811 - the fixture
    now = datetime.now(UTC).replace(microsecond=0)

    # definitions
    created = _run(cli, "definitions", "create", *_data({"name": "report", "target": HOOK}))
    assert created["version"] == 1 and created["signing_secret"]
    assert [d["name"] for d in _run(cli, "definitions", "list")["items"]] == ["report"]
    assert _run(cli, "definitions", "get", "report")["name"] == "report"
    updated = _run(
        cli,
        "definitions",
        "update",
        "report",
        *_data({"name": "report", "target": HOOK, "description": "v2"}),
    )
    assert updated["version"] == 2
    versions = _run(cli, "definitions", "versions", "report")["items"]
    assert [v["version"] for v in versions] == [2, 1]
    run = _run(cli, "definitions", "execute", "report", *_data({"input": {"n": 1}, "run_id": "adhoc-1"}))
    assert run["run_id"] == "adhoc-1" and run["status"] == "pending"

    # calendars and groups
    holidays = {
        "name": "holidays",
        "calendars": [{"month": 12, "day_of_month": 25, "hour": "*", "minute": "*", "second": "*"}],
    }
    assert _run(cli, "calendars", "create", *_data(holidays))["name"] == "holidays"
    assert [c["name"] for c in _run(cli, "calendars", "list")["items"]] == ["holidays"]
    cal = _run(cli, "calendars", "get", "holidays")
    cal2 = _run(
        cli,
        "calendars",
        "update",
        "holidays",
        *_data({**holidays, "description": "xmas", "version": cal["version"]}),
    )
    assert cal2["description"] == "xmas"
    assert _run(cli, "groups", "update", "nightly", *_data({"max_schedules": 10}))["max_schedules"] == 10
    assert _run(cli, "groups", "get", "nightly")["max_schedules"] == 10
    assert "nightly" in {g["group"] for g in _run(cli, "groups", "list")["items"]}

    # schedules
    sched = {
        "schedule_id": "daily",
        "group": "nightly",
        "definition": "report",
        "spec": {"cron": ["0 3 * * *"], "exclude_calendar_refs": ["holidays"]},
    }
    assert _run(cli, "schedules", "create", *_data(sched))["schedule_id"] == "daily"
    assert [s["schedule_id"] for s in _run(cli, "schedules", "list")["items"]] == ["daily"]
    got = _run(cli, "schedules", "get", "daily")
    assert got["info"]["next_fire_times"]
    changed = _run(
        cli,
        "schedules",
        "update",
        "daily",
        *_data({"tags": ["ops"], "conflict_token": got["conflict_token"]}),
    )
    assert changed["tags"] == ["ops"]
    assert _run(cli, "schedules", "pause", "daily", *_data({"note": "hold"}))["state"]["paused"] is True
    assert _run(cli, "schedules", "unpause", "daily")["state"]["paused"] is False
    trig = _run(cli, "schedules", "trigger", "daily", *_data({"idempotency_key": "k1"}))
    assert trig["run_id"].startswith("daily-t-")
    preview = _run(cli, "schedules", "preview", "*/15 * * * *", "-n", "3", "--start", "2026-12-01T00:00:00Z")
    assert preview["fire_times"] == ["2026-12-01T00:15:00Z", "2026-12-01T00:30:00Z", "2026-12-01T00:45:00Z"]
    dry = _run(
        cli,
        "schedules",
        "backfill",
        "daily",
        "--start",
        "2026-11-01",
        "--end",
        "2026-11-03T12:00:00Z",
        "--dry-run",
    )
    assert dry["fire_times"] == ["2026-11-01T03:00:00Z", "2026-11-02T03:00:00Z", "2026-11-03T03:00:00Z"]
    bulk = _run(
        cli, "schedules", "bulk", *_data({"action": "pause", "filter": {"group": "nightly"}, "note": "all"})
    )
    assert (bulk["matched"], bulk["changed"]) == (1, 1)
    window = ("-p", f"from={now.isoformat()}", "-p", f"to={(now + timedelta(hours=24)).isoformat()}")
    assert _run(cli, "upcoming", "list", *window)["items"] == []  # paused without until: nothing due

    # runs
    runs = _run(cli, "runs", "list", "-p", "definition=report")["items"]
    assert {r["run_id"] for r in runs} >= {"adhoc-1", trig["run_id"]}
    assert _run(cli, "runs", "get", "adhoc-1")["status"] == "pending"
    assert _run(cli, "runs", "history", "adhoc-1")["run_id"] == "adhoc-1"
    assert (
        _run(cli, "runs", "signal", "adhoc-1", *_data({"name": "stop", "payload": {}}))["inbox"][0]["name"]
        == "stop"
    )
    assert _run(cli, "runs", "query", "adhoc-1", *_data({"name": "progress"})) == {"details": None}
    assert _run(cli, "runs", "cancel", "adhoc-1", *_data({"reason": "not today"}))["status"] == "canceled"
    assert _run(cli, "runs", "retry", "adhoc-1")["status"] == "pending"
    assert _run(cli, "runs", "terminate", "adhoc-1", *_data({"reason": "stop"}))["status"] == "terminated"
    # complete / fail answer a 202 run's callback: a wrong token is a conflict (exit 4)
    _run(cli, "runs", "complete", trig["run_id"], *_data({"callback_token": "nope"}), code=4)
    _run(
        cli,
        "runs",
        "fail",
        trig["run_id"],
        *_data({"callback_token": "nope", "error": {"code": "x"}}),
        code=4,
    )
    stats = _run(cli, "stats", "list")
    assert set(stats) >= {"running", "pending", "completed_today", "failed_today"}

    # tasks, topics, leases
    task = _run(cli, "tasks", "create", *_data({"topic": "reports", "task_id": "t-1", "data": {"a": 1}}))
    assert task["status"] == "ready"
    assert _run(cli, "tasks", "get", "t-1")["task_id"] == "t-1"
    assert [t["task_id"] for t in _run(cli, "tasks", "list", "-p", "topic=reports")["items"]] == ["t-1"]
    leased = _run(cli, "topics", "reserve", "reports", *_data({"worker_id": "w1", "lease_seconds": 60}))
    assert leased["lease"]["owner"] == "w1"
    assert _run(cli, "topics", "get", "reports")["leased"] == 1
    assert [t["task_id"] for t in _run(cli, "leases", "list", "-p", "topic=reports")["items"]] == ["t-1"]
    extended = _run(
        cli,
        "tasks",
        "extend-lease",
        "t-1",
        *_data({"worker_id": "w1", "lease_seconds": 60, "details": {"p": 1}}),
    )
    assert extended["details"] == {"p": 1}
    assert (
        _run(cli, "tasks", "snooze", "t-1", *_data({"worker_id": "w1", "delay_seconds": 0}))["lease"] is None
    )
    again = _run(cli, "topics", "reserve", "reports", *_data({"worker_id": "w2", "lease_seconds": 60}))
    assert _run(cli, "tasks", "release", "t-1", *_data({"worker_id": "w2"}))["status"] == "ready"
    again = _run(cli, "topics", "reserve", "reports", *_data({"worker_id": "w3", "lease_seconds": 60}))
    revoked = _run(cli, "tasks", "revoke-lease", "t-1", *_data({"record_version": again["record_version"]}))
    assert revoked["lease"] is None
    _run(cli, "topics", "reserve", "reports", *_data({"worker_id": "w4", "lease_seconds": 60}))
    assert (
        _run(cli, "tasks", "fail", "t-1", *_data({"worker_id": "w4", "error": {"why": "x"}}))["attempts"] == 1
    )
    _run(cli, "topics", "reserve", "reports", *_data({"worker_id": "w5", "lease_seconds": 60}))
    assert (
        _run(cli, "tasks", "complete", "t-1", *_data({"worker_id": "w5", "result": {"ok": 1}}))["status"]
        == "completed"
    )

    # events and operators
    _run(
        cli,
        "definitions",
        "create",
        *_data({"name": "on-order", "target": HOOK, "triggers": [{"event_type": "order.created"}]}),
    )
    _run(
        cli,
        "events",
        "create",
        *_data({"type": "order.created", "key": "o-1", "payload": {}, "event_id": "e-1"}),
    )
    assert [o["definition"] for o in _run(cli, "operators", "list")["items"]] == ["on-order"]
    assert _run(cli, "operators", "get", "on-order")["status"] in ("running", "idle")
    assert _run(cli, "operators", "restart", "on-order")["restarted"] == []

    # dead letters (none here: the in-process stack has no queue behind it, or an empty one)
    assert isinstance(_run(cli, "dlq", "list")["items"], list)
    assert _run(cli, "dlq", "redrive")["redriven"] == 0

    # deletes last
    _run(cli, "schedules", "delete", "daily")
    _run(cli, "calendars", "delete", "holidays")
    _run(cli, "definitions", "delete", "report")


def test_the_walk_covers_every_verb(cli: Cli) -> None:  # noqa: F811 - the fixture
    if not EXERCISED:  # run on its own: walk first
        test_every_verb(cli)
    offered = {(c, v) for c, (verbs, _) in clicommands.COLLECTIONS.items() for v in verbs}
    assert offered - EXERCISED == set()
