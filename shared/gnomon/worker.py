"""The worker SDK for leased tasks (CONTRACT.md §8).

    from gnomon.worker import run

    def render(task, ctx):
        for i, page in enumerate(pages(task["data"])):
            ctx.heartbeat({"page": i})          # progress, readable through the run's `query`
            for signal in ctx.signals():        # signals sent to the run arrive with heartbeats
                ...
        return {"pages": i + 1}                 # → complete with this result

    run("reports", render, concurrency=4, lease_seconds=60)

`run` reserves tasks of a topic (backing off while there are none), calls `handler(task, ctx)`
in a thread per task, keeps each lease alive by extending it on a timer (sending the latest
heartbeat `details`, receiving the run's signals), then completes the task with the handler's
return value or fails it with the exception it raised. Every call after the reservation carries
the lease's `lease_token`, so a worker whose lease was lost (expired and reserved by another
worker) can never complete or fail the task: fencing. `ctx.snooze(seconds)` hands the task back
to be reserved again later without counting an attempt.

Shutdown: on SIGTERM/SIGINT (when `run` is called from the main thread) or when `stop` is set,
no more tasks are reserved; the running handlers get `shutdown_grace` seconds to finish, after
which their leases are released (the task becomes ready for another worker at once, no attempt
counted). A second signal releases at once. Handlers can watch `ctx.stopping`.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, NoReturn

import httpx

from gnomon.client import Client
from gnomon.domain import errors as E

__all__ = ["LeaseLost", "Snooze", "TaskContext", "Worker", "WorkerStats", "run"]

log = logging.getLogger("gnomon.worker")
Handler = Callable[[dict[str, Any], "TaskContext"], Any]
# The lease is gone for good: another worker may hold the task now.
_LOST = (E.WrongOwner, E.LeaseExpired, E.AlreadyDone, E.NotFound)
_MAX_TRACEBACK = 16 * 1024


class Snooze(BaseException):  # noqa: N818 - a control-flow signal, like GeneratorExit
    """Raised by `ctx.snooze(seconds)`: hand the task back, to be reserved again after `seconds`.

    A BaseException so that a handler's `except Exception` does not swallow it."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class LeaseLost(Exception):
    """The task's lease was lost (expired, revoked, or the task reserved by another worker):
    whatever the handler does now will not be recorded."""


@dataclass
class WorkerStats:
    """What a worker did, returned by `run`."""

    reserved: int = 0
    completed: int = 0
    failed: int = 0
    snoozed: int = 0
    released: int = 0
    lost: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)


class TaskContext:
    """What a handler can do besides returning: heartbeat, read signals, snooze, notice shutdown."""

    def __init__(self, task: dict[str, Any], worker_id: str, stopping: threading.Event) -> None:
        self.task = task
        self.worker_id = worker_id
        self.stopping = stopping
        """Set when the worker shuts down: finish soon, or the lease is released under you."""
        self.lease_lost = threading.Event()
        """Set when the lease is gone: stop working, nothing more will be recorded."""
        self.inbox: list[Any] = []
        """Every signal received so far, oldest first."""
        self._signals: queue.Queue[Any] = queue.Queue()
        self._details: Any = task.get("details")
        self._details_dirty = False
        self._lock = threading.Lock()
        self._wake = threading.Event()

    @property
    def task_id(self) -> str:
        return str(self.task["task_id"])

    @property
    def data(self) -> Any:
        return self.task.get("data")

    @property
    def attempt(self) -> int:
        """1 for the first reservation that may end in fail or lease expiry, then 2, …"""
        return int(self.task.get("attempts") or 0) + 1

    @property
    def lease_token(self) -> str | None:
        lease = self.task.get("lease") or {}
        return lease.get("token")

    @property
    def run_id(self) -> str | None:
        return self.task.get("run_id")

    def heartbeat(self, details: Any = None) -> None:
        """Record progress `details` (sent with the next lease extension, which this hastens).
        Raises `LeaseLost` when the lease is gone."""
        if self.lease_lost.is_set():
            raise LeaseLost(f"the lease of task {self.task_id} was lost")
        with self._lock:
            if details is not None:
                self._details = details
            self._details_dirty = True
        self._wake.set()

    def signals(self) -> list[Any]:
        """The signals received since the last call (each `{"name", "payload", …}`)."""
        out = []
        while True:
            try:
                out.append(self._signals.get_nowait())
            except queue.Empty:
                return out

    def wait_signal(self, timeout: float | None = None) -> Any | None:
        """The next signal, waiting up to `timeout` seconds for it (None when none came)."""
        try:
            return self._signals.get(timeout=timeout)
        except queue.Empty:
            return None

    def snooze(self, seconds: float) -> NoReturn:
        """Stop here and hand the task back, ready again in `seconds` (no attempt counted)."""
        raise Snooze(seconds)

    # -- for the lease keeper --

    def _take_details(self) -> tuple[Any, bool]:
        with self._lock:
            dirty, self._details_dirty = self._details_dirty, False
            return self._details, dirty

    def _deliver(self, inbox: Any) -> None:
        """Queue the signals of an extend answer not seen before. The inbox may hold every signal
        so far (then the new ones follow those already seen) or only the undelivered ones."""
        if not isinstance(inbox, list) or not inbox:
            return
        seen = len(self.inbox)
        new = inbox[seen:] if inbox[:seen] == self.inbox else inbox
        for s in new:
            self.inbox.append(s)
            self._signals.put(s)


