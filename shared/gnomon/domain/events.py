"""Event streams, as pure decisions (CONTRACT.md §7; EventStreamex's operator scheduler).

A stream is the ordered events of one (definition, key); its head (`gnomon.ports_events.
StreamHead`) says how far it got. Events run one at a time, in sequence order: the next event
starts only once the run of the previous one completed. A run that fails (after its last
retry) is followed by a new run of the same event, until `max_consecutive_failures` runs in a row
failed: then the key halts — later events are still appended, none runs — until a restart, which
resumes from the failed event. A run canceled or terminated by an operator counts as the event
handled (the operator chose to drop it): the stream moves on.

What to do next is `next_step(head)`; what a run's end means for the head is `settle(...)`.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from gnomon.ports import JSON
from gnomon.ports_events import StreamHead

KEY_MAX = 512
"""Longest event key (characters): the key is part of DynamoDB's partition key."""
TYPE_MAX = 256


class Step(StrEnum):
    """What a stream needs next."""

    wait = "wait"
    """A run is in flight: its end moves the stream."""
    settle = "settle"
    """The run in flight may have ended: look at it (`settle`)."""
    start = "start"
    """Start a run for event `done_seq + 1`."""
    halted = "halted"
    """Halted: nothing runs until a restart."""
    idle = "idle"
    """Every event is processed."""


# Run statuses, as strings (the domain of runs owns them; repeated here to keep this module leaf).
_SUCCESS = "completed"
_FAILURE = frozenset({"failed", "timed_out"})
_DROPPED = frozenset({"canceled", "terminated", "skipped"})
TERMINAL = _FAILURE | _DROPPED | {_SUCCESS}


def next_step(head: StreamHead) -> Step:
    """What the stream needs next (with a run in flight: look at it first)."""
    if head.inflight is not None:
        return Step.settle
    if head.halted:
        return Step.halted
    if head.done_seq < head.last_seq:
        return Step.start
    return Step.idle


def settle(
    head: StreamHead, run_id: str, status: str, error: JSON | None, max_failures: int, now: datetime
) -> StreamHead | None:
    """The head once the in-flight run `run_id` ended with `status`; None when nothing changes
    (not the run in flight, or still open). A success moves to the next event and clears the
    failures; a failure counts, and halts the key at `max_failures`; a canceled, terminated or
    skipped run drops its event (the stream moves on, the failure count stays)."""
    if head.inflight != run_id or status not in TERMINAL:
        return None
    base = replace(head, inflight=None, last_run_id=run_id, updated_at=now)
    if status == _SUCCESS:
        return replace(base, done_seq=head.done_seq + 1, runs=0, failures=0, error=None)
    if status in _DROPPED:
        return replace(base, done_seq=head.done_seq + 1, runs=0)
    failures = head.failures + 1
    halted = failures >= max_failures
    return replace(
        base,
        failures=failures,
        error=error or {"code": status, "message": f"the run ended {status}", "details": None},
        halted=halted,
        since=now if halted else None,
    )


def started(head: StreamHead, run_id: str, now: datetime) -> StreamHead:
    """The head with a run of event `done_seq + 1` in flight."""
    return replace(head, inflight=run_id, runs=head.runs + 1, updated_at=now)


def restarted(head: StreamHead, now: datetime) -> StreamHead:
    """A halted head resumed: the failed event runs again (a new run), the failures start over."""
    return replace(head, halted=False, since=None, failures=0, updated_at=now)


def run_id_for(definition: str, key: str, seq: int, run_no: int) -> str:
    """The run of the `run_no`-th run of event `seq` of a stream: deterministic, so two workers
    starting it create it once. The key enters as a hash (it may hold any character)."""
    digest = hashlib.sha256(f"{definition}\x00{key}".encode()).hexdigest()[:16]
    return f"{definition}-ev-{digest}-{seq}-{run_no}"


def run_input(event: JSON, key: str, seq: int) -> JSON:
    """What an event's run gets as `input`: the event, with its key and place in the stream."""
    return {
        "event_id": event.get("event_id"),
        "type": event.get("type"),
        "key": key,
        "seq": seq,
        "payload": event.get("payload"),
        "received_at": event.get("received_at"),
    }


def head_view(head: StreamHead, fmt: Any) -> JSON:
    """A stream head as the API answers it (`fmt` formats instants)."""
    return {
        "key": head.key,
        "status": head.state,
        "last_seq": head.last_seq,
        "done_seq": head.done_seq,
        "pending_events": head.last_seq - head.done_seq,
        "run_id": head.inflight,
        "last_run_id": head.last_run_id,
        "failures": head.failures,
        "error": head.error,
        "since": fmt(head.since),
        "updated_at": fmt(head.updated_at),
    }


def operator_status(heads: list[StreamHead]) -> str:
    """`halted` if any key halted, else `running` if any key has work, else `idle`."""
    states = {h.state for h in heads}
    if "halted" in states:
        return "halted"
    return "running" if "running" in states else "idle"
