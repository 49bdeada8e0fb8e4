"""Event-triggered definitions (CONTRACT.md §7) on the simulated pipeline: in-memory stores, a
fake clock, the real worker (Executor) and the real event service — ordering per key, event-id
dedup, halt after N failed runs, restart from the failed event, notifications."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from gnomon.domain.errors import NotFound
from gnomon.domain.events import Step, next_step, run_id_for, settle
from gnomon.ports import Invocation, Outcome
from gnomon.ports_events import StreamHead
from gnomon.services.events import EventIn, event_of_message, is_event_message
from tests.unit.pipeline import T0, Pipeline

FAIL = Outcome(status="failed", error={"code": "boom", "message": "it broke"}, retryable=True)


class FakeSender:
    def __init__(self) -> None:
        self.sns: list[tuple[str, dict[str, Any]]] = []
        self.webhooks: list[tuple[str, bytes]] = []
        self.broken = False

    def publish_sns(self, topic_arn: str, subject: str, message: dict[str, Any]) -> None:
        if self.broken:
            raise RuntimeError("SNS is down")
        self.sns.append((topic_arn, message))

    def post_webhook(self, url: str, body: bytes, signing_secret: str) -> None:
        self.webhooks.append((url, body))


TOPIC = "arn:aws:sns:us-east-1:000000000000:alerts"


def event_pipeline(backend: str = "memory") -> Pipeline:
    """The pipeline with the `orders` definition these scenarios use."""
    pipe = Pipeline(backend=backend)
    pipe.s.notifier._sender = FakeSender()  # type: ignore[attr-defined]
    pipe.definition(
        "orders",
        triggers=[{"event_type": "order.created"}],
        retry={"max_attempts": 1, "initial_interval_seconds": 1},
        max_consecutive_failures=2,
        notifications=[{"on": ["halted", "failed"], "sns_topic_arn": TOPIC}],
    )
    return pipe


@pytest.fixture
def p() -> Pipeline:
    return event_pipeline()


def sender(p: Pipeline) -> FakeSender:
    return p.s.notifier._sender  # type: ignore[attr-defined,no-any-return]


def send(p: Pipeline, key: str, n: int, event_id: str | None = None, type_: str = "order.created") -> Any:
    return p.s.events.publish(EventIn(type=type_, key=key, payload={"n": n}, event_id=event_id))


def drain(p: Pipeline, rounds: int = 20) -> None:
    """Deliver everything, letting retry backoffs pass."""
    for _ in range(rounds):
        p.deliver_due()
        p.clock.advance(5)
    p.deliver_due()


def calls(p: Pipeline, key: str | None = None) -> list[tuple[str, int]]:
    return [
        (c.input["key"], c.input["payload"]["n"])
        for c in p.target.calls
        if key is None or c.input["key"] == key
    ]


def test_events_run_once_each_in_order_per_key(p: Pipeline) -> None:
    seen_running: list[int] = []

    def script(inv: Invocation) -> Outcome:
        # one event of a key at a time: nothing else of "a" is running meanwhile
        running = list(p.run_store.list(definition="orders", after=None, limit=100).items)
        seen_running.append(sum(1 for r in running if r.status == "running"))
        return Outcome(status="completed")

    p.target.script = script
    for n in range(1, 5):
        send(p, "a", n)
        send(p, "b", n)
    drain(p)
    assert calls(p, "a") == [("a", 1), ("a", 2), ("a", 3), ("a", 4)]
    assert calls(p, "b") == [("b", 1), ("b", 2), ("b", 3), ("b", 4)]
    assert max(seen_running) <= 2  # at most one per key
    runs = p.run_store.list(definition="orders", after=None, limit=100).items
    assert len(runs) == 8 and {r.status for r in runs} == {"completed"}
    assert {r.doc["trigger"] for r in runs} == {"event"}
    op = p.s.events.operator("orders")
    assert (op["status"], op["halted_keys"], op["keys"]) == ("idle", [], [])


def test_only_definitions_that_listen_to_the_type_run(p: Pipeline) -> None:
    p.definition("other", triggers=[{"event_type": "order.paid"}])
    p.definition("plain")
    answer = send(p, "a", 1)
    assert [d["definition"] for d in answer["definitions"]] == ["orders"]
    assert send(p, "a", 2, type_="nobody.listens")["definitions"] == []
    drain(p)
    assert calls(p) == [("a", 1)]


def test_a_repeated_event_id_runs_once(p: Pipeline) -> None:
    first = send(p, "a", 1, event_id="evt-1")
    again = send(p, "a", 1, event_id="evt-1")
    assert first["definitions"] == [{"definition": "orders", "seq": 1, "duplicate": False}]
    assert again["definitions"] == [{"definition": "orders", "seq": 1, "duplicate": True}]
    drain(p)
    send(p, "a", 1, event_id="evt-1")  # also after it ran
    drain(p)
    assert calls(p) == [("a", 1)]


def test_a_key_halts_after_n_failed_runs_keeps_later_events_and_restarts_from_the_failed_one(
    p: Pipeline,
) -> None:
    broken = {2}
    p.target.script = lambda inv: FAIL if inv.input["payload"]["n"] in broken else Outcome(status="completed")
    for n in range(1, 5):
        send(p, "a", n)
    send(p, "b", 1)
    drain(p)
    # event 2 ran twice (two failed runs), then the key halted; 3 and 4 are kept, not run
    assert calls(p, "a") == [("a", 1), ("a", 2), ("a", 2)]
    assert calls(p, "b") == [("b", 1)]
    op = p.s.events.operator("orders")
    assert op["status"] == "halted" and op["key"] == "a" and op["halted_keys"] == ["a"]
    assert op["error"]["code"] == "boom"
    assert op["since"] is not None
    [key] = op["keys"]
    assert (key["pending_events"], key["failures"], key["done_seq"]) == (3, 2, 1)
    halted = [m for _, m in sender(p).sns if m["notification"] == "halted"]
    assert len(halted) == 1 and halted[0]["key"] == "a" and halted[0]["seq"] == 2
    assert len([m for _, m in sender(p).sns if m["notification"] == "failed"]) == 2

    send(p, "a", 5)  # stored while halted, not run
    drain(p)
    assert len(calls(p, "a")) == 3
    assert p.s.events.store.head("orders", "a").last_seq == 5

    broken.clear()
    answer = p.s.events.restart("orders", None)
    assert answer["restarted"] == ["a"]
    drain(p)
    assert calls(p, "a") == [("a", 1), ("a", 2), ("a", 2), ("a", 2), ("a", 3), ("a", 4), ("a", 5)]
    completed = sorted(
        (r.doc["event"]["seq"], r.status)
        for r in p.run_store.list(definition="orders", after=None, limit=100).items
        if r.doc["event"]["key"] == "a" and r.status == "completed"
    )
    assert completed == [
        (1, "completed"),
        (2, "completed"),
        (3, "completed"),
        (4, "completed"),
        (5, "completed"),
    ]
    assert p.s.events.operator("orders")["status"] == "idle"


def test_a_success_resets_the_failure_count(p: Pipeline) -> None:
    failures = {1: 1, 2: 1}  # each event fails once, then succeeds: never 2 in a row for one event

    def script(inv: Invocation) -> Outcome:
        n = inv.input["payload"]["n"]
        if failures.get(n, 0) > 0:
            failures[n] -= 1
            return FAIL
        return Outcome(status="completed")

    p.target.script = script
    send(p, "a", 1)
    send(p, "a", 2)
    drain(p)
    assert calls(p) == [("a", 1), ("a", 1), ("a", 2), ("a", 2)]
    assert p.s.events.operator("orders")["status"] == "idle"


def test_the_next_run_of_a_failed_event_waits_for_the_retry_backoff(p: Pipeline) -> None:
    p.target.script = lambda inv: FAIL
    send(p, "a", 1)
    p.deliver_due()
    assert len(p.target.calls) == 1
    p.clock.advance(0.5)
    p.deliver_due()
    assert len(p.target.calls) == 1  # initial_interval_seconds 1
    p.clock.advance(1)
    p.deliver_due()
    assert len(p.target.calls) == 2


def test_restart_of_one_key_leaves_the_others_halted(p: Pipeline) -> None:
    p.target.script = lambda inv: FAIL
    send(p, "a", 1)
    send(p, "b", 1)
    drain(p)
    assert p.s.events.operator("orders")["halted_keys"] == ["a", "b"]
    p.target.script = lambda inv: Outcome(status="completed")
    assert p.s.events.restart("orders", "b")["restarted"] == ["b"]
    drain(p)
    op = p.s.events.operator("orders")
    assert op["halted_keys"] == ["a"] and op["status"] == "halted"
    assert p.s.events.restart("orders", "b")["restarted"] == []  # not halted: nothing to do


def test_a_canceled_event_run_lets_the_stream_move_on(p: Pipeline) -> None:
    held = p.hold()
    send(p, "a", 1)
    send(p, "a", 2)
    p.deliver_due()
    [run_id] = list(held)
    p.s.runs.terminate(run_id, "operator dropped it")
    p.deliver_due()
    assert [c.input["payload"]["n"] for c in p.target.calls] == [1, 2]


def test_a_pump_repairs_a_head_whose_run_was_never_recorded(p: Pipeline) -> None:
    events = p.s.events
    store = events.store
    head = store.head("orders", "a")
    from gnomon.ports_events import StoredEvent

    doc = {
        "event_id": "e1",
        "type": "order.created",
        "payload": {"n": 1},
        "received_at": "2026-12-01T10:00:00Z",
    }
    head = store.append(head, StoredEvent("orders", "a", 1, "e1", doc))
    run_id = run_id_for("orders", "a", 1, 1)
    store.update_head(replace(head, inflight=run_id, runs=1), expected_version=head.version)  # then "crashed"
    with pytest.raises(NotFound):
        p.run_store.get(run_id)
    events.pump("orders", "a")
    drain(p)
    assert p.run_store.get(run_id).status == "completed"
    assert calls(p) == [("a", 1)]


def test_a_notification_failure_never_fails_the_run(p: Pipeline) -> None:
    sender(p).broken = True
    p.target.script = lambda inv: FAIL
    send(p, "a", 1)
    drain(p)
    assert p.s.events.operator("orders")["status"] == "halted"
    assert p.s.notifier.failed >= 3  # two failed + one halted, none delivered


def test_operators_list_only_event_triggered_definitions(p: Pipeline) -> None:
    p.definition("plain")
    p.definition("zeta", triggers=[{"event_type": "x"}])
    answer = p.s.events.operators(None, 100)
    assert [o["definition"] for o in answer["items"]] == ["orders", "zeta"]
    with pytest.raises(NotFound):
        p.s.events.operator("plain")
    with pytest.raises(NotFound):
        p.s.events.operator("missing")


def test_run_input_carries_the_event(p: Pipeline) -> None:
    send(p, "a", 7, event_id="evt-7")
    drain(p)
    [inv] = p.target.calls
    assert inv.input == {
        "event_id": "evt-7",
        "type": "order.created",
        "key": "a",
        "seq": 1,
        "payload": {"n": 7},
        "received_at": "2026-12-01T10:00:00Z",
    }
    assert inv.schedule_id is None and inv.nominal_time == T0


# -- pure decisions ------------------------------------------------------------------------------

H = StreamHead("d", "k", last_seq=3, done_seq=1, runs=1, inflight="r1", failures=0)


@pytest.mark.parametrize(
    ("head", "status", "expected"),
    [
        (H, "running", None),
        (H, "pending", None),
        (replace(H, inflight="other"), "completed", None),
        (H, "completed", {"done_seq": 2, "runs": 0, "failures": 0, "halted": False, "inflight": None}),
        (H, "failed", {"done_seq": 1, "runs": 1, "failures": 1, "halted": False, "inflight": None}),
        (
            replace(H, failures=1),
            "timed_out",
            {"done_seq": 1, "failures": 2, "halted": True, "inflight": None},
        ),
        (replace(H, failures=1), "canceled", {"done_seq": 2, "runs": 0, "failures": 1, "halted": False}),
        (H, "terminated", {"done_seq": 2, "runs": 0, "halted": False}),
        (replace(H, failures=1), "completed", {"done_seq": 2, "failures": 0}),
    ],
)
def test_settle(head: StreamHead, status: str, expected: dict[str, Any] | None) -> None:
    new = settle(head, "r1", status, None, 2, T0)
    if expected is None:
        assert new is None
        return
    assert new is not None
    for name, value in expected.items():
        assert getattr(new, name) == value, name
    assert new.since == (T0 if new.halted else None)


@pytest.mark.parametrize(
    ("head", "step"),
    [
        (StreamHead("d", "k"), Step.idle),
        (StreamHead("d", "k", last_seq=2, done_seq=2), Step.idle),
        (StreamHead("d", "k", last_seq=2, done_seq=1), Step.start),
        (StreamHead("d", "k", last_seq=2, done_seq=1, inflight="r"), Step.settle),
        (StreamHead("d", "k", last_seq=2, done_seq=1, halted=True), Step.halted),
    ],
)
def test_next_step(head: StreamHead, step: Step) -> None:
    assert next_step(head) is step


def test_run_ids_are_deterministic_and_distinct() -> None:
    assert run_id_for("d", "k", 1, 1) == run_id_for("d", "k", 1, 1)
    ids = {run_id_for("d", k, s, r) for k in ("a", "b") for s in (1, 2) for r in (1, 2)}
    assert len(ids) == 8


def test_ingestion_messages() -> None:
    bare = {"type": "order.created", "key": "o-1", "payload": {"a": 1}}
    envelope = {
        "id": "eb-123",
        "detail-type": "gnomon.event",
        "source": "shop",
        "detail": {"type": "order.created", "key": "o-1", "payload": {"a": 1}},
    }
    assert is_event_message(bare) and is_event_message(envelope)
    assert not is_event_message({"kind": "run", "run_id": "r", "attempt": 1})
    assert event_of_message(envelope).event_id == "eb-123"
    assert event_of_message({**envelope, "detail": {"key": "k"}}).type == "gnomon.event"
    with pytest.raises(ValueError):
        event_of_message({"type": "t", "key": ""})


def test_the_sweep_moves_a_stream_whose_run_ended_unnoticed(p: Pipeline) -> None:
    p.s.executor._close_listeners.clear()  # type: ignore[attr-defined]  # the worker "dies" before telling
    send(p, "a", 1)
    send(p, "a", 2)
    drain(p)
    assert calls(p) == [("a", 1)]  # run 1 completed, but the stream never heard
    assert p.s.events.operator("orders")["status"] == "running"
    assert p.s.events.sweep() == 1
    drain(p)
    assert calls(p) == [("a", 1), ("a", 2)]
    assert p.s.events.sweep() == 1  # still busy: run 2's end went unnoticed too
    assert p.s.events.operator("orders")["status"] == "idle"
    assert p.s.events.sweep() == 0


def test_an_event_run_is_not_retried_beside_its_stream(p: Pipeline) -> None:
    from gnomon.domain.errors import Conflict

    p.target.script = lambda inv: FAIL
    send(p, "a", 1)
    drain(p)
    failed = [
        r for r in p.run_store.list(definition="orders", after=None, limit=10).items if r.status == "failed"
    ]
    assert failed
    with pytest.raises(Conflict, match="restart"):
        p.s.runs.retry(failed[0].run_id)


def test_a_canceled_run_holds_its_key_until_its_attempt_ends(p: Pipeline) -> None:
    held = p.hold()
    send(p, "a", 1)
    send(p, "a", 2)
    p.deliver_due()
    [run_id] = list(held)
    p.s.runs.cancel(run_id, "not needed")  # canceled, but its attempt is still out
    p.deliver_due()
    assert [c.input["payload"]["n"] for c in p.target.calls] == [1]
    p.finish(run_id)  # the attempt ends (its late finish goes into history)
    assert [c.input["payload"]["n"] for c in p.target.calls] == [1, 2]
    assert p.run_store.get(run_id).status == "canceled"


def test_processed_events_get_their_retention_pending_ones_do_not(p: Pipeline) -> None:
    p.target.script = lambda inv: FAIL if inv.input["payload"]["n"] == 2 else Outcome(status="completed")
    for n in (1, 2, 3):
        send(p, "a", n)
    drain(p)
    store: Any = p.s.events.store
    assert store.expires_at("orders", "a", 1) is not None
    assert store.expires_at("orders", "a", 1) >= T0 + timedelta(days=30)
    assert store.expires_at("orders", "a", 2) is None  # halted on it: kept
    assert store.expires_at("orders", "a", 3) is None
