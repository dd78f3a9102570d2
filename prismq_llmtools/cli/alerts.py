"""``prismq-llmtools alerts check|watch``: evaluate alert rules over JSON-lines logs.

``check`` replays the logs (alerts as text, or JSON lines with ``--json``; exit status 1 with
``--fail-on-alert`` when any alert fired, for cron and CI); ``watch`` follows them like
``tail -F``. Status 2 means bad rules or unreadable logs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``alerts`` subcommand (with ``check`` and ``watch``) to the command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "alerts",
        help="evaluate alert rules over event logs (replay or follow)",
        description="Evaluate alert rules (TOML) over JSON-lines event logs, on event time.",
    )
    actions = parser.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="replay logs and report the alerts they raise")
    watch = actions.add_parser("watch", help="follow logs (like tail -F) and alert as they grow")
    for sub in (check, watch):
        _common(sub)
    check.add_argument(
        "--fail-on-alert", action="store_true", help="exit with status 1 when any alert fired"
    )
    watch.add_argument(
        "--from-start", action="store_true", help="replay existing content first (default: end)"
    )
    watch.add_argument("--poll", default="1s", metavar="DURATION", help="poll interval (1s)")
    watch.add_argument(
        "--no-heartbeat",
        action="store_true",
        help="do not advance event time by the wall clock when the logs are quiet",
    )
    parser.set_defaults(func=run)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logs", nargs="+", metavar="LOG", help="JSON-lines log files (.gz too)")
    parser.add_argument(
        "--rules", action="append", default=[], metavar="RULES.toml", help="rule file (repeatable)"
    )
    parser.add_argument(
        "--pack", choices=["builtin"], help="add the built-in rule pack (see docs/alerts.md)"
    )
    parser.add_argument(
        "--pack-param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a built-in pack parameter, e.g. spend_per_hour_usd=5 (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print alerts as JSON lines")
    parser.add_argument("--webhook", metavar="URL", help="also POST each alert to this URL")
    parser.add_argument("--slack", action="store_true", help="send the webhook in Slack's format")
    parser.add_argument("--lateness", metavar="DURATION", help="out-of-order tolerance (5s)")
    parser.add_argument("--resolution", metavar="DURATION", help="evaluation step (1s)")


def run(args: argparse.Namespace) -> int:
    """Run ``alerts check`` or ``alerts watch``; return the exit status."""
    from prismq_llmtools.alerts.actions import PrintAction, WebhookAction
    from prismq_llmtools.alerts.durations import parse_duration
    from prismq_llmtools.alerts.engine import AlertEngine
    from prismq_llmtools.alerts.pack import builtin_rules
    from prismq_llmtools.alerts.rules import Rule, RuleSet, load_rules
    from prismq_llmtools.errors import ConfigurationError

    try:
        rules: list[Rule] = []
        resolution, lateness = 1.0, 5.0
        for path in args.rules:
            ruleset = load_rules(path)
            if not ruleset.rules:
                raise ConfigurationError(
                    f"{path}: the rule file holds no rules (write [[rule]] tables, or"
                    " [packs.builtin] for the built-in pack)"
                )
            rules.extend(ruleset.rules)
            resolution, lateness = ruleset.resolution_s, ruleset.lateness_s
        if args.pack:
            rules.extend(builtin_rules(**_pack_params(args.pack_param)))
        elif args.pack_param:
            raise ConfigurationError("--pack-param needs --pack builtin")
        if not rules:
            raise ConfigurationError("no rules: give --rules RULES.toml and/or --pack builtin")
        if args.resolution:
            resolution = parse_duration(args.resolution)
        if args.lateness:
            lateness = parse_duration(args.lateness, allow_zero=True)
        ruleset = RuleSet(rules=tuple(rules), resolution_s=resolution, lateness_s=lateness)
        actions: list[Any] = [PrintAction(sys.stdout, json=args.json)]
        if args.webhook:
            actions.append(WebhookAction(args.webhook, slack=args.slack))
        engine = AlertEngine(ruleset, actions=actions)
    except (ConfigurationError, ValueError, TypeError) as exc:
        print(f"prismq-llmtools alerts: {exc}", file=sys.stderr)
        return 2
    loads = _fast_loads()
    try:
        if args.alerts_command == "check":
            from prismq_llmtools.alerts.sources import replay

            stats = replay(args.logs, engine, loads=loads)
        else:
            from prismq_llmtools.alerts.tail import follow

            try:
                stats = follow(
                    args.logs, engine, poll_s=parse_duration(args.poll),
                    from_end=not args.from_start, heartbeat=not args.no_heartbeat, loads=loads,
                )  # fmt: skip
            except KeyboardInterrupt:
                from prismq_llmtools.alerts.sources import SourceStats

                stats = SourceStats(files=len(args.logs))
    except OSError as exc:
        print(
            f"prismq-llmtools alerts: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr
        )
        return 2
    counts = engine.stats
    print(
        f"alerts: {counts.fired} fired, {counts.resolved} resolved; {counts.events} events, "
        f"{counts.late} late; {stats.summary()}"
        + (f"; {counts.action_errors} action errors" if counts.action_errors else ""),
        file=sys.stderr,
    )
    for example in stats.examples[1:]:
        print(f"  malformed {example.path}:{example.line}: {example.reason}", file=sys.stderr)
    return 1 if args.alerts_command == "check" and args.fail_on_alert and counts.fired else 0


def _pack_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise ValueError(f"--pack-param expects NAME=VALUE, got {pair!r}")
        try:
            value: Any = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"--pack-param {name}: not a number: {text!r}") from None
        params[name.strip()] = value
    return params


def _fast_loads() -> Any:
    """``orjson.loads`` when the optional ``[fast]`` extra is installed, else the stdlib."""
    try:
        import orjson
    except ImportError:
        return None
    return orjson.loads
