"""The memo (repeated text counted once, in bounded memory) and thread safety."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.openai.textcount import TokenMemo
from prismq_llmtools.openai.tokens import TokenCounter

SYSTEM_PROMPT = "You are a meticulous editor. " * 200


def body(user: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user},
        ],
        **extra,
    }


def test_repeated_system_prompt_is_encoded_once() -> None:
    """A long system prompt seen again is a memo hit and gives the same count."""
    counter = TokenCounter()
    first = counter.count_request(body("one"))
    second = counter.count_request(body("two, a little longer"))
    stats = counter.memo_stats()
    assert (stats.misses, stats.hits, stats.entries) == (1, 1, 1)
    assert second.prompt_tokens - first.prompt_tokens == (
        counter.count_text("two, a little longer", model="gpt-4o-mini")
        - counter.count_text("one", model="gpt-4o-mini")
    )


def test_short_texts_bypass_the_memo() -> None:
    """Texts below memo_min_chars are encoded directly and never stored."""
    counter = TokenCounter(memo_min_chars=1000)
    counter.count_text("short text", encoding="o200k_base")
    assert counter.memo_stats().entries == 0


def test_tool_definitions_are_memoised_as_a_whole() -> None:
    """The same tool list in many requests is counted once."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": f"tool_{i}",
                "description": "Does a useful thing with the given arguments. " * 3,
                "parameters": {
                    "type": "object",
                    "properties": {"arg": {"type": "string", "description": "An argument."}},
                },
            },
        }
        for i in range(5)
    ]
    counter = TokenCounter(memo_min_chars=64)
    messages = [{"role": "user", "content": "hi"}]
    first = counter.count_request({"model": "gpt-4o", "messages": messages, "tools": tools})
    hits_before = counter.memo_stats().hits
    again = counter.count_request({"model": "gpt-4o", "messages": messages, "tools": tools})
    assert again == first
    assert counter.memo_stats().hits == hits_before + 1


def test_memo_is_bounded_in_entries_least_recently_used_first() -> None:
    """Beyond max_entries the least recently used entry is evicted."""
    memo = TokenMemo(max_entries=2, max_chars=1000)
    memo.put(("e", "a"), 1)
    memo.put(("e", "b"), 2)
    assert memo.get(("e", "a")) == 1  # a is now the most recent
    memo.put(("e", "c"), 3)
    assert memo.get(("e", "b")) is None
    assert memo.get(("e", "a")) == 1
    assert memo.stats().entries == 2


def test_memo_is_bounded_in_characters() -> None:
    """The memo never holds more characters than max_chars, and skips larger texts."""
    memo = TokenMemo(max_entries=100, max_chars=10)
    memo.put(("e", "x" * 6), 1)
    memo.put(("e", "y" * 6), 1)
    assert memo.stats().chars == 6
    memo.put(("e", "z" * 11), 1)
    assert memo.get(("e", "z" * 11)) is None
    memo.clear()
    assert memo.stats() == type(memo.stats())(hits=0, misses=0, entries=0, chars=0)


def test_memo_can_be_disabled() -> None:
    """memo_entries=0 counts correctly with nothing remembered."""
    counter = TokenCounter(memo_entries=0)
    assert counter.count_request(body("x")) == TokenCounter().count_request(body("x"))
    assert counter.memo_stats().entries == 0
    with pytest.raises(ConfigurationError):
        TokenCounter(memo_entries=-1)


def test_concurrent_counting_matches_sequential() -> None:
    """Many threads counting through one counter get exactly the sequential results."""
    requests = [
        body(f"question {i} " * (i % 7 + 1), max_tokens=i) if i % 3 else body("same")
        for i in range(200)
    ]
    sequential = [TokenCounter(memo_entries=0).count_request(r) for r in requests]
    shared = TokenCounter(memo_entries=8, memo_min_chars=8)
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(shared.count_request, requests))
    assert concurrent == sequential
    stats = shared.memo_stats()
    assert stats.entries <= 8
    assert stats.hits + stats.misses > 0


def test_short_texts_are_remembered_with_the_same_counts() -> None:
    """Short texts (roles, names) answered from the per-encoding dict count exactly as encoded."""
    texts = ["system", "user", "assistant", "tool_0", "héllo wörld", "", "a" * 63, "<|endoftext|>"]
    remembering = TokenCounter()
    plain = TokenCounter(memo_entries=0)
    for _ in range(2):  # the second pass is answered from the dict
        for text in texts:
            assert remembering.count_text(text, encoding="o200k_base") == plain.count_text(
                text, encoding="o200k_base"
            )
    assert remembering.memo_stats().entries == 0  # the shared memo holds long texts only
    requests = [body(f"q{i}", max_tokens=i) for i in range(5)]
    assert [remembering.count_request(r) for r in requests] == [
        plain.count_request(r) for r in requests
    ]


def test_short_text_dict_is_bounded_and_cleared() -> None:
    """The short-text dict never grows past its bound, and clear_memo forgets it."""
    from prismq_llmtools.openai import textcount

    counter = TokenCounter()
    count = counter.text_counter("o200k_base")
    for i in range(textcount._SHORT_ENTRIES + 10):
        assert count(f"w{i}") == counter.count_text(f"w{i}", encoding="o200k_base")
    assert len(count._short) <= textcount._SHORT_ENTRIES
    counter.clear_memo()
    assert counter.text_counter("o200k_base") is not count
