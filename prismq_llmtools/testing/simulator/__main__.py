"""``python -m prismq_llmtools.testing.simulator``: the ``simulate`` command on its own."""

from __future__ import annotations

import argparse
import sys

from prismq_llmtools.cli import simulate


def main(argv: list[str] | None = None) -> int:
    """Parse ``simulate``'s options and serve."""
    parser = argparse.ArgumentParser(prog="python -m prismq_llmtools.testing.simulator")
    simulate.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["simulate", *(sys.argv[1:] if argv is None else argv)])
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
