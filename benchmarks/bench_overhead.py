"""Per-call cost of a decorated function: the machinery alone, and a realistic OpenAI call.

Run: .venv/bin/python benchmarks/bench_overhead.py [--quick]

Every figure is CPU time of this process per call (``time.process_time``: on a machine
shared with other work, time spent waiting for a CPU is not counted), the median over
several rounds, printed with its ratio against a baseline measured in the same run.

1. The machinery alone. All six decorators on a function that describes no OpenAI request
   (it takes ``x`` and returns a string): nothing is counted, priced or estimated; the rate
   limiter admits, queues and releases every call through one generous request bucket, the
   budget has no limit, the cache is disabled. Compared with the bare function, one plain
   wrapt layer, and six plain stacked wrapt layers (what six independent decorators would
   cost); then each aspect alone, an async function and a method.
   Budget: the six-aspect site costs at most 10 us over the bare function.

2. A realistic call. A function taking ``messages`` and ``model`` and returning an
   ``openai.types.chat.ChatCompletion`` (built once, with usage), under all six decorators
   configured as in the README's quick start (rpm and tpm limits, a prompt cap and a daily
   token budget, all generous; the cache off), with a 1.3 KB chat request: the same
   messages every call, and a new user message each call. Compared with the bare function,
   with counting the prompt with tiktoken alone (``encode`` of the message texts), with our
   ``count_request``, and with LiteLLM's ``completion(..., mock_response=...)`` (extra
   ``[bench]``; skipped when LiteLLM is not installed). Then where the time goes, each part
   measured alone: counting, reading usage from the response, pricing, the site machinery.
   Budget: the realistic call (the same messages every call, as the budget was set) costs
   at most 1.25 times counting its prompt with tiktoken alone. With a new user message each
   call the ratio is printed too: tiktoken must then encode the new text, which leaves
   little of the 1.25 for everything else (see BENCHMARKS.md).

3. Import. ``import prismq_llmtools`` in a fresh process against ``import openai`` (medians
   of several runs). Budget: importing prismq_llmtools leaves ``openai`` and ``tiktoken``
   out of ``sys.modules``.

The exit status is 1 when a budget fails.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import itertools
import os
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import wrapt

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # last: PYTHONPATH can name another copy of the package to measure
    sys.path.append(str(ROOT))

import prismq_llmtools as llm  # noqa: E402

MODEL = "gpt-4o-mini"
MACHINERY_BUDGET_US = 10.0
REALISTIC_BUDGET = 1.25

SYSTEM = (
    "You are a careful news editor. Rewrite the title of the article you are given so that "
    "it is short, factual and free of clickbait. Keep names, numbers and dates exactly as "
    "they are written in the article. Do not add facts that the article does not state, and "
    "do not guess at motives. Prefer the active voice and concrete nouns. Answer with the "
    "title only: no quotes around it, no full stop at its end, at most twelve words. If the "
    "article is not news (an advertisement, a recipe), answer with its subject in five words."
)
ARTICLE = (
    "The city council approved on Tuesday a network of protected bike lanes covering 42 "
    "kilometres of streets in the centre, after two years of consultation with residents and "
    "shop owners. Construction starts in March and should end before the summer of next year; "
    "the budget of 18.5 million euros comes from the regional transport fund. Opponents said "
    "the loss of 600 parking spaces would hurt small businesses, while the cyclists' union "
    "called the vote a turning point for the city. The mayor promised a review of delivery "
    "zones within six months of the opening, and a first count of cyclists on the new lanes "
    "one year after."
)
USAGE = {
    "prompt_tokens": 262,
    "completion_tokens": 11,
    "total_tokens": 273,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
ANSWER = "Council approves 42 km of protected bike lanes in the centre"


# -- timing ----------------------------------------------------------------------------------


class Rounds:
    """How many calls a measurement makes: ``rounds`` rounds of ``calls`` each."""

    def __init__(self, calls: int, rounds: int) -> None:
        self.calls = calls
        self.rounds = rounds


def per_call_us(func: Callable[[], Any], rounds: Rounds) -> float:
    """Median over the rounds of the CPU time of one call, in microseconds."""
    runs = timeit.repeat(func, number=rounds.calls, repeat=rounds.rounds, timer=time.process_time)
    return statistics.median(runs) / rounds.calls * 1e6


def per_input_us(func: Callable[[Any], Any], inputs: Iterator[list[Any]], rounds: int) -> float:
    """Median over ``rounds`` of the CPU time of ``func(x)`` per ``x`` of a fresh input list."""
    runs = []
    for _ in range(rounds):
        batch = next(inputs)
        started = time.process_time()
        for x in batch:
            func(x)
        runs.append((time.process_time() - started) / len(batch) * 1e6)
    return statistics.median(runs)


def row(name: str, us: float, base: float | None = None, ratio: str = "") -> None:
    extra = f"{us - base:>10.2f}" if base is not None else f"{'':>10}"  # over the baseline
    print(f"  {name:<52} {us:>9.2f} {extra} {ratio}")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# -- 1. the machinery alone ------------------------------------------------------------------


def bare(x: int) -> str:
    return "x"


def _passthrough(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return wrapped(*args, **kwargs)


def _stack(layers: int) -> Callable[..., str]:
    func: Any = bare
    for _ in range(layers):
        func = wrapt.FunctionWrapper(func, _passthrough)
    return func  # type: ignore[no-any-return]


def idle_decorators() -> list[tuple[str, Callable[[Any], Any]]]:
    """Every decorator of the package, configured so that it does no real work."""
    return [
        ("retried", llm.retried()),
        ("cost_tracked", llm.cost_tracked()),
        ("rate_limited", llm.rate_limited(rpm=10**9, key="bench.idle")),
        ("token_budgeted", llm.token_budgeted()),
        ("cached", llm.cached(enabled=False)),
        ("batched", llm.batched()),
    ]


def decorate(func: Any, decorators: Sequence[tuple[str, Callable[[Any], Any]]]) -> Any:
    for _, decorator in reversed(decorators):
        func = decorator(func)
    return func


def fresh_plain() -> Callable[[int], str]:
    def plain(x: int) -> str:
        return "x"

    return plain


def machinery(rounds: Rounds) -> tuple[float, bool]:
    """Section 1; returns the six-aspect site's cost over the bare function and the verdict."""
    site = decorate(fresh_plain(), idle_decorators())
    for _ in range(1000):
        site(1)
    base = per_call_us(lambda: bare(1), rounds)
    stack1 = _stack(1)
    one = per_call_us(lambda: stack1(1), rounds)
    stack6 = _stack(6)
    six = per_call_us(lambda: stack6(1), rounds)
    ours = per_call_us(lambda: site(1), rounds)
    print("## 1. The machinery alone: a function that describes no request")
    print(f"  {'case':<52} {'us/call':>9} {'over bare':>10}")
    row("bare function", base, base)
    row("1 plain wrapt layer", one, base)
    row("6 plain stacked wrapt layers", six, base)
    over = ours - base
    row(
        "one site with all 6 aspects",
        ours,
        base,
        f"({over / (six - base):.2f}x the overhead of 6 stacked layers)",
    )
    print(f"\n  {'one site with one aspect':<52} {'us/call':>9} {'over bare':>10}")
    for name, decorator in idle_decorators():
        if name == "rate_limited":
            decorator = llm.rate_limited(rpm=10**9, key="bench.idle.alone")
        func = decorator(fresh_plain())
        for _ in range(1000):
            func(1)
        row(name, per_call_us(lambda f=func: f(1), rounds), base)

    async def abare(x: int) -> str:
        return "x"

    async def afresh(x: int) -> str:
        return "x"

    async def awaited(func: Callable[[int], Any]) -> float:
        runs = []
        for _ in range(rounds.rounds):
            started = time.process_time()
            for _ in range(rounds.calls):
                await func(1)
            runs.append((time.process_time() - started) / rounds.calls * 1e6)
        return statistics.median(runs)

    asite = decorate(afresh, idle_decorators())
    abase = asyncio.run(awaited(abare))
    aours = asyncio.run(awaited(asite))
    print(f"\n  {'async function (awaited in a loop)':<52} {'us/call':>9} {'over bare':>10}")
    row("bare coroutine function", abase, abase)
    row("one site with all 6 aspects", aours, abase)

    def method(self: Any, x: int) -> str:
        return "x"

    owner: Any = type("Owner", (), {"bare": method, "site": decorate(method, idle_decorators())})()
    for _ in range(1000):
        owner.site(1)
    mbase = per_call_us(lambda: owner.bare(1), rounds)
    mours = per_call_us(lambda: owner.site(1), rounds)
    print(f"\n  {'method (obj.method(1))':<52} {'us/call':>9} {'over bare':>10}")
    row("bare method", mbase, mbase)
    row("one site with all 6 aspects", mours, mbase)
    ok = over <= MACHINERY_BUDGET_US
    print(
        f"\nbudget 1, six aspects over the bare function <= {MACHINERY_BUDGET_US:.0f} us: "
        f"{over:.2f} us  {verdict(ok)}"
    )
    return over, ok


