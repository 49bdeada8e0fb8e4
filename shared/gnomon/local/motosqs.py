"""Take the O(queue depth) work out of moto's SQS hot paths in the dev stack's moto host.

A py-spy profile of the moto host at 20 firings/s (bench/README.md) spent most of its busy time
in `Queue.attributes`: moto computes *every* queue attribute — including three counts that walk
every message and call `unix_time()` for each — when `SendMessage` only wants
`ContentBasedDeduplication` and `ReceiveMessage` only wants `MessageRetentionPeriod` (once per
message it returns). With the horizon's firings waiting in the queue, each send and receive cost
O(depth), and the moto process saturated a core.

`speed_up_moto_sqs()` patches moto 5.x in this process so that:
- `SQSBackend.send_message` sees queue attributes without the three message counts (none of
  which it reads);
- `SQSBackend.is_message_valid_based_on_retention_period` reads the queue's retention period
  directly;
- `Queue.wait_for_messages` (a long poll waiting for a receivable message) also wakes when a
  delayed or in-flight message becomes receivable: moto only wakes on a *new* message, so a
  firing whose delay ran out was picked up by the next poll only — up to a whole wait (1 s)
  late —, where real SQS returns it at once.

What SQS answers is unchanged (GetQueueAttributes still computes everything). Only the moto host
calls it; moto is imported when the function is called, never when this module is imported.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

__all__ = ["speed_up_moto_sqs"]

_COUNTS = frozenset(
    {
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesDelayed",
        "ApproximateNumberOfMessagesNotVisible",
    }
)
_MARK = "__gnomon_fast__"
_local = threading.local()


def speed_up_moto_sqs() -> bool:
    """Patch moto's SQS backend (idempotent); answers whether it was patched."""
    from moto.core.utils import camelcase_to_underscores, unix_time
    from moto.sqs import models

    queue_cls: Any = models.Queue
    backend_cls: Any = models.SQSBackend
    if getattr(backend_cls.send_message, _MARK, False):
        return False
    full = queue_cls.attributes.fget

    def attributes(self: Any) -> dict[str, Any]:
        if not getattr(_local, "cheap", False):
            return dict(full(self))
        result: dict[str, Any] = {}
        names = list(self.BASE_ATTRIBUTES)
        if self.fifo_queue:
            names += self.FIFO_ATTRIBUTES
        if self.kms_master_key_id:
            names += self.KMS_ATTRIBUTES
        for name in names:
            if name not in _COUNTS:
                result[name] = getattr(self, camelcase_to_underscores(name))
        if self.policy:
            result["Policy"] = self.policy
        for key, value in result.items():
            if isinstance(value, bool):
                result[key] = str(value).lower()
        return result

    send = backend_cls.send_message

    @functools.wraps(send)
    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        _local.cheap = True
        try:
            return send(self, *args, **kwargs)
        finally:
            _local.cheap = False

    def retention_ok(self: Any, queue_name: str, message: Any) -> bool:
        period = int(self.get_queue(queue_name).message_retention_period)
        return bool(period + message.sent_timestamp / 1000 > unix_time())

    def wait_for_messages(self: Any, timeout: int) -> None:
        deadline = unix_time() + timeout
        with self._messages_lock:
            while not self.messages:
                now = unix_time()
                if now >= deadline:
                    return
                # the first instant a delayed or in-flight message becomes receivable (ms)
                soonest = min(
                    (
                        max(float(m.delayed_until or 0), float(m.visible_at or 0)) / 1000
                        for m in self._messages
                    ),
                    default=deadline,
                )
                self._messages_lock.wait(min(deadline, max(soonest, now + 0.002)) - now)

    setattr(send_message, _MARK, True)
    queue_cls.wait_for_messages = wait_for_messages
    queue_cls.attributes = property(attributes)
    backend_cls.send_message = send_message
    backend_cls.is_message_valid_based_on_retention_period = retention_ok
    return True
