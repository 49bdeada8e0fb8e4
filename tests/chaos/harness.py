"""The chaos harness: gnomon's real ticker and worker code firing interval schedules on a
virtual clock, with DynamoDB on moto (in-process) and the firing queue modelled as SQS behaves
(`tests.chaos.simqueue`), while faults are injected — then an audit of everything recorded.

What runs is what runs in AWS: `Ticker.tick()` (the ticker handler is one call to it) in 2–4
concurrent "containers", and the worker handler's own record processing
(`functions/worker/app.py: _process`, which parses the record, calls `Executor.handle` and
answers a partial batch failure) in several worker containers — each container its own
`gnomon.wiring.build` over its own pynamodb / boto3 clients, as separate Lambda containers are.

Injected (each counted, so tests prove it happened):
- `duplicate`: an SQS record handed to two workers at once (two threads, same receipt);
- `tickers`: 2–4 tickers ticking concurrently, alongside the workers;
- `crash`: the worker dies inside the target call — after its claim, before the delete (the
  message comes back after the visibility timeout; the run's lease expires and the sweep moves on);
- `visibility`: the visibility timeout ends while the target call runs: a second worker
  receives the message and handles it while the first is still inside the call;
- `throttle`, `ambiguous`, `ambiguous_retried` on DynamoDB requests (`tests.chaos.faults`);
- target failures (retried by the definition's retry policy), to exercise attempts > 1.

Audited at the end (`Audit`): every nominal time of every schedule has a run (or was counted
with its reason); no (run, attempt) was invoked twice and no run has two completed attempts;
every run's history is consistent; the schedule counters and the `/v1/stats` counters equal
what the runs recorded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from unittest import mock

from gnomon.domain.model import DefinitionBody, ScheduleCreate
from gnomon.domain.runs import scheduled_run_id
from gnomon.domain.spec import Spec, compile_spec
from gnomon.domain.timefmt import fmt, parse
from gnomon.ports import Invocation, Outcome, RunRecord
from gnomon.services import execute
from gnomon.services.common import Caller
from gnomon.wiring import Services, build
from tests.chaos.faults import Faults
from tests.chaos.simqueue import Message, SimQueue

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
CALLER = Caller("arn:aws:iam::000000000000:user/chaos")
TABLE_ENV = {
    "GNOMON_CATALOG_TABLE": "CatalogTable",
    "GNOMON_SCHEDULES_TABLE": "SchedulesTable",
    "GNOMON_REQUESTS_TABLE": "RequestsTable",
    "GNOMON_RUNS_TABLE": "RunsTable",
}
WORKER_TIMEOUT = "60"  # the template's WorkerTimeout whose visibility timeout the queue uses
TERMINAL = frozenset({"completed", "failed", "timed_out", "canceled", "terminated", "skipped"})
SKIP_COUNTER = {
    "overlap": "skipped_overlap",
    "missed_catchup_window": "missed_catchup_window",
    "buffer_full": "buffer_dropped",
    "paused": "skipped_paused",
}


@dataclass
class ChaosConfig:
    seed: int = 7
    schedules: int = 12
    duration_s: int = 900  # virtual seconds during which the schedules fire
    every: tuple[int, ...] = (5, 10, 15, 20)
    tick_every_s: int = 30
    horizon_s: float = 60.0
    tickers: tuple[int, int] = (2, 4)  # concurrent tickers per tick: min, max
    workers: int = 3  # worker containers
    p_duplicate: float = 0.05
    p_crash: float = 0.03
    p_visibility: float = 0.03
    p_fail: float = 0.10
    p_throttle: float = 0.20
    p_ambiguous: float = 0.02
    p_ambiguous_retried: float = 0.01
    spare_counters: bool = False  # no faults on counter increments (see bench/chaos.py)
    # A worker share of this many claimable runs stores a batch hold (`execute.HOLD_MIN_RUNS`,
    # 3 in production): lower here so that most shares — a batch of ten split over three
    # workers — take the hold path, and a crash inside one always leaves a hold to sweep.
    hold_min_runs: int = 2
    max_drain_s: int = 4 * 3600  # virtual time allowed after the last firing to settle


class WorkerCrash(BaseException):
    """The worker process dies (not an Exception: nothing in gnomon catches it)."""


def intervals(cfg: ChaosConfig) -> list[int]:
    """Each schedule's interval in seconds (seeded)."""
    rng = random.Random(cfg.seed)
    return [rng.choice(cfg.every) for _ in range(cfg.schedules)]


