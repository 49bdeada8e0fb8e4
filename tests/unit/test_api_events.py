"""The events and operators endpoints through the real handler (in-memory stores): 202 on
`POST /v1/events`, validation in the contract's error shape, dedup, the operator views and
restart."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from tests.unit.apiclient import ApiClient

HOOK = {"type": "http", "url": "https://example.com/hook"}


@pytest.fixture
def api2(api: ApiClient) -> ApiClient:
    body = {"name": "orders", "target": HOOK, "triggers": [{"event_type": "order.created"}]}
    assert api.post("/v1/definitions", body).status == 201
    assert api.post("/v1/definitions", {"name": "plain", "target": HOOK}).status == 201
    return api


def test_post_event_answers_202_and_records_one_run_per_event(api2: ApiClient) -> None:
    r = api2.post(
        "/v1/events", {"type": "order.created", "key": "o-1", "payload": {"a": 1}, "event_id": "e-1"}
    )
    assert r.status == 202, r.body
    assert r.body["event_id"] == "e-1" and r.body["key"] == "o-1"
    assert r.body["definitions"] == [{"definition": "orders", "seq": 1, "duplicate": False}]
    again = api2.post(
        "/v1/events", {"type": "order.created", "key": "o-1", "payload": {"a": 1}, "event_id": "e-1"}
    )
    assert again.status == 202 and again.body["definitions"][0]["duplicate"] is True
    second = api2.post("/v1/events", {"type": "order.created", "key": "o-1"})
    assert second.body["definitions"][0]["seq"] == 2 and len(second.body["event_id"]) > 0
    runs = api2.get("/v1/runs?definition=orders").body["items"]
    assert len(runs) == 1  # the second event waits for the first
    assert runs[0]["trigger"] == "event" and runs[0]["status"] == "pending"
    run = api2.get(f"/v1/runs/{runs[0]['run_id']}").body
    assert run["input"]["payload"] == {"a": 1} and run["input"]["seq"] == 1
    op = api2.get("/v1/operators/orders")
    assert op.status == 200 and op.body["status"] == "running"
    assert [k["key"] for k in op.body["keys"]] == ["o-1"]
    assert op.body["keys"][0]["pending_events"] == 2


def test_an_event_nobody_listens_to_is_accepted(api2: ApiClient) -> None:
    r = api2.post("/v1/events", {"type": "nobody", "key": "k"})
    assert r.status == 202 and r.body["definitions"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"key": "k"}, "type"),
        ({"type": "t"}, "key"),
        ({"type": "t", "key": ""}, "key"),
        ({"type": "t", "key": "k" * 513}, "key"),
        ({"type": "t", "key": "k", "event_id": "bad id"}, "event_id"),
        ({"type": "t", "key": "k", "extra": 1}, "extra"),
        ({"type": 5, "key": "k"}, "type"),
        ({"type": "t", "key": "k", "payload": "x" * (65 * 1024)}, "payload"),
    ],
)
def test_bad_events_are_422_with_the_field(api2: ApiClient, body: dict[str, object], field: str) -> None:
    r = api2.post("/v1/events", body)
    assert r.status == 422, r.body
    assert r.body["error"]["code"] == "invalid_argument"
    assert field in r.body["error"]["details"][0]["field"]
    assert api2.get("/v1/runs?definition=orders").body["items"] == []


def test_not_json_and_wrong_media_type(api2: ApiClient) -> None:
    assert api2.request("POST", "/v1/events", raw=b"[1]").status == 400
    assert api2.request("POST", "/v1/events", raw=b"{", content_type="application/json").status == 400
    assert api2.request("POST", "/v1/events", raw=b"{}", content_type="text/plain").status == 415


def test_request_id_replays_the_first_answer(api2: ApiClient) -> None:
    body = {"type": "order.created", "key": "o-1", "request_id": "req-1"}
    first = api2.post("/v1/events", body)
    again = api2.post("/v1/events", body)
    assert (first.status, again.status) == (202, 200)
    assert again.body == first.body


def test_operators_list_and_get(api2: ApiClient) -> None:
    r = api2.get("/v1/operators")
    assert r.status == 200
    assert [o["definition"] for o in r.body["items"]] == ["orders"]
    assert r.body["items"][0]["status"] == "idle" and r.body["next_page_token"] is None
    assert r.body["items"][0]["event_types"] == ["order.created"]
    assert api2.get("/v1/operators?page_size=0").status == 400
    assert api2.get("/v1/operators?bogus=1").status == 422
    missing = api2.get("/v1/operators/ghost")
    assert (missing.status, missing.body["error"]["details"]["resource"]) == (404, "definition/ghost")
    plain = api2.get("/v1/operators/plain")
    assert (plain.status, plain.body["error"]["details"]["resource"]) == (404, "operator/plain")


def test_a_halted_key_shows_and_restart_resumes_it(api2: ApiClient) -> None:
    from gnomon.wiring import services

    api2.post("/v1/events", {"type": "order.created", "key": "o-1", "event_id": "e-1"})
    store = services().events.store
    head = store.head("orders", "o-1")
    since = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    error = {"code": "http_500", "message": "boom", "details": None}
    store.update_head(
        replace(head, inflight=None, failures=5, halted=True, since=since, error=error),
        expected_version=head.version,
    )
    op = api2.get("/v1/operators/orders").body
    assert op["status"] == "halted" and op["key"] == "o-1" and op["error"] == error
    assert op["since"] == "2026-12-01T10:00:00Z" and op["halted_keys"] == ["o-1"]
    listed = api2.get("/v1/operators").body["items"][0]
    assert listed["status"] == "halted" and "keys" not in listed
    r = api2.post("/v1/operators/orders/restart", {"key": "o-1"})
    assert r.status == 200, r.body
    assert r.body["restarted"] == ["o-1"] and r.body["status"] == "running"
    runs = api2.get("/v1/runs?definition=orders").body["items"]
    assert len(runs) == 2  # event 1 runs again (a new run)
    assert api2.request("POST", "/v1/operators/orders/restart", raw=b"").status == 200  # empty body = {}
    assert api2.post("/v1/operators/ghost/restart", {}).status == 404
    assert api2.post("/v1/operators/orders/restart", {"key": ""}).status == 422


def test_openapi_documents_the_routes(api2: ApiClient) -> None:
    paths = api2.get("/v1/openapi.json").body["paths"]
    assert {
        "/v1/events",
        "/v1/operators",
        "/v1/operators/{definition}",
        "/v1/operators/{definition}/restart",
    } <= set(paths)


def test_cli_events_and_operators(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from gnomon import wiring
    from gnomon.api.app import lambda_handler
    from gnomon.client import HandlerTransport
    from tests.unit.test_cli import Cli

    monkeypatch.setenv("GNOMON_STORE", "memory")
    monkeypatch.setenv("GNOMON_PAGE_TOKEN_SECRET", "test-secret")
    wiring.services.cache_clear()
    try:
        cli = Cli(monkeypatch, HandlerTransport(lambda_handler))
        body = {"name": "orders", "target": HOOK, "triggers": [{"event_type": "order.created"}]}
        cli.json("definitions", "create", "-d", json.dumps(body))
        sent = cli.json("events", "create", "-d", json.dumps({"type": "order.created", "key": "o-1"}))
        assert sent["definitions"][0]["seq"] == 1
        listed = cli.json("operators", "list")
        items = listed["items"] if isinstance(listed, dict) else listed
        assert [o["definition"] for o in items] == ["orders"]
        assert cli.json("operators", "get", "orders")["status"] == "running"
        assert cli.json("operators", "restart", "orders")["restarted"] == []
        ghost = cli.run("operators", "get", "ghost")
        assert ghost.exit_code == 3
    finally:
        wiring.services.cache_clear()
