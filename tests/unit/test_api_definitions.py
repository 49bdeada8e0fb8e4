"""The management API for definitions, through the real handler over in-memory stores."""

from __future__ import annotations

import pytest

from tests.unit.apiclient import ApiClient

HOOK = {"type": "http", "url": "https://example.com/hook"}


def definition(name: str = "nightly", **extra: object) -> dict[str, object]:
    return {"name": name, "target": HOOK, **extra}


def test_create_answers_defaults_and_the_signing_secret_once(api: ApiClient) -> None:
    r = api.post("/v1/definitions", definition(tags=["reports"]))
    assert r.status == 201, r.body
    assert r.body["version"] == 1
    assert r.body["retry"] == {
        "max_attempts": 3,
        "initial_interval_seconds": 1,
        "backoff_coefficient": 2.0,
        "maximum_interval_seconds": 300,
        "non_retryable_errors": [],
    }
    assert r.body["target"]["method"] == "POST"
    assert r.body["timeout_seconds"] == 60 and r.body["history"] == {"retention_days": 30, "mode": "on"}
    assert r.body["max_consecutive_failures"] == 5 and r.body["triggers"] == []
    assert len(r.body["signing_secret"]) >= 32
    assert r.body["updated_by"] == "arn:aws:iam::000000000000:user/tester"
    got = api.get("/v1/definitions/nightly")
    assert got.status == 200 and "signing_secret" not in got.body
    assert got.body["created_at"].endswith("Z")


def test_duplicate_name_is_already_exists(api: ApiClient) -> None:
    assert api.post("/v1/definitions", definition()).status == 201
    r = api.post("/v1/definitions", definition())
    assert (r.status, r.body["error"]["code"]) == (409, "already_exists")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "target": HOOK, "colour": "red"}, "colour"),
        ({"name": "x"}, "target"),
        ({"target": HOOK}, "name"),
        ({"name": "-bad", "target": HOOK}, "name"),
        ({"name": "x" * 81, "target": HOOK}, "name"),
        ({"name": "x", "target": {"type": "http", "url": "ftp://example.com"}}, "target.url"),
        ({"name": "x", "target": {"type": "http", "url": "http://169.254.169.254/latest"}}, "target.url"),
        ({"name": "x", "target": {"type": "http", "url": "http://2852039166/"}}, "target.url"),
        ({"name": "x", "target": {"type": "http", "url": "http://[::ffff:169.254.169.254]/"}}, "target.url"),
        ({"name": "x", "target": {"type": "http", "url": "http://10.0.0.1/"}}, "target.url"),
        ({"name": "x", "target": {"type": "http", "url": "http://127.0.0.1/"}}, "target.url"),
        ({"name": "x", "target": {"type": "http", "url": "https://e.com", "method": "GET"}}, "target.method"),
        (
            {"name": "x", "target": {"type": "http", "url": "https://e.com", "headers": {"a b": "1"}}},
            "target.headers",
        ),
        (
            {"name": "x", "target": {"type": "http", "url": "https://e.com", "headers": {"X": "a\r\nb"}}},
            "target.headers",
        ),
        ({"name": "x", "target": {"type": "carrier-pigeon"}}, "target"),
        ({"name": "x", "target": HOOK, "timeout_seconds": 0}, "timeout_seconds"),
        ({"name": "x", "target": HOOK, "timeout_seconds": 841}, "timeout_seconds"),
        ({"name": "x", "target": HOOK, "retry": {"max_attempts": 0}}, "retry.max_attempts"),
        ({"name": "x", "target": HOOK, "retry": {"backoff_coefficient": 0.5}}, "retry.backoff_coefficient"),
        (
            {"name": "x", "target": HOOK, "retry": {"maximum_interval_seconds": 3601}},
            "retry.maximum_interval_seconds",
        ),
        ({"name": "x", "target": HOOK, "input_schema": {"type": 12}}, "input_schema"),
        ({"name": "x", "target": {"type": "python", "function": "os.system"}}, "target.function"),
        ({"name": "x", "target": HOOK, "tags": "reports"}, "tags"),
    ],
)
def test_bad_definitions_are_422_naming_the_field(
    api: ApiClient, body: dict[str, object], field: str
) -> None:
    r = api.post("/v1/definitions", body)
    assert r.status == 422, r.body
    assert r.body["error"]["code"] == "invalid_argument"
    assert r.body["error"]["details"][0]["field"] == field, r.body
    assert api.get("/v1/definitions").body["items"] == []


