"""The ``prismq-llmtools`` command line: one entry point, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

# Each module defines ``register(subparsers)``; it sets ``func`` on its parser, which
# receives the parsed arguments and returns the exit status. Imported lazily so that
# ``prismq-llmtools count`` never pays for the simulator's imports and vice versa.
_SUBCOMMANDS = ("count", "simulate", "demo", "cost", "alerts", "report")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="prismq-llmtools",
        description="Decorators, simulator and tools for OpenAI API calls.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _SUBCOMMANDS:
        module = importlib.import_module(f"prismq_llmtools.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    args = build_parser().parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
