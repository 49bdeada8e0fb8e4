"""Helpers the contract tests share: paging through a store and racing threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from gnomon.ports import Page

T = TypeVar("T")


def collect_pages(fetch: Callable[[str | None], Page[T]], key: Callable[[T], Any]) -> list[list[Any]]:
    """Follow `last_key` until None, returning each page's item keys."""
    pages: list[list[Any]] = []
    after: str | None = None
    for _ in range(200):
        page = fetch(after)
        pages.append([key(i) for i in page.items])
        if page.last_key is None:
            return pages
        after = page.last_key
    raise AssertionError("pagination did not end")


def race(n: int, action: Callable[[int], T]) -> list[T | Exception]:
    """Run `action(i)` in n threads released at once; results (or exceptions) by index."""
    barrier = threading.Barrier(n)
    results: list[T | Exception] = [RuntimeError("not run")] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = action(i)
        except Exception as e:  # collected and asserted on by the caller
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results
