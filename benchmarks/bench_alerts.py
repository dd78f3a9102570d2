"""Alert engine throughput and memory: replay a generated log against 20 rules on one core.

Usage::

    .venv/bin/python benchmarks/bench_alerts.py [--sizes 100000,1200000] [--rate 200] [--repeat 3]

Rates are lines per CPU second of the measuring process (``time.process_time``), which
other processes on the machine do not distort, and per wall second. Generates a realistic
JSON-lines log (``llm.call``, ``llm.attempt``, ``llm.retry``,
``llm.cache.hit`` in the schema of docs/events.md) per size, then runs each measurement in
its own child process pinned to one CPU, so that peak RSS belongs to that run alone:

* ``read``: iterate the file's lines (I/O and decoding floor);
* ``json.loads``: parse every line with the stdlib (the baseline the target is judged by);
* ``loads+time``: parse, and read the event time of each line;
* ``engine``: the full replay against 20 rules, stdlib parser (what ``alerts.sources.replay``
  does for one file, fed in two parts so that peak RSS is also taken after 1,000,000 lines);
* ``engine+orjson``: the same with ``orjson.loads`` (the optional ``[fast]`` extra), if present.

``--repeat N`` runs every measurement N times: the table shows the median and the best CPU
rate, the median wall rate and time, and the largest peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EXTRA_RULES = """
[[rule]]
name = "attempt-errors"
event = "llm.attempt"
where = { outcome = "error" }
group_by = "site"
window = "5m"
condition = "> 30"

[[rule]]
name = "avg-cost"
event = "llm.call"
aggregate = "avg"
field = "cost_usd"
group_by = "site"
window = "10m"
condition = "> 0.05"

[[rule]]
name = "max-latency"
event = "llm.call"
aggregate = "max"
field = "duration_s"
group_by = "model"
window = "1m"
condition = "> 20"

[[rule]]
name = "cache-savings"
event = "llm.cache.hit"
aggregate = "sum"
field = "saved_cost_usd"
window = "1h"
condition = "> 50"

[[rule]]
name = "no-success"
event = "llm.call"
aggregate = "absence"
where = { outcome = "ok" }
window = "10m"

[[rule]]
name = "p99-latency-site"
event = "llm.call"
aggregate = "p99"
field = "duration_s"
group_by = "site"
window = "5m"
condition = "> 15"

[[rule]]
name = "server-errors"
event = "llm.call"
where = { status_code = { ">=" = 500 } }
window = "5m"
condition = "> 50"

[[rule]]
name = "retry-wait"
event = "llm.retry"
aggregate = "sum"
field = "wait_s"
group_by = "site"
window = "5m"
condition = "> 600"

