"""Throughput of the simulator through the official client: requests/s, latency, errors.

    .venv/bin/python benchmarks/bench_simulator.py               # simulator in its own process
    .venv/bin/python benchmarks/bench_simulator.py --in-process  # simulator thread, same process
    .venv/bin/python benchmarks/bench_simulator.py --clients 2   # two client processes
    .venv/bin/python benchmarks/bench_simulator.py --sync        # sync client, 64 threads

The client is created with ``max_retries=0`` so every error is visible; the server's own
count (``/_simulator/stats``) is printed next to the client's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You write short, factual product titles."},
        {"role": "user", "content": "Title for: a stainless steel kettle that boils fast."},
    ],
    "max_tokens": 32,
}
WARMUP = 200


def _prompt(index: int) -> list[dict[str, str]]:
    messages = [dict(m) for m in BODY["messages"]]
    messages[-1]["content"] += f" (variant {index})"
    return messages


Result = tuple[list[float], int, float, float]
"""Latencies, errors, and the wall-clock start and end of the measured phase."""


class _Barrier(Protocol):
    def wait(self) -> object: ...


async def _run_async(url: str, requests: int, concurrency: int, barrier: _Barrier | None) -> Result:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0)
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors = 0

    async def one(index: int, record: bool) -> None:
        nonlocal errors
        async with semaphore:
            start = time.perf_counter()
            try:
                await client.chat.completions.create(
                    model=BODY["model"], messages=_prompt(index), max_tokens=BODY["max_tokens"]
                )
            except openai.OpenAIError as exc:
                errors += 1
                if errors <= 3:
                    print(f"error: {exc!r}", file=sys.stderr)
                return
            if record:
                latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(one(i, False) for i in range(WARMUP)))
    if barrier is not None:
        barrier.wait()  # every client process starts its measured phase together
    started = time.time()
    await asyncio.gather(*(one(i, True) for i in range(requests)))
    ended = time.time()
    await client.close()
    return latencies, errors, started, ended


def _run_sync(url: str, requests: int, concurrency: int, barrier: _Barrier | None) -> Result:
    import openai

    client = openai.OpenAI(base_url=url, api_key="sk-bench", max_retries=0)
    latencies: list[float] = []
    errors = 0

    def one(index: int) -> float | None:
        start = time.perf_counter()
        try:
            client.chat.completions.create(
                model=BODY["model"], messages=_prompt(index), max_tokens=BODY["max_tokens"]
            )
        except openai.OpenAIError as exc:
            print(f"error: {exc!r}", file=sys.stderr)
            return None
        return time.perf_counter() - start

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(WARMUP)))
        if barrier is not None:
            barrier.wait()
        started = time.time()
        for result in pool.map(one, range(requests)):
            if result is None:
                errors += 1
            else:
                latencies.append(result)
        ended = time.time()
    client.close()
    return latencies, errors, started, ended


def _client_process(
    url: str, requests: int, concurrency: int, sync: bool, barrier: _Barrier | None
) -> Result:
    if sync:
        return _run_sync(url, requests, concurrency, barrier)
    return asyncio.run(_run_async(url, requests, concurrency, barrier))


def _client_worker(
    url: str, requests: int, concurrency: int, sync: bool, barrier: _Barrier, results: Any
) -> None:
    results.put(_client_process(url, requests, concurrency, sync, barrier))


def _run_clients(
    url: str, clients: int, requests: int, concurrency: int, sync: bool
) -> list[Result]:
    if clients == 1:
        return [_client_process(url, requests, concurrency, sync, None)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(clients)
    queue = context.Queue()
    workers = [
        context.Process(
            target=_client_worker, args=(url, requests, concurrency, sync, barrier, queue)
        )
        for _ in range(clients)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    return results


def _start_server_process() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "prismq_llmtools.testing.simulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    return process, line.rsplit(" ", 1)[-1].strip()


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_stats(url: str) -> dict[str, Any]:
    base = url.removesuffix("/v1")
    with urllib.request.urlopen(f"{base}/_simulator/stats", timeout=10) as response:  # noqa: S310
        stats: dict[str, Any] = json.load(response)
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--sync", action="store_true", help="sync client in threads")
    parser.add_argument("--in-process", action="store_true", help="simulator thread in-process")
    args = parser.parse_args()

    simulator = process = None
    if args.in_process:
        from prismq_llmtools.testing import Simulator

        simulator = Simulator().start()
        url = simulator.url
    else:
        process, url = _start_server_process()
    cpu_before = _cpu_seconds(process.pid) if process is not None else None
    try:
        per_client = args.requests // args.clients
        concurrency = max(1, args.concurrency // args.clients)
        results = _run_clients(url, args.clients, per_client, concurrency, args.sync)
        stats = _server_stats(url)
        cpu_after = _cpu_seconds(process.pid) if process is not None else None
    finally:
        if simulator is not None:
            simulator.stop()
        if process is not None:
            process.terminate()
            process.wait()

    latencies = sorted(lat for result in results for lat in result[0])
    errors = sum(result[1] for result in results)
    elapsed = max(result[3] for result in results) - min(result[2] for result in results)
    total = per_client * args.clients
    where = "in-process thread" if args.in_process else "separate process"
    client = "sync OpenAI, threads" if args.sync else "AsyncOpenAI"
    print(
        f"simulator: {where}; client: {client} x {args.clients} process(es), "
        f"concurrency {concurrency * args.clients}, {total} requests "
        f"(+{WARMUP * args.clients} warm-up)"
    )
    print(f"throughput: {total / elapsed:,.0f} requests/s over {elapsed:.2f} s")
    if latencies:
        p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
        print(f"latency: p50 {statistics.median(latencies) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms")
    print(f"errors: {errors}")
    print(
        f"server: received {stats['received']}, served {stats['served']}, "
        f"rejected {sum(stats['rejected'].values())}"
    )
    if cpu_before is not None and cpu_after is not None and stats["received"]:
        per_request = (cpu_after - cpu_before) / stats["received"]
        print(
            f"server CPU: {per_request * 1000:.3f} ms per request "
            f"(one core could serve about {1 / per_request:,.0f} requests/s)"
        )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
