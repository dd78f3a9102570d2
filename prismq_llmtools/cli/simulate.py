"""``prismq-llmtools simulate``: run the OpenAI-compatible simulator until interrupted."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register", "run"]

_FAULT_KINDS = (
    "rate_limit",
    "insufficient_quota",
    "server_error",
    "bad_gateway",
    "service_unavailable",
    "timeout",
    "slow",
    "drop_connection",
    "malformed_json",
    "empty_body",
    "stream_cut",
    "stream_no_finish",
    "context_length_exceeded",
)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _fault(text: str) -> tuple[str, float]:
    kind, sep, probability = text.partition("=")
    if not sep or kind not in _FAULT_KINDS:
        raise argparse.ArgumentTypeError(
            f"expected KIND=PROBABILITY, KIND one of {', '.join(_FAULT_KINDS)}"
        )
    return kind, float(probability)


def register(subparsers: Any) -> None:
    """Add the ``simulate`` subcommand to the command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="run a local OpenAI-compatible API simulator on 127.0.0.1",
        description=(
            "Serve chat completions (and streams), embeddings, responses, models, files and "
            "batches on 127.0.0.1, with OpenAI's rate limits, usage and seeded faults. "
            "Options override the --config file. Stats: GET /_simulator/stats."
        ),
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    parser.add_argument("--config", metavar="FILE", help="settings from a .json or .toml file")
    parser.add_argument("--rpm", type=_positive_int, help="requests per minute, every model")
    parser.add_argument("--tpm", type=_positive_int, help="tokens per minute, every model")
    parser.add_argument("--seed", type=int, help="seed of content, faults and jitter")
    parser.add_argument(
        "--admission",
        choices=("exact", "chars"),
        help="token charge at admission: tiktoken count or ceil(chars/4), plus the cap",
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        metavar="P",
        help="probability of a transient fault (429, 500, 502, 503 evenly) per request",
    )
    parser.add_argument(
        "--fault",
        type=_fault,
        action="append",
        metavar="KIND=P",
        help="probability of one fault kind (repeatable); replaces --fault-rate's spread",
    )
    parser.add_argument("--latency", type=_seconds, metavar="S", help="base latency in seconds")
    parser.add_argument(
        "--latency-per-token", type=_seconds, metavar="S", help="latency per output token"
    )
    parser.add_argument("--jitter", type=_seconds, metavar="S", help="uniform latency jitter")
    parser.add_argument(
        "--time-scale",
        type=float,
        metavar="X",
        help="batch timeline speed-up (1000: a 1000 s batch completes in 1 s)",
    )
    parser.add_argument(
        "--no-prompt-cache", action="store_true", help="never report cached prompt tokens"
    )
    parser.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> Any:
    """The SimulatorConfig the arguments describe (the file first, then the options)."""
    import dataclasses

    from prismq_llmtools.testing.simulator import FaultProfile, SimulatorConfig
    from prismq_llmtools.testing.simulator.config_file import load_config

    config = load_config(args.config) if args.config else SimulatorConfig()
    changes: dict[str, Any] = {
        name: getattr(args, name)
        for name in ("rpm", "tpm", "seed", "admission")
        if getattr(args, name) is not None
    }
    if args.no_prompt_cache:
        changes["prompt_caching"] = False
    if args.fault:
        changes["faults"] = FaultProfile(**dict(args.fault))
    elif args.fault_rate is not None:
        changes["faults"] = FaultProfile.uniform(args.fault_rate)
    latency = {
        "base_s": args.latency,
        "per_output_token_s": args.latency_per_token,
        "jitter_s": args.jitter,
    }
    latency = {k: v for k, v in latency.items() if v is not None}
    if latency:
        changes["latency"] = dataclasses.replace(config.latency, **latency)
    if args.time_scale is not None:
        changes["batch"] = dataclasses.replace(config.batch, time_scale=args.time_scale)
    return dataclasses.replace(config, **changes) if changes else config


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; return the exit status."""
    from prismq_llmtools.errors import ConfigurationError
    from prismq_llmtools.testing.simulator import Simulator

    try:
        config = build_config(args)
        simulator = Simulator(config, port=args.port)
    except (ConfigurationError, ValueError) as exc:
        print(f"prismq-llmtools simulate: {exc}", file=sys.stderr)
        return 2

    def announce(sim: Simulator) -> None:
        print(f"prismq-llmtools simulator listening on {sim.url}", flush=True)
        print(f"stats: {sim.base_url}/_simulator/stats  (Ctrl-C to stop)", flush=True)

    try:
        simulator.serve_forever(on_ready=announce)
    except OSError as exc:
        print(
            f"prismq-llmtools simulate: cannot listen on port {args.port}: {exc}", file=sys.stderr
        )
        return 1
    return 0
