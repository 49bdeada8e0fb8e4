"""Take the O(table) work out of moto's DynamoDB Query in the dev stack's moto host.

A profile of the console's pages on the local stack (1 000 schedules, 10 000 runs: bench/README.md
"Console page loads") spent nearly all of each page's time in moto's `Table.query`: every Query,
even one on a single partition, starts from `Table.all_items()`, which lists *every* item of the
table and sorts them all by key (DynamoType comparisons, each casting its value) — ~150 ms per
Query at 11 000 runs on a quiet machine, whatever the partition or the `Limit`. The query then
keeps the partition's items (or the index's) and sorts those again itself. DynamoDB reads a
partition, or an index key range, in order and costs what it returns.

`speed_up_moto_dynamodb_query()` patches moto 5.x in this process so that, while `Table.query`
runs, `all_items()` answers
- for a Query on the table itself: the items of the queried partition only (the query filters
  every item on that partition key anyway);
- for a Query on an index: the items whose attributes equal the queried index partition key,
  unsorted (moto checks them again, then sorts what matches by the index's keys and then the
  table's, a total order: the prior order never decides anything);

and `sorted_items` (that sort) compares each item's cast key values instead of DynamoType
objects that cast both sides on every comparison.

Then what remains per item is moto's response serializer, which walks botocore's output model
for every attribute value: ten members of `AttributeValue`, each through a value picker, ~1 ms
per run item. `speed_up_moto_dynamodb_responses()` writes a DynamoDB `AttributeValue` (a dict
of one type and its value) as its JSON directly — strings and numbers as they are, binaries in
base64, sets, lists and maps recursively — and leaves anything else to moto.

A Query on an index still walked every item of the table to find the queried index partition
(~25 ms per Query at 11 000 runs, four per list across schedules: the console's overview spent
most of its time there). The items of each index partition asked for are therefore kept, per
table and index, until the next write: the first partition asked for after a write is gathered
alone (the walk moto's own Query makes), a second one of the same index gathers them all in one
walk (a list across shards). Every DynamoDB request that is not a read (`_READS`) drops them
(`call_action`, under `gnomon.local.motolock`'s lock, so no Query sees a partition older than a
write that came before it). A dev stack that writes all the time pays no more than before; one
that is read more than written (the console) walks the table once per write, not per Query.

What DynamoDB answers is unchanged (same items, same order, same `LastEvaluatedKey`); Scan and
everything else still see the sorted list. Only the moto host calls it; moto is imported when
the function is called, never when this module is imported.
"""

from __future__ import annotations

import functools
import inspect
import threading
from typing import Any

__all__ = ["speed_up_moto_dynamodb_query", "speed_up_moto_dynamodb_responses", "undo"]

_MARK = "__gnomon_fast_query__"
_local = threading.local()

# DynamoDB actions that never write: every other request drops the gathered partitions.
_READS = frozenset(
    {
        "BatchGetItem",
        "DescribeContinuousBackups",
        "DescribeEndpoints",
        "DescribeLimits",
        "DescribeTable",
        "DescribeTimeToLive",
        "GetItem",
        "ListTables",
        "ListTagsOfResource",
        "Query",
        "Scan",
        "TransactGetItems",
    }
)


class _Partitions:
    """Per (table, index), the items of the index partitions gathered since the last write
    (`index_partition`); `wrote()` drops them all."""

    def __init__(self) -> None:
        self.maps: dict[tuple[int, str], dict[tuple[Any, ...], list[Any]]] = {}
        self.whole: set[tuple[int, str]] = set()  # every partition of these is gathered

    def wrote(self) -> None:
        self.maps.clear()
        self.whole.clear()

    def index_partition(
        self, table: Any, index: str, names: tuple[str, ...], key: tuple[Any, ...]
    ) -> list[Any]:
        """The first partition asked since a write is gathered alone (one walk, as moto's own
        Query makes, so a dev stack writing all the time pays nothing more); a second one of the
        same index — a list across its shards — gathers every partition in the same walk."""
        which = (id(table), index)
        groups = self.maps.setdefault(which, {})
        if key in groups or which in self.whole:
            return groups.get(key, [])
        if not groups:
            groups[key] = [item for item in _every_item(table) if _key_of(item, names) == key]
            return groups[key]
        groups.clear()
        for item in _every_item(table):
            if (found := _key_of(item, names)) is not None:
                groups.setdefault(found, []).append(item)
        self.whole.add(which)
        return groups.get(key, [])


