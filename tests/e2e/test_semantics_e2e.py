"""Schedule semantics on the real local stack: an overlap policy against a slow receiver, and a
backfill delivered end to end at its rate."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from gnomon.domain.timefmt import parse
from tests.e2e.conftest import DevProcess, wait_for

e2e = pytest.mark.e2e
SLOW_SECONDS = 3.0


class SlowReceiver:
    """Answers 200; `/slow` only after SLOW_SECONDS. Records when each request began and ended."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                began = time.time()
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if self.path.startswith("/slow"):
                    time.sleep(SLOW_SECONDS)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')
                with receiver.lock:
                    receiver.requests.append(
                        {"path": self.path, "body": body, "began": began, "ended": time.time()}
                    )

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def seen(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return sorted((r for r in self.requests if r["path"] == path), key=lambda r: r["began"])


@pytest.fixture(scope="module")
def receiver() -> Iterator[SlowReceiver]:
    r = SlowReceiver()
    yield r
    r.server.shutdown()


@e2e
def test_buffer_one_against_a_slow_receiver(dev_stack: DevProcess, receiver: SlowReceiver) -> None:
    with httpx.Client(base_url=dev_stack.base_url, timeout=30) as api:
        r = api.post(
            "/v1/definitions",
            json={
                "name": "slow",
                "target": {"type": "http", "url": receiver.url + "/slow"},
                "timeout_seconds": 30,
            },
        )
        assert r.status_code == 201, r.text
        r = api.post(
            "/v1/schedules",
            json={
                "schedule_id": "slow-every-1s",
                "definition": "slow",
                "spec": {"intervals": [{"every_seconds": 1}]},
                "policies": {"overlap": "buffer_one"},
            },
        )
        assert r.status_code == 201, r.text
        # a firing every second, each run takes 3 s: one runs, one waits, the others are skipped
        assert wait_for(lambda: len(receiver.seen("/slow")) >= 3, timeout=30), receiver.seen("/slow")
        api.post("/v1/schedules/slow-every-1s/pause", json={"note": "enough"})
        calls = receiver.seen("/slow")
        for before, after in zip(calls, calls[1:], strict=False):
            assert after["began"] >= before["ended"] - 0.05, "two runs of a buffer_one schedule overlapped"
        run_ids = [c["body"]["run_id"] for c in calls]
        assert len(run_ids) == len(set(run_ids)), "a run was delivered twice"
        # the run that waited started as soon as the one before it ended, well after its own time
        waited = [
            (c, before)
            for before, c in zip(calls, calls[1:], strict=False)
            if c["began"] - parse(c["body"]["scheduled_time"]).timestamp() > 1.5
        ]
        assert waited, calls
        assert all(c["began"] - before["ended"] < 2.0 for c, before in waited)
        runs = api.get("/v1/runs", params={"schedule": "slow-every-1s", "page_size": 1000}).json()["items"]
        skipped = [x for x in runs if x["status"] == "skipped"]
        assert skipped and {x["reason"] for x in skipped} <= {"overlap", "paused"}
        assert any(x["reason"] == "overlap" for x in skipped)
        info = api.get("/v1/schedules/slow-every-1s").json()["info"]
        assert info["counters"]["skipped_overlap"] >= 1
        assert len([x for x in runs if x["status"] in ("running", "completed")]) <= len(calls) + 1


@e2e
def test_a_backfill_is_delivered_at_its_rate_while_paused(
    dev_stack: DevProcess, receiver: SlowReceiver
) -> None:
    with httpx.Client(base_url=dev_stack.base_url, timeout=30) as api:
        r = api.post(
            "/v1/definitions",
            json={"name": "fast", "target": {"type": "http", "url": receiver.url + "/fast"}},
        )
        assert r.status_code == 201, r.text
        r = api.post(
            "/v1/schedules",
            json={
                "schedule_id": "nightly",
                "definition": "fast",
                "spec": {"cron": ["0 3 * * *"]},
                "policies": {"backfill_rate": 1},
                "state": {"paused": True, "note": "backfill only"},
                "input": {"k": "v"},
            },
        )
        assert r.status_code == 201, r.text
        window = {"start": "2026-11-01T00:00:00Z", "end": "2026-11-03T23:59:59Z"}
        dry = api.post("/v1/schedules/nightly/backfill", json={**window, "dry_run": True})
        expected = ["2026-11-01T03:00:00Z", "2026-11-02T03:00:00Z", "2026-11-03T03:00:00Z"]
        assert (dry.status_code, dry.json()) == (200, {"fire_times": expected, "runs_created": 0})
        real = api.post("/v1/schedules/nightly/backfill", json={**window, "overlap": "allow_all"})
        assert (real.status_code, real.json()) == (201, {"fire_times": expected, "runs_created": 3})
        assert wait_for(lambda: len(receiver.seen("/fast")) == 3, timeout=20), receiver.seen("/fast")
        calls = receiver.seen("/fast")
        assert [c["body"]["nominal_time"] for c in calls] == expected
        assert all(c["body"]["input"] == {"k": "v"} for c in calls)

        def finished() -> bool:
            runs = api.get("/v1/runs", params={"schedule": "nightly"}).json()["items"]
            return len(runs) == 3 and all(x["status"] == "completed" for x in runs)

        assert wait_for(finished, timeout=10)
        runs = sorted(
            (
                api.get(f"/v1/runs/{x['run_id']}").json()
                for x in api.get("/v1/runs", params={"schedule": "nightly"}).json()["items"]
            ),
            key=lambda x: x["nominal_time"],
        )
        assert {x["trigger"] for x in runs} == {"backfill"}
        slots = [parse(x["not_before"]) for x in runs]
        assert [(b - a).total_seconds() for a, b in zip(slots, slots[1:], strict=False)] == [1.0, 1.0]
        # backfill_rate 1: start slots a second apart, none started (nor delivered) before its slot
        assert all(parse(x["started_at"]) >= parse(x["not_before"]) for x in runs)
        assert all(c["began"] >= s.timestamp() - 0.01 for c, s in zip(calls, slots, strict=True))
        described = api.get("/v1/schedules/nightly").json()
        assert described["state"]["paused"] is True
        (progress,) = described["info"]["backfills"]
        assert {k: progress[k] for k in ("start", "end", "total", "started", "overlap")} == {
            "start": window["start"],
            "end": window["end"],
            "total": 3,
            "started": 3,
            "overlap": "allow_all",
        }
        again = api.post("/v1/schedules/nightly/backfill", json=window)
        assert again.json()["runs_created"] == 0
