"""The OpenAI Batch API mode against the simulator's /v1/files and /v1/batches."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from prismq_llmtools import cost_tracked, usage_totals
from prismq_llmtools.batch import api as batch_api
from prismq_llmtools.batch import batched
from prismq_llmtools.batch.api import split_lines
from prismq_llmtools.cache import cached
from prismq_llmtools.cost import cost_of
from prismq_llmtools.errors import BatchError, BatchItemError, ConfigurationError
from prismq_llmtools.pricing import price_table
from prismq_llmtools.site.wrapper import core_of
from prismq_llmtools.testing.simulator import BatchTiming, Simulator, SimulatorConfig
from prismq_llmtools.usage import Usage

from .conftest import named


@pytest.fixture(scope="module")
def fast_batches() -> Iterator[Simulator]:
    """Batch phases at 1000x speed: a batch completes in a few milliseconds."""
    with Simulator(SimulatorConfig(seed=4, batch=BatchTiming(time_scale=1000))) as sim:
        yield sim


@pytest.fixture
def api(fast_batches: Simulator) -> Simulator:
    fast_batches.reset()
    return fast_batches


def chat_site(sim: Simulator, *decorators: Any) -> Any:
    client = sim.client()

    def title(
        messages: list[dict[str, str]], model: str = "gpt-4o-mini", max_tokens: int = 12
    ) -> str:
        resp = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)
        return resp.choices[0].message.content or ""

    site: Any = title
    for decorator in (*decorators, batched()):
        site = decorator(site)
    return site


def items(n: int) -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "content": f"Title for story {i}"}]} for i in range(n)]


def run(site: Any, sim: Simulator, work: list[Any], **options: Any) -> Any:
    return site.batch(work, mode="batch_api", client=sim.client(), poll_s=0.005, **options)


def test_answers_map_back_in_order(api: Simulator, events: list[dict[str, Any]]) -> None:
    """Twelve requests go up as one JSONL batch; the answers come back in input order."""
    title = chat_site(api)
    answers = run(title, api, items(12))
    assert [type(a).__name__ for a in answers] == ["ChatCompletion"] * 12
    assert api.stats().batch_requests == 12
    for i, answer in enumerate(answers):
        direct = title(**items(12)[i])
        assert answer.choices[0].message.content == direct  # the same request, the same answer
    (summary,) = named(events, "llm.batch")
    assert summary["mode"] == "batch_api"
    assert summary["ok"] == 12
    assert len(summary["batch_ids"]) == 1
    (submitted,) = named(events, "llm.batch.submitted")
    assert submitted["requests"] == 12


def test_batch_answers_are_priced_at_the_discount(
    api: Simulator, events: list[dict[str, Any]]
) -> None:
    """Each item's cost is the Batch API price (half the standard one) of its usage."""
    title = chat_site(api, cost_tracked())
    run(title, api, items(4))
    calls = named(events, "llm.call")
    assert len(calls) == 4
    price = price_table().price_for("gpt-4o-mini")
    for call in calls:
        usage = Usage(
            input_tokens=call["gen_ai.usage.input_tokens"],
            output_tokens=call["gen_ai.usage.output_tokens"],
        )
        standard = cost_of(usage, price).total_usd
        assert Decimal(str(call["cost_usd"])) == pytest.approx(standard / 2, rel=Decimal("1e-6"))
        assert call["usage_source"] == "response"
    totals = usage_totals().total()
    assert totals.calls == 4
    assert totals.input_tokens == api.stats().prompt_tokens


def test_split_at_the_request_limit(api: Simulator, events: list[dict[str, Any]]) -> None:
    """More requests than one batch may hold are split into several batches."""
    title = chat_site(api)
    answers = run(title, api, items(12), max_requests_per_batch=5)
    assert len(answers) == 12
    assert [s["requests"] for s in named(events, "llm.batch.submitted")] == [5, 5, 2]
    assert len(named(events, "llm.batch")[0]["batch_ids"]) == 3


def test_split_lines_by_size_and_count() -> None:
    """Chunks respect both the request count and the byte size."""
    lines = ["x" * 99] * 10  # 100 bytes each with the newline
    assert split_lines(lines, max_requests=4, max_bytes=10_000) == [(0, 4), (4, 8), (8, 10)]
    assert split_lines(lines, max_requests=50, max_bytes=250) == [
        (0, 2),
        (2, 4),
        (4, 6),
        (6, 8),
        (8, 10),
    ]
    assert split_lines([], max_requests=1, max_bytes=1) == []
    assert batch_api.MAX_REQUESTS == 50_000
    assert batch_api.MAX_BYTES == 200 * 1024 * 1024


