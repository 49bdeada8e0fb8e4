"""Cost model: dollars per million firings, from the AWS requests gnomon really makes.

Runs the real ticker and worker Lambda handlers (`functions/ticker/app.py`,
`functions/worker/app.py`) against in-process moto holding the tables and queues of
`template.yaml`, on a virtual clock: the ticker is invoked once a virtual minute, as
EventBridge's rate(1 minute) does, and the worker with SQS batches shaped like the event source
mapping's. botocore event hooks (`before-parameter-build` and `after-call`, on every client
boto3 and pynamodb create) see every request, by service and operation; the DynamoDB ones are
priced in read/write units from the item images before and after each write and the table's GSI
definitions in the template (`bench.costmodel`).

Workloads (each measured in a steady state after a warm-up — every firing in the window, and the
ticker's advance that planned it, counted once — with run history on and off):
- `minute`: schedules firing every minute (`* * * * *`);
- `hourly`: schedules firing once an hour, ten per minute (cron fleets cluster on second 0);
- `daily`: schedules firing once a day, ten per minute;
- `mix`: 50 / 30 / 20 % of the schedules minute / hourly / daily — priced from the three above,
  weighted by how many firings each kind makes in a day.

What is modelled rather than observed:
- The event source mapping's requests: one `ReceiveMessage` per batch (batches are the firings
  due in the same second, up to 10 — cron firings land on the same second) and the real
  `DeleteMessageBatch` gnomon's handler leaves to it; its idle long polls are a fixed monthly
  cost, not a per-firing one.
- SQS delays: messages are sent with the real `SendMessageBatch` but delivered by the virtual
  clock (moto would hold them for real seconds); DelaySeconds does not change the price.
- The target answers at once with a small JSON result; its own cost is not gnomon's.
- Lambda durations: the handlers' wall time here (moto in-process, 2 shared cores), at the
  template's memory size.

    python -m bench cost                 # the three workloads, history on and off
    python -m bench cost --horizon 900   # what-if: HorizonSeconds 900
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

from bench import REPO, line_buffered, machine, say, table, write_result
from bench.costmodel import (
    PRICES,
    PROVISIONED_UTILIZATION,
    TableDef,
    Usage,
    gb_seconds,
    item_size,
    item_write_cost,
    per_million,
    price,
    read_units,
    sqs_requests,
    table_def,
)

NAME = "cost"
PREFIX = "gnomon-cost-"
T0 = datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC)  # the ticker runs at :30 of every minute
GOALS = {"history_on_demand": 2.00, "history_provisioned": 1.00, "history_off": 0.30}
DAY_FIRINGS = {"minute": 1440, "hourly": 24, "daily": 1}
MIX = {"minute": 0.5, "hourly": 0.3, "daily": 0.2}
TICKS_PER_MONTH = 30 * 24 * 60
# The worker's duration in AWS, modelled (moto in-process is not DynamoDB: its time here is this
# machine's CPU, shared): typical in-region latencies and a handler's own overhead.
DYNAMODB_LATENCY_S = 0.006
SQS_LATENCY_S = 0.015
HANDLER_OVERHEAD_S = 0.005
WORKER_THREADS = 32  # functions/worker/app.py's pool
TABLE_ENV = {
    "GNOMON_CATALOG_TABLE": "CatalogTable",
    "GNOMON_SCHEDULES_TABLE": "SchedulesTable",
    "GNOMON_REQUESTS_TABLE": "RequestsTable",
    "GNOMON_RUNS_TABLE": "RunsTable",
    "GNOMON_TASKS_TABLE": "TasksTable",
}
_CLEARED_ENV = (
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_SQS",
    "GNOMON_DUE_SHARDS",
    "GNOMON_STORE",
    "GNOMON_DEV_AWS_ENDPOINT",
)
_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}


# --- the meter: botocore hooks on every client ------------------------------------------------


@dataclass
class Request:
    component: str  # ticker | worker | esm | setup
    service: str
    operation: str  # DynamoDB: "Query[index]" for an index query; with the table's logical id
    table: str | None = None
    wru: float = 0.0
    rru: float = 0.0
    index_wru: dict[str, float] = field(default_factory=dict)
    billed: int = 1  # SQS: 64 KB chunks
    failed: bool = False


class Meter:
    """Counts every AWS request made while `on`, attributed to `component`."""

    def __init__(self, tables: dict[str, TableDef]) -> None:
        self.tables = tables  # physical name → definition
        self.component = "setup"
        self.on = False
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._raw: Any = None  # an uncounted client for item images

    @contextlib.contextmanager
    def installed(self) -> Iterator[Meter]:
        import boto3
        from botocore.client import ClientCreator

        self._raw = boto3.client("dynamodb")
        original = ClientCreator.create_client
        meter = self

        def create_client(creator: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(creator, *args, **kwargs)
            service = client.meta.service_model.service_name
            if service in ("dynamodb", "sqs"):
                client.meta.events.register(f"before-parameter-build.{service}", meter._before)
                client.meta.events.register(f"after-call.{service}", meter._after)
            return client

        ClientCreator.create_client = create_client  # type: ignore[method-assign]
        try:
            yield self
        finally:
            ClientCreator.create_client = original  # type: ignore[method-assign]

    # hooks

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if not self.on or getattr(self._local, "inside", False):
            return
        context["gnomon_cost"] = {"params": params, "old": self._old_images(model.name, params)}

    def _after(
        self, parsed: dict[str, Any], model: Any, context: dict[str, Any], http_response: Any, **_: Any
    ) -> None:
        seen = context.get("gnomon_cost")
        if seen is None:
            return
        service = model.service_model.service_name
        ok = http_response.status_code < 300
        if service == "sqs":
            req = self._sqs(model.name, seen["params"])
        else:
            req = self._dynamodb(model.name, seen["params"], seen["old"], parsed, ok)
        req.failed = not ok
        with self._lock:
            self.requests.append(req)

    # SQS

    def _sqs(self, op: str, params: dict[str, Any]) -> Request:
        payload = 0
        if op == "SendMessageBatch":
            payload = sum(len(e["MessageBody"].encode()) for e in params.get("Entries", []))
        elif op == "SendMessage":
            payload = len(params.get("MessageBody", "").encode())
        return Request(self.component, "sqs", op, billed=sqs_requests(payload))

    # DynamoDB

    def _key_of(self, table: str, item: dict[str, Any]) -> dict[str, Any]:
        return {k: item[k] for k in self.tables[table].keys}

    def _get(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        self._local.inside = True
        try:
            got = self._raw.get_item(TableName=table, Key=key, ConsistentRead=True)
        finally:
            self._local.inside = False
        item = got.get("Item")
        return dict(item) if item else None

    def _old_images(self, op: str, params: dict[str, Any]) -> Any:
        if op in _WRITES:
            table = params["TableName"]
            key = params.get("Key") or self._key_of(table, params["Item"])
            return self._get(table, key)
        if op == "TransactWriteItems":
            out = []
            for entry in params["TransactItems"]:
                ((kind, body),) = entry.items()
                table = body["TableName"]
                key = body.get("Key") or self._key_of(table, body["Item"])
                out.append((kind, table, key, self._get(table, key)))
            return out
        if op == "BatchWriteItem":
            out = []
            for table, writes in params["RequestItems"].items():
                for w in writes:
                    if "PutRequest" in w:
                        item = w["PutRequest"]["Item"]
                        out.append(("Put", table, self._key_of(table, item), item))
                    else:
                        out.append(("Delete", table, w["DeleteRequest"]["Key"], None))
            return [(k, t, key, self._get(t, key), item) for k, t, key, item in out]
        return None

    def _dynamodb(
        self, op: str, params: dict[str, Any], old: Any, parsed: dict[str, Any], ok: bool
    ) -> Request:
        table = params.get("TableName")
        index = params.get("IndexName")
        name = f"{op}[{index}]" if index else op
        req = Request(self.component, "dynamodb", name, table=self._lid(table))
        consistent = bool(params.get("ConsistentRead"))
        if op in _WRITES:
            tdef = self.tables[table]
            if op == "PutItem":
                new = params["Item"]
            elif op == "UpdateItem":
                new = self._get(table, params["Key"]) if ok else old
            else:
                new = None
            cost = item_write_cost(tdef, old, new, succeeded=ok)
            req.wru = cost.table_units
            req.index_wru = {f"{tdef.name}.{k}": float(v) for k, v in cost.index_units.items()}
        elif op == "TransactWriteItems":
            req.table = ",".join(sorted({self._lid(t) or "" for _, t, _, _ in old}))
            for entry, (kind, t, key, before) in zip(params["TransactItems"], old, strict=True):
                after: Any
                if not ok or kind == "ConditionCheck":
                    after = before
                elif kind == "Put":
                    after = entry["Put"]["Item"]
                elif kind == "Update":
                    after = self._get(t, key)
                else:
                    after = None
                cost = item_write_cost(
                    self.tables[t],
                    before,
                    after,
                    succeeded=ok and kind != "ConditionCheck",
                    transactional=True,
                )
                req.wru += cost.table_units
                for k, v in cost.index_units.items():
                    name = f"{self._lid(t)}.{k}"
                    req.index_wru[name] = req.index_wru.get(name, 0) + v
        elif op == "BatchWriteItem":
            if all(key["pk"]["S"].startswith("plan#") for _, _, key, _, _ in old):
                req.operation = "BatchWriteItem[plan log]"  # the ticker's record of what it enqueued
            for kind, t, _key, before, item in old:
                cost = item_write_cost(self.tables[t], before, item if kind == "Put" else None)
                req.wru += cost.table_units
                for k, v in cost.index_units.items():
                    name = f"{self._lid(t)}.{k}"
                    req.index_wru[name] = req.index_wru.get(name, 0) + v
        elif op == "GetItem":
            req.rru = read_units(item_size(parsed.get("Item")), consistent=consistent)
        elif op in ("Query", "Scan"):
            size = sum(item_size(i) for i in parsed.get("Items", []))
            req.rru = read_units(size, consistent=consistent)
        elif op == "BatchGetItem":
            for t, spec in params["RequestItems"].items():
                got = parsed.get("Responses", {}).get(t, [])
                c = bool(spec.get("ConsistentRead"))
                req.rru += sum(read_units(item_size(i), consistent=c) for i in got)
                req.rru += (len(spec["Keys"]) - len(got)) * read_units(0, consistent=c)
        return req

    def _lid(self, table: str | None) -> str | None:
        if table is None:
            return None
        return self.tables[table].name if table in self.tables else table


# --- the simulation -------------------------------------------------------------------------------


class VirtualClock:
    def __init__(self, t: datetime) -> None:
        self.t = t
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self.t

    def set(self, t: datetime) -> None:
        with self._lock:
            self.t = max(self.t, t)


class _Target:
    """Answers every invocation at once, as a small http 200 JSON answer would."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def invoke(self, inv: Any) -> Any:
        from gnomon.ports import Outcome

        with self._lock:
            self.calls += 1
        return Outcome(status="completed", result={"ok": True})