def test_server_owned_fields_are_ignored_so_a_get_body_can_be_put_back(api: ApiClient) -> None:
    r = api.post(
        "/v1/definitions", definition(version=7, created_at="1999-01-01T00:00:00Z", signing_secret="x")
    )
    assert r.status == 201 and r.body["version"] == 1 and r.body["signing_secret"] != "x"
    body = api.get("/v1/definitions/nightly").body
    body["description"] = "changed"
    put = api.put("/v1/definitions/nightly", body)
    assert put.status == 200, put.body
    assert (put.body["version"], put.body["description"]) == (2, "changed")


def test_replace_with_a_stale_version_is_a_conflict_carrying_the_current(api: ApiClient) -> None:
    api.post("/v1/definitions", definition())
    assert api.put("/v1/definitions/nightly", definition(description="a", version=1)).status == 200
    r = api.put("/v1/definitions/nightly", definition(description="b", version=1))
    assert (r.status, r.body["error"]["code"]) == (409, "conflict")
    assert r.body["error"]["details"]["current"]["version"] == 2
    assert r.body["error"]["details"]["current"]["description"] == "a"
    assert api.get("/v1/definitions/nightly").body["description"] == "a"


def test_replace_checks_name_and_existence(api: ApiClient) -> None:
    r = api.put("/v1/definitions/ghost", definition("ghost"))
    assert (r.status, r.body["error"]["details"]["resource"]) == (404, "definition/ghost")
    api.post("/v1/definitions", definition())
    r = api.put("/v1/definitions/nightly", definition("other"))
    assert (r.status, r.body["error"]["details"][0]["field"]) == (422, "name")


def test_versions_are_an_audit_trail_newest_first(api: ApiClient) -> None:
    api.post("/v1/definitions", definition())
    api.put("/v1/definitions/nightly", definition(description="two", identity="alice"))
    api.put("/v1/definitions/nightly", definition(description="three"))
    r = api.get("/v1/definitions/nightly/versions")
    assert r.status == 200
    assert [v["version"] for v in r.body["items"]] == [3, 2, 1]
    assert r.body["items"][1]["identity"] == "alice"
    assert all(v["updated_by"].startswith("arn:aws:iam::") and v["updated_at"] for v in r.body["items"])
    api.delete("/v1/definitions/nightly")
    assert [v["version"] for v in api.get("/v1/definitions/nightly/versions").body["items"]] == [3, 2, 1]


def test_list_is_sorted_paginated_and_filtered_by_tag(api: ApiClient) -> None:
    for name in ["e", "b", "d", "a", "c"]:
        api.post("/v1/definitions", definition(name, tags=["odd"] if name in "ace" else []))
    seen, token = [], None
    while True:
        path = "/v1/definitions?page_size=2" + (f"&page_token={token}" if token else "")
        r = api.get(path)
        assert r.status == 200
        seen += [d["name"] for d in r.body["items"]]
        token = r.body["next_page_token"]
        if token is None:
            break
    assert seen == ["a", "b", "c", "d", "e"]
    assert [d["name"] for d in api.get("/v1/definitions?tag=odd").body["items"]] == ["a", "c", "e"]


def test_page_tokens_are_tamper_proof_and_bound_to_filters(api: ApiClient) -> None:
    for name in "abc":
        api.post("/v1/definitions", definition(name))
    token = api.get("/v1/definitions?page_size=1").body["next_page_token"]
    assert token
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for path in (
        f"/v1/definitions?page_token={forged}",
        "/v1/definitions?page_token=garbage",
        f"/v1/definitions?page_token={token}&tag=x",
    ):
        r = api.get(path)
        assert (r.status, r.body["error"]["code"]) == (400, "invalid_page_token"), path


