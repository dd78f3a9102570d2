"""A hard USD budget under unreadable answers: what the server billed, on every store.

    .venv/bin/python benchmarks/bench_budget.py            # every store, threads and processes
    .venv/bin/python benchmarks/bench_budget.py --quick    # in-process and SQLite threads only

The simulator answers 15% of the requests with a malformed 200 and 5% with an empty 200:
both are served, so billed, but the client cannot read their usage. 64 threads (or 4
processes x 16 threads sharing SQLite or Redis) call a ``@retried`` ``@token_budgeted``
site (gpt-4o, max_tokens=100) until the $0.20 daily budget refuses them. The server-billed
figure is the simulator's own count of the tokens it billed, priced at gpt-4o's rates; the
tracked figure is what the budget says it spent. "Never overspend" holds when the
server-billed figure stays at or under the budget.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

from _servers import redis_server

from prismq_llmtools import BudgetExceeded, retried, token_budgeted
from prismq_llmtools.budget import budget_status
from prismq_llmtools.pricing import price_table
from prismq_llmtools.pricing.money import cost_of
from prismq_llmtools.stores import StateRegistry
from prismq_llmtools.testing import Simulator, SimulatorConfig
from prismq_llmtools.testing.simulator import FaultProfile
from prismq_llmtools.usage import Usage

MODEL = "gpt-4o"
LIMIT_USD = 0.20
THREADS = 64
PROCESSES = 4


def site(url: str, store: str, scope: str) -> Any:
    import openai

    client = openai.OpenAI(base_url=url, api_key="sk-bench", max_retries=0)

    @retried(attempts=4, initial_wait_s=0.001, max_wait_s=0.01)
    @token_budgeted(daily_usd=LIMIT_USD, store=store, scope=scope, registry=StateRegistry())
    def ask(prompt: str, model: str = MODEL, max_tokens: int = 100) -> str:
        resp = client.chat.completions.create(
            model=model, max_tokens=max_tokens, messages=[{"role": "user", "content": prompt}]
        )
        return resp.choices[0].message.content or ""

    return ask


def _until_refused(ask: Any, worker: int, counts: list[int]) -> None:
    """Call until the budget refuses; count calls that gave up after their attempts."""
    i = 0
    while True:
        i += 1
        try:
            ask(f"Write a short line about topic {worker}-{i} for a newsletter.")
        except BudgetExceeded:
            return
        except Exception:  # every attempt unreadable: retries exhausted, go on
            counts[0] += 1


def threads(url: str, store: str, scope: str, count: int) -> Any:
    """``count`` threads calling one site until refused; returns the site."""
    ask = site(url, store, scope)
    failed = [0]
    pool = [threading.Thread(target=_until_refused, args=(ask, n, failed)) for n in range(count)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return ask


def _process(url: str, store: str, scope: str, count: int) -> None:
    threads(url, store, scope, count)


def run(sim: Simulator, store: str, scope: str, processes: int) -> tuple[Decimal, Decimal, int]:
    """One run: (server-billed USD, budget's spent USD, requests served)."""
    sim.reset(buckets=True, prompt_cache=True)
    if processes == 1:
        ask = threads(sim.url, store, scope, THREADS)
    else:
        context = multiprocessing.get_context("spawn")
        workers = [
            context.Process(target=_process, args=(sim.url, store, scope, THREADS // processes))
            for _ in range(processes)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        ask = site(sim.url, store, scope)  # a shared store: any site of the scope reads it
    stats = sim.stats()
    billed = Usage(input_tokens=stats.prompt_tokens, output_tokens=stats.completion_tokens)
    server = cost_of(billed, price_table().price_for(MODEL)).total_usd
    spent = budget_status(ask)["daily_usd"]["spent"]
    return server, spent, stats.served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="in-process and SQLite threads")
    args = parser.parse_args()
    with contextlib.nullcontext() if args.quick else redis_server() as redis_url:
        _run(args.quick, redis_url)


def _run(quick: bool, redis_url: str | None) -> None:
    directory = Path(tempfile.mkdtemp(prefix="bench-budget-"))
    rows: list[tuple[str, str, int]] = [("memory", "memory", 1)]
    rows.append(("sqlite", f"sqlite:///{directory / 'threads.db'}", 1))
    if not quick:
        rows.append(("sqlite", f"sqlite:///{directory / 'processes.db'}", PROCESSES))
        if redis_url:
            rows += [("redis", redis_url, 1), ("redis", redis_url, PROCESSES)]
    faults = FaultProfile(malformed_json=0.15, empty_body=0.05)
    config = SimulatorConfig(seed=11, faults=faults)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; 15% malformed + 5% empty")
    print(f"200s; hard daily budget ${LIMIT_USD:.2f}, {MODEL}, max_tokens=100")
    print(f"\n{'store':<8} {'callers':<16} {'served':>6} {'server billed':>14} {'tracked':>10}"
          f" {'over budget':>12}")  # fmt: skip
    try:
        with Simulator(config) as sim:
            for n, (name, url, processes) in enumerate(rows):
                scope = f"bench-{n}"
                server, spent, served = run(sim, url, scope, processes)
                callers = (
                    f"{THREADS} threads"
                    if processes == 1
                    else (f"{processes} x {THREADS // processes} threads")
                )
                over = max(Decimal(0), server - Decimal(str(LIMIT_USD)))
                print(f"{name:<8} {callers:<16} {served:>6} {f'${server:.6f}':>14}"
                      f" {f'${spent:.6f}':>10} {f'${over:.6f}':>12}", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
