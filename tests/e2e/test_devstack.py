"""`gnomon dev` (CONTRACT.md §2): the real stack as a subprocess, plus its pieces in isolation
(the SQS feed's batch-failure rule and the state snapshots, against in-process moto)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws

from gnomon.local import template as tpl
from gnomon.local.devserver import (
    ApiServer,
    DevConfig,
    DevStack,
    Environments,
    LambdaContext,
    LambdaFunction,
    feed_worker_once,
    scheduled_event,
    settle_batch,
    watch_parent,
)
from gnomon.local.state import (
    SNAPSHOT_FILE,
    StateKeeper,
    restore_queues,
    restore_tables,
    snapshot_queues,
    snapshot_tables,
    tables_from_backend,
    tables_from_scan,
)
from tests.e2e.conftest import wait_for

from .conftest import REPO, DevProcess

e2e = pytest.mark.e2e


def _queue_counts(sqs: Any, url: str) -> dict[str, int]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return {k.replace("ApproximateNumberOfMessages", "") or "Visible": int(v) for k, v in attrs.items()}


def _template_names() -> tuple[list[str], list[str]]:
    template = tpl.load_template(REPO / "template.yaml")
    tables = [
        (r.get("Properties") or {}).get("TableName") or f"gnomon-{lid}"
        for lid, r in tpl.resources(template, "AWS::DynamoDB::Table").items()
    ]
    queues = [f"gnomon-{lid}" for lid in tpl.resources(template, "AWS::SQS::Queue")]
    return tables, queues


# --- the running stack ------------------------------------------------------------------------


@e2e
def test_prints_the_endpoint_then_ready(dev_stack: DevProcess) -> None:
    assert len(dev_stack.lines) == 2, dev_stack.lines
    endpoint_line, ready_line = dev_stack.lines
    assert endpoint_line.startswith("gnomon dev aws endpoint http://127.0.0.1:")
    assert int(endpoint_line.rsplit(":", 1)[1]) > 0
    assert ready_line.startswith("gnomon dev ready on http://127.0.0.1:")
    assert int(ready_line.rsplit(":", 1)[1]) > 0  # --port 0 prints the real port


@e2e
def test_health_answers_the_aws_endpoint(dev_stack: DevProcess) -> None:
    r = httpx.get(f"{dev_stack.base_url}/v1/health", timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    assert body["aws_endpoint"] == dev_stack.aws_endpoint
    assert r.headers["content-type"].startswith("application/json")


@e2e
def test_the_endpoint_holds_the_template_tables_and_queues(dev_stack: DevProcess) -> None:
    tables, queues = _template_names()
    assert tables and "gnomon-FiringQueue" in queues
    listed = dev_stack.client("dynamodb").list_tables()["TableNames"]
    assert set(tables) <= set(listed)
    urls = dev_stack.client("sqs").list_queues().get("QueueUrls", [])
    assert set(queues) <= {u.rsplit("/", 1)[1] for u in urls}


@e2e
def test_unknown_path_is_a_contract_404(dev_stack: DevProcess) -> None:
    r = httpx.get(f"{dev_stack.base_url}/v1/no-such-collection", timeout=10)
    assert r.status_code == 404, r.text
    error = r.json()["error"]
    assert error["code"] == "not_found"
    assert set(error) >= {"code", "message", "details"}


@e2e
def test_keep_alive_requests_are_served_quickly(dev_stack: DevProcess) -> None:
    with httpx.Client(base_url=dev_stack.base_url, timeout=10) as client:
        for _ in range(20):
            assert client.get("/v1/health").status_code == 200


@e2e
def test_the_worker_consumes_the_firing_queue(dev_stack: DevProcess) -> None:
    sqs = dev_stack.client("sqs")
    url = sqs.get_queue_url(QueueName="gnomon-FiringQueue")["QueueUrl"]
    # a firing of a schedule that no longer exists: handled (dropped), so the message is deleted
    firing = {
        "kind": "firing",
        "schedule_id": "gone",
        "generation": "1",
        "config_version": 1,
        "nominal_time": "2026-01-01T00:00:00Z",
        "scheduled_time": "2026-01-01T00:00:00Z",
    }
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(firing))

    def drained() -> bool:
        c = _queue_counts(sqs, url)
        return c["Visible"] == 0 and c["NotVisible"] == 0 and c["Delayed"] == 0

    assert wait_for(drained, timeout=10), _queue_counts(sqs, url)
    # a message the worker cannot understand is reported as a batch item failure: it stays
    # in flight until its visibility timeout (and reaches the DLQ after maxReceiveCount)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"e2e": "not a firing"}))
    assert wait_for(lambda: _queue_counts(sqs, url)["NotVisible"] == 1, timeout=10), _queue_counts(sqs, url)


# --- signals and arguments ---------------------------------------------------------------------


@e2e
def test_sigint_to_the_process_group_exits_0(dev_factory: Any) -> None:
    dev = dev_factory()
    assert dev.stop(signal.SIGINT) == 0, dev.stderr_tail()


@e2e
def test_a_target_that_never_answers_does_not_hold_the_exit(dev_factory: Any) -> None:
    import socket

    silent = socket.socket()  # accepts connections (backlog) but never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        dev = dev_factory()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hang"
        with httpx.Client(base_url=dev.base_url, timeout=30) as api:
            r = api.post("/v1/definitions", json={"name": "hang", "target": {"type": "http", "url": url}})
            assert r.status_code == 201, r.text
            run = api.post("/v1/definitions/hang/execute", json={}).json()
            assert wait_for(lambda: api.get(f"/v1/runs/{run['run_id']}").json()["status"] == "running")
        began = time.monotonic()
        assert dev.stop(signal.SIGTERM) == 0, dev.stderr_tail()
        assert time.monotonic() - began < 15
    finally:
        silent.close()


@e2e
@pytest.mark.parametrize("value", ["0", "abc", "-1", "nan"])
def test_tick_seconds_must_be_a_positive_number(value: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "gnomon.cli", "dev", "--port", "0", "--tick-seconds", value],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""


# --- --state-dir --------------------------------------------------------------------------------


def _put_marker(dev: DevProcess, marker: str) -> None:
    dev.client("dynamodb").put_item(
        TableName="gnomon-RequestsTable", Item={"pk": {"S": marker}, "blob": {"B": b"\x00\xff"}}
    )


def _has_marker(dev: DevProcess, marker: str) -> bool:
    got = dev.client("dynamodb").get_item(TableName="gnomon-RequestsTable", Key={"pk": {"S": marker}})
    return got.get("Item", {}).get("blob") == {"B": b"\x00\xff"}


@e2e
def test_state_survives_a_sigterm_restart(dev_factory: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    dev = dev_factory("--state-dir", str(state))
    _put_marker(dev, "sigterm")
    sqs = dev.client("sqs")
    url = sqs.get_queue_url(QueueName="gnomon-FiringQueue")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody='{"later": true}', DelaySeconds=600)
    secret = dev.client("secretsmanager").get_secret_value(SecretId="gnomon-PageTokenSecret")["SecretString"]
    assert dev.stop(signal.SIGTERM) == 0, dev.stderr_tail()
    assert (state / SNAPSHOT_FILE).is_file()

    again = dev_factory("--state-dir", str(state))
    assert _has_marker(again, "sigterm")
    sqs = again.client("sqs")
    url = sqs.get_queue_url(QueueName="gnomon-FiringQueue")["QueueUrl"]
    assert _queue_counts(sqs, url)["Delayed"] >= 1
    assert (
        again.client("secretsmanager").get_secret_value(SecretId="gnomon-PageTokenSecret")["SecretString"]
        == secret
    )


@e2e
def test_state_survives_sigkill_of_everything(dev_factory: Any, tmp_path: Path) -> None:
    """Parent and moto host both SIGKILLed 3 s after a write: the periodic snapshot kept it."""
    state = tmp_path / "state"
    dev = dev_factory("--state-dir", str(state))
    moto_hosts = dev.children()
    assert moto_hosts, "the moto host process was not found"
    _put_marker(dev, "sigkill-all")
    time.sleep(3)
    for pid in moto_hosts:
        os.kill(pid, signal.SIGKILL)
    dev.kill()

    again = dev_factory("--state-dir", str(state))
    assert _has_marker(again, "sigkill-all")


@e2e
def test_state_survives_sigkill_of_the_process_group(dev_factory: Any, tmp_path: Path) -> None:
    """Only the parent dies: the moto host notices, writes a last snapshot and exits."""
    state = tmp_path / "state"
    dev = dev_factory("--state-dir", str(state))
    _put_marker(dev, "sigkill-group")
    dev.kill()

    again = dev_factory("--state-dir", str(state))
    assert _has_marker(again, "sigkill-group")


# --- the pieces, in process -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "raised", "ok", "failed"),
    [
        (None, False, ["a", "b", "c"], []),
        ({}, False, ["a", "b", "c"], []),
        ({"batchItemFailures": []}, False, ["a", "b", "c"], []),
        ({"batchItemFailures": None}, False, ["a", "b", "c"], []),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, False, ["a", "c"], ["b"]),
        ({"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "c"}]}, False, ["b"], ["a", "c"]),
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, False, [], ["a", "b", "c"]),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, False, [], ["a", "b", "c"]),
        ({"batchItemFailures": [{"id": "a"}]}, False, [], ["a", "b", "c"]),
        ("not an object", False, [], ["a", "b", "c"]),
        ({"batchItemFailures": []}, True, [], ["a", "b", "c"]),
    ],
)
def test_settle_batch(result: Any, raised: bool, ok: list[str], failed: list[str]) -> None:
    assert settle_batch(["a", "b", "c"], result, raised=raised) == (ok, failed)


def test_without_report_batch_item_failures_a_return_is_success() -> None:
    assert settle_batch(
        ["a"], {"batchItemFailures": [{"itemIdentifier": "a"}]}, raised=False, report_failures=False
    ) == (
        ["a"],
        [],
    )


def _worker(handler: Any) -> LambdaFunction:
    return LambdaFunction("WorkerFunction", handler=handler, timeout=60, memory_mb=512)


@mock_aws
def test_feed_deletes_all_but_the_failed_messages() -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="firings", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for body in ("ok-1", "fail", "ok-2"):
        sqs.send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageAttributes={"kind": {"DataType": "String", "StringValue": body}},
        )
    seen: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        assert context.get_remaining_time_in_millis() > 0
        seen.extend(event["Records"])
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "fail"
            ]
        }

    assert feed_worker_once(sqs, url, arn, _worker(handler), wait_seconds=0) == (2, 1)
    record = seen[0]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == arn
    assert record["awsRegion"] == "us-east-1"
    assert set(record["attributes"]) >= {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    }
    assert record["messageAttributes"]["kind"]["dataType"] == "String"
    assert record["messageAttributes"]["kind"]["stringValue"] == record["body"]
    assert record["md5OfBody"]
    assert _queue_counts(sqs, url) == {"Visible": 0, "NotVisible": 1, "Delayed": 0}
    sqs.change_message_visibility(
        QueueUrl=url,
        ReceiptHandle=next(r["receiptHandle"] for r in seen if r["body"] == "fail"),
        VisibilityTimeout=0,
    )
    left = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in left] == ["fail"]


@mock_aws
def test_feed_keeps_the_whole_batch_when_the_handler_raises() -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="firings", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=str(i))

    def handler(event: dict[str, Any], context: Any) -> None:
        raise RuntimeError("boom")

    assert feed_worker_once(
        sqs, url, "arn:aws:sqs:us-east-1:123456789012:firings", _worker(handler), wait_seconds=0
    ) == (0, 3)
    assert _queue_counts(sqs, url)["NotVisible"] == 3


def test_environments_are_created_on_need_up_to_the_limit_and_reused() -> None:
    made: list[int] = []

    def create(n: int) -> LambdaFunction:
        made.append(n)
        return _worker(lambda e, c: None)

    stop = threading.Event()
    warm = _worker(lambda e, c: None)
    envs = Environments(create, 2, [warm])
    assert envs.acquire(stop) is warm and made == []  # the warm one first
    second = envs.acquire(stop)
    assert second is not None and made == [2]  # a cold start: the second environment
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(envs.acquire(stop)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and made == [2]  # at the limit: it waits for one to be free
    envs.release(warm)
    waiter.join(5)
    assert got == [warm] and made == [2]  # reused, not created
    stop.set()
    assert envs.acquire(stop) is None


@pytest.mark.parametrize("concurrency", [1, 2])
@mock_aws
def test_a_poller_receives_the_next_batch_while_a_batch_runs(concurrency: int) -> None:
    """With room for two batches, a message sent while the first batch is still inside its
    handler is run at once; with room for one, it waits for the first batch to finish."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="firings", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    release_first, inside = threading.Event(), threading.Event()
    handled: list[str] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        for r in event["Records"]:
            if r["body"] == "slow":
                inside.set()
                release_first.wait(10)
            handled.append(r["body"])
        return {"batchItemFailures": []}

    envs = Environments(lambda n: _worker(handler), concurrency)
    stack = SimpleNamespace(stop_event=threading.Event(), aws_endpoint=None)
    poller = threading.Thread(target=DevStack._poll_loop, args=(stack, envs, url, arn, 10, True), daemon=True)
    poller.start()
    try:
        sqs.send_message(QueueUrl=url, MessageBody="slow")
        assert inside.wait(5)
        sqs.send_message(QueueUrl=url, MessageBody="quick")
        if concurrency == 2:
            assert wait_for(lambda: handled == ["quick"], timeout=5)
        else:
            time.sleep(1.5)
            assert handled == []  # the only environment is busy: the message waits
        release_first.set()
        assert wait_for(lambda: sorted(handled) == ["quick", "slow"], timeout=5)
        assert wait_for(
            lambda: _queue_counts(sqs, url) == {"Visible": 0, "NotVisible": 0, "Delayed": 0}, timeout=5
        )
    finally:
        release_first.set()
        stack.stop_event.set()
        poller.join(5)


