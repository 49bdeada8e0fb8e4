"""`gnomon dev`: the embedded local stack (CONTRACT.md §2).

Two processes:

- the **moto host** (a child: `python -m gnomon.local.devserver --moto-host`) serves moto on
  127.0.0.1 and owns the `--state-dir` snapshot (`gnomon.local.state`). A child process because
  moto then has its own interpreter lock: under concurrent load it serves ~20–25 % more requests
  than in-process and its CPU never slows the API's answers. It runs in its own session and
  watches a pipe from the parent (its stdin): when the parent goes away — a clean stop or a
  SIGKILL — it writes a last snapshot and exits, so it is never left behind.
- this process creates the template's tables and queues in moto, sets the functions'
  environment, imports the three Lambda handlers by file path and drives them: an HTTP server
  that turns requests into API Gateway HTTP API v2 events, a ticker thread that sends an
  EventBridge scheduled event every `--tick-seconds`, and SQS pollers that feed the worker the
  way the Lambda event source mapping does (ReportBatchItemFailures).

stdout carries only the contract lines; everything else (logs, handlers' prints) goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import logging
import math
import os
import select
import signal
import subprocess  # nosec B404 # starts its own moto host with a fixed argv
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

from gnomon.local import http_bridge

# Not under "gnomon": Powertools' Logger(service="gnomon") filters that prefix out of root handlers.
log = logging.getLogger("devstack")

REGION = "us-east-1"
ACCOUNT_ID = http_bridge.API_ACCOUNT_ID  # moto's default account, as template.py assumes
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
API_FUNCTION, TICKER_FUNCTION, WORKER_FUNCTION = "ApiFunction", "TickerFunction", "WorkerFunction"
FIRING_QUEUE = "FiringQueue"
_ALL_INTERFACES = "0.0.0.0"  # nosec B104 # only compared with --host, to print a usable address
# moto accepts any credentials; these keep a real profile from ever being used locally.
_MOTO_CREDENTIAL = "testing"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": _MOTO_CREDENTIAL,
    "AWS_SECRET_ACCESS_KEY": _MOTO_CREDENTIAL,
    "AWS_SESSION_TOKEN": _MOTO_CREDENTIAL,
    "AWS_SECURITY_TOKEN": _MOTO_CREDENTIAL,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}
# DynamoDB actions that never change data: anything else counts as a write for the snapshots.
_DDB_READS = frozenset(
    {
        "GetItem",
        "BatchGetItem",
        "Query",
        "Scan",
        "TransactGetItems",
        "DescribeTable",
        "ListTables",
        "DescribeTimeToLive",
        "DescribeContinuousBackups",
        "ListTagsOfResource",
        "DescribeEndpoints",
        "DescribeLimits",
        "DescribeKinesisStreamingDestination",
        "ListBackups",
        "ListExports",
        "ListImports",
        "ListGlobalTables",
    }
)


@dataclass
class DevConfig:
    """The options of `gnomon dev`."""

    port: int = 8080
    host: str = "127.0.0.1"
    tick_seconds: float = 1.0
    state_dir: Path | None = None
    allow_targets: Sequence[str] = ()
    allow_python_modules: Sequence[str] = ()
    pollers: int = 2
    # How many worker batches may run at once (the function's concurrency): each runs in an
    # execution environment of its own — a separate module instance, created on first need and
    # reused when idle —, so the pollers go on receiving while batches run, as the event source
    # mapping's concurrent invocations do.
    worker_concurrency: int = 10
    # Stop when the process that started this one goes away (tests and benchmarks that start a
    # stack and may be killed before they stop it).
    exit_with_parent: bool = False
    template: Path | None = None
    log_level: str = "INFO"


def _local_env() -> None:
    """Fake credentials and region, no profile, and no proxy for the loopback endpoints."""
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(var, None)
    os.environ.update(FAKE_CREDENTIALS)
    for var in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in os.environ.get(var, "").split(",") if h.strip()]
        os.environ[var] = ",".join(dict.fromkeys([*hosts, "127.0.0.1", "localhost"]))


class StartupError(Exception):
    """The stack could not start; the message says why."""


# --- Lambda plumbing -----------------------------------------------------------------------


class LambdaContext:
    """The context object the Lambda Python runtime passes to a handler."""

    def __init__(self, function_name: str, timeout_seconds: float, memory_mb: int = 512) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class LambdaFunction:
    """One function of the template, loaded like a Lambda container loads it."""

    logical_id: str
    handler: Callable[[Any, Any], Any]
    timeout: float
    memory_mb: int
    events: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock | None = None  # serialize invocations (one container, one event at a time)

    @property
    def function_name(self) -> str:
        return f"gnomon-dev-{self.logical_id}"

    def invoke(self, event: Any) -> Any:
        context = LambdaContext(self.function_name, self.timeout, self.memory_mb)
        if self.lock is None:
            return self.handler(event, context)
        with self.lock:
            return self.handler(event, context)


def load_function(root: Path, logical_id: str, spec: Mapping[str, Any], module_name: str) -> LambdaFunction:
    """Import `spec["handler"]` (`module.attr`) from the function's code dir, by file path,
    under `module_name` (each name is a separate module instance, like a separate container)."""
    handler = str(spec.get("handler") or "app.lambda_handler")
    module_path, _, attr = handler.rpartition(".")
    code_dir = (root / str(spec.get("code_uri") or "")).resolve()
    file = code_dir / (module_path.replace(".", "/") + ".py")
    if not file.is_file():
        raise StartupError(f"{logical_id}: handler file {file} not found")
    module_spec = importlib.util.spec_from_file_location(module_name, file)
    if module_spec is None or module_spec.loader is None:
        raise StartupError(f"{logical_id}: cannot import {file}")
    module: ModuleType = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    # The code dir is the function's /var/task: its sibling modules are importable.
    sys.path.insert(0, str(code_dir))
    try:
        module_spec.loader.exec_module(module)
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(code_dir))
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise StartupError(f"{logical_id}: {file} has no callable {attr}")
    return LambdaFunction(
        logical_id=logical_id,
        handler=fn,
        timeout=float(spec.get("timeout") or 3),
        memory_mb=int(spec.get("memory_size") or spec.get("memory") or 512),
        events=dict(spec.get("events") or {}),
    )


def scheduled_event(rule_arn: str, now: float | None = None) -> dict[str, Any]:
    """The event an EventBridge schedule rule sends its target."""
    now = time.time() if now is None else now
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [rule_arn],
        "detail": {},
    }


def _lambda_message_attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    import base64

    out: dict[str, Any] = {}
    for name, attr in attrs.items():
        value: dict[str, Any] = {
            "stringListValues": list(attr.get("StringListValues", [])),
            "binaryListValues": [
                base64.b64encode(b).decode() if isinstance(b, bytes | bytearray) else b
                for b in attr.get("BinaryListValues", [])
            ],
            "dataType": attr.get("DataType", "String"),
        }
        if "StringValue" in attr:
            value["stringValue"] = attr["StringValue"]
        if "BinaryValue" in attr:
            raw = attr["BinaryValue"]
            value["binaryValue"] = (
                base64.b64encode(raw).decode() if isinstance(raw, bytes | bytearray) else raw
            )
        out[name] = value
    return out


def sqs_event(messages: Sequence[Mapping[str, Any]], queue_arn: str, region: str = REGION) -> dict[str, Any]:
    """The event the Lambda SQS event source mapping builds from `ReceiveMessage` results."""
    records = []
    for m in messages:
        record: dict[str, Any] = {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": dict(m.get("Attributes", {})),
            "messageAttributes": _lambda_message_attributes(m.get("MessageAttributes", {})),
            "md5OfBody": m.get("MD5OfBody"),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        }
        if m.get("MD5OfMessageAttributes"):
            record["md5OfMessageAttributes"] = m["MD5OfMessageAttributes"]
        records.append(record)
    return {"Records": records}


def settle_batch(
    message_ids: Sequence[str], result: Any, *, raised: bool, report_failures: bool = True
) -> tuple[list[str], list[str]]:
    """Which messages of a batch the event source mapping deletes: `(succeeded, failed)` ids.

    A raised exception fails the whole batch. With ReportBatchItemFailures, the ids in
    `batchItemFailures[].itemIdentifier` fail and the others succeed; a missing, null or empty
    list is a complete success; an identifier that is empty, null, misnamed or not in the batch
    — or an answer that is not an object — fails the whole batch (as Lambda does).
    """
    ids = list(message_ids)
    if raised:
        return [], ids
    if not report_failures or result is None:
        return ids, []
    if not isinstance(result, Mapping):
        return [], ids
    failures = result.get("batchItemFailures")
    if not failures:
        return ids, []
    if not isinstance(failures, list):
        return [], ids
    failed: set[str] = set()
    for item in failures:
        ident = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if not isinstance(ident, str) or not ident or ident not in ids:
            return [], ids
        failed.add(ident)
    return [i for i in ids if i not in failed], [i for i in ids if i in failed]


def _sqs_sources(events: Mapping[str, Any]) -> list[tuple[str, int, bool]]:
    """(queue ARN, batch size, ReportBatchItemFailures) of each SQS event of a function
    (events resolved against the local resources)."""
    out = []
    for ev in events.values():
        if not (isinstance(ev, Mapping) and ev.get("Type") == "SQS"):
            continue
        props = ev.get("Properties") or {}
        size = props.get("BatchSize")
        batch = (
            min(int(size), 10)
            if isinstance(size, int | str) and str(size).isdigit() and int(size) > 0
            else 10
        )
        types = props.get("FunctionResponseTypes")
        out.append((str(props.get("Queue")), batch, "ReportBatchItemFailures" in (types or [])))
    return out


def receive_batch(
    sqs: Any, queue_url: str, *, wait_seconds: int = 1, batch_size: int = 10
) -> list[dict[str, Any]]:
    """One receive of the event source mapping's poller."""
    resp = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=batch_size,
        WaitTimeSeconds=wait_seconds,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    return list(resp.get("Messages") or [])


