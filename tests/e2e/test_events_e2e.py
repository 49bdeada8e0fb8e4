"""Event-triggered definitions on the real local stack (`gnomon dev`), driven over HTTP: a key
halts after N failed runs, later events for it are kept, the `halted` notification reaches a
signed webhook, restart resumes from the failed event, and every event completes exactly once,
in order. Also the SQS ingestion path of the template (EventIngestQueue → worker)."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import DevProcess, wait_for

e2e = pytest.mark.e2e


@dataclass
class Receiver:
    """A loopback HTTP server: `/hook` is the definition's target (500 for payloads listed in
    `failing`), `/notify` the notification webhook."""

    calls: list[tuple[str, int]] = field(default_factory=list)  # (key, n) per target request
    completed: list[tuple[str, int]] = field(default_factory=list)
    notifications: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    failing: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = 200
            with rec.lock:
                if self.path == "/notify":
                    rec.notifications.append(({k.lower(): v for k, v in self.headers.items()}, body))
                else:
                    event = json.loads(body)["input"]
                    item = (event["key"], event["payload"]["n"])
                    rec.calls.append(item)
                    if item[1] in rec.failing:
                        status = 500
                    else:
                        rec.completed.append(item)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


def _verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    parts = dict(p.split("=", 1) for p in headers["gnomon-signature"].split(","))
    mac = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, parts["v1"]) and abs(time.time() - int(parts["t"])) < 300


@e2e
def test_a_key_halts_keeps_its_events_and_restart_runs_each_once_in_order(
    dev_stack: DevProcess, receiver: Receiver
) -> None:
    name = f"ops-{uuid.uuid4().hex[:8]}"
    etype = f"order.{uuid.uuid4().hex[:6]}"
    base = f"http://127.0.0.1:{receiver.port}"
    receiver.failing = {2}
    with httpx.Client(base_url=dev_stack.base_url, timeout=30) as api:
        r = api.post(
            "/v1/definitions",
            json={
                "name": name,
                "target": {"type": "http", "url": f"{base}/hook"},
                "retry": {"max_attempts": 1, "initial_interval_seconds": 1},
                "triggers": [{"event_type": etype}],
                "max_consecutive_failures": 2,
                "notifications": [{"on": ["halted"], "webhook_url": f"{base}/notify"}],
            },
        )
        assert r.status_code == 201, r.text
        secret = r.json()["signing_secret"]

        def send(key: str, n: int) -> None:
            r = api.post(
                "/v1/events", json={"type": etype, "key": key, "payload": {"n": n}, "event_id": f"{key}-{n}"}
            )
            assert r.status_code == 202, r.text
            assert r.json()["definitions"] == [{"definition": name, "seq": n, "duplicate": False}]

        for n in range(1, 5):
            send("k", n)
        send("side", 1)
        # a repeated event id is accepted (202) and not appended again
        again = api.post(
            "/v1/events", json={"type": etype, "key": "k", "payload": {"n": 1}, "event_id": "k-1"}
        )
        assert again.status_code == 202 and again.json()["definitions"][0]["duplicate"] is True

        def halted() -> dict[str, Any] | None:
            op = api.get(f"/v1/operators/{name}").json()
            return op if op["status"] == "halted" else None

        op = wait_for(halted, timeout=60)
        assert op, api.get(f"/v1/operators/{name}").json()
        assert op["key"] == "k" and op["halted_keys"] == ["k"] and op["since"]
        assert op["error"]["code"] == "http_500"
        [k] = [x for x in op["keys"] if x["key"] == "k"]
        assert (k["done_seq"], k["pending_events"], k["failures"]) == (1, 3, 2)
        listed = {o["definition"]: o for o in api.get("/v1/operators").json()["items"]}
        assert listed[name]["status"] == "halted"

        send("k", 5)  # stored while halted
        k = wait_for(
            lambda: next(
                (x for x in api.get(f"/v1/operators/{name}").json()["keys"] if x["pending_events"] == 4), None
            )
        )
        assert k and k["last_seq"] == 5
        with receiver.lock:
            assert [c for c in receiver.calls if c[0] == "k"] == [("k", 1), ("k", 2), ("k", 2)]

        # the `halted` notification reached the webhook, signed with the definition's secret
        assert wait_for(lambda: receiver.notifications, timeout=30)
        headers, body = receiver.notifications[0]
        assert _verify(secret, headers, body)
        note = json.loads(body)
        assert (note["notification"], note["definition"], note["key"], note["seq"]) == (
            "halted",
            name,
            "k",
            2,
        )

        receiver.failing = set()
        r = api.post(f"/v1/operators/{name}/restart", json={"key": "k"})
        assert r.status_code == 200, r.text
        assert r.json()["restarted"] == ["k"]

        def done() -> bool:
            with receiver.lock:
                finished = [c for c in receiver.completed if c[0] == "k"]
            return len(finished) >= 5 and api.get(f"/v1/operators/{name}").json()["status"] == "idle"

        assert wait_for(done, timeout=60), receiver.calls
        with receiver.lock:
            assert [n for key, n in receiver.completed if key == "k"] == [1, 2, 3, 4, 5]
            assert [n for key, n in receiver.calls if key == "k"] == [1, 2, 2, 2, 3, 4, 5]
            assert [n for key, n in receiver.completed if key == "side"] == [1]
        runs = api.get("/v1/runs", params={"definition": name, "page_size": 100}).json()["items"]
        assert len(runs) == 8 and {r["trigger"] for r in runs} == {"event"}
        assert sorted(r["status"] for r in runs) == ["completed"] * 6 + ["failed"] * 2


@e2e
def test_events_sent_to_the_ingestion_queue_run(dev_stack: DevProcess, receiver: Receiver) -> None:
    name = f"ingest-{uuid.uuid4().hex[:8]}"
    etype = f"shop.{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=dev_stack.base_url, timeout=30) as api:
        r = api.post(
            "/v1/definitions",
            json={
                "name": name,
                "target": {"type": "http", "url": f"http://127.0.0.1:{receiver.port}/hook"},
                "triggers": [{"event_type": etype}],
            },
        )
        assert r.status_code == 201, r.text
        sqs = dev_stack.client("sqs")
        [url] = [u for u in sqs.list_queues()["QueueUrls"] if "EventIngestQueue" in u]
        # a bare event, and an EventBridge envelope (as the template's rule delivers it)
        sqs.send_message(
            QueueUrl=url, MessageBody=json.dumps({"type": etype, "key": "q", "payload": {"n": 1}})
        )
        envelope = {
            "id": str(uuid.uuid4()),
            "detail-type": "gnomon.event",
            "source": "shop",
            "detail": {"type": etype, "key": "q", "payload": {"n": 2}},
        }
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(envelope))

        def both() -> bool:
            with receiver.lock:
                return len([c for c in receiver.completed if c[0] == "q"]) >= 2

        assert wait_for(both, timeout=60), receiver.calls
        with receiver.lock:
            assert sorted(n for key, n in receiver.completed if key == "q") == [1, 2]
