"""`request_id` idempotency for mutating requests (CONTRACT.md §3).

The first call claims the id (a conditional write), runs, and stores its answer; a replay within
24 h answers that stored body with 200 and changes nothing; the same id with another body → 409.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from gnomon.domain.errors import Conflict
from gnomon.ports import RequestLog

TTL = timedelta(hours=24)
_WAIT_SECONDS = 5.0


def fingerprint(body: Any) -> str:
    """A stable hash of a request body (key order does not matter)."""
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()


def run_once(
    log: RequestLog,
    scope: str,
    request_id: str | None,
    body: Any,
    now: datetime,
    action: Callable[[], tuple[int, Any]],
) -> tuple[int, Any]:
    """Run `action` once per (scope, request_id); answer (status, body). A replay answers 200."""
    if request_id is None:
        return action()
    key = f"{scope}#{request_id}"
    fp = fingerprint(body)
    deadline = time.monotonic() + _WAIT_SECONDS
    while True:
        existing = log.claim(key, fp, now=now, expires_at=now + TTL)
        if existing is None:
            break
        if existing.fingerprint != fp:
            raise Conflict("request_id was already used with a different body", current=None)
        if existing.status is not None:
            return 200, existing.body
        if time.monotonic() > deadline:
            raise Conflict("a request with this request_id is still in progress", current=None)
        time.sleep(0.05)  # the first call is still running: wait for its answer
    try:
        status, answer = action()
    except BaseException:
        log.release(key)  # a failed first call leaves the id free for a retry
        raise
    log.complete(key, status, answer)
    return status, answer
