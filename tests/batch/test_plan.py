"""Dry runs and merging of list-capable calls."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from prismq_llmtools.batch import BatchEstimate, batched
from prismq_llmtools.cache import cached
from prismq_llmtools.errors import BatchError
from prismq_llmtools.ratelimit import rate_limited
from prismq_llmtools.testing.simulator import Simulator

MESSAGES = [{"role": "user", "content": "Write a title for an article about {}"}]


def chat_site(sim: Simulator, **limits: Any) -> Any:
    client = sim.client()

    def title(
        messages: list[dict[str, str]], model: str = "gpt-4o-mini", max_tokens: int = 20
    ) -> str:
        resp = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)
        return resp.choices[0].message.content or ""

    site: Any = batched(max_concurrency=4)(title)
    if limits:
        site = rate_limited(**limits)(site)
    return site


def _messages(topic: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": MESSAGES[0]["content"].format(topic)}]


def test_dry_run_estimates_without_calling(sim: Simulator) -> None:
    """A dry run counts tokens, prices prompt and completion cap, and sends nothing."""
    title = chat_site(sim, rpm=60, tpm=100_000)
    items = [{"messages": _messages(f"topic {i}")} for i in range(30)]
    estimate = title.batch(items, dry_run=True)
    assert isinstance(estimate, BatchEstimate)
    assert sim.stats().received == 0
    assert estimate.items == estimate.requests == 30
    assert estimate.completion_tokens_max == 30 * 20
    assert estimate.prompt_tokens > 30 * 10
    assert Decimal(0) < estimate.cost_usd < Decimal("0.01")
    assert 0 < estimate.limits["rpm"] <= 60
    assert estimate.duration_s == pytest.approx(30 * 60 / estimate.limits["rpm"])  # RPM bound
    assert "rpm" in str(estimate)


def test_dry_run_prompt_tokens_match_the_server(sim: Simulator) -> None:
    """The estimate's prompt tokens are what the server bills when the batch runs."""
    title = chat_site(sim)
    items = [{"messages": _messages(f"topic {i}")} for i in range(5)]
    estimate = title.batch(items, dry_run=True)
    title.batch(items)
    assert estimate.prompt_tokens == sim.stats().prompt_tokens
    assert estimate.duration_s == pytest.approx(2 * 1.0)  # 5 requests, 4 at a time, 1 s each


def test_dry_run_leaves_out_cached_items(sim: Simulator, tmp_path: Path) -> None:
    """Items the cache can answer cost nothing and are not counted as requests."""
    client = sim.client()

    @batched()
    @cached(tmp_path / "cache")
    def title(messages: list[dict[str, str]], model: str = "gpt-4o-mini") -> str:
        resp = client.chat.completions.create(model=model, messages=messages, max_tokens=5)
        return resp.choices[0].message.content or ""

    title(_messages("a"))
    estimate = title.batch([{"messages": _messages(t)} for t in "abc"], dry_run=True)
    assert (estimate.cached, estimate.requests) == (1, 2)
    assert sim.stats().received == 1


def embed_site(sim: Simulator, **options: Any) -> Any:
    client = sim.client()

    @batched(merge="input", **options)
    def embed(input: str | list[str], model: str = "text-embedding-3-small") -> Any:
        return client.embeddings.create(model=model, input=input)

    return embed


TEXTS = [f"text number {i} " * (1 + i % 3) for i in range(10)]


def test_merging_makes_fewer_requests_and_splits_back_in_order(sim: Simulator) -> None:
    """Ten inputs, three per request: four requests; each item gets its own embedding."""
    embed = embed_site(sim, max_inputs_per_request=3)
    merged = embed.batch(TEXTS)
    assert sim.stats().received == 4
    single = [embed(t).data[0].embedding for t in TEXTS]
    assert [m.embedding for m in merged] == single


def test_merging_respects_the_token_limit(sim: Simulator) -> None:
    """No merged request carries more tokens than ``max_tokens_per_request``."""
    sizes: list[int] = []
    client = sim.client()

    @batched(
        merge="input", max_tokens_per_request=10, count_tokens=lambda text, model: len(text.split())
    )
    def embed(input: str | list[str], model: str = "text-embedding-3-small") -> Any:
        sizes.append(sum(len(t.split()) for t in input))
        return client.embeddings.create(model=model, input=input)

    assert len(embed.batch(TEXTS)) == 10
    assert max(sizes) <= 10
    assert len(sizes) == sim.stats().received >= 4


