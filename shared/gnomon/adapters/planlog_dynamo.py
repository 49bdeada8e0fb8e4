"""`PlanLog` on DynamoDB: plan-log items in the runs table (`GNOMON_RUNS_TABLE`).

Item layout and key ranges: `gnomon.adapters.planlog`. The items live beside the runs under
partitions "plan#<day>" that no run, run pointer ("s#", "d#", "id#") can take, and carry none
of the runs' index attributes (`time_shard`/`time_key`, `active_shard`/`active_key`), so they
enter no index and cost no index writes; `expires_at` is the table's TTL attribute already.
Why not a table of their own: a table adds IAM, alarms and backups for items that only live an
hour, and the runs table is the one the ticker and the API already write and read.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from datetime import datetime

from pynamodb.attributes import BinaryAttribute, NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.models import Model

from gnomon.adapters.dynamo import RUNS_TABLE_ENV, _bind, _table
from gnomon.adapters.memory import epoch_seconds
from gnomon.adapters.planlog import chunks, key_range, select
from gnomon.ports import PlannedFiring, PlanWindow


class _PlanItem(Model):
    """A plan-log chunk: pk "plan#<day>", sk "<sortable first scheduled time>#<id>"."""

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    last = UnicodeAttribute()  # sortable last scheduled time
    n = NumberAttribute()  # firings in the chunk
    planz = BinaryAttribute(legacy_encoding=False)
    expires_at = TTLAttribute()


class DynamoPlanLog:
    """`PlanLog` on the runs table; see the module docstring."""

    def __init__(self, table_name: str | None = None) -> None:
        self.table_name = _table(table_name, RUNS_TABLE_ENV)
        self._item = _bind(_PlanItem, self.table_name)

    def record(self, firings: builtins.list[PlannedFiring], *, now: datetime) -> None:
        made = chunks(firings)
        if not made:
            return
        m = self._item
        with m.batch_write() as batch:  # 25 a request; unprocessed items are retried
            for c in made:
                batch.save(m(c.pk, c.sk, last=c.last, n=c.count, planz=c.payload, expires_at=c.expires_at))

    def window(self, start: datetime, end: datetime, *, now: datetime, limit: int) -> PlanWindow:
        keys = key_range(start, end)
        return select(
            self._payloads(keys.partitions, keys.low, keys.high, keys.start_key, now), start, end, limit
        )

    def _payloads(
        self, partitions: builtins.list[str], low: str, high: str, start_key: str, now: datetime
    ) -> Iterator[tuple[int, bytes]]:
        m = self._item
        now_s = epoch_seconds(now)
        for pk in partitions:
            # Consistent: a firing planned by a create is listed by the next request already.
            for item in m.query(
                pk,
                m.sk.between(low, high),
                filter_condition=m.last >= start_key,
                consistent_read=True,
            ):
                if epoch_seconds(item.expires_at) >= now_s:  # TTL deletes only eventually
                    yield int(item.n), bytes(item.planz)