@pytest.mark.parametrize("size", ["0", "1001", "abc", "-1"])
def test_bad_page_size_is_400(api: ApiClient, size: str) -> None:
    r = api.get(f"/v1/definitions?page_size={size}")
    assert (r.status, r.body["error"]["code"]) == (400, "bad_request")


def test_unknown_query_parameter_is_422(api: ApiClient) -> None:
    r = api.get("/v1/definitions?colour=red")
    assert (r.status, r.body["error"]["details"][0]["field"]) == (422, "query.colour")


def test_body_rules(api: ApiClient) -> None:
    r = api.request("POST", "/v1/definitions", raw=b"{not json")
    assert (r.status, r.body["error"]["code"]) == (400, "bad_request")
    r = api.request("POST", "/v1/definitions", raw=b"[1, 2]")
    assert (r.status, r.body["error"]["code"]) == (400, "bad_request")
    r = api.request("POST", "/v1/definitions", raw=b'{"name": "x"}', content_type="text/plain")
    assert (r.status, r.body["error"]["code"]) == (415, "unsupported_media_type")
    big = b'{"name": "x", "description": "' + b"a" * (256 * 1024) + b'"}'
    r = api.request("POST", "/v1/definitions", raw=big)
    assert (r.status, r.body["error"]["code"]) == (413, "payload_too_large")
    r = api.request("POST", "/v1/definitions", raw=b"")
    assert (r.status, r.body["error"]["code"]) == (422, "invalid_argument")


def test_unknown_route_is_404_and_wrong_method_405(api: ApiClient) -> None:
    r = api.get("/v1/nothing-here")
    assert (r.status, r.body["error"]["code"]) == (404, "not_found")
    r = api.request("PATCH", "/v1/definitions", {})
    assert (r.status, r.body["error"]["code"]) == (405, "method_not_allowed")
    r = api.get("/v1/definitions/ghost")
    assert r.body["error"] == {
        "code": "not_found",
        "message": "definition/ghost not found",
        "details": {"resource": "definition/ghost"},
    }


def test_request_id_replays_and_refuses_reuse_with_another_body(api: ApiClient) -> None:
    first = api.post("/v1/definitions", definition(request_id="req-1"))
    assert first.status == 201
    again = api.post("/v1/definitions", definition(request_id="req-1"))
    assert again.status == 200 and again.body == first.body
    other = api.post("/v1/definitions", definition("other", request_id="req-1"))
    assert (other.status, other.body["error"]["code"]) == (409, "conflict")
    assert api.get("/v1/definitions/other").status == 404


def test_openapi_lists_every_route(api: ApiClient) -> None:
    from gnomon.api.app import app

    doc = api.get("/v1/openapi.json").body
    assert doc["openapi"].startswith("3.1")
    served = {(r.method.lower(), r.openapi_path) for r in app._static_routes + app._dynamic_routes}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served <= documented
    assert "DefinitionBody" in doc["components"]["schemas"]


def test_timeouts_depend_on_the_target(api: ApiClient) -> None:
    r = api.post("/v1/definitions", definition("push", timeout_seconds=841))
    assert (r.status, r.body["error"]["details"][0]["field"]) == (422, "timeout_seconds")
    task = {"name": "long", "target": {"type": "task", "topic": "reports"}}
    r = api.post("/v1/definitions", task)
    assert r.status == 201 and r.body["timeout_seconds"] == 7 * 24 * 3600
    r = api.post("/v1/definitions", {**task, "name": "long2", "timeout_seconds": 86400})
    assert r.status == 201 and r.body["timeout_seconds"] == 86400
    assert api.post("/v1/definitions", definition()).body["timeout_seconds"] == 60
    r = api.post(
        "/v1/schedules",
        {
            "schedule_id": "s",
            "definition": "nightly",
            "spec": {"cron": ["* * * * *"]},
            "policies": {"timeout_seconds": 900},
        },
    )
    assert (r.status, r.body["error"]["details"][0]["field"]) == (422, "policies.timeout_seconds")
    r = api.post(
        "/v1/schedules",
        {
            "schedule_id": "s",
            "definition": "long",
            "spec": {"cron": ["* * * * *"]},
            "policies": {"timeout_seconds": 900},
        },
    )
    assert r.status == 201, r.body
