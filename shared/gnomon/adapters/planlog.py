"""The plan log's item layout, shared by both adapters, and its in-memory store.

The ticker records each page of planned schedules as a few items, never one per firing:

- the page's firings sorted by scheduled time are cut into chunks whose scheduled times span at
  most `SPAN` (15 min, the longest horizon) and whose compressed payload stays under
  `MAX_PAYLOAD` bytes (an item of ~4 KB = 4 write units on DynamoDB);
- a chunk's key: `pk` = "plan#<UTC day of its first scheduled time>", `sk` = "<sortable first
  scheduled time>#<random id>". A window [start, end) then reads the sort-key range
  [start − SPAN, end] of at most three day partitions (a window spans ≤ 24 h), whatever its
  length, and only the items that can hold one of its firings;
- the payload is zlib-compressed JSON: firings grouped by schedule (id, generation,
  config_version, group, definition written once), each firing two integers (nominal time in ms
  from the chunk's first scheduled time, scheduled − nominal in ms);
- `expires_at` (the table's TTL attribute) is `RETENTION` after the chunk's last scheduled time.
  Readers skip expired items themselves: DynamoDB deletes them only eventually.

Why a day, not an hour, per partition: writes go to the partition of the current time
whatever its width, so a wider one costs nothing on the write side and saves queries.
"""

from __future__ import annotations

import builtins
import json
import math
import threading
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gnomon.adapters.memory import epoch_seconds
from gnomon.domain.timefmt import from_ms, sortable, to_ms
from gnomon.ports import PlannedFiring, PlanWindow

PARTITION_PREFIX = "plan#"
SPAN = timedelta(seconds=900)  # a chunk's scheduled times lie within this of its first
MAX_PAYLOAD = 3800  # compressed bytes per chunk: with its keys, an item stays under 4 KB
RETENTION = timedelta(hours=1)  # a chunk expires this long after its last scheduled time
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class PlanChunk:
    """One plan-log item."""

    pk: str
    sk: str
    last: str  # sortable last scheduled time (a reader's filter)
    count: int  # firings in it (readers bound what they read by it)
    payload: bytes
    expires_at: datetime


def chunks(
    firings: Iterable[PlannedFiring], *, new_id: Callable[[], str] = lambda: uuid.uuid4().hex[:16]
) -> builtins.list[PlanChunk]:
    """The items that record `firings` (see the module docstring)."""
    ordered = sorted(firings, key=lambda f: (f.scheduled_time, f.schedule_id, f.nominal_time))
    out: list[PlanChunk] = []
    run: list[PlannedFiring] = []
    for f in ordered:
        if run and f.scheduled_time - run[0].scheduled_time > SPAN:
            out += _sized(run, new_id)
            run = []
        run.append(f)
    if run:
        out += _sized(run, new_id)
    return out


def _sized(run: builtins.list[PlannedFiring], new_id: Callable[[], str]) -> builtins.list[PlanChunk]:
    """`run` as one chunk, or cut into as many parts as its compressed size asks for."""
    payload = encode(run)
    if len(payload) <= MAX_PAYLOAD or len(run) == 1:
        first, last = run[0].scheduled_time, run[-1].scheduled_time
        return [
            PlanChunk(
                pk=partition(first),
                sk=f"{sortable(first)}#{new_id()}",
                last=sortable(last),
                count=len(run),
                payload=payload,
                expires_at=last + RETENTION,
            )
        ]
    parts = max(2, math.ceil(len(payload) * 1.15 / MAX_PAYLOAD))
    size = math.ceil(len(run) / parts)
    return [c for i in range(0, len(run), size) for c in _sized(run[i : i + size], new_id)]


