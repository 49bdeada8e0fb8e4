"""HTTP request ⇄ API Gateway HTTP API v2 event (gnomon.local.http_bridge)."""

from __future__ import annotations

import base64
import json

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from gnomon.local.http_bridge import DEV_PRINCIPAL_ARN, build_v2_event, error_body, to_http_response


def _event(method="GET", path="/v1/health", headers=(), body=b"", **kw):
    return build_v2_event(method, path, list(headers), body, "10.1.2.3", **kw)


@pytest.mark.parametrize(
    ("path", "raw", "params"),
    [
        (
            "/v1/runs?status=failed&status=running&x=1",
            "status=failed&status=running&x=1",
            {"status": "failed,running", "x": "1"},
        ),
        ("/v1/runs?q=a%20b&q=c%2Cd", "q=a%20b&q=c%2Cd", {"q": "a b,c,d"}),
        ("/v1/runs?empty=&flag", "empty=&flag", {"empty": "", "flag": ""}),
        ("/v1/runs?a=1#frag", "a=1", {"a": "1"}),
    ],
)
def test_query_strings(path, raw, params):
    event = _event(path=path)
    assert event["rawPath"] == "/v1/runs"
    assert event["rawQueryString"] == raw
    assert event["queryStringParameters"] == params


def test_no_query_string_leaves_parameters_out():
    event = _event(path="/v1/health")
    assert event["rawQueryString"] == ""
    assert "queryStringParameters" not in event
    assert "pathParameters" not in event
    assert "body" not in event
    assert event["isBase64Encoded"] is False


def test_path_is_percent_decoded_like_http_apis():
    event = _event(path="/v1/schedules/a%20b")
    assert event["rawPath"] == "/v1/schedules/a b"
    assert event["requestContext"]["http"]["path"] == "/v1/schedules/a b"


def test_headers_are_lower_cased_and_repeats_joined():
    event = _event(
        headers=[
            ("Content-Type", "application/json"),
            ("X-Team", "data"),
            ("x-team", "ops"),
            ("User-Agent", "pytest/1"),
            ("Host", "127.0.0.1:8080"),
        ]
    )
    h = event["headers"]
    assert h["content-type"] == "application/json"
    assert h["x-team"] == "data,ops"
    assert all(k == k.lower() for k in h)
    assert h["x-forwarded-for"] == "10.1.2.3"
    assert event["requestContext"]["http"]["userAgent"] == "pytest/1"
    assert event["requestContext"]["domainName"] == "127.0.0.1:8080"


def test_cookies_move_out_of_the_headers():
    event = _event(headers=[("Cookie", "a=1; b=2"), ("cookie", "c=3")])
    assert event["cookies"] == ["a=1", "b=2", "c=3"]
    assert "cookie" not in event["headers"]


def test_text_body_stays_text():
    body = json.dumps({"name": "ünïcode"}).encode()
    event = _event("POST", headers=[("Content-Type", "application/json; charset=utf-8")], body=body)
    assert event["isBase64Encoded"] is False
    assert json.loads(event["body"]) == {"name": "ünïcode"}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/octet-stream", b"\x00\x01\xff"),
        ("application/json", b"\xff\xfe not utf-8"),
        (None, b"{}"),
    ],
)
def test_other_bodies_are_base64(content_type, body):
    headers = [("Content-Type", content_type)] if content_type else []
    event = _event("PUT", headers=headers, body=body)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body


def test_request_context():
    event = _event("post", path="/v1/x?a=1", request_id="rid-1", now=1_700_000_000.25, port=8080)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    ctx = event["requestContext"]
    assert ctx["http"] == {
        "method": "POST",
        "path": "/v1/x",
        "protocol": "HTTP/1.1",
        "sourceIp": "10.1.2.3",
        "userAgent": "",
    }
    assert ctx["requestId"] == "rid-1"
    assert ctx["routeKey"] == "$default"
    assert ctx["stage"] == "$default"
    assert ctx["timeEpoch"] == 1_700_000_000_250
    assert ctx["time"] == "14/Nov/2023:22:13:20 +0000"
    assert ctx["authorizer"]["iam"]["userArn"] == DEV_PRINCIPAL_ARN
    assert ctx["accountId"] and ctx["apiId"]
    assert event["headers"]["x-forwarded-port"] == "8080"


def test_powertools_reads_the_event():
    body = b'{"a": 1}'
    event = APIGatewayProxyEventV2(
        _event(
            "POST",
            path="/v1/runs?status=a&status=b",
            headers=[("Content-Type", "application/json"), ("Cookie", "k=v")],
            body=body,
        )
    )
    assert event.http_method == "POST"
    assert event.path == "/v1/runs"
    assert event.query_string_parameters == {"status": "a,b"}
    assert event.json_body == {"a": 1}
    assert event.cookies == ["k=v"]
    assert event.request_context.authorizer.iam.user_arn == DEV_PRINCIPAL_ARN

    binary = APIGatewayProxyEventV2(_event("POST", headers=[("Content-Type", "image/png")], body=b"\x89PNG"))
    assert binary.is_base64_encoded
    assert base64.b64decode(binary.body) == b"\x89PNG"


def test_proxy_response():
    status, headers, body = to_http_response(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "application/json", "Content-Length": "999", "X-Flag": True},
            "multiValueHeaders": {"X-Multi": ["a", "b"]},
            "cookies": ["a=1; Path=/", "b=2"],
            "body": '{"ok":true}',
            "isBase64Encoded": False,
        }
    )
    assert status == 201
    assert ("Content-Type", "application/json") in headers
    assert ("X-Flag", "true") in headers
    assert [v for k, v in headers if k == "X-Multi"] == ["a", "b"]
    assert [v for k, v in headers if k == "Set-Cookie"] == ["a=1; Path=/", "b=2"]
    assert not any(k.lower() == "content-length" for k, _ in headers)
    assert body == b'{"ok":true}'


def test_base64_and_empty_responses():
    assert (
        to_http_response(
            {"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True}
        )[2]
        == b"\x00\x01"
    )
    assert to_http_response({"statusCode": 204}) == (204, [], b"")


def test_a_plain_value_is_a_json_200():
    assert to_http_response({"hello": "world"}) == (
        200,
        [("content-type", "application/json")],
        b'{"hello":"world"}',
    )
    assert to_http_response(["a"])[2] == b'["a"]'


@pytest.mark.parametrize("bad", ["abc", None, 99, 600])
def test_malformed_status_is_rejected(bad):
    with pytest.raises(ValueError):
        to_http_response({"statusCode": bad})


def test_error_body_shape():
    assert json.loads(error_body("internal", "boom")) == {
        "error": {"code": "internal", "message": "boom", "details": {}}
    }
