"""Run every benchmark in turn, as BENCHMARKS.md records them (``make bench``).

Each script prints its own figures and ratios against a baseline measured in the same run.
``--quick`` passes ``--quick`` to the scripts that have it, for a fast smoke run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

RUNS: list[tuple[str, list[str], bool]] = [
    ("bench_overhead.py", [], True),
    ("bench_tokens.py", [], True),
    ("bench_cache.py", [], True),
    ("bench_simulator.py", ["--clients", "2"], False),
    ("bench_ratelimit.py", [], True),
    ("bench_budget.py", [], True),
    ("bench_batch.py", [], True),
    ("bench_alerts.py", [], False),
]


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    status = 0
    for script, args, has_quick in RUNS:
        command = [sys.executable, str(HERE / script), *args]
        if quick and has_quick:
            command.append("--quick")
        print(f"\n$ {' '.join(command[1:])}", flush=True)
        started = time.perf_counter()
        result = subprocess.run(command, check=False)  # noqa: S603 (our own scripts)
        print(f"({script}: {time.perf_counter() - started:.0f} s)", flush=True)
        status = status or result.returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