def invoke_batch(
    sqs: Any,
    queue_url: str,
    queue_arn: str,
    worker: LambdaFunction,
    messages: Sequence[dict[str, Any]],
    *,
    report_failures: bool = True,
) -> tuple[int, int]:
    """Invoke the worker with one batch (the SQS event shape), then delete what succeeded.
    Answers `(deleted, failed)`."""
    if not messages:
        return 0, 0
    event = sqs_event(list(messages), queue_arn)
    raised = False
    result: Any = None
    try:
        result = worker.invoke(event)
    except Exception:
        raised = True
        log.exception("worker: the handler raised; the batch of %d will be retried", len(messages))
    ok, failed = settle_batch(
        [m["MessageId"] for m in messages], result, raised=raised, report_failures=report_failures
    )
    handles = {m["MessageId"]: m["ReceiptHandle"] for m in messages}
    for start in range(0, len(ok), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": handles[mid]} for i, mid in enumerate(ok[start : start + 10])
        ]
        out = sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
        for f in out.get("Failed") or []:
            log.warning("worker: could not delete a message: %s", f)
    if failed:
        log.info("worker: %d of %d messages failed and stay in the queue", len(failed), len(messages))
    return len(ok), len(failed)


def feed_worker_once(
    sqs: Any,
    queue_url: str,
    queue_arn: str,
    worker: LambdaFunction,
    *,
    wait_seconds: int = 1,
    batch_size: int = 10,
    report_failures: bool = True,
) -> tuple[int, int]:
    """One poll of the event source mapping: receive, invoke, delete what succeeded.
    Answers `(deleted, failed)`."""
    messages = receive_batch(sqs, queue_url, wait_seconds=wait_seconds, batch_size=batch_size)
    return invoke_batch(sqs, queue_url, queue_arn, worker, messages, report_failures=report_failures)


