"""Notifications (`failed`, `missed`, `paused_on_failure`, `halted`) on the simulated pipeline,
the signed webhook through the real http code to a loopback receiver that checks the signature,
and the lifecycle bus wrappers."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from gnomon.adapters.notify import AwsNotificationSender
from gnomon.domain import netpolicy
from gnomon.ports import Outcome
from gnomon.services.notify import Notifier
from tests.unit.pipeline import Pipeline

TOPIC = "arn:aws:sns:us-east-1:000000000000:alerts"
FAIL = Outcome(status="failed", error={"code": "x", "message": "boom"})


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def publish_sns(self, topic_arn: str, subject: str, message: dict[str, Any]) -> None:
        self.sent.append((topic_arn, message))

    def post_webhook(self, url: str, body: bytes, signing_secret: str) -> None:
        self.sent.append((url, json.loads(body)))


def pipeline(on: list[str], **definition: Any) -> tuple[Pipeline, FakeSender]:
    p = Pipeline()
    fake = FakeSender()
    p.s.notifier._sender = fake  # type: ignore[attr-defined]
    p.definition("job", notifications=[{"on": on, "sns_topic_arn": TOPIC}], **definition)
    return p, fake


def kinds(fake: FakeSender) -> list[str]:
    return [m["notification"] for _, m in fake.sent]


def test_failed_and_paused_on_failure() -> None:
    p, fake = pipeline(
        ["failed", "paused_on_failure"], retry={"max_attempts": 2, "initial_interval_seconds": 1}
    )
    p.target.script = lambda inv: FAIL
    p.schedule(spec={"intervals": [{"every_seconds": 10}]}, policies={"pause_on_failure": True})
    p.run_for(25)
    assert kinds(fake) == ["failed", "paused_on_failure"]  # once, after the last attempt
    failed = fake.sent[0][1]
    assert failed["definition"] == "job" and failed["schedule_id"] == "s" and failed["error"]["code"] == "x"
    assert failed["attempt"] == 2 and failed["status"] == "failed"
    assert fake.sent[1][1]["note"].startswith("paused due to run failure: ")


def test_only_the_events_listed_fire() -> None:
    p, fake = pipeline(["missed"], retry={"max_attempts": 1})
    p.target.script = lambda inv: FAIL
    p.schedule(spec={"intervals": [{"every_seconds": 10}]}, policies={"pause_on_failure": True})
    p.run_for(25)
    assert fake.sent == []


def test_missed() -> None:
    p, fake = pipeline(["missed"])
    p.schedule(spec={"intervals": [{"every_seconds": 60}]}, policies={"catchup_window_seconds": 180})
    p.queue.drain()
    p.clock.advance(600)  # ten minutes of downtime: five firings fall outside the window
    p.run_for(2)
    [(topic, message)] = fake.sent
    assert topic == TOPIC and message["notification"] == "missed"
    assert message["schedule_id"] == "s" and message["missed"] == 5
    assert [t[11:16] for t in message["nominal_times"]] == ["10:02", "10:03", "10:04", "10:05", "10:06"]


def test_a_failing_sender_is_counted_and_the_run_still_closes() -> None:
    p, _ = pipeline(["failed"], retry={"max_attempts": 1})

    class Broken(FakeSender):
        def publish_sns(self, topic_arn: str, subject: str, message: dict[str, Any]) -> None:
            raise ConnectionError("SNS unreachable")

    p.s.notifier._sender = Broken()  # type: ignore[attr-defined]
    p.target.script = lambda inv: FAIL
    p.s.runs.execute("job", {}, "r1", None)
    p.deliver_due()
    assert p.run_store.get("r1").status == "failed"
    assert (p.s.notifier.sent, p.s.notifier.failed) == (0, 1)


# -- the signed webhook, through the real http code --------------------------------------------


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[tuple[dict[str, str], bytes]], list[int]]]:
    got: list[tuple[dict[str, str], bytes]] = []
    status = [204]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(status[0])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    netpolicy.configure(["127.0.0.0/8"])
    yield server.server_address[1], got, status
    netpolicy.configure([])
    server.shutdown()
    server.server_close()


def test_webhook_notifications_are_signed_like_target_requests(
    receiver: tuple[int, list[tuple[dict[str, str], bytes]], list[int]],
) -> None:
    port, got, status = receiver
    p = Pipeline()
    p.s.notifier._sender = AwsNotificationSender()  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}/notify"
    p.definition("job", retry={"max_attempts": 1}, notifications=[{"on": ["failed"], "webhook_url": url}])
    secret = p.s.catalog.get("definition", "job").doc["signing_secret"]
    p.target.script = lambda inv: FAIL
    p.s.runs.execute("job", {}, "r1", None)
    p.deliver_due()
    [(headers, body)] = got
    t, v1 = (part.split("=", 1)[1] for part in headers["gnomon-signature"].split(","))
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(v1, expected)
    assert headers["content-type"] == "application/json"
    message = json.loads(body)
    assert (message["notification"], message["run_id"], message["time"]) == (
        "failed",
        "r1",
        "2026-12-01T10:00:00Z",
    )
    assert p.s.notifier.sent == 1

    status[0] = 500  # a webhook that answers an error counts as a failed notification
    p.s.runs.execute("job", {}, "r2", None)
    p.deliver_due()
    assert p.run_store.get("r2").status == "failed" and p.s.notifier.failed == 1


def test_a_webhook_to_a_refused_address_is_not_sent() -> None:
    sender = AwsNotificationSender()
    netpolicy.configure([])
    with pytest.raises(RuntimeError, match="forbidden"):
        sender.post_webhook("http://169.254.169.254/latest", b"{}", "s")


def test_notifier_without_a_definition_sends_nothing() -> None:
    p = Pipeline()
    notifier = Notifier(p.s.catalog, FakeSender(), p.clock)
    assert notifier.notify("ghost", "failed", {}) == 0