class _DueQueue:
    """The real `SqsFiringQueue`, sending every message with no delay (moto would hold a delayed
    message for real seconds) while remembering when each one is due on the virtual clock."""

    def __init__(self, inner: Any, clock: VirtualClock) -> None:
        self._inner = inner
        self._clock = clock
        self.due: dict[str, list[datetime]] = defaultdict(list)
        self._lock = threading.Lock()

    def send(self, messages: list[Any]) -> None:
        from gnomon.ports import OutgoingMessage

        now = self._clock.now()
        with self._lock:
            for m in messages:
                key = json.dumps(m.body, separators=(",", ":"))
                self.due[key].append(now + timedelta(seconds=m.delay_seconds))
        self._inner.send([OutgoingMessage(body=m.body, delay_seconds=0) for m in messages])

    def take_due(self, body: str, default: datetime) -> datetime:
        with self._lock:
            times = self.due.get(body)
            return times.pop(0) if times else default


class _Context:
    """The Lambda context the handlers' Powertools decorators read."""

    def __init__(self, name: str, memory_mb: int) -> None:
        self.function_name = f"gnomon-{name}"
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:gnomon-{name}"
        self.aws_request_id = "00000000-0000-0000-0000-000000000000"
        self.log_group_name = "/aws/lambda/gnomon"
        self.log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


