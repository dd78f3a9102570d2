"""``prismq-llmtools report LOG...``: usage and cost per operation, model, site or day."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``report`` subcommand to the command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="usage and cost report from event logs",
        description=(
            "Calls, tokens (input, cached, output, reasoning), cost, cache hit rate and dollars "
            "saved, retries, 429s and p50/p95 latency per group, from JSON-lines event logs."
        ),
    )
    parser.add_argument("logs", nargs="+", metavar="LOG", help="JSON-lines log files (.gz too)")
    parser.add_argument(
        "--by", choices=["operation", "model", "site", "day"], default="operation",
        help="what to group by (default: operation)",
    )  # fmt: skip
    parser.add_argument("--since", metavar="ISO", help="only events at or after this time (UTC)")
    parser.add_argument("--until", metavar="ISO", help="only events before this time (UTC)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the report as JSON")
    output.add_argument("--csv", action="store_true", help="print the report as CSV")
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also draw cost and tokens over time per operation (needs [plot]; .svg works too)",
    )
    parser.add_argument(
        "--html",
        metavar="FILE.html",
        help="also write one self-contained page with the table and the chart, for sharing",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the report; return 0, or 2 for bad arguments or unreadable logs."""
    from prismq_llmtools.alerts.eventtime import parse_event_time
    from prismq_llmtools.alerts.sources import SourceStats
    from prismq_llmtools.errors import ConfigurationError
    from prismq_llmtools.report import build_report, read_events
    from prismq_llmtools.report.render import (
        plot_costs,
        render_csv,
        render_html,
        render_json,
        render_table,
    )

    bounds = []
    for option, text in (("--since", args.since), ("--until", args.until)):
        moment = None if text is None else parse_event_time(text)
        if text is not None and moment is None:
            print(f"prismq-llmtools report: {option}: not an ISO time: {text!r}", file=sys.stderr)
            return 2
        bounds.append(moment)
    stats = SourceStats(files=len(args.logs))
    try:
        report = build_report(
            read_events(args.logs, stats), by=args.by, since=bounds[0], until=bounds[1]
        )
    except OSError as exc:
        print(
            f"prismq-llmtools report: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr
        )
        return 2
    if args.json:
        sys.stdout.write(render_json(report))
    elif args.csv:
        sys.stdout.write(render_csv(report))
    else:
        sys.stdout.write(render_table(report))
    skipped = f", {report.skipped} without a timestamp" if report.skipped else ""
    print(f"report: {report.events} events{skipped}; {stats.summary()}", file=sys.stderr)
    if args.plot:
        try:
            plot_costs(report, args.plot)
        except ConfigurationError as exc:
            print(f"prismq-llmtools report: {exc}", file=sys.stderr)
            return 2
        print(f"report: chart written to {args.plot}", file=sys.stderr)
    if args.html:
        try:
            with open(args.html, "w", encoding="utf-8") as page:
                page.write(render_html(report))
        except OSError as exc:
            print(f"prismq-llmtools report: cannot write {args.html}: {exc}", file=sys.stderr)
            return 2
        print(f"report: page written to {args.html}", file=sys.stderr)
    return 0
