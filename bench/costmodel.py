"""The arithmetic of the cost model (`bench.cost`): AWS list prices, DynamoDB item sizes and the
read/write units a request consumes — including every global secondary index it writes — SQS
requests per 64 KB chunk, Lambda GB-seconds. Pure functions over the request parameters and item
images botocore hands the hooks (DynamoDB's typed JSON: `{"S": "x"}`, `{"N": "1"}`, …), so each
rule is unit-tested (`tests/unit/test_cost_model.py`).

Rules followed (DynamoDB developer guide, "Capacity unit consumption" and "Global secondary
indexes — provisioned throughput"):

- an item's size is the sum of its attribute names' and values' lengths (strings: UTF-8 bytes;
  numbers: about one byte per two significant digits + 1; maps and lists: 3 bytes + 1 per
  element + their elements; booleans and nulls: 1 byte);
- a write of a table item costs ceil(size / 1 KB) write units (an update: the larger of the item
  before and after; a delete: the item deleted), at least 1; a transactional write twice that; a
  conditional write that fails still costs the units of the item it was checked against;
- each GSI the write touches costs its own units on the index entry (table keys + index keys +
  projected attributes): an entry appearing is a put, one disappearing a delete, a changed index
  key a delete **and** a put, an unchanged key with changed projected attributes one update, and
  nothing at all when the index key and the projected attributes stay the same;
- a read costs ceil(size / 4 KB) read units per item for GetItem / BatchGetItem (a missing item
  still costs the minimum), and ceil(total returned size / 4 KB) per Query page; eventually
  consistent reads cost half.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KB = 1024
READ_UNIT_BYTES = 4 * KB
SQS_CHUNK_BYTES = 64 * KB

# us-east-1 list prices, checked 2026-11-23 (NOTES.md); provisioned RCU-hour from the same page.
PRICES = {
    "ddb_wru": 0.625e-6,  # on-demand, per write request unit
    "ddb_rru": 0.125e-6,  # on-demand, per read request unit
    "ddb_wcu_hour": 0.00065,  # provisioned, per WCU-hour
    "ddb_rcu_hour": 0.00013,  # provisioned, per RCU-hour
    "sqs_request": 0.40e-6,  # per request (each 64 KB chunk of payload is a request)
    "lambda_request": 0.20e-6,
    "lambda_gb_second": 0.0000166667,  # x86_64
    "eventbridge_scheduler": 1.00e-6,  # per invocation after 14 M free a month (keeps no history)
}
# Provisioned capacity is paid per hour whether used or not: a table autoscaled to its usual
# 70 % target utilization pays for 1 / 0.7 of what it consumes.
PROVISIONED_UTILIZATION = 0.7


# --- item sizes ---------------------------------------------------------------------------------


def number_size(text: str) -> int:
    """Bytes DynamoDB counts for a number: ~1 byte per 2 significant digits, + 1."""
    digits = text.lstrip("-").replace(".", "").lstrip("0").rstrip("0") if text.strip("-0.") else ""
    return max(1, math.ceil(len(digits) / 2)) + 1


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one typed attribute value."""
    ((kind, v),) = value.items()
    if kind == "S":
        return len(str(v).encode())
    if kind == "N":
        return number_size(str(v))
    if kind == "B":
        return len(v) if isinstance(v, bytes | bytearray) else len(str(v))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode()) for s in v)
    if kind == "NS":
        return sum(number_size(str(n)) for n in v)
    if kind == "BS":
        return sum(len(b) for b in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(x) + 1 for k, x in v.items())
    if kind == "L":
        return 3 + sum(value_size(x) + 1 for x in v)
    raise ValueError(f"unknown attribute type {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]] | None) -> int:
    """Bytes of an item (0 for None): attribute names plus values."""
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(v) for name, v in item.items())


def write_units(size: int) -> int:
    """Write units of writing `size` bytes (at least 1)."""
    return max(1, math.ceil(size / KB))


def read_units(size: int, *, consistent: bool) -> float:
    """Read units of reading `size` bytes in one item (or one Query page): at least one 4 KB
    unit, half for an eventually consistent read."""
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


# --- indexes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexDef:
    """A global secondary index as the template declares it."""

    name: str
    keys: tuple[str, ...]
    projection: str = "KEYS_ONLY"  # KEYS_ONLY | INCLUDE | ALL
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableDef:
    """A table's key attributes and its GSIs (from template.yaml)."""

    name: str
    keys: tuple[str, ...]
    indexes: tuple[IndexDef, ...] = ()


def table_def(logical_id: str, properties: Mapping[str, Any]) -> TableDef:
    """A `TableDef` from an `AWS::DynamoDB::Table`'s Properties."""
    indexes = []
    for gsi in properties.get("GlobalSecondaryIndexes") or []:
        proj = gsi.get("Projection") or {}
        indexes.append(
            IndexDef(
                name=str(gsi["IndexName"]),
                keys=tuple(str(k["AttributeName"]) for k in gsi["KeySchema"]),
                projection=str(proj.get("ProjectionType", "ALL")),
                include=tuple(str(a) for a in proj.get("NonKeyAttributes") or []),
            )
        )
    keys = tuple(str(k["AttributeName"]) for k in properties["KeySchema"])
    return TableDef(logical_id, keys, tuple(indexes))


