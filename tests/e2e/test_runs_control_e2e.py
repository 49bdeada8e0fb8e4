"""Run control on the real local stack: cancel a running run, signal and query it, read stats."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import DevProcess, wait_for

e2e = pytest.mark.e2e


class Receiver:
    """Answers 202 on /accept (the run stays running until its callback) and 200 elsewhere."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.calls.append(
                        {"path": self.path, "headers": dict(self.headers), "body": json.loads(raw)}
                    )
                self.send_response(202 if self.path.startswith("/accept") else 200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def call_for(self, run_id: str) -> dict[str, Any] | None:
        with self.lock:
            return next((c for c in self.calls if c["body"]["run_id"] == run_id), None)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def _require_router(api: httpx.Client) -> None:
    r = api.get("/v1/stats")
    if r.status_code == 404 and r.json()["error"]["details"].get("resource", "").startswith("route/"):
        pytest.skip("gnomon.api.runs_control.router is not included in gnomon.api.app yet")


@e2e
def test_cancel_signal_query_and_stats(dev_stack: DevProcess, receiver: Receiver) -> None:
    with httpx.Client(base_url=dev_stack.base_url, timeout=30) as api:
        _require_router(api)
        for name, path in (("ctl-slow", "/accept"), ("ctl-quick", "/ok")):
            r = api.post(
                "/v1/definitions",
                json={"name": name, "target": {"type": "http", "url": receiver.url + path}},
            )
            assert r.status_code == 201, r.text

        run_id = api.post("/v1/definitions/ctl-slow/execute", json={}).json()["run_id"]
        call = wait_for(lambda: receiver.call_for(run_id))
        assert call, "the worker never called the target"
        assert wait_for(lambda: api.get(f"/v1/runs/{run_id}").json()["status"] == "running")
        # the worker counts after its run write: the gauge may trail the status a moment
        assert wait_for(
            lambda: api.get("/v1/stats", params={"definition": "ctl-slow"}).json()["running"] == 1
        )
        assert api.get("/v1/stats", params={"definition": "ctl-slow"}).json()["pending"] == 0

        r = api.post(f"/v1/runs/{run_id}/signal", json={"name": "pause", "payload": {"s": 5}})
        assert r.status_code == 200, r.text
        assert [(s["name"], s["payload"]) for s in r.json()["inbox"]] == [("pause", {"s": 5})]
        r = api.post(f"/v1/runs/{run_id}/query", json={"name": "progress"})
        assert (r.status_code, r.json()) == (200, {"details": None})

        r = api.post(f"/v1/runs/{run_id}/cancel", json={"reason": "e2e says stop"})
        assert r.status_code == 200, r.text
        run = r.json()
        assert run["status"] == "canceled" and run["cancel_requested_at"]
        assert run["error"] == {"code": "canceled", "message": "e2e says stop", "details": {}}
        r = api.post(f"/v1/runs/{run_id}/signal", json={"name": "late"})
        assert (r.status_code, r.json()["error"]["code"]) == (409, "already_closed")
        assert api.post(f"/v1/runs/{run_id}/cancel", json={}).status_code == 409
        assert api.get("/v1/stats", params={"definition": "ctl-slow"}).json()["running"] == 0

        # the attempt finishes after all: its result goes into history, the status stays
        token = call["headers"]["Gnomon-Callback-Token"]
        r = api.post(f"/v1/runs/{run_id}/complete", json={"callback_token": token, "result": {"rows": 1}})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "canceled"
        history = api.get(f"/v1/runs/{run_id}/history").json()
        assert [e["type"] for e in history["events"]][-2:] == ["cancel_requested", "late_finish"]
        assert history["attempts"][-1]["status"] == "completed"

        # a run that completes is counted today, in UTC and in a zone with a quarter-hour offset
        before = api.get("/v1/stats", params={"definition": "ctl-quick"}).json()
        quick = api.post("/v1/definitions/ctl-quick/execute", json={}).json()["run_id"]
        assert wait_for(lambda: api.get(f"/v1/runs/{quick}").json()["status"] == "completed")
        after = wait_for(
            lambda: (
                body
                if (body := api.get("/v1/stats", params={"definition": "ctl-quick"}).json())[
                    "completed_today"
                ]
                == before["completed_today"] + 1
                else None
            )
        )
        assert after, "completed_today never counted the run"
        assert after["timezone"] == "UTC" and after["running"] == 0
        assert api.get("/v1/stats", params={"timezone": "Asia/Kathmandu"}).status_code == 200
        r = api.get("/v1/stats", params={"timezone": "Nowhere/Special"})
        assert (r.status_code, r.json()["error"]["details"][0]["field"]) == (422, "query.timezone")

        # purge: the closed runs go, one bounded page at a time
        r = api.delete("/v1/definitions/ctl-quick/runs", params={"page_size": 1})
        assert r.status_code == 200 and r.json()["deleted"] == 1, r.text
        assert api.get(f"/v1/runs/{quick}").status_code == 404