def test_watch_parent_stops_when_the_parent_is_another() -> None:
    stop = threading.Event()
    watcher = threading.Thread(target=watch_parent, args=(os.getppid(), stop, 0.05))
    watcher.start()
    time.sleep(0.3)
    assert not stop.is_set()  # still our parent
    stop.set()
    watcher.join(5)
    stop = threading.Event()
    watch_parent(-1, stop, 0.05)  # a parent it never had: it went away
    assert stop.is_set()


def test_exit_with_parent_stops_the_stack_when_its_parent_dies(tmp_path: Path) -> None:
    """A parent starts `gnomon dev --exit-with-parent`, waits for its ready line and dies
    without stopping it: the stack stops by itself (moto host included)."""
    out = tmp_path / "dev.out"
    parent = (
        "import subprocess, sys, time\n"
        f"out = open({str(out)!r}, 'w')\n"
        "p = subprocess.Popen([sys.executable, '-m', 'gnomon.cli', 'dev', '--port', '0', "
        "'--exit-with-parent'], stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, "
        "start_new_session=True)\n"
        "deadline = time.monotonic() + 60\n"
        f"while 'ready' not in open({str(out)!r}).read() and time.monotonic() < deadline:\n"
        "    time.sleep(0.2)\n"
        "print(p.pid, flush=True)\n"
        "import os; os._exit(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", parent], cwd=REPO, capture_output=True, text=True, timeout=90
    )
    pid = int(done.stdout.strip())
    assert "ready" in out.read_text()

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with contextlib.suppress(OSError):  # a zombie waiting for init counts as gone
            return "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
        return False

    try:
        assert wait_for(gone, timeout=30, interval=0.5)
    finally:
        if not gone():
            os.kill(pid, signal.SIGKILL)


