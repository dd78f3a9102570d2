"""``prismq-llmtools demo``: the example pipeline against the simulator (or the real API)."""

from __future__ import annotations

import argparse
import importlib.util
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
            "Run examples/newsroom.py over a few dozen prompts through the official openai "
            "client, against the in-process simulator with a fault profile (or the real API "
            "with --real and OPENAI_API_KEY), and print what was counted, billed and absorbed."
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
    path = Path.cwd() / "examples" / "newsroom.py"
    if not path.is_file():
        raise SystemExit("demo: run it from the repository root (examples/newsroom.py not found)")
    spec = importlib.util.spec_from_file_location("newsroom_example", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"demo: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _simulator(seed: int, fault_rate: float) -> Any:
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
        faults=faults,
        latency=LatencyModel(base_s=0.01, per_output_token_s=0.0002),
    )
    return Simulator(config)


def run(args: argparse.Namespace) -> int:
    """Run the demo; return the exit status."""
    import openai

    from prismq_llmtools import configure_logging, usage_totals
    from prismq_llmtools.openai.tokens import count_request

    example = _load_example()
    log = args.log or Path(tempfile.mkdtemp(prefix="prismq-demo-")) / "events.jsonl"
    configure_logging(file=log)
    articles = [example.ARTICLES[i % len(example.ARTICLES)] for i in range(args.articles)]
    articles = [f"{a} (Story {i + 1}.)" for i, a in enumerate(articles)]

    simulator = None
    if args.real:
        if not os.environ.get("OPENAI_API_KEY"):
            print("demo: --real needs OPENAI_API_KEY", file=sys.stderr)
            return 2
        client = openai.OpenAI()
        where = "the OpenAI API"
    else:
        simulator = _simulator(args.seed, args.fault_rate).start()
        client = simulator.client()
        where = f"the simulator at {simulator.base_url} (fault rate {args.fault_rate:.0%})"
    print(f"prismq_llmtools demo: {len(articles)} articles against {where}")
    print(f"events: {log}\n")
    newsroom = example.Newsroom(client, model=args.model)
    started = time.perf_counter()
    counted: list[int] = []
    try:
        for article in articles:
            body = {"model": args.model, "messages": example.title_messages(article)}
            counted.append(count_request(body).prompt_tokens)
            newsroom.write_title(article)
        for article in articles[:4]:
            newsroom.briefing(article)
    finally:
        if simulator is not None:
            server = simulator.stats()
            simulator.stop()
    elapsed = time.perf_counter() - started
    calls = _read_calls(log)
    titles = [c for c in calls if c.get("operation") == "titles"]
    _print_title_table(articles, counted, titles)
    _print_operations(usage_totals())
    print(f"\nran in {elapsed:.1f} s")
    if simulator is not None:
        failed = sum(1 for c in calls if c.get("outcome") == "error")
        print(
            f"server saw {server.received} requests, served {server.served}, "
            f"failed {server.received - server.served} with injected faults; "
            f"calls that failed for the caller: {failed}"
        )
    _print_report(log)
    _check_alerts(log)
    return 0


def _print_report(log: Path) -> None:
    """The usage report of the run, read back from its own log."""
    from prismq_llmtools.report import build_report, read_events
    from prismq_llmtools.report_render import render_table

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


def _print_title_table(
    articles: list[str], counted: list[int], calls: list[dict[str, Any]]
) -> None:
    header = ("#", "article", "counted", "billed", "out", "tries", "cost $")
    print("{:>3}  {:<42} {:>8} {:>7} {:>5} {:>5} {:>10}".format(*header))
    total_counted = total_billed = 0
    for i, (article, before, call) in enumerate(zip(articles, counted, calls, strict=False), 1):
        billed = int(call.get("gen_ai.usage.input_tokens", 0))
        total_counted += before
        total_billed += billed
        mark = "" if before == billed else "  <- differs"
        print(
            f"{i:>3}  {article[:40] + '..':<42} {before:>8} {billed:>7} "
            f"{call.get('gen_ai.usage.output_tokens', 0):>5} {call.get('attempts', 1):>5} "
            f"{call.get('cost_usd', 0):>10.6f}{mark}"
        )
    print(f"{'':>3}  {'total':<42} {total_counted:>8} {total_billed:>7}")
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