[[rule]]
name = "gpt4o-spend"
event = "llm.call"
where = { model = { in = ["gpt-4o", "o3-mini"] }, site = { regex = "^app\\\\.(titles|summaries)" } }
aggregate = "sum"
field = "cost_usd"
window = "1h"
condition = "> 20"
"""

CHECKPOINT = 1_000_000  # peak RSS is also taken after this many lines (memory must stay flat)
SITES = [f"app.{name}.run" for name in ("titles", "summaries", "tags", "qa", "translate", "embed")]
MODELS = ["gpt-4o-mini", "gpt-4o", "o3-mini"]


def build_rules(resolution_s: float = 1.0) -> Any:
    from prismq_llmtools.alerts.pack import builtin_rules
    from prismq_llmtools.alerts.rules import RuleSet, parse_rules

    rules = builtin_rules(daily_budget_usd=200.0) + parse_rules(EXTRA_RULES).rules
    assert len(rules) == 20, len(rules)
    return RuleSet(rules=rules, resolution_s=resolution_s)


def generate(path: Path, lines: int, rate: float, seed: int = 1) -> None:
    """Write ``lines`` events arriving at ``rate`` events per second of event time."""
    from prismq_llmtools.alerts.eventtime import format_event_time

    rng = random.Random(seed)
    moment = 1795478400.0
    with path.open("w") as out:
        for _ in range(lines):
            moment += rng.expovariate(rate)
            stamp = format_event_time(moment)
            site, model = rng.choice(SITES), rng.choice(MODELS)
            op = site.split(".")[1]
            call_id = f"{rng.getrandbits(64):016x}"
            kind = rng.random()
            if kind < 0.55:
                failed = rng.random() < 0.02
                cached = rng.random() < 0.3
                event = {
                    "event": "llm.call", "timestamp": stamp, "level": "error" if failed else "info",
                    "site": site, "operation": f"pipeline/{op}", "call_id": call_id,
                    "gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                    "gen_ai.response.model": f"{model}-2025-01-01",
                    "gen_ai.response.id": f"chatcmpl-{rng.getrandbits(48):012x}",
                    "gen_ai.usage.input_tokens": 0 if cached else rng.randint(200, 4000),
                    "gen_ai.usage.output_tokens": 0 if cached else rng.randint(20, 800),
                    "gen_ai.usage.cache_read.input_tokens": 0 if cached else rng.choice([0, 1024]),
                    "usage_source": "cache" if cached else "response",
                    "prompt_tokens_estimate": rng.randint(200, 4000),
                    "cost_usd": 0.0 if cached else round(rng.uniform(0.0001, 0.02), 6),
                    "attempts": 1, "retries": 0, "rate_limited": int(rng.random() < 0.03),
                    "wait_s": 0.0, "duration_s": round(rng.lognormvariate(0.0, 0.7), 4),
                    "cache": "hit" if cached else "miss", "outcome": "error" if failed else "ok",
                    "request_id": f"req_{rng.getrandbits(64):016x}",
                }  # fmt: skip
                if failed:
                    event.update(error_type="APIStatusError", status_code=rng.choice([500, 503]))
            elif kind < 0.80:
                event = {
                    "event": "llm.attempt", "timestamp": stamp, "level": "info", "site": site,
                    "operation": f"pipeline/{op}", "call_id": call_id, "attempt": 1,
                    "outcome": "ok" if rng.random() > 0.05 else "error",
                    "duration_s": round(rng.lognormvariate(0.0, 0.7), 4), "possibly_billed": True,
                }  # fmt: skip
            elif kind < 0.90:
                event = {
                    "event": "llm.retry", "timestamp": stamp, "level": "warning", "site": site,
                    "operation": f"pipeline/{op}", "call_id": call_id, "attempt": 1,
                    "wait_s": round(rng.uniform(0.1, 4.0), 3), "error_type": "RateLimitError",
                    "status_code": 429,
                }  # fmt: skip
            else:
                event = {
                    "event": "llm.cache.hit", "timestamp": stamp, "level": "info", "site": site,
                    "operation": f"pipeline/{op}", "call_id": call_id,
                    "saved_cost_usd": round(rng.uniform(0.0001, 0.02), 6),
                    "gen_ai.request.model": model,
                }  # fmt: skip
            out.write(json.dumps(event) + "\n")


def child(mode: str, path: str, resolution_s: float) -> dict[str, Any]:
    """Run one measurement in this (pinned) process and return its figures."""
    from prismq_llmtools.alerts.eventtime import parse_event_time

    started, cpu_started = time.perf_counter(), time.process_time()
    result: dict[str, Any] = {}
    with open(path, encoding="utf-8") as handle:
        if mode == "read":
            count = sum(1 for _ in handle)
        elif mode == "json.loads":
            loads, count = json.loads, 0
            for count, line in enumerate(handle, 1):  # noqa: B007 (counting)
                loads(line)
        elif mode == "loads+time":
            loads, count = json.loads, 0
            for count, line in enumerate(handle, 1):  # noqa: B007 (counting)
                parse_event_time(loads(line)["timestamp"])
        else:
            from prismq_llmtools.alerts.engine import AlertEngine
            from prismq_llmtools.alerts.sources import open_log

            fired: list[Any] = []
            engine = AlertEngine(build_rules(resolution_s), actions=[fired.append])
            loader = None
            if mode == "engine+orjson":
                import orjson

                loader = orjson.loads
            # what alerts.sources.replay does for one file, in two parts to see the memory
            # after the first CHECKPOINT lines
            with open_log(path) as log:
                count = engine.process_lines(islice(log, CHECKPOINT), loads=loader)
                result["rss_checkpoint_mib"] = _peak_rss_mib()
                count += engine.process_lines(log, loads=loader)
            engine.flush()
            result.update(
                alerts=len(fired), late=engine.stats.late, state=engine.state_size(),
                ticks=engine.stats.ticks,
            )  # fmt: skip
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    result.update(
        mode=mode, lines=count, seconds=elapsed, rate=count / elapsed, cpu_rate=count / cpu,
        rss_mib=_peak_rss_mib(),
    )  # fmt: skip
    return result


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(mode: str, path: Path, cpu: int, resolution_s: float) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", mode, "--path", str(path), "--cpu", str(cpu)]
    command += ["--resolution", str(resolution_s)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout  # noqa: S603
    return json.loads(output)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1200000", help="log sizes in lines")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second of event time")
    parser.add_argument("--resolution", type=float, default=1.0, help="engine tick in seconds")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per measurement (median and best shown)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last)")
    args = parser.parse_args()
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    if args.child:
        os.sched_setaffinity(0, {cpu})
        print(json.dumps(child(args.child, args.path, args.resolution)))
        return
    try:
        import orjson  # noqa: F401

        modes = ["read", "json.loads", "loads+time", "engine", "engine+orjson"]
    except ImportError:
        modes = ["read", "json.loads", "loads+time", "engine"]
    load = os.getloadavg()[0]
    print(
        f"python {sys.version.split()[0]}, pinned to CPU {cpu} of {os.cpu_count()}, 20 rules, "
        f"resolution {args.resolution:g}s, {args.rate:g} events per second of event time, "
        f"load average {load:.2f}, {args.repeat} run(s) per row (ev/CPU-s: median)"
    )
    header = (
        f"{'lines':>9}  {'mode':<14} {'ev/CPU-s':>10} {'best':>10} {'ev/wall-s':>10} "
        f"{'wall s':>7} {'peak RSS':>9}  notes"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as folder:
        for size in (int(text) for text in args.sizes.split(",")):
            path = Path(folder) / f"events-{size}.log"
            generate(path, size, args.rate)
            mib = path.stat().st_size / 2**20
            for mode in modes:
                runs = [run_child(mode, path, cpu, args.resolution) for _ in range(args.repeat)]
                figures = runs[0]
                notes = f"{mib:.0f} MiB log" if mode == "read" else ""
                if "alerts" in figures:
                    notes = (f"{figures['alerts']} alerts, {figures['late']} late, "
                             f"{figures['state']} live groups")  # fmt: skip
                    if size > CHECKPOINT:
                        notes += f", {figures['rss_checkpoint_mib']:.1f}Mi at {CHECKPOINT:,}"
                cpu_rates = [run["cpu_rate"] for run in runs]
                rate = statistics.median(run["rate"] for run in runs)
                seconds = statistics.median(run["seconds"] for run in runs)
                rss = max(run["rss_mib"] for run in runs)
                median, best = statistics.median(cpu_rates), max(cpu_rates)
                print(
                    f"{size:>9,}  {mode:<14} {median:>10,.0f} {best:>10,.0f} {rate:>10,.0f} "
                    f"{seconds:>7.2f} {rss:>7.1f}Mi  {notes}"
                )
            path.unlink()


if __name__ == "__main__":
    main()
