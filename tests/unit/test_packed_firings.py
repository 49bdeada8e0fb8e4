"""Packed firing messages: the ticker sends the firings that become visible in the same second
ten a message; the worker Lambda's handler runs each on its own and sends again, alone, those
that failed — so one failing firing does not bring its nine neighbours back."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from gnomon.ports import OutgoingMessage
from gnomon.services.tick import FIRINGS_PER_MESSAGE, Ticker, pack_firings, unpack_firings
from tests.unit.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[2]


def _firing(n: int, delay: int) -> OutgoingMessage:
    return OutgoingMessage(
        body={"kind": "firing", "schedule_id": f"s{n}", "nominal_time": str(n)}, delay_seconds=delay
    )


def test_firings_of_one_second_are_packed_ten_a_message_and_nothing_else_is() -> None:
    run = OutgoingMessage(body={"kind": "run", "run_id": "r"}, delay_seconds=3)
    messages = [_firing(i, 5) for i in range(23)] + [_firing(100, 7), run]
    packed = pack_firings(messages)
    by_delay = Counter((m.delay_seconds, m.body["kind"]) for m in packed)
    assert by_delay == {(5, "firings"): 3, (7, "firing"): 1, (3, "run"): 1}
    sizes = sorted(len(m.body["firings"]) for m in packed if m.body["kind"] == "firings")
    assert sizes == [3, 10, 10] and FIRINGS_PER_MESSAGE == 10
    carried = [f for m in packed for f in (unpack_firings(m.body) or [m.body])]
    assert sorted(map(json.dumps, carried)) == sorted(json.dumps(m.body) for m in messages)
    assert all(len(json.dumps(m.body)) < 64 * 1024 for m in packed)
    with pytest.raises(ValueError, match="packed"):
        unpack_firings({"kind": "firings", "firings": ["x"]})


def _worker_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gnomon_test_worker_app", REPO / "functions/worker/app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Context:
    function_name, function_version, memory_limit_in_mb = "gnomon-worker", "$LATEST", 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:gnomon-worker"
    aws_request_id, log_group_name, log_stream_name = "0", "/aws/lambda/gnomon", "test"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def _records(messages: list[OutgoingMessage]) -> list[dict[str, Any]]:
    return [
        {"messageId": f"m{i}", "receiptHandle": f"h{i}", "body": json.dumps(m.body), "eventSource": "aws:sqs"}
        for i, m in enumerate(messages)
    ]


@pytest.fixture
def p() -> Pipeline:
    pipe = Pipeline(horizon=900.0)
    pipe.definition()
    return pipe


def test_a_packed_batch_runs_every_firing_once_and_sends_the_failed_ones_again_alone(
    p: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "gnomon")
    for i in range(25):
        p.schedule(f"s{i:02d}", spec={"cron": ["* * * * *"]})
    p.queue.drain()
    ticker = Ticker(
        p.schedule_store,
        p.run_store,
        p.queue,
        p.clock,
        p.s.ticker._compile,
        horizon_seconds=900,
        pack_firings=True,
    )
    p.clock.advance(15 * 60)
    ticker.tick()
    sent = [OutgoingMessage(body=b, delay_seconds=d) for b, d in p.queue.drain()]
    first_second = min(m.delay_seconds for m in sent)
    batch = [m for m in sent if m.delay_seconds == first_second]
    assert [len(m.body["firings"]) for m in batch] == [10, 10, 5]  # 25 firings, 3 messages
    p.clock.advance(first_second + 1)

    worker = _worker_module()
    failing = {"s07", "s13"}
    real_handle = p.s.executor.handle

    def handle(body: dict[str, Any]) -> Any:
        if body["schedule_id"] in failing:
            raise RuntimeError("throttled")
        return real_handle(body)

    resent: list[OutgoingMessage] = []
    monkeypatch.setattr(
        worker,
        "services",
        lambda: SimpleNamespace(
            executor=SimpleNamespace(handle=handle),
            queue=SimpleNamespace(send=resent.extend),
            per_batch=p.s.per_batch,
        ),
    )
    answer = worker.lambda_handler({"Records": _records(batch)}, _Context())
    assert answer == {"batchItemFailures": []}  # no record comes back whole
    assert sorted(m.body["schedule_id"] for m in resent) == sorted(failing)
    assert all(m.delay_seconds == worker.RESEND_DELAY and m.body["kind"] == "firing" for m in resent)
    assert len(p.target.calls) == 23 and len({c.run_id for c in p.target.calls}) == 23
    # the re-sent ones run once they come
    failing.clear()
    for m in resent:
        p.s.executor.handle(m.body)
    assert len(p.target.calls) == 25
    # a send that fails brings the record back whole (its other firings are duplicates then)
    failing.add("s21")
    monkeypatch.setattr(
        worker,
        "services",
        lambda: SimpleNamespace(
            executor=SimpleNamespace(handle=handle),
            queue=SimpleNamespace(send=lambda ms: (_ for _ in ()).throw(RuntimeError("sqs down"))),
            per_batch=p.s.per_batch,
        ),
    )
    answer = worker.lambda_handler({"Records": _records(batch)}, _Context())
    (carrier,) = [i for i, m in enumerate(batch) if any(f["schedule_id"] == "s21" for f in m.body["firings"])]
    assert answer == {"batchItemFailures": [{"itemIdentifier": f"m{carrier}"}]}
    assert len(p.target.calls) == 25  # the others were duplicates: their claims stop them


def test_an_unpacked_record_fails_alone_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    worker = _worker_module()
    failed, handled, whole = worker._process({"messageId": "x", "body": "not json"})
    assert failed == "x" and handled == [] and not whole