def test_failed_items_are_kept_in_place(api: Simulator) -> None:
    """An item the Batch API answers with an error becomes a BatchItemError in its place."""
    title = chat_site(api)
    work = items(3)
    work[1] = {**work[1], "max_tokens": 10_000_000}  # beyond the model's output limit
    results = run(title, api, work, return_exceptions=True)
    assert type(results[0]).__name__ == "ChatCompletion"
    assert isinstance(results[1], BatchItemError)
    assert results[1].custom_id == "item-1"
    assert type(results[2]).__name__ == "ChatCompletion"
    with pytest.raises(BatchError) as caught:
        run(title, api, work)
    assert list(caught.value.failures) == [1]


def test_a_state_file_resumes_without_resubmitting(
    api: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a crash while polling, a rerun with the state file picks up the same batch."""
    title = chat_site(api)
    state = tmp_path / "batches.json"
    real_poll = batch_api.poll

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    before = len(api.client().batches.list(limit=100).data)
    monkeypatch.setattr(batch_api, "poll", crash)
    with pytest.raises(KeyboardInterrupt):
        run(title, api, items(6), state=state)
    assert state.exists()
    monkeypatch.setattr(batch_api, "poll", real_poll)
    answers = run(title, api, items(6), state=state)
    assert len(answers) == 6
    assert len(api.client().batches.list(limit=100).data) == before + 1  # submitted once
    with pytest.raises(ConfigurationError, match="another batch"):
        run(title, api, items(5), state=state)


def test_cached_items_are_not_submitted_and_answers_are_cached(
    api: Simulator, tmp_path: Path
) -> None:
    """The cache answers what it can; the Batch API's answers fill it for next time."""
    title = chat_site(api, cached(tmp_path / "cache"))
    title.batch(items(2), mode="calls")
    answers = run(title, api, items(5))
    assert len(answers) == 5
    assert api.stats().batch_requests == 3
    run(title, api, items(5))
    assert api.stats().batch_requests == 3  # nothing submitted the second time


def test_embeddings_through_the_batch_api(api: Simulator) -> None:
    """Embedding requests go to /v1/embeddings and come back as CreateEmbeddingResponse."""
    client = api.client()

    @batched()
    def embed(input: str, model: str = "text-embedding-3-small") -> Any:
        return client.embeddings.create(model=model, input=input)

    answers = run(embed, api, ["a", "b", "c"])
    assert [len(a.data) for a in answers] == [1, 1, 1]
    # the direct call travels as base64 float32, the batch file as JSON numbers
    assert answers[0].data[0].embedding == pytest.approx(embed("a").data[0].embedding, abs=1e-6)


def test_a_site_without_a_derivable_request_gets_a_clear_error(api: Simulator) -> None:
    """A function whose arguments are not an OpenAI request cannot use the Batch API mode."""
    client = api.client()

    @batched(model="gpt-4o-mini")
    def title(topic: str) -> str:
        resp = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": topic}]
        )
        return resp.choices[0].message.content or ""

    with pytest.raises(ConfigurationError, match="cannot be derived"):
        run(title, api, ["a", "b"])
    assert api.stats().batch_requests == 0


def test_a_request_extractor_makes_any_site_batchable(api: Simulator) -> None:
    """With ``request=``, a site taking plain text derives its request and can be batched."""
    from prismq_llmtools.batch import BatchAspect, BatchPolicy
    from prismq_llmtools.site.decorate import attach

    client = api.client()

    def request(bound: dict[str, Any]) -> dict[str, Any]:
        return {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"Title for {bound['topic']}"}],
        }

    def title(topic: str) -> str:
        resp = client.chat.completions.create(**request({"topic": topic}))
        return resp.choices[0].message.content or ""

    site: Any = attach(BatchAspect(BatchPolicy()))(title)
    core_of(site).set_defaults(request=request)
    answers = run(site, api, ["x", "y"])
    assert [a.choices[0].message.content for a in answers] == [title("x"), title("y")]


def test_missing_client_is_a_configuration_error(api: Simulator) -> None:
    """The Batch API mode needs the client to upload and poll with."""
    title = chat_site(api)
    with pytest.raises(ConfigurationError, match="client"):
        title.batch(items(1), mode="batch_api")