class Environments:
    """A function's execution environments: each runs one invocation at a time; one is created
    (`create(n)`, a cold start) when all are busy and fewer than `limit` exist, and waits idle
    for the next invocation otherwise — Lambda's concurrency, for the event source's batches."""

    def __init__(
        self, create: Callable[[int], LambdaFunction], limit: int, warm: Sequence[LambdaFunction] = ()
    ):
        if limit < 1:
            raise ValueError("limit must be ≥ 1")
        self._create = create
        self.limit = limit
        self._idle: list[LambdaFunction] = list(warm)
        self.created = len(self._idle)
        self._cond = threading.Condition()

    def acquire(self, stop: threading.Event, timeout: float = 0.5) -> LambdaFunction | None:
        """An idle environment (or a new one), or None once `stop` is set."""
        while not stop.is_set():
            with self._cond:
                if self._idle:
                    return self._idle.pop()
                if self.created < self.limit:
                    self.created += 1
                    n = self.created
                    break
                self._cond.wait(timeout)
        else:
            return None
        try:
            return self._create(n)
        except BaseException:
            with self._cond:
                self.created -= 1
                self._cond.notify()
            raise

    def release(self, fn: LambdaFunction) -> None:
        with self._cond:
            self._idle.append(fn)
            self._cond.notify()


