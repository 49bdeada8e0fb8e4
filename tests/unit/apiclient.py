"""Drive the real API Lambda handler with API Gateway HTTP API v2 events, no network."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from gnomon.local.http_bridge import build_v2_event

TESTER = "arn:aws:iam::000000000000:user/tester"


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


def v2_event(method: str, path: str, body: bytes | None, headers: dict[str, str]) -> dict[str, Any]:
    """The event API Gateway would send, built by the same bridge the dev stack uses."""
    return build_v2_event(method, path, headers, body, "127.0.0.1", principal_arn=TESTER)


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
