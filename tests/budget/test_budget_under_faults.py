"""A hard USD budget holds against what the server bills, when a fifth of its answers are
unreadable 200s (billed, usage unknown), with many threads, on every store."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import openai

from prismq_llmtools import BudgetExceeded, retried, token_budgeted
from prismq_llmtools.budget import budget_status
from prismq_llmtools.pricing import price_table
from prismq_llmtools.pricing.money import cost_of
from prismq_llmtools.stores import StateRegistry
from prismq_llmtools.testing.clock import FakeClock
from prismq_llmtools.testing.simulator import FaultProfile
from prismq_llmtools.usage import Usage

LIMIT_USD = Decimal("0.02")
THREADS = 16


def test_unreadable_answers_never_make_the_server_bill_more_than_a_hard_budget(
    simulator_factory: Any, url: str
) -> None:
    """15% malformed and 5% empty 200s, 16 threads calling until refused: the simulator's
    bill stays within the budget, and the budget counts at least what it billed."""
    sim = simulator_factory(seed=5, faults=FaultProfile(malformed_json=0.15, empty_body=0.05))
    client = sim.client()

    @retried(attempts=4, initial_wait_s=0, clock=FakeClock())
    @token_budgeted(daily_usd=float(LIMIT_USD), store=url, registry=StateRegistry())
    def ask(prompt: str, model: str = "gpt-4o", max_tokens: int = 60) -> str:
        resp = client.chat.completions.create(
            model=model, max_tokens=max_tokens, messages=[{"role": "user", "content": prompt}]
        )
        return resp.choices[0].message.content or ""

    gave_up: list[BaseException] = []

    def caller(worker: int) -> None:
        for i in range(1_000):
            try:
                ask(f"A line about topic {worker}-{i}.")
            except BudgetExceeded:
                return
            except (openai.APIError, ValueError) as exc:  # every attempt unreadable
                gave_up.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = sim.stats()
    assert stats.faults.get("malformed_json", 0) + stats.faults.get("empty_body", 0) > 0
    billed = Usage(input_tokens=stats.prompt_tokens, output_tokens=stats.completion_tokens)
    server_usd = cost_of(billed, price_table().price_for("gpt-4o")).total_usd
    assert server_usd <= LIMIT_USD
    assert budget_status(ask)["daily_usd"]["spent"] >= server_usd