class _Lease:
    """One held task: its context and the state shared by the handler and the keeper thread."""

    def __init__(self, task: dict[str, Any], ctx: TaskContext, lease_seconds: int) -> None:
        self.task = task
        self.ctx = ctx
        self.done = threading.Event()  # the handler returned: stop extending
        self.expires = time.monotonic() + lease_seconds  # by our clock, conservatively
        self.lock = threading.Lock()
        self.closed = False  # completed, failed, snoozed or released: only one of them happens
        self.keeper: threading.Thread | None = None

    def close(self) -> bool:
        """Claim the right to end the lease; False when something else already did."""
        with self.lock:
            if self.closed:
                return False
            self.closed = True
            return True


class Worker:
    """A pool of handler threads fed with reserved tasks of one topic (see the module docstring)."""

    def __init__(
        self,
        topic: str,
        handler: Handler,
        *,
        client: Client | None = None,
        worker_id: str | None = None,
        concurrency: int = 1,
        lease_seconds: int = 60,
        heartbeat_every: float | None = None,
        stop: threading.Event | None = None,
        shutdown_grace: float = 30.0,
        idle_backoff: tuple[float, float] = (0.25, 2.0),
        install_signal_handlers: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be ≥ 1")
        if not 1 <= lease_seconds <= 43_200:
            raise ValueError("lease_seconds must be within 1–43 200")
        self.topic = topic
        self.handler = handler
        self._own_client = client is None
        self.client = client or Client()
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.heartbeat_every = heartbeat_every if heartbeat_every is not None else lease_seconds / 3
        if self.heartbeat_every <= 0:
            raise ValueError("heartbeat_every must be > 0")
        self.stopping = stop if stop is not None else threading.Event()
        self.shutdown_grace = shutdown_grace
        self.idle_backoff = idle_backoff
        self.install_signal_handlers = install_signal_handlers
        self.stats = WorkerStats()
        self._force = threading.Event()  # a second signal: release at once
        self._held: dict[str, _Lease] = {}
        self._held_lock = threading.Condition()

    def stop(self) -> None:
        """Ask the worker to shut down (as SIGTERM does)."""
        self.stopping.set()

    # -- the reserve loop ------------------------------------------------------------------------

    def run(self) -> WorkerStats:
        """Reserve and handle tasks until stopped; answer what was done."""
        restore = self._install_signals()
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=f"gnomon-{self.topic}")
        slots = threading.Semaphore(self.concurrency)
        idle = self.idle_backoff[0]
        log.info("worker %s serving topic %s", self.worker_id, self.topic)
        try:
            while not self.stopping.is_set():
                if not slots.acquire(timeout=0.1):
                    continue
                try:
                    task = self.client.reserve(self.topic, self.worker_id, self.lease_seconds)
                except E.NotFound:
                    slots.release()
                    raise  # no tasks API at this URL: retrying will not help
                except (E.GnomonError, httpx.HTTPError) as exc:
                    slots.release()
                    log.warning("reserve on %s failed: %s", self.topic, exc)
                    self.stopping.wait(idle)
                    idle = min(idle * 2, self.idle_backoff[1])
                    continue
                if task is None:
                    slots.release()
                    self.stopping.wait(idle)
                    idle = min(idle * 2, self.idle_backoff[1])
                    continue
                idle = self.idle_backoff[0]
                self.stats.add("reserved")
                lease = self._hold(task)
                future = pool.submit(self._work, lease)
                future.add_done_callback(lambda _f: slots.release())
        finally:
            self._shut_down()
            pool.shutdown(wait=False, cancel_futures=True)
            restore()
            if self._own_client:
                self.client.close()
        log.info("worker %s stopped: %s", self.worker_id, self.stats)
        return self.stats

    def _hold(self, task: dict[str, Any]) -> _Lease:
        ctx = TaskContext(task, self.worker_id, self.stopping)
        ctx._deliver(task.get("inbox"))
        lease = _Lease(task, ctx, self.lease_seconds)
        with self._held_lock:
            self._held[ctx.task_id] = lease
        lease.keeper = threading.Thread(
            target=self._keep, args=(lease,), name=f"gnomon-lease-{ctx.task_id}", daemon=True
        )
        lease.keeper.start()
        return lease

    def _shut_down(self) -> None:
        """Give running handlers `shutdown_grace` seconds, then release what is still held."""
        self.stopping.set()
        deadline = time.monotonic() + self.shutdown_grace
        with self._held_lock:
            while self._held and not self._force.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._held_lock.wait(min(remaining, 0.1))
            still = list(self._held.values())
        for lease in still:
            if lease.close():
                lease.done.set()
                lease.ctx.lease_lost.set()  # the handler's next heartbeat raises LeaseLost
                lease.ctx._wake.set()
                try:
                    self.client.release_task(
                        lease.ctx.task_id, self.worker_id, lease_token=lease.ctx.lease_token
                    )
                    self.stats.add("released")
                    log.info("released task %s at shutdown", lease.ctx.task_id)
                except (E.GnomonError, httpx.HTTPError) as exc:
                    log.warning(
                        "could not release task %s: %s (its lease will expire)", lease.ctx.task_id, exc
                    )
            self._forget(lease)

    def _forget(self, lease: _Lease) -> None:
        with self._held_lock:
            self._held.pop(lease.ctx.task_id, None)
            self._held_lock.notify_all()

    # -- one task --------------------------------------------------------------------------------

    def _work(self, lease: _Lease) -> None:
        ctx = lease.ctx
        try:
            outcome, value = self._call(ctx)
        finally:
            lease.done.set()
            ctx._wake.set()
            if lease.keeper is not None:
                lease.keeper.join()
        try:
            if not lease.close():
                return  # released at shutdown while the handler ran
            if ctx.lease_lost.is_set():
                self.stats.add("lost")
                log.warning("task %s: lease lost, its %s is not recorded", ctx.task_id, outcome)
                return
            self._finish(ctx, outcome, value)
        finally:
            self._forget(lease)

    def _call(self, ctx: TaskContext) -> tuple[str, Any]:
        try:
            result = self.handler(ctx.task, ctx)
        except Snooze as s:
            return "snooze", s.seconds
        except LeaseLost:
            return "lost", None
        except BaseException as exc:  # SystemExit in a handler thread fails the task, too
            log.info("task %s failed: %r", ctx.task_id, exc)
            return "fail", error_document(exc)
        try:
            json.dumps(result)
        except (TypeError, ValueError) as exc:
            return "fail", error_document(TypeError(f"the handler's result is not JSON: {exc}"))
        return "complete", result

    def _finish(self, ctx: TaskContext, outcome: str, value: Any) -> None:
        token = ctx.lease_token
        try:
            if outcome == "complete":
                self.client.complete_task(ctx.task_id, self.worker_id, value, lease_token=token)
                self.stats.add("completed")
            elif outcome == "fail":
                self.client.fail_task(ctx.task_id, self.worker_id, value, lease_token=token)
                self.stats.add("failed")
            elif outcome == "snooze":
                self.client.snooze_task(ctx.task_id, self.worker_id, value, lease_token=token)
                self.stats.add("snoozed")
            else:
                self.stats.add("lost")
        except _LOST as exc:
            self.stats.add("lost")
            log.warning("task %s: %s not recorded: %s", ctx.task_id, outcome, exc)
        except (E.GnomonError, httpx.HTTPError) as exc:
            # The lease runs out and the task is handed out again: at-least-once, never lost.
            self.stats.add("lost")
            log.error("task %s: could not %s it: %s", ctx.task_id, outcome, exc)

    # -- the lease keeper ------------------------------------------------------------------------

    def _keep(self, lease: _Lease) -> None:
        """Extend the lease every `heartbeat_every` seconds — sooner after `ctx.heartbeat`, but
        at most once a second then — until the handler returns or the lease is lost."""
        ctx = lease.ctx
        min_gap = min(1.0, self.heartbeat_every)
        last = time.monotonic()
        while not lease.done.is_set():
            now = time.monotonic()
            due = last + self.heartbeat_every
            with ctx._lock:
                hurry = ctx._details_dirty
            if hurry:
                due = min(due, last + min_gap)
            if now < due:
                ctx._wake.wait(due - now)
                ctx._wake.clear()
                continue
            details, _ = ctx._take_details()
            last = time.monotonic()
            try:
                answer = self.client.extend_lease(
                    ctx.task_id, self.worker_id, self.lease_seconds, details, lease_token=ctx.lease_token
                )
            except _LOST as exc:
                if not lease.done.is_set():
                    log.warning("task %s: lease lost: %s", ctx.task_id, exc)
                    ctx.lease_lost.set()
                return
            except (E.GnomonError, httpx.HTTPError) as exc:
                if time.monotonic() >= lease.expires:
                    log.warning("task %s: lease expired while extending failed: %s", ctx.task_id, exc)
                    ctx.lease_lost.set()
                    return
                log.warning("task %s: extending the lease failed (will retry): %s", ctx.task_id, exc)
                last -= self.heartbeat_every - min_gap  # try again in min_gap
                continue
            lease.expires = last + self.lease_seconds
            if isinstance(answer, dict):
                ctx._deliver(answer.get("inbox"))

    # -- signals ---------------------------------------------------------------------------------

    def _install_signals(self) -> Callable[[], None]:
        if not self.install_signal_handlers or threading.current_thread() is not threading.main_thread():
            return lambda: None

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if self.stopping.is_set():
                log.warning("second %s: releasing held tasks now", signal.Signals(signum).name)
                self._force.set()
                with self._held_lock:
                    self._held_lock.notify_all()
            else:
                log.info("%s: finishing running tasks, reserving no more", signal.Signals(signum).name)
                self.stopping.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore


def error_document(exc: BaseException) -> dict[str, Any]:
    """A failure as the API records errors: `{"code", "message", "details"}`; the code is the
    exception's class name (what a definition's `non_retryable_errors` can list)."""
    tb = "".join(traceback.format_exception(exc))
    return {
        "code": type(exc).__name__,
        "message": str(exc)[:4096],
        "details": {
            "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "traceback": tb[-_MAX_TRACEBACK:],
        },
    }


def run(
    topic: str,
    handler: Handler,
    *,
    client: Client | None = None,
    worker_id: str | None = None,
    concurrency: int = 1,
    lease_seconds: int = 60,
    heartbeat_every: float | None = None,
    stop: threading.Event | None = None,
    shutdown_grace: float = 30.0,
    idle_backoff: tuple[float, float] = (0.25, 2.0),
    install_signal_handlers: bool = True,
) -> WorkerStats:
    """Serve `topic` with `handler(task, ctx)` until SIGTERM/SIGINT or `stop` is set (see the
    module docstring); answer what was done."""
    return Worker(
        topic,
        handler,
        client=client,
        worker_id=worker_id,
        concurrency=concurrency,
        lease_seconds=lease_seconds,
        heartbeat_every=heartbeat_every,
        stop=stop,
        shutdown_grace=shutdown_grace,
        idle_backoff=idle_backoff,
        install_signal_handlers=install_signal_handlers,
    ).run()