_MODULES: dict[str, ModuleType] = {}


def _handler_module(name: str) -> ModuleType:
    """functions/<name>/app.py, loaded once under its own module name."""
    if name not in _MODULES:
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
        os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "gnomon")
        path = REPO / "functions" / name / "app.py"
        spec = importlib.util.spec_from_file_location(f"gnomon_cost_{name}_app", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _MODULES[name] = module
    return _MODULES[name]


def _memory_mb(template: dict[str, Any], function: str) -> int:
    props = template["Resources"][function].get("Properties") or {}
    return int(
        props.get("MemorySize") or template.get("Globals", {}).get("Function", {}).get("MemorySize", 128)
    )


def _table_defs(template: dict[str, Any], tables: dict[str, str]) -> dict[str, TableDef]:
    return {name: table_def(lid, template["Resources"][lid]["Properties"]) for lid, name in tables.items()}


def _firings_in(body: dict[str, Any]) -> int:
    """The firings a message carries (a packed message: several)."""
    if body.get("kind") == "firings":
        return len(body["firings"])
    return 1 if body.get("kind") == "firing" else 0


def _specs(kind: str, n: int, window_start: datetime) -> list[dict[str, Any]]:
    if kind == "minute":
        return [{"cron": ["* * * * *"]} for _ in range(n)]
    # Cron schedules of a fleet cluster on the first second of their minute: ten share each
    # minute here, so the event source mapping's batches are as full as a fleet's would be.
    if kind == "hourly":
        return [{"cron": [f"{(i // 10) % 60} * * * *"]} for i in range(n)]
    # daily: each once a day, 10-19 minutes into the measured window (so the ticker's window
    # that plans each firing, up to 15 minutes before it, is inside the window too)
    out = []
    for i in range(n):
        t = window_start + timedelta(minutes=10 + (i // 10) % 10)
        out.append({"cron": [f"{t.minute} {t.hour} * * *"]})
    return out


@dataclass
class Simulation:
    kind: str
    schedules: int
    minutes: int
    warm: int
    history: str  # "on" | "off"
    horizon: float


def simulate(sim: Simulation, template: dict[str, Any]) -> dict[str, Any]:
    """Run the workload on the virtual clock; answer the counted requests and figures."""
    from moto import mock_aws

    from gnomon.local.template import create_resources

    saved = dict(os.environ)
    try:
        for var in _CLEARED_ENV:
            os.environ.pop(var, None)
        os.environ.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_SESSION_TOKEN="testing",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_REGION="us-east-1",
        )
        with mock_aws():
            res = create_resources(template, endpoint_url=None, prefix=PREFIX)
            tables = dict(res.tables)
            os.environ.update({var: res.tables[lid] for var, lid in TABLE_ENV.items() if lid in res.tables})
            os.environ["GNOMON_FIRING_QUEUE_URL"] = res.queues["FiringQueue"]
            os.environ["GNOMON_DLQ_URL"] = res.queues["FiringDeadLetterQueue"]
            meter = Meter(_table_defs(template, tables))
            with meter.installed():
                return _run(sim, template, meter)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _run(sim: Simulation, template: dict[str, Any], meter: Meter) -> dict[str, Any]:
    import boto3

    from gnomon.adapters.dynamo import (
        DynamoCatalogStore,
        DynamoRequestLog,
        DynamoRunStore,
        DynamoScheduleStore,
    )
    from gnomon.adapters.planlog_dynamo import DynamoPlanLog
    from gnomon.adapters.sqs import SqsFiringQueue
    from gnomon.adapters.stats_dynamo import DynamoStatsStore
    from gnomon.domain.model import DefinitionBody, ScheduleCreate
    from gnomon.services.common import Caller
    from gnomon.wiring import build

    clock = VirtualClock(T0 - timedelta(seconds=20))
    queue = _DueQueue(SqsFiringQueue(), clock)
    target = _Target()
    services = build(
        clock=clock,
        catalog=DynamoCatalogStore(),
        schedule_store=DynamoScheduleStore(),
        run_store=DynamoRunStore(),
        requests=DynamoRequestLog(),
        queue=queue,  # type: ignore[arg-type]
        invoker=target,
        token_key=b"cost",
        horizon_seconds=sim.horizon,
        worker_id="worker-cost",
        stats_store=DynamoStatsStore(),
        plan_log=DynamoPlanLog(),
        pack_firings=True,  # as `gnomon.wiring.services` sends them in AWS
    )
    services.executor._sleep = lambda s: None  # the virtual clock is already at the firing's second
    ticker_app, worker_app = _handler_module("ticker"), _handler_module("worker")
    ticker_app.services = lambda: services  # type: ignore[attr-defined]
    worker_app.services = lambda: services  # type: ignore[attr-defined]
    ticker_ctx = _Context("ticker", _memory_mb(template, "TickerFunction"))
    worker_ctx = _Context("worker", _memory_mb(template, "WorkerFunction"))
    sqs = boto3.client("sqs")
    url = os.environ["GNOMON_FIRING_QUEUE_URL"]
    caller = Caller("arn:aws:iam::000000000000:user/bench")

    definition: dict[str, Any] = {
        "name": "cost",
        "target": {"type": "http", "url": "https://example.com/hook"},
    }
    if sim.history == "off":
        definition["history"] = {"mode": "off"}
    services.definitions.create(DefinitionBody.model_validate(definition), caller)

    # The idle tick: what a tick costs with nothing due (a fixed cost per minute) — in a table
    # that already holds schedules of the workload's period: the tick reads the phase index's
    # bookkeeping (the periods and their watermarks) whatever is due. A first tick opens the
    # period's first windows — an idle window: one query a shard finding nothing, and the
    # watermarks' move, a fixed cost per window (every horizon − lead) —; the next has none.
    services.schedule_store.add_phase_period(_PERIODS[sim.kind])
    meter.on, meter.component = True, "ticker"
    with contextlib.redirect_stdout(io.StringIO()):
        ticker_app.lambda_handler({}, ticker_ctx)
    window_tick = list(meter.requests)
    meter.requests.clear()
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        ticker_app.lambda_handler({}, ticker_ctx)
    idle_tick_s = time.perf_counter() - t
    idle_requests = list(meter.requests)
    idle_left = Counter(map(_signature, idle_requests))
    idle_window: list[Request] = []  # what the window tick did beyond an idle tick
    for r in window_tick:
        if idle_left[_signature(r)] > 0:
            idle_left[_signature(r)] -= 1
        else:
            idle_window.append(r)
    meter.requests.clear()
    meter.on, meter.component = False, "setup"

    window_start = T0 + timedelta(minutes=sim.warm)
    for i, spec in enumerate(_specs(sim.kind, sim.schedules, window_start)):
        body = {"schedule_id": f"{sim.kind}-{i:04d}", "definition": "cost", "spec": spec}
        services.schedules.create(ScheduleCreate.model_validate(body), caller)

    pending: list[tuple[datetime, dict[str, Any]]] = []
    firings = 0
    batches: list[dict[str, Any]] = []
    ticks: list[float] = []
    failures = 0

    def receive() -> None:
        was, meter.on = meter.on, False  # the ESM's receives are modelled per batch, below
        try:
            while True:
                got = sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=43_200, WaitTimeSeconds=0
                ).get("Messages", [])
                if not got:
                    return
                pending.extend((queue.take_due(m["Body"], clock.now()), m) for m in got)
        finally:
            meter.on = was

    for minute in range(sim.warm + sim.minutes):
        counted = minute >= sim.warm
        meter.on = counted
        clock.set(T0 + timedelta(minutes=minute))
        meter.component = "ticker"
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            ticker_app.lambda_handler({}, ticker_ctx)
        if counted:
            ticks.append(time.perf_counter() - t)
        next_tick = T0 + timedelta(minutes=minute + 1)
        while True:
            receive()
            ready = sorted((p for p in pending if p[0] < next_tick), key=lambda p: p[0])
            if not ready:
                break
            ids = {id(p[1]) for p in ready}
            pending[:] = [p for p in pending if id(p[1]) not in ids]
            # The event source mapping's batches: the messages due in one second, 10 at most.
            by_second: dict[int, list[tuple[datetime, dict[str, Any]]]] = defaultdict(list)
            for due, m in ready:
                by_second[int(due.timestamp())].append((due, m))
            for group in by_second.values():
                for start in range(0, len(group), 10):
                    batch = group[start : start + 10]
                    clock.set(max(due for due, _ in batch))
                    meter.component = "esm"
                    if counted:
                        with meter._lock:
                            meter.requests.append(Request("esm", "sqs", "ReceiveMessage (modelled)"))
                    records = [
                        {
                            "messageId": m["MessageId"],
                            "receiptHandle": m["ReceiptHandle"],
                            "body": m["Body"],
                            "attributes": {"ApproximateReceiveCount": "1"},
                            "eventSource": "aws:sqs",
                        }
                        for _, m in batch
                    ]
                    meter.component = "worker"
                    before = len(meter.requests)
                    t = time.perf_counter()
                    with contextlib.redirect_stdout(io.StringIO()):
                        answer = worker_app.lambda_handler({"Records": records}, worker_ctx)
                    took = time.perf_counter() - t
                    failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
                    failures += len(failed)
                    meter.component = "esm"
                    done = [m for _, m in batch if m["MessageId"] not in failed]
                    if done:
                        sqs.delete_message_batch(
                            QueueUrl=url,
                            Entries=[
                                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                for i, m in enumerate(done)
                            ],
                        )
                    if counted:
                        n_firings = sum(_firings_in(json.loads(m["Body"])) for _, m in batch)
                        firings += n_firings
                        made = meter.requests[before:]
                        ddb = sum(1 for r in made if r.service == "dynamodb")
                        sqs_n = sum(1 for r in made if r.service == "sqs")
                        # In AWS the firings of a batch (its records', packed ones unpacked) run
                        # in parallel threads (32 at most), each waiting on its own requests in
                        # turn: ~ the requests of one firing × their latency.
                        units = sum(max(1, _firings_in(json.loads(m["Body"]))) for _, m in batch)
                        modeled = HANDLER_OVERHEAD_S + (
                            ddb * DYNAMODB_LATENCY_S + sqs_n * SQS_LATENCY_S
                        ) / max(1, min(WORKER_THREADS, units))
                        batches.append(
                            {
                                "records": len(batch),
                                "firings": n_firings,
                                "seconds": took,
                                "modeled_seconds": modeled,
                            }
                        )
    meter.on = False
    return {
        "requests": meter.requests,
        "idle_requests": idle_requests,
        "idle_window": idle_window,
        "window_seconds": services.ticker.horizon.total_seconds() - services.ticker.lead.total_seconds(),
        "idle_tick_s": idle_tick_s,
        "ticks": ticks,
        "batches": batches,
        "firings": firings,
        "target_calls": target.calls,
        "failures": failures,
        "worker_memory_mb": worker_ctx.memory_limit_in_mb,
        "ticker_memory_mb": ticker_ctx.memory_limit_in_mb,
    }


# --- figures --------------------------------------------------------------------------------------


def _usage_of(requests: list[Request]) -> Usage:
    u = Usage()
    for r in requests:
        if r.service == "dynamodb":
            u.wru += r.wru + sum(r.index_wru.values())
            u.rru += r.rru
        else:
            u.sqs_requests += r.billed
    return u


def _signature(r: Request) -> tuple[Any, ...]:
    return (r.operation, r.table, round(r.rru, 3), round(r.wru + sum(r.index_wru.values()), 3))


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Per-firing figures and dollars per million firings (variable cost; the ticker's idle
    tick and the event source mapping's idle polls are a fixed cost per month, apart)."""
    n = raw["firings"]
    reqs: list[Request] = raw["requests"]
    ticks = len(raw["ticks"])
    # The ticker's fixed part — the requests of an idle tick (one due-index query per shard, the
    # lease sweep's queries) — comes every minute whatever is due; the rest follows the firings.
    # Matched by operation, table and what they cost: a read of the same table that returns
    # more (a phase window's page of schedules beside the idle read of the watermarks) is work.
    idle = Counter(_signature(r) for r in raw["idle_requests"])
    fixed_left = Counter({k: v * ticks for k, v in idle.items()})
    # And the requests of an idle phase window (its queries of the period's shards and its
    # watermark move), once per window of the measured minutes: the window's fixed part.
    windows = round(ticks * 60 / raw["window_seconds"])
    fixed_left += Counter({k: v * windows for k, v in Counter(map(_signature, raw["idle_window"])).items()})
    variable: list[Request] = []
    for r in reqs:
        k = _signature(r)
        if r.component == "ticker" and fixed_left[k] > 0:
            fixed_left[k] -= 1
            continue
        variable.append(r)
    usage = _usage_of(variable)
    memory_w, memory_t = raw["worker_memory_mb"], raw["ticker_memory_mb"]
    usage.lambda_invocations = len(raw["batches"])
    usage.lambda_gb_seconds = sum(gb_seconds(b["modeled_seconds"], memory_w) for b in raw["batches"])
    measured_gbs = sum(gb_seconds(b["seconds"], memory_w) for b in raw["batches"])
    # The ticker's work beyond its idle tick: its variable requests, one after another.
    ticker_modeled = sum(
        DYNAMODB_LATENCY_S if r.service == "dynamodb" else SQS_LATENCY_S
        for r in variable
        if r.component == "ticker"
    )
    usage.lambda_gb_seconds += ticker_modeled * memory_t / 1024
    measured_gbs += sum(max(0.0, s - raw["idle_tick_s"]) for s in raw["ticks"]) * memory_t / 1024

    by_op: dict[str, dict[str, float]] = {}
    for r in variable:
        key = f"{r.component} {r.service} {r.operation}" + (f" {r.table}" if r.table else "")
        row = by_op.setdefault(
            key, {"requests": 0.0, "wru": 0.0, "rru": 0.0, "index_wru": 0.0, "failed": 0.0}
        )
        row["requests"] += r.billed
        row["wru"] += r.wru
        row["rru"] += r.rru
        row["index_wru"] += sum(r.index_wru.values())
        row["failed"] += r.failed
    by_index: Counter[str] = Counter()
    for r in variable:
        for k, v in r.index_wru.items():
            by_index[k] += v
    per = {k: {m: v / n for m, v in row.items()} for k, row in sorted(by_op.items())} if n else {}

    idle_usage = _usage_of(raw["idle_requests"])
    window_usage = _usage_of(raw["idle_window"])
    idle_gbs = gb_seconds(raw["idle_tick_s"], memory_t)
    fixed_month = {
        "ticker_invocations": TICKS_PER_MONTH * PRICES["lambda_request"],
        "ticker_idle_gb_seconds": TICKS_PER_MONTH * idle_gbs * PRICES["lambda_gb_second"],
        "ticker_idle_dynamodb_on_demand": TICKS_PER_MONTH
        * (idle_usage.rru * PRICES["ddb_rru"] + idle_usage.wru * PRICES["ddb_wru"]),
        # one idle window of the period every horizon − lead, all month
        "ticker_idle_windows_on_demand": TICKS_PER_MONTH
        * 60
        / raw["window_seconds"]
        * (window_usage.rru * PRICES["ddb_rru"] + window_usage.wru * PRICES["ddb_wru"]),
        # 5 pollers long-polling 20 s each (the event source mapping's minimum), all month
        "esm_idle_polls": 5 * 3 * TICKS_PER_MONTH * PRICES["sqs_request"],
    }
    fixed_month["total"] = sum(fixed_month.values())
    dollars = {
        "on_demand": price(usage, capacity="on-demand"),
        "provisioned": price(usage, capacity="provisioned"),
    }
    return {
        "firings": n,
        "target_calls": raw["target_calls"],
        "handler_failures": raw["failures"],
        "batches": len(raw["batches"]),
        "firings_per_batch": n / len(raw["batches"]) if raw["batches"] else None,
        "per_firing": {
            "wru": usage.wru / n if n else None,
            "rru": usage.rru / n if n else None,
            "sqs_requests": usage.sqs_requests / n if n else None,
            "lambda_invocations": usage.lambda_invocations / n if n else None,
            "lambda_gb_seconds": usage.lambda_gb_seconds / n if n else None,
            "dynamodb_requests": sum(1 for r in variable if r.service == "dynamodb") / n if n else None,
            "index_wru": {k: v / n for k, v in sorted(by_index.items())} if n else {},
        },
        "by_operation_per_firing": per,
        "worker_ms_per_batch": 1000 * sum(b["seconds"] for b in raw["batches"]) / len(raw["batches"])
        if raw["batches"]
        else None,
        "worker_modeled_ms_per_batch": 1000
        * sum(b["modeled_seconds"] for b in raw["batches"])
        / len(raw["batches"])
        if raw["batches"]
        else None,
        "lambda_usd_per_million_at_measured_durations": per_million(
            usage.lambda_invocations * PRICES["lambda_request"] + measured_gbs * PRICES["lambda_gb_second"], n
        ),
        "tick_ms": 1000 * sum(raw["ticks"]) / ticks if ticks else None,
        "idle_tick_ms": 1000 * raw["idle_tick_s"],
        "usd_per_million": {
            mode: {k: per_million(v, n) for k, v in d.items()} for mode, d in dollars.items()
        },
        "fixed_usd_per_month": fixed_month,
    }


def mix(results: dict[str, dict[str, Any]], history: str) -> dict[str, Any] | None:
    """The 50/30/20 minute/hourly/daily mix of schedules, weighted by firings per day."""
    weights = {k: MIX[k] * DAY_FIRINGS[k] for k in MIX}
    parts = {k: results.get(f"{k}/{history}") for k in MIX}
    if any(p is None or not p["firings"] for p in parts.values()):
        return None
    total = sum(weights.values())
    out: dict[str, Any] = {"firing_share": {k: w / total for k, w in weights.items()}}
    for mode in ("on_demand", "provisioned"):
        out.setdefault("usd_per_million", {})[mode] = {
            key: sum(weights[k] / total * parts[k]["usd_per_million"][mode][key] for k in MIX)  # type: ignore[index]
            for key in ("dynamodb", "sqs", "lambda", "total")
        }
    out["per_firing"] = {
        key: sum(weights[k] / total * parts[k]["per_firing"][key] for k in MIX)  # type: ignore[index]
        for key in ("wru", "rru", "sqs_requests", "lambda_invocations", "lambda_gb_seconds")
    }
    return out


# --- command line ---------------------------------------------------------------------------------

WORKLOADS = {  # kind: (schedules, measured minutes, warm-up minutes)
    "minute": (20, 10, 20),  # past the phase windows that confirm the schedules
    # Past each schedule's first firing (the first hour, the first day): a schedule's first
    # phase window writes it once (`phased`, its due-index entry deleted), then never again —
    # a cost per schedule, not per firing (README).
    "hourly": (100, 60, 76),
    "daily": (100, 30, 24 * 60 + 16),
}
_PERIODS = {"minute": 60, "hourly": 3600, "daily": 86_400}  # the workloads' phase-index periods


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--horizon", type=float, default=None, help="HorizonSeconds (default: the template's)")
    p.add_argument("--history", default="on,off", help="history modes to run: on, off or on,off")
    p.add_argument("--kinds", default="minute,hourly,daily", help="workloads to run")
    p.add_argument("--long", action="store_true", help="(no long form: same as the short one)")
    p.add_argument("--no-write", action="store_true", help="do not write bench/results/cost.json")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from gnomon.local.template import load_template, resolve_parameters

    template = load_template()
    horizon = args.horizon or float(resolve_parameters(template, None).get("HorizonSeconds", 60))
    meta = machine()
    results: dict[str, dict[str, Any]] = {}
    for kind in [k for k in args.kinds.split(",") if k]:
        schedules, minutes, warm = WORKLOADS[kind]
        for history in [h for h in args.history.split(",") if h]:
            say(f"cost: {kind} schedules, history {history}, horizon {horizon:.0f} s …")
            t = time.perf_counter()
            raw = simulate(Simulation(kind, schedules, minutes, warm, history, horizon), template)
            r = summarize(raw)
            r.update(kind=kind, history=history, schedules=schedules, minutes=minutes)
            say(
                f"  {r['firings']} firings, {r['per_firing']['wru']:.2f} WRU/firing, "
                f"${r['usd_per_million']['on_demand']['total']:.2f}/M on-demand "
                f"({time.perf_counter() - t:.0f} s)"
            )
            results[f"{kind}/{history}"] = r
    for history in ("on", "off"):
        m = mix(results, history)
        if m is not None:
            results[f"mix/{history}"] = {"kind": "mix", "history": history, **m}
    print_tables(results, horizon)
    payload = {
        "benchmark": NAME,
        "meta": meta,
        "params": {
            "horizon_seconds": horizon,
            "workloads": WORKLOADS,
            "prices": PRICES,
            "provisioned_utilization": PROVISIONED_UTILIZATION,
            "goals": GOALS,
        },
        "results": results,
    }
    if not args.no_write:
        say(f"wrote {write_result(NAME, payload)}")
    return payload


def print_tables(results: dict[str, dict[str, Any]], horizon: float) -> None:
    print(
        f"\nCost per million firings (us-east-1 list prices, HorizonSeconds {horizon:.0f}); "
        "EventBridge Scheduler: $1.00/M, no history"
    )
    headers = [
        "workload",
        "history",
        "WRU/firing",
        "RRU/firing",
        "SQS req/firing",
        "Lambda GB-ms/firing",
        "DynamoDB $/M",
        "SQS $/M",
        "Lambda $/M",
        "(measured)",
        "on-demand $/M",
        "provisioned $/M",
        "goal $/M",
        "met (on-demand / provisioned)",
    ]
    rows = []
    for r in results.values():
        pf = r["per_firing"]
        od, pv = r["usd_per_million"]["on_demand"], r["usd_per_million"]["provisioned"]
        # met: on-demand / provisioned, each against its goal (history off: one goal for both)
        if r["history"] == "on":
            goal = f"{GOALS['history_on_demand']:.2f} / {GOALS['history_provisioned']:.2f}"
            met = (od["total"] <= GOALS["history_on_demand"], pv["total"] <= GOALS["history_provisioned"])
        else:
            goal = f"{GOALS['history_off']:.2f}"
            met = (od["total"] <= GOALS["history_off"], pv["total"] <= GOALS["history_off"])
        rows.append(
            [
                r["kind"],
                r["history"],
                pf["wru"],
                pf["rru"],
                pf["sqs_requests"],
                pf["lambda_gb_seconds"] * 1000,
                od["dynamodb"],
                od["sqs"],
                od["lambda"],
                r.get("lambda_usd_per_million_at_measured_durations"),
                od["total"],
                pv["total"],
                goal,
                " / ".join("yes" if m else "no" for m in met),
            ]
        )
    print(table(headers, rows))
    print(
        f"(provisioned: DynamoDB capacity autoscaled at {PROVISIONED_UTILIZATION:.0%} utilization; "
        "mix = 50/30/20 % of schedules minute/hourly/daily, weighted by firings per day; Lambda priced "
        f"at modelled AWS durations — DynamoDB {DYNAMODB_LATENCY_S * 1000:.0f} ms, SQS "
        f"{SQS_LATENCY_S * 1000:.0f} ms a request, a batch's records in parallel; (measured) = at the "
        "handlers' wall time here, moto in-process on a shared machine)"
    )
    for key, r in results.items():
        if "by_operation_per_firing" not in r:
            continue
        print(
            f"\n{key}: requests per firing by component, service and operation "
            f"(fixed per-tick queries excluded; {r['firings']} firings)"
        )
        print(
            table(
                ["request", "requests", "WRU", "index WRU", "RRU"],
                [
                    [k, v["requests"], v["wru"], v["index_wru"], v["rru"]]
                    for k, v in r["by_operation_per_firing"].items()
                ],
            )
        )
        idx = ", ".join(f"{k} {v:.2f}" for k, v in r["per_firing"]["index_wru"].items())
        print(
            f"index WRU per firing: {idx or 'none'}; fixed ${r['fixed_usd_per_month']['total']:.2f}/month "
            "(ticker every minute + the event source mapping's idle polls)"
        )


def main(argv: list[str] | None = None) -> int:
    line_buffered()
    p = argparse.ArgumentParser(
        prog="python -m bench.cost", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(p)
    run(p.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
