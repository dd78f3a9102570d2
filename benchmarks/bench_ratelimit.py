"""@rate_limited and @token_budgeted: cost per call, and holding the simulator's limits.

    .venv/bin/python benchmarks/bench_ratelimit.py             # everything (about 4 minutes)
    .venv/bin/python benchmarks/bench_ratelimit.py --quick     # fewer, shorter runs
    .venv/bin/python benchmarks/bench_ratelimit.py --minutes 5 --scale 20
    .venv/bin/python benchmarks/bench_ratelimit.py --only accounting   # section 4 alone

1. Cost: one admission plus its feedback through each store, and a site with
   ``@rate_limited`` against the bare function.
2. Limits: the simulator enforces RPM and TPM (admission ``exact`` or ``chars``); a
   workload bound by requests and one bound by tokens; our limiter with 8 threads in one
   process (in-process store) and with 4 processes x 2 threads (SQLite, Redis); as
   baselines, in the same run and with the same limits, the OpenAI cookbook's policy (fixed
   estimate, no reconciliation, a 15 s pause after a 429) and aiolimiter where installed.
   Client and server share a scaled clock (``--scale`` simulated seconds per real second);
   throughput is measured after the first simulated minute, as a fraction of the binding
   limit, from the simulator's own counters.
3. Budgets: 64 threads against a hard USD budget, on each store: overspend.
4. TPM against servers that count otherwise: the tpm-bound workload against servers whose
   charge is ours times 0.7, 1.04 or 1.5, ours plus 20 tokens a request, or ceil(body
   bytes / 4) plus the cap (and the ``exact`` and ``chars`` accountings); our limiter in one
   process (8 threads) and in 4 processes x 2 threads (SQLite, Redis), the cookbook policy
   and aiolimiter beside it. Reported: 429s (all, and after the first minute per 100
   requests), steady throughput, and whole-run usage: what the server charged over the run
   against what it would have admitted (its full bucket plus the refill).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
from _servers import redis_server

from prismq_llmtools import BudgetExceeded, rate_limited, token_budgeted
from prismq_llmtools.aspect import Aspect, NoSettings
from prismq_llmtools.budget import budget_status
from prismq_llmtools.clock import system_clock
from prismq_llmtools.openai.admission import character_estimate
from prismq_llmtools.openai.tokens import count_request
from prismq_llmtools.site.decorate import attach
from prismq_llmtools.stores import StateRegistry
from prismq_llmtools.stores.bucket import BucketSpec, Ticket
from prismq_llmtools.testing import Accounting, Simulator, SimulatorConfig

MODEL = "gpt-4o-mini"
WORDS = [
    *("administration", "development", "organization", "responsibility", "international"),
    *("environment", "performance", "information", "relationship", "understanding"),
    *("management", "technology"),
]
WORKLOADS = {  # name: (rpm, tpm, binding)
    "rpm-bound": (120, 1_000_000, "requests"),
    "tpm-bound": (10_000, 4_000, "tokens"),
}
SCALE = 20.0
ACCOUNTINGS: dict[str, Accounting | str] = {  # label: the simulator's admission accounting
    "exact": "exact",
    "chars": "chars",
    "x0.7": Accounting(factor=0.7),
    "x1.04": Accounting(factor=1.04),
    "x1.5": Accounting(factor=1.5),
    "+20/req": Accounting(per_request=20),
    "bytes": Accounting(prompt="bytes"),
}


class ScaledClock:
    """Simulated seconds: SCALE times faster than real time, shared by client and server."""

    def __init__(self, origin: float | None = None) -> None:
        self.origin = time.monotonic() if origin is None else origin

    def now(self) -> float:
        return (time.monotonic() - self.origin) * SCALE

    def wall(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self.now())

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / SCALE)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0) / SCALE)


def messages(rng: random.Random) -> list[dict[str, str]]:
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
    return [{"role": "user", "content": f"Write a title for: {text}"}]


# -- the clients under test ----------------------------------------------------------------


def ours(clock: ScaledClock, rpm: int, tpm: int, store: str | None, **extra: Any) -> Callable:
    @rate_limited(rpm=rpm, tpm=tpm, store=store, registry=StateRegistry(), clock=clock, **extra)
    def ask(api: openai.OpenAI, messages: list[dict[str, str]], *, model: str = MODEL) -> Any:
        return api.chat.completions.create(model=model, messages=messages, max_tokens=30)  # type: ignore[arg-type]

    return ask


class Cookbook:
    """The cookbook's parallel processor policy: buckets at the limits, a fixed estimate
    (prompt tokens + max_tokens), no reconciliation, callers poll, a 429 pauses 15 s."""

    def __init__(self, clock: ScaledClock, rpm: int, tpm: int) -> None:
        self.clock, self.rpm, self.tpm = clock, rpm, tpm
        self.requests, self.tokens = float(rpm), float(tpm)
        self.updated = clock.now()
        self.paused_until = 0.0
        self.lock = threading.Lock()

    def _take(self, tokens: int) -> bool:
        with self.lock:
            now = self.clock.now()
            elapsed, self.updated = now - self.updated, now
            self.requests = min(self.rpm, self.requests + elapsed * self.rpm / 60)
            self.tokens = min(self.tpm, self.tokens + elapsed * self.tpm / 60)
            if now < self.paused_until or self.requests < 1 or self.tokens < tokens:
                return False
            self.requests -= 1
            self.tokens -= tokens
            return True

    def __call__(self, api: openai.OpenAI, messages: list[dict[str, str]]) -> Any:
        estimate = count_request({"model": MODEL, "messages": messages}).prompt_tokens + 30
        while True:
            while not self._take(estimate):
                time.sleep(0.001)
            try:
                return api.chat.completions.create(model=MODEL, messages=messages, max_tokens=30)  # type: ignore[arg-type]
            except openai.RateLimitError:
                with self.lock:
                    self.paused_until = self.clock.now() + 15


# -- runs ------------------------------------------------------------------------------------


def _clients(url: str, threads: int) -> list[openai.OpenAI]:
    """One client a thread, made before the clock starts (making one takes a while)."""
    return [openai.OpenAI(base_url=url, api_key="sk-bench", max_retries=0) for _ in range(threads)]


def _work(
    apis: list[openai.OpenAI], ask: Callable, clock: ScaledClock, end: float, seed: int
) -> int:
    failures = 0
    lock = threading.Lock()

    def loop(n: int) -> None:
        nonlocal failures
        rng = random.Random(seed + n)
        with apis[n] as api:
            while clock.now() < end:
                try:
                    ask(api, messages(rng))
                except openai.OpenAIError:
                    with lock:
                        failures += 1

    workers = [threading.Thread(target=loop, args=(n,)) for n in range(len(apis))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return failures


def _process(
    url: str,
    store: str,
    clock_at: tuple[float, float],
    limits: tuple[int, int],
    seed: int,
    ready: Any,
    go: Any,
) -> None:
    global SCALE
    origin, SCALE = clock_at  # a spawned process starts from the module's defaults
    clock = ScaledClock(origin)
    ask = ours(clock, *limits, store)
    # One call of a separate site first (its own key, in this process), so that loading the
    # vocabulary and the client's modules happens before the clock starts: a worker that
    # spends the first simulated minute loading leaves the server's initial burst inside
    # the measured window. The server's stats and buckets are reset after it.
    warm_up = ours(clock, 10**6, 10**9, None, key="warm-up")
    with openai.OpenAI(base_url=url, api_key="sk-bench", max_retries=0) as api:
        warm_up(api, messages(random.Random(seed)))
    apis = _clients(url, 2)
    ready.put(seed)
    end = go.get()
    _work(apis, ask, clock, end, seed=seed)


async def _aiolimiter(url: str, clock: ScaledClock, rpm: int, tpm: int, end: float) -> None:
    from aiolimiter import AsyncLimiter

    period = 60 / SCALE  # aiolimiter measures the event loop's (real) time
    requests, tokens = AsyncLimiter(rpm, period), AsyncLimiter(tpm, period)
    api = openai.AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0)

    async def loop(n: int) -> None:
        rng = random.Random(n)
        while clock.now() < end:
            body = messages(rng)
            estimate = count_request({"model": MODEL, "messages": body}).prompt_tokens + 30
            await requests.acquire()
            await tokens.acquire(estimate)
            with contextlib.suppress(openai.RateLimitError):
                await api.chat.completions.create(model=MODEL, messages=body, max_tokens=30)  # type: ignore[arg-type]

    await asyncio.gather(*(loop(n) for n in range(8)))
    await api.close()


def _sample(sim: Simulator, clock: ScaledClock, end: float, marks: list[Any]) -> None:
    """The server's counters when it served its first request, a minute later, and at the
    end, each with the time it was read. Runs start at the first request served: on a busy
    machine, worker processes may take seconds (a simulated minute) to be scheduled, time
    in which the server's full bucket would count against the limiter; what the workers do
    after ``end`` (finishing their last request, a process exiting) is outside the window.
    """
    while sim.stats().served == 0 and clock.now() < end:
        time.sleep(0.0005)
    marks.append(_read(sim, clock))
    for at in (marks[0][0] + 60, end):
        time.sleep(max(0.0, at - clock.now()) / SCALE)
        marks.append(_read(sim, clock))


def _read(sim: Simulator, clock: ScaledClock) -> tuple[float, Any]:
    """The server's counters and the time they were read (taken after them: on a busy
    machine, reading them may wait, and a time taken before would miss that wait)."""
    stats = sim.stats()
    return clock.now(), stats


def run(
    limiter: str,
    workload: str,
    admission: str,
    minutes: float,
    store: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One run; returns 429s and the steady-state throughput as a fraction of the limit."""
    rpm, tpm, binding = WORKLOADS[workload]
    server_clock = ScaledClock()
    config = SimulatorConfig(rpm=rpm, tpm=tpm, admission=ACCOUNTINGS[admission])  # type: ignore[arg-type]
    with Simulator(config, clock=server_clock.now) as sim:
        clock = ScaledClock(server_clock.origin)
        procs: list[Any] = []
        if limiter == "ours" and store is not None:  # 4 processes, started before the clock
            context = multiprocessing.get_context("spawn")
            ready, go = context.Queue(), context.Queue()
            procs = [
                context.Process(
                    target=_process,
                    args=(sim.url, store, (clock.origin, SCALE), (rpm, tpm), 10 * n, ready, go),
                )
                for n in range(4)
            ]
            for proc in procs:
                proc.start()
            for _ in procs:
                ready.get(timeout=120)
        else:  # the vocabulary and the client's modules load before the clock starts
            warm_up = ours(clock, 10**6, 10**9, None, key="warm-up")
            with openai.OpenAI(base_url=sim.url, api_key="sk-bench", max_retries=0) as api:
                warm_up(api, messages(random.Random(0)))
        apis = _clients(sim.url, 8) if limiter in ("ours", "cookbook") and not procs else []
        sim.reset(buckets=True)  # every run starts from full server buckets
        start = clock.now()
        end = start + 60 * minutes
        marks: list[tuple[float, Any]] = []
        sampler = threading.Thread(target=_sample, args=(sim, clock, end, marks))
        sampler.start()
        if procs:
            for _ in procs:
                go.put(end)
            for proc in procs:
                proc.join()
        elif limiter == "ours":
            _work(apis, ours(clock, rpm, tpm, None, **extra), clock, end, seed=1)
        elif limiter == "cookbook":
            _work(apis, Cookbook(clock, rpm, tpm), clock, end, seed=1)
        else:
            asyncio.run(_aiolimiter(sim.url, clock, rpm, tpm, end))
        sampler.join()
        final = sim.stats()
    (start, _), (began, first), (ended, last) = marks
    elapsed = ended - began
    if binding == "requests":
        rate = (last.served - first.served) / elapsed * 60 / rpm
        whole = last.served / (rpm * (1 + (ended - start) / 60))
    else:
        rate = (last.charged_tokens - first.charged_tokens) / elapsed * 60 / tpm
        whole = last.charged_tokens / (tpm * (1 + (ended - start) / 60))
    steady = last.served + last.rate_limited - first.served - first.rate_limited
    steady_429 = last.rate_limited - first.rate_limited
    return {
        "429": final.rate_limited,
        "served": final.served,
        "ratio": rate,
        "whole": whole,
        "per100": 100 * steady_429 / max(1, steady),
    }


