"""Chaos: ≥ 10 000 firings through gnomon's real ticker and worker code (DynamoDB on in-process
moto, the firing queue modelled as SQS behaves) on a virtual clock, with duplicate deliveries,
2–4 concurrent tickers, worker crashes after the claim, visibility timeouts expiring mid-run,
20 % throttling and ambiguous write failures — then an audit: lost firings, doubles, history
inconsistencies, counter mismatches. The harness is `tests/chaos/harness.py`; its short form
runs in `make test` (`tests/chaos/test_chaos.py`).

Counter increments (`/v1/stats` items, schedule counters) are ADDs carrying a write token: a
retried lost answer meets its own token and is not added twice, a throttled add is sent again;
a surfaced lost answer on an item another writer touched since can still be lost. They are
spared from faults unless `--fault-counters`, which measures how far they drift.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench import machine, say, table, write_result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--firings", type=int, default=10_000, help="at least this many firings (default 10 000)")
    p.add_argument("--schedules", type=int, default=40, help="interval schedules (every 5/10/15/20 s)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--fault-counters", action="store_true", help="inject faults into counter increments too")
    p.add_argument("--no-write", action="store_true", help="do not write bench/results/chaos.json")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.chaos.harness import ChaosConfig, duration_for, run_chaos

    cfg = ChaosConfig(seed=args.seed, schedules=args.schedules, spare_counters=not args.fault_counters)
    cfg.duration_s = duration_for(cfg, args.firings)
    say(f"chaos: {cfg.schedules} schedules for {cfg.duration_s} virtual s (≥ {args.firings} firings)")
    meta = machine()
    started = time.monotonic()

    def progress(chaos: Any) -> None:
        if chaos.ticks % 20 == 0:
            say(
                f"  t+{(chaos.clock.now() - chaos.end).total_seconds() + cfg.duration_s:.0f} s virtual, "
                f"{sum(chaos.outcomes.values())} messages handled, {time.monotonic() - started:.0f} s"
            )

    chaos, audit = run_chaos(cfg, progress=progress)
    wall = time.monotonic() - started
    injections = {
        "duplicate deliveries": chaos.injected["duplicate"],
        "concurrent tickers (sum over ticks)": chaos.injected["concurrent_tickers"],
        "worker crashes after claim": chaos.injected["crash"],
        "visibility expired mid-run": chaos.injected["visibility"],
        **{
            f"{k.split(':')[1]}": v
            for k, v in sorted(chaos.faults.counts.items())
            if k.startswith("throttle:")
        },
        "ambiguous (caller sees the error)": chaos.faults.counts["ambiguous"],
        "ambiguous (SDK retried)": chaos.faults.counts["ambiguous_retried"],
        "counter writes spared": chaos.faults.counts["spared_counter_write"],
    }
    requests = sum(chaos.faults.requests.values())
    throttled = sum(v for k, v in chaos.faults.counts.items() if k.startswith("throttle:"))
    result = {
        "firings": audit.firings,
        "runs": audit.runs,
        "statuses": audit.statuses,
        "lost": audit.lost,
        "double_invocations": audit.double_invocations,
        "double_successes": audit.double_successes,
        "inconsistent_histories": audit.inconsistent,
        "counter_mismatches": audit.counter_mismatches,
        "dead_lettered": audit.dead_lettered,
        "unfinished": audit.unfinished,
        "unexpected": audit.unexpected,
        "clean": audit.clean,
        "wall_s": round(wall, 1),
        "virtual_s": round((chaos.clock.now() - chaos.end).total_seconds() + cfg.duration_s),
        "dynamodb_requests": requests,
        "throttled_share": round(throttled / requests, 3) if requests else None,
        "injections": injections,
        "message_outcomes": dict(chaos.outcomes),
        "errors_seen": dict(chaos.errors),
        "ticks": chaos.ticks,
        "tick_totals": dict(chaos.tick_reports),
        "sqs": {"sent": chaos.queue.sent, "stale_deletes": chaos.queue.stale_deletes},
        "examples": audit.examples,
    }
    print("\nChaos: injections")
    print(table(["injection", "count"], list(injections.items())))
    print("\nChaos: result (all but firings/runs/wall must be 0)")
    print(
        table(
            [
                "firings",
                "runs",
                "lost",
                "double inv.",
                "double succ.",
                "inconsistent",
                "counter mism.",
                "dead-lettered",
                "unfinished",
                "wall s",
            ],
            [
                [
                    audit.firings,
                    audit.runs,
                    audit.lost,
                    audit.double_invocations,
                    audit.double_successes,
                    audit.inconsistent,
                    audit.counter_mismatches,
                    audit.dead_lettered,
                    audit.unfinished,
                    round(wall, 1),
                ]
            ],
        )
    )
    for line in audit.examples[:20]:
        print("  ", line)
    payload = {
        "meta": meta,
        "config": {**vars(cfg), "every": list(cfg.every), "tickers": list(cfg.tickers)},
        "result": result,
    }
    if not args.no_write:
        say(f"wrote {write_result('chaos', payload)}")
    return payload