# --- the moto host (child process) -------------------------------------------------------


def moto_host_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the moto host process. Prints `MOTO_PORT <n>` on stdout once it serves,
    then runs until its stdin closes (or SIGINT/SIGTERM), writing a last snapshot."""
    parser = argparse.ArgumentParser(prog="gnomon-dev-moto-host")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)

    announce = sys.stdout
    sys.stdout = sys.stderr
    _configure_logging(args.log_level, "moto-host")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    _local_env()
    os.environ.pop("AWS_ENDPOINT_URL", None)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())

    with contextlib.ExitStack() as stack:
        if args.state_dir is not None:
            from gnomon.local.state import state_dir_lock

            try:
                stack.enter_context(state_dir_lock(args.state_dir))
            except TimeoutError as exc:
                log.error("%s", exc)
                return 3
        return _serve_moto(args, announce, stop)


def _serve_moto(args: argparse.Namespace, announce: Any, stop: threading.Event) -> int:
    import boto3
    from botocore.config import Config
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from gnomon.local.state import SNAPSHOT_FILE, StateKeeper

    try:  # moto's DynamoDB has no locking of its own: one request at a time keeps its atomicity
        from gnomon.local.motolock import serialise_moto_dynamodb

        serialise_moto_dynamodb()
    except ImportError:
        log.warning("gnomon.local.motolock is missing: moto's DynamoDB is not serialised")
    try:  # moto's SQS computes O(queue depth) attributes on every send and received message
        from gnomon.local.motosqs import speed_up_moto_sqs

        speed_up_moto_sqs()
    except Exception as exc:  # another moto version: run unpatched, only slower
        log.warning("moto's SQS is not sped up: %r", exc)
    try:  # moto's DynamoDB lists and sorts the whole table for every Query, even of one partition,
        # and writes every attribute value of a response through botocore's model
        from gnomon.local.motodynamo import speed_up_moto_dynamodb_query, speed_up_moto_dynamodb_responses

        speed_up_moto_dynamodb_query()
        speed_up_moto_dynamodb_responses()
    except Exception as exc:  # another moto version: run unpatched, only slower
        log.warning("moto's DynamoDB is not sped up: %r", exc)

    moto_app = DomainDispatcherApplication(create_backend_app)
    ddb_writes = [0]
    keeper: StateKeeper | None = None

    def control(path: str, start_response: Any) -> list[bytes]:
        status, body = "200 OK", dict[str, Any](ok=True)
        try:
            if path == "/_gnomon/restore":
                body = keeper.restore() if keeper is not None else {"tables": {}, "queues": {}}
            elif path == "/_gnomon/save":
                body = {"written": keeper.save(force=True) if keeper is not None else False}
            elif path != "/_gnomon/health":
                status, body = "404 Not Found", {"error": path}
        except Exception as exc:
            log.exception("control %s failed", path)
            status, body = "500 Internal Server Error", {"error": repr(exc)}
        data = json.dumps(body).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_gnomon/"):
            return control(path, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        try:
            return moto_app(environ, start_response)
        finally:
            # Counted after moto applied the request: a snapshot that read the counter
            # before this bump sees the write in its scan or scans again next time.
            if target.startswith("DynamoDB_") and target.rpartition(".")[2] not in _DDB_READS:
                ddb_writes[0] += 1

    server = make_server(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    port = server.server_address[1]
    endpoint = f"http://127.0.0.1:{port}"
    if args.state_dir is not None:
        keeper = StateKeeper(
            path=args.state_dir / SNAPSHOT_FILE,
            ddb_factory=lambda: boto3.client(
                "dynamodb",
                endpoint_url=endpoint,
                region_name=REGION,
                config=Config(retries={"max_attempts": 3, "mode": "standard"}),
            ),
            ddb_writes=lambda: ddb_writes[0],
        )
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    serving.start()

    def lifeline() -> None:
        # EOF on stdin: the parent stopped (or died).
        with contextlib.suppress(Exception):
            while sys.stdin.buffer.read(4096):
                pass
        stop.set()

    threading.Thread(target=lifeline, name="lifeline", daemon=True).start()
    announce.write(f"MOTO_PORT {port}\n")
    announce.flush()
    os.dup2(2, 1)  # nothing else may reach the parent's pipe, not even a stray write to fd 1

    while not stop.wait(1.0):
        pass
    if keeper is not None:
        keeper.close()
    server.shutdown()
    return 0


class MotoHost:
    """The parent's handle on the moto host process."""

    def __init__(self, state_dir: Path | None, log_level: str = "INFO") -> None:
        self.state_dir = state_dir
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        """Start the process (it boots while the caller does other work)."""
        cmd = [sys.executable, "-m", "gnomon.local.devserver", "--moto-host", "--log-level", self.log_level]
        if self.state_dir is not None:
            cmd += ["--state-dir", str(self.state_dir)]
        self.proc = subprocess.Popen(  # nosec B603 # fixed argv: this interpreter, this module
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            start_new_session=True,  # a signal to our process group must not kill it before it saves
        )

    def wait_ready(self, stop: threading.Event, timeout: float = 60.0) -> None:
        """Wait for its `MOTO_PORT` line."""
        if self.proc is None:
            self.spawn()
        assert self.proc is not None
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        buf = b""
        while b"\n" not in buf:
            if stop.is_set():
                raise StartupError("stopped during startup")
            if self.proc.poll() is not None:
                raise StartupError(f"the moto host exited with code {self.proc.returncode} (see above)")
            if time.monotonic() > deadline:
                raise StartupError("the moto host did not start in time")
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 256)
                if not chunk:
                    continue
                buf += chunk
        line = buf.split(b"\n", 1)[0].decode()
        if not line.startswith("MOTO_PORT "):
            raise StartupError(f"unexpected line from the moto host: {line!r}")
        self.port = int(line.split()[1])

    def _control(self, path: str, timeout: float = 120.0) -> dict[str, Any]:
        import httpx

        resp = httpx.post(f"{self.endpoint}{path}", timeout=timeout, trust_env=False)
        data: dict[str, Any] = resp.json()
        if resp.status_code != 200:
            raise StartupError(f"moto host {path}: {data}")
        return data

    def restore(self) -> dict[str, Any]:
        return self._control("/_gnomon/restore")

    def stop(self, timeout: float = 8.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()  # the lifeline: it saves and exits
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("the moto host did not stop in %.0f s; killing it", timeout)
            proc.kill()
            proc.wait(timeout=5)


# --- the HTTP API ---------------------------------------------------------------------------


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], api: LambdaFunction | None) -> None:
        self.api = api  # set before serving
        super().__init__(address, _ApiRequestHandler)


