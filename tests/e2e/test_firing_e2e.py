"""The firing pipeline on the real local stack: schedules deliver to a local HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import DevProcess, wait_for

e2e = pytest.mark.e2e
BODY_KEYS = {
    "run_id",
    "definition",
    "schedule_id",
    "nominal_time",
    "scheduled_time",
    "previous_nominal_time",
    "last_success_time",
    "attempt",
    "input",
}


class Receiver:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "raw": raw, "at": time.time()}
                    )
                status = 500 if self.path.startswith("/fail") else 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(r["raw"]) for r in self.requests if r["path"] == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@e2e
def test_interval_and_six_field_cron_schedules_deliver_signed_firings(
    dev_stack: DevProcess, receiver: Receiver
) -> None:
    with httpx.Client(base_url=dev_stack.base_url, timeout=30) as api:
        r = api.post(
            "/v1/definitions",
            json={"name": "hook", "target": {"type": "http", "url": receiver.url + "/hook"}},
        )
        assert r.status_code == 201, r.text
        secret = r.json()["signing_secret"]
        for sid, spec in (
            ("every-2s", {"intervals": [{"every_seconds": 2}]}),
            ("cron-3s", {"cron": ["*/3 * * * * *"]}),
        ):
            r = api.post(
                "/v1/schedules",
                json={"schedule_id": sid, "definition": "hook", "spec": spec, "input": {"s": sid}},
            )
            assert r.status_code == 201, r.text

        def enough() -> bool:
            seen = Counter(b["schedule_id"] for b in receiver.bodies("/hook"))
            return seen["every-2s"] >= 3 and seen["cron-3s"] >= 2

        assert wait_for(enough, timeout=20), receiver.bodies("/hook")
        api.post("/v1/schedules/every-2s/pause")
        api.post("/v1/schedules/cron-3s/pause")
        with receiver.lock:
            requests = [r for r in receiver.requests if r["path"] == "/hook"]
        for req in requests:
            body = json.loads(req["raw"])
            assert set(body) == BODY_KEYS
            headers = {k.lower(): v for k, v in req["headers"].items()}
            assert headers["idempotency-key"] == body["run_id"]
            assert headers["gnomon-callback-token"]
            t, v1 = (part.split("=", 1)[1] for part in headers["gnomon-signature"].split(","))
            expected = hmac.new(secret.encode(), t.encode() + b"." + req["raw"], hashlib.sha256).hexdigest()
            assert v1 == expected
            assert body["input"] == {"s": body["schedule_id"]}
            # delivered within a second of its scheduled time (second precision, loose for CI)
            late = req["at"] - _epoch(body["scheduled_time"])
            assert -0.5 < late < 3.0, (body, late)
        run_ids = [json.loads(r["raw"])["run_id"] for r in requests]
        assert len(run_ids) == len(set(run_ids)), "a firing was delivered twice"
        cron_times = [b["nominal_time"] for b in receiver.bodies("/hook") if b["schedule_id"] == "cron-3s"]
        assert all(int(t[17:19]) % 3 == 0 for t in cron_times)

        # the runs are recorded, newest first, and describe shows them
        # Firings already enqueued when the pause came are still recorded (as skipped `paused`)
        # for up to the dev horizon (5 s): compare listings once the schedule's runs settle.
        def settled() -> list[dict[str, Any]] | None:
            before = api.get("/v1/runs", params={"schedule": "every-2s"}).json()["items"]
            time.sleep(6)
            after = api.get("/v1/runs", params={"schedule": "every-2s"}).json()["items"]
            return after if before == after else None

        runs = wait_for(settled, timeout=40)
        assert runs, "the schedule's runs kept changing"
        assert runs and all(r["status"] == "completed" for r in runs if r["run_id"] in run_ids)
        times = [r["nominal_time"] for r in runs]
        assert times == sorted(times, reverse=True)
        lateness = api.get(
            "/v1/metrics/lateness", params={"schedule": "every-2s", "bucket_seconds": 3600}
        ).json()
        assert sum(b["count"] for b in lateness["buckets"]) >= 3
        assert all(b["p50_ms"] < 3000 for b in lateness["buckets"])
        info = api.get("/v1/schedules/every-2s").json()["info"]
        assert info["recent_actions"] and info["counters"]["actions"] >= 3
        # pagination over the schedule's runs
        seen, token = [], None
        while True:
            params: dict[str, Any] = {"schedule": "every-2s", "page_size": 1}
            if token:
                params["page_token"] = token
            page = api.get("/v1/runs", params=params).json()
            seen += [r["run_id"] for r in page["items"]]
            token = page["next_page_token"]
            if not token:
                break
        assert seen == [r["run_id"] for r in runs]


@e2e
def test_a_failing_target_is_retried_to_its_limit_and_execute_now_works(
    dev_stack: DevProcess, receiver: Receiver
) -> None:
    with httpx.Client(base_url=dev_stack.base_url, timeout=30) as api:
        r = api.post(
            "/v1/definitions",
            json={
                "name": "fails",
                "target": {"type": "http", "url": receiver.url + "/fail"},
                "retry": {"max_attempts": 3, "initial_interval_seconds": 1, "backoff_coefficient": 1},
            },
        )
        assert r.status_code == 201, r.text
        r = api.post("/v1/definitions/fails/execute", json={"input": {"x": 1}, "run_id": "e2e-fail-1"})
        assert r.status_code == 201, r.text
        assert (
            api.post(
                "/v1/definitions/fails/execute", json={"input": {"x": 1}, "run_id": "e2e-fail-1"}
            ).status_code
            == 200
        )
        assert wait_for(lambda: api.get("/v1/runs/e2e-fail-1").json()["status"] == "failed", timeout=20)
        run = api.get("/v1/runs/e2e-fail-1").json()
        assert run["attempt"] == 3 and run["error"]["code"] == "http_500"
        history = api.get("/v1/runs/e2e-fail-1/history").json()
        assert [a["status"] for a in history["attempts"]] == ["failed", "failed", "failed"]
        assert len(receiver.bodies("/fail")) == 3
        assert [b["attempt"] for b in receiver.bodies("/fail")] == [1, 2, 3]
        failed = api.get("/v1/runs", params={"definition": "fails", "status": "failed"}).json()["items"]
        assert [r["run_id"] for r in failed] == ["e2e-fail-1"]

        r = api.post(
            "/v1/definitions",
            json={"name": "ok-now", "target": {"type": "http", "url": receiver.url + "/now"}},
        )
        r = api.post("/v1/definitions/ok-now/execute", json={"input": {"y": 2}})
        assert r.status_code == 201 and r.json()["trigger"] == "execute"
        run_id = r.json()["run_id"]
        assert run_id.startswith("ok-now-")
        assert wait_for(lambda: api.get(f"/v1/runs/{run_id}").json()["status"] == "completed", timeout=10)
        assert receiver.bodies("/now")[0]["input"] == {"y": 2}


def _epoch(t: str) -> float:
    from gnomon.domain.timefmt import parse

    return parse(t).timestamp()
