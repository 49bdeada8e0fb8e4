"""HTTP request ⇄ API Gateway HTTP API (payload format 2.0) event, as pure functions.

`build_v2_event` shapes a request the way API Gateway hands it to a Lambda proxy integration
on the `$default` route; `to_http_response` reads the handler's answer back the way API Gateway
does (a dict with `statusCode`, or any other JSON value as a 200 `application/json` body).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

API_ACCOUNT_ID = "123456789012"  # moto's default account: the one that owns the local resources
DEV_ACCOUNT_ID = "000000000000"  # the local caller's account
DEV_API_ID = "gnomondev"
DEV_PRINCIPAL_ARN = f"arn:aws:iam::{DEV_ACCOUNT_ID}:user/gnomon-dev"
DEV_USER_ID = "AIDAGNOMONDEVLOCAL000"
DEV_ACCESS_KEY = "AKIAGNOMONDEVLOCAL00"

_TEXT_TYPES = (
    "application/json",
    "application/javascript",
    "application/xml",
    "application/x-www-form-urlencoded",
    "application/yaml",
    "application/x-yaml",
    "application/graphql",
)
# Hop-by-hop or framing headers the server computes itself.
_DROP_RESPONSE_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


def _is_text(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return (
        media.startswith("text/") or media in _TEXT_TYPES or media.endswith("+json") or media.endswith("+xml")
    )


def _headers_items(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    if isinstance(headers, Mapping):
        return [(str(k), str(v)) for k, v in headers.items()]
    # e.g. http.client.HTTPMessage / email.message.Message: repeated names kept
    items = getattr(headers, "items", None)
    if callable(items):
        return [(str(k), str(v)) for k, v in items()]
    return [(str(k), str(v)) for k, v in headers]


def build_v2_event(
    method: str,
    path_with_query: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body_bytes: bytes | None,
    source_ip: str,
    *,
    request_id: str | None = None,
    now: float | None = None,
    port: int | None = None,
    account_id: str = API_ACCOUNT_ID,
    api_id: str = DEV_API_ID,
    principal_arn: str = DEV_PRINCIPAL_ARN,
) -> dict[str, Any]:
    """The API Gateway HTTP API v2.0 event for one request on the `$default` route.

    The path is percent-decoded as HTTP APIs do; headers are lower-cased and repeats comma-joined; `Cookie` headers move to `cookies`;
    repeated query keys are comma-joined in `queryStringParameters` (absent without a query);
    a body is passed as text when its content type is textual and it decodes as UTF-8, else
    base64 with `isBase64Encoded: true`. The caller is a fixed local IAM principal.
    """
    now = time.time() if now is None else now
    request_id = request_id or str(uuid.uuid4())
    target, _, raw_query = path_with_query.partition("?")
    raw_query = raw_query.split("#", 1)[0]
    # HTTP APIs hand the path over percent-decoded (REST APIs and function URLs do not).
    path = unquote(target.split("#", 1)[0]) or "/"

    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in _headers_items(headers):
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    # API Gateway adds the forwarding headers.
    merged["x-forwarded-for"] = (
        f"{merged['x-forwarded-for']}, {source_ip}" if "x-forwarded-for" in merged else source_ip
    )
    merged.setdefault("x-forwarded-proto", "http")
    if port is not None:
        merged.setdefault("x-forwarded-port", str(port))

    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value

    domain = merged.get("host") or "127.0.0.1"
    dt = datetime.fromtimestamp(now, UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": merged,
        "requestContext": {
            "accountId": account_id,
            "apiId": api_id,
            "authorizer": {
                "iam": {
                    "accessKey": DEV_ACCESS_KEY,
                    "accountId": DEV_ACCOUNT_ID,
                    "callerId": DEV_USER_ID,
                    "cognitoIdentity": None,
                    "principalOrgId": None,
                    "userArn": principal_arn,
                    "userId": DEV_USER_ID,
                }
            },
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0].split(":", 1)[0],
            "http": {
                "method": method.upper(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": dt.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if body_bytes:
        text: str | None = None
        if _is_text(merged.get("content-type")):
            try:
                text = body_bytes.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is not None:
            event["body"] = text
        else:
            event["body"] = base64.b64encode(body_bytes).decode("ascii")
            event["isBase64Encoded"] = True
    return event


def to_http_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) for a Lambda proxy answer, as API Gateway (payload 2.0) reads it.

    A dict with `statusCode` is a proxy response: `headers` (values may be comma-joined),
    `multiValueHeaders`, `cookies` (each becomes a `Set-Cookie`), `body` and `isBase64Encoded`.
    Anything else is serialized as the JSON body of a 200. Raises `ValueError` on a malformed
    proxy response (API Gateway answers those with a 500 too).
    """
    if not (isinstance(result, Mapping) and "statusCode" in result):
        body = json.dumps(result, separators=(",", ":")).encode()
        return 200, [("content-type", "application/json")], body

    try:
        status = int(result["statusCode"])
    except (TypeError, ValueError):
        raise ValueError(f"statusCode is not an integer: {result.get('statusCode')!r}") from None
    if not 100 <= status <= 599:
        raise ValueError(f"statusCode out of range: {status}")

    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in (result.get("headers") or {}).items():
        if name.lower() in _DROP_RESPONSE_HEADERS:
            continue
        seen.add(name.lower())
        out.append((str(name), _header_value(value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        if name.lower() in _DROP_RESPONSE_HEADERS or name.lower() in seen:
            continue
        vals = values if isinstance(values, list | tuple) else [values]
        out.extend((str(name), _header_value(v)) for v in vals)
    out.extend(("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or [])

    raw = result.get("body")
    if raw is None:
        body_bytes = b""
    elif result.get("isBase64Encoded"):
        body_bytes = base64.b64decode(raw)
    elif isinstance(raw, bytes):
        body_bytes = raw
    elif isinstance(raw, str):
        body_bytes = raw.encode("utf-8")
    else:
        body_bytes = json.dumps(raw, separators=(",", ":")).encode()
    return status, out, body_bytes


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def error_body(code: str, message: str, details: Any = None) -> bytes:
    """The contract's error shape, serialized."""
    return json.dumps(
        {"error": {"code": code, "message": message, "details": {} if details is None else details}},
        separators=(",", ":"),
    ).encode()
