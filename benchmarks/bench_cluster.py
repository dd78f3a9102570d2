"""Benchmark: a batch on a Dask cluster of worker processes at the server's RPM and TPM limits.

Run: ``python benchmarks/bench_cluster.py`` (add ``--quick`` for a shorter run). Needs the
``dask`` extra and ``redis-server`` on the PATH.

4 worker processes x 2 threads run ``.batch`` items through the official client against the
simulator (its own process, 100 ms latency, RPM and TPM limits), the rate limit shared
through Redis. The physical bound is the longest of: the latency bound ``N * latency / 8``;
the RPM bound, ``(N - RPM) * 60 / RPM`` (the server's buckets start full, so its first
minute's worth is admitted at once); the TPM bound, the same with the tokens the server
charged; and what this machine can do at all, measured in the
same run: the same batch against a second simulator without limits, the limiter's limits
raised out of the way (a runtime setting of the driver, which reaches the workers). Printed:
wall time against the bound, the server's 429s, and whether the driver's totals equal what
the server billed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import joblib  # noqa: E402
from _servers import redis_server, simulator_process, stats  # noqa: E402

import prismq_llmtools as llm  # noqa: E402

LATENCY_S = 0.1
RPM = 600
TPM = 16_000
WORKERS, THREADS = 4, 2

SITE = """
import functools
import os
from openai import OpenAI
import prismq_llmtools as llm


@functools.cache
def client(url: str) -> OpenAI:
    return OpenAI(base_url=url, api_key="sk-bench", max_retries=0)


@llm.cost_tracked(operation="bench.cluster")
@llm.rate_limited(rpm={rpm}, tpm={tpm}, key="bench-cluster", store=os.environ["BENCH_STORE"])
@llm.batched(max_concurrency={concurrency}, progress=False)
def title(topic: str, url: str) -> str:
    reply = client(url).chat.completions.create(
        model="gpt-4o-mini", max_tokens=16, messages=[{{"role": "user", "content": topic}}]
    )
    return reply.choices[0].message.content or ""
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="400 items instead of 800")
    n = 400 if parser.parse_args().quick else 800
    from distributed import Client, LocalCluster

    latency = ["--latency", str(LATENCY_S)]
    limits = ["--rpm", str(RPM), "--tpm", str(TPM), "--seed", "1"]
    with (
        tempfile.TemporaryDirectory() as tmp,
        simulator_process(*latency, *limits) as base,
        simulator_process(*latency) as free,
        redis_server() as redis_url,
    ):
        if redis_url is None:
            return 1
        Path(tmp, "bench_cluster_site.py").write_text(
            textwrap.dedent(SITE.format(rpm=RPM, tpm=TPM, concurrency=WORKERS * THREADS))
        )
        env = {
            "BENCH_STORE": redis_url,
            "PYTHONPATH": tmp,
        }
        import os

        os.environ.update(env)
        sys.path.insert(0, tmp)
        import bench_cluster_site  # type: ignore[import-not-found]

        with (
            LocalCluster(
                n_workers=WORKERS, threads_per_worker=THREADS, dashboard_address=":0"
            ) as cluster,
            Client(cluster),
        ):
            site = bench_cluster_site.title
            topics = [f"topic number {i}" for i in range(n)]
            with joblib.parallel_config(backend="dask"):
                with site.llm.override(rpm=10**6, tpm=10**9, key="bench-cluster-free"):
                    site.batch([(t, f"{free}/v1") for t in topics[:16]])  # warm every worker
                    started = time.perf_counter()
                    site.batch([(t, f"{free}/v1") for t in topics])
                    capacity = time.perf_counter() - started
                before = stats(base)
                llm.usage_totals().reset()
                started = time.perf_counter()
                titles = site.batch([(t, f"{base}/v1") for t in topics])
                elapsed = time.perf_counter() - started
            after = stats(base)
    assert len(titles) == n
    model = after["models"]["gpt-4o-mini"]
    earlier = before["models"].get("gpt-4o-mini", {"rejected": {}})
    charged = model["charged_tokens"] - earlier.get("charged_tokens", 0)
    billed_in = model["prompt_tokens"] - earlier.get("prompt_tokens", 0)
    billed_out = model["completion_tokens"] - earlier.get("completion_tokens", 0)
    limited = sum(
        model["rejected"].get(reason, 0) - earlier["rejected"].get(reason, 0)
        for reason in ("rate_limit_requests", "rate_limit_tokens")
    )
    latency_bound = n * LATENCY_S / (WORKERS * THREADS)
    rpm_bound = max(n - RPM, 0) * 60 / RPM
    per_request = charged / n
    tpm_bound = max(n * per_request - TPM, 0) * 60 / TPM
    bound = max(capacity, rpm_bound, tpm_bound)
    totals = llm.usage_totals().by_operation()["bench.cluster"]
    print(
        f"{WORKERS} worker processes x {THREADS} threads, Redis store, {n} items, "
        f"{RPM} RPM, {TPM:,} TPM, {LATENCY_S * 1000:.0f} ms latency"
    )
    print(
        f"  bounds: latency {latency_bound:.1f} s, RPM {rpm_bound:.1f} s, TPM {tpm_bound:.1f} s"
        f" ({per_request:.1f} tokens charged a request); this machine, unlimited:"
        f" {capacity:.1f} s ({n / capacity:.1f} requests/s)"
    )
    print(
        f"  wall {elapsed:.2f} s against the bound {bound:.2f} s: ratio {elapsed / bound:.3f};"
        f" throughput {n / elapsed:.1f} requests/s"
    )
    print(f"  429s from the server: {limited}")
    agree = (totals.calls, totals.input_tokens, totals.output_tokens) == (n, billed_in, billed_out)
    print(
        f"  driver totals: {totals.calls} calls, {totals.input_tokens} + {totals.output_tokens}"
        f" tokens; server billed {billed_in} + {billed_out}: {'equal' if agree else 'DIFFERENT'}"
    )
    return 0 if agree and limited == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
