"""The batch that ``test_kill_billing.py`` kills with SIGKILL, in a process of its own.

``python -m tests.batch.billing_worker URL LOG CHECKPOINT STORE`` logs to LOG and runs 40
titles at concurrency 4 through a cost-tracked, budgeted site whose budget lives in STORE,
remembered by CHECKPOINT. It never ends by itself in the test: the simulator holds the
requests the test chose, and the test kills the worker while they are in flight. The test
resumes the batch in its own process with :func:`billing_site`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import openai

from prismq_llmtools import batched, configure_logging, cost_tracked, token_budgeted

TOPICS = [f"topic {i}" for i in range(40)]
CONCURRENCY = 4
CAP = 8


def billing_site(client: openai.OpenAI, store: str) -> Any:
    """The batched site: its request is known from its arguments, so its worst case is."""

    @batched(max_concurrency=CONCURRENCY)
    @cost_tracked(operation="titles")
    @token_budgeted(daily_usd=100.0, store=store, name="billing.title")
    def title(topic: str, model: str = "gpt-4o-mini", max_tokens: int = CAP) -> str:
        resp = client.chat.completions.create(
            model=model, max_tokens=max_tokens, messages=[{"role": "user", "content": topic}]
        )
        return resp.choices[0].message.content or ""

    return title


def main(url: str, log: str, checkpoint: str, store: str) -> None:
    configure_logging(file=log)
    client = openai.OpenAI(base_url=url, api_key="sk-test", max_retries=0)
    billing_site(client, store).batch(TOPICS, checkpoint=Path(checkpoint), progress=False)


if __name__ == "__main__":
    main(*sys.argv[1:5])
