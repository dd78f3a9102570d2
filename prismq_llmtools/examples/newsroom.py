"""An example generation pipeline: titles and summaries of articles, decorated.

This is ordinary OpenAI client code. The decorators make it cache repeated requests, stay
within the account's rate limits, retry transient failures, keep the summaries within a
daily token budget, cost every call from the usage it really billed, run many articles at
once with ``.batch``, and log one JSON line per event. The nested ``briefing`` operation
rolls up the cost of the calls it makes.
"""

from __future__ import annotations

from typing import Any

import openai

from prismq_llmtools import (
    batched,
    cached,
    cost_tracked,
    rate_limited,
    retried,
    token_budgeted,
)

SYSTEM = "You are a sub-editor. Answer with the text asked for and nothing else."
MODEL = "gpt-4o-mini"

# The account's limits for MODEL. Every site using the model shares these buckets.
RPM = 300
TPM = 6_000

# The summaries' daily token budget (prompt + completion cap is reserved before each call).
SUMMARY_TOKENS_PER_DAY = 2_000


def title_messages(article: str) -> list[dict[str, str]]:
    """The chat messages ``write_title`` sends for ``article``."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Write a title for this article:\n{article}"},
    ]


def summary_messages(article: str) -> list[dict[str, str]]:
    """The chat messages ``summarize`` sends for ``article``."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Summarize in two sentences:\n{article}"},
    ]


def _title_request(args: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": args["model"],
        "max_tokens": args["max_tokens"],
        "messages": title_messages(args["article"]),
    }


def _summary_request(args: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": args["model"],
        "max_tokens": args["max_tokens"],
        "messages": summary_messages(args["article"]),
    }


class Newsroom:
    """Writes titles, summaries and briefings with one OpenAI client."""

    def __init__(self, client: openai.OpenAI) -> None:
        self.client = client

    @batched(max_concurrency=8)
    @cost_tracked(operation="titles", request=_title_request)
    @cached()
    @rate_limited(rpm=RPM, tpm=TPM)
    @retried(attempts=6, max_wait_s=2.0)
    def write_title(self, article: str, *, model: str = MODEL, max_tokens: int = 24) -> str:
        """A title for ``article``."""
        resp = self.client.chat.completions.create(
            model=model,
            max_tokens=max_tokens,
            messages=title_messages(article),  # type: ignore[arg-type]
        )
        return resp.choices[0].message.content or ""

    @batched(max_concurrency=4)
    @cost_tracked(operation="summaries", request=_summary_request)
    @token_budgeted(daily_tokens=SUMMARY_TOKENS_PER_DAY, scope="summaries")
    @rate_limited(rpm=RPM, tpm=TPM)
    @retried(attempts=6, max_wait_s=2.0)
    def summarize(self, article: str, *, model: str = MODEL, max_tokens: int = 80) -> str:
        """A two-sentence summary of ``article``."""
        resp = self.client.chat.completions.create(
            model=model,
            max_tokens=max_tokens,
            messages=summary_messages(article),  # type: ignore[arg-type]
        )
        return resp.choices[0].message.content or ""

    @cost_tracked(operation="briefing")
    def briefing(self, article: str) -> tuple[str, str]:
        """A title and a summary: two nested operations rolled up into one."""
        # LLMFunction is typed as a plain function, not as a descriptor that binds self.
        title = self.write_title(article)  # type: ignore[call-arg, arg-type]
        summary = self.summarize(article)  # type: ignore[call-arg, arg-type]
        return title, summary


ARTICLES = [
    "The city council approved a new bike lane network connecting the university to the old "
    "harbour, after two years of consultation with residents and shop owners.",
    "A local bakery has started delivering bread by cargo bike, cutting its van trips by half "
    "and winning a regional sustainability award.",
    "Researchers at the marine institute tagged forty young sea turtles to study how warmer "
    "currents change their first migration across the bay.",
    "The public library extended its opening hours on weekends and added a repair café where "
    "volunteers fix lamps, toasters and bicycles for free.",
    "After a record harvest, apple growers in the valley are turning surplus fruit into cider, "
    "vinegar and dried snacks sold at the Saturday market.",
    "A new night train links the capital with three ski resorts, and tickets for the first "
    "month sold out within a day of going on sale.",
    "Students built a weather station on the school roof and publish hourly readings that the "
    "regional forecasting office now uses to check its models.",
    "The old textile mill reopens as a workspace for fifty small businesses, with a shared "
    "workshop, a café and a daycare for employees' children.",
]
