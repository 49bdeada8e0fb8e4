"""The client's SigV4 signatures, checked from the outside: against AWS's published test vector,
and against botocore's own signer re-signing exactly what went out on the wire (so nothing that
httpx adds or changes after signing can break a signature API Gateway checks)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import time_machine
from botocore.auth import SigV4Auth as BotoSigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gnomon.adapters.sigv4 import SigV4Auth
from gnomon.client import Client

# AWS Signature Version 4 test suite ("get-vanilla" / "post-vanilla"), as published by AWS and
# shipped in botocore's tests: the example credentials, 2015-08-30T12:36:00Z, us-east-1, service
# "service".
VECTOR_TIME = datetime(2015, 8, 30, 12, 36, tzinfo=UTC)
VECTOR_KEY = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
VECTORS = [
    ("GET", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("POST", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
]


class _Session:
    """A boto3-session stand-in holding fixed credentials."""

    region_name = "us-east-1"

    def __init__(self, access: str, secret: str, token: str | None = None) -> None:
        self.creds = Credentials(access, secret, token)

    def get_credentials(self) -> Credentials:
        return self.creds


@pytest.mark.parametrize(("method", "signature"), VECTORS)
def test_the_aws_test_suite_vector(method: str, signature: str) -> None:
    auth = SigV4Auth(region="us-east-1", session=_Session(*VECTOR_KEY), service="service")
    request = httpx.Request(method, "https://example.amazonaws.com/")
    with time_machine.travel(VECTOR_TIME, tick=False):
        auth.sign(request)
    assert request.headers["X-Amz-Date"] == "20150830T123600Z"
    assert request.headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={signature}"
    )


def _resign(sent: httpx.Request, session: _Session) -> str:
    """What botocore signs for the request as it went out: its method, URL, body and the
    headers our Authorization names as signed, at the X-Amz-Date it carries."""
    signed = sent.headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    headers = {h: sent.headers[h] for h in signed if h not in ("x-amz-date", "x-amz-security-token")}
    again = AWSRequest(method=sent.method, url=str(sent.url), data=sent.content or None, headers=headers)
    when = datetime.strptime(sent.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    with time_machine.travel(when, tick=False):
        BotoSigV4Auth(session.get_credentials(), "execute-api", "eu-west-1").add_auth(again)
    assert again.headers["X-Amz-Date"] == sent.headers["X-Amz-Date"]
    return str(again.headers["Authorization"])


CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("post", "/v1/schedules/nightly/pause", {"note": "maintenance — ünïcode"}),
    ("get", "/v1/runs", {"schedule": "nightly", "status": "failed", "from": "2026-12-01T00:00:00+02:00"}),
    ("get", "/v1/runs/nightly:1a2b3c:20261201T100000Z", {}),
    ("post", "/v1/definitions/report/execute", {"input": {"a": [1, 2, {"b": None}]}}),
    ("delete", "/v1/schedules/nightly", {}),
]


@pytest.mark.parametrize(("verb", "path", "args"), CALLS)
def test_what_goes_on_the_wire_verifies_with_botocore(verb: str, path: str, args: dict[str, Any]) -> None:
    session = _Session("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token")
    sent: list[httpx.Request] = []

    def transport(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    url = "https://abc123.execute-api.eu-west-1.amazonaws.com"
    with Client(url, SigV4Auth(session=session), transport=httpx.MockTransport(transport)) as client:
        if verb == "post":
            client.post(path, args)
        elif verb == "get":
            client.get(path, **args)
        else:
            client.delete(path)
    (request,) = sent
    assert request.headers["X-Amz-Security-Token"] == "session-token"
    assert request.headers["Authorization"] == _resign(request, session)
    # and a byte changed on the way fails the comparison (the check can fail)
    tampered = httpx.Request(
        request.method, request.url, headers=request.headers, content=request.content + b" "
    )
    if request.content:
        assert tampered.headers["Authorization"] != _resign(tampered, session)


def test_an_execute_api_url_names_the_region_to_sign_for() -> None:
    # AWS_REGION=us-east-1 in the shell must not sign a request to an API in eu-west-1 for us-east-1
    auth = SigV4Auth(session=_Session(*VECTOR_KEY))  # its region: us-east-1
    assert auth.region_for(httpx.URL("https://abc.execute-api.eu-west-1.amazonaws.com/v1")) == "eu-west-1"
    assert auth.region_for(httpx.URL("https://api.example.com/v1")) == "us-east-1"  # a custom domain
    assert (
        SigV4Auth(region="ap-south-1", session=_Session(*VECTOR_KEY)).region_for(
            httpx.URL("https://abc.execute-api.eu-west-1.amazonaws.com")
        )
        == "ap-south-1"
    )  # said explicitly