class _ApiRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gnomon-dev"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections
    server: ApiServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per request is logged by _serve (debug)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY_BYTES:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, headers: Sequence[tuple[str, str]], body: bytes, request_id: str) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("apigw-requestid", request_id)
        no_body = self.command == "HEAD" or status in (204, 304) or status < 200
        if not (status in (204, 304) or status < 200):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not no_body and body:
            self.wfile.write(body)

    def _serve(self) -> None:
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._send(
                400,
                [("Content-Type", "application/json")],
                http_bridge.error_body("bad_request", "unreadable body"),
                request_id,
            )
            return
        if body is None:
            self.close_connection = True
            self._send(
                413,
                [("Content-Type", "application/json")],
                http_bridge.error_body("payload_too_large", "the request body is too large"),
                request_id,
            )
            return
        event = http_bridge.build_v2_event(
            self.command,
            self.path,
            self.headers.items(),
            body,
            self.client_address[0],
            request_id=request_id,
            port=self.server.server_address[1],
        )
        try:
            assert self.server.api is not None
            result = self.server.api.invoke(event)
            status, headers, payload = http_bridge.to_http_response(result)
        except Exception as exc:
            log.error("api: %s %s failed:\n%s", self.command, self.path, traceback.format_exc())
            status, headers = 500, [("Content-Type", "application/json")]
            payload = http_bridge.error_body("internal", f"internal error ({type(exc).__name__})")
        self._send(status, headers, payload, request_id)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "api: %s %s -> %d (%.1f ms)",
                self.command,
                self.path,
                status,
                (time.perf_counter() - started) * 1000,
            )

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, QUERY, ...) goes to the API too, which answers 405 in the
        # contract's shape instead of the base class's HTML 501.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)


# --- the stack ------------------------------------------------------------------------------


