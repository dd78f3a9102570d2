"""Benchmark: @cached hits against a raw joblib.Memory hit of the same call, in one run.

Run: ``python benchmarks/bench_cache.py`` (add ``--quick`` for a shorter run).

The call is a chat request through the official client to the simulator; after a first
call fills each cache, every measured call is a hit:

1. hot: ``@cached`` answering from its in-memory front layer (the whole site included:
   binding, key normalisation, the Call, the hit event check);
2. disk: ``@cached`` with the front layer off (``memory_entries=0``), read from joblib's store;
3. raw joblib: ``joblib.Memory(...).cache(f)(...)``, the same function, the same arguments.

Each figure is the median over rounds of the mean per call. The target is hot at least 10x
faster than raw joblib.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import joblib  # noqa: E402

from prismq_llmtools.cache import cached  # noqa: E402
from prismq_llmtools.testing.simulator import Simulator  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "You write short, factual titles."},
    {"role": "user", "content": "Title for: a bakery that delivers bread by cargo bike."},
]


def per_call_us(func: Callable[[], Any], calls: int, rounds: int) -> float:
    """Median over ``rounds`` of the mean time of one call, in microseconds."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            func()
        samples.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls per round")
    args = parser.parse_args()
    calls, rounds = (300, 5) if args.quick else (2000, 7)

    with Simulator() as sim, tempfile.TemporaryDirectory() as tmp:
        client = sim.client()

        def write_title(
            messages: list[dict[str, str]], model: str = "gpt-4o-mini", temperature: float = 0.0
        ) -> str:
            resp = client.chat.completions.create(
                model=model, messages=messages, temperature=temperature
            )
            return resp.choices[0].message.content or ""

        hot = cached(Path(tmp) / "ours", name="bench.hot")(write_title)
        disk = cached(Path(tmp) / "ours", name="bench.disk", memory_entries=0)(write_title)
        raw = joblib.Memory(str(Path(tmp) / "raw"), verbose=0).cache(write_title)
        first = {f: f(MESSAGES) for f in (hot, disk, raw)}
        assert len(set(first.values())) == 1, first
        received = sim.stats().received

        results = {
            "hot hit (@cached, memory layer)": per_call_us(lambda: hot(MESSAGES), calls, rounds),
            "disk hit (@cached, joblib store)": per_call_us(
                lambda: disk(MESSAGES), max(calls // 10, 30), rounds
            ),
            "raw joblib.Memory hit": per_call_us(
                lambda: raw(MESSAGES), max(calls // 10, 30), rounds
            ),
            "bare function call (upstream)": per_call_us(lambda: write_title(MESSAGES), 20, 3),
        }
        assert sim.stats().received == received + 60, "a measured hit went upstream"

    width = max(len(name) for name in results)
    for name, us in results.items():
        print(f"{name:<{width}}  {us:10.1f} us/call")
    ratio = results["raw joblib.Memory hit"] / results["hot hit (@cached, memory layer)"]
    disk_ratio = results["raw joblib.Memory hit"] / results["disk hit (@cached, joblib store)"]
    print(f"hot hit is {ratio:.1f}x faster than a raw joblib.Memory hit (target >= 10x)")
    print(f"disk hit is {disk_ratio:.1f}x faster than a raw joblib.Memory hit")


if __name__ == "__main__":
    main()
