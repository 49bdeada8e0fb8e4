"""The firing queue on SQS: SendMessageBatch, 10 messages a call, per-message delays."""

from __future__ import annotations

import json
import os
from typing import Any

import boto3

from gnomon.ports import OutgoingMessage


class SqsFiringQueue:
    def __init__(self, queue_url: str | None = None, client: Any = None) -> None:
        self.url = queue_url or os.environ["GNOMON_FIRING_QUEUE_URL"]
        self._sqs = client or boto3.client("sqs")

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