def index_entry(table: TableDef, index: IndexDef, item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The entry `item` has in `index` (None: the item is not in it — sparse index)."""
    if not item or any(k not in item for k in index.keys):
        return None
    if index.projection == "ALL":
        return dict(item)
    names = (
        set(table.keys) | set(index.keys) | (set(index.include) if index.projection == "INCLUDE" else set())
    )
    return {n: item[n] for n in names if n in item}


@dataclass
class IndexWrites:
    """What one table write did to one index."""

    puts: int = 0
    deletes: int = 0
    updates: int = 0
    units: int = 0


def index_writes(
    table: TableDef, index: IndexDef, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> IndexWrites:
    """The index writes of an item changing from `old` to `new` (None: absent)."""
    before, after = index_entry(table, index, old), index_entry(table, index, new)
    out = IndexWrites()
    if before is None and after is None:
        return out
    if before is None:
        out.puts, out.units = 1, write_units(item_size(after))
        return out
    if after is None:
        out.deletes, out.units = 1, write_units(item_size(before))
        return out
    if any(before.get(k) != after.get(k) for k in index.keys):
        out.puts = out.deletes = 1
        out.units = write_units(item_size(before)) + write_units(item_size(after))
        return out
    if before != after:
        out.updates, out.units = 1, write_units(max(item_size(before), item_size(after)))
    return out


@dataclass
class WriteCost:
    """The units one item write consumed, the table's and each index's."""

    table_units: int = 0
    index_units: dict[str, int] = field(default_factory=dict)
    index_ops: dict[str, str] = field(
        default_factory=dict
    )  # index → "put" | "delete" | "update" | "delete+put"

    @property
    def units(self) -> int:
        return self.table_units + sum(self.index_units.values())


def item_write_cost(
    table: TableDef,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    *,
    succeeded: bool = True,
    transactional: bool = False,
) -> WriteCost:
    """The units of writing one item from `old` to `new` (a delete: `new` None). A failed
    conditional write costs the item it was checked against and touches no index."""
    factor = 2 if transactional else 1
    if not succeeded:
        return WriteCost(table_units=factor * write_units(item_size(old)))
    cost = WriteCost(table_units=factor * write_units(max(item_size(old), item_size(new))))
    for index in table.indexes:
        w = index_writes(table, index, old, new)
        if w.units:
            cost.index_units[index.name] = w.units
            cost.index_ops[index.name] = (
                "delete+put"
                if w.puts and w.deletes
                else "put"
                if w.puts
                else "delete"
                if w.deletes
                else "update"
            )
    return cost


# --- SQS and Lambda -------------------------------------------------------------------------------


def sqs_requests(payload_bytes: int) -> int:
    """Billed requests of one API call carrying `payload_bytes` (each 64 KB chunk counts)."""
    return max(1, math.ceil(payload_bytes / SQS_CHUNK_BYTES))


def gb_seconds(duration_s: float, memory_mb: int) -> float:
    """Lambda GB-seconds of one invocation (billed per millisecond, rounded up)."""
    return math.ceil(duration_s * 1000) / 1000 * memory_mb / 1024


# --- pricing --------------------------------------------------------------------------------------


@dataclass
class Usage:
    """What a number of firings consumed, priced by `price`."""

    wru: float = 0.0
    rru: float = 0.0
    sqs_requests: float = 0.0
    lambda_invocations: float = 0.0
    lambda_gb_seconds: float = 0.0


def price(
    usage: Usage, *, capacity: str = "on-demand", utilization: float = PROVISIONED_UTILIZATION
) -> dict[str, float]:
    """Dollars for `usage`, by service. `capacity` "provisioned": DynamoDB capacity sized to the
    load at `utilization` (a WCU-hour buys 3 600 write units at 100 %)."""
    if capacity == "on-demand":
        ddb = usage.wru * PRICES["ddb_wru"] + usage.rru * PRICES["ddb_rru"]
    elif capacity == "provisioned":
        per_wru = PRICES["ddb_wcu_hour"] / 3600 / utilization
        per_rru = PRICES["ddb_rcu_hour"] / 3600 / utilization
        ddb = usage.wru * per_wru + usage.rru * per_rru
    else:
        raise ValueError(f"unknown capacity mode {capacity!r}")
    sqs = usage.sqs_requests * PRICES["sqs_request"]
    lam = (
        usage.lambda_invocations * PRICES["lambda_request"]
        + usage.lambda_gb_seconds * PRICES["lambda_gb_second"]
    )
    return {"dynamodb": ddb, "sqs": sqs, "lambda": lam, "total": ddb + sqs + lam}


def per_million(dollars: float, firings: int) -> float:
    """Dollars per million firings."""
    return dollars / firings * 1_000_000 if firings else math.nan