def test_scheduled_event_and_context() -> None:
    event = scheduled_event("arn:aws:events:us-east-1:123456789012:rule/tick", now=1_700_000_000.9)
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["time"] == "2023-11-14T22:13:20Z"
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/tick"]
    assert event["detail"] == {} and event["version"] == "0" and event["id"]
    ctx = LambdaContext("fn", timeout_seconds=29)
    assert 28_000 < ctx.get_remaining_time_in_millis() <= 29_000
    assert ctx.invoked_function_arn.endswith(":function:fn")


def test_the_ticker_keeps_ticking_through_exceptions() -> None:
    events: list[dict[str, Any]] = []

    def flaky(event: dict[str, Any], context: Any) -> dict[str, Any]:
        events.append(event)
        if len(events) % 2:
            raise RuntimeError("every other tick fails")
        return {}

    stack = DevStack(DevConfig(tick_seconds=0.05))
    ticker = LambdaFunction("TickerFunction", handler=flaky, timeout=60, memory_mb=512)
    thread = threading.Thread(target=stack._tick_loop, args=(ticker, "arn:aws:events:us-east-1:1:rule/t"))
    thread.start()
    time.sleep(0.5)
    stack.stop_event.set()
    thread.join(timeout=2)
    assert not thread.is_alive()
    assert 5 <= len(events) <= 12
    assert all(e["detail-type"] == "Scheduled Event" for e in events)


