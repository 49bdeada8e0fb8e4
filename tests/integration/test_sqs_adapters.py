"""The SQS adapters under moto: batching with per-message delays, and DLQ peek / redrive."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from gnomon.adapters.sqs import SqsDeadLetterQueue, SqsFiringQueue
from gnomon.local.template import create_resources, load_template
from gnomon.ports import OutgoingMessage
from gnomon.services.ops import Ops


@pytest.fixture
def queues() -> Iterator[tuple[Any, str, str]]:
    with mock_aws():
        res = create_resources(load_template(), endpoint_url=None, prefix="gnomon-sqs-")
        yield (
            boto3.client("sqs", region_name="us-east-1"),
            res.queues["FiringQueue"],
            res.queues["FiringDeadLetterQueue"],
        )


def _counts(sqs: Any, url: str) -> tuple[int, int]:
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesDelayed"])


def test_send_batches_of_ten_with_delays(queues: tuple[Any, str, str]) -> None:
    sqs, url, _ = queues
    q = SqsFiringQueue(url, sqs)
    q.send([OutgoingMessage({"i": i}, delay_seconds=0 if i < 13 else 2000) for i in range(25)])
    visible, delayed = _counts(sqs, url)
    assert (visible, delayed) == (13, 12)  # delays are capped at SQS's 900 s, not dropped


def test_dlq_peek_reports_reasons_and_redrive_moves_messages_back(queues: tuple[Any, str, str]) -> None:
    sqs, url, dlq_url = queues
    sqs.send_message(QueueUrl=dlq_url, MessageBody="not json")
    sqs.send_message(QueueUrl=dlq_url, MessageBody=json.dumps({"kind": "run", "run_id": "r", "attempt": 1}))
    dlq = SqsDeadLetterQueue(dlq_url, url, sqs)
    ops = Ops(runs=None, dlq=dlq, clock=None)  # type: ignore[arg-type]
    items = ops.dead_letters(10)["items"]
    reasons = sorted(i["reason"].split(":")[0].split(" ")[0] for i in items)
    assert reasons == ["failed", "unreadable"]
    assert ops.redrive(10) == {"redriven": 2}
    assert _counts(sqs, url)[0] == 2
    assert dlq.peek(10) == []
