"""Per-call overhead of a decorated function: our one-wrapper site against stacked wrappers.

Run: .venv/bin/python benchmarks/bench_overhead.py

Every aspect is present but does no real work: the function describes no OpenAI request
(so nothing is counted, priced or estimated), the rate limiter has one generous request
bucket under a fixed key, the budget has no limit, the cache is disabled, and nothing ever
waits. The figure is the cost of the machinery itself. In the same run it measures the bare
function, a single plain wrapt layer, and six plain stacked wrapt layers (what six
independent decorators would cost), and prints the ratios; then a site with each aspect
alone, to show what each adds to the site's own machinery.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import statistics
import timeit
from collections.abc import Callable
from typing import Any

import wrapt

N = 200_000
REPEAT = 7


def bare(x: int) -> int:
    return x


def _passthrough(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return wrapped(*args, **kwargs)


def _stack(layers: int) -> Callable[..., int]:
    func: Any = bare
    for _ in range(layers):
        func = wrapt.FunctionWrapper(func, _passthrough)
    return func  # type: ignore[no-any-return]


def _available_decorators() -> list[tuple[str, Callable[[Any], Any]]]:
    """Every decorator of the package, configured so that it does no real work."""
    package = importlib.import_module("prismq_llmtools")
    wanted: list[tuple[str, Callable[[], Any]]] = [
        ("retried", lambda: package.retried()),
        ("cost_tracked", lambda: package.cost_tracked()),
        ("rate_limited", lambda: package.rate_limited(rpm=10**9, key="bench")),
        ("token_budgeted", lambda: package.token_budgeted()),
        ("cached", lambda: package.cached(enabled=False)),
        ("batched", lambda: package.batched()),
    ]
    out = []
    for name, make in wanted:
        if hasattr(package, name):
            out.append((name, make()))
    return out


def _site() -> tuple[Callable[..., int], list[str]]:
    decorators = _available_decorators()
    func: Any = lambda x: x  # noqa: E731 (a fresh function per site)
    for _, decorator in reversed(decorators):
        func = decorator(func)
    return func, [name for name, _ in decorators]


def _per_call_us(func: Callable[..., int], number: int = N) -> float:
    runs = timeit.repeat(lambda: func(1), number=number, repeat=REPEAT)
    return min(runs) / number * 1e6


def _per_aspect(base: float) -> None:
    """A site with each aspect alone: the site's machinery plus that aspect."""
    print(f"\n{'one site with one aspect':<34} {'us/call':>8} {'over bare':>10}")
    for name, decorator in _available_decorators():
        func: Any = decorator(lambda x: x)
        for _ in range(1000):
            func(1)
        us = _per_call_us(func, N // 4)
        print(f"{name:<34} {us:>8.3f} {us - base:>10.3f}")


async def _abare(x: int) -> int:
    return x


async def _async_per_call_us(func: Callable[..., Any], number: int) -> float:
    best = float("inf")
    for _ in range(REPEAT):
        started = timeit.default_timer()
        for _ in range(number):
            await func(1)
        best = min(best, (timeit.default_timer() - started) / number * 1e6)
    return best


def _async_rows() -> None:
    """The same six aspects on an async function, awaited in a loop."""

    async def fresh(x: int) -> int:
        return x

    func: Any = fresh
    for _, decorator in reversed(_available_decorators()):
        func = decorator(func)
    bare_us = asyncio.run(_async_per_call_us(_abare, N // 4))
    site_us = asyncio.run(_async_per_call_us(func, N // 4))
    print(f"\n{'async (awaited in a loop)':<34} {'us/call':>8} {'over bare':>10}")
    print(f"{'bare coroutine function':<34} {bare_us:>8.3f} {0.0:>10.3f}")
    print(f"{'one site with 6 aspects':<34} {site_us:>8.3f} {site_us - bare_us:>10.3f}")


def _method_rows() -> None:
    """The same six aspects on a method, looked up and called as ``obj.method(1)``."""

    def method(self: Any, x: int) -> int:
        return x

    func: Any = method
    for _, decorator in reversed(_available_decorators()):
        func = decorator(func)
    owner: Any = type("Owner", (), {"bare": method, "site": func})()
    for _ in range(1000):
        owner.site(1)
    bare_us = _per_call_us(lambda _: owner.bare(1), N // 4)
    site_us = _per_call_us(lambda _: owner.site(1), N // 4)
    print(f"\n{'method (obj.method(1))':<34} {'us/call':>8} {'over bare':>10}")
    print(f"{'bare method':<34} {bare_us:>8.3f} {0.0:>10.3f}")
    print(f"{'one site with 6 aspects':<34} {site_us:>8.3f} {site_us - bare_us:>10.3f}")


def main() -> None:
    site, names = _site()
    for _ in range(1000):
        site(1)
    rows = [
        ("bare function", _per_call_us(bare)),
        ("1 plain wrapt layer", _per_call_us(_stack(1))),
        ("6 plain stacked wrapt layers", _per_call_us(_stack(6))),
        (f"one site with {len(names)} aspects", _per_call_us(site)),
    ]
    base = rows[0][1]
    core = importlib.import_module("prismq_llmtools.site.core")
    built = "compiled (mypyc)" if str(core.__file__).endswith(".so") else "plain Python"
    print(f"hot path: {built}")
    print(f"aspects on the site: {', '.join(names)}")
    print(f"{'case':<34} {'us/call':>8} {'over bare':>10}")
    for name, us in rows:
        print(f"{name:<34} {us:>8.3f} {us - base:>10.3f}")
    site_over = rows[3][1] - base
    six_over = rows[2][1] - base
    print(f"site overhead / six stacked layers overhead: {site_over / six_over:.2f}")
    spread = statistics.pstdev(timeit.repeat(lambda: site(1), number=N // 10, repeat=REPEAT))
    print(f"(min of {REPEAT} runs of {N} calls; spread of the site runs: {spread * 1e3:.2f} ms)")
    _per_aspect(base)
    print(f"(min of {REPEAT} runs of {N // 4} calls; load average {os.getloadavg()[0]:.2f})")
    _async_rows()
    _method_rows()


if __name__ == "__main__":
    main()
