"""Benchmark: @cached hits against a raw joblib.Memory hit of the same call, in one run.

Run: ``python benchmarks/bench_cache.py`` (add ``--quick`` for a shorter run).

The call is the 1.3 KB chat request of ``bench_overhead.py`` (a system prompt and an
article), through the official client to the simulator; after a first call fills each
cache, every measured call is a hit:

1. hot: ``@cached`` answering from its in-memory front layer (the whole site included:
   binding, key normalisation, the Call, the hit event check);
2. disk: ``@cached`` with the front layer off (``memory_entries=0``), read from joblib's store;
3. raw joblib: ``joblib.Memory(...).cache(f)(...)``, the same function, the same arguments.

Each figure is the median over rounds of the CPU time of this process per call
(``time.process_time``: on a shared machine, time spent waiting for a CPU is not counted).
The target is hot at least 10x faster than raw joblib; the exit status is 1 when it fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parent):  # bench_overhead's request, and the package (after PYTHONPATH)
    if str(path) not in sys.path:
        sys.path.append(str(path))

import joblib  # noqa: E402
from bench_overhead import messages_for  # noqa: E402

from prismq_llmtools.cache import cache_of, cached  # noqa: E402
from prismq_llmtools.testing.simulator import Simulator  # noqa: E402

MESSAGES = messages_for(None)


def per_call_us(func: Callable[[], Any], calls: int, rounds: int) -> float:
    """Median over ``rounds`` of the CPU time of one call, in microseconds."""
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            func()
        samples.append((time.process_time() - started) / calls * 1e6)
    return statistics.median(samples)


def main() -> int:
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
            "bare function call (upstream, simulator in this process)": per_call_us(
                lambda: write_title(MESSAGES), 20, 3
            ),
        }
        assert sim.stats().received == received + 60, "a measured hit went upstream"
        bound = {"messages": MESSAGES, "model": "gpt-4o-mini", "temperature": 0.0}
        key = per_call_us(lambda: cache_of(hot).key_of(bound), calls, rounds)

    hot_name = "hot hit (@cached, memory layer)"
    rows = list(results.items())
    rows.insert(1, ("  of which the cache key (normalise, marshal, SHA-256)", key))
    width = max(len(name) for name, _ in rows)
    for name, us in rows:
        print(f"{name:<{width}}  {us:10.1f} us/call")
    ratio = results["raw joblib.Memory hit"] / results[hot_name]
    disk_ratio = results["raw joblib.Memory hit"] / results["disk hit (@cached, joblib store)"]
    size = len(json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0.0}))
    print(f"(a {size:,}-byte chat request; load average {os.getloadavg()[0]:.2f})")
    ok = ratio >= 10
    print(
        f"hot hit is {ratio:.1f}x faster than a raw joblib.Memory hit (target >= 10x): "
        f"{'PASS' if ok else 'FAIL'}"
    )
    print(f"disk hit is {disk_ratio:.1f}x faster than a raw joblib.Memory hit")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
