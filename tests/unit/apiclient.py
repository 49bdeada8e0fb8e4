"""Drive the real API Lambda handler with API Gateway HTTP API v2 events, no network."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


def v2_event(method: str, path: str, body: bytes | None, headers: dict[str, str]) -> dict[str, Any]:
    parts = urlsplit(path)
    query: dict[str, str] = {}
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        query[k] = f"{query[k]},{v}" if k in query else v
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "localhost",
            "http": {
                "method": method,
                "path": parts.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "t",
            },
            "requestId": "r",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 0,
            "authorizer": {"iam": {"userArn": "arn:aws:iam::000000000000:user/tester"}},
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = query
    if body is not None:
        event["body"] = body.decode()
    return event


class ApiClient:
    """`request(method, path, json=...)` → Answer, through `lambda_handler`."""

    def __init__(self, handler: Any) -> None:
        self._handler = handler

    def request(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> Answer:
        body = raw if raw is not None else (None if json_body is None else json.dumps(json_body).encode())
        headers = {"content-type": content_type} if body is not None else {}
        result = self._handler(v2_event(method, path, body, headers), None)
        text = result.get("body") or ""
        if result.get("isBase64Encoded"):
            text = base64.b64decode(text).decode()
        parsed = json.loads(text) if text else None
        return Answer(result["statusCode"], parsed, result.get("headers") or {})

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Answer:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any) -> Answer:
        return self.request("PUT", path, body)

    def delete(self, path: str) -> Answer:
        return self.request("DELETE", path)
