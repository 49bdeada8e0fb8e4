"""The web console: static files under `/console`, served by the API function.

The console is a small front end (Preact + htm, Chart.js, cronstrue, jsdiff — vendored under
`static/vendor/`, see its README) that reads only the HTTP API from the browser, so the API's
own authorizer applies to every read and every action. This module only hands out files and the
sign-in configuration; it never touches a store.

`GNOMON_CONSOLE` turns it on (`on`); anything else answers 404. `gnomon dev` sets it on; in AWS
the template sets it on only when the JWT parameters are given, and then the page signs in with
OIDC (authorization code + PKCE) against `GNOMON_CONSOLE_ISSUER` with client id
`GNOMON_CONSOLE_CLIENT_ID` and sends `Authorization: Bearer <token>` to `/v1/…`.
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import resources
from typing import Any

PREFIX = "/console"
STATIC = resources.files(__name__).joinpath("static")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".md": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}


def enabled() -> bool:
    """The console is served only when `GNOMON_CONSOLE=on`."""
    return os.environ.get("GNOMON_CONSOLE", "off").strip().lower() == "on"


def is_console_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def config() -> dict[str, Any]:
    """What the page needs to know before its first API call: how to sign in."""
    issuer = os.environ.get("GNOMON_CONSOLE_ISSUER", "").strip().rstrip("/")
    client_id = os.environ.get("GNOMON_CONSOLE_CLIENT_ID", "").split(",")[0].strip()
    if issuer:
        return {
            "auth": {
                "mode": "oidc",
                "issuer": issuer,
                "client_id": client_id,
                "scopes": os.environ.get("GNOMON_CONSOLE_SCOPES", "openid").strip() or "openid",
            }
        }
    return {"auth": {"mode": "none"}}


@cache
def _files() -> dict[str, tuple[bytes, str]]:
    """Every servable file, by its path under /console/ (read once per container)."""
    out: dict[str, tuple[bytes, str]] = {}

    def walk(node: Any, prefix: str) -> None:
        for child in node.iterdir():
            name = prefix + child.name
            if child.is_dir():
                walk(child, name + "/")
                continue
            ext = "." + child.name.rsplit(".", 1)[-1] if "." in child.name else ""
            if ext in CONTENT_TYPES:
                out[name] = (child.read_bytes(), CONTENT_TYPES[ext])

    walk(STATIC, "")
    return out


def _security_headers(content_type: str) -> dict[str, str]:
    headers = {
        "Content-Type": content_type,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    if content_type.startswith("text/html"):
        issuer = os.environ.get("GNOMON_CONSOLE_ISSUER", "").strip()
        # https issuers; plain http only on loopback (a local identity provider in tests)
        local = issuer.startswith(("http://127.0.0.1", "http://localhost"))
        origin = "/".join(issuer.split("/")[:3]) if issuer.startswith("https://") or local else ""
        # The page talks only to its own origin (and, when signing in, to the OIDC issuer).
        headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            f"img-src 'self' data:; connect-src 'self'{' ' + origin if origin else ''}; "
            "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
        )
    return headers


def _response(status: int, body: bytes | str, content_type: str, cache_control: str) -> dict[str, Any]:
    headers = _security_headers(content_type)
    headers["Cache-Control"] = cache_control
    text = body.decode() if isinstance(body, bytes) else body
    return {"statusCode": status, "headers": headers, "body": text, "isBase64Encoded": False}


def _error(status: int, code: str, message: str, details: Any) -> dict[str, Any]:
    body = json.dumps({"error": {"code": code, "message": message, "details": details}})
    return _response(status, body, "application/json", "no-store")


def handle(event: dict[str, Any]) -> dict[str, Any]:
    """Answer one `/console…` request (API Gateway HTTP API v2 event)."""
    http = event.get("requestContext", {}).get("http", {})
    method = str(http.get("method", "GET")).upper()
    path = str(event.get("rawPath") or http.get("path") or PREFIX)
    if not enabled():
        return _error(
            404,
            "not_found",
            "the console is off here (GNOMON_CONSOLE is not 'on'; in AWS set the JwtIssuer parameter)",
            {"resource": "console"},
        )
    if method not in ("GET", "HEAD"):
        return _error(
            405, "method_not_allowed", f"{method} is not allowed on {path}", {"allowed": ["GET", "HEAD"]}
        )
    rel = path[len(PREFIX) :].lstrip("/") or "index.html"
    if rel == "config.json":
        return _response(200, json.dumps(config()), "application/json", "no-store")
    found = _files().get(rel)
    if found is None or ".." in rel.split("/"):
        return _error(404, "not_found", f"no console file {rel}", {"resource": f"console/{rel}"})
    body, ctype = found
    # Vendored files carry their version in the name: cache them; the app's own files revalidate.
    cache_control = "public, max-age=604800, immutable" if rel.startswith("vendor/") else "no-cache"
    if method == "HEAD":
        body = b""
    return _response(200, body, ctype, cache_control)
