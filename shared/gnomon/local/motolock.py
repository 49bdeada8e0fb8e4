"""Serialise moto's DynamoDB request handling, so concurrent callers see DynamoDB's atomicity.

moto's DynamoDB backend has no locking of its own, and under concurrent requests (threads of one
process using `mock_aws()`, or the threaded moto server of the dev stack) it breaks the guarantees
the stores are built on:

- two threads can both pass one condition (two conditional puts of the same key both succeed,
  two `version = :v` updates both win);
- a cancelled TransactWriteItems restores a deep copy of the whole table taken before it began,
  erasing the writes other threads committed meanwhile.

DynamoDB serialises writes per item; `serialise_moto_dynamodb()` serialises all of moto's
DynamoDB requests in the process behind one re-entrant lock, which is stricter and costs little
locally. Without it the contract suite's concurrency tests would test moto, not the adapters.

The patch wraps `moto.dynamodb.responses.DynamoHandler.call_action`, moto's entry point for
every DynamoDB API call in both the in-process mock and the server. Only the moto process needs
it: in the dev stack that is the moto host. moto is imported when the functions are called,
never when this module is imported.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["LOCK", "serialise_moto_dynamodb", "serialised_moto_dynamodb", "undo"]

# Held around every DynamoDB request moto handles in this process. Re-entrant: a handler that
# ends up calling DynamoDB again on the same thread (moto's stream/Lambda plumbing) does not hang.
_LOCK = threading.RLock()
LOCK = _LOCK  # for other patches of moto's DynamoDB that must see requests one at a time
_PATCHING = threading.Lock()  # guards checking-and-swapping the attribute
_MARK = "__gnomon_serialised__"


def _handler() -> Any:
    from moto.dynamodb.responses import DynamoHandler

    return DynamoHandler


def _wrap(call_action: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(call_action)
    def serialised(self: Any) -> Any:
        with _LOCK:
            return call_action(self)

    setattr(serialised, _MARK, True)
    return serialised


def _is_patched(handler: Any) -> bool:
    return bool(getattr(handler.__dict__.get("call_action"), _MARK, False))


def serialise_moto_dynamodb() -> None:
    """Make moto handle DynamoDB requests one at a time in this process (see the module doc).

    Idempotent: the check looks at the attribute itself, so after `undo()` (or a test
    framework restoring the original) a later call patches again, and a second call never wraps
    the wrapper."""
    handler = _handler()
    with _PATCHING:
        if not _is_patched(handler):
            handler.call_action = _wrap(handler.__dict__["call_action"])


def undo() -> None:
    """Restore moto's own `call_action` if `serialise_moto_dynamodb()` patched it; else no-op."""
    handler = _handler()
    with _PATCHING:
        current = handler.__dict__.get("call_action")
        if getattr(current, _MARK, False):
            handler.call_action = current.__wrapped__


@contextlib.contextmanager
def serialised_moto_dynamodb() -> Iterator[None]:
    """`serialise_moto_dynamodb()` for the duration of a `with` block (tests). Restores the
    original on exit only if this block applied the patch, so an enclosing block or a
    process-wide patch made earlier stays in force. Not for blocks that overlap across threads
    without nesting: the one that patched restores when it ends."""
    handler = _handler()
    with _PATCHING:
        patched_here = not _is_patched(handler)
        if patched_here:
            handler.call_action = _wrap(handler.__dict__["call_action"])
    try:
        yield
    finally:
        if patched_here:
            undo()