def duration_for(cfg: ChaosConfig, firings: int) -> int:
    """The virtual duration that makes `cfg`'s schedules fire at least `firings` times."""
    rate = sum(1 / e for e in intervals(cfg))
    return int(firings / rate) + 2 * max(cfg.every) + 5


def _roll(seed: int, *key: object) -> float:
    return random.Random(":".join(map(str, (seed, *key)))).random()


# -- the AWS side ---------------------------------------------------------------------------------


@contextlib.contextmanager
def moto_aws() -> Iterator[dict[str, Any]]:
    """moto's DynamoDB (in-process, requests serialised as DynamoDB serialises writes per item)
    with the template's tables, their names in the environment. Answers the template."""
    from moto import mock_aws

    from gnomon.local import motodynamo
    from gnomon.local.motolock import serialised_moto_dynamodb
    from gnomon.local.template import create_resources, load_template

    template = load_template()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        # Two shards of the due and active indexes (a deploy setting; 8 by default): every tick
        # queries each shard, and a small fleet does not need eight.
        "GNOMON_DUE_SHARDS": "2",
    }
    cleared = ["AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"]
    saved = {k: os.environ.get(k) for k in [*env, *cleared, *TABLE_ENV]}
    os.environ.update(env)
    for k in cleared:
        os.environ.pop(k, None)
    try:
        with serialised_moto_dynamodb(), mock_aws():
            # The dev stack's moto speed-ups (same answers: tests/contract/test_motodynamo.py):
            # moto's own Query walks and sorts the whole table on every call, which is where the
            # long form spent nearly all of its time.
            patched = motodynamo.speed_up_moto_dynamodb_query()
            motodynamo.speed_up_moto_dynamodb_responses()
            try:
                res = create_resources(template, endpoint_url=None, prefix="gnomon-chaos-")
                for var, logical_id in TABLE_ENV.items():
                    os.environ[var] = res.tables[logical_id]
                yield template
            finally:
                if patched:
                    motodynamo.undo()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _queue_settings(template: dict[str, Any]) -> tuple[int, int]:
    """(visibility timeout, maxReceiveCount) of the firing queue, as the template sets them."""
    visibility = int(template["Mappings"]["VisibilityTimeouts"][WORKER_TIMEOUT]["Seconds"])
    max_receive = 5
    for res in template["Resources"].values():
        redrive = (res.get("Properties") or {}).get("RedrivePolicy")
        if res.get("Type") == "AWS::SQS::Queue" and isinstance(redrive, dict):
            max_receive = int(redrive.get("maxReceiveCount", max_receive))
    return visibility, max_receive


