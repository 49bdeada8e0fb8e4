"""Target invokers against a real local HTTP receiver, moto, and stub AWS clients."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from gnomon import __version__
from gnomon.adapters import targets
from gnomon.adapters.targets import (
    HttpInvoker,
    Invocation,
    Outcome,
    SecretCache,
    build_invoker,
    execution_name,
    firing_body,
    sign,
)
from gnomon.domain import netpolicy

SECRET = "whsec-test-ümlaut"
NOMINAL = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


# --- fixtures ------------------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    raw_headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"ok":true}'
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay: float = 0.0


class Receiver:
    """A local webhook receiver: records every request, answers per path."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.replies: dict[str, Reply] = {}
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.requests.append(
                    Received(
                        self.command, self.path, dict(self.headers.items()), list(self.headers.items()), body
                    )
                )
                reply = receiver.replies.get(self.path.split("?")[0], Reply())
                if reply.delay:
                    receiver.release.wait(reply.delay)
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass

            do_POST = do_PUT = do_GET = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.release.set()
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture(autouse=True)
def loopback_allowed() -> Iterator[None]:
    saved = list(netpolicy.current().allowed)
    netpolicy.configure(["127.0.0.0/8"])
    yield
    netpolicy.current().allowed = saved


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Fake DNS for names ending in `.example.test`; records how often each name is resolved.
    `names[host]` is a list of answers (one address list per successive query; the last repeats)."""
    real = socket.getaddrinfo
    state: dict[str, Any] = {"names": {}, "calls": []}

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".example.test"):
            state["calls"].append(host)
            answers = state["names"].get(host)
            if not answers:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            n = sum(1 for h in state["calls"] if h == host)
            addrs = answers[min(n, len(answers)) - 1]
            out = []
            for a in addrs:
                fam = socket.AF_INET6 if ":" in a else socket.AF_INET
                sockaddr = (a, int(port or 0), 0, 0) if fam == socket.AF_INET6 else (a, int(port or 0))
                out.append((fam, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
            return out
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return state


def make_inv(target: dict[str, Any], **kw: Any) -> Invocation:
    base = Invocation(
        run_id="nightly:g1:20260301T093000Z",
        attempt=1,
        definition="nightly-report",
        schedule_id="nightly",
        nominal_time=NOMINAL,
        scheduled_time=NOMINAL + timedelta(seconds=2, milliseconds=250),
        previous_nominal_time=NOMINAL - timedelta(days=1),
        last_success_time=None,
        input={"day": "2026-03-01", "name": "Zoë"},
        target=target,
        signing_secret=SECRET,
        callback_token="cb-token-123",
        timeout_seconds=5.0,
    )
    return replace(base, **kw)


def http_target(url: str, **kw: Any) -> dict[str, Any]:
    return {"type": "http", "url": url, "method": "POST", "headers": {}, "role_arn": None, **kw}


@pytest.fixture
def invoker() -> targets.Invoker:
    return build_invoker(allow_python_modules=["tests.integration.test_targets"])


# --- firing body and signature -------------------------------------------------------------------


def test_firing_body_fields_and_time_format() -> None:
    inv = make_inv({"type": "http"})
    assert firing_body(inv) == {
        "run_id": "nightly:g1:20260301T093000Z",
        "definition": "nightly-report",
        "schedule_id": "nightly",
        "nominal_time": "2026-03-01T09:30:00Z",
        "scheduled_time": "2026-03-01T09:30:02.250Z",
        "previous_nominal_time": "2026-02-28T09:30:00Z",
        "last_success_time": None,
        "attempt": 1,
        "input": {"day": "2026-03-01", "name": "Zoë"},
    }
    assert list(firing_body(inv)) == [
        "run_id",
        "definition",
        "schedule_id",
        "nominal_time",
        "scheduled_time",
        "previous_nominal_time",
        "last_success_time",
        "attempt",
        "input",
    ]


def test_sign_known_vector() -> None:
    body = b'{"a":1}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k", 1700000000, body) == f"t=1700000000,v1={expected}"
    assert re.fullmatch(r"t=1700000000,v1=[0-9a-f]{64}", sign("k", 1700000000, body))


# --- http target ---------------------------------------------------------------------------------


def test_http_body_and_headers_exactly(receiver: Receiver, invoker: targets.Invoker) -> None:
    inv = make_inv(http_target(receiver.url("/hook?x=1"), headers={"X-Team": "data"}))
    before = int(time.time())
    out = invoker.invoke(inv)
    after = int(time.time())
    assert out == Outcome(status="completed", result={"ok": True})
    [req] = receiver.requests
    assert req.method == "POST"
    assert req.path == "/hook?x=1"
    expected = json.dumps(firing_body(inv), separators=(",", ":"), ensure_ascii=False).encode()
    assert req.body == expected
    assert json.loads(req.body)["input"] == {"day": "2026-03-01", "name": "Zoë"}
    h = req.headers
    assert h["Content-Type"] == "application/json"
    assert h["Idempotency-Key"] == inv.run_id
    assert h["Gnomon-Callback-Token"] == "cb-token-123"
    assert h["User-Agent"] == f"gnomon/{__version__}"
    assert h["X-Team"] == "data"
    assert h["Host"] == f"127.0.0.1:{receiver.port}"
    # The signature verifies over `t.` + the exact bytes received.
    m = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", h["Gnomon-Signature"])
    assert m
    t = int(m.group(1))
    assert before <= t <= after
    mac = hmac.new(SECRET.encode(), f"{t}.".encode() + req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, m.group(2))


def test_http_put_and_reserved_headers_not_overridden(receiver: Receiver, invoker: targets.Invoker) -> None:
    target = http_target(
        receiver.url(),
        method="PUT",
        headers={"Idempotency-Key": "evil", "content-type": "text/plain", "user-agent": "custom/1"},
    )
    out = invoker.invoke(make_inv(target))
    assert out.status == "completed"
    [req] = receiver.requests
    assert req.method == "PUT"
    assert req.headers["Idempotency-Key"] == "nightly:g1:20260301T093000Z"
    assert [v for k, v in req.raw_headers if k.lower() == "content-type"] == ["application/json"]
    assert [v for k, v in req.raw_headers if k.lower() == "user-agent"] == ["custom/1"]


def test_http_202_is_accepted(receiver: Receiver, invoker: targets.Invoker) -> None:
    receiver.replies["/hook"] = Reply(202, b'{"job":"j1"}')
    out = invoker.invoke(make_inv(http_target(receiver.url())))
    assert out.status == "accepted"
    assert out.result == {"job": "j1"}
    assert out.error is None


def test_http_non_json_body_is_text_capped(receiver: Receiver, invoker: targets.Invoker) -> None:
    receiver.replies["/text"] = Reply(200, b"plain ok", {"Content-Type": "text/plain"})
    receiver.replies["/big"] = Reply(200, b"x" * 100_000, {"Content-Type": "text/plain"})
    receiver.replies["/empty"] = Reply(204, b"", {})
    assert invoker.invoke(make_inv(http_target(receiver.url("/text")))).result == "plain ok"
    big = invoker.invoke(make_inv(http_target(receiver.url("/big"))))
    assert big.status == "completed"
    assert big.result == "x" * 32 * 1024
    assert invoker.invoke(make_inv(http_target(receiver.url("/empty")))) == Outcome(status="completed")


def test_http_500_is_retryable_with_details(receiver: Receiver, invoker: targets.Invoker) -> None:
    receiver.replies["/hook"] = Reply(500, b"E" * 5000, {"Content-Type": "text/plain"})
    out = invoker.invoke(make_inv(http_target(receiver.url())))
    assert out.status == "failed"
    assert out.retryable is True
    assert out.retry_after is None
    assert out.error is not None
    assert out.error["code"] == "http_500"
    assert out.error["details"]["status"] == 500
    assert out.error["details"]["body"] == "E" * 2048


@pytest.mark.parametrize("status", [408, 502, 503])
def test_http_retryable_statuses(receiver: Receiver, invoker: targets.Invoker, status: int) -> None:
    receiver.replies["/hook"] = Reply(status, b"")
    out = invoker.invoke(make_inv(http_target(receiver.url())))
    assert (out.status, out.retryable) == ("failed", True)
    assert out.error is not None and out.error["code"] == f"http_{status}"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_http_other_4xx_are_final(receiver: Receiver, invoker: targets.Invoker, status: int) -> None:
    receiver.replies["/hook"] = Reply(status, b'{"error":"nope"}', {"Retry-After": "5"})
    out = invoker.invoke(make_inv(http_target(receiver.url())))
    assert (out.status, out.retryable) == ("failed", False)
    assert out.error is not None
    assert out.error["code"] == f"http_{status}"
    assert out.error["details"] == {"status": status, "body": '{"error":"nope"}'}
    assert out.retry_after is None


def test_http_429_retry_after_seconds(receiver: Receiver, invoker: targets.Invoker) -> None:
    receiver.replies["/hook"] = Reply(429, b"slow down", {"Retry-After": "7"})
    out = invoker.invoke(make_inv(http_target(receiver.url())))
    assert (out.status, out.retryable, out.retry_after) == ("failed", True, 7.0)
    assert out.error is not None and out.error["code"] == "http_429"


def test_http_503_retry_after_http_date(receiver: Receiver, invoker: targets.Invoker) -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    receiver.replies["/hook"] = Reply(503, b"", {"Retry-After": format_datetime(when, usegmt=True)})
    out = invoker.invoke(make_inv(http_target(receiver.url())))
    assert out.retry_after is not None and 110 <= out.retry_after <= 120


def test_http_redirect_not_followed(receiver: Receiver, invoker: targets.Invoker) -> None:
    receiver.replies["/hook"] = Reply(302, b"", {"Location": receiver.url("/elsewhere")})
    out = invoker.invoke(make_inv(http_target(receiver.url())))
    assert (out.status, out.retryable) == ("failed", False)
    assert out.error is not None
    assert out.error["code"] == "redirect_refused"
    assert out.error["details"]["status"] == 302
    assert out.error["details"]["location"] == receiver.url("/elsewhere")
    assert [r.path for r in receiver.requests] == ["/hook"]


def test_http_slow_receiver_times_out(receiver: Receiver, invoker: targets.Invoker) -> None:
    receiver.replies["/hook"] = Reply(200, b"{}", delay=10)
    start = time.monotonic()
    out = invoker.invoke(make_inv(http_target(receiver.url()), timeout_seconds=0.5))
    elapsed = time.monotonic() - start
    assert out.status == "timed_out"
    assert out.retryable is True
    assert out.error is not None and out.error["code"] == "timeout"
    assert elapsed < 2.0


def test_http_connection_refused_is_retryable(invoker: targets.Invoker) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    out = invoker.invoke(make_inv(http_target(f"http://127.0.0.1:{port}/hook")))
    assert (out.status, out.retryable) == ("failed", True)
    assert out.error is not None and out.error["code"] == "network_error"


# --- addresses -----------------------------------------------------------------------------------


def test_name_resolving_to_metadata_is_forbidden(
    receiver: Receiver, invoker: targets.Invoker, resolver: dict[str, Any]
) -> None:
    resolver["names"]["meta.example.test"] = [["169.254.169.254"]]
    out = invoker.invoke(make_inv(http_target(receiver.url(host="meta.example.test"))))
    assert (out.status, out.retryable) == ("failed", False)
    assert out.error is not None and out.error["code"] == "target_forbidden"
    assert receiver.requests == []


@pytest.mark.parametrize("bad", ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "10.0.0.1"])
def test_any_refused_address_forbids(
    receiver: Receiver, invoker: targets.Invoker, resolver: dict[str, Any], bad: str
) -> None:
    resolver["names"]["mixed.example.test"] = [["127.0.0.1", bad]]
    out = invoker.invoke(make_inv(http_target(receiver.url(host="mixed.example.test"))))
    assert out.error is not None and out.error["code"] == "target_forbidden"
    assert out.retryable is False
    assert receiver.requests == []


def test_loopback_refused_unless_allowed(receiver: Receiver, invoker: targets.Invoker) -> None:
    netpolicy.configure([])
    for host in ("127.0.0.1", "2130706433", "0177.0.0.1", "localhost"):
        out = invoker.invoke(make_inv(http_target(receiver.url(host=host))))
        assert out.error is not None and out.error["code"] == "target_forbidden", host
        assert out.retryable is False
    assert receiver.requests == []
    netpolicy.configure(["127.0.0.0/8"])
    out = invoker.invoke(make_inv(http_target(receiver.url(host="2130706433"))))
    assert out.status == "completed"
    assert receiver.requests[0].headers["Host"] == f"2130706433:{receiver.port}"


def test_dns_resolved_once_and_pinned(
    receiver: Receiver, invoker: targets.Invoker, resolver: dict[str, Any]
) -> None:
    # A rebinding resolver: the first answer passes the policy, later answers point at metadata.
    resolver["names"]["hook.example.test"] = [["127.0.0.1"], ["169.254.169.254"]]
    out = invoker.invoke(make_inv(http_target(receiver.url(host="hook.example.test"))))
    assert out.status == "completed"
    assert resolver["calls"] == ["hook.example.test"]
    [req] = receiver.requests
    assert req.headers["Host"] == f"hook.example.test:{receiver.port}"
    # The next attempt resolves afresh (once) and is refused.
    out = invoker.invoke(make_inv(http_target(receiver.url(host="hook.example.test")), attempt=2))
    assert out.error is not None and out.error["code"] == "target_forbidden"
    assert resolver["calls"] == ["hook.example.test", "hook.example.test"]


def test_unresolvable_name_is_retryable(invoker: targets.Invoker, resolver: dict[str, Any]) -> None:
    out = invoker.invoke(make_inv(http_target("https://nowhere.example.test/hook")))
    assert (out.status, out.retryable) == ("failed", True)
    assert out.error is not None and out.error["code"] == "dns_error"


def test_non_http_scheme_forbidden(invoker: targets.Invoker) -> None:
    out = invoker.invoke(make_inv(http_target("file:///etc/passwd")))
    assert out.error is not None and out.error["code"] == "target_forbidden"


def test_falls_back_to_next_checked_address(
    receiver: Receiver, invoker: targets.Invoker, resolver: dict[str, Any]
) -> None:
    resolver["names"]["two.example.test"] = [["127.0.0.2", "127.0.0.1"]]
    # 127.0.0.2 refuses (the receiver listens on 127.0.0.1 only), 127.0.0.1 answers.
    out = invoker.invoke(make_inv(http_target(receiver.url(host="two.example.test"))))
    assert out.status == "completed"
    assert resolver["calls"] == ["two.example.test"]


# --- https with a pinned address -----------------------------------------------------------------


def _make_certs(tmp: Path, name: str) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def cert(subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            b = b.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        else:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
            b = b.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
            )
        return b.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("gnomon test CA", ca_key, "gnomon test CA", ca_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = cert(name, leaf_key, "gnomon test CA", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (tmp / "ca.pem").write_bytes(ca.public_bytes(pem))
    (tmp / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (tmp / "leaf.key").write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return tmp / "ca.pem", tmp / "leaf.pem", tmp / "leaf.key"


@pytest.fixture
def tls_receiver(receiver: Receiver, tmp_path: Path) -> Iterator[tuple[Receiver, Path, list[str | None]]]:
    ca, leaf, key = _make_certs(tmp_path, "hook.example.test")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(leaf, key)
    snis: list[str | None] = []
    ctx.sni_callback = lambda _sock, name, _ctx: snis.append(name)  # type: ignore[assignment,func-returns-value]
    receiver.server.socket = ctx.wrap_socket(receiver.server.socket, server_side=True)
    yield receiver, ca, snis


def test_https_pinned_address_verifies_original_name(
    tls_receiver: tuple[Receiver, Path, list[str | None]], resolver: dict[str, Any]
) -> None:
    receiver, ca, snis = tls_receiver
    resolver["names"]["hook.example.test"] = [["127.0.0.1"]]
    http = HttpInvoker(SecretCache(lambda s, r: None), ca_certs=str(ca))
    out = http.invoke(make_inv(http_target(f"https://hook.example.test:{receiver.port}/hook")))
    assert out.status == "completed", out
    assert snis == ["hook.example.test"]
    assert receiver.requests[0].headers["Host"] == f"hook.example.test:{receiver.port}"
    assert resolver["calls"] == ["hook.example.test"]


def test_https_untrusted_certificate_fails(
    tls_receiver: tuple[Receiver, Path, list[str | None]], resolver: dict[str, Any]
) -> None:
    receiver, _ca, _snis = tls_receiver
    resolver["names"]["hook.example.test"] = [["127.0.0.1"]]
    http = HttpInvoker(SecretCache(lambda s, r: None))  # the system trust store
    out = http.invoke(make_inv(http_target(f"https://hook.example.test:{receiver.port}/hook")))
    assert (out.status, out.retryable) == ("failed", True)
    assert out.error is not None and out.error["code"] == "tls_error"
    assert receiver.requests == []


def test_https_wrong_name_fails(
    tls_receiver: tuple[Receiver, Path, list[str | None]], resolver: dict[str, Any]
) -> None:
    receiver, ca, _snis = tls_receiver
    resolver["names"]["other.example.test"] = [["127.0.0.1"]]
    http = HttpInvoker(SecretCache(lambda s, r: None), ca_certs=str(ca))
    out = http.invoke(make_inv(http_target(f"https://other.example.test:{receiver.port}/hook")))
    assert out.error is not None and out.error["code"] == "tls_error"
    assert receiver.requests == []


# --- secret headers ------------------------------------------------------------------------------


def test_secret_headers_resolved_and_never_returned(receiver: Receiver) -> None:
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        arn = sm.create_secret(Name="hook-token", SecretString="Bearer s3cr3t-value")["ARN"]
        calls: list[tuple[str, str | None]] = []

        def clients(service: str, role: str | None) -> Any:
            calls.append((service, role))
            return boto3.client(service, region_name="us-east-1")

        inv_ = build_invoker(allow_python_modules=[], aws_clients=clients)
        target = http_target(receiver.url(), headers={"Authorization": {"secret": arn}, "X-Team": "data"})
        for status in (200, 500):
            receiver.replies["/hook"] = Reply(status, b'{"seen":true}')
            out = inv_.invoke(make_inv(target))
            assert "s3cr3t" not in repr(out)
        assert [r.headers["Authorization"] for r in receiver.requests] == ["Bearer s3cr3t-value"] * 2
        assert calls == [("secretsmanager", None)]  # cached for the second call

        missing = http_target(
            receiver.url(), headers={"Authorization": {"secret": arn.replace("hook-token", "missing")}}
        )
        out = inv_.invoke(make_inv(missing))
        assert (out.status, out.retryable) == ("failed", False)
        assert out.error is not None
        assert out.error["code"] == "secret_unavailable"
        assert out.error["details"]["aws_error"] == "ResourceNotFoundException"
        assert len(receiver.requests) == 2


def test_secret_cache_expires() -> None:
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        arn = sm.create_secret(Name="rotating", SecretString="one")["ARN"]
        clock = [1000.0]  # a clock of its own: a loaded machine's pauses never expire it early
        cache = SecretCache(
            lambda s, r: boto3.client(s, region_name="us-east-1"), ttl=0.2, monotonic=lambda: clock[0]
        )
        assert cache.get(arn) == "one"
        sm.put_secret_value(SecretId=arn, SecretString="two")
        clock[0] += 0.19
        assert cache.get(arn) == "one"
        clock[0] += 0.02
        assert cache.get(arn) == "two"


def test_secret_with_newline_is_refused(receiver: Receiver) -> None:
    class SM:
        def get_secret_value(self, SecretId: str) -> dict[str, Any]:
            return {"SecretString": "a\r\nX-Injected: 1"}

    inv_ = build_invoker(allow_python_modules=[], aws_clients=lambda s, r: SM())
    target = http_target(
        receiver.url(), headers={"Authorization": {"secret": "arn:aws:secretsmanager:us-east-1:1:secret:x"}}
    )
    out = inv_.invoke(make_inv(target))
    assert out.error is not None and out.error["code"] == "invalid_header"
    assert out.retryable is False
    assert receiver.requests == []


@pytest.mark.parametrize("headers", [{"X-Arrow": "a→b"}, {"X-Bad": "a\nb"}, {"Bad Name": "x"}])
def test_invalid_plain_header_values_are_final(
    receiver: Receiver, invoker: targets.Invoker, headers: dict[str, str]
) -> None:
    out = invoker.invoke(make_inv(http_target(receiver.url(), headers=headers)))
    assert (out.status, out.retryable) == ("failed", False)
    assert out.error is not None and out.error["code"] == "invalid_header"
    assert receiver.requests == []


# --- python target -------------------------------------------------------------------------------

RELEASE = threading.Event()


def py_echo(payload: dict[str, Any]) -> Any:
    return {"got": payload["input"], "run": payload["run_id"], "at": datetime(2026, 1, 1, tzinfo=UTC)}


def py_boom(payload: dict[str, Any]) -> Any:
    raise KeyError("missing thing")


def py_slow(payload: dict[str, Any]) -> Any:
    RELEASE.wait(10)
    return "late"


NOT_A_FUNCTION = 3


def test_python_target_allowed(invoker: targets.Invoker) -> None:
    out = invoker.invoke(make_inv({"type": "python", "function": "tests.integration.test_targets:py_echo"}))
    assert out.status == "completed"
    assert out.result == {
        "got": {"day": "2026-03-01", "name": "Zoë"},
        "run": "nightly:g1:20260301T093000Z",
        "at": "2026-01-01 00:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("prefixes", "allowed"),
    [
        (["tests.integration"], True),
        (["tests"], True),
        (["tests.integration.test_targets"], True),
        (["tests.integration."], True),
        (["tests.integ"], False),
        (["tests.integration.test_targets_evil"], False),
        (["other", ""], False),
        ([], False),
    ],
)
def test_python_prefix_at_dot_boundary(prefixes: list[str], allowed: bool) -> None:
    out = build_invoker(allow_python_modules=prefixes).invoke(
        make_inv({"type": "python", "function": "tests.integration.test_targets:py_echo"})
    )
    if allowed:
        assert out.status == "completed"
    else:
        assert (out.status, out.retryable) == ("failed", False)
        assert out.error is not None and out.error["code"] == "target_forbidden"


def test_python_prefix_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GNOMON_ALLOW_PYTHON_MODULES", " other , tests.integration ")
    out = build_invoker(allow_python_modules=None).invoke(
        make_inv({"type": "python", "function": "tests.integration.test_targets:py_echo"})
    )
    assert out.status == "completed"
    monkeypatch.delenv("GNOMON_ALLOW_PYTHON_MODULES")
    out = build_invoker(allow_python_modules=None).invoke(
        make_inv({"type": "python", "function": "tests.integration.test_targets:py_echo"})
    )
    assert out.error is not None and out.error["code"] == "target_forbidden"


def test_python_exception(invoker: targets.Invoker) -> None:
    out = invoker.invoke(make_inv({"type": "python", "function": "tests.integration.test_targets:py_boom"}))
    assert (out.status, out.retryable) == ("failed", True)
    assert out.error is not None
    assert out.error["code"] == "KeyError"
    assert out.error["message"] == "'missing thing'"
    tb = out.error["details"]["traceback"]
    assert "py_boom" in tb and len(tb) <= 2048


def test_python_timeout_abandons_thread(invoker: targets.Invoker) -> None:
    RELEASE.clear()
    start = time.monotonic()
    out = invoker.invoke(
        make_inv(
            {"type": "python", "function": "tests.integration.test_targets:py_slow"}, timeout_seconds=0.3
        )
    )
    assert time.monotonic() - start < 2
    assert out.status == "timed_out"
    assert out.error is not None and out.error["code"] == "timeout"
    RELEASE.set()


@pytest.mark.parametrize(
    "function",
    [
        "tests.integration.test_targets:nope",
        "tests.integration.test_targets:NOT_A_FUNCTION",
        "tests.integration.gone:f",
    ],
)
def test_python_missing_function(invoker: targets.Invoker, function: str) -> None:
    out = build_invoker(allow_python_modules=["tests"]).invoke(
        make_inv({"type": "python", "function": function})
    )
    assert (out.status, out.retryable) == ("failed", False)
    assert out.error is not None and out.error["code"] == "target_not_found"


# --- AWS targets ---------------------------------------------------------------------------------


@pytest.fixture
def aws() -> Iterator[targets.Invoker]:
    with mock_aws():
        yield build_invoker(allow_python_modules=[])


def _expected_payload(inv: Invocation) -> dict[str, Any]:
    return json.loads(json.dumps(firing_body(inv)))


def test_sqs_standard_and_fifo(aws: targets.Invoker) -> None:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    inv = make_inv({"type": "sqs", "queue_url": url, "message_group_id": None, "role_arn": None})
    out = aws.invoke(inv)
    assert out.status == "completed"
    [msg] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert out.result == {"MessageId": msg["MessageId"]}
    assert json.loads(msg["Body"]) == _expected_payload(inv)

    fifo = sqs.create_queue(QueueName="jobs.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    target = {"type": "sqs", "queue_url": fifo, "message_group_id": "g1", "role_arn": None}
    first = aws.invoke(make_inv(target))
    again = aws.invoke(make_inv(target))  # the same attempt redelivered: deduplicated
    second = aws.invoke(make_inv(target, attempt=2))
    assert first.status == again.status == second.status == "completed"
    msgs = sqs.receive_message(QueueUrl=fifo, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    assert [json.loads(m["Body"])["attempt"] for m in msgs] == [1, 2]
    assert [m["Attributes"]["MessageDeduplicationId"] for m in msgs] == [
        "nightly:g1:20260301T093000Z-1",
        "nightly:g1:20260301T093000Z-2",
    ]


def test_sqs_missing_queue_is_final(aws: targets.Invoker) -> None:
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/missing"
    out = aws.invoke(make_inv({"type": "sqs", "queue_url": url, "role_arn": None}))
    assert (out.status, out.retryable) == ("failed", False)
    assert out.error is not None and "NonExistentQueue" in out.error["code"]


def test_sns_publish(aws: targets.Invoker) -> None:
    sns = boto3.client("sns")
    sqs = boto3.client("sqs")
    topic = sns.create_topic(Name="firings")["TopicArn"]
    url = sqs.create_queue(QueueName="sub")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=qarn, Attributes={"RawMessageDelivery": "true"})
    inv = make_inv({"type": "sns", "topic_arn": topic, "role_arn": None})
    out = aws.invoke(inv)
    assert out.status == "completed"
    assert set(out.result) == {"MessageId"}
    [msg] = sqs.receive_message(QueueUrl=url)["Messages"]
    assert json.loads(msg["Body"]) == _expected_payload(inv)


def test_sns_fifo_topic(aws: targets.Invoker) -> None:
    sns = boto3.client("sns")
    topic = sns.create_topic(Name="firings.fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
    out = aws.invoke(make_inv({"type": "sns", "topic_arn": topic, "role_arn": None}))
    assert out.status == "completed", out


def test_sns_missing_topic_is_final(aws: targets.Invoker) -> None:
    out = aws.invoke(make_inv({"type": "sns", "topic_arn": "arn:aws:sns:us-east-1:123456789012:nope"}))
    assert (out.status, out.retryable) == ("failed", False)
    assert out.error is not None and out.error["code"] == "NotFound"


def test_eventbridge_put_events(aws: targets.Invoker) -> None:
    events = boto3.client("events")
    sqs = boto3.client("sqs")
    bus = events.create_event_bus(Name="jobs")["EventBusArn"]
    url = sqs.create_queue(QueueName="bus-sink")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all", EventBusName="jobs", EventPattern=json.dumps({"source": ["gnomon.test"]}))
    events.put_targets(Rule="all", EventBusName="jobs", Targets=[{"Id": "q", "Arn": qarn}])
    target = {"type": "eventbridge", "event_bus_arn": bus, "source": "gnomon.test", "detail_type": "firing"}
    inv = make_inv(target)
    out = aws.invoke(inv)
    assert out.status == "completed"
    assert out.result["EventId"]
    [msg] = sqs.receive_message(QueueUrl=url)["Messages"]
    event = json.loads(msg["Body"])
    assert event["source"] == "gnomon.test"
    assert event["detail-type"] == "firing"
    assert event["detail"] == _expected_payload(inv)


def test_stepfunctions_start_execution_idempotent(aws: targets.Invoker) -> None:
    sfn = boto3.client("stepfunctions")
    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    sm = sfn.create_state_machine(
        name="report", definition=definition, roleArn="arn:aws:iam::123456789012:role/sfn"
    )["stateMachineArn"]
    target = {"type": "stepfunctions", "state_machine_arn": sm, "role_arn": None}
    inv = make_inv(target)
    out = aws.invoke(inv)
    assert out.status == "completed"
    arn = out.result["executionArn"]
    desc = sfn.describe_execution(executionArn=arn)
    assert desc["name"] == execution_name(inv.run_id, 1)
    assert json.loads(desc["input"]) == _expected_payload(inv)
    # The same attempt again: ExecutionAlreadyExists → completed, same execution.
    again = aws.invoke(inv)
    assert again.status == "completed"
    assert again.result["executionArn"] == arn
    # A new attempt is a new execution.
    second = aws.invoke(make_inv(target, attempt=2))
    assert second.result["executionArn"] != arn
    assert len(sfn.list_executions(stateMachineArn=sm)["executions"]) == 2


class StubClient:
    """Records calls; answers or raises what it is given."""

    def __init__(self, answer: Any = None, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answer = answer
        self.error = error

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(**kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            if self.error is not None:
                raise self.error
            return self.answer

        return call


def _client_error(code: str, status: int, op: str = "Invoke") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} happened"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        op,
    )


def test_lambda_invoke_with_stub_and_role() -> None:
    stub = StubClient({"StatusCode": 202})
    seen: list[tuple[str, str | None]] = []

    def clients(service: str, role: str | None) -> Any:
        seen.append((service, role))
        return stub

    role = "arn:aws:iam::123456789012:role/gnomon-target"
    fn = "arn:aws:lambda:us-east-1:123456789012:function:report"
    inv = make_inv({"type": "lambda", "function_arn": fn, "role_arn": role})
    out = build_invoker(allow_python_modules=[], aws_clients=clients).invoke(inv)
    assert out == Outcome(status="completed", result={"StatusCode": 202})
    assert seen == [("lambda", role)]
    [(name, kwargs)] = stub.calls
    assert name == "invoke"
    assert kwargs["FunctionName"] == fn
    assert kwargs["InvocationType"] == "Event"
    assert (
        kwargs["Payload"] == json.dumps(firing_body(inv), separators=(",", ":"), ensure_ascii=False).encode()
    )


@pytest.mark.parametrize(
    ("code", "status", "retryable"),
    [
        ("TooManyRequestsException", 429, True),
        ("ThrottlingException", 400, True),
        ("ServiceException", 500, True),
        ("SomethingNew", 503, True),
        ("AccessDeniedException", 403, False),
        ("ResourceNotFoundException", 404, False),
        ("InvalidParameterValueException", 400, False),
        ("ValidationException", 400, False),
    ],
)
def test_aws_client_errors_classified(code: str, status: int, retryable: bool) -> None:
    stub = StubClient(error=_client_error(code, status))
    target = {"type": "lambda", "function_arn": "arn:aws:lambda:us-east-1:123456789012:function:f"}
    out = build_invoker(allow_python_modules=[], aws_clients=lambda s, r: stub).invoke(make_inv(target))
    assert (out.status, out.retryable) == ("failed", retryable)
    assert out.error is not None
    assert out.error["code"] == code
    assert out.error["details"]["http_status"] == status


def test_eventbridge_failed_entry_is_retryable() -> None:
    stub = StubClient(
        {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "x"}]}
    )
    target = {"type": "eventbridge", "event_bus_arn": "arn:aws:events:us-east-1:123456789012:event-bus/b"}
    out = build_invoker(allow_python_modules=[], aws_clients=lambda s, r: stub).invoke(make_inv(target))
    assert (out.status, out.retryable) == ("failed", True)
    assert out.error is not None and out.error["code"] == "InternalFailure"
    [(_, kwargs)] = stub.calls
    assert kwargs["Entries"][0]["Source"] == "gnomon"
    assert kwargs["Entries"][0]["DetailType"] == "gnomon.firing"


def test_default_clients_assume_role_named_after_run() -> None:
    with mock_aws():
        iam = boto3.client("iam")
        role = iam.create_role(RoleName="target", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        clients = targets.DefaultAwsClients()
        token = targets._current_run_id.set("sched:g1:20260301T093000Z/with spaces and more than 32 chars")
        try:
            sts = clients("sts", role)
            assert clients("sts", role) is sts  # cached per role
            arn = sts.get_caller_identity()["Arn"]
        finally:
            targets._current_run_id.reset(token)
        session = arn.rsplit("/", 1)[1]
        assert session == "gnomon-sched-g1-20260301T093000Z-with-s"
        assert re.fullmatch(r"[\w+=,.@-]{2,64}", session)
        assert clients("sqs", None) is clients("sqs", None)


def test_task_target_raises(invoker: targets.Invoker) -> None:
    with pytest.raises(ValueError):
        invoker.invoke(make_inv({"type": "task", "topic": "reports"}))


# --- execution names -----------------------------------------------------------------------------


def test_execution_name_rules() -> None:
    allowed = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
    assert execution_name("run-1", 3) == "run-1-3"
    names = {
        execution_name(r, a)
        for r, a in [
            ("a:b", 1),
            ("a.b", 1),
            ("a_b", 1),
            ("a:b", 2),
            ("a_b-1", 1),
            ("x" * 200, 1),
            ("x" * 200 + "y", 1),
            ("x" * 199 + ":", 1),
            ("x" * 199 + ".", 1),
            ("x" * 78, 1),
            ("x" * 77, 11),
        ]
    }
    assert len(names) == 11
    assert all(allowed.match(n) for n in names)
    long = "sched.with.dots:" + "g" * 40 + ":20260301T093000123Z"
    n1, n2 = execution_name(long, 1), execution_name(long, 2)
    assert n1 != n2
    assert n1 == execution_name(long, 1)
    assert len(n1) <= 80 and allowed.match(n1)
    assert n1.startswith("sched_with_dots_g")
    assert "-1-h" in n1
    assert len(execution_name("r" * 200, 100)) == 80


def test_unknown_type_raises(invoker: targets.Invoker) -> None:
    with pytest.raises(ValueError):
        invoker.invoke(make_inv({"type": "carrier-pigeon"}))


def test_http_path_imports_only_stdlib_and_urllib3() -> None:
    """What Lambda ships has urllib3 (via botocore) but not httpx; boto3 loads only for AWS calls."""
    import ast
    import sys

    tree = ast.parse(Path(targets.__file__).read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top.add(node.module.split(".")[0])
    assert top - set(sys.stdlib_module_names) == {"urllib3", "gnomon"}