# -- 2. a realistic call ---------------------------------------------------------------------


def response() -> Any:
    from openai.types.chat import ChatCompletion

    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1_764_892_800,
            "model": "gpt-4o-mini-2024-07-18",
            "service_tier": "default",
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "logprobs": None,
                    "message": {"role": "assistant", "content": ANSWER, "refusal": None},
                }
            ],
            "usage": USAGE,
        }
    )


def messages_for(n: int | None) -> list[dict[str, str]]:
    """The request's messages; ``n`` makes the user message new (fresh strings each time)."""
    head = "Title for:\n" if n is None else f"Title for (item {n}):\n"
    return [
        {"role": "system", "content": "".join(list(SYSTEM))},
        {"role": "user", "content": head + ARTICLE},
    ]


_NEW = itertools.count()  # every "new" user message of the run differs from all others


def inputs(calls: int, new: bool) -> Iterator[list[Any]]:
    """Lists of ``messages`` for one round each: the same object, or new ones every call."""
    same = messages_for(None)
    while True:
        if new:
            yield [messages_for(next(_NEW)) for _ in range(calls)]
        else:
            yield [same] * calls


def realistic_decorators(key: str = "bench.realistic") -> list[tuple[str, Callable[[Any], Any]]]:
    """The README's quick-start stack, with generous limits and the cache off."""
    return [
        ("batched", llm.batched(max_concurrency=32)),
        ("cost_tracked", llm.cost_tracked(operation="bench.realistic")),
        ("cached", llm.cached(enabled=False)),
        ("rate_limited", llm.rate_limited(rpm=10**9, tpm=10**12, key=key)),
        ("retried", llm.retried(attempts=6)),
        ("token_budgeted", llm.token_budgeted(max_prompt_tokens=4_000, daily_tokens=10**12)),
    ]


