"""DynamoDB faults injected through botocore's event hooks on the clients the stores create.

While `Faults.installed()` is active, every DynamoDB client created in the process (pynamodb's
per-model connections, the stats store's boto3 client) gets three handlers:

- `before-send`: moto's own request handler (`botocore_stubber`) is taken off the client and
  called from here, so a request can be refused *before* moto sees it (a **throttle**: HTTP 400
  `ProvisionedThroughputExceededException` or `ThrottlingException`, nothing written; botocore's
  own retry policy then retries it, as it would in AWS) or answered with an error *after* moto
  applied it (an **ambiguous** failure: the write happened, the response was lost — a
  `ReadTimeoutError`). An ambiguous failure is either surfaced to the caller at once
  (`ambiguous`: the SDK's retries were spent, the caller sees the error) or retried by the SDK
  (`ambiguous_retried`: the retry of a conditional write then meets its own first write).
- `needs-retry`: keeps botocore's retry decisions but without its back-off sleeps (the harness
  runs on a virtual clock), and stops a surfaced ambiguous failure from being retried.
- `before-call`: one-shot hooks for deterministic races (`Faults.once`): run another ticker's or
  worker's write at the exact moment a caller has read and is about to write.

Each kind of injection is counted in `Faults.counts`, so a test proves it fired.
Decisions come from a per-thread `random.Random` seeded by what the thread is doing
(`Faults.seed_thread`), so a run is reproducible up to the interleaving of its threads.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import botocore.endpoint
import botocore.session
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError

WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"})
THROTTLE_CODES = ("ProvisionedThroughputExceededException", "ThrottlingException")


@dataclass
class _Once:
    operation: str
    when: Callable[[dict[str, Any]], bool]
    run: Callable[[], None]
    fired: bool = False


class Faults:
    """Throttles and ambiguous failures on DynamoDB requests, plus one-shot race hooks."""

    def __init__(
        self,
        seed: int = 0,
        *,
        p_throttle: float = 0.0,
        p_ambiguous: float = 0.0,
        p_ambiguous_retried: float = 0.0,
        spare_counters: bool = False,
    ) -> None:
        self.seed = seed
        self.p_throttle = p_throttle
        self.p_ambiguous = p_ambiguous
        self.p_ambiguous_retried = p_ambiguous_retried
        self.spare_counters = spare_counters
        self.enabled = False
        self.counts: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._tls = threading.local()
        self._fallback = random.Random(seed)
        self._once: list[_Once] = []
        self._scripted: list[tuple[str, str]] = []

    # -- configuration -------------------------------------------------------------------------

    def seed_thread(self, label: str) -> None:
        """Seed this thread's decisions from what it is about to do (a tick, a delivery)."""
        self._tls.rng = random.Random(f"{self.seed}:{label}")

    def once(self, operation: str, when: Callable[[dict[str, Any]], bool], run: Callable[[], None]) -> _Once:
        """Before the next `operation` request whose parameters satisfy `when`, call `run` (on
        the caller's thread, once). Answers the hook; its `fired` tells whether it ran."""
        hook = _Once(operation, when, run)
        with self._lock:
            self._once.append(hook)
        return hook

    def script(self, operation: str, kind: str) -> None:
        """Inject `kind` (`throttle`, `ambiguous` or `ambiguous_retried`) into the next
        `operation` request, whatever the probabilities say (regression tests)."""
        with self._lock:
            self._scripted.append((operation, kind))

    @contextlib.contextmanager
    def installed(self) -> Iterator[Faults]:
        """Hook every DynamoDB client created inside the block (enable with `enabled`)."""
        original = botocore.session.Session.create_client
        faults = self

        def create_client(session: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
            client = original(session, service_name, *args, **kwargs)
            if service_name == "dynamodb":
                faults._attach(client)
            return client

        # botocore sleeps between retries (real seconds); on the virtual clock nobody waits.
        no_sleep = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("_")})
        no_sleep.sleep = lambda seconds: None
        saved_time = botocore.endpoint.time
        botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
        botocore.endpoint.time = no_sleep  # type: ignore[assignment]
        try:
            yield self
        finally:
            botocore.session.Session.create_client = original  # type: ignore[method-assign]
            botocore.endpoint.time = saved_time

    # -- the handlers --------------------------------------------------------------------------

    def _attach(self, client: Any) -> None:
        from moto.core.models import botocore_stubber

        events = client.meta.events
        events.unregister("before-send", botocore_stubber)

        def send(request: Any, event_name: str, **kwargs: Any) -> Any:
            return self._send(botocore_stubber, request, event_name, **kwargs)

        events.register_first("before-send.dynamodb", send)
        events.register_first("needs-retry.dynamodb", self._needs_retry)
        events.register_first("before-call.dynamodb", self._before_call)

    def _rng(self) -> random.Random:
        rng = getattr(self._tls, "rng", None)
        return rng if rng is not None else self._fallback

    def _count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    def _send(self, moto: Any, request: Any, event_name: str, **kwargs: Any) -> Any:
        operation = event_name.rsplit(".", 1)[-1]
        if not self.enabled:
            return moto(event_name=event_name, request=request, **kwargs)
        with self._lock:
            self.requests[operation] += 1
        if self.spare_counters and _is_counter_write(operation, request.body):
            with self._lock:
                self.counts["spared_counter_write"] += 1
            return moto(event_name=event_name, request=request, **kwargs)
        rng = self._rng()
        with self._lock:
            kind = next((k for op, k in self._scripted if op == operation), None)
            if kind is not None:
                self._scripted.remove((operation, kind))
        roll = rng.random() if kind is None else {"throttle": -1.0}.get(kind, 2.0)
        if roll < self.p_throttle:
            code = THROTTLE_CODES[rng.randrange(2)]
            self._count(f"throttle:{code}")
            body = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "chaos: rate exceeded"}
            return _response(request.url, 400, body)
        response = moto(event_name=event_name, request=request, **kwargs)
        if operation in WRITES and response is not None and response.status_code < 300:
            roll = rng.random() if kind is None else {"ambiguous": -1.0, "ambiguous_retried": 2.0}[kind]
            if roll < self.p_ambiguous:
                self._count("ambiguous")
                self._tls.no_retry = True  # the caller sees this error
                raise ReadTimeoutError(endpoint_url=request.url)
            if roll < self.p_ambiguous + self.p_ambiguous_retried or kind == "ambiguous_retried":
                self._count("ambiguous_retried")
                raise ReadTimeoutError(endpoint_url=request.url)  # the SDK retries it
        return response

    def _needs_retry(self, attempts: int, **kwargs: Any) -> Any:
        if getattr(self._tls, "no_retry", False):
            self._tls.no_retry = False
            return False
        return None  # botocore's own policy decides (its sleep is a no-op here)

    def _before_call(self, model: Any, params: dict[str, Any], **kwargs: Any) -> None:
        with self._lock:
            hooks = [h for h in self._once if not h.fired and h.operation == model.name]
            hook = next((h for h in hooks if h.when(json.loads(params.get("body") or b"{}"))), None)
            if hook is None:
                return
            hook.fired = True
        self._count(f"race:{model.name}")
        hook.run()


def _is_counter_write(operation: str, body: Any) -> bool:
    """An increment of a counter: a `/v1/stats` counter item (`stats#…` on the requests table)
    or a schedule's `counters` map (`ScheduleStore.add_counters`)."""
    if operation != "UpdateItem" or not body:
        return False
    params = json.loads(body)
    key = params.get("Key", {})
    if str(key.get("pk", {}).get("S", "")).startswith("stats#"):
        return True
    names = set(params.get("ExpressionAttributeNames", {}).values())
    return "counters" in names and "doc" not in names


def _response(url: str, status: int, body: dict[str, Any]) -> AWSResponse:
    from moto.core.botocore_stubber import MockRawResponse

    headers = {"content-type": "application/x-amz-json-1.0", "x-amzn-requestid": "chaos"}
    return AWSResponse(url, status, headers, MockRawResponse(json.dumps(body)))  # type: ignore[arg-type]