def _make_table_and_queue() -> tuple[Any, Any, str]:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.create_table(
        TableName="t",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
    return ddb, sqs, url


def test_snapshot_and_restore_round_trip() -> None:
    items = [
        {
            "pk": {"S": f"k{i}"},
            "n": {"N": str(i)},
            "b": {"B": bytes([i, 255])},
            "ss": {"SS": ["a", "b"]},
            "ns": {"NS": ["1", "2.5"]},
            "flag": {"BOOL": i % 2 == 0},
            "none": {"NULL": True},
            "m": {"M": {"l": {"L": [{"BS": [b"\x01"]}, {"S": "x"}, {"M": {"b": {"B": b"\x00"}}}]}}},
        }
        for i in range(60)  # more than one BatchWriteItem
    ]
    with mock_aws():
        ddb, sqs, url = _make_table_and_queue()
        for item in items:
            ddb.put_item(TableName="t", Item=item)
        sqs.send_message(QueueUrl=url, MessageBody="visible")
        sqs.send_message(QueueUrl=url, MessageBody="delayed", DelaySeconds=600)
        sqs.send_message(QueueUrl=url, MessageBody="in-flight")
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        for m in got:  # keep only "in-flight" in flight
            if m["Body"] != "in-flight":
                sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )
        # Read from moto's objects exactly as Scan answers, and it survives JSON.
        assert tables_from_backend("us-east-1") == tables_from_scan(ddb)
        tables = json.loads(json.dumps(snapshot_tables(ddb)))
        queues = json.loads(json.dumps(snapshot_queues()))
        before = _queue_counts(sqs, url)

    with mock_aws():  # a fresh moto, as after a restart
        ddb, sqs, url = _make_table_and_queue()
        assert restore_tables(ddb, tables) == {"t": 60}
        assert restore_queues(queues) == {"q": 3}
        scanned = ddb.scan(TableName="t")["Items"]
        assert sorted(scanned, key=lambda i: i["pk"]["S"]) == sorted(items, key=lambda i: i["pk"]["S"])
        assert _queue_counts(sqs, url) == before == {"Visible": 1, "NotVisible": 1, "Delayed": 1}
        [visible] = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
        )["Messages"]
        assert visible["Body"] == "visible"
        assert visible["Attributes"]["ApproximateReceiveCount"] == "2"  # counts survive (DLQ redrive)


