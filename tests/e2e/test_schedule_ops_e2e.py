"""Schedule operations on the real local stack: pause/unpause with catch-up and pause `until`,
trigger (idempotent, while paused), backfill (dry run, real, again), skip records and counters."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from gnomon.domain.timefmt import fmt, parse
from tests.e2e.conftest import DevProcess, wait_for

pytestmark = pytest.mark.e2e


class Receiver:
    """Answers 200, after `delay` seconds on paths starting with /slow; records each body."""

    def __init__(self, delay: float = 2.5) -> None:
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if self.path.startswith("/slow"):
                    time.sleep(delay)
                with receiver.lock:
                    receiver.bodies.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def runs(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [b for p, b in self.bodies if p == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture(scope="module")
def api(dev_stack: DevProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dev_stack.base_url, timeout=30) as client:
        yield client


def _definition(api: httpx.Client, name: str, url: str) -> None:
    r = api.post("/v1/definitions", json={"name": name, "target": {"type": "http", "url": url}})
    assert r.status_code == 201, r.text


def _schedule(api: httpx.Client, sid: str, definition: str, spec: dict[str, Any], **extra: Any) -> None:
    r = api.post("/v1/schedules", json={"schedule_id": sid, "definition": definition, "spec": spec, **extra})
    assert r.status_code == 201, r.text


def _runs(api: httpx.Client, sid: str) -> list[dict[str, Any]]:
    r = api.get("/v1/runs", params={"schedule": sid, "page_size": 1000})
    assert r.status_code == 200, r.text
    return sorted(r.json()["items"], key=lambda x: x["nominal_time"])


def _settled(api: httpx.Client, sid: str) -> list[dict[str, Any]]:
    """The runs of `sid` once none is pending or running and the listing stopped changing."""
    last: list[dict[str, Any]] = []

    def still() -> list[dict[str, Any]] | None:
        nonlocal last
        now = _runs(api, sid)
        done = all(x["status"] not in ("pending", "running") for x in now)
        same = [x["run_id"] for x in now] == [x["run_id"] for x in last]
        last = now
        return now if done and same else None

    runs = wait_for(still, timeout=30, interval=1.0)
    assert runs is not None, last
    return runs


def test_pause_unpause_with_latest_catch_up_and_pause_until(api: httpx.Client, receiver: Receiver) -> None:
    _definition(api, "pu", receiver.url + "/pu")
    _schedule(api, "pu-1s", "pu", {"intervals": [{"every_seconds": 1}]}, policies={"overlap": "allow_all"})
    assert wait_for(lambda: len(receiver.runs("/pu")) >= 2, timeout=30)
    r = api.post("/v1/schedules/pu-1s/pause", json={"note": "maintenance"})
    assert r.status_code == 200, r.text
    assert r.json()["state"]["paused"] is True and r.json()["state"]["note"] == "maintenance"
    paused_at = datetime.now(UTC)
    assert api.get("/v1/schedules", params={"paused": "true"}).json()["items"][0]["schedule_id"] == "pu-1s"
    # The firings planned before the pause (the dev stack's 5 s horizon) arrive and are recorded
    # skipped/paused; those after it fall while paused: counted, not recorded. Stay paused well
    # past the horizon, so some do.
    time.sleep(10)
    runs = _settled(api, "pu-1s")
    delivered_while_paused = [
        b for b in receiver.runs("/pu") if parse(b["scheduled_time"]) > paused_at + timedelta(seconds=1)
    ]
    assert delivered_while_paused == []
    planned = max(parse(x["nominal_time"]) for x in runs)  # the last firing enqueued before the pause
    r = api.post("/v1/schedules/pu-1s/unpause", json={"catch_up": "latest"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == {
        "paused": False,
        "note": "unpaused",
        "paused_until": None,
        "remaining_actions": None,
    }
    unpaused_at = parse(r.json()["info"]["updated_at"])  # the server's clock at the unpause
    assert unpaused_at - planned > timedelta(seconds=2), (planned, unpaused_at)
    assert wait_for(lambda: any(parse(b["nominal_time"]) > unpaused_at for b in receiver.runs("/pu")))
    api.post("/v1/schedules/pu-1s/pause", json={"note": "stop"})
    runs = _settled(api, "pu-1s")
    ran = [
        parse(x["nominal_time"])
        for x in runs
        if x["status"] == "completed" and parse(x["nominal_time"]) > planned
    ]
    # `latest`: the last firing missed while paused runs (at or before the unpause), then the
    # regular ones follow second by second; the missed ones before it never run
    assert ran[0] <= unpaused_at < ran[0] + timedelta(seconds=1), (unpaused_at, ran)
    assert ran == [ran[0] + timedelta(seconds=i) for i in range(len(ran))]
    assert not [x for x in runs if planned < parse(x["nominal_time"]) < ran[0]]  # nothing recorded
    never_ran = int((ran[0] - planned).total_seconds()) - 1
    assert never_ran >= 1

    last_seen: list[tuple[int, int, int, int, int]] = []

    def tallies() -> tuple[int, int, int, int, int] | None:
        # firings enqueued before the "stop" pause may still be arriving: compare once they agree
        counters = api.get("/v1/schedules/pu-1s").json()["info"]["counters"]
        now = _runs(api, "pu-1s")
        recorded_paused = len([x for x in now if x["status"] == "skipped" and x["reason"] == "paused"])
        completed = len([x for x in now if x["status"] == "completed"])
        seen = (
            counters["skipped_paused"],
            recorded_paused + never_ran,
            counters["actions"],
            completed,
            len(receiver.runs("/pu")),
        )
        last_seen[:] = [seen]
        return seen if seen[0] == seen[1] and seen[2] == seen[3] == seen[4] else None

    # the missed ones are counted (on failure: skipped_paused, recorded paused + never ran,
    # actions, completed, deliveries)
    assert wait_for(tallies, timeout=20, interval=1.0), (last_seen, never_ran, _runs(api, "pu-1s"))
    delivered = [b["run_id"] for b in receiver.runs("/pu")]
    assert len(delivered) == len(set(delivered))

    # pause `until`: the schedule unpauses by itself (catch-up none)
    until = datetime.now(UTC) + timedelta(seconds=3)
    r = api.post("/v1/schedules/pu-1s/pause", json={"note": "brief", "until": fmt(until)})
    assert r.status_code == 200 and r.json()["state"]["paused_until"] is not None, r.text
    assert (
        api.post(
            "/v1/schedules/pu-1s/pause", json={"until": fmt(datetime.now(UTC) - timedelta(seconds=5))}
        ).status_code
        == 422
    )
    state = wait_for(
        lambda: (s := api.get("/v1/schedules/pu-1s").json()["state"])["paused"] is False and s, timeout=30
    )
    assert state and state["note"] == "unpaused (until reached)", state
    assert wait_for(lambda: any(parse(b["nominal_time"]) > until for b in receiver.runs("/pu")))
    api.delete("/v1/schedules/pu-1s")


def test_trigger_is_idempotent_by_key_and_works_while_paused(api: httpx.Client, receiver: Receiver) -> None:
    _definition(api, "tr", receiver.url + "/tr")
    _schedule(api, "tr-daily", "tr", {"cron": ["0 3 * * *"]}, state={"paused": True, "note": "manual only"})
    first = api.post(
        "/v1/schedules/tr-daily/trigger", json={"idempotency_key": "deploy-42", "input": {"n": 1}}
    )
    assert first.status_code == 201, first.text
    run = first.json()
    assert run["run_id"].startswith("tr-daily-t-") and len(run["run_id"]) == len("tr-daily-t-") + 12
    assert run["trigger"] == "trigger" and run["nominal_time"] == run["scheduled_time"]
    again = api.post(
        "/v1/schedules/tr-daily/trigger", json={"idempotency_key": "deploy-42", "input": {"n": 2}}
    )
    assert again.status_code == 200 and again.json()["run_id"] == run["run_id"], again.text
    # without a key: a new run each time; the schedule's overlap policy (skip) applies unless the
    # trigger overrides it — the first run may still be running
    other = api.post("/v1/schedules/tr-daily/trigger", json={"overlap": "allow_all"})
    assert other.status_code == 201 and other.json()["run_id"] != run["run_id"]
    assert wait_for(lambda: len(receiver.runs("/tr")) >= 2), (
        receiver.runs("/tr"),
        [(x["run_id"], x["status"], x["reason"]) for x in _runs(api, "tr-daily")],
    )
    runs = _settled(api, "tr-daily")
    assert sorted(x["run_id"] for x in runs) == sorted([run["run_id"], other.json()["run_id"]])
    assert all(x["status"] == "completed" for x in runs)
    bodies = receiver.runs("/tr")
    assert sorted(b["run_id"] for b in bodies) == sorted(x["run_id"] for x in runs)  # each once
    assert next(b for b in bodies if b["run_id"] == run["run_id"])["input"] == {"n": 1}
    described = api.get("/v1/schedules/tr-daily").json()
    assert described["state"]["paused"] is True  # a trigger does not unpause
    assert api.post("/v1/schedules/nope/trigger", json={}).status_code == 404


def test_backfill_dry_run_then_real_then_again(api: httpx.Client, receiver: Receiver) -> None:
    _definition(api, "bf", receiver.url + "/bf")
    _schedule(api, "bf-hourly", "bf", {"cron": ["15 * * * *"]}, policies={"overlap": "allow_all"})
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    start = end - timedelta(hours=5)
    body = {"start": fmt(start), "end": fmt(end)}
    expected = [fmt(start + timedelta(hours=h, minutes=15)) for h in range(5)]
    dry = api.post("/v1/schedules/bf-hourly/backfill", json={**body, "dry_run": True})
    assert dry.status_code in (200, 201), dry.text
    assert dry.json() == {"fire_times": expected, "runs_created": 0}
    time.sleep(1)
    assert _runs(api, "bf-hourly") == [] and receiver.runs("/bf") == []
    real = api.post("/v1/schedules/bf-hourly/backfill", json=body)
    assert real.status_code == 201, real.text
    assert real.json() == {"fire_times": expected, "runs_created": 5}
    assert wait_for(lambda: len(receiver.runs("/bf")) >= 5)
    runs = _settled(api, "bf-hourly")
    assert [x["nominal_time"] for x in runs] == expected
    assert all(x["trigger"] == "backfill" and x["status"] == "completed" for x in runs)
    again = api.post("/v1/schedules/bf-hourly/backfill", json=body)
    assert again.json()["runs_created"] == 0  # every time already has its run
    time.sleep(1)
    assert sorted(b["nominal_time"] for b in receiver.runs("/bf")) == expected  # each once
    bad = api.post("/v1/schedules/bf-hourly/backfill", json={"start": fmt(end), "end": fmt(start)})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_argument", bad.text
    progress = api.get("/v1/schedules/bf-hourly").json()["info"]["backfills"]
    assert progress and progress[0]["total"] == 5 and progress[0]["started"] == 5


def test_overlap_skips_are_recorded_and_counted(api: httpx.Client, receiver: Receiver) -> None:
    _definition(api, "sk", receiver.url + "/slow-sk")
    _schedule(api, "sk-1s", "sk", {"intervals": [{"every_seconds": 1}]}, policies={"overlap": "skip"})
    # each run takes 2.5 s: while it runs, the firings of the next seconds are skipped
    assert wait_for(lambda: len(receiver.runs("/slow-sk")) >= 2, timeout=30)
    api.post("/v1/schedules/sk-1s/pause", json={})
    runs = _settled(api, "sk-1s")
    overlap = [x for x in runs if x["status"] == "skipped" and x["reason"] == "overlap"]
    paused = [x for x in runs if x["status"] == "skipped" and x["reason"] == "paused"]
    completed = [x for x in runs if x["status"] == "completed"]
    assert overlap, runs
    assert all(x["started_at"] is None and x["attempt"] == 0 for x in overlap)
    counters = api.get("/v1/schedules/sk-1s").json()["info"]["counters"]
    assert counters["skipped_overlap"] == len(overlap)
    # the enqueued firings delivered while paused are recorded; a firing the ticker reached while
    # paused is counted without a record (on a slow machine the ticker may get to one before the
    # runs settle)
    assert counters["skipped_paused"] >= len(paused)
    assert counters["actions"] == len(completed) == len(receiver.runs("/slow-sk"))
    listed = api.get("/v1/runs", params={"schedule": "sk-1s", "status": "skipped", "page_size": 1000}).json()
    assert {x["run_id"] for x in listed["items"]} == {x["run_id"] for x in overlap + paused}


def test_a_firing_in_flight_is_listed_readable_and_cancelable_before_its_run_is_written(
    api: httpx.Client, receiver: Receiver
) -> None:
    """A firing is claimed by its ledger write and its run written when the attempt ends: while
    its (slow) target runs, the schedule's list shows it running, GET and cancel find it — the
    cancel records it — and the attempt's end goes into the canceled run's history."""
    _definition(api, "inflight", receiver.url + "/slow-inflight")
    _schedule(api, "inflight-1", "inflight", {"intervals": [{"every_seconds": 30}]})

    def running() -> dict[str, Any] | None:
        r = api.get("/v1/runs", params={"schedule": "inflight-1", "status": "running", "page_size": 5})
        items = r.json()["items"]
        return items[0] if items else None

    run = wait_for(running, timeout=45, interval=0.2)
    assert run is not None and run["status"] == "running"
    got = api.get(f"/v1/runs/{run['run_id']}")
    assert got.status_code == 200 and got.json()["status"] == "running", got.text
    canceled = api.post(f"/v1/runs/{run['run_id']}/cancel", json={"reason": "enough"})
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled", canceled.text
    api.post("/v1/schedules/inflight-1/pause", json={})

    def late_finish() -> list[str] | None:
        events = api.get(f"/v1/runs/{run['run_id']}/history").json()["events"]
        types = [e["type"] for e in events]
        return types if "late_finish" in types else None

    types = wait_for(late_finish, timeout=30, interval=0.5)
    assert types is not None and types.index("cancel_requested") < types.index("late_finish")
    assert api.get(f"/v1/runs/{run['run_id']}").json()["status"] == "canceled"
