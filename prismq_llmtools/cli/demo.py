"""``prismq-llmtools demo``: the example pipeline against the simulator (or the real API)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="run the example pipeline against the bundled simulator",
        description=(
            "Run the example pipeline (prismq_llmtools/examples/newsroom.py, shipped with the "
            "package) over a few dozen prompts through the official openai client, against "
            "the in-process simulator with a fault profile (or the real API with --real and "
            "OPENAI_API_KEY), and print what was counted, billed and absorbed."
        ),
    )
    parser.add_argument("--articles", type=int, default=24, help="how many articles (default 24)")
    parser.add_argument("--log", type=Path, default=None, help="events log (JSON lines)")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed")
    parser.add_argument(
        "--fault-rate", type=float, default=0.2, help="share of requests that fail transiently"
    )
    parser.add_argument("--real", action="store_true", help="use the real API (OPENAI_API_KEY)")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.set_defaults(func=run)


def _load_example() -> ModuleType:
    """The example pipeline, shipped inside the package so the demo runs from any directory."""
    from prismq_llmtools.examples import newsroom

    return newsroom


def _simulator(example: ModuleType, seed: int, fault_rate: float) -> Any:
    from prismq_llmtools.testing.simulator import (
        FaultProfile,
        LatencyModel,
        Simulator,
        SimulatorConfig,
    )

    share = fault_rate / 3
    faults = FaultProfile(
        rate_limit=share, service_unavailable=share, server_error=share, retry_after_s=0.2
    )
    config = SimulatorConfig(
        seed=seed,
        rpm=example.RPM,
        tpm=example.TPM,
        faults=faults,
        latency=LatencyModel(base_s=0.02, per_output_token_s=0.0005),
    )
    return Simulator(config)


def run(args: argparse.Namespace) -> int:
    """Run the demo; return the exit status."""
    import openai

    from prismq_llmtools import BatchError, configure_logging, usage_totals

    example = _load_example()
    workdir = Path(tempfile.mkdtemp(prefix="prismq-demo-"))
    log = args.log or workdir / "events.jsonl"
    os.environ["PRISMQ_LLMTOOLS_CACHE_DIR"] = str(workdir / "cache")  # a fresh cache per demo
    configure_logging(file=log)
    articles = [
        f"{example.ARTICLES[i % len(example.ARTICLES)]} (Story {i + 1}.)"
        for i in range(args.articles)
    ]

    simulator = None
    if args.real:
        if not os.environ.get("OPENAI_API_KEY"):
            print("demo: --real needs OPENAI_API_KEY", file=sys.stderr)
            return 2
        client = openai.OpenAI()
        where = "the OpenAI API"
    else:
        simulator = _simulator(example, args.seed, args.fault_rate).start()
        client = simulator.client()
        where = (
            f"the simulator at {simulator.base_url}: {example.RPM} RPM, {example.TPM:,} TPM, "
            f"{args.fault_rate:.0%} injected faults"
        )
    print(f"prismq_llmtools demo: {len(articles)} articles against {where}")
    print(f"events: {log}\n")
    newsroom = example.Newsroom(client)
    try:
        started = time.perf_counter()
        titles = newsroom.write_title.batch(articles)
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        again = newsroom.write_title.batch(articles)
        second_s = time.perf_counter() - started
        for i in range(4):
            newsroom.briefing(f"{example.ARTICLES[i]} (Briefing {i + 1}.)")
        try:
            newsroom.summarize.batch(articles)
            budget_line = "the summaries fitted in their daily budget"
        except BatchError as exc:
            done = len(exc.succeeded) if exc.succeeded is not None else 0
            budget_line = (
                f"the daily budget stopped the summaries cleanly: {done} written, "
                f"{len(exc.not_run)} did not run ({type(exc.stop_reason).__name__})"
            )
    finally:
        if simulator is not None:
            server = simulator.stats()
            simulator.stop()
    calls = _read_calls(log)
    titles_calls = [c for c in calls if c.get("operation") == "titles" and c.get("cache") != "hit"]
    _print_title_table(titles_calls)
    total = usage_totals().total()
    print(f"first pass: {len(titles)} titles in {first_s:.1f} s with .batch")
    hits = sum(1 for c in calls if c.get("operation") == "titles" and c.get("cache") == "hit")
    print(
        f"second pass: {len(again)} titles in {second_s:.2f} s, {hits} served from the cache "
        f"(${total.saved_cost_usd:.6f} saved), identical: {again == titles}"
    )
    print(budget_line)
    _print_operations(usage_totals())
    if simulator is not None:
        failed = sum(1 for c in calls if c.get("outcome") == "error")
        injected = sum(server.faults.values())
        waited = sum(float(c.get("wait_s", 0)) for c in calls)
        print(
            f"server: {server.received} requests, {server.served} served, {injected} injected "
            f"faults, {server.rate_limited} rejected for exceeding its rate limits "
            f"(the limiter waited {waited:.1f} s instead)"
        )
        print(
            f"calls that failed for the caller, budget stops aside: {failed - _budget_stops(calls)}"
        )
    _print_report(log)
    _check_alerts(log)
    return 0


def _budget_stops(calls: list[dict[str, Any]]) -> int:
    return sum(1 for c in calls if c.get("error.type") == "BudgetExceeded")


def _print_report(log: Path) -> None:
    """The usage report of the run, read back from its own log."""
    from prismq_llmtools.report import build_report, read_events
    from prismq_llmtools.report.render import render_table

    print(f"\nprismq-llmtools report {log}")
    print(render_table(build_report(read_events([log]), by="operation")))


def _check_alerts(log: Path) -> None:
    """Replay the log through the built-in rule pack, at thresholds sized for a short demo."""
    from prismq_llmtools.alerts import Alert, AlertEngine, StructlogAction, builtin_rules, replay

    params: dict[str, Any] = {"retries_per_minute": 2.0, "min_calls": 5}
    fired: list[Alert] = []
    engine = AlertEngine(builtin_rules(**params), actions=[fired.append])
    replay([log], engine)
    shown = " ".join(f"--pack-param {k}={v}" for k, v in params.items())
    print(f"\nprismq-llmtools alerts check --pack builtin {shown} {log}")
    announce = StructlogAction()
    for alert in fired:
        announce(alert)  # alert.fired / alert.resolved lines in the same log
        if alert.state == "fired":
            print(f"  [{alert.severity}] {alert.message}")
    if not any(a.state == "fired" for a in fired):
        print("  no alert fired")


def _read_calls(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event.get("event") == "llm.call":
            out.append(event)
    return out


def _print_title_table(calls: list[dict[str, Any]]) -> None:
    """Each title request: prompt tokens counted before the call against those billed."""
    header = ("#", "counted", "billed", "out", "tries", "waited s", "cost $")
    print("{:>3} {:>8} {:>7} {:>5} {:>5} {:>9} {:>10}".format(*header))
    total_counted = total_billed = 0
    for i, call in enumerate(calls, 1):
        counted = int(call.get("prompt_tokens_estimate", -1))
        billed = int(call.get("gen_ai.usage.input_tokens", 0))
        total_counted += counted
        total_billed += billed
        mark = "" if counted == billed else "  <- differs"
        print(
            f"{i:>3} {counted:>8} {billed:>7} {call.get('gen_ai.usage.output_tokens', 0):>5} "
            f"{call.get('attempts', 1):>5} {float(call.get('wait_s', 0)):>9.2f} "
            f"{call.get('cost_usd', 0):>10.6f}{mark}"
        )
    print(f"{'all':>3} {total_counted:>8} {total_billed:>7}")
    verdict = "exact" if total_counted == total_billed else "DIFFERENT"
    print(f"prompt tokens counted before the calls vs billed after: {verdict}\n")


def _print_operations(totals: Any) -> None:
    total = totals.total()
    briefing = totals.by_operation().get("briefing")
    print(f"retries absorbed: {total.retries} (of which {total.rate_limited} were 429s)")
    if briefing is not None:
        print(
            f"nested operations roll up: 'briefing' counts {briefing.calls} calls "
            f"(its own and its titles and summaries), costing ${briefing.cost_usd:.6f}"
        )
