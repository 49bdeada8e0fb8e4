"""`python -m bench [lateness|ticker-scaling|cost|coldstart|console|chaos] [options]`.

Without a sub-command: the short forms of ticker scaling, cost model, cold start, lateness and
console page loads (~25 minutes on 2 cores), then a summary; each writes
`bench/results/<name>.json` with the machine's CPU count, Python version, date and git commit.
Figures only: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from bench import chaos, coldstart, console, cost, lateness, line_buffered, say, table, ticker_scaling


def main(argv: list[str] | None = None) -> int:
    line_buffered()
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command")
    lat = sub.add_parser(
        "lateness", help="lateness of firings on the real local stack", description=lateness.__doc__
    )
    lateness.add_arguments(lat)
    tick = sub.add_parser(
        "ticker-scaling",
        aliases=["ticker"],
        help="DynamoDB reads of one tick vs the due count",
        description=ticker_scaling.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ticker_scaling.add_arguments(tick)
    cost_p = sub.add_parser(
        "cost",
        help="$ per million firings from the AWS requests counted per firing",
        description=cost.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cost.add_arguments(cost_p)
    cold = sub.add_parser(
        "coldstart", help="import time of each handler module", description=coldstart.__doc__
    )
    coldstart.add_arguments(cold)
    cons = sub.add_parser(
        "console",
        help="console page loads on the local stack (1 000 schedules, 10 000 runs)",
        description=console.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    console.add_arguments(cons)
    cha = sub.add_parser(
        "chaos",
        help="≥ 10 000 firings under injected faults: lost, doubles, inconsistencies",
        description=chaos.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chaos.add_arguments(cha)
    all_ = sub.add_parser("all", help="all five, short form (the default)")
    all_.add_argument("--long", action="store_true", help="all in their long form")
    all_.add_argument("--no-write", action="store_true", help="do not write bench/results/*.json")
    all_.add_argument(
        "--quiet-wait", type=float, default=0.0, help="lateness: wait up to N s for an idle machine per load"
    )
    args = p.parse_args(argv)

    if args.command == "lateness":
        lateness.run(args)
        return 0
    if args.command in ("ticker-scaling", "ticker"):
        ticker_scaling.run(args)
        return 0
    if args.command == "cost":
        cost.run(args)
        return 0
    if args.command == "coldstart":
        coldstart.run(args)
        return 0
    if args.command == "console":
        console.run(args)
        return 0
    if args.command == "chaos":
        return 0 if chaos.run(args)["result"]["clean"] else 1

    long_form = bool(getattr(args, "long", False))
    no_write = bool(getattr(args, "no_write", False))
    t0 = time.monotonic()
    tick_args = tick.parse_args([*(["--long"] if long_form else []), *(["--no-write"] if no_write else [])])
    tick_result = ticker_scaling.run(tick_args)
    cost.run(cost_p.parse_args(["--no-write"] if no_write else []))
    coldstart.run(cold.parse_args(["--no-write"] if no_write else []))
    lat_args = lat.parse_args(
        [
            *(["--long"] if long_form else []),
            *(["--no-write"] if no_write else []),
            "--quiet-wait",
            str(getattr(args, "quiet_wait", 0.0)),
        ]
    )
    lat_result = lateness.run(lat_args)
    cons_result = console.run(cons.parse_args(["--no-write"] if no_write else []))
    summary(tick_result, lat_result, time.monotonic() - t0)
    console_summary(cons_result)
    return 0


def summary(tick: dict[str, Any], lat: dict[str, Any], elapsed: float) -> None:
    meta = lat["meta"]
    print("\n=== gnomon benchmarks: summary ===")
    print(
        f"{meta['date']}  cpus {meta['cpu_count']}  python {meta['python']}  "
        f"commit {(meta.get('git_commit') or '?')[:12]}{' (dirty tree)' if meta.get('git_dirty') else ''}  "
        f"took {elapsed:.0f} s"
    )
    print("\nTicker: DynamoDB items read per due schedule (should not grow with the total)")
    print(
        table(
            ["schedules", "due", "due_read/due", "index/due", "read/due", "requests", "tick ms"],
            [
                [
                    r["total"],
                    r["due"],
                    r["ratio_due_read_per_due"],
                    r["ratio_index_items_per_due"],
                    r["ratio_items_read_per_due"],
                    r["requests_total"],
                    r["tick_ms"],
                ]
                for r in tick["results"]
            ],
        )
    )
    print("\nLateness on the local stack (receive − scheduled_time)")
    print(
        table(
            [
                "load",
                "rate/s",
                "expected",
                "dups",
                "misses",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
                "machine busy%",
            ],
            [
                [
                    r["load"],
                    r["rate"],
                    r["expected"],
                    r["duplicates"],
                    r["misses"],
                    r["p50_ms"],
                    r["p95_ms"],
                    r["p99_ms"],
                    r["max_ms"],
                    (r.get("cpu") or {}).get("machine_busy_pct"),
                ]
                for r in lat["results"]
            ],
        )
    )
    say(
        "results in bench/results/ (ticker_scaling.json, cost.json, coldstart.json, lateness.json, console.json)"
    )


def console_summary(result: dict[str, Any]) -> None:
    seeded = result["seeded"]
    print(f"\nConsole page loads ({result['mode']}; {seeded['schedules']} schedules, {seeded['runs']} runs)")
    rows = result["results"]
    if result["mode"] == "browser":
        print(
            table(
                ["page", "ready ms", "ready max", "complete ms", "api calls", "< 1 s"],
                [
                    [
                        r["page"],
                        r["ready_ms_median"],
                        r["ready_ms_max"],
                        r["complete_ms_median"],
                        r["api_calls"],
                        r["under_goal"],
                    ]
                    for r in rows
                ],
            )
        )
    else:
        print(
            table(
                ["page", "api ms", "api max", "calls", "< 1 s"],
                [
                    [r["page"], r["api_ms_median"], r["api_ms_max"], r["api_calls"], r["under_goal"]]
                    for r in rows
                ],
            )
        )


if __name__ == "__main__":
    sys.exit(main())
