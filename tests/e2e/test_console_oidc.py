"""The console's sign-in as in AWS with `JwtIssuer` set: OIDC authorization code + PKCE against
the issuer, then `Authorization: Bearer` on every API call — in headless Chromium, against a
tiny local identity provider and a stand-in API that accepts only the token the provider issued.

The console's files come from the real `gnomon.console.handle`; only /v1 is a stand-in (the API
Gateway JWT authorizer is AWS's, not gnomon's)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from bench.consolekit import browser_missing, chromium, console_errors, wait_for
from gnomon import console
from gnomon.local.http_bridge import build_v2_event, to_http_response

MISSING = browser_missing()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(MISSING is not None, reason=f"console browser tests skipped: {MISSING}"),
]


class World:
    """What the identity provider and the stand-in API saw."""

    def __init__(self) -> None:
        self.codes: dict[str, dict[str, str]] = {}
        self.tokens: set[str] = set()
        self.authorize_params: dict[str, str] = {}
        self.api_auth: list[str | None] = []


def _server(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def idp(world: World) -> Iterator[str]:
    class Idp(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_OPTIONS(self) -> None:
            self.send_response(204)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Headers", "content-type")
            self.send_header("Access-Control-Allow-Methods", "GET, POST")
            self.end_headers()

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            base = f"http://127.0.0.1:{self.server.server_address[1]}/pool"
            if url.path == "/pool/.well-known/openid-configuration":
                self._json(
                    200,
                    {
                        "issuer": base,
                        "authorization_endpoint": f"{base}/authorize",
                        "token_endpoint": f"{base}/token",
                    },
                )
            elif url.path == "/pool/authorize":
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                world.authorize_params = q
                code = secrets.token_urlsafe(12)
                world.codes[code] = q
                self.send_response(302)
                self.send_header(
                    "Location", f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}"
                )
                self.end_headers()
            else:
                self._json(404, {})

        def do_POST(self) -> None:
            form = {
                k: v[0]
                for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()
            }
            asked = world.codes.pop(form.get("code", ""), None)
            if asked is None:
                return self._json(400, {"error": "invalid_grant"})
            digest = hashlib.sha256(form["code_verifier"].encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).decode().rstrip("=")
            if challenge != asked["code_challenge"] or form["redirect_uri"] != asked["redirect_uri"]:
                return self._json(400, {"error": "invalid_grant", "error_description": "PKCE check failed"})
            token = secrets.token_urlsafe(16)
            world.tokens.add(token)
            return self._json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    srv = _server(Idp)
    yield f"http://127.0.0.1:{srv.server_address[1]}/pool"
    srv.shutdown()


@pytest.fixture
def site(world: World, idp: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("GNOMON_CONSOLE", "on")
    monkeypatch.setenv("GNOMON_CONSOLE_ISSUER", idp)
    monkeypatch.setenv("GNOMON_CONSOLE_CLIENT_ID", "console-client")

    class Site(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.startswith("/console"):
                status, headers, body = to_http_response(
                    console.handle(build_v2_event("GET", self.path, dict(self.headers), None, "127.0.0.1"))
                )
            else:  # the stand-in API behind a JWT authorizer
                auth = self.headers.get("Authorization")
                world.api_auth.append(auth)
                token = (auth or "").removeprefix("Bearer ")
                if token in world.tokens:
                    status, body = (
                        200,
                        json.dumps(
                            {
                                "timezone": "UTC",
                                "running": 4,
                                "pending": 2,
                                "completed_today": 42,
                                "failed_today": 1,
                            }
                            if self.path.startswith("/v1/stats")
                            else {"items": [], "next_page_token": None}
                            if self.path.startswith("/v1/runs")
                            else {
                                "from": "2026-11-30T00:00:00Z",
                                "to": "2026-11-30T01:00:00Z",
                                "bucket_seconds": 60,
                                "buckets": [],
                            }
                        ).encode(),
                    )
                else:
                    status, body = 401, b'{"message":"Unauthorized"}'
                headers = [("Content-Type", "application/json")]
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = _server(Site)
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_sign_in_with_pkce_then_every_api_call_carries_the_bearer_token(site: str, world: World) -> None:
    with chromium() as browser:
        browser.get(f"{site}/console/#/overview")
        button = wait_for(lambda: browser.find_element("css selector", "main button.primary"))
        assert button and button.text == "Sign in"
        assert world.api_auth == []  # nothing is asked of the API before signing in
        button.click()
        stat = wait_for(lambda: browser.find_element("id", "stat-running").text, timeout=20)
        assert stat == "4", browser.find_element("tag name", "body").text
        # the authorization request was a PKCE one, for this client, back to the console
        q = world.authorize_params
        assert q["response_type"] == "code" and q["client_id"] == "console-client"
        assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
        assert q["redirect_uri"] == f"{site}/console/" and q["scope"] == "openid"
        # every API call carried the token the provider issued
        assert world.api_auth and all(a and a.removeprefix("Bearer ") in world.tokens for a in world.api_auth)
        # the code is gone from the address bar; the page route survived the round trip
        assert "code=" not in browser.current_url and browser.current_url.endswith("#/overview")
        assert "signed in" in browser.find_element("css selector", "header .auth").text
        assert [e for e in console_errors(browser) if "favicon" not in e] == []