class DevStack:
    """The running local stack: call `start()`, then `wait()`, then `stop()`."""

    def __init__(self, cfg: DevConfig, out: io.TextIOBase | Any = None) -> None:
        self.cfg = cfg
        self.out = out if out is not None else sys.stdout
        self.stop_event = threading.Event()
        self.moto: MotoHost | None = None
        self.http: ApiServer | None = None
        self.threads: list[threading.Thread] = []
        self.api_url = ""
        self.aws_endpoint = ""
        self._serving = False

    def _say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def start(self) -> None:
        cfg = self.cfg
        t0 = time.perf_counter()
        try:  # a port in use fails at once, before anything else starts
            self.http = ApiServer((cfg.host, cfg.port), None)
        except OSError as exc:
            raise StartupError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}") from None
        if cfg.state_dir is not None:
            cfg.state_dir.mkdir(parents=True, exist_ok=True)
        # moto boots in its own process while this one reads the template.
        self.moto = MotoHost(cfg.state_dir, cfg.log_level)
        self.moto.spawn()
        from gnomon.local import template as tpl

        try:
            template_path = (cfg.template or tpl.default_template_path()).resolve()
            template = tpl.load_template(template_path)
        except (OSError, ValueError) as exc:
            raise StartupError(str(exc)) from None
        root = template_path.parent  # the repository: functions/<name>/ live beside the template
        missing = {API_FUNCTION, TICKER_FUNCTION, WORKER_FUNCTION} - set(tpl.functions(template))
        if missing:
            raise StartupError(f"{template_path} has no {', '.join(sorted(missing))}")

        # 1. moto, fake credentials, the template's resources, the saved state.
        self.moto.wait_ready(self.stop_event)
        self.aws_endpoint = self.moto.endpoint
        log.debug("moto host up at %s (%.2f s)", self.aws_endpoint, time.perf_counter() - t0)
        _local_env()
        os.environ["AWS_ENDPOINT_URL"] = self.aws_endpoint
        # In AWS the ticker runs once a minute, so firings are planned 60 s ahead; here it ticks
        # every --tick-seconds, and a short horizon keeps the queue shallow (moto's SQS does work
        # proportional to queue depth for every message: bench/README.md measured p50 1.05 s at
        # 10 firings/s with 60 s, 0.33 s with 5 s).
        horizon = min(900, max(5, math.ceil(3 * cfg.tick_seconds)))
        res = tpl.create_resources(
            template,
            endpoint_url=self.aws_endpoint,
            region=REGION,
            parameter_overrides={"HorizonSeconds": str(horizon)},
        )
        log.debug("template resources ready (%.2f s)", time.perf_counter() - t0)
        self._check_stop()
        report = self.moto.restore()
        if cfg.state_dir is not None:
            import boto3

            from gnomon.local.state import keep_secrets

            keep_secrets(cfg.state_dir, res, boto3.client("secretsmanager", endpoint_url=self.aws_endpoint))
            log.info(
                "state restored from %s: %d items, %d messages",
                cfg.state_dir,
                sum(report.get("tables", {}).values()),
                sum(report.get("queues", {}).values()),
            )
        self._say(f"gnomon dev aws endpoint {self.aws_endpoint}")

        # 2. The functions' environment (shared by the three), then the handlers.
        env: dict[str, str] = {}
        for logical_id in (API_FUNCTION, TICKER_FUNCTION, WORKER_FUNCTION):
            for key, value in tpl.function_environment(template, logical_id, res).items():
                if key in env and env[key] != value:
                    log.warning(
                        "env %s differs between functions (%r, %r); using the latter", key, env[key], value
                    )
                env[key] = str(value)
        os.environ.update(env)
        from gnomon.local.state import load_or_create_secret

        os.environ.update(
            {
                "GNOMON_DEV_AWS_ENDPOINT": self.aws_endpoint,
                "GNOMON_ALLOW_TARGETS": ",".join(dict.fromkeys([*LOOPBACK_NETWORKS, *cfg.allow_targets])),
                "GNOMON_ALLOW_PYTHON_MODULES": ",".join(dict.fromkeys(cfg.allow_python_modules)),
                "GNOMON_CONSOLE": "on",  # the web console is open on the local stack (gnomon.console)
                "GNOMON_TICK_SECONDS": str(cfg.tick_seconds),  # how far ahead the ticker re-plans
            }
        )
        if "GNOMON_PAGE_TOKEN_SECRET" not in env:  # the template gives it (PageTokenSecret) today
            os.environ["GNOMON_PAGE_TOKEN_SECRET"] = load_or_create_secret(cfg.state_dir)
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
        # CloudWatch EMF lines every tick would drown the dev log; `--log-level debug` keeps them.
        if cfg.log_level != "DEBUG":
            os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

        specs = tpl.functions(template, res)
        api = load_function(root, API_FUNCTION, specs[API_FUNCTION], "gnomon_dev_api")
        # Powertools' resolver keeps the current event in class attributes: one at a time.
        api.lock = threading.Lock()
        ticker = load_function(root, TICKER_FUNCTION, specs[TICKER_FUNCTION], "gnomon_dev_ticker")
        # One module instance per execution environment: one per poller now (warm), more on
        # first need up to --worker-concurrency (a cold start, as in Lambda).
        load_lock = threading.Lock()  # an import edits sys.path

        def worker_environment(i: int) -> LambdaFunction:
            with load_lock:
                return load_function(root, WORKER_FUNCTION, specs[WORKER_FUNCTION], f"gnomon_dev_worker_{i}")

        limit = max(1, cfg.worker_concurrency, cfg.pollers)
        warm = [worker_environment(i) for i in range(1, max(1, cfg.pollers) + 1)]

        log.debug("handlers imported (%.2f s)", time.perf_counter() - t0)

        # 3. HTTP (the port was taken first thing).
        self.http.api = api
        port = self.http.server_address[1]
        shown_host = "127.0.0.1" if cfg.host in ("", _ALL_INTERFACES, "127.0.0.1", "localhost") else cfg.host
        self.api_url = f"http://{shown_host}:{port}"
        self._spawn("gnomon-http", self.http.serve_forever, 0.2)
        self._serving = True

        # 4. The ticker (its Schedule rule), 5. the worker's SQS event source(s).
        rule_arn = f"arn:aws:events:{REGION}:{res.account_id}:rule/gnomon-dev-{TICKER_FUNCTION}"
        self._spawn("gnomon-ticker", self._tick_loop, ticker, rule_arn)
        arn_to_url = {arn: res.queues[lid] for lid, arn in res.queue_arns.items()}
        sources = _sqs_sources(specs[WORKER_FUNCTION].get("events") or {})
        if not sources and FIRING_QUEUE in res.queue_arns:
            sources = [(res.queue_arns[FIRING_QUEUE], 10, True)]
        for queue_arn, batch_size, report_failures in sources:
            queue_url = arn_to_url.get(queue_arn)
            if queue_url is None:
                log.warning("the worker's SQS event names %s, which is not a local queue", queue_arn)
                continue
            # Each queue's batches run in the function's environments (its concurrency is shared).
            envs = Environments(worker_environment, limit, warm)
            warm = []
            for i in range(max(1, cfg.pollers)):
                self._spawn(
                    f"gnomon-poller-{i}",
                    self._poll_loop,
                    envs,
                    queue_url,
                    queue_arn,
                    batch_size,
                    report_failures,
                )

        # 6. Ready.
        self._check_stop()
        log.info("started in %.2f s", time.perf_counter() - t0)
        self._say(f"gnomon dev ready on {self.api_url}")

    def _check_stop(self) -> None:
        if self.stop_event.is_set():
            raise StartupError("stopped during startup")

    def _spawn(self, name: str, target: Callable[..., Any], *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def _tick_loop(self, ticker: LambdaFunction, rule_arn: str) -> None:
        interval = self.cfg.tick_seconds
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            try:
                result = ticker.invoke(scheduled_event(rule_arn))
                log.debug("ticker: %s", result)
            except Exception:
                log.exception("ticker: the handler raised")
            next_at += interval
            now = time.monotonic()
            if next_at < now:  # a slow tick: skip the missed ones, as one rule cannot overlap here
                next_at = now
            self.stop_event.wait(next_at - now)

    def _poll_loop(
        self, envs: Environments, queue_url: str, queue_arn: str, batch_size: int, report: bool
    ) -> None:
        """A poller of the event source mapping: it receives a batch once an environment is free
        for it, hands the batch to that environment on a thread of its own and receives again —
        it does not wait for the batch to finish."""
        import boto3
        from botocore.config import Config

        # A session per thread: creating clients from the shared default session is not thread-safe.
        def client() -> Any:
            return boto3.session.Session().client(
                "sqs",
                endpoint_url=self.aws_endpoint,
                region_name=REGION,
                config=Config(
                    retries={"max_attempts": 2, "mode": "standard"}, read_timeout=30, connect_timeout=5
                ),
            )

        sqs = client()
        local = threading.local()

        def run(env: LambdaFunction, messages: list[dict[str, Any]]) -> None:
            try:
                if not hasattr(local, "sqs"):
                    local.sqs = client()
                invoke_batch(local.sqs, queue_url, queue_arn, env, messages, report_failures=report)
            except Exception as exc:
                log.warning("worker batch: %s", exc)
            finally:
                envs.release(env)

        from concurrent.futures import ThreadPoolExecutor

        # Not joined at the end: a batch whose target never answers must not hold the stop.
        pool = ThreadPoolExecutor(max_workers=envs.limit, thread_name_prefix="gnomon-batch")
        while not self.stop_event.is_set():
            env = envs.acquire(self.stop_event)
            if env is None:
                break
            try:
                messages = receive_batch(sqs, queue_url, wait_seconds=1, batch_size=batch_size)
            except Exception as exc:
                envs.release(env)
                if self.stop_event.is_set():
                    break
                log.warning("worker poller: %s", exc)
                self.stop_event.wait(1.0)
                continue
            if not messages:
                envs.release(env)
                continue
            pool.submit(run, env, messages)
        pool.shutdown(wait=False)

    def wait(self) -> None:
        while not self.stop_event.wait(1.0):
            pass

    def stop(self) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + 5.0
        if self.http is not None:
            if self._serving:  # shutdown() waits for serve_forever: only call it when that runs
                self.http.shutdown()
            self.http.server_close()
        for t in self.threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.warning("%s is still busy; leaving it behind", t.name)
        if self.moto is not None:
            self.moto.stop()


def _configure_logging(level: str, process: str = "gnomon-dev") -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_gnomon_dev", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"%(asctime)s {process} %(levelname)s %(name)s: %(message)s"))
        handler._gnomon_dev = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("botocore", "boto3", "urllib3", "httpx", "httpcore", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def watch_parent(parent: int, stop: threading.Event, every: float = 1.0) -> None:
    """Set `stop` once this process's parent is no longer `parent` (it died: the process was
    handed to another)."""
    while not stop.wait(every):
        if os.getppid() != parent:
            log.info("the parent process (%d) went away: stopping", parent)
            stop.set()
            return


def run(cfg: DevConfig) -> int:
    """Run the stack in the foreground until SIGINT/SIGTERM/SIGHUP. Answers the exit code."""
    if not (cfg.tick_seconds > 0 and math.isfinite(cfg.tick_seconds)):
        raise ValueError("tick_seconds must be a finite number > 0")
    out = sys.stdout
    sys.stdout = sys.stderr  # handlers' prints and Powertools' EMF must not mix with the contract lines
    _configure_logging(cfg.log_level)
    stack = DevStack(cfg, out=out)

    def on_signal(signum: int, _frame: Any) -> None:
        if stack.stop_event.is_set():
            log.info("already stopping")
            return
        log.info("%s: stopping", signal.Signals(signum).name)
        stack.stop_event.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if cfg.exit_with_parent:
        threading.Thread(
            target=watch_parent, args=(os.getppid(), stack.stop_event), name="gnomon-parent", daemon=True
        ).start()

    code = 0
    try:
        try:
            stack.start()
        except StartupError as exc:
            if not stack.stop_event.is_set():
                log.error("gnomon dev: %s", exc)
                code = 1
        except Exception:
            if not stack.stop_event.is_set():
                log.exception("gnomon dev could not start")
                code = 1
        if code == 0:
            stack.wait()
    finally:

        def hung() -> None:
            log.error("shutdown hung; exiting")
            os._exit(code)

        # Stopping is bounded (threads 5 s, the moto host 8 s); this is the last resort.
        watchdog = threading.Timer(14.0, hung)
        watchdog.daemon = True
        watchdog.start()
        stack.stop()
        watchdog.cancel()
        log.info("stopped")
        sys.stdout = out
    return code


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--moto-host":
        sys.exit(moto_host_main(sys.argv[2:]))
    sys.exit("usage: gnomon dev (this module is the local stack; run it through the gnomon CLI)")