ADDED = {  # what each aspect adds to the realistic call, beyond the site's machinery
    "batched": "a site: discovery, usage, pricing, machinery",
    "cost_tracked": "+ cost_tracked: the totals",
    "cached": "+ cached(enabled=False)",
    "retried": "+ retried",
    "rate_limited": "+ rate_limited rpm+tpm: counting, buckets",
    "token_budgeted": "+ token_budgeted: cap check, daily ledger",
}


def litellm_completion() -> Callable[[Any], Any] | str:
    """LiteLLM's completion with a mock response, or why it cannot be measured."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
    try:
        import litellm
    except ImportError:
        return "LiteLLM is not installed (pip install -e '.[bench]'): row skipped"

    def complete(messages: Any) -> Any:
        return litellm.completion(model=MODEL, messages=messages, mock_response=ANSWER)

    return complete


def realistic(calls: int, rounds: int, machinery_us: float) -> tuple[float, float, bool]:
    """Section 2; returns the decorated call (same messages), tiktoken's count, the verdict."""
    from prismq_llmtools.call import Call, Request
    from prismq_llmtools.openai.admission import character_estimate
    from prismq_llmtools.openai.tokens import count_request, encoding_for
    from prismq_llmtools.openai.usage import facts_from_response
    from prismq_llmtools.openai.vocab import get_encoding
    from prismq_llmtools.pricing import cost_call

    answer = response()

    def ask(messages: list[dict[str, str]], model: str = MODEL, max_tokens: int = 64) -> Any:
        return answer

    site = decorate(ask, realistic_decorators())
    # A tiktoken.Encoding, its vocabulary read offline (docs/counting.md, Offline vocabularies).
    encoding = get_encoding(encoding_for(MODEL))

    def encode(messages: list[dict[str, str]]) -> int:
        return sum(len(encoding.encode(m["content"])) for m in messages)

    def count(messages: list[dict[str, str]]) -> Any:
        return count_request({"model": MODEL, "messages": messages, "max_tokens": 64})

    def call(messages: list[dict[str, str]]) -> Any:
        return site(messages, model=MODEL, max_tokens=64)

    def plain(messages: list[dict[str, str]]) -> Any:
        return ask(messages, model=MODEL, max_tokens=64)

    body = {"model": MODEL, "messages": messages_for(None), "max_tokens": 64}
    size = len(__import__("json").dumps(body))
    for messages in next(inputs(2000, new=True)):
        assert call(messages) is answer  # warm: vocabulary, price table, buckets, ledger

    def measure(func: Callable[[Any], Any], new: bool, n: int = calls) -> float:
        return per_input_us(func, inputs(n, new), rounds)

    print(f"\n## 2. A realistic call: a {size:,}-byte chat request returning a ChatCompletion")
    print(
        f"  prompt: {count(messages_for(None)).prompt_tokens} tokens by count_request, "
        f"{encode(messages_for(None))} by tiktoken's encode of the two texts"
    )
    results: dict[str, dict[bool, float]] = {}
    for new in (False, True):
        results.setdefault("bare", {})[new] = measure(plain, new)
        results.setdefault("tiktoken", {})[new] = measure(encode, new)
        results.setdefault("count_request", {})[new] = measure(count, new)
        results.setdefault("site", {})[new] = measure(call, new)
    lite = litellm_completion()
    lite_us: dict[bool, float] = {}
    if callable(lite):
        lite(messages_for(None))  # warm
        for new in (False, True):
            lite_us[new] = measure(lite, new, max(calls // 20, 20))

    for new in (False, True):
        label = "a new user message each call" if new else "the same messages every call"
        base = results["bare"][new]
        tik = results["tiktoken"][new]
        print(f"\n  {label:<52} {'us/call':>9} {'over bare':>10} vs tiktoken")
        row("bare function", base, base, f"{base / tik:9.2f}x")
        row("tiktoken alone: encode() of the message texts", tik, base, f"{1:9.2f}x")
        row(
            "our count_request (chat framing, memo)",
            results["count_request"][new],
            base,
            f"{results['count_request'][new] / tik:9.2f}x",
        )
        row(
            "one site with all 6 aspects, cache off",
            results["site"][new],
            base,
            f"{results['site'][new] / tik:9.2f}x",
        )
        if new in lite_us:
            row(
                "litellm.completion(mock_response=...)",
                lite_us[new],
                base,
                f"{lite_us[new] / tik:9.2f}x",
            )
    if not callable(lite):
        print(f"  ({lite})")

    # Where the time goes, each part alone (a new user message each call).
    facts = facts_from_response(answer)
    assert facts is not None
    assert facts.usage is not None
    assert facts.usage.input_tokens == USAGE["prompt_tokens"]
    priced = Call("bench", "bench")
    priced.request = Request(model=MODEL, endpoint="chat", body=body)
    priced.usage = facts.usage
    priced.response_model = facts.model

    def chars(messages: list[dict[str, str]]) -> int:
        return character_estimate({"model": MODEL, "messages": messages})

    def price(_: Any) -> None:
        cost_call(priced)

    parts = {
        "counting: count_request": measure(count, True),
        "counting: the limiter's character estimate": measure(chars, True),
        "reading usage: facts_from_response": measure(lambda _: facts_from_response(answer), False),
        "pricing: cost_call (price lookup, exact Decimal cost)": measure(price, False),
        "site machinery (section 1, six aspects over bare)": machinery_us,
    }
    total = results["site"][True] - results["bare"][True]
    print(f"\n  {'where the time goes (new message), each alone':<52} {'us/call':>9} {'share':>10}")
    for name, us in parts.items():
        print(f"  {name:<52} {us:>9.2f} {us / total:>10.0%}")
    rest = total - sum(parts.values())
    print(
        f"  {'the rest (request discovery, buckets, ledger, totals)':<52} {rest:>9.2f} "
        f"{rest / total:>10.0%}"
    )
    print(f"  {'the decorated call over the bare function':<52} {total:>9.2f} {1:>10.0%}")

    # The same, by aspect: sites with more and more of the six (a new message each call).
    print(f"\n  {'adding the aspects one by one (new message)':<52} {'us/call':>9} {'added':>10}")
    names = ["batched", "cost_tracked", "cached", "retried", "rate_limited", "token_budgeted"]
    previous = results["bare"][True]
    for n in range(1, len(names) + 1):
        chosen = dict(realistic_decorators(key=f"bench.added.{n}"))
        stack = [(name, chosen[name]) for name in names[:n]]

        def partial(
            messages: list[dict[str, str]], model: str = MODEL, max_tokens: int = 64
        ) -> Any:
            return answer

        sub = decorate(partial, stack)
        for messages in next(inputs(200, new=True)):
            sub(messages, model=MODEL, max_tokens=64)
        us = measure(lambda m, f=sub: f(m, model=MODEL, max_tokens=64), True)
        row(ADDED[names[n - 1]], us, previous)
        previous = us

    tik = results["tiktoken"][False]
    site_us = results["site"][False]
    ok = site_us <= REALISTIC_BUDGET * tik
    new_tik, new_site = results["tiktoken"][True], results["site"][True]
    print(
        f"\nbudget 2, decorated call (same messages) <= {REALISTIC_BUDGET}x tiktoken alone: "
        f"{site_us:.1f} us / {tik:.1f} us = {site_us / tik:.2f}x  {verdict(ok)}"
        f"\n  (a new user message each call: {new_site:.1f} us / {new_tik:.1f} us"
        f" = {new_site / new_tik:.2f}x)"
    )
    return site_us, tik, ok


# -- 3. import -------------------------------------------------------------------------------

IMPORT_PROBE = """
import sys, time
wall, cpu = time.perf_counter(), time.process_time()
import {module}
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
heavy = sorted(m for m in ("openai", "tiktoken") if m in sys.modules)
print(wall, cpu, ",".join(heavy) or "-")
"""


def import_times(module: str, runs: int) -> tuple[float, float, set[str]]:
    """Median wall and CPU seconds of importing ``module`` in fresh interpreters."""
    walls, cpus, loaded = [], [], set()
    for _ in range(runs):
        out = subprocess.run(  # noqa: S603 (this interpreter, our own probe)
            [sys.executable, "-c", IMPORT_PROBE.format(module=module)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout.split()
        walls.append(float(out[0]))
        cpus.append(float(out[1]))
        loaded.update(m for m in out[2].split(",") if m != "-")
    return statistics.median(walls), statistics.median(cpus), loaded


def imports(runs: int) -> bool:
    # As installed: pip writes every module's bytecode, which an editable checkout (or
    # PYTHONDONTWRITEBYTECODE) may lack; without it each import compiles the package anew.
    compileall.compile_dir(Path(llm.__file__).parent, quiet=1)
    ours_wall, ours_cpu, loaded = import_times("prismq_llmtools", runs)
    openai_wall, openai_cpu, _ = import_times("openai", runs)
    print(f"\n## 3. Import in a fresh process, byte-compiled as installed (median of {runs})")
    print(f"  {'module':<52} {'wall ms':>9} {'CPU ms':>10} vs openai (CPU)")
    print(f"  {'import openai':<52} {openai_wall * 1e3:>9.1f} {openai_cpu * 1e3:>10.1f} {1:9.2f}x")
    print(
        f"  {'import prismq_llmtools':<52} {ours_wall * 1e3:>9.1f} {ours_cpu * 1e3:>10.1f} "
        f"{ours_cpu / openai_cpu:9.2f}x"
    )
    ok = not loaded
    print(
        "\nbudget 3, importing prismq_llmtools leaves openai and tiktoken out of sys.modules: "
        f"{'loaded ' + ', '.join(sorted(loaded)) if loaded else 'neither loaded'}  {verdict(ok)}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls per round")
    quick = parser.parse_args().quick
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}; CPU time per call, median of rounds\n"
    )
    machinery_us, ok1 = machinery(Rounds(20_000, 7) if not quick else Rounds(2_000, 3))
    _, _, ok2 = realistic(*((2_000, 7) if not quick else (300, 3)), machinery_us)
    ok3 = imports(3 if quick else 7)
    print(f"\n(load average {os.getloadavg()[0]:.2f})")
    print(f"budgets: machinery {verdict(ok1)}, realistic {verdict(ok2)}, import {verdict(ok3)}")
    return 0 if ok1 and ok2 and ok3 else 1


if __name__ == "__main__":
    sys.exit(main())
