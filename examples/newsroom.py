"""An example generation pipeline: titles and summaries of articles, decorated.

This is ordinary OpenAI client code. The decorators make it retry transient failures,
cost every call from the usage it really billed, and log one JSON line per event; the
nested ``briefing`` operation rolls up the cost of the calls it makes.
"""

from __future__ import annotations

import openai

from prismq_llmtools import cost_tracked, retried

SYSTEM = "You are a sub-editor. Answer with the text asked for and nothing else."


def title_messages(article: str) -> list[dict[str, str]]:
    """The chat messages ``write_title`` sends for ``article``."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Write a title for this article:\n{article}"},
    ]


class Newsroom:
    """Writes titles, summaries and briefings with one OpenAI client."""

    def __init__(self, client: openai.OpenAI, *, model: str = "gpt-4o-mini") -> None:
        self.client = client
        self.model = model

    @cost_tracked(operation="titles")
    @retried(attempts=6, max_wait_s=2.0)
    def write_title(self, article: str, *, temperature: float = 0.0) -> str:
        """A title for ``article``."""
        resp = self.client.chat.completions.create(
            model=self.model,
            temperature=temperature,
            max_tokens=24,
            messages=title_messages(article),  # type: ignore[arg-type]
        )
        return resp.choices[0].message.content or ""

    @cost_tracked(operation="summaries")
    @retried(attempts=6, max_wait_s=2.0)
    def summarize(self, article: str) -> str:
        """A two-sentence summary of ``article``."""
        resp = self.client.chat.completions.create(
            model=self.model,
            max_tokens=80,
            messages=[
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Summarize in two sentences:\n{article}"},
            ],
        )
        return resp.choices[0].message.content or ""

    @cost_tracked(operation="briefing")
    def briefing(self, article: str) -> tuple[str, str]:
        """A title and a summary: two nested operations rolled up into one."""
        return self.write_title(article), self.summarize(article)


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