def _by_characters() -> str:
    """How much more these prompts cost when a server counts characters instead of tokens."""
    rng = random.Random(0)
    tokens = chars = 0
    for _ in range(2000):
        body = {"model": MODEL, "messages": messages(rng)}
        tokens += count_request(body).prompt_tokens
        chars += character_estimate(body)
    cap = 30 * 2000
    return (
        f"prompts cost {chars / tokens:.2f}x more by characters than by tokens,"
        f" {(chars + cap) / (tokens + cap):.2f}x with their completion cap (max_tokens=30)"
    )


# -- cost per call ---------------------------------------------------------------------------


def cost(stores: dict[str, str]) -> None:
    specs = (
        BucketSpec("requests", capacity=1e9, burst=1e9, rate_per_s=1e9),
        BucketSpec("tokens", capacity=1e12, burst=1e12, rate_per_s=1e12),
    )
    print("\ncost per admission + feedback (one thread)")
    for name, url in stores.items():
        store = StateRegistry().store(url)
        store.clear()
        n = 20_000 if name == "memory" else 2_000
        started = time.perf_counter()
        for i in range(n):
            ticket = store.admit(
                "k", specs, (1, 100), clock=system_clock, ticket_id=str(i), ttl_s=60, max_wait_s=0
            )
            assert isinstance(ticket, Ticket)
            store.feedback("k", specs, ticket, clock=system_clock, deficits=(None, 50.0))
        per = (time.perf_counter() - started) / n * 1e6
        print(f"  {name:<8} {per:8.1f} us")

    def bare() -> str:
        return "x"

    class Needs(Aspect[NoSettings]):  # a site that only discovers the request and usage
        kind = "needs_request"

    rpm = rate_limited(rpm=10**9, model=MODEL, registry=StateRegistry())(lambda: "x")
    both = rate_limited(rpm=10**9, tpm=10**9, model=MODEL, registry=StateRegistry())(lambda: "x")
    rows = (
        ("bare function", bare),
        ("site discovering the request", attach(Needs(NoSettings()), model=MODEL)(lambda: "x")),
        ("@rate_limited rpm (memory)", rpm),
        ("@rate_limited rpm+tpm (memory)", both),
    )
    for label, f in rows:
        for _ in range(2_000):
            f()
        started = time.perf_counter()
        for _ in range(50_000):
            f()
        print(f"  {label:<34} {(time.perf_counter() - started) / 50_000 * 1e6:6.2f} us/call")