def _key_of(item: Any, names: tuple[str, ...]) -> tuple[Any, ...] | None:
    values = [item.attrs.get(n) for n in names]
    if any(v is None for v in values):
        return None
    return tuple((v.type, v.value) for v in values)


_partitions = _Partitions()


def _every_item(table: Any) -> list[Any]:
    if table.range_key_attr:
        return [item for partition in table.items.values() for item in partition.values()]
    return list(table.items.values())


def speed_up_moto_dynamodb_query() -> bool:
    """Patch moto's DynamoDB `Table.query` (idempotent); answers whether it was patched."""
    from moto.dynamodb.models.table import Table

    table_cls: Any = Table
    if getattr(table_cls.query, _MARK, None):
        return False
    full_query = table_cls.query
    full_all_items = table_cls.all_items
    signature = inspect.signature(full_query)

    @functools.wraps(full_query)
    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        args_ = signature.bind(self, hash_key, *args, **kwargs).arguments
        scope = _scope(self, args_)
        previous = getattr(_local, "scope", None)
        _local.scope = (self, scope)
        try:
            return full_query(self, hash_key, *args, **kwargs)
        finally:
            _local.scope = previous

    @functools.wraps(full_all_items)
    def all_items(self: Any) -> list[Any]:
        current = getattr(_local, "scope", None)
        if current is None or current[0] is not self or current[1] is None:
            return list(full_all_items(self))
        scope: _Scope = current[1]
        if scope.partition is not None:
            items = list(self.items.get(scope.partition, {}).values())
        elif (
            scope.index is not None
            and scope.equalities
            and {n for n, _, _ in scope.equalities} == set(scope.index_hashes)
        ):
            given = {n: (t, v) for n, t, v in scope.equalities}
            key = tuple(given[n] for n in scope.index_hashes)
            items = _partitions.index_partition(self, scope.index, scope.index_hashes, key)
        else:
            items = _every_item(self)
        return [item for item in items if scope.may_match(item)]

    @functools.wraps(table_cls.sorted_items)
    def sorted_items(self: Any, hash_key_attrs: Any, range_key_attrs: Any, items: list[Any]) -> list[Any]:
        # moto sorts by tuples of DynamoType, whose comparisons cast both values every time;
        # the cast values once per item give the same order (a key attribute has one type).
        names = self._generate_attr_to_sort_by(hash_key_attrs, range_key_attrs)
        items.sort(key=lambda x: tuple(x.attrs[name].cast_value for name in names))
        return items

    from moto.dynamodb.responses import DynamoHandler

    from gnomon.local.motolock import LOCK

    handler_cls: Any = DynamoHandler
    full_call_action = handler_cls.__dict__["call_action"]

    @functools.wraps(full_call_action, updated=())  # not motolock's mark: it wraps its own
    def call_action(self: Any) -> Any:
        try:
            action = self._get_action()
        except Exception:  # moto answers what it cannot parse; count it as a write
            action = None
        with LOCK:
            if action in _READS:
                return full_call_action(self)
            try:
                return full_call_action(self)
            finally:
                _partitions.wrote()  # before the lock is let go: no Query sees the old map

    setattr(query, _MARK, (full_query, full_all_items, table_cls.sorted_items, full_call_action))
    table_cls.query = query
    table_cls.all_items = all_items
    table_cls.sorted_items = sorted_items
    handler_cls.call_action = call_action
    _partitions.wrote()
    return True