def test_keeper_writes_only_when_something_changed(tmp_path: Path) -> None:
    with mock_aws():
        ddb, sqs, url = _make_table_and_queue()
        writes = [0]
        keeper = StateKeeper(
            path=tmp_path / SNAPSHOT_FILE, ddb_factory=lambda: ddb, ddb_writes=lambda: writes[0]
        )
        assert keeper.save() is False  # nothing before restore: a failed start never clobbers the file
        keeper.interval = 3600
        keeper.restore()
        assert keeper.save() is True
        assert keeper.save() is False
        sqs.send_message(QueueUrl=url, MessageBody="x")
        assert keeper.save() is True
        ddb.put_item(TableName="t", Item={"pk": {"S": "a"}})
        assert keeper.save() is False  # the write counter did not move: the last scan is reused
        writes[0] += 1
        assert keeper.save() is True
        keeper.close()
        saved = json.loads((tmp_path / SNAPSHOT_FILE).read_text())
        assert saved["dynamodb"]["t"] == [{"pk": {"S": "a"}}]
        assert [m["body"] for m in saved["sqs"]["123456789012/us-east-1/q"]["messages"]] == ["x"]


@contextlib.contextmanager
def _api_server(handler: Any) -> Iterator[str]:
    server = ApiServer(
        ("127.0.0.1", 0), LambdaFunction("ApiFunction", handler=handler, timeout=29, memory_mb=512)
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_http_server_hands_the_api_a_v2_event_and_returns_its_answer() -> None:
    events: list[dict[str, Any]] = []

    def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
        events.append(event)
        assert context.function_name.endswith("ApiFunction")
        assert 0 < context.get_remaining_time_in_millis() <= 29_000
        return {
            "statusCode": 201,
            "headers": {"Content-Type": "application/json"},
            "cookies": ["a=1", "b=2"],
            "body": json.dumps({"query": event.get("queryStringParameters")}),
        }

    with _api_server(echo) as url, httpx.Client(base_url=url) as client:
        r = client.post(
            "/v1/runs?status=a&status=b",
            content=b"\x00\x01",
            headers={"Content-Type": "application/octet-stream", "X-Team": "data", "Cookie": "k=v"},
        )
        assert r.status_code == 201
        assert r.json() == {"query": {"status": "a,b"}}
        assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]
        assert r.headers["apigw-requestid"] == events[0]["requestContext"]["requestId"]

        chunked = client.put(
            "/v1/x", content=iter([b'{"a":', b" 1}"]), headers={"Content-Type": "application/json"}
        )
        assert chunked.status_code == 201

    first, second = events
    assert first["rawPath"] == "/v1/runs"
    assert first["requestContext"]["http"]["method"] == "POST"
    assert first["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
    assert first["headers"]["x-team"] == "data"
    assert first["cookies"] == ["k=v"]
    assert first["isBase64Encoded"] is True and base64.b64decode(first["body"]) == b"\x00\x01"
    assert second["body"] == '{"a": 1}' and second["isBase64Encoded"] is False


def test_a_handler_exception_is_a_500_in_the_contract_shape() -> None:
    def broken(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    with _api_server(broken) as url:
        r = httpx.get(f"{url}/v1/health", timeout=10)
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal"
    assert r.json()["error"]["details"] == {}


def test_a_malformed_handler_answer_is_a_500_too() -> None:
    with _api_server(lambda event, context: {"statusCode": "teapot"}) as url:
        r = httpx.get(f"{url}/v1/health", timeout=10)
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal"
