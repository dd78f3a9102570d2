"""Billed means counted, across a crash: a batch killed with SIGKILL while requests are in
flight, then resumed, accounts for every request the server billed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from prismq_llmtools import configure_logging, usage_totals
from prismq_llmtools.batch.checkpoint import Checkpoint
from prismq_llmtools.budget import budget_status
from prismq_llmtools.cost.recovery import find_in_flight, recover_in_flight
from prismq_llmtools.pricing import price_table
from prismq_llmtools.pricing.money import cost_of
from prismq_llmtools.report import build_report, read_events
from prismq_llmtools.testing.simulator import Fault, FaultKind, Simulator
from prismq_llmtools.usage import Usage

from .billing_worker import CAP, CONCURRENCY, TOPICS, billing_site

ROOT = Path(__file__).resolve().parents[2]
FINISHED = 12  # requests answered before the simulator starts holding them


def _wait_until_served(sim: Simulator, count: int, worker: subprocess.Popen[bytes]) -> None:
    """Until the simulator has served (and billed) ``count`` requests. The pause only paces
    the polling; what the test then sees does not depend on timing."""
    deadline = time.monotonic() + 120
    while sim.stats().served < count:
        if worker.poll() is not None:
            pytest.fail(f"the worker exited ({worker.returncode}) before {count} requests")
        if time.monotonic() > deadline:
            pytest.fail(f"the simulator served {sim.stats().served} of {count} requests")
        time.sleep(0.01)


def _billed_usd(sim: Simulator) -> Decimal:
    stats = sim.stats()
    price = price_table().price_for("gpt-4o-mini")
    usage = Usage(input_tokens=stats.prompt_tokens, output_tokens=stats.completion_tokens)
    return cost_of(usage, price).total_usd


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_a_batch_killed_mid_flight_and_resumed_accounts_for_what_the_server_billed(
    simulator_factory: Any, tmp_path: Path, store: str
) -> None:
    """The worker finishes 12 requests, then its next 4 are served (and billed) but held by
    the simulator; it is killed with SIGKILL. The resumed run recovers those 4 from the
    write-ahead lines of the log at their worst case, which here is exactly what the server
    billed (the prompt is known from the arguments and every answer fills its cap): the
    resumed run's totals plus the finished calls in the log equal the server's bill, and so
    does the report over the whole log."""
    sim = simulator_factory(seed=3)
    in_flight = [Fault(kind=FaultKind.SLOW, delay_s=3600) for _ in range(CONCURRENCY)]
    sim.script(*(Fault(kind=FaultKind.NONE) for _ in range(FINISHED)), *in_flight)
    log, checkpoint = tmp_path / "run.log", tmp_path / "run.ckpt"
    store_url = f"sqlite:///{tmp_path / 'budget.db'}" if store == "sqlite" else "memory"
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.batch.billing_worker", sim.url, str(log),
         str(checkpoint), store_url],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        _wait_until_served(sim, FINISHED + CONCURRENCY, worker)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert worker.returncode == -signal.SIGKILL
    first_run = list(read_events([log]))
    lost = find_in_flight(first_run)
    assert len(lost) == CONCURRENCY
    assert {a.usage.output_tokens for a in lost} == {CAP}
    finished_first = sum(1 for e in first_run if e["event"] == "llm.call")
    assert finished_first == FINISHED

    # The resumed run, in this process: recover what was in flight, then finish the batch.
    done_before = len(Checkpoint(checkpoint).done)
    configure_logging(file=log)
    assert len(recover_in_flight(first_run)) == CONCURRENCY
    site = billing_site(sim.client(), store_url)
    answers = site.batch(TOPICS, checkpoint=checkpoint, progress=False)
    assert all(answers)

    stats = sim.stats()
    assert stats.served == FINISHED + CONCURRENCY + len(TOPICS) - done_before
    billed = Usage(input_tokens=stats.prompt_tokens, output_tokens=stats.completion_tokens)
    before_crash = [e for e in first_run if e["event"] == "llm.call"]
    logged_first = Usage(
        input_tokens=sum(e["gen_ai.usage.input_tokens"] for e in before_crash),
        output_tokens=sum(e["gen_ai.usage.output_tokens"] for e in before_crash),
    )
    resumed = usage_totals().total()
    assert resumed.possibly_billed == CONCURRENCY
    assert logged_first + resumed.usage == billed

    report = build_report(read_events([log]))
    assert (report.total.input_tokens, report.total.output_tokens) == (
        billed.input_tokens,
        billed.output_tokens,
    )
    assert report.total.cost_usd == pytest.approx(float(_billed_usd(sim)), abs=1e-6)
    assert find_in_flight(read_events([log])) == []  # recovered once: closed in the log
    if store == "sqlite":  # the ledger still holds the dead calls' worst cases
        status = budget_status(site)["daily_usd"]
        assert float(status["reserved"]) == pytest.approx(
            float(sum(a.cost_usd for a in lost)), abs=1e-5
        )
