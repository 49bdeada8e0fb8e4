"""The firing queue as SQS behaves for a Lambda event source, on the harness's virtual clock.

Why not moto's SQS: moto times visibility and delays on the wall clock (the harness runs hours
of virtual time in seconds), never delivers a message twice by itself, and gets slow on deep
queues (NOTES.md). This model keeps the SQS semantics gnomon relies on and nothing more:

- at-least-once: a received message stays in the queue, invisible for the visibility timeout,
  until deleted; if not deleted by then it is delivered again (`ApproximateReceiveCount` grows);
- per-message `DelaySeconds` (whole seconds);
- each receive issues a new receipt handle and only the latest one deletes the message (AWS:
  "you must provide the most recently received receipt handle"; an older one may not delete it
  — here it never does);
- a message received more than `max_receive_count` times goes to the dead-letter queue
  (the template's RedrivePolicy), where it is kept for the auditor.

It implements the `FiringQueue` port (`send`) for the services, and receive / delete /
`expire_visibility` for the harness's workers.
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gnomon.ports import Clock, OutgoingMessage


@dataclass
class Message:
    seq: int
    message_id: str
    body: str
    visible_at: datetime
    receive_count: int = 0
    receipt: str | None = None
    sent_at: datetime | None = None

    def record(self) -> dict[str, Any]:
        """The SQS event record a Lambda event source hands the worker."""
        return {
            "messageId": self.message_id,
            "receiptHandle": self.receipt,
            "body": self.body,
            "attributes": {"ApproximateReceiveCount": str(self.receive_count)},
            "eventSource": "aws:sqs",
        }


@dataclass
class SimQueue:
    clock: Clock
    visibility_timeout: int
    max_receive_count: int
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _messages: dict[str, Message] = field(default_factory=dict)
    _heap: list[tuple[datetime, int, str]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    dead: list[Message] = field(default_factory=list)
    sent: int = 0
    stale_deletes: int = 0

    # -- the FiringQueue port -------------------------------------------------------------------

    def send(self, messages: list[OutgoingMessage]) -> None:
        now = self.clock.now()
        with self._lock:
            for m in messages:
                seq = next(self._seq)
                msg = Message(
                    seq=seq,
                    message_id=f"m-{seq}",
                    body=json.dumps(m.body, separators=(",", ":")),
                    visible_at=now + timedelta(seconds=max(0, min(900, int(m.delay_seconds)))),
                    sent_at=now,
                )
                self._messages[msg.message_id] = msg
                heapq.heappush(self._heap, (msg.visible_at, seq, msg.message_id))
                self.sent += 1

    # -- the event source -----------------------------------------------------------------------

    def receive(self, limit: int = 10) -> list[Message]:
        """Up to `limit` visible messages, oldest visible first; each becomes invisible for the
        visibility timeout under a new receipt handle (copies are returned)."""
        now = self.clock.now()
        out: list[Message] = []
        with self._lock:
            while self._heap and len(out) < limit and self._heap[0][0] <= now:
                visible_at, _, mid = heapq.heappop(self._heap)
                msg = self._messages.get(mid)
                if msg is None or msg.visible_at != visible_at:
                    continue  # deleted, or an outdated heap entry
                received = self._take(msg, now)
                if received is not None:
                    out.append(received)
        return out

    def expire_visibility(self, message_id: str) -> Message | None:
        """The message's visibility timeout ends now and another consumer receives it at once
        (answers that delivery; None if it was deleted meanwhile or dead-lettered)."""
        now = self.clock.now()
        with self._lock:
            msg = self._messages.get(message_id)
            if msg is None:
                return None
            return self._take(msg, now)

    def delete(self, message_id: str, receipt: str | None) -> bool:
        with self._lock:
            msg = self._messages.get(message_id)
            if msg is None:
                return False
            if msg.receipt != receipt:
                self.stale_deletes += 1
                return False
            del self._messages[message_id]
            return True

    def next_visible_at(self) -> datetime | None:
        with self._lock:
            while self._heap:
                visible_at, _, mid = self._heap[0]
                msg = self._messages.get(mid)
                if msg is not None and msg.visible_at == visible_at:
                    return visible_at
                heapq.heappop(self._heap)
            return None

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)

    def _take(self, msg: Message, now: datetime) -> Message | None:
        msg.receive_count += 1
        if msg.receive_count > self.max_receive_count:
            del self._messages[msg.message_id]
            self.dead.append(msg)
            return None
        msg.receipt = f"{msg.message_id}#{msg.receive_count}"
        msg.visible_at = now + timedelta(seconds=self.visibility_timeout)
        heapq.heappush(self._heap, (msg.visible_at, msg.seq, msg.message_id))
        return Message(
            msg.seq, msg.message_id, msg.body, msg.visible_at, msg.receive_count, msg.receipt, msg.sent_at
        )
