"""The logic of the cost model (bench/costmodel.py): item sizes, write and read units, index
writes from item images and the template's GSI definitions, SQS chunks, pricing; and the run
counters summed per worker batch. Arithmetic, no timings."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from bench.costmodel import (
    PRICES,
    IndexDef,
    TableDef,
    Usage,
    gb_seconds,
    index_writes,
    item_size,
    item_write_cost,
    number_size,
    per_million,
    price,
    read_units,
    sqs_requests,
    table_def,
    write_units,
)
from gnomon.adapters.stats_memory import MemoryStatsStore
from gnomon.local.template import load_template
from gnomon.services.stats import CountingRunStore, gauge_key

SCHEDULES = TableDef(
    "SchedulesTable",
    ("schedule_id",),
    (
        IndexDef("due", ("due_shard", "due_key")),
        IndexDef("by_group", ("group", "schedule_id")),
    ),
)


def s(v: str) -> dict[str, str]:
    return {"S": v}


def schedule_item(due: str | None, doc: str = "x" * 100, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"schedule_id": s("a"), "group": s("g"), "doc": s(doc), **extra}
    if due is not None:
        item.update(due_shard=s("3"), due_key=s(due))
    return item


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ({"S": "héllo"}, 6),  # UTF-8 bytes
        ({"N": "0"}, 2),
        ({"N": "12345"}, 4),  # 3 bytes of digit pairs + 1
        ({"BOOL": True}, 1),
        ({"NULL": True}, 1),
        ({"B": b"\x00" * 10}, 10),
        ({"M": {"ab": {"S": "xyz"}}}, 3 + 2 + 3 + 1),
        ({"L": [{"S": "a"}, {"N": "1"}]}, 3 + (1 + 1) + (2 + 1)),
    ],
)
def test_item_size_of_each_attribute_type(value: dict[str, Any], size: int) -> None:
    assert item_size({"k": value}) == 1 + size  # the name's bytes + the value's


def test_number_size_drops_leading_and_trailing_zeros() -> None:
    assert number_size("1000") == number_size("1") == 2
    assert number_size("-0.0012") == number_size("12")


@pytest.mark.parametrize(
    ("size", "wru", "rru_strong", "rru_eventual"),
    [(0, 1, 1.0, 0.5), (1024, 1, 1.0, 0.5), (1025, 2, 1.0, 0.5), (4097, 5, 2.0, 1.0)],
)
def test_units_round_up_per_kb_and_per_4_kb(
    size: int, wru: int, rru_strong: float, rru_eventual: float
) -> None:
    assert write_units(size) == wru
    assert read_units(size, consistent=True) == rru_strong
    assert read_units(size, consistent=False) == rru_eventual


def test_an_index_key_change_costs_a_delete_and_a_put() -> None:
    old, new = schedule_item("2026-12-01T10:00#a"), schedule_item("2026-12-01T10:15#a")
    w = index_writes(SCHEDULES, SCHEDULES.indexes[0], old, new)
    assert (w.puts, w.deletes, w.updates, w.units) == (1, 1, 0, 2)
    cost = item_write_cost(SCHEDULES, old, new)
    assert cost.index_units == {"due": 2} and cost.index_ops == {"due": "delete+put"}
    assert cost.units == 1 + 2  # the table's unit and the due index's two; by_group untouched


def test_a_sparse_index_entry_appearing_or_leaving_costs_one_write() -> None:
    paused, due = schedule_item(None), schedule_item("2026-12-01T10:00#a")
    assert item_write_cost(SCHEDULES, paused, due).index_ops == {"due": "put"}
    assert item_write_cost(SCHEDULES, due, paused).index_ops == {"due": "delete"}
    assert item_write_cost(SCHEDULES, paused, paused).index_units == {}


def test_a_keys_only_index_ignores_non_key_changes_but_an_include_one_does_not() -> None:
    old = schedule_item("k", doc="a")
    new = schedule_item("k", doc="b" * 3000)  # a bigger document: 3 KB
    cost = item_write_cost(SCHEDULES, old, new)
    assert cost.table_units == 3 and cost.index_units == {}
    runs = TableDef("Runs", ("pk", "sk"), (IndexDef("by_time", ("ts", "tk"), "INCLUDE", ("definition",)),))
    base = {
        "pk": s("p"),
        "sk": s("s"),
        "ts": s("1"),
        "tk": s("t"),
        "definition": s("d"),
        "status": s("running"),
    }
    assert item_write_cost(runs, base, {**base, "status": s("completed")}).index_units == {}
    moved = item_write_cost(runs, base, {**base, "definition": s("e")})
    assert moved.index_ops == {"by_time": "update"} and moved.index_units == {"by_time": 1}


def test_deletes_failures_and_transactions() -> None:
    item = schedule_item("k", doc="x" * 1500)
    deleted = item_write_cost(SCHEDULES, item, None)
    assert deleted.table_units == 2 and deleted.index_ops == {"due": "delete", "by_group": "delete"}
    failed = item_write_cost(SCHEDULES, item, None, succeeded=False)
    assert failed.table_units == 2 and failed.index_units == {}
    created = item_write_cost(SCHEDULES, None, item, transactional=True)
    assert created.table_units == 4 and created.index_units == {"due": 1, "by_group": 1}


def test_the_template_s_indexes_are_read_as_declared() -> None:
    template = load_template()
    runs = table_def("RunsTable", template["Resources"]["RunsTable"]["Properties"])
    assert runs.keys == ("pk", "sk")
    by_name = {i.name: i for i in runs.indexes}
    assert by_name["by_time"].projection == "INCLUDE" and by_name["by_time"].include == ("definition",)
    assert by_name["active"].projection == "KEYS_ONLY"


def test_sqs_chunks_and_lambda_gb_seconds() -> None:
    assert sqs_requests(0) == 1 and sqs_requests(64 * 1024) == 1 and sqs_requests(64 * 1024 + 1) == 2
    assert gb_seconds(0.1004, 512) == pytest.approx(0.101 * 0.5)  # billed per ms, rounded up


def test_pricing_per_million_firings() -> None:
    usage = Usage(wru=2.5e6, rru=2e6, sqs_requests=3e5, lambda_invocations=1e5, lambda_gb_seconds=1000)
    on_demand = price(usage)
    assert on_demand["dynamodb"] == pytest.approx(2.5 * 0.625 + 2 * 0.125)
    assert on_demand["sqs"] == pytest.approx(0.12)
    assert on_demand["lambda"] == pytest.approx(0.02 + 1000 * PRICES["lambda_gb_second"])
    provisioned = price(usage, capacity="provisioned", utilization=1.0)
    assert provisioned["dynamodb"] == pytest.approx(2.5e6 * 0.00065 / 3600 + 2e6 * 0.00013 / 3600)
    assert price(usage, capacity="provisioned", utilization=0.5)["dynamodb"] == pytest.approx(
        2 * provisioned["dynamodb"]
    )
    assert per_million(on_demand["total"], 1_000_000) == pytest.approx(on_demand["total"])
    assert math.isnan(per_million(1.0, 0))
    with pytest.raises(ValueError):
        price(usage, capacity="reserved")


# --- run counters summed per batch --------------------------------------------------------------


class _Clock:
    def now(self) -> datetime:
        return datetime(2026, 12, 1, 10, 7, tzinfo=UTC)


class _CountingStats(MemoryStatsStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def add(self, key: str, deltas: Any, *, expires_at: datetime | None = None) -> None:
        self.writes += 1
        super().add(key, deltas, expires_at=expires_at)


def test_a_batch_s_run_counters_are_written_once_per_counter_item() -> None:
    from gnomon.adapters.memory import MemoryRunStore
    from tests.contract.test_runs import fired

    stats = _CountingStats()
    store = CountingRunStore(MemoryRunStore(), stats, _Clock())
    t = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    with store.deferred():
        for i in range(10):
            run = store.create(fired(f"s{i}", t, status="running"))
            doc = {**run.doc, "status": "completed", "closed_at": "2026-12-01T10:07:00Z"}
            store.update(
                replace(run, doc=doc, status="completed", active_at=None), expected_version=run.version
            )
        assert stats.writes == 0  # nothing written inside the batch
    # running +1 −1 nets to nothing; ten closes land in their definition's day item
    assert stats.writes == 1
    assert stats.get_many([gauge_key("def#job")]) == {}
    stats.writes = 0
    store.create(fired("outside", t, status="running"))
    assert stats.writes == 1  # outside a batch: written at once (its definition's gauge)


def test_a_batch_reads_each_definition_once_and_a_new_batch_reads_it_again() -> None:
    from tests.unit.pipeline import Pipeline

    p = Pipeline()
    p.definition()
    for i in range(3):
        p.schedule(f"s{i}", spec={"intervals": [{"every_seconds": 10}]})
    p.collect()
    p.clock.advance(10)
    catalog = p.s.executor._catalog  # type: ignore[attr-defined]
    reads: list[str] = []
    original = catalog.get

    def counting_get(kind: str, name: str) -> Any:
        reads.append(name)
        return original(kind, name)

    catalog.get = counting_get
    with p.s.per_batch():
        handled = p.deliver_due()
    assert [h.outcome for h in handled] == ["ran"] * 3
    assert reads.count("job") == 1  # three firings of one definition: one read
    p.clock.advance(10)
    with p.s.per_batch():
        p.deliver_due()
    assert reads.count("job") == 2  # the next batch reads it again