def speed_up_moto_dynamodb_responses() -> bool:
    """Patch moto's JSON response serializer for DynamoDB attribute values (idempotent);
    answers whether it was patched."""
    from moto.core.serialize import BaseJSONSerializer

    cls: Any = BaseJSONSerializer
    if getattr(cls._serialize, _MARK, None):
        return False
    full = cls._serialize

    @functools.wraps(full)
    def _serialize(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if shape.name == "AttributeValue" and isinstance(value, dict):
            fast = _attribute_value(self._base64, value)
            if fast is not None:
                serialized[self.get_serialized_name(shape, key)] = fast
                return
        full(self, serialized, value, shape, key)

    setattr(_serialize, _MARK, full)
    cls._serialize = _serialize
    return True


def _attribute_value(b64: Any, value: dict[str, Any]) -> dict[str, Any] | None:
    """An AttributeValue as moto's serializer writes it; None = not one this knows."""
    out: dict[str, Any] = {}
    for type_, v in value.items():
        if v is None:
            continue
        if type_ in ("S", "N"):
            if not isinstance(v, str):
                return None
            out[type_] = v
        elif type_ == "B":
            out[type_] = b64(v)
        elif type_ in ("SS", "NS"):
            if not all(isinstance(i, str) for i in v):
                return None
            out[type_] = list(v)
        elif type_ == "BS":
            out[type_] = [b64(i) for i in v]
        elif type_ in ("M", "L"):
            items = v.items() if type_ == "M" else enumerate(v)
            inner = {}
            for k, i in items:
                if not isinstance(i, dict) or (converted := _attribute_value(b64, i)) is None:
                    return None
                inner[k] = converted
            out[type_] = inner if type_ == "M" else list(inner.values())
        elif type_ in ("NULL", "BOOL") and isinstance(v, bool):
            out[type_] = v
        else:
            return None
    return out


def undo() -> None:
    """Restore moto's own methods where this module patched them (tests)."""
    from moto.core.serialize import BaseJSONSerializer
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoHandler

    table_cls: Any = Table
    originals = getattr(table_cls.query, _MARK, None)
    if originals:
        table_cls.query, table_cls.all_items, table_cls.sorted_items, call_action = originals
        handler_cls: Any = DynamoHandler
        handler_cls.call_action = call_action
        _partitions.wrote()
    serializer: Any = BaseJSONSerializer
    full = getattr(serializer._serialize, _MARK, None)
    if full:
        serializer._serialize = full


class _Scope:
    """What a Query can match, to drop the items that cannot before moto looks at them: the
    table's partition (a Query on the table), the index's partition-key equalities and the sort
    key condition. Only strings (and binaries, for equality) are judged here — their raw values
    compare as moto's cast values do; anything else is left to moto, which checks every item
    it is given again."""

    def __init__(
        self,
        partition: Any,
        equalities: list[tuple[str, str, Any]],
        sort: tuple[str, Any, list[str]] | None,
        index: str | None = None,
        index_hashes: tuple[str, ...] = (),
    ) -> None:
        self.partition = partition
        self.equalities = equalities
        self.sort = sort
        self.index = index  # a Query on this index, whose partition key is `index_hashes`
        self.index_hashes = index_hashes

    def may_match(self, item: Any) -> bool:
        for name, type_, raw in self.equalities:
            value = item.attrs.get(name)
            if value is None or value.type != type_ or value.value != raw:
                return False
        if self.sort is not None:
            name, compare, raws = self.sort
            value = item.attrs.get(name)
            if value is not None and value.type == "S" and not compare(value.value, *raws):
                return False
        return True


def _scope(table: Any, args: dict[str, Any]) -> _Scope | None:
    from moto.dynamodb.comparisons import get_comparison_func

    index_name = args.get("index_name")
    hash_key = args.get("hash_key")
    if not index_name and (hash_key is None or not table.range_key_attr):
        return None  # a table without a sort key: as moto does it
    pairs: list[tuple[str, Any]] = []
    sort_name: str | None = table.range_key_attr
    hashes: list[str] = []
    if index_name:
        try:
            schema = table.get_index(index_name).schema
        except Exception:  # moto answers the unknown index itself
            return _Scope(None, [], None)
        hashes = [k["AttributeName"] for k in schema if k["KeyType"] == "HASH"]
        ranges = [k["AttributeName"] for k in schema if k["KeyType"] == "RANGE"]
        sort_name = ranges[0] if len(ranges) == 1 else None
        if args.get("hash_key_conditions"):
            pairs = [(str(name), value) for name, value in args["hash_key_conditions"]]
        elif hash_key is not None and len(hashes) == 1:
            pairs = [(hashes[0], hash_key)]
    equalities = [(n, v.type, v.value) for n, v in pairs if getattr(v, "type", None) in ("S", "B")]
    sort: tuple[str, Any, list[str]] | None = None
    op, values = args.get("range_comparison"), args.get("range_objs") or []
    conditions = args.get("range_key_conditions") or []
    if len(conditions) == 1:
        sort_name, op, values = conditions[0]
    elif conditions:
        op = None  # several sort key attributes: left to moto
    compare = get_comparison_func(op) if op else None
    if sort_name and compare is not None and values and all(getattr(v, "type", None) == "S" for v in values):
        sort = (str(sort_name), compare, [v.value for v in values])
    if index_name:
        return _Scope(None, equalities, sort, str(index_name), tuple(hashes))
    return _Scope(hash_key, equalities, sort)
