"""The real local stack (`gnomon dev`) as a subprocess, driven over HTTP and boto3."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

REPO = Path(__file__).resolve().parents[2]
READY_PREFIX = "gnomon dev ready on "
ENDPOINT_PREFIX = "gnomon dev aws endpoint "


@dataclass
class DevProcess:
    """One `gnomon dev` process (in its own process group) and what it printed."""

    proc: subprocess.Popen[str]
    stderr: Path
    lines: list[str] = field(default_factory=list)
    base_url: str = ""
    aws_endpoint: str = ""
    _out: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def stderr_tail(self, n: int = 60) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.stderr.read_text(errors="replace").splitlines()[-n:])
        return ""

    def _pump(self) -> None:
        # Keep draining stdout after the ready line, so the stack never blocks on a full pipe.
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._out.put(line.rstrip("\n"))
        self._out.put(None)

    def wait_ready(self, timeout: float) -> None:
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                pytest.fail(f"gnomon dev not ready in {timeout} s; stdout={self.lines}\n{self.stderr_tail()}")
            try:
                line = self._out.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait(timeout=5)
                pytest.fail(
                    f"gnomon dev exited with {code} before ready; stdout={self.lines}\n{self.stderr_tail()}"
                )
            self.lines.append(line)
            if line.startswith(ENDPOINT_PREFIX):
                self.aws_endpoint = line[len(ENDPOINT_PREFIX) :]
            if line.startswith(READY_PREFIX):
                self.base_url = line[len(READY_PREFIX) :]
                return

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the process group; answers the exit code (fails the test if it hangs)."""
        if self.proc.poll() is None:
            self.signal_group(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"gnomon dev did not exit within {timeout} s of {signal.Signals(sig).name}\n{self.stderr_tail()}"
            )

    def kill(self) -> None:
        """SIGKILL the process group (the moto host, in its own session, then exits by itself)."""
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def children(self) -> list[int]:
        """Pids of the processes it started (the moto host)."""
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.proc.pid:
                    out.append(int(stat.parent.name))
        return out

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.aws_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


def start_dev(*args: str, tick_seconds: str = "0.5", timeout: float = 60.0) -> DevProcess:
    """Start `gnomon dev --port 0` and wait for its ready line."""
    fd, err_path = tempfile.mkstemp(prefix="gnomon-dev-", suffix=".stderr")
    env = dict(os.environ)
    env.pop("AWS_ENDPOINT_URL", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
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
                tick_seconds,
                "--exit-with-parent",
                *args,
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            start_new_session=True,  # its own process group, as `make dev` would be
        )
    dev = DevProcess(proc=proc, stderr=Path(err_path))
    dev.wait_ready(timeout)
    return dev


@pytest.fixture
def dev_factory() -> Iterator[Callable[..., DevProcess]]:
    """`start(*args)` starts a stack; any left running at teardown are stopped (and must exit 0)."""
    started: list[DevProcess] = []

    def start(*args: str, **kw: float | str) -> DevProcess:
        dev = start_dev(*args, **kw)  # type: ignore[arg-type]
        started.append(dev)
        return dev

    yield start
    for dev in started:
        if dev.proc.poll() is None:
            assert dev.stop() == 0, dev.stderr_tail()
        with contextlib.suppress(OSError):
            dev.stderr.unlink()


@pytest.fixture(scope="module")
def dev_stack() -> Iterator[DevProcess]:
    """One stack shared by a module's tests; SIGTERM at the end must exit 0 within 15 s."""
    dev = start_dev()
    try:
        yield dev
    finally:
        code = dev.stop()
        tail = dev.stderr_tail()
        with contextlib.suppress(OSError):
            dev.stderr.unlink()
        assert code == 0, tail


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Poll `predicate` until it answers something truthy (answered) or `timeout` passes (its
    last answer)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
