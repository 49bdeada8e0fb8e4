"""Lateness: how late the real local stack delivers firings, at a given aggregate rate.

For each load a fresh `gnomon dev --port 0 --tick-seconds 1` is started as a subprocess (so one
load's leftovers — up to a horizon's worth of enqueued firings — never run during the next), and
a local `ThreadingHTTPServer` on 127.0.0.1:0 records the receive time and body of every firing.
A definition targets it and N interval schedules (every 1 s or 2 s, the 2 s ones alternating
offsets 0 and 1 so both seconds carry the same load; overlap `allow_all`, so a backlog never
turns into skipped runs) give the aggregate rate R firings/s. They share a `start_at` a little
after the last create, so creating them does not compete with firing them.

Measured window: from `--warmup` s after `start_at`, for `--seconds` s.
- expected: the schedules' nominal times inside the window;
- received: expected firings delivered within `--grace` s after the window ends;
- duplicates: deliveries of a run_id already delivered (clean-up included);
- misses: expected nominal times not delivered within the grace (the JSON tells how many came
  later, and what gnomon recorded for some of them);
- lateness = receive time − `scheduled_time` of the body (first delivery), p50/p95/p99/max ms.
At the end every schedule is paused, then deleted, and the stack stopped with SIGTERM.

CPU: the stack (API, ticker, worker pollers: one process), its moto host (a child process), this
process (the receiver) and everything else share the machine's cores; the CPU columns say how
busy each was during the window (100 % = one core), so contention shows beside the figures.

    python -m bench lateness                               # short form (about 6 minutes)
    python -m bench lateness --long                        # 10/20/50/100 firings/s, 60 s each
    python -m bench lateness --rates 10,20,50 --seconds 60
    python -m bench lateness --rates 10,20,50 --horizon-seconds 5   # what-if: a shorter horizon
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench import REPO, line_buffered, machine, percentile, say, table, write_result

NAME = "lateness"
READY_PREFIX = "gnomon dev ready on "
ENDPOINT_PREFIX = "gnomon dev aws endpoint "
DEFINITION = "bench-lateness"
SHORT_RATES = (10, 20, 50)
LONG_RATES = (10, 20, 50, 100)
SHORT_SECONDS = 30.0
LONG_SECONDS = 60.0
MIXED_SCHEDULES = 20
MIXED_SECONDS = 60.0
CREATE_BUDGET = 0.25  # s per schedule create on an idle stack (measured ≈ 0.1–0.2 s here)
START_MARGIN = 3.0
CREATE_LIMIT = 30.0  # s: an overloaded stack creates schedules ever slower (see README)
CLEANUP_LIMIT = 20.0  # s of pausing and deleting before the stack is stopped anyway
LOOKUPS = 5  # missed firings looked up in gnomon's runs
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[,.]\d+\s*")
_LOG_PROBLEM = re.compile(
    r"Traceback|\bERROR\b|\bCRITICAL\b|\bWARNING\b|\"level\":\s*\"(ERROR|WARNING|CRITICAL)\""
)


# --- loads ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """N interval schedules, each (every_seconds, offset_seconds), measured for `seconds`."""

    name: str
    schedules: tuple[tuple[int, int], ...]
    seconds: float

    @property
    def rate(self) -> float:
        return sum(1.0 / every for every, _ in self.schedules)


def _pattern(i: int, twos: int) -> tuple[int, int]:
    """Schedule i of the mix: every third at 1 s, the others at 2 s with alternating offsets."""
    return (1, 0) if i % 3 == 0 else (2, twos % 2)


def mixed(n: int, seconds: float) -> Load:
    """`n` schedules at 1–2 s (a third at 1 s): 20 give 13.5 firings/s."""
    out: list[tuple[int, int]] = []
    twos = 0
    for i in range(n):
        every, offset = _pattern(i, twos)
        twos += every == 2
        out.append((every, offset))
    return Load(f"mixed-{n}", tuple(out), seconds)


def at_rate(rate: float, seconds: float) -> Load:
    """The fewest schedules of the same mix whose aggregate rate reaches `rate` firings/s
    (a multiple of 2 exactly: 1.5 schedules per firing/s)."""
    out: list[tuple[int, int]] = []
    twos = 0
    total = 0.0
    while total < rate - 1e-9:
        every, offset = _pattern(len(out), twos)
        twos += every == 2
        out.append((every, offset))
        total += 1.0 / every
    return Load(f"rate-{rate:g}", tuple(out), seconds)


# --- the receiver ---------------------------------------------------------------------------------


@dataclass
class Delivery:
    at: float  # receive time (epoch seconds)
    run_id: str
    schedule_id: str | None
    nominal: float
    scheduled: float
    attempt: int


class Receiver:
    """A local HTTP target: records each firing's receive time and body fields; answers 200."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.bad: int = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                at = time.time()
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
                try:
                    body = json.loads(raw)
                    d = Delivery(
                        at=at,
                        run_id=str(body["run_id"]),
                        schedule_id=body.get("schedule_id"),
                        nominal=_epoch(body["nominal_time"]),
                        scheduled=_epoch(body["scheduled_time"]),
                        attempt=int(body.get("attempt") or 0),
                    )
                except (ValueError, KeyError, TypeError):
                    with receiver.lock:
                        receiver.bad += 1
                    return
                with receiver.lock:
                    receiver.deliveries.append(d)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1})
        self._thread.daemon = True
        self._thread.start()

    def snapshot(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _epoch(t: str) -> float:
    return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()


# --- the stack ------------------------------------------------------------------------------------


@dataclass
class Stack:
    """One `gnomon dev` subprocess (its own process group) and what it printed."""

    proc: subprocess.Popen[str]
    stderr_path: Path
    base_url: str = ""
    aws_endpoint: str = ""
    first_lines: list[str] = field(default_factory=list)
    stdout_lines: int = 0
    stdout_problems: list[str] = field(default_factory=list)
    template_dir: Path | None = None
    _out: queue.Queue[str | None] = field(default_factory=queue.Queue)

    @classmethod
    def start(
        cls,
        tick_seconds: float,
        timeout: float = 90.0,
        horizon_seconds: float | None = None,
        pollers: int | None = None,
        worker_concurrency: int | None = None,
    ) -> Stack:
        fd, err_path = tempfile.mkstemp(prefix="gnomon-bench-dev-", suffix=".stderr")
        env = dict(os.environ)
        for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SQS", "GNOMON_STORE"):
            env.pop(var, None)
        env.setdefault("PYTHONUNBUFFERED", "1")
        template = _template_with_horizon(horizon_seconds) if horizon_seconds is not None else None
        if template is not None:
            env["GNOMON_TEMPLATE"] = str(template)
        with os.fdopen(fd, "w") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gnomon.cli",
                    "dev",
                    "--port",
                    "0",
                    "--tick-seconds",
                    str(tick_seconds),
                    "--exit-with-parent",
                    *(["--pollers", str(pollers)] if pollers is not None else []),
                    *(
                        ["--worker-concurrency", str(worker_concurrency)]
                        if worker_concurrency is not None
                        else []
                    ),
                ],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
                start_new_session=True,
            )
        stack = cls(proc=proc, stderr_path=Path(err_path), template_dir=template.parent if template else None)
        threading.Thread(target=stack._pump, daemon=True).start()
        stack._wait_ready(timeout)
        return stack

    def _pump(self) -> None:
        # Drain stdout for the whole run (so the stack never blocks on a full pipe), keeping
        # any problem lines (the handlers log to stderr; their metrics come here).
        assert self.proc.stdout is not None
        ready = False
        for raw in self.proc.stdout:
            line = raw.rstrip("\n")
            self.stdout_lines += 1
            if not ready:
                self._out.put(line)
                ready = line.startswith(READY_PREFIX)
                continue
            if _LOG_PROBLEM.search(line) and len(self.stdout_problems) < 50:
                self.stdout_problems.append(line[:2000])
        self._out.put(None)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise RuntimeError(
                    f"gnomon dev not ready in {timeout} s: {self.first_lines}\n{self.stderr_tail()}"
                )
            try:
                line = self._out.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait(timeout=5)
                raise RuntimeError(f"gnomon dev exited with {code} before ready\n{self.stderr_tail()}")
            self.first_lines.append(line)
            if line.startswith(ENDPOINT_PREFIX):
                self.aws_endpoint = line[len(ENDPOINT_PREFIX) :]
            if line.startswith(READY_PREFIX):
                self.base_url = line[len(READY_PREFIX) :]
                return

    def stderr_tail(self, n: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    def stderr_problems(self) -> dict[str, Any]:
        """What the stack wrote to stderr that is not routine: error and warning lines (counted,
        and the distinct messages with their counts, timestamps stripped) and the first tracebacks."""
        errors = warnings = 0
        distinct: Counter[str] = Counter()
        outcomes: Counter[str] = Counter()
        tracebacks: list[str] = []
        block: list[str] | None = None
        with contextlib.suppress(OSError), self.stderr_path.open(errors="replace") as f:
            for raw in f:
                line = raw.rstrip("\n")
                if block is not None:
                    block.append(line[:500])
                    if line and not line[0].isspace():  # the exception line ends the traceback
                        if len(tracebacks) < 5:
                            tracebacks.append("\n".join(block[-40:]))
                        block = None
                    continue
                if line.startswith("Traceback"):
                    errors += 1
                    block = [line]
                    continue
                if line.startswith('{"level":"INFO"') and '"message":"handled"' in line:
                    with contextlib.suppress(ValueError):
                        doc = json.loads(line)
                        outcomes[f"{doc.get('outcome')}/{doc.get('status')}"] += 1
                    continue
                if not _LOG_PROBLEM.search(line):
                    continue
                if re.search(r"\bWARNING\b|\"level\":\s*\"WARNING\"", line):
                    warnings += 1
                else:
                    errors += 1
                distinct[_TIMESTAMP.sub("", line)[:300]] += 1
        return {
            "error_lines": errors,
            "warning_lines": warnings,
            "distinct": dict(distinct.most_common(15)),
            "tracebacks": tracebacks,
            "worker_outcomes": dict(outcomes),
        }

    def pids(self) -> dict[str, int]:
        """{"stack": pid, "moto": pid of its child} (the moto host is its only child process)."""
        out = {"stack": self.proc.pid}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.proc.pid:
                    out["moto"] = int(stat.parent.name)
        return out

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        finally:
            self._clean_template()

    def _clean_template(self) -> None:
        if self.template_dir is not None:
            shutil.rmtree(self.template_dir, ignore_errors=True)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self._clean_template()


def _template_with_horizon(seconds: float) -> Path:
    """A what-if: a copy of `template.yaml` whose `HorizonSeconds` parameter defaults to
    `seconds`, beside links to the code it names (`gnomon dev` reads `$GNOMON_TEMPLATE` and takes
    the functions' environment from the template, so this is the one way to change the horizon of
    an unmodified stack). The repository's template is not touched."""
    text = (REPO / "template.yaml").read_text()
    new, n = re.subn(
        r"(\n  HorizonSeconds:\n(?:    .*\n)*?    Default: )[0-9.]+", rf"\g<1>{int(seconds)}", text, count=1
    )
    if n != 1:
        raise RuntimeError("template.yaml: no HorizonSeconds parameter with a Default")
    root = Path(tempfile.mkdtemp(prefix="gnomon-bench-template-"))
    (root / "template.yaml").write_text(new)
    for name in ("functions", "shared"):
        (root / name).symlink_to(REPO / name, target_is_directory=True)
    return root / "template.yaml"


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _machine_cpu() -> tuple[float, float] | None:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    try:
        parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return float(sum(parts) - idle), float(sum(parts))


class CpuMeter:
    """CPU use of the stack, its moto host, this process and the machine between two samples."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {**pids, "bench": os.getpid()}
        self._start: dict[str, float | None] = {}
        self._machine: tuple[float, float] | None = None
        self._t = 0.0

    def start(self) -> None:
        self._start = {k: _cpu_seconds(p) for k, p in self.pids.items()}
        self._machine = _machine_cpu()
        self._t = time.monotonic()

    def stop(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self._t
        out: dict[str, Any] = {"seconds": elapsed, "cores": os.cpu_count()}
        for k, p in self.pids.items():
            a, b = self._start.get(k), _cpu_seconds(p)
            out[f"{k}_pct"] = None if a is None or b is None or elapsed <= 0 else 100.0 * (b - a) / elapsed
        end = _machine_cpu()
        if self._machine and end and end[1] > self._machine[1]:
            busy = 100.0 * (end[0] - self._machine[0]) / (end[1] - self._machine[1])
            out["machine_busy_pct"] = busy
            # Everything else on the machine, in the same unit (100 = one core).
            ours = sum(v for k, v in out.items() if k.endswith("_pct") and k != "machine_busy_pct" and v)
            out["other_pct"] = max(0.0, busy * (os.cpu_count() or 1) - ours)
        with contextlib.suppress(OSError):
            out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
        return out


# --- one load -------------------------------------------------------------------------------------


def machine_busy(seconds: float = 1.0) -> float | None:
    """How busy the whole machine is (% of all cores) over `seconds`."""
    a = _machine_cpu()
    time.sleep(seconds)
    b = _machine_cpu()
    if not a or not b or b[1] <= a[1]:
        return None
    return 100.0 * (b[0] - a[0]) / (b[1] - a[1])


def wait_quiet(limit: float, threshold: float = 15.0) -> float | None:
    """Wait up to `limit` s for the machine to be under `threshold` % busy; answers the last
    sample (the machine is shared: other work skews lateness, so it is measured and reported)."""
    deadline = time.monotonic() + limit
    busy = machine_busy()
    while busy is not None and busy > threshold and time.monotonic() < deadline:
        busy = machine_busy(2.0)
    return busy


def run_load(
    load: Load,
    *,
    warmup: float,
    grace: float,
    tick_seconds: float,
    quiet_wait: float = 0.0,
    horizon_seconds: float | None = None,
    create_limit: float = CREATE_LIMIT,
    cleanup_limit: float = CLEANUP_LIMIT,
    pollers: int | None = None,
    worker_concurrency: int | None = None,
) -> dict[str, Any]:
    """Start a stack, fire `load` into a receiver, measure, clean up. Answers the figures."""
    import httpx

    busy_before = wait_quiet(quiet_wait)
    receiver = Receiver()
    say(
        f"lateness {load.name}: {len(load.schedules)} schedules, {load.rate:g} firings/s, {load.seconds:g} s"
        f" (machine {busy_before or 0:.0f} % busy before)"
    )
    if busy_before is not None and busy_before > 15:
        say("  warning: the machine is busy with other work; the figures will include that contention")
    t_start = time.monotonic()
    stack = Stack.start(
        tick_seconds, horizon_seconds=horizon_seconds, pollers=pollers, worker_concurrency=worker_concurrency
    )
    problems: list[str] = []
    ids = [_sid(i) for i in range(len(load.schedules))]
    planned_ids = list(ids)
    cpu = CpuMeter(stack.pids())
    generations: dict[str, str] = {}
    try:
        with httpx.Client(base_url=stack.base_url, timeout=60) as api:
            r = api.post(
                "/v1/definitions",
                json={"name": DEFINITION, "target": {"type": "http", "url": receiver.url + "/fire"}},
            )
            r.raise_for_status()
            t0 = time.time()
            # Every schedule starts at the same instant, after all are created (an estimate:
            # CREATE_BUDGET per schedule), so creating them does not compete with firing them.
            start_at = math.ceil(t0 + START_MARGIN + CREATE_BUDGET * len(ids))
            create_deadline = time.monotonic() + create_limit
            for sid, (every, offset) in zip(ids, load.schedules, strict=True):
                if time.monotonic() > create_deadline:
                    break  # an overloaded stack: measure what exists (the rate column says so)
                r = api.post(
                    "/v1/schedules",
                    json={
                        "schedule_id": sid,
                        "definition": DEFINITION,
                        "spec": {
                            "intervals": [{"every_seconds": every, "offset_seconds": offset}],
                            "start_at": _iso(start_at),
                        },
                        # every firing runs even when the previous one of the schedule is still
                        # running (the default `skip` would turn a backlog into skipped runs)
                        "policies": {"overlap": "allow_all"},
                        "input": {"every": every, "offset": offset},
                    },
                )
                if r.status_code != 201:
                    raise RuntimeError(f"create {sid}: {r.status_code} {r.text}")
                generations[sid] = str(r.json().get("generation"))
            created = time.time()
            if len(generations) < len(ids):
                say(
                    f"  only {len(generations)} of {len(ids)} schedules created within {create_limit:g} s: "
                    "measuring those"
                )
                load = Load(load.name, load.schedules[: len(generations)], load.seconds)
                ids = ids[: len(generations)]
            window_start = math.ceil(max(created, start_at) + warmup)
            window_end = window_start + load.seconds
            say(
                f"  created in {created - t0:.1f} s (firing from +{start_at - t0:.0f} s); measuring "
                f"{load.seconds:g} s after {warmup:g} s of warm-up"
            )
            _sleep_until(window_start)
            cpu.start()
            _sleep_until(window_end)
            usage = cpu.stop()
            _sleep_until(window_end + grace)
            deliveries = receiver.snapshot()
            missed = sorted(
                _expected(load, window_start, window_end)
                - _received(deliveries, window_start, window_end, window_end + grace)
            )
            missed_runs = _look_up_runs(api, missed[:LOOKUPS], generations, time_limit=15.0)
            own_view = _gnomon_lateness(api, window_start, window_end)
            # Pause every schedule, then delete them all; an overloaded stack answers slowly, so
            # past `cleanup_limit` s the rest is left to the stack's stop (it is thrown away).
            t_clean = time.time()
            cleanup_deadline = time.monotonic() + cleanup_limit
            done: Counter[str] = Counter()
            for action, ok in (("pause", 200), ("delete", 204)):
                for sid in ids:
                    if time.monotonic() > cleanup_deadline:
                        break
                    if action == "pause":
                        r = api.post(f"/v1/schedules/{sid}/pause", json={"note": "bench done"})
                    else:
                        r = api.delete(f"/v1/schedules/{sid}")
                    if r.status_code == ok:
                        done[action] += 1
                    else:
                        problems.append(f"{action} {sid}: {r.status_code} {r.text[:300]}")
            cleanup_s = time.time() - t_clean
            if done["delete"] < len(ids):
                say(f"  clean-up stopped after {cleanup_s:.0f} s: {dict(done)} of {len(ids)}")
    finally:
        code = stack.stop()
        receiver.close()
    stderr = stack.stderr_problems()
    result = analyse(load, deliveries, window_start, window_end, grace, everything=receiver.snapshot())
    # Which of the looked-up missed firings did arrive, later (received − window end, s).
    late = {d.run_id: d.at for d in _first_deliveries(receiver.snapshot()).values()}
    for run_id, info in missed_runs.items():
        info["received_after_window_s"] = round(late[run_id] - window_end, 3) if run_id in late else None
    result["missed_runs"] = missed_runs
    result.update(
        machine_busy_before_pct=busy_before,
        schedules_planned=len(planned_ids),
        horizon_seconds=horizon_seconds,
        create_seconds=created - t0,
        create_ms_per_schedule=1000 * (created - t0) / len(load.schedules),
        start_at=start_at,
        cleanup_seconds=cleanup_s,
        cleanup_done=dict(done),
        total_seconds=time.monotonic() - t_start,
        cpu=usage,
        stack_exit_code=code,
        worker_outcomes=stderr.pop("worker_outcomes"),
        gnomon_metrics=own_view,
        malformed_bodies=receiver.bad,
        api_problems=problems,
        stderr=stderr,
        stdout_problems=stack.stdout_problems[:20],
    )
    if stderr["error_lines"] or stderr["warning_lines"] or stack.stdout_problems or code != 0 or problems:
        keep = Path(tempfile.gettempdir()) / f"gnomon-bench-{load.name}.stderr"
        with contextlib.suppress(OSError):
            stack.stderr_path.replace(keep)
            result["stderr_file"] = str(keep)
    else:
        with contextlib.suppress(OSError):
            stack.stderr_path.unlink()
    say(
        f"  expected {result['expected']}, received {result['received']}, duplicates {result['duplicates']}, "
        f"misses {result['misses']}, p50 {_ms(result['p50_ms'])} p99 {_ms(result['p99_ms'])} "
        f"max {_ms(result['max_ms'])}; stack exit {code}; stderr: {stderr['error_lines']} errors, "
        f"{stderr['warning_lines']} warnings"
    )
    return result


def _expected(load: Load, window_start: float, window_end: float) -> set[tuple[str, int]]:
    """(schedule id, nominal epoch second) of every firing the load's schedules owe in the window."""
    out: set[tuple[str, int]] = set()
    for i, (every, offset) in enumerate(load.schedules):
        for t in range(math.ceil(window_start), math.ceil(window_end)):
            if (t - offset) % every == 0:
                out.add((_sid(i), t))
    return out


def _first_deliveries(deliveries: list[Delivery]) -> dict[str, Delivery]:
    first: dict[str, Delivery] = {}
    for d in sorted(deliveries, key=lambda d: d.at):
        first.setdefault(d.run_id, d)
    return first


def _in_window(
    deliveries: list[Delivery], window_start: float, window_end: float, deadline: float
) -> list[Delivery]:
    """First deliveries of firings with a nominal time in the window, received by `deadline`."""
    return [
        d
        for d in _first_deliveries(deliveries).values()
        if d.schedule_id is not None and window_start <= d.nominal < window_end and d.at <= deadline
    ]


def _received(
    deliveries: list[Delivery], window_start: float, window_end: float, deadline: float
) -> set[tuple[str, int]]:
    return {
        (d.schedule_id or "", round(d.nominal))
        for d in _in_window(deliveries, window_start, window_end, deadline)
    }


def analyse(
    load: Load,
    deliveries: list[Delivery],
    window_start: float,
    window_end: float,
    grace: float,
    *,
    everything: list[Delivery] | None = None,
) -> dict[str, Any]:
    """Expected vs received firings of the window, duplicates, misses and lateness.
    `deliveries`: what arrived by the end of the grace; `everything`: also what arrived later
    (during the clean-up), for duplicates and for telling late firings from lost ones."""
    everything = everything if everything is not None else deliveries
    expected = _expected(load, window_start, window_end)
    deadline = window_end + grace
    in_window = _in_window(deliveries, window_start, window_end, deadline)
    received_keys = {(d.schedule_id or "", round(d.nominal)) for d in in_window}
    late_ms = [
        (d.at - d.scheduled) * 1000.0
        for d in in_window
        if (d.schedule_id or "", round(d.nominal)) in expected
    ]
    missed = expected - received_keys
    later = {(d.schedule_id or "", round(d.nominal)) for d in _first_deliveries(everything).values()}
    counts = Counter(d.run_id for d in everything)
    # How lateness evolves through the window (a backlog shows as a rising p50), by 10 s slices.
    trend = []
    for lo in range(math.ceil(window_start), math.ceil(window_end), 10):
        hi = min(lo + 10, window_end)
        owed = sum(1 for _, t in expected if lo <= t < hi)
        got = [(d.at - d.scheduled) * 1000.0 for d in in_window if lo <= d.nominal < hi]
        trend.append(
            {
                "from_s": lo - math.ceil(window_start),
                "expected": owed,
                "received": len(got),
                "p50_ms": percentile(got, 50),
                "max_ms": max(got) if got else None,
            }
        )
    return {
        "load": load.name,
        "schedules": len(load.schedules),
        "every_1s": sum(1 for e, _ in load.schedules if e == 1),
        "every_2s": sum(1 for e, _ in load.schedules if e == 2),
        "rate": load.rate,
        "seconds": load.seconds,
        "window": [window_start, window_end],
        "expected": len(expected),
        "received": len(received_keys & expected),
        "unexpected": len(received_keys - expected),
        "duplicates": sum(n - 1 for n in counts.values() if n > 1),
        "duplicate_run_ids": sorted(r for r, n in counts.items() if n > 1)[:20],
        "retried_deliveries": sum(1 for d in everything if d.attempt > 1),
        "misses": len(missed),
        "missed_delivered_later": len(missed & later),
        "missed_examples": [f"{s}@{t}" for s, t in sorted(missed)[:10]],
        "deliveries_total": len(everything),
        "min_ms": min(late_ms) if late_ms else None,
        "p50_ms": percentile(late_ms, 50),
        "p95_ms": percentile(late_ms, 95),
        "p99_ms": percentile(late_ms, 99),
        "max_ms": max(late_ms) if late_ms else None,
        "mean_ms": sum(late_ms) / len(late_ms) if late_ms else None,
        "trend": trend,
    }


def _sid(i: int) -> str:
    return f"lat-{i:03d}"


def _look_up_runs(
    api: Any, missed: list[tuple[str, int]], generations: dict[str, str], *, time_limit: float
) -> dict[str, Any]:
    """What gnomon recorded for some missed firings (`GET /v1/runs/{run_id}`): status, attempt,
    started_at — or the HTTP status when there is no such run."""
    from gnomon.domain.runs import scheduled_run_id

    out: dict[str, Any] = {}
    deadline = time.monotonic() + time_limit
    for sid, t in missed:
        if sid not in generations or time.monotonic() > deadline:
            continue
        run_id = scheduled_run_id(sid, generations[sid], datetime.fromtimestamp(t, UTC))
        try:
            r = api.get(f"/v1/runs/{run_id}", timeout=max(1.0, deadline - time.monotonic()))
        except Exception as exc:
            out[run_id] = {"error": repr(exc)[:300]}
            continue
        if r.status_code != 200:
            out[run_id] = {"http_status": r.status_code}
            continue
        run = r.json()
        out[run_id] = {
            k: run.get(k)
            for k in ("status", "attempt", "scheduled_time", "started_at", "closed_at", "reason")
        }
    return out


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _gnomon_lateness(api: Any, window_start: float, window_end: float) -> dict[str, Any]:
    """gnomon's own view, best effort: `GET /v1/metrics/lateness` (started_at − scheduled_time)
    over the window in one bucket, for comparison with what the receiver saw."""
    params = {
        "definition": DEFINITION,
        "from": _iso(window_start),
        "to": _iso(window_end),
        "bucket_seconds": str(max(1, int(window_end - window_start))),
    }
    t0 = time.monotonic()
    try:
        r = api.get("/v1/metrics/lateness", params=params, timeout=20)
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text[:500]
    except Exception as exc:  # an optional cross-check: never fail the benchmark for it
        return {"error": repr(exc)[:500]}
    return {"status": r.status_code, "seconds": time.monotonic() - t0, "answer": body}


def _sleep_until(t: float) -> None:
    while (left := t - time.time()) > 0:
        time.sleep(min(left, 1.0))


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms"


# --- report ---------------------------------------------------------------------------------------


def rows(results: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    headers = [
        "load",
        "schedules",
        "rate/s",
        "window s",
        "expected",
        "received",
        "dups",
        "misses",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "stack cpu%",
        "moto cpu%",
        "other cpu%",
        "machine busy%",
    ]
    out = []
    for r in results:
        cpu = r.get("cpu") or {}
        out.append(
            [
                r["load"],
                r["schedules"],
                r["rate"],
                r["seconds"],
                r["expected"],
                r["received"],
                r["duplicates"],
                r["misses"],
                r["p50_ms"],
                r["p95_ms"],
                r["p99_ms"],
                r["max_ms"],
                cpu.get("stack_pct"),
                cpu.get("moto_pct"),
                cpu.get("other_pct"),
                cpu.get("machine_busy_pct"),
            ]
        )
    return headers, out


def loads_from(args: argparse.Namespace) -> list[Load]:
    if args.long:
        rates = args.rates or list(LONG_RATES)
        seconds = args.seconds or LONG_SECONDS
        mixed_n = args.mixed if args.mixed is not None else 0
    else:
        rates = args.rates or list(SHORT_RATES)
        seconds = args.seconds or SHORT_SECONDS
        mixed_n = args.mixed if args.mixed is not None else (0 if args.rates else MIXED_SCHEDULES)
    loads = [mixed(mixed_n, args.mixed_seconds or MIXED_SECONDS)] if mixed_n else []
    loads += [at_rate(r, seconds) for r in rates]
    return loads


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--long", action="store_true", help="the long form: 10,20,50,100 firings/s for 60 s each")
    p.add_argument("--rates", type=_floats, default=None, help="comma-separated aggregate rates (firings/s)")
    p.add_argument("--seconds", type=float, default=None, help="measured window per rate (30; long: 60)")
    p.add_argument(
        "--mixed", type=int, default=None, help="first run N mixed 1–2 s schedules (short form: 20; 0 = none)"
    )
    p.add_argument("--mixed-seconds", type=float, default=None, help="window of the mixed run (60)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds skipped after the schedules exist (5)")
    p.add_argument(
        "--grace", type=float, default=5.0, help="seconds a firing may arrive after the window (5)"
    )
    p.add_argument("--tick-seconds", type=float, default=1.0, help="the stack's --tick-seconds (1)")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="before each load, wait up to this many seconds for the machine to be idle (0)",
    )
    p.add_argument(
        "--create-limit",
        type=float,
        default=CREATE_LIMIT,
        help=f"stop creating schedules after this many seconds and measure those created ({CREATE_LIMIT:g})",
    )
    p.add_argument(
        "--cleanup-limit",
        type=float,
        default=CLEANUP_LIMIT,
        help=f"seconds of pausing/deleting before the stack is stopped anyway ({CLEANUP_LIMIT:g})",
    )
    p.add_argument(
        "--horizon-seconds",
        type=float,
        default=None,
        help="what-if: run the stack with this ticker horizon instead of the template's (60); "
        "results go to lateness-horizon-<N>.json",
    )
    p.add_argument(
        "--pollers",
        type=int,
        default=None,
        help="what-if: `gnomon dev --pollers N` (SQS pollers; the stack's default is 2)",
    )
    p.add_argument(
        "--worker-concurrency",
        type=int,
        default=None,
        help="what-if: `gnomon dev --worker-concurrency N` (worker batches at once; the stack's default "
        "is 10; with N equal to --pollers a poller waits for its batch, as before 2026-12)",
    )
    p.add_argument("--no-write", action="store_true", help="do not write bench/results/lateness.json")


def run(args: argparse.Namespace) -> dict[str, Any]:
    meta = machine()
    loads = loads_from(args)
    params = {
        "warmup": args.warmup,
        "grace": args.grace,
        "tick_seconds": args.tick_seconds,
        "quiet_wait": args.quiet_wait,
        "horizon_seconds": args.horizon_seconds,
        "pollers": args.pollers,
        "worker_concurrency": args.worker_concurrency,
        "loads": [{"name": ld.name, "schedules": list(ld.schedules), "seconds": ld.seconds} for ld in loads],
    }
    results: list[dict[str, Any]] = []
    for load in loads:
        results.append(
            run_load(
                load,
                warmup=args.warmup,
                grace=args.grace,
                tick_seconds=args.tick_seconds,
                quiet_wait=args.quiet_wait,
                horizon_seconds=args.horizon_seconds,
                create_limit=args.create_limit,
                cleanup_limit=args.cleanup_limit,
                pollers=args.pollers,
                worker_concurrency=args.worker_concurrency,
            )
        )
        if not args.no_write:  # after each load, so an interrupted run keeps what it measured
            write_result(
                _result_name(args), {"benchmark": NAME, "meta": meta, "params": params, "results": results}
            )
    headers, body = rows(results)
    horizon = (
        "the template's horizon" if args.horizon_seconds is None else f"horizon {args.horizon_seconds:g} s"
    )
    print(
        f"\nLateness on the real local stack (gnomon dev, tick {args.tick_seconds:g} s, {horizon}): "
        "receive time − scheduled_time"
    )
    print(table(headers, body))
    print(
        f"(cpu%: 100 = one core, during the window: the stack process (API, ticker, worker), its moto "
        f"host, and everything else on the machine (other); machine busy% is of all {os.cpu_count()} "
        f"cores. They all share those cores, so lateness includes CPU contention.)"
    )
    for r in results:
        notes = []
        if r["schedules"] < r["schedules_planned"]:
            notes.append(
                f"only {r['schedules']} of {r['schedules_planned']} schedules could be created in "
                f"{r['create_seconds']:.0f} s: rate {r['rate']:g}/s, not the planned one"
            )
        if r["unexpected"]:
            notes.append(f"{r['unexpected']} firings at unexpected times")
        if r["duplicates"]:
            notes.append(f"duplicate run ids: {r['duplicate_run_ids'][:5]}")
        if r["misses"] or (r["p99_ms"] or 0) > 2000:
            slices = " ".join(
                f"{_ms(t['p50_ms'])}({t['received']}/{t['expected']})".replace(" ms", "") for t in r["trend"]
            )
            notes.append(f"p50 ms (received/expected) per 10 s of the window: {slices}")
        if r["misses"]:
            notes.append(
                f"{r['misses']} misses, {r['missed_delivered_later']} of them delivered after the grace "
                f"(late, not lost); e.g. {r['missed_examples'][:3]}"
            )
            statuses = Counter(str(v.get("status", v.get("http_status"))) for v in r["missed_runs"].values())
            if statuses:
                notes.append(f"gnomon's record of {sum(statuses.values())} missed firings: {dict(statuses)}")
        if r["stderr"]["error_lines"] or r["stderr"]["warning_lines"]:
            notes.append(
                f"stack stderr: {r['stderr']['error_lines']} error and {r['stderr']['warning_lines']} warning "
                f"lines ({r.get('stderr_file')})"
            )
            notes += [f"  {n} × {msg}" for msg, n in list(r["stderr"]["distinct"].items())[:5]]
        if r["stack_exit_code"] != 0:
            notes.append(f"stack exit code {r['stack_exit_code']}")
        if notes:
            print(f"{r['load']}:")
            print("\n".join(f"  {n}" for n in notes))
    payload = {"benchmark": NAME, "meta": meta, "params": params, "results": results}
    if not args.no_write:
        path = write_result(_result_name(args), payload)
        say(f"wrote {path}")
    return payload


def _result_name(args: argparse.Namespace) -> str:
    name = NAME if args.horizon_seconds is None else f"{NAME}-horizon-{args.horizon_seconds:g}"
    if args.pollers is not None:
        name = f"{name}-pollers-{args.pollers}"
    if args.worker_concurrency is not None:
        name = f"{name}-concurrency-{args.worker_concurrency}"
    return name


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    line_buffered()
    p = argparse.ArgumentParser(
        prog="python -m bench.lateness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    run(p.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
