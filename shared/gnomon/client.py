"""A Python client for the gnomon HTTP API.

Errors come back as the same typed exceptions the server raises (`gnomon.domain.errors`): a 404
is `NotFound`, a 409 `conflict` is `Conflict` carrying the current resource, and so on.
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx

from gnomon.domain import errors as E

DEFAULT_URL = "http://127.0.0.1:8080"
_BY_CODE: dict[str, type[E.GnomonError]] = {
    cls.code: cls
    for cls in (
        E.BadRequest,
        E.InvalidPageToken,
        E.Forbidden,
        E.MethodNotAllowed,
        E.AlreadyExists,
        E.AlreadyClosed,
        E.AlreadyDone,
        E.WrongOwner,
        E.LeaseExpired,
        E.InUse,
        E.PayloadTooLarge,
        E.UnsupportedMediaType,
        E.RateLimited,
    )
}
_RETRIED = {429, 500, 502, 503, 504}


class ApiError(E.GnomonError):
    """An error answer without a known code (e.g. API Gateway's own 403)."""

    def __init__(self, status: int, message: str, details: Any = None) -> None:
        super().__init__(message, details)
        self.status_code = status


def error_from(status: int, body: Any) -> E.GnomonError:
    """The typed exception for an error answer in the contract's shape."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return ApiError(status, f"HTTP {status}", body)
    code, message, details = err.get("code"), str(err.get("message", "")), err.get("details")
    if code == "not_found":
        return E.NotFound((details or {}).get("resource", "?"), message)
    if code == "conflict":
        return E.Conflict(message, current=(details or {}).get("current"))
    if code == "invalid_argument" and isinstance(details, list) and details:
        return E.InvalidArgument.many(details)
    cls = _BY_CODE.get(str(code))
    return cls(message, details) if cls else ApiError(status, message, details)


class Client:
    """`Client(url)` — connection reuse, timeouts and retries on 429/5xx with backoff."""

    def __init__(self, url: str | None = None, *, timeout: float = 30.0, retries: int = 3) -> None:
        self.url = (url or os.environ.get("GNOMON_URL") or DEFAULT_URL).rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self._retries = retries

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, json: Any = None, params: Any = None) -> Any:
        """Call the API; answer the decoded JSON body (None for 204) or raise a typed error."""
        for attempt in range(self._retries + 1):
            resp = self._http.request(method, path, json=json, params=params)
            if resp.status_code in _RETRIED and attempt < self._retries:
                time.sleep(min(0.2 * 2**attempt, 5.0))
                continue
            break
        body = resp.json() if resp.content else None
        if resp.status_code >= 400:
            raise error_from(resp.status_code, body)
        return body
