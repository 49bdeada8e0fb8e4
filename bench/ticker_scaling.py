"""Ticker scaling: does one tick read O(due) from DynamoDB, whatever the total?

Under in-process moto (`mock_aws`), with the tables `template.yaml` declares (built by the loader
the dev stack uses), seed N schedule records through `DynamoScheduleStore.create` — exactly the
items the store writes — 1 % of them due (next fire time in the past minute), the rest due in
1–6 days. Then run one `Ticker.tick()` (wired by `gnomon.wiring.build` over the DynamoDB stores
and an in-memory firing queue) while a hook on botocore counts every DynamoDB request by
operation (and index) and the items each returned.

What to read: `due_read` (from the `TickReport`) and the items the `due` index returned should
equal the due count; total items read ≈ 2 × due (the index key, then the schedule itself), and
neither grows with the total. Tick time grows with the total under moto only because moto
evaluates a GSI query by walking the table (DynamoDB reads the index range), so it is a figure
of moto, not of gnomon.

    python -m bench ticker-scaling                 # 1 000 and 10 000 schedules
    python -m bench ticker-scaling --long          # + 100 000
    python -m bench ticker-scaling --sizes 500,5000 --due-fraction 0.05
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

from bench import line_buffered, machine, say, table, write_result

NAME = "ticker_scaling"
SHORT_SIZES = (1_000, 10_000)
LONG_SIZES = (1_000, 10_000, 100_000)
DUE_FRACTION = 0.01
WEEK = 7 * 86_400
PREFIX = "gnomon-bench-"
# The stores' table variables and the template's logical ids they name.
TABLE_ENV = {
    "GNOMON_CATALOG_TABLE": "CatalogTable",
    "GNOMON_SCHEDULES_TABLE": "SchedulesTable",
    "GNOMON_REQUESTS_TABLE": "RequestsTable",
    "GNOMON_RUNS_TABLE": "RunsTable",
}
_CLEARED_ENV = (
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_SQS",
    "GNOMON_DUE_SHARDS",
    "GNOMON_STORE",
)


# --- counting DynamoDB requests -----------------------------------------------------------------


class DynamoCounter:
    """Counts the DynamoDB requests made in this process while `active`, by operation (a query
    on an index is `Query[index]`), and the items they returned (`Count` for Query/Scan, the
    item for GetItem, every response for BatchGetItem) and scanned (`ScannedCount`).

    It wraps `botocore.client.BaseClient._make_api_call`, the method pynamodb's connection calls
    for every request, so it sees the clients pynamodb creates itself."""

    def __init__(self) -> None:
        self.active = False
        self.requests: Counter[str] = Counter()
        self.items: Counter[str] = Counter()
        self.scanned: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()

    def reset(self) -> None:
        for c in (self.requests, self.items, self.scanned, self.failed):
            c.clear()

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(sorted(self.requests.items())),
            "items": dict(sorted(self.items.items())),
            "scanned": dict(sorted(self.scanned.items())),
            "failed": dict(sorted(self.failed.items())),
        }

    @contextlib.contextmanager
    def installed(self) -> Iterator[DynamoCounter]:
        from botocore.client import BaseClient

        original: Callable[..., Any] = BaseClient._make_api_call
        counter = self

        def counting(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            if not counter.active or client.meta.service_model.service_name != "dynamodb":
                return original(client, operation_name, api_params)
            index = api_params.get("IndexName")
            key = f"{operation_name}[{index}]" if index else operation_name
            counter.requests[key] += 1
            try:
                result = original(client, operation_name, api_params)
            except Exception:
                counter.failed[key] += 1  # conditional-check failures and the like
                raise
            returned, scanned = _items_of(operation_name, result)
            counter.items[key] += returned
            counter.scanned[key] += scanned
            return result

        BaseClient._make_api_call = counting  # type: ignore[method-assign]
        try:
            yield self
        finally:
            BaseClient._make_api_call = original  # type: ignore[method-assign]


def _items_of(operation: str, result: dict[str, Any]) -> tuple[int, int]:
    """(items returned, items scanned) by one read; writes read nothing."""
    if operation in ("Query", "Scan"):
        count = int(result.get("Count", len(result.get("Items") or [])))
        return count, int(result.get("ScannedCount", count))
    if operation == "GetItem":
        n = 1 if result.get("Item") else 0
        return n, n
    if operation == "BatchGetItem":
        n = sum(len(v) for v in (result.get("Responses") or {}).values())
        return n, n
    if operation == "TransactGetItems":
        n = sum(1 for r in result.get("Responses") or [] if r.get("Item"))
        return n, n
    return 0, 0


# --- the environment ------------------------------------------------------------------------------


@contextlib.contextmanager
def moto_tables(template: dict[str, Any] | None = None) -> Iterator[dict[str, str]]:
    """In-process moto with the template's tables, their names in the stores' environment
    variables; the environment is restored afterwards. Answers {env var: table name}."""
    from moto import mock_aws

    from gnomon.local.template import create_resources, load_template

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
            res = create_resources(template or load_template(), endpoint_url=None, prefix=PREFIX)
            tables = {var: res.tables[lid] for var, lid in TABLE_ENV.items()}
            os.environ.update(tables)
            yield tables
    finally:
        os.environ.clear()
        os.environ.update(saved)


def build_services() -> tuple[Any, Any]:
    """The services over the DynamoDB stores (moto), an in-memory firing queue and request log.
    Answers (services, queue)."""
    from gnomon.adapters.clock import SystemClock
    from gnomon.adapters.dynamo import DynamoCatalogStore, DynamoRunStore, DynamoScheduleStore
    from gnomon.adapters.memory import MemoryRequestLog
    from gnomon.adapters.memory_queue import MemoryFiringQueue
    from gnomon.adapters.planlog_dynamo import DynamoPlanLog
    from gnomon.wiring import build

    queue = MemoryFiringQueue()
    services = build(
        clock=SystemClock(),
        catalog=DynamoCatalogStore(),
        schedule_store=DynamoScheduleStore(),
        run_store=DynamoRunStore(),
        requests=MemoryRequestLog(),
        queue=queue,
        invoker=None,
        token_key=b"k",
        plan_log=DynamoPlanLog(),
    )
    return services, queue


# --- seeding --------------------------------------------------------------------------------------


def seed(services: Any, total: int, due: int, *, rng: random.Random, progress: bool = False) -> float:
    """Store `total` schedules through `DynamoScheduleStore.create`, `due` of them with their next
    fire time in the past minute and the rest 1–6 days ahead; answers the seconds it took.

    Each record is a copy of a prototype created through the schedules service (so the document
    is exactly what the API would store), with its own id and a weekly interval whose offset puts
    a nominal time on the chosen instant (so the spec and `next_fire_at` agree)."""
    from gnomon.domain.model import DefinitionBody, ScheduleCreate
    from gnomon.ports import ScheduleRecord
    from gnomon.services.common import Caller

    caller = Caller("arn:aws:iam::000000000000:user/bench")
    store = services.schedule_store
    services.definitions.create(
        DefinitionBody.model_validate(
            {"name": "bench", "target": {"type": "http", "url": "https://example.com/hook"}}
        ),
        caller,
    )
    now = int(time.time())
    proto_body = ScheduleCreate.model_validate(
        {
            "schedule_id": "bench-prototype",
            "definition": "bench",
            "spec": {"intervals": [{"every_seconds": WEEK, "offset_seconds": (now + 3 * 86_400) % WEEK}]},
        }
    )
    services.schedules.create(proto_body, caller)
    proto = store.get("bench-prototype")
    store.delete("bench-prototype")
    interval = proto.doc["spec"]["intervals"][0]

    due_ids = set(rng.sample(range(total), due))
    placed = _placer()
    t0 = time.perf_counter()
    for i in range(total):
        at = now - rng.randint(1, 59) if i in due_ids else now + rng.randint(86_400, 6 * 86_400)
        sid = f"bench-{i:06d}"
        doc = copy.deepcopy(proto.doc)
        doc["schedule_id"] = sid
        doc["spec"]["intervals"] = [{**interval, "every_seconds": WEEK, "offset_seconds": at % WEEK}]
        base = ScheduleRecord(
            schedule_id=sid,
            doc=doc,
            generation=proto.generation,
            definition=proto.definition,
            group=proto.group,
            next_fire_at=None,
        )
        store.create(placed(base, doc, datetime.fromtimestamp(at, UTC)))
        if progress and (i + 1) % 10_000 == 0:
            say(f"  seeded {i + 1}/{total} ({time.perf_counter() - t0:.0f} s)")
    return time.perf_counter() - t0


def _placer() -> Callable[[Any, dict[str, Any], datetime], Any]:
    """How the schedules service turns (record, document, planning cursor) into what it hands the
    store: `gnomon.services.tick.schedule_record` (the cursor kept in the document, the record at
    its due-index place), or — for a tree without it — the record with `next_fire_at` = cursor."""
    from dataclasses import replace

    try:
        from gnomon.services.tick import schedule_record  # type: ignore[attr-defined]
    except ImportError:
        return lambda rec, doc, cursor: replace(rec, doc=doc, next_fire_at=cursor)
    return cast(Callable[[Any, dict[str, Any], datetime], Any], schedule_record)


# --- one size -------------------------------------------------------------------------------------


def run_size(total: int, due_fraction: float = DUE_FRACTION, *, seed_value: int = 1) -> dict[str, Any]:
    """Seed `total` schedules (round(total × due_fraction) due) in fresh moto tables, then run one
    tick and one idle tick after it, counting DynamoDB requests. Answers the figures."""
    due = round(total * due_fraction)
    rng = random.Random(seed_value)
    counter = DynamoCounter()
    with moto_tables(), counter.installed():
        services, queue = build_services()
        counter.active = True
        seed_s = seed(services, total, due, rng=rng, progress=total >= 50_000)
        seed_counts = counter.snapshot()

        counter.reset()
        t0 = time.perf_counter()
        report = services.ticker.tick()
        tick_s = time.perf_counter() - t0
        counts = counter.snapshot()
        enqueued = len(queue.drain())

        counter.reset()
        t0 = time.perf_counter()
        idle = services.ticker.tick()
        idle_s = time.perf_counter() - t0
        idle_counts = counter.snapshot()
        counter.active = False

    items_read = sum(counts["items"].values())
    index_items = counts["items"].get("Query[due]", 0)
    index_scanned = counts["scanned"].get("Query[due]", 0)
    return {
        "total": total,
        "due": due,
        "due_read": report.due_read,
        "schedules_advanced": report.schedules_advanced,
        "firings_enqueued": report.firings_enqueued,
        "messages_sent": enqueued,
        "tick_errors": report.errors[:10],
        "tick_complete": report.complete,
        "requests": counts["requests"],
        "requests_total": sum(counts["requests"].values()),
        "requests_failed": counts["failed"],
        "items_returned": counts["items"],
        "items_scanned": counts["scanned"],
        "items_read": items_read,
        "due_index_items": index_items,
        "due_index_scanned": index_scanned,
        "ratio_due_read_per_due": report.due_read / due if due else None,
        "ratio_index_items_per_due": index_items / due if due else None,
        "ratio_items_read_per_due": items_read / due if due else None,
        "tick_ms": tick_s * 1000,
        "idle_tick": {
            "due_read": idle.due_read,
            "requests": idle_counts["requests"],
            "items_read": sum(idle_counts["items"].values()),
            "tick_ms": idle_s * 1000,
        },
        "seed_seconds": seed_s,
        "seed_items_per_second": total / seed_s if seed_s else None,
        "seed_requests": seed_counts["requests"],
    }


def rows(results: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    headers = [
        "schedules",
        "due",
        "due_read",
        "requests (tick)",
        "index items",
        "items read",
        "due_read/due",
        "index/due",
        "read/due",
        "tick ms",
        "idle tick ms",
        "seed s",
    ]
    keys = (
        "total",
        "due",
        "due_read",
        "requests_total",
        "due_index_items",
        "items_read",
        "ratio_due_read_per_due",
        "ratio_index_items_per_due",
        "ratio_items_read_per_due",
        "tick_ms",
    )
    out = [[*(r[k] for k in keys), r["idle_tick"]["tick_ms"], r["seed_seconds"]] for r in results]
    return headers, out


def by_operation(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        ops = ", ".join(f"{op} {n}" for op, n in r["requests"].items())
        items = ", ".join(f"{op} {n}" for op, n in r["items_returned"].items() if n)
        lines.append(f"  {r['total']:>7} schedules: requests {{{ops}}}; items returned {{{items}}}")
    return "\n".join(lines)


# --- command line ---------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--long", action="store_true", help="the long form: sizes 1000,10000,100000")
    p.add_argument("--sizes", type=_ints, default=None, help="comma-separated schedule counts")
    p.add_argument("--due-fraction", type=float, default=DUE_FRACTION, help="share of schedules due (0.01)")
    p.add_argument("--no-write", action="store_true", help="do not write bench/results/ticker_scaling.json")


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = args.sizes or (LONG_SIZES if args.long else SHORT_SIZES)
    meta = machine()
    results = []
    for total in sizes:
        say(f"ticker scaling: {total} schedules, {args.due_fraction:.1%} due …")
        r = run_size(total, args.due_fraction)
        say(
            f"  due_read {r['due_read']}/{r['due']}, {r['requests_total']} requests, "
            f"tick {r['tick_ms']:.0f} ms, seeded in {r['seed_seconds']:.1f} s"
        )
        results.append(r)
    headers, body = rows(results)
    print("\nTicker scaling: one tick over DynamoDB (in-process moto), DynamoDB reads vs due count")
    print(table(headers, body))
    print("DynamoDB requests of the tick by operation:")
    print(by_operation(results))
    print(
        "(index items = keys the `due` index returned; read/due counts every item read, ≈ 2: the "
        "index key, then the schedule. Tick ms grows under moto, whose GSI query walks the table.)"
    )
    payload = {
        "benchmark": NAME,
        "meta": meta,
        "params": {"sizes": list(sizes), "due_fraction": args.due_fraction},
        "results": results,
    }
    if not args.no_write:
        path = write_result(NAME, payload)
        say(f"wrote {path}")
    return payload


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    line_buffered()
    p = argparse.ArgumentParser(
        prog="python -m bench.ticker_scaling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    run(p.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
