"""The firing queue on SQS: SendMessageBatch, 10 messages a call, per-message delays."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config

from gnomon.ports import DeadLetter, OutgoingMessage


class SqsFiringQueue:
    def __init__(self, queue_url: str | None = None, client: Any = None) -> None:
        self.url = queue_url or os.environ["GNOMON_FIRING_QUEUE_URL"]
        # shared by a worker's threads: room for all of them (botocore's default pool is 10)
        self._sqs = client or boto3.client("sqs", config=Config(max_pool_connections=32))

    def send(self, messages: list[OutgoingMessage]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": json.dumps(m.body, separators=(",", ":")),
                    "DelaySeconds": max(0, min(900, int(m.delay_seconds))),
                }
                for i, m in enumerate(chunk)
            ]
            for _ in range(3):
                resp = self._sqs.send_message_batch(QueueUrl=self.url, Entries=entries)
                failed = {f["Id"] for f in resp.get("Failed", [])}
                if not failed:
                    break
                entries = [e for e in entries if e["Id"] in failed]
            else:
                raise RuntimeError(f"SQS refused {len(entries)} message(s): {resp.get('Failed')}")


class SqsDeadLetterQueue:
    """The firing queue's DLQ. moto lacks StartMessageMoveTask, and receive/send/delete works in
    AWS as well, so redrive moves messages itself (each sent before it is deleted: at worst a
    message is redriven twice, and the worker's claims make that harmless)."""

    def __init__(self, dlq_url: str | None = None, queue_url: str | None = None, client: Any = None) -> None:
        self.url = dlq_url or os.environ["GNOMON_DLQ_URL"]
        self.target = queue_url or os.environ["GNOMON_FIRING_QUEUE_URL"]
        self._sqs = client or boto3.client("sqs")

    def _receive(self, limit: int, visibility: int) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for _ in range(max(1, limit // 10 + 2)):
            resp = self._sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=min(10, limit - len(seen)) or 1,
                VisibilityTimeout=visibility,
                AttributeNames=["All"],
                WaitTimeSeconds=0,
            )
            msgs = resp.get("Messages", [])
            new = [m for m in msgs if m["MessageId"] not in seen]
            if not new:
                break
            for m in new:
                seen[m["MessageId"]] = m
            if len(seen) >= limit:
                break
        return list(seen.values())[:limit]

    def peek(self, limit: int) -> list[DeadLetter]:
        out = []
        # Hidden while the page is gathered (so it never holds a message twice), then made
        # visible again at once so a redrive right after finds them.
        received = self._receive(limit, visibility=30)
        for start in range(0, len(received), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(received[start : start + 10])
            ]
            self._sqs.change_message_visibility_batch(QueueUrl=self.url, Entries=entries)
        for m in received:
            attrs = m.get("Attributes", {})
            sent = attrs.get("SentTimestamp")
            out.append(
                DeadLetter(
                    message_id=m["MessageId"],
                    body=m["Body"],
                    receive_count=int(attrs.get("ApproximateReceiveCount", 0)),
                    sent_at=datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None,
                )
            )
        return out

    def redrive(self, limit: int) -> int:
        moved = 0
        for m in self._receive(limit, visibility=60):
            self._sqs.send_message(QueueUrl=self.target, MessageBody=m["Body"])
            self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
            moved += 1
        return moved
