"""Benchmark: a batch on a Dask cluster of worker processes at the server's RPM and TPM limits.

Run: ``python benchmarks/bench_cluster.py`` (add ``--quick`` for a shorter run). Needs the
``dask`` extra and ``redis-server`` on the PATH.

4 worker processes x 2 threads run ``.batch`` items through the official client against the
simulator (its own process, 100 ms latency, RPM and TPM limits), the rate limit shared
through Redis. The physical bound is the longest of: the latency bound ``N * latency / 8``;
the RPM bound, ``(N - burst * RPM) * 60 / RPM`` (buckets start full); the TPM bound, the same
with the tokens the server charged; and what this machine can do at all, measured in the
same run: the same batch against a second simulator without limits, the limiter's limits
raised out of the way (a runtime setting of the driver, which reaches the workers). Printed:
wall time against the bound, the server's 429s, and whether the driver's totals equal what
the server billed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import joblib  # noqa: E402

import prismq_llmtools as llm  # noqa: E402

BURST = 0.9  # @rate_limited's default
LATENCY_S = 0.1
RPM = 600
TPM = 20_000
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


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def process(command: list[str], ready: Any) -> Iterator[None]:
    proc = subprocess.Popen(  # noqa: S603 - our CLI or redis-server, fixed arguments
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while not ready():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{command[0]} did not start")
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def stats(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/_simulator/stats", timeout=5) as reply:  # noqa: S310
        data: dict[str, Any] = json.load(reply)
    return data


def _answers(check: Any) -> bool:
    try:
        check()
    except OSError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="400 items instead of 800")
    n = 400 if parser.parse_args().quick else 800
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("redis-server is not installed (Debian: apt-get install redis-server)")
        return 1
    from distributed import Client, LocalCluster

    sim_port, free_port, redis_port = _port(), _port(), _port()
    base, free = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{free_port}"
    simulate = [
        sys.executable, "-m", "prismq_llmtools.testing.simulator", "--port", str(sim_port),
        "--latency", str(LATENCY_S), "--rpm", str(RPM), "--tpm", str(TPM), "--seed", "1",
    ]  # fmt: skip
    unlimited = [*simulate[:3], "--port", str(free_port), "--latency", str(LATENCY_S)]
    redis = [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
    with (
        tempfile.TemporaryDirectory() as tmp,
        process(simulate, lambda: _answers(lambda: stats(base))),
        process(unlimited, lambda: _answers(lambda: stats(free))),
        process(
            redis,
            lambda: _answers(lambda: socket.create_connection(("127.0.0.1", redis_port)).close()),
        ),
    ):
        Path(tmp, "bench_cluster_site.py").write_text(
            textwrap.dedent(SITE.format(rpm=RPM, tpm=TPM, concurrency=WORKERS * THREADS))
        )
        env = {
            "BENCH_STORE": f"redis://127.0.0.1:{redis_port}/0",
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
    rpm_bound = max(n - BURST * RPM, 0) * 60 / RPM
    per_request = charged / n
    tpm_bound = max(n * per_request - BURST * TPM, 0) * 60 / TPM
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
