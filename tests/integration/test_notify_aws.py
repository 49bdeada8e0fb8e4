"""Notifications and lifecycle events against moto: a definition's SNS notification is published
(seen by an SQS queue subscribed to the topic), and with a lifecycle bus every run status change
and schedule change lands on EventBridge (seen through a rule that targets an SQS queue)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from gnomon.adapters.memory import MemoryCatalogStore, MemoryRequestLog, MemoryRunStore, MemoryScheduleStore
from gnomon.adapters.memory_queue import MemoryFiringQueue
from gnomon.adapters.notify import AwsNotificationSender, EventBridgeBus, bus_from_env
from gnomon.domain.model import DefinitionBody, ScheduleCreate
from gnomon.ports import Outcome
from gnomon.wiring import build
from tests.unit.pipeline import CALLER, FakeClock, ScriptedTarget


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield


def _queue(name: str) -> tuple[Any, str, str]:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return sqs, url, arn


def _drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return out
        out += [json.loads(m["Body"]) for m in got]
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
        )


def _services(**kw: Any) -> Any:
    target = ScriptedTarget(
        script=lambda inv: Outcome(status="failed", error={"code": "x", "message": "boom"})
    )
    s = build(
        clock=FakeClock(),
        catalog=MemoryCatalogStore(),
        schedule_store=MemoryScheduleStore(),
        run_store=MemoryRunStore(),
        requests=MemoryRequestLog(),
        queue=MemoryFiringQueue(),
        invoker=target,
        token_key=b"k",
        **kw,
    )
    return s


def test_sns_notification_is_published(aws: None) -> None:
    topic = boto3.client("sns").create_topic(Name="alerts")["TopicArn"]
    sqs, url, arn = _queue("alerts-inbox")
    boto3.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    s = _services(notification_sender=AwsNotificationSender())
    body = {
        "name": "job",
        "target": {"type": "http", "url": "https://example.com/h"},
        "retry": {"max_attempts": 1},
        "notifications": [{"on": ["failed"], "sns_topic_arn": topic}],
    }
    s.definitions.create(DefinitionBody.model_validate(body), CALLER)
    s.runs.execute("job", {}, "r1", None)
    for message, _ in s.queue.drain():
        s.executor.handle(message)
    assert s.run_store.get("r1").status == "failed"
    [envelope] = _drain(sqs, url)
    assert envelope["Subject"] == "gnomon failed: job"
    message = json.loads(envelope["Message"])
    assert (message["notification"], message["run_id"], message["error"]["code"]) == ("failed", "r1", "x")
    assert envelope["MessageAttributes"]["notification"]["Value"] == "failed"
    assert s.notifier.sent == 1 and s.notifier.failed == 0


def test_a_missing_topic_is_counted_not_raised(aws: None) -> None:
    s = _services(notification_sender=AwsNotificationSender())
    body = {
        "name": "job",
        "target": {"type": "http", "url": "https://example.com/h"},
        "retry": {"max_attempts": 1},
        "notifications": [{"on": ["failed"], "sns_topic_arn": "arn:aws:sns:us-east-1:123456789012:nope"}],
    }
    s.definitions.create(DefinitionBody.model_validate(body), CALLER)
    s.runs.execute("job", {}, "r1", None)
    for message, _ in s.queue.drain():
        s.executor.handle(message)
    assert s.run_store.get("r1").status == "failed"
    assert s.notifier.failed == 1


def test_lifecycle_changes_are_put_on_the_bus(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    events = boto3.client("events")
    events.create_event_bus(Name="gnomon-bus")
    sqs, url, arn = _queue("lifecycle")
    events.put_rule(Name="all", EventBusName="gnomon-bus", EventPattern=json.dumps({"source": ["gnomon"]}))
    events.put_targets(Rule="all", EventBusName="gnomon-bus", Targets=[{"Id": "q", "Arn": arn}])
    monkeypatch.setenv("GNOMON_EVENT_BUS_NAME", "gnomon-bus")
    bus = bus_from_env()
    assert isinstance(bus, EventBridgeBus)
    s = _services(lifecycle_bus=bus)
    s.definitions.create(
        DefinitionBody.model_validate(
            {
                "name": "job",
                "target": {"type": "http", "url": "https://example.com/h"},
                "retry": {"max_attempts": 1},
            }
        ),
        CALLER,
    )
    s.schedules.create(
        ScheduleCreate.model_validate(
            {"schedule_id": "s", "definition": "job", "spec": {"intervals": [{"every_seconds": 3600}]}}
        ),
        CALLER,
    )
    s.schedules.pause("s", "maintenance", None, CALLER)
    s.runs.execute("job", {}, "r1", None)
    for message, _ in s.queue.drain():
        s.executor.handle(message)
    got = _drain(sqs, url)
    assert {e["source"] for e in got} == {"gnomon"}
    runs = [e["detail"] for e in got if e["detail-type"] == "gnomon.run"]
    assert [(d["run_id"], d["status"]) for d in runs] == [
        ("r1", "pending"),
        ("r1", "running"),
        ("r1", "failed"),
    ]
    assert runs[-1]["previous_status"] == "running" and runs[-1]["error"]["code"] == "x"
    schedules = [
        (e["detail"]["schedule_id"], e["detail"]["change"])
        for e in got
        if e["detail-type"] == "gnomon.schedule"
    ]
    assert schedules == [("s", "created"), ("s", "paused")]


def test_no_bus_without_a_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GNOMON_EVENT_BUS_NAME", "")
    assert bus_from_env() is None