# -- budgets ---------------------------------------------------------------------------------


def budgets(stores: dict[str, str]) -> None:
    print("\n64 threads x 5 calls against a hard USD budget")
    for name, url in stores.items():
        StateRegistry().store(url).clear()
        limit = Decimal("0.005")

        @token_budgeted(daily_usd=limit, store=url, registry=StateRegistry())
        def ask(
            messages: list[dict[str, str]], *, model: str = MODEL, max_tokens: int = 200
        ) -> dict[str, Any]:
            used = random.randint(1, max_tokens)
            return {"model": MODEL, "usage": {"prompt_tokens": 12, "completion_tokens": used}}

        refused = 0

        def worker() -> None:
            nonlocal refused
            for _ in range(5):
                try:
                    ask([{"role": "user", "content": "Title for a bakery."}])
                except BudgetExceeded:
                    refused += 1

        threads = [threading.Thread(target=worker) for _ in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        spent = budget_status(ask)["daily_usd"]["spent"]
        print(
            f"  {name:<8} spent ${spent} of ${limit}, overspend ${max(Decimal(0), spent - limit)},"
            f" {320 - refused} calls admitted, {refused} refused"
        )


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    global SCALE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, fewer rows")
    parser.add_argument("--minutes", type=float, default=4.0, help="simulated minutes a run")
    parser.add_argument("--scale", type=float, default=SCALE, help="simulated s per real s")
    parser.add_argument(
        "--only", choices=("limits", "accounting"), help="run this section of rows alone"
    )
    args = parser.parse_args()
    SCALE = args.scale
    minutes = 2.0 if args.quick else args.minutes
    with redis_server() as redis_url:
        _run(args, minutes, redis_url)


def _run(args: argparse.Namespace, minutes: float, redis_url: str | None) -> None:
    directory = Path(tempfile.mkdtemp(prefix="bench-ratelimit-"))
    stores = {"memory": "memory", "sqlite": f"sqlite://{directory / 'state.db'}"}
    if redis_url:
        stores["redis"] = redis_url
    try:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, scale {SCALE:g}x,")
        print(f"{minutes:g} simulated minutes a run, throughput measured after the first")
        print(_by_characters())
        if args.only != "accounting":
            if args.only is None:
                cost(stores)
                budgets(stores)
            limits(stores, directory, minutes, quick=args.quick)
        if args.only != "limits":
            accounting(stores, directory, minutes)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _url(stores: dict[str, str], store: str, directory: Path, label: str) -> str | None:
    url = None if store in ("memory", "-") else stores[store]
    if url and url.startswith("sqlite"):  # each run's clock starts at 0: fresh state
        url = f"sqlite://{directory / f'{label}.db'}"
    if url and url.startswith("redis"):
        url += "?clock=caller"  # the scaled clock, not the Redis server's
        StateRegistry().store(url).clear()
    return url


def _baselines() -> list[str]:
    try:
        import aiolimiter  # noqa: F401
    except ImportError:
        print("aiolimiter not installed: its rows are skipped")
        return ["cookbook"]
    return ["cookbook", "aiolimiter"]


def limits(stores: dict[str, str], directory: Path, minutes: float, *, quick: bool) -> None:
    """Section 2: the rpm-bound and tpm-bound workloads, our limiter and the baselines."""
    rows: list[tuple[str, str, str, str]] = [
        ("ours", "memory", w, a) for w in WORKLOADS for a in ("exact", "chars")
    ]
    for name in ("sqlite", "redis") if not quick else ("sqlite",):
        if name in stores:
            rows += [("ours", name, w, "chars") for w in WORKLOADS]
    rows += [("ours burst=1", "memory", w, "exact") for w in WORKLOADS]
    rows += [("cookbook", "-", w, a) for w in WORKLOADS for a in ("exact", "chars")]
    if "aiolimiter" in _baselines():
        rows += [("aiolimiter", "-", w, "chars") for w in WORKLOADS]
    print(f"\n{'limiter':<13} {'store':<9} {'workload':<10} {'admission':<9} {'429s':>5}"
          f" {'served':>7} {'throughput / limit':>19}")  # fmt: skip
    for limiter, store, workload, admission in rows:
        url = _url(stores, store, directory, f"{workload}-{admission}")
        extra = {"burst": 1.0} if limiter == "ours burst=1" else {}
        name = "ours" if limiter.startswith("ours") else limiter
        result = run(name, workload, admission, minutes, url, **extra)
        where = f"{store} x4" if url else store
        print(
            f"{limiter:<13} {where:<9} {workload:<10} {admission:<9} {result['429']:>5}"
            f" {result['served']:>7} {result['ratio']:>18.1%}"
        )


def accounting(stores: dict[str, str], directory: Path, minutes: float) -> None:
    """Section 4: the tpm-bound workload against servers that count otherwise."""
    print(
        f"\n{'limiter':<11} {'store':<9} {'server':<8} {'429s':>5} {'/100 steady':>11}"
        f" {'served':>7} {'steady / limit':>15} {'whole run':>10}"
    )
    shared = [name for name in ("sqlite", "redis") if name in stores]
    for label in ACCOUNTINGS:
        rows = [("ours", "memory"), *(("ours", name) for name in shared)]
        rows += [(name, "-") for name in _baselines()]
        for limiter, store in rows:
            url = _url(stores, store, directory, f"accounting-{label}")
            result = run(limiter, "tpm-bound", label, minutes, url)
            where = f"{store} x4" if url else store
            print(
                f"{limiter:<11} {where:<9} {label:<8} {result['429']:>5} {result['per100']:>11.2f}"
                f" {result['served']:>7} {result['ratio']:>14.1%} {result['whole']:>10.1%}",
                flush=True,
            )


if __name__ == "__main__":
    main()
