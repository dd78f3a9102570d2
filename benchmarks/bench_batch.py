"""Benchmark: f.batch throughput against the physical bound, through the simulator.

Run: ``python benchmarks/bench_batch.py`` (add ``--quick`` for 200 prompts).

N prompts, each answered after the simulator's latency (200 ms), with ``max_concurrency``
calls in flight. The simulator runs in its own process (``prismq-llmtools simulate``), as
the real API would, so its work does not share our interpreter. The physical bound is
``max(N * latency / concurrency, paced * 60 / RPM)``, where ``paced`` is what the RPM bucket
cannot admit at once: OpenAI's buckets (and ours) start full, so the first ``burst * RPM``
requests need no wait and ``paced = N - burst * RPM``. The target is a wall time of at most
1.05 times the bound, and no 429 from the server.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import openai  # noqa: E402
from _servers import simulator_process, stats  # noqa: E402

from prismq_llmtools import batched, rate_limited  # noqa: E402

BURST = 0.9  # @rate_limited's default
LATENCY_S = 0.2


def scenario(n: int, concurrency: int, rpm: int | None) -> dict[str, Any]:
    options = ["--latency", str(LATENCY_S), "--seed", "1"]
    if rpm is not None:
        options += ["--rpm", str(rpm)]
    with simulator_process(*options) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-bench", max_retries=0)

        def title(topic: str) -> str:
            resp = client.chat.completions.create(
                model="gpt-4o-mini", max_tokens=8, messages=[{"role": "user", "content": topic}]
            )
            return resp.choices[0].message.content or ""

        if rpm is None:  # what the client and server achieve without us: a plain pool
            from concurrent.futures import ThreadPoolExecutor

            started = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(title, [f"warm {i}" for i in range(n)]))
            plain = time.perf_counter() - started
        else:
            plain = None
        site: Any = batched(max_concurrency=concurrency, progress=False)(title)
        if rpm is not None:
            site = rate_limited(rpm=rpm, burst=BURST)(site)
        topics = [f"prompt {i}" for i in range(n)]
        started = time.perf_counter()
        answers = site.batch(topics)
        elapsed = time.perf_counter() - started
        seen = stats(base)
    assert len(answers) == n
    paced = max(n - BURST * rpm, 0) if rpm else 0
    bound = max(n * LATENCY_S / concurrency, paced * 60 / rpm if rpm else 0.0)
    limited = sum(
        rejected.get(reason, 0)
        for rejected in (m.get("rejected", {}) for m in seen["models"].values())
        for reason in ("rate_limit_requests", "rate_limit_tokens")
    )
    return {
        "elapsed": elapsed,
        "bound": bound,
        "plain": plain,
        "429s": limited,
        "served": seen["served"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 prompts instead of 1,000")
    args = parser.parse_args()
    n = 200 if args.quick else 1000
    for label, concurrency, rpm in (
        ("latency-bound, 32 in flight", 32, None),
        ("RPM-bound, 600 rpm, 32 in flight", 32, 600),
    ):
        r = scenario(n, concurrency, rpm)
        if r["plain"] is not None:
            print(
                f"{'  plain ThreadPoolExecutor, bare function':<36} N={n}  wall"
                f" {r['plain']:6.2f} s  bound {r['bound']:6.2f} s  ratio"
                f" {r['plain'] / r['bound']:.3f} (the client's and server's own overhead)"
            )
        print(
            f"{label:<36} N={n}  wall {r['elapsed']:6.2f} s  bound {r['bound']:6.2f} s"
            f"  ratio {r['elapsed'] / r['bound']:.3f} (target <= 1.05)"
            f"  429s {r['429s']}"
        )


if __name__ == "__main__":
    main()
