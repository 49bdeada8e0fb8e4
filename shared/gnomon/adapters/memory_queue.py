"""An in-memory firing queue for unit tests."""

from __future__ import annotations

import json
import threading
from typing import Any

from gnomon.ports import OutgoingMessage


class MemoryFiringQueue:
    """The firing queue as a list (unit tests): `drain()` takes everything sent so far."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: list[tuple[dict[str, Any], int]] = []

    def send(self, messages: list[OutgoingMessage]) -> None:
        with self._lock:
            for m in messages:
                self.sent.append((json.loads(json.dumps(m.body)), int(m.delay_seconds)))

    def drain(self) -> list[tuple[dict[str, Any], int]]:
        """Every message sent so far (body, delay), oldest first, removed from the queue."""
        with self._lock:
            out = list(self.sent)
            self.sent.clear()
            return out
