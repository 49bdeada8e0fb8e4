"""`delete` for `gnomon.adapters.memory.MemoryRunStore` (purge and the retention sweep).

Wire it as a method of the store:

    def delete(self, run_id: str, *, expected_version: int) -> None:
        delete_run(self, run_id, expected_version=expected_version)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gnomon.adapters.memory import conflict_current
from gnomon.domain.errors import Conflict, NotFound

if TYPE_CHECKING:
    from gnomon.adapters.memory import MemoryRunStore


def delete_run(store: MemoryRunStore, run_id: str, *, expected_version: int) -> None:
    """Delete a run if it is at `expected_version`. `NotFound`; `Conflict(current=doc)`."""
    with store._lock:
        item = store._items.get(run_id)
        if item is None:
            raise NotFound(f"run/{run_id}")
        if item.version != expected_version:
            raise Conflict(
                f"run/{run_id} is at version {item.version}, not {expected_version}",
                current=conflict_current(item.doc, item.version),
            )
        del store._items[run_id]
