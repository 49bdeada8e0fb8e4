"""Smoke test of the ticker-scaling benchmark at a tiny size: a tick reads O(due) — the due
index hands back exactly the due schedules — not O(total). A correctness check, not a timing."""

from __future__ import annotations

from bench.ticker_scaling import run_size


def test_ticker_scaling_reads_only_the_due_schedules() -> None:
    r = run_size(200, 0.01)
    assert r["total"] == 200 and r["due"] == 2
    assert r["due_read"] == r["due"]
    assert r["due_index_items"] == r["due"]  # what DynamoDB returned from the `due` index
    assert r["schedules_advanced"] == r["due"] and r["firings_enqueued"] == r["due"]
    assert r["tick_errors"] == []
    # every schedule was written by the store's create: one PutItem each
    assert r["seed_requests"].get("PutItem", 0) >= 200
    # an idle tick right after reads nothing: every due schedule moved a week ahead
    assert r["idle_tick"]["due_read"] == 0 and r["idle_tick"]["items_read"] == 0