def _worker_handler_module() -> ModuleType:
    """functions/worker/app.py, loaded as a module of its own (each function's file is app.py)."""
    spec = importlib.util.spec_from_file_location("gnomon_chaos_worker_app", REPO / "functions/worker/app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.logger.setLevel(logging.CRITICAL)  # every injected failure would log a traceback
    return module


# -- the virtual clock and the target -------------------------------------------------------------


@dataclass
class VirtualClock:
    t: datetime = T0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> datetime:
        with self.lock:
            return self.t

    def set(self, t: datetime) -> None:
        with self.lock:
            self.t = max(self.t, t)


@dataclass
class Invoked:
    run_id: str
    attempt: int
    worker: str
    outcome: str


# -- the harness ----------------------------------------------------------------------------------


@dataclass
class Container:
    name: str
    services: Services
    faults_seen: Counter[str] = field(default_factory=Counter)


class Chaos:
    """One chaos run: `setup()`, `run()`, then `audit()` (inside `moto_aws()`)."""

    def __init__(self, cfg: ChaosConfig, template: dict[str, Any], faults: Faults) -> None:
        self.cfg = cfg
        self.faults = faults
        self.clock = VirtualClock()
        visibility, max_receive = _queue_settings(template)
        self.queue = SimQueue(self.clock, visibility, max_receive)
        self.app = _worker_handler_module()
        self._tls = threading.local()
        self.app.services = lambda: self._tls.services  # the handler's services: this thread's container
        self.lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.invoked: list[Invoked] = []
        self.ticks = 0
        self.tick_reports: Counter[str] = Counter()
        self.admin = self._container("admin")
        self.tickers = [self._container(f"ticker-{i}") for i in range(4)]
        self.workers = [self._container(f"worker-{i}") for i in range(cfg.workers)]
        self.schedule_ids: list[str] = []
        self.end = T0 + timedelta(seconds=cfg.duration_s)
        self.finished_at: datetime | None = None
        # Set by race tests: the target's outcome per invocation ("completed" | "failed").
        self.script: Callable[[Invocation], str] | None = None
        self.wall_s = 0.0

    def _container(self, name: str) -> Container:
        from gnomon.adapters.dynamo import (
            DynamoCatalogStore,
            DynamoRequestLog,
            DynamoRunStore,
            DynamoScheduleStore,
        )
        from gnomon.adapters.stats_dynamo import DynamoStatsStore

        s = build(
            clock=self.clock,
            catalog=DynamoCatalogStore(),
            schedule_store=DynamoScheduleStore(),
            run_store=DynamoRunStore(),
            requests=DynamoRequestLog(),
            queue=self.queue,
            invoker=_Target(self, name),
            token_key=b"chaos",
            horizon_seconds=self.cfg.horizon_s,
            worker_id=name,
            stats_store=DynamoStatsStore(),
            pack_firings=True,  # the firings of one second share messages, as in AWS
        )
        s.executor._sleep = lambda seconds: None  # type: ignore[attr-defined]  # messages land on time
        return Container(name, s)

    def count(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.injected[kind] += n

    # -- setup ------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Two definitions (3 attempts with 1 s back-off; 1 attempt) and interval schedules
        with a mix of overlap policies, all firing in [T0 + 5 s, T0 + duration]."""
        self.definitions()
        policies = ["allow_all"] * 7 + ["skip"] * 2 + ["buffer_one"]
        for i, every in enumerate(intervals(self.cfg)):
            self.add_schedule(
                f"chaos-{i:03d}",
                every,
                offset=i % every,
                overlap=policies[i % len(policies)],
                definition="job" if i % 4 else "job-once",
            )

    def definitions(self) -> None:
        retry3 = {"max_attempts": 3, "initial_interval_seconds": 1, "backoff_coefficient": 2.0}
        for name, retry in (("job", retry3), ("job-once", {"max_attempts": 1})):
            self.admin.services.definitions.create(
                DefinitionBody.model_validate(
                    {"name": name, "target": {"type": "http", "url": "https://example.com/h"}, "retry": retry}
                ),
                CALLER,
            )

    def add_schedule(
        self, sid: str, every: int, *, offset: int = 0, overlap: str = "allow_all", definition: str = "job"
    ) -> None:
        body = {
            "schedule_id": sid,
            "definition": definition,
            "spec": {
                "intervals": [{"every_seconds": every, "offset_seconds": offset}],
                "start_at": fmt(T0 + timedelta(seconds=5)),
                "end_at": fmt(self.end),
            },
            "policies": {"overlap": overlap},
        }
        # The generation (creation millisecond + random hex) is part of every run id, and faults
        # are rolled from run ids: a seeded generation makes a seed's faults the same every run.
        generation = (
            f"{int(self.clock.now().timestamp() * 1000):x}{_roll(self.cfg.seed, 'gen', sid) * 65536:04.0f}"
        )
        with mock.patch("gnomon.services.schedules._new_generation", lambda now: generation):
            self.admin.services.schedules.create(ScheduleCreate.model_validate(body), CALLER)
        self.schedule_ids.append(sid)

    # -- the simulation -----------------------------------------------------------------------------

    def run(self, progress: Callable[[Chaos], None] | None = None) -> None:
        started = time.monotonic()
        cfg = self.cfg
        next_tick = T0
        rng = random.Random(cfg.seed)
        deadline = self.end + timedelta(seconds=cfg.max_drain_s)
        while True:
            now = self.clock.now()
            threads: list[threading.Thread] = []
            if now >= next_tick:
                self.ticks += 1
                n = rng.randint(*cfg.tickers)
                self.count("concurrent_tickers", n)
                threads = [
                    threading.Thread(target=self._tick, args=(self.tickers[i], self.ticks, i))
                    for i in range(n)
                ]
                for t in threads:
                    t.start()
                next_tick = now + timedelta(seconds=cfg.tick_every_s)
                if progress is not None:
                    progress(self)
            self._deliver_visible()
            for t in threads:
                t.join()
            if now > self.end and len(self.queue) == 0 and threads and self._all_closed():
                self.finished_at = now
                break
            if now > deadline:
                break
            upcoming = [next_tick]
            if (visible := self.queue.next_visible_at()) is not None:
                upcoming.append(visible)
            self.clock.set(max(min(upcoming), now + timedelta(milliseconds=1)))
        self.wall_s = time.monotonic() - started

    def _tick(self, container: Container, tick: int, index: int) -> None:
        self.faults.seed_thread(f"tick-{tick}-{index}")
        try:
            report = container.services.ticker.tick()
        except Exception as exc:  # a tick that fails is retried by the next one (EventBridge)
            with self.lock:
                self.tick_reports["failed"] += 1
                self.errors[f"tick: {type(exc).__name__}"] += 1
            return
        with self.lock:
            self.tick_reports["conflicts"] += report.conflicts
            self.tick_reports["errors"] += len(report.errors)
            self.tick_reports["firings_enqueued"] += report.firings_enqueued
            self.tick_reports["holds_swept"] += report.holds_swept
            self.tick_reports["runs_swept"] += report.runs_swept
            for e in report.errors:
                self.errors["tick-schedule: " + e.split(": ", 1)[-1].split("(", 1)[0]] += 1

    def _deliver_visible(self) -> None:
        """Hand every visible message to the workers, in batches of ten (an event source),
        until none is visible at this instant."""
        while batch := self.queue.receive(10):
            # Each worker gets its share of the batch as one invocation: the executor's batch
            # scope holds the runs it claims with one item (`Executor.per_batch`); a worker that
            # crashed never leaves the scope, so its hold stays until the sweep finds it expired.
            shares: dict[int, list[Message]] = {}
            for msg in batch:
                shares.setdefault((msg.seq + msg.receive_count) % len(self.workers), []).append(msg)
            for index, msgs in shares.items():
                worker = self.workers[index]
                scope = worker.services.executor.per_batch(
                    [b for m in msgs for b in self.app._bodies(m.record())]
                )
                hold = scope.__enter__()
                ends: list[tuple[str, str]] = []  # (container, end) per delivery
                for msg in msgs:
                    if _roll(self.cfg.seed, "dup", msg.message_id, msg.receive_count) < self.cfg.p_duplicate:
                        self.count("duplicate")
                        other = self.workers[(msg.seq + msg.receive_count + 1) % len(self.workers)]
                        pair = [
                            threading.Thread(
                                target=lambda w, m, label, out: out.append(
                                    (w.name, self.process(w, m, label))
                                ),
                                args=(w, msg, f"{msg.message_id}-{msg.receive_count}-{k}", ends),
                            )
                            for k, w in enumerate((worker, other))
                        ]
                        for t in pair:
                            t.start()
                        for t in pair:
                            t.join()
                    else:
                        ends.append(
                            (worker.name, self.process(worker, msg, f"{msg.message_id}-{msg.receive_count}"))
                        )
                    if (worker.name, "crashed") in ends:
                        break  # the rest of the batch comes back after its visibility timeout
                crashed = {name for name, end in ends if end == "crashed"}
                if worker.name in crashed:
                    # Never exited: the hold stays for the sweep. The scope is dropped with its
                    # dead container; `keep` stops its clean-up (run when the generator is
                    # collected) from releasing the hold, as a dead process releases nothing.
                    hold.keep = True
                    if hold.hold_id is not None:
                        self.count("hold_abandoned")
                else:
                    # As the handler: a batch with a firing that failed keeps its hold (the
                    # record itself may be done: a packed one sends its failed firings again).
                    hold.keep = any(end != "ok" for name, end in ends if name == worker.name)
                    if hold.keep and hold.hold_id is not None:
                        self.count("hold_kept")
                    scope.__exit__(None, None, None)
                # A crashed worker's process is gone, and its memory with it (a batch scope's
                # claims, caches): the event source's next batch reaches a fresh one.
                for i, w in enumerate(self.workers):
                    if w.name in crashed:
                        self.workers[i] = self._container(w.name)

    def process(self, container: Container, msg: Message, label: str) -> str:
        """One worker container handles one SQS record with the worker handler's own code,
        then deletes the message unless the handler reported it as failed. Answers `ok`,
        `partial` (a packed record whose failed firings were sent again alone), `failed` or
        `crashed`."""
        self.faults.seed_thread(label)
        self._tls.services = SimpleNamespace(
            executor=_Recording(self, container.services.executor), queue=container.services.queue
        )
        self._tls.message = msg
        self._tls.container = container
        try:
            failed, handled, whole = self.app._process(msg.record())
        except WorkerCrash:
            return "crashed"  # died holding the message: it comes back after the visibility timeout
        if failed is None:
            self.queue.delete(msg.message_id, msg.receipt)
            with self.lock:
                for h in handled:
                    self.outcomes[h.outcome] += 1
                if not whole:
                    self.outcomes["packed_firings_sent_again"] += 1
            return "ok" if whole else "partial"
        with self.lock:
            self.outcomes["message_failed"] += 1
        return "failed"

    def current(self) -> tuple[Container, Message]:
        return self._tls.container, self._tls.message

    def _all_closed(self) -> bool:
        """Whether every run is closed: the harness's own look, never faulted (nothing else
        runs while it reads)."""
        store = self.admin.services.run_store
        enabled, self.faults.enabled = self.faults.enabled, False
        try:
            for sid in self.schedule_ids:
                for run in _all_runs(store, sid):
                    if run.status not in TERMINAL:
                        return False
            return True
        finally:
            self.faults.enabled = enabled

    # -- the audit --------------------------------------------------------------------------------

    def audit(self) -> Audit:
        return Audit.of(self)


class _Recording:
    """The executor as the handler sees it, noting why a message failed (the handler swallows
    the exception into a partial batch failure)."""

    def __init__(self, chaos: Chaos, executor: Any) -> None:
        self._chaos = chaos
        self._executor = executor

    def handle(self, body: dict[str, Any]) -> Any:
        try:
            return self._executor.handle(body)
        except Exception as exc:
            with self._chaos.lock:
                name = f"worker {body.get('kind')}: {type(exc).__name__}"
                self._chaos.errors[name] += 1
                if self._chaos.errors[name] == 1 and os.environ.get("GNOMON_CHAOS_TRACE"):
                    import traceback

                    traceback.print_exc()
            raise


class _Target:
    """The target every run invokes: completes, or fails (retryable) for `p_fail` of the
    attempts; crashes the worker or lets the visibility timeout expire mid-call as injected."""

    def __init__(self, chaos: Chaos, worker: str) -> None:
        self._chaos = chaos
        self._worker = worker

    def invoke(self, inv: Invocation) -> Outcome:
        chaos, cfg = self._chaos, self._chaos.cfg
        key = (inv.run_id, inv.attempt)
        if _roll(cfg.seed, "crash", *key) < cfg.p_crash:
            chaos.count("crash")
            with chaos.lock:
                chaos.invoked.append(Invoked(inv.run_id, inv.attempt, self._worker, "crashed"))
            raise WorkerCrash(inv.run_id)
        if _roll(cfg.seed, "visibility", *key) < cfg.p_visibility:
            container, msg = chaos.current()
            again = chaos.queue.expire_visibility(msg.message_id)
            if again is not None:
                chaos.count("visibility")
                other = chaos.workers[(chaos.workers.index(container) + 1) % len(chaos.workers)]
                second = threading.Thread(
                    target=chaos.process, args=(other, again, f"{again.message_id}-{again.receive_count}-v")
                )
                second.start()
                second.join()  # the second delivery is handled while this call still runs
        if chaos.script is not None:
            failed = chaos.script(inv) == "failed"
        else:
            failed = _roll(cfg.seed, "fail", *key) < cfg.p_fail
        with chaos.lock:
            chaos.invoked.append(
                Invoked(inv.run_id, inv.attempt, self._worker, "failed" if failed else "completed")
            )
        if failed:
            return Outcome(status="failed", error={"code": "http_503", "message": "chaos: target failed"})
        return Outcome(status="completed", result={"ok": True})


def _all_runs(store: Any, schedule_id: str) -> list[RunRecord]:
    out: list[RunRecord] = []
    after: str | None = None
    while True:
        page = store.list(schedule_id=schedule_id, after=after, limit=1000)
        out += page.items
        if not page.last_key:
            return out
        after = page.last_key


# -- the audit ------------------------------------------------------------------------------------


@dataclass
class Audit:
    firings: int = 0
    runs: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    unexpected: int = 0
    unfinished: int = 0
    dead_lettered: int = 0
    double_invocations: int = 0
    double_successes: int = 0
    inconsistent: int = 0
    counter_mismatches: int = 0
    examples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.examples) < 40:
            self.examples.append(text)

    @property
    def clean(self) -> bool:
        return not (
            self.lost
            or self.unexpected
            or self.unfinished
            or self.dead_lettered
            or self.double_invocations
            or self.double_successes
            or self.inconsistent
            or self.counter_mismatches
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, chaos: Chaos) -> Audit:
        a = cls()
        s = chaos.admin.services
        store = s.run_store
        invoked: dict[tuple[str, int], list[Invoked]] = defaultdict(list)
        for inv in chaos.invoked:
            invoked[(inv.run_id, inv.attempt)].append(inv)
        for key, calls in invoked.items():
            if len(calls) > 1:
                a.double_invocations += 1
                a.note(f"double invocation {key}: {[(c.worker, c.outcome) for c in calls]}")
        last_called: dict[str, int] = {}
        for run_id, attempt in invoked:
            last_called[run_id] = max(attempt, last_called.get(run_id, 0))
        by_definition: dict[str, list[RunRecord]] = defaultdict(list)
        statuses: Counter[str] = Counter()
        for sid in chaos.schedule_ids:
            sched = s.schedule_store.get(sid)
            compiled = compile_spec(Spec.model_validate(sched.doc["spec"]))
            expected = {
                scheduled_run_id(sid, sched.generation, t): t
                for t in compiled.times(T0, 1_000_000, chaos.end + timedelta(seconds=1))
            }
            a.firings += len(expected)
            runs = {r.run_id: r for r in _all_runs(store, sid)}
            a.runs += len(runs)
            for run_id in expected.keys() - runs.keys():
                a.lost += 1
                a.note(f"lost firing {run_id}")
            for run_id in runs.keys() - expected.keys():
                a.unexpected += 1
                a.note(f"unexpected run {run_id}")
            counted: Counter[str] = Counter()
            for run in runs.values():
                statuses[run.status] += 1
                by_definition[run.definition].append(run)
                if run.status not in TERMINAL:
                    a.unfinished += 1
                    a.note(f"unfinished {run.run_id}: {run.status}")
                problems = _history_problems(run.doc, last_called)
                if problems:
                    a.inconsistent += 1
                    a.note(f"inconsistent {run.run_id}: {'; '.join(problems)}")
                completed = [x for x in run.doc.get("attempts", []) if x.get("status") == "completed"]
                if len(completed) > 1:
                    a.double_successes += 1
                    a.note(f"two successful attempts in {run.run_id}")
                if run.doc.get("attempts"):
                    counted["actions"] += 1
                if run.status == "skipped":
                    counted[SKIP_COUNTER.get(str(run.doc.get("reason")), f"?{run.doc.get('reason')}")] += 1
            for name in {"actions", *SKIP_COUNTER.values(), *counted}:
                have, want = int(sched.counters.get(name, 0)), counted.get(name, 0)
                if have != want:
                    a.counter_mismatches += 1
                    a.note(f"schedule {sid} counter {name} = {have}, runs say {want}")
        a.statuses = dict(sorted(statuses.items()))
        a.dead_lettered = len(chaos.queue.dead)
        for msg in chaos.queue.dead:
            a.note(f"dead-lettered after {msg.receive_count - 1} receives: {msg.body}")
        stats = s.stats  # every run: the sum over the definitions, as `GET /v1/stats` reads it
        scopes: list[tuple[str | None, list[RunRecord]]] = [
            (None, [r for rs in by_definition.values() for r in rs]),
            *by_definition.items(),
        ]
        day = chaos.clock.now().date()
        for definition, runs_ in scopes:
            got = stats.today("UTC", definition)
            want = {
                "running": sum(r.status == "running" for r in runs_),
                "pending": sum(r.status == "pending" for r in runs_),
                "completed_today": sum(r.status == "completed" and _closed_on(r, day) for r in runs_),
                "failed_today": sum(
                    r.status in ("failed", "timed_out") and _closed_on(r, day) for r in runs_
                ),
            }
            for name, value in want.items():
                if got[name] != value:
                    a.counter_mismatches += 1
                    a.note(f"stats {definition or 'all'} {name} = {got[name]}, runs say {value}")
        return a


def _closed_on(run: RunRecord, day: Any) -> bool:
    closed = run.doc.get("closed_at")
    return bool(closed) and parse(closed).date() == day


def _history_problems(doc: dict[str, Any], invoked: dict[str, int]) -> list[str]:
    """What is wrong with one run's history: attempts numbered 1..n in order, `attempt` = n,
    every attempt but the last closed as failed or timed_out, the last one matching a terminal
    status, closed after it started; a skipped run has no attempt and a reason; every target
    call belongs to an attempt of the history."""
    out: list[str] = []
    status = doc["status"]
    attempts = doc.get("attempts", [])
    numbers = [int(x["attempt"]) for x in attempts]
    if numbers != list(range(1, len(numbers) + 1)):
        out.append(f"attempt numbers {numbers}")
    if int(doc.get("attempt", 0)) != len(attempts):
        out.append(f"attempt {doc.get('attempt')} with {len(attempts)} attempts recorded")
    out += [
        f"attempt {x['attempt']} {x['status']} but not the last"
        for x in attempts[:-1]
        if x["status"] not in ("failed", "timed_out")
    ]
    out += [
        f"attempt {x['attempt']} closed before it started"
        for x in attempts
        if x.get("closed_at") and parse(x["closed_at"]) < parse(x["started_at"])
    ]
    if status == "skipped":
        if attempts or not doc.get("reason"):
            out.append(f"skipped with {len(attempts)} attempts, reason {doc.get('reason')!r}")
    elif status in ("completed", "failed", "timed_out"):
        if not attempts or attempts[-1]["status"] != status:
            last = attempts[-1]["status"] if attempts else None
            out.append(f"status {status}, last attempt {last}")
        if not doc.get("closed_at"):
            out.append(f"status {status} without closed_at")
    elif status == "running" and (not attempts or attempts[-1]["status"] != "running"):
        out.append("running without an open attempt")
    called = invoked.get(doc["run_id"], 0)
    if called > len(attempts):
        out.append(f"target called for attempt {called}, history has {len(attempts)}")
    return out


def run_chaos(cfg: ChaosConfig, progress: Callable[[Chaos], None] | None = None) -> tuple[Chaos, Audit]:
    """One whole chaos run: moto, setup, the simulation with faults, the audit."""
    faults = Faults(
        cfg.seed,
        p_throttle=cfg.p_throttle,
        p_ambiguous=cfg.p_ambiguous,
        p_ambiguous_retried=cfg.p_ambiguous_retried,
        spare_counters=cfg.spare_counters,
    )
    with (
        moto_aws() as template,
        faults.installed(),
        mock.patch.object(execute, "HOLD_MIN_RUNS", cfg.hold_min_runs),
    ):
        chaos = Chaos(cfg, template, faults)
        chaos.setup()
        faults.enabled = True
        try:
            chaos.run(progress)
        finally:
            faults.enabled = False
        return chaos, chaos.audit()