def test_items_with_other_arguments_are_merged_separately(sim: Simulator) -> None:
    """Only items that agree on every other argument share a request."""
    embed = embed_site(sim)
    items = [{"input": "a"}, {"input": "b", "model": "text-embedding-3-large"}, {"input": "c"}]
    vectors = embed.batch(items)
    assert sim.stats().received == 2
    assert len(vectors[1].embedding) != len(vectors[0].embedding)


def test_a_merged_answer_that_does_not_split_fails_its_items() -> None:
    """An answer with the wrong number of pieces is an error for every item it covers."""

    @batched(merge="input")
    def broken(input: list[str]) -> list[str]:
        return ["only one"]

    with pytest.raises(BatchError) as caught:
        broken.batch(["a", "b"])
    assert sorted(caught.value.failures) == [0, 1]


def test_custom_split() -> None:
    """``split=`` turns a merged answer into one piece per item."""

    @batched(merge="text", split=lambda answer, n: answer.split("|"))
    def upper(text: str | list[str]) -> str:
        return "|".join(t.upper() for t in text)

    assert upper.batch(["a", "b", "c"]) == ["A", "B", "C"]


def cached_embed_site(sim: Simulator, where: Path) -> Any:
    client = sim.client()
    sent: list[list[str]] = []

    @batched(merge="input", max_inputs_per_request=4)
    @cached(where)
    def embed(input: str | list[str], model: str = "text-embedding-3-small") -> Any:
        sent.append(list(input))
        return client.embeddings.create(model=model, input=input)

    embed.sent = sent  # type: ignore[attr-defined]
    return embed


def test_merged_inputs_are_cached_one_by_one(
    sim: Simulator, tmp_path: Path, events: list[dict[str, Any]]
) -> None:
    """With merge= and @cached, each input is cached on its own: a rerun with one new text
    sends that text alone, and a subset of texts already embedded is answered by the cache
    without a request. llm.batch counts items, requests sent, merged requests and cache
    hits apart."""
    embed = cached_embed_site(sim, tmp_path / "cache")
    first = embed.batch(TEXTS)
    assert sim.stats().received == 3
    summary = [e for e in events if e["event"] == "llm.batch"][-1]
    assert (summary["items"], summary["requests"], summary["merged_requests"]) == (10, 3, 3)
    assert summary["cache_hits"] == 0

    again = embed.batch([*TEXTS, "a brand new text"])
    assert embed.sent[-1] == ["a brand new text"]
    assert sim.stats().received == 4
    assert [v.embedding for v in again[:10]] == [v.embedding for v in first]
    summary = [e for e in events if e["event"] == "llm.batch"][-1]
    assert (summary["items"], summary["requests"], summary["cache_hits"]) == (11, 1, 10)
    assert summary["saved_cost_usd"] > 0

    subset = embed.batch(TEXTS[2:5])
    assert sim.stats().received == 4
    assert [v.embedding for v in subset] == [v.embedding for v in first[2:5]]
    summary = [e for e in events if e["event"] == "llm.batch"][-1]
    assert (summary["items"], summary["requests"], summary["cache_hits"]) == (3, 0, 3)
    assert summary["merged_requests"] == 0


def test_a_piece_never_answers_a_direct_call(sim: Simulator, tmp_path: Path) -> None:
    """The cache entry of one input of a merged request is not the answer to calling the
    function with that input: a direct call gets (and caches) the whole response."""
    embed = cached_embed_site(sim, tmp_path / "cache")
    embed.batch(["alpha", "beta"])
    direct = embed("alpha")
    assert direct.data[0].embedding == embed.batch(["alpha"])[0].embedding
    assert sim.stats().received == 2


def test_requests_count_calls_sent_not_items(
    sim: Simulator, tmp_path: Path, events: list[dict[str, Any]]
) -> None:
    """A pass answered entirely from the cache sent no request, whatever its item count."""
    client = sim.client()

    @batched()
    @cached(tmp_path / "cache")
    def title(messages: list[dict[str, str]], model: str = "gpt-4o-mini") -> str:
        resp = client.chat.completions.create(model=model, messages=messages, max_tokens=5)
        return resp.choices[0].message.content or ""

    items = [{"messages": _messages(t)} for t in "abcd"]
    title.batch(items)
    title.batch(items)
    first, second = [e for e in events if e["event"] == "llm.batch"]
    assert (first["requests"], first["cache_hits"]) == (4, 0)
    assert (second["items"], second["requests"], second["cache_hits"]) == (4, 0, 4)
    assert "merged_requests" not in second
