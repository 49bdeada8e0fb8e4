"""The chaos harness in its short form, and the two races it cannot leave to chance, forced
deterministically with a `before-call` hook (the long form: `python -m bench chaos`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta

import pytest

from gnomon.ports import Invocation
from tests.chaos.faults import Faults
from tests.chaos.harness import Chaos, ChaosConfig, moto_aws, run_chaos


def test_chaos_short_form_loses_nothing_and_doubles_nothing() -> None:
    """A few hundred firings through 2–4 concurrent tickers and three workers, with every
    fault injected; counter increments are spared (see `ChaosConfig.spare_counters`)."""
    cfg = ChaosConfig(seed=7, schedules=6, duration_s=240, spare_counters=True, p_crash=0.08)
    chaos, audit = run_chaos(cfg)
    # Every injector fired.
    assert chaos.injected["duplicate"] > 0
    assert chaos.injected["crash"] > 0
    assert chaos.injected["visibility"] > 0
    assert chaos.injected["concurrent_tickers"] >= 2 * chaos.ticks
    assert chaos.faults.counts["throttle:ProvisionedThroughputExceededException"] > 0
    assert chaos.faults.counts["throttle:ThrottlingException"] > 0
    assert chaos.faults.counts["ambiguous"] > 0
    assert chaos.faults.counts["ambiguous_retried"] > 0
    throttled = sum(n for k, n in chaos.faults.counts.items() if k.startswith("throttle"))
    exposed = sum(chaos.faults.requests.values()) - chaos.faults.counts["spared_counter_write"]
    assert 0.15 < throttled / exposed < 0.25  # 20 % of the requests that may be faulted
    # ... and did what it is meant to do.
    assert chaos.outcomes["duplicate"] > 0  # redeliveries found their run taken
    assert chaos.tick_reports["conflicts"] > 0  # tickers raced on schedules
    assert chaos.tick_reports["runs_swept"] > 0  # crashed workers' leases expired
    assert chaos.injected["hold_abandoned"] > 0  # workers died inside a held batch ...
    assert chaos.tick_reports["holds_swept"] > 0  # ... and the sweep found their holds expired
    assert audit.firings >= 150 and chaos.finished_at is not None
    assert audit.clean, json.dumps(audit.as_dict(), indent=1)
    assert audit.runs == audit.firings


# -- deterministic races -----------------------------------------------------------------------------


@pytest.fixture
def race() -> Iterator[Chaos]:
    """A harness with no random faults or failures: one schedule every 10 s under `allow_all`."""
    faults = Faults(seed=1)
    with moto_aws() as template, faults.installed():
        # No random outcome at all: run ids carry the schedule's random generation, so a
        # target failure rolled from them would differ from run to run.
        quiet = ChaosConfig(seed=1, duration_s=600, p_duplicate=0, p_crash=0, p_visibility=0, p_fail=0)
        chaos = Chaos(quiet, template, faults)
        chaos.definitions()
        chaos.add_schedule("race", 10)
        faults.enabled = True
        yield chaos


def _condition_write_on(table_env: str) -> object:
    table = os.environ[table_env]
    return lambda params: params.get("TableName") == table and "ConditionExpression" in params


def _deliver_all(chaos: Chaos, worker: int = 0) -> None:
    while batch := chaos.queue.receive(10):
        for msg in batch:
            chaos.process(chaos.workers[worker], msg, msg.message_id)


def test_ticker_b_advances_between_ticker_a_reading_and_writing(race: Chaos) -> None:
    a, b = (t.services.ticker for t in race.tickers[:2])
    race.clock.set(race.clock.now() + timedelta(seconds=60))  # the next horizon is due
    sent_before = race.queue.sent
    # Inside A's conditional advance of the schedule — after A read it and enqueued its
    # firings — ticker B plans the same schedule and advances it first.
    hook = race.faults.once(
        "UpdateItem", _condition_write_on("GNOMON_SCHEDULES_TABLE"), lambda: b.plan("race")
    )
    report = a.tick()
    assert hook.fired and race.faults.counts["race:UpdateItem"] == 1
    assert report.conflicts == 1  # A's write failed on B's version, A read again: nothing left
    enqueued = race.queue.sent - sent_before
    assert enqueued == 12  # 6 firings in the horizon, each enqueued by both tickers
    race.clock.set(race.clock.now() + timedelta(seconds=61))  # all of them visible
    _deliver_all(race)
    runs = race.admin.services.run_store.recent("race", limit=100)
    assert race.outcomes["duplicate"] == 6  # the second copy of each of the raced firings
    invoked = [i.run_id for i in race.invoked]
    assert len(invoked) == len(set(invoked)) == len(runs)  # each firing ran once
    assert all(r.status == "completed" for r in runs)


def test_worker_b_claims_the_run_between_worker_a_reading_and_writing(race: Chaos) -> None:
    attempts: dict[str, int] = {}

    def script(inv: Invocation) -> str:
        attempts[inv.run_id] = inv.attempt
        return "failed" if inv.attempt == 1 else "completed"

    race.script = script
    race.clock.set(race.clock.now() + timedelta(seconds=15))  # the first firing (T0 + 10 s) is due
    (msg,) = race.queue.receive(1)
    worker_a, worker_b = race.workers[0], race.workers[1]
    # 1. The firing: inside A's conditional put of the new run, B handles the same message.
    hook = race.faults.once(
        "PutItem", _condition_write_on("GNOMON_RUNS_TABLE"), lambda: race.process(worker_b, msg, "b")
    )
    race.process(worker_a, msg, "a")
    assert hook.fired
    assert race.outcomes["duplicate"] == 1 and race.outcomes["retry_scheduled"] == 1
    assert [(i.worker, i.attempt) for i in race.invoked] == [("worker-1", 1)]
    # 2. Attempt 2: inside A's conditional pending → running claim, B claims and runs it.
    race.clock.set(race.clock.now() + timedelta(seconds=2))
    (retry,) = race.queue.receive(1)
    assert json.loads(retry.body)["kind"] == "run"
    hook = race.faults.once(
        "UpdateItem", _condition_write_on("GNOMON_RUNS_TABLE"), lambda: race.process(worker_b, retry, "b2")
    )
    race.process(worker_a, retry, "a2")
    assert hook.fired and race.faults.counts["race:UpdateItem"] == 1
    assert race.outcomes["duplicate"] == 2
    assert [(i.worker, i.attempt) for i in race.invoked] == [("worker-1", 1), ("worker-1", 2)]
    (run,) = race.admin.services.run_store.recent("race", limit=10)
    assert run.status == "completed"
    assert [a["status"] for a in run.doc["attempts"]] == ["failed", "completed"]
