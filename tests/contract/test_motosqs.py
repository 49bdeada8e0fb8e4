"""The moto SQS speed-up of the dev stack's moto host answers what moto answers."""

from __future__ import annotations

import boto3
from moto import mock_aws

from gnomon.local.motosqs import speed_up_moto_sqs


def test_send_receive_and_attributes_behave_the_same_once_sped_up() -> None:
    with mock_aws():
        speed_up_moto_sqs()
        assert speed_up_moto_sqs() is False  # idempotent
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="q", Attributes={"MessageRetentionPeriod": "345600"})["QueueUrl"]
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": "0", "MessageBody": "now"},
                {"Id": "1", "MessageBody": "later", "DelaySeconds": 60},
            ],
        )
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attrs["ApproximateNumberOfMessages"] == "1"
        assert attrs["ApproximateNumberOfMessagesDelayed"] == "1"
        assert attrs["MessageRetentionPeriod"] == "345600"
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert [m["Body"] for m in got] == ["now"]
        attrs = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )
        assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"
        fifo = sqs.create_queue(
            QueueName="f.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
        )["QueueUrl"]
        for _ in range(2):  # deduplicated by content: the FIFO attribute is still seen by send
            sqs.send_message(QueueUrl=fifo, MessageBody="x", MessageGroupId="g")
        assert len(sqs.receive_message(QueueUrl=fifo, MaxNumberOfMessages=10)["Messages"]) == 1


def test_a_long_poll_returns_a_delayed_message_once_its_delay_ends() -> None:
    """moto's long poll woke only for a new message (or at the end of each 1 s wait), so a
    message whose delay ran out mid-wait came back up to a second late; sped up, it comes back
    when it becomes visible, as from SQS."""
    import time

    with mock_aws():
        speed_up_moto_sqs()
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=1)
        time.sleep(0.4)  # the poll starts 0.6 s before the message becomes visible
        t0 = time.monotonic()
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"]
        waited = time.monotonic() - t0
        assert [m["Body"] for m in got] == ["later"]
        # visible after ~0.6 s of waiting; moto alone answered at its next 1 s wake-up
        assert 0.4 < waited < 0.95, waited
