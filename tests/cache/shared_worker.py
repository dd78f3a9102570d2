"""A cached site that the processes of ``test_cache_files.py`` call at once.

Every process builds the same site (same name, same code) on the same directory, so each
finds what the others wrote.
"""

from __future__ import annotations

from typing import Any

import openai

from prismq_llmtools.cache import cached

TOPICS = 24

CLIENT: Any = None  # set in the workers only: a miss in the test's own process fails


def _ask(topic: str) -> str:
    resp = CLIENT.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": topic}]
    )
    return str(resp.choices[0].message.content)


def site(location: str) -> Any:
    """``shared.ask``, caching its answers in ``location``."""
    return cached(location, name="shared.ask")(_ask)


def work(location: str, url: str, offset: int) -> None:
    """A worker process: ask every topic once, starting at ``offset``."""
    global CLIENT
    CLIENT = openai.OpenAI(base_url=url, api_key="sk-test", max_retries=0)
    ask = site(location)
    for i in range(TOPICS):
        ask(f"topic {(i + offset) % TOPICS}")
