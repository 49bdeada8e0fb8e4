"""Target invokers: one attempt of a run against its target (CONTRACT.md §5).

`build_invoker()` returns one object that dispatches on `target["type"]`:

- `http`: a signed JSON request over stdlib + urllib3 (urllib3 ships with botocore; httpx is not
  in the Lambda runtime). The host is resolved ONCE, every resolved address is checked against the
  process-wide network policy (`gnomon.domain.netpolicy`), and the connection is pinned to a checked
  address (TLS still verifies the certificate against the original host name), so DNS rebinding
  cannot swap the address after the check. Redirects are never followed.
- `python`: `module:function` from an allowed module prefix, called in a worker thread.
- `lambda`, `sqs`, `sns`, `eventbridge`, `stepfunctions`: one AWS API call through the
  `aws_clients(service, role_arn)` factory.
- `task` is not invoked here (the worker creates a leased task): `invoke` raises ValueError.

`invoke` never raises for the target's own failures; it answers an `Outcome`. Header secrets
(`{"secret": ARN}`) are resolved at call time, cached five minutes, and never logged or returned.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import hmac
import importlib
import ipaddress
import json
import logging
import os
import re
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import urllib3
from urllib3 import exceptions as u3exc

from gnomon import __version__
from gnomon.domain import netpolicy
from gnomon.domain.timefmt import fmt
from gnomon.ports import Invocation, Outcome, TargetInvoker

__all__ = [
    "AwsClientFactory",
    "DefaultAwsClients",
    "HttpInvoker",
    "Invocation",
    "Outcome",
    "TargetInvoker",
    "build_invoker",
    "execution_name",
    "firing_body",
    "sign",
]

log = logging.getLogger(__name__)

AwsClientFactory = Callable[[str, str | None], Any]

USER_AGENT = f"gnomon/{__version__}"
RESULT_TEXT_LIMIT = 32 * 1024  # a non-JSON response body is cut to this many bytes
DETAILS_BODY_LIMIT = 2 * 1024  # response body kept in error.details
TRACEBACK_LIMIT = 2 * 1024
MAX_READ = 256 * 1024  # most of a response body ever read
SECRET_TTL_SECONDS = 300.0
ROLE_REFRESH_MARGIN = timedelta(minutes=5)

# Headers gnomon owns: a definition's headers cannot replace them (User-Agent it may).
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "idempotency-key",
        "gnomon-callback-token",
        "gnomon-signature",
    }
)

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

# The run whose attempt is being invoked (names the STS session of an assumed role).
_current_run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("gnomon_run_id", default=None)


# --- the firing body and its signature ----------------------------------------------------------


def firing_body(inv: Invocation) -> dict[str, Any]:
    """The JSON every push target receives (CONTRACT.md §5), times in the contract's UTC form."""
    return {
        "run_id": inv.run_id,
        "definition": inv.definition,
        "schedule_id": inv.schedule_id,
        "nominal_time": fmt(inv.nominal_time),
        "scheduled_time": fmt(inv.scheduled_time),
        "previous_nominal_time": fmt(inv.previous_nominal_time),
        "last_success_time": fmt(inv.last_success_time),
        "attempt": inv.attempt,
        "input": inv.input,
    }


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256(secret, b"<t>." + body)>` (the Gnomon-Signature header)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


# --- outcomes ------------------------------------------------------------------------------------


def _error(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"code": code, "message": message, "details": details}


def _failed(code: str, message: str, details: Any = None, *, retryable: bool, **kw: Any) -> Outcome:
    return Outcome(status="failed", error=_error(code, message, details), retryable=retryable, **kw)


def _timed_out(message: str, details: Any = None) -> Outcome:
    return Outcome(status="timed_out", error=_error("timeout", message, details), retryable=True)


def _forbidden(message: str) -> Outcome:
    return _failed("target_forbidden", message, retryable=False)


def _invalid_target(message: str) -> Outcome:
    return _failed("invalid_target", message, retryable=False)


# --- bounded names (Step Functions executions, SQS deduplication ids) ---------------------------

_NOT_NAME_CHAR = re.compile(r"[^A-Za-z0-9_-]")
_NOT_DEDUP_CHAR = re.compile(r"[^A-Za-z0-9!-~]")  # SQS: alphanumerics and ASCII punctuation
_HASH_HEX = 20


def _bounded(run_id: str, attempt: int, *, limit: int, bad: re.Pattern[str]) -> str:
    """`<run_id>-<attempt>` when it is clean and fits; else a sanitised prefix + attempt + hash.

    Injective: a clean name ends with `-<digits>`; a hashed one ends with `-h<hex>` (never all
    digits), and two hashed names differ unless their sha256 prefixes (80 bits) collide."""
    raw = f"{run_id}-{attempt}"
    if len(raw) <= limit and not bad.search(raw):
        return raw
    digest = hashlib.sha256(raw.encode()).hexdigest()[:_HASH_HEX]
    tail = f"-{attempt}-h{digest}"
    prefix = bad.sub("_", run_id)[: max(0, limit - len(tail))]
    return (prefix + tail)[-limit:]


def execution_name(run_id: str, attempt: int) -> str:
    """The Step Functions execution name of an attempt: `[A-Za-z0-9_-]`, at most 80 characters,
    the same for the same (run, attempt) and distinct otherwise."""
    return _bounded(run_id, attempt, limit=80, bad=_NOT_NAME_CHAR)


def _dedup_id(run_id: str, attempt: int) -> str:
    return _bounded(run_id, attempt, limit=128, bad=_NOT_DEDUP_CHAR)


# --- AWS clients ---------------------------------------------------------------------------------


def _session_name(run_id: str | None) -> str:
    if not run_id:
        return "gnomon"
    return "gnomon-" + re.sub(r"[^\w+=,.@-]", "-", run_id[:32])


class DefaultAwsClients:
    """`aws_clients(service, role_arn)`: boto3 clients cached per service; for a role, clients over
    `sts:AssumeRole` credentials cached per role until five minutes before they expire.

    The session is named `gnomon-<run id>` after the run whose attempt first needed the role (the
    factory's signature carries no run id; `invoke` provides it through a context variable), so a
    cached role's session keeps that first run's name until it is refreshed."""

    def __init__(self, *, config: Any = None) -> None:
        import boto3
        from botocore.config import Config

        self._session: Any = boto3.session.Session()
        self._config = config or Config(
            connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 3}
        )
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._roles: dict[str, tuple[Any, datetime]] = {}  # role → (boto3 session, expiration)

    def __call__(self, service: str, role_arn: str | None) -> Any:
        with self._lock:
            key: tuple[str, str | None] = (service, role_arn)
            if key in self._clients and (role_arn is None or self._role_fresh(role_arn)):
                return self._clients[key]
            session = self._session if role_arn is None else self._role_session(role_arn)
            if key not in self._clients:
                self._clients[key] = session.client(service, config=self._config)
            return self._clients[key]

    def _role_fresh(self, role_arn: str) -> bool:
        cached = self._roles.get(role_arn)
        return cached is not None and datetime.now(UTC) < cached[1] - ROLE_REFRESH_MARGIN

    def _role_session(self, role_arn: str) -> Any:
        import boto3

        if self._role_fresh(role_arn):
            return self._roles[role_arn][0]
        sts = self._clients.get(("sts", None))
        if sts is None:
            sts = self._clients[("sts", None)] = self._session.client("sts", config=self._config)
        creds = sts.assume_role(RoleArn=role_arn, RoleSessionName=_session_name(_current_run_id.get()))[
            "Credentials"
        ]
        session = boto3.session.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=self._session.region_name,
        )
        expiration = creds["Expiration"]
        if expiration.tzinfo is None:
            expiration = expiration.replace(tzinfo=UTC)
        self._roles[role_arn] = (session, expiration)
        for key in [k for k in self._clients if k[1] == role_arn]:
            del self._clients[key]
        return session


_RETRYABLE_AWS_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "KMSThrottlingException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ServiceException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "InternalServiceError",
        "InternalException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ResourceConflictException",  # Lambda: the function is being updated
        "ResourceNotReadyException",
        "ExecutionLimitExceeded",  # Step Functions: too many open executions
        "IDPCommunicationError",
    }
)


def _aws_outcome(exc: Exception, service: str, operation: str) -> Outcome:
    """An AWS call's exception as an Outcome: throttling / 5xx / network → retryable, else final."""
    from botocore import exceptions as bexc

    if isinstance(exc, bexc.ClientError):
        err = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code = str(err.get("Code") or "AwsError")
        status = int(meta.get("HTTPStatusCode") or 0)
        retryable = code in _RETRYABLE_AWS_CODES or status >= 500 or status == 429
        details = {
            "service": service,
            "operation": operation,
            "http_status": status or None,
            "request_id": meta.get("RequestId"),
        }
        return _failed(code, str(err.get("Message") or exc), details, retryable=retryable)
    details = {"service": service, "operation": operation}
    if isinstance(exc, bexc.ConnectTimeoutError | bexc.ReadTimeoutError):
        return _timed_out(str(exc), details)
    if isinstance(exc, bexc.ConnectionError | bexc.HTTPClientError):
        return _failed("network_error", str(exc), details, retryable=True)
    if isinstance(exc, bexc.ParamValidationError):
        return _failed("invalid_target", str(exc), details, retryable=False)
    if isinstance(exc, bexc.NoCredentialsError | bexc.PartialCredentialsError):
        return _failed("credentials_error", str(exc), details, retryable=True)
    return _failed("aws_error", f"{type(exc).__name__}: {exc}", details, retryable=True)


class SecretCache:
    """Header secrets from Secrets Manager, each cached for five minutes (values never logged)."""

    def __init__(
        self,
        aws_clients: AwsClientFactory,
        ttl: float = SECRET_TTL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._aws = aws_clients
        self._ttl = ttl
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._values: dict[str, tuple[str, float]] = {}

    def get(self, arn: str) -> str:
        now = self._monotonic()
        with self._lock:
            hit = self._values.get(arn)
            if hit is not None and now < hit[1]:
                return hit[0]
        answer = self._aws("secretsmanager", None).get_secret_value(SecretId=arn)
        if answer.get("SecretString") is not None:
            value = str(answer["SecretString"])
        else:
            value = bytes(answer["SecretBinary"]).decode()
        with self._lock:
            self._values[arn] = (value, now + self._ttl)
        return value


# --- http ----------------------------------------------------------------------------------------


class _Target:
    """A parsed http target URL."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme.lower()
        if self.scheme not in ("http", "https"):
            raise _Refused("only http and https targets are allowed")
        if parts.username is not None or parts.password is not None:
            raise _Invalid("credentials in the URL are not allowed")
        if not parts.hostname:
            raise _Invalid("the URL has no host")
        try:
            self.host = (
                parts.hostname.encode("idna").decode("ascii")
                if not parts.hostname.isascii()
                else parts.hostname
            )
            explicit_port = parts.port
        except (UnicodeError, ValueError) as exc:
            raise _Invalid(f"invalid URL: {exc}") from None
        self.port = explicit_port or (443 if self.scheme == "https" else 80)
        bracketed = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = f"{bracketed}:{explicit_port}" if explicit_port else bracketed
        path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        query = quote(parts.query, safe="/%:@!$&'()*+,;=-._~?") if parts.query else ""
        self.path = f"{path}?{query}" if query else path


class _Refused(Exception):
    pass


class _Invalid(Exception):
    pass


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _text(data: bytes, limit: int) -> str:
    return data[:limit].decode("utf-8", errors="ignore")


class HttpInvoker:
    """The `http` target: a signed POST/PUT to a pinned, policy-checked address.

    `ca_certs` (a PEM bundle) replaces the system trust store — for tests; None in production."""

    def __init__(self, secrets: SecretCache, *, ca_certs: str | None = None) -> None:
        self._secrets = secrets
        self._ca_certs = ca_certs

    def invoke(self, inv: Invocation) -> Outcome:
        deadline = time.monotonic() + inv.timeout_seconds
        t = inv.target
        method = str(t.get("method") or "POST").upper()
        if method not in ("POST", "PUT"):
            return _invalid_target(f"method {method!r} is not POST or PUT")
        try:
            target = _Target(str(t["url"]))
        except _Refused as exc:
            return _forbidden(str(exc))
        except (_Invalid, KeyError) as exc:
            return _invalid_target(str(exc))

        addresses = _allowed_addresses(target)
        if isinstance(addresses, Outcome):
            return addresses

        body = _compact(firing_body(inv))
        headers = {
            "Host": target.host_header,
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            "Idempotency-Key": inv.run_id,
            "Gnomon-Callback-Token": inv.callback_token,
        }
        try:
            extra = self._definition_headers(t.get("headers") or {})
        except _Invalid as exc:
            return _failed("invalid_header", str(exc), retryable=False)
        except Exception as exc:  # a Secrets Manager failure
            out = _aws_outcome(exc, "secretsmanager", "GetSecretValue")
            assert out.error is not None
            return _failed(
                "secret_unavailable",
                "a header secret could not be read",
                {"aws_error": out.error["code"], "message": out.error["message"]},
                retryable=out.retryable,
            )
        if any(name.lower() == "user-agent" for name in extra):
            del headers["User-Agent"]
        headers.update(extra)
        headers["Gnomon-Signature"] = sign(inv.signing_secret, int(time.time()), body)
        return self._send(target, addresses, method, headers, body, deadline)

    def post_signed(self, url: str, body: bytes, signing_secret: str, *, timeout: float = 10.0) -> Outcome:
        """POST `body` (JSON) to `url`, signed like a target request (`Gnomon-Signature`),
        under the same address policy and pinning: a notification webhook."""
        deadline = time.monotonic() + timeout
        try:
            target = _Target(url)
        except _Refused as exc:
            return _forbidden(str(exc))
        except _Invalid as exc:
            return _invalid_target(str(exc))
        addresses = _allowed_addresses(target)
        if isinstance(addresses, Outcome):
            return addresses
        headers = {
            "Host": target.host_header,
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            "Gnomon-Signature": sign(signing_secret, int(time.time()), body),
        }
        return self._send(target, addresses, "POST", headers, body, deadline)

    def _definition_headers(self, given: dict[str, Any]) -> dict[str, str]:
        """The definition's headers, secrets resolved; gnomon's own headers cannot be replaced."""
        out: dict[str, str] = {}
        for name, value in given.items():
            if not _HEADER_NAME.match(name):
                raise _Invalid(f"header name {name!r} is not an HTTP token")
            if name.lower() in _RESERVED_HEADERS:
                continue
            if isinstance(value, dict):
                if not isinstance(value.get("secret"), str):
                    raise _Invalid(f"header {name!r} is neither a string nor a {{'secret': ARN}}")
                text = self._secrets.get(value["secret"])
            else:
                text = str(value)
            if any(c in text for c in "\r\n\0"):
                raise _Invalid(f"the value of header {name!r} contains CR, LF or NUL")
            try:
                text.encode("latin-1")
            except UnicodeEncodeError:
                raise _Invalid(f"the value of header {name!r} is not Latin-1 text") from None
            out[name] = text
        return out

    def _pool(self, target: _Target, ip: str) -> urllib3.HTTPConnectionPool:
        if target.scheme == "https":
            return urllib3.HTTPSConnectionPool(
                host=ip,
                port=target.port,
                maxsize=1,
                retries=False,
                cert_reqs="CERT_REQUIRED",
                ca_certs=self._ca_certs,
                assert_hostname=target.host,
                server_hostname=target.host,
            )
        return urllib3.HTTPConnectionPool(host=ip, port=target.port, maxsize=1, retries=False)

    def _send(
        self,
        target: _Target,
        addresses: list[netpolicy.IPAddress],
        method: str,
        headers: dict[str, str],
        body: bytes,
        deadline: float,
    ) -> Outcome:
        response = None
        for i, addr in enumerate(addresses):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _timed_out("the attempt timed out before connecting")
            pool = self._pool(target, str(addr))
            try:
                response = pool.urlopen(
                    method,
                    target.path,
                    body=body,
                    headers=headers,
                    redirect=False,
                    retries=False,
                    assert_same_host=False,
                    preload_content=False,
                    timeout=urllib3.Timeout(total=remaining),
                )
            except u3exc.NewConnectionError as exc:  # refused/unreachable: nothing was sent
                pool.close()
                if i + 1 < len(addresses):
                    continue
                return _failed(
                    "network_error", f"cannot connect to the target: {_reason(exc)}", retryable=True
                )
            except u3exc.TimeoutError as exc:
                pool.close()
                return _timed_out(f"the target did not answer in time: {_reason(exc)}")
            except u3exc.SSLError as exc:
                pool.close()
                return _failed("tls_error", f"TLS failed: {_reason(exc)}", retryable=True)
            except (u3exc.HTTPError, OSError) as exc:
                pool.close()
                return _failed("network_error", f"the request failed: {_reason(exc)}", retryable=True)
            try:
                return self._outcome(response, deadline)
            finally:
                response.close()
                pool.close()
        return _failed("network_error", "no address to connect to", retryable=True)  # pragma: no cover

    def _outcome(self, response: Any, deadline: float) -> Outcome:
        status = int(response.status)
        data, complete = _read_body(response, deadline)
        if 200 <= status < 300:
            return Outcome(
                status="accepted" if status == 202 else "completed", result=_result(data, complete)
            )
        details = {"status": status, "body": _text(data, DETAILS_BODY_LIMIT)}
        if 300 <= status < 400:
            details["location"] = response.headers.get("Location")
            return _failed(
                "redirect_refused",
                f"the target answered {status}; redirects are not followed",
                details,
                retryable=False,
            )
        retryable = status in (408, 429) or status >= 500 or status < 200
        return _failed(
            f"http_{status}",
            f"the target answered HTTP {status}",
            details,
            retryable=retryable,
            retry_after=_retry_after(response.headers.get("Retry-After")) if retryable else None,
        )


def _allowed_addresses(target: _Target) -> list[netpolicy.IPAddress] | Outcome:
    """Resolve once; every address must pass the policy; connect only to those addresses.
    An `Outcome` when the target cannot be reached or is refused."""
    try:
        addresses = _resolve(target.host, target.port)
    except OSError as exc:
        return _failed("dns_error", f"cannot resolve the target host: {exc}", retryable=True)
    if not addresses:
        return _failed("dns_error", "the target host has no address", retryable=True)
    policy = netpolicy.current()
    for addr in addresses:
        if why := policy.refusal(addr):
            return _forbidden(f"target address refused: {why}")
    return addresses


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc)


def _resolve(host: str, port: int) -> list[netpolicy.IPAddress]:
    """Every address `host` names (a literal in any spelling, or DNS — queried exactly once)."""
    literal = netpolicy.literal_address(host)
    if literal is not None:
        return [literal]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    seen: dict[netpolicy.IPAddress, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen[ipaddress.ip_address(str(sockaddr[0]).split("%")[0])] = None
    return list(seen)


def _read_body(response: Any, deadline: float) -> tuple[bytes, bool]:
    """Up to MAX_READ bytes of the body, within the deadline; (data, whether it was all read).

    A body that cannot be read in time is kept partial: the status line already decided."""
    chunks: list[bytes] = []
    size = 0
    while size < MAX_READ:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"".join(chunks), False
        _set_socket_timeout(response, remaining)
        try:
            chunk = response.read(min(64 * 1024, MAX_READ - size))
        except (u3exc.HTTPError, OSError):
            return b"".join(chunks), False
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def _set_socket_timeout(response: Any, seconds: float) -> None:
    """Bound each body read by the attempt's remaining time (best effort across urllib3 versions)."""
    conn = getattr(response, "_connection", None) or getattr(response, "connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.settimeout(max(0.001, seconds))


def _result(data: bytes, complete: bool) -> Any:
    if not data:
        return None
    if complete:
        try:
            return json.loads(data)
        except ValueError:
            pass
    return _text(data, RESULT_TEXT_LIMIT)


# --- python --------------------------------------------------------------------------------------

_FUNCTION_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def python_allowed(module: str, prefixes: Iterable[str]) -> bool:
    """`module` is one of `prefixes` or inside one (at a dot boundary: `a.b` allows `a.b.c`, not `a.bc`)."""
    return any(p and (module == p or module.startswith(p + ".")) for p in prefixes)


def _jsonable(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return repr(value)[:RESULT_TEXT_LIMIT]


class PythonInvoker:
    """The `python` target: `fn(firing_body)` in a daemon worker thread, bounded by the timeout.

    Python cannot stop a thread: on timeout the attempt ends `timed_out` and the thread is
    abandoned — it runs on in the background (daemon, so it never blocks process exit) and its
    eventual result is discarded. Functions should therefore be idempotent and bounded."""

    def __init__(self, allowed_prefixes: list[str]) -> None:
        self.allowed = [p.strip().rstrip(".") for p in allowed_prefixes if p.strip().rstrip(".")]

    def invoke(self, inv: Invocation) -> Outcome:
        spec = str(inv.target.get("function", ""))
        if not _FUNCTION_RE.match(spec):
            return _invalid_target(f"function {spec!r} is not module:function")
        module_name, func_name = spec.split(":", 1)
        if not python_allowed(module_name, self.allowed):
            return _forbidden(f"module {module_name!r} is not under an allowed python module prefix")
        payload = firing_body(inv)
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["fn"] = fn = _load(module_name, func_name)
                box["value"] = fn(payload)
            except BaseException as exc:  # the target's own failure, whatever it is
                box["exc"] = exc
                box["tb"] = traceback.format_exc()

        ctx = contextvars.copy_context()
        worker = threading.Thread(
            target=ctx.run, args=(run,), name=f"gnomon-python-{inv.run_id}", daemon=True
        )
        worker.start()
        worker.join(inv.timeout_seconds)
        if worker.is_alive():
            return _timed_out(
                f"{spec} did not return within {inv.timeout_seconds:g} s (its thread was abandoned)"
            )
        if "exc" in box:
            exc = box["exc"]
            if isinstance(exc, _NotFound):
                return _failed("target_not_found", str(exc), retryable=False)
            return _failed(
                type(exc).__name__, str(exc), {"traceback": box["tb"][-TRACEBACK_LIMIT:]}, retryable=True
            )
        return Outcome(status="completed", result=_jsonable(box.get("value")))


class _NotFound(Exception):
    pass


def _load(module_name: str, func_name: str) -> Callable[[dict[str, Any]], Any]:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only when the target module itself (or a parent) is missing; a missing import inside
        # the module is the module's own failure.
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise _NotFound(f"module {module_name!r} not found") from None
        raise
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise _NotFound(f"{module_name}:{func_name} is not a function")
    return fn  # type: ignore[no-any-return]


# --- AWS targets ---------------------------------------------------------------------------------


class AwsInvoker:
    """lambda, sqs, sns, eventbridge and stepfunctions targets: one API call each."""

    def __init__(self, aws_clients: AwsClientFactory) -> None:
        self._aws = aws_clients

    def invoke(self, inv: Invocation) -> Outcome:
        t = inv.target
        kind = t["type"]
        service, operation = _AWS_CALLS[kind]
        payload = _compact(firing_body(inv))
        try:
            client = self._aws(service, t.get("role_arn"))
            call = getattr(self, f"_{kind}")
            return call(client, inv, t, payload)  # type: ignore[no-any-return]
        except KeyError as exc:
            return _invalid_target(f"the {kind} target lacks {exc}")
        except Exception as exc:
            if kind == "stepfunctions" and _aws_code(exc) == "ExecutionAlreadyExists":
                # This attempt's execution was already started (a redelivered attempt): done.
                name = execution_name(inv.run_id, inv.attempt)
                arn = t["state_machine_arn"].replace(":stateMachine:", ":execution:", 1) + ":" + name
                return Outcome(status="completed", result={"executionArn": arn, "already_started": True})
            return _aws_outcome(exc, service, operation)

    def _lambda(self, client: Any, inv: Invocation, t: dict[str, Any], payload: bytes) -> Outcome:
        answer = client.invoke(FunctionName=t["function_arn"], InvocationType="Event", Payload=payload)
        return Outcome(status="completed", result={"StatusCode": answer.get("StatusCode")})

    def _sqs(self, client: Any, inv: Invocation, t: dict[str, Any], payload: bytes) -> Outcome:
        kwargs: dict[str, Any] = {"QueueUrl": t["queue_url"], "MessageBody": payload.decode()}
        if t.get("message_group_id"):
            kwargs["MessageGroupId"] = t["message_group_id"]
            kwargs["MessageDeduplicationId"] = _dedup_id(inv.run_id, inv.attempt)
        answer = client.send_message(**kwargs)
        return Outcome(status="completed", result={"MessageId": answer.get("MessageId")})

    def _sns(self, client: Any, inv: Invocation, t: dict[str, Any], payload: bytes) -> Outcome:
        kwargs: dict[str, Any] = {"TopicArn": t["topic_arn"], "Message": payload.decode()}
        if t["topic_arn"].endswith(".fifo"):  # FIFO topics demand a group and a deduplication id
            kwargs["MessageGroupId"] = inv.definition
            kwargs["MessageDeduplicationId"] = _dedup_id(inv.run_id, inv.attempt)
        answer = client.publish(**kwargs)
        return Outcome(status="completed", result={"MessageId": answer.get("MessageId")})

    def _eventbridge(self, client: Any, inv: Invocation, t: dict[str, Any], payload: bytes) -> Outcome:
        entry = {
            "EventBusName": t["event_bus_arn"],
            "Source": t.get("source") or "gnomon",
            "DetailType": t.get("detail_type") or "gnomon.firing",
            "Detail": payload.decode(),
        }
        answer = client.put_events(Entries=[entry])
        entries = answer.get("Entries") or [{}]
        if answer.get("FailedEntryCount", 0) > 0:
            first = entries[0]
            return _failed(
                str(first.get("ErrorCode") or "put_events_failed"),
                str(first.get("ErrorMessage") or "EventBridge did not accept the event"),
                {"service": "events", "operation": "PutEvents"},
                retryable=True,
            )
        return Outcome(status="completed", result={"EventId": entries[0].get("EventId")})

    def _stepfunctions(self, client: Any, inv: Invocation, t: dict[str, Any], payload: bytes) -> Outcome:
        answer = client.start_execution(
            stateMachineArn=t["state_machine_arn"],
            name=execution_name(inv.run_id, inv.attempt),
            input=payload.decode(),
        )
        return Outcome(status="completed", result={"executionArn": answer.get("executionArn")})


_AWS_CALLS = {
    "lambda": ("lambda", "Invoke"),
    "sqs": ("sqs", "SendMessage"),
    "sns": ("sns", "Publish"),
    "eventbridge": ("events", "PutEvents"),
    "stepfunctions": ("stepfunctions", "StartExecution"),
}


def _aws_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


# --- dispatch ------------------------------------------------------------------------------------


class Invoker:
    """Dispatches an attempt on `target["type"]` (see the module docstring)."""

    def __init__(self, *, http: HttpInvoker, python: PythonInvoker, aws: AwsInvoker) -> None:
        self.http = http
        self.python = python
        self.aws = aws

    def invoke(self, inv: Invocation) -> Outcome:
        kind = inv.target.get("type")
        if kind == "task":
            raise ValueError("task targets are not invoked; the worker creates a leased task")
        handler: Callable[[Invocation], Outcome]
        if kind == "http":
            handler = self.http.invoke
        elif kind == "python":
            handler = self.python.invoke
        elif kind in _AWS_CALLS:
            handler = self.aws.invoke
        else:
            raise ValueError(f"unknown target type {kind!r}")
        token = _current_run_id.set(inv.run_id)
        try:
            return handler(inv)
        except Exception as exc:  # a bug here must not poison the queue message: fail the attempt
            log.exception("target invoker failed unexpectedly (run %s, type %s)", inv.run_id, kind)
            return _failed("internal_error", f"{type(exc).__name__}: {exc}", retryable=True)
        finally:
            _current_run_id.reset(token)


def build_invoker(
    *, allow_python_modules: list[str] | None = None, aws_clients: AwsClientFactory | None = None
) -> Invoker:
    """The invoker the worker uses. `allow_python_modules` None → env `GNOMON_ALLOW_PYTHON_MODULES`
    (a comma list); `aws_clients` None → `DefaultAwsClients()` (created on first AWS use)."""
    if allow_python_modules is None:
        raw = os.environ.get("GNOMON_ALLOW_PYTHON_MODULES", "")
        allow_python_modules = [p.strip() for p in raw.split(",") if p.strip()]
    factory = aws_clients or _LazyAwsClients()
    return Invoker(
        http=HttpInvoker(SecretCache(factory)),
        python=PythonInvoker(allow_python_modules),
        aws=AwsInvoker(factory),
    )


class _LazyAwsClients:
    """`DefaultAwsClients`, built on first use (so http/python-only workers never touch boto3)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inner: DefaultAwsClients | None = None

    def __call__(self, service: str, role_arn: str | None) -> Any:
        with self._lock:
            if self._inner is None:
                self._inner = DefaultAwsClients()
        return self._inner(service, role_arn)
