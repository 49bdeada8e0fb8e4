"""Counter items in memory: the fake `StatsStore` (gnomon.services.stats) behind unit tests.

TTL is kept (whole epoch seconds, as DynamoDB keeps it) but, as in `gnomon.adapters.memory`,
never acted on: an expired item stays readable, like one DynamoDB has not deleted yet.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime

from gnomon.adapters.memory import epoch_seconds


class MemoryStatsStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, dict[str, int]] = {}
        self._expires: dict[str, int] = {}

    def add(self, key: str, deltas: Mapping[str, int], *, expires_at: datetime | None = None) -> None:
        if not deltas:
            return
        with self._lock:
            item = self._items.setdefault(key, {})
            for name, delta in deltas.items():
                item[name] = item.get(name, 0) + int(delta)
            if expires_at is not None:
                self._expires[key] = epoch_seconds(expires_at)

    def get_many(self, keys: list[str]) -> dict[str, dict[str, int]]:
        if len(keys) > 100:
            raise ValueError("at most 100 keys")
        with self._lock:
            return {k: dict(self._items[k]) for k in keys if k in self._items}

    def expires_at(self, key: str) -> int | None:
        """The TTL of an item (epoch seconds), for tests."""
        with self._lock:
            return self._expires.get(key)