def encode(run: builtins.list[PlannedFiring]) -> bytes:
    """Sorted firings as a compressed payload (grouped by schedule; times as small integers)."""
    base = to_ms(run[0].scheduled_time)
    groups: dict[tuple[str, str, int, str, str], list[list[int]]] = {}
    for f in run:
        key = (f.schedule_id, f.generation, f.config_version, f.group, f.definition)
        nominal = to_ms(f.nominal_time)
        groups.setdefault(key, []).append([nominal - base, to_ms(f.scheduled_time) - nominal])
    doc = {
        "b": base,
        "s": [
            {"i": sid, "g": gen, "c": cv, "p": group, "d": definition, "t": times}
            for (sid, gen, cv, group, definition), times in groups.items()
        ],
    }
    return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 9)


def decode(payload: bytes) -> Iterator[PlannedFiring]:
    """The firings of a payload `encode` wrote."""
    doc: Any = json.loads(zlib.decompress(payload))
    base = int(doc["b"])
    for s in doc["s"]:
        for nominal, delta in s["t"]:
            yield PlannedFiring(
                schedule_id=str(s["i"]),
                generation=str(s["g"]),
                config_version=int(s["c"]),
                nominal_time=from_ms(base + nominal),
                scheduled_time=from_ms(base + nominal + delta),
                group=str(s["p"]),
                definition=str(s["d"]),
            )


def partition(t: datetime) -> str:
    """The partition of a chunk whose first scheduled time is `t`: its UTC day."""
    return PARTITION_PREFIX + sortable(t)[:10]


@dataclass(frozen=True)
class KeyRange:
    """Where a window's chunks are: these partitions, sort keys in [low, high]."""

    partitions: builtins.list[str]
    low: str
    high: str
    start_key: str  # chunks whose `last` sorts below this end before the window


def key_range(start: datetime, end: datetime) -> KeyRange:
    """The chunks that may hold a firing scheduled in [start, end): their first time is in
    [start − SPAN, end). The bounds are widened by a millisecond (times are kept in ms, a
    window's bounds may carry µs); firings are filtered exactly after decoding."""
    low_t, high_t = start - SPAN - _MS, end + _MS
    days: list[str] = []
    day = low_t.replace(hour=0, minute=0, second=0, microsecond=0)
    while day <= high_t:
        days.append(partition(day))
        day += timedelta(days=1)
    return KeyRange(days, sortable(low_t), sortable(high_t), sortable(start - _MS))


def select(
    chunk_payloads: Iterable[tuple[int, bytes]], start: datetime, end: datetime, limit: int
) -> PlanWindow:
    """The firings of the chunks read (each as (count, payload)) inside [start, end), sorted;
    `complete` False once more than `limit` firings were read."""
    firings: list[PlannedFiring] = []
    read = 0
    for count, payload in chunk_payloads:
        read += count
        if read > limit:
            return PlanWindow(_sorted(firings), complete=False)
        firings += [f for f in decode(payload) if start <= f.scheduled_time < end]
    return PlanWindow(_sorted(firings), complete=True)


def _sorted(firings: builtins.list[PlannedFiring]) -> builtins.list[PlannedFiring]:
    return sorted(firings, key=lambda f: (f.scheduled_time, f.schedule_id, f.nominal_time))


class MemoryPlanLog:
    """`PlanLog` in memory, with the DynamoDB adapter's items and key ranges (unit tests and
    `GNOMON_STORE=memory`). Expired items are skipped, never deleted (as TTL is not modelled
    elsewhere in the fakes)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], PlanChunk] = {}
        self._lock = threading.Lock()

    def record(self, firings: builtins.list[PlannedFiring], *, now: datetime) -> None:
        made = chunks(firings)
        with self._lock:
            self.items.update(((c.pk, c.sk), c) for c in made)

    def window(self, start: datetime, end: datetime, *, now: datetime, limit: int) -> PlanWindow:
        keys = key_range(start, end)
        now_s = epoch_seconds(now)
        with self._lock:
            found = sorted(
                (c for c in self.items.values() if c.pk in keys.partitions and keys.low <= c.sk <= keys.high),
                key=lambda c: (c.pk, c.sk),
            )
        return select(
            (
                (c.count, c.payload)
                for c in found
                if c.last >= keys.start_key and epoch_seconds(c.expires_at) >= now_s
            ),
            start,
            end,
            limit,
        )
