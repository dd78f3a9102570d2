"""Counting request bodies: chat rules, Responses, embeddings, completions, caps, errors."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prismq_llmtools.errors import (
    ConfigurationError,
    LLMToolsError,
    RequestFormatError,
    UnknownModelError,
)
from prismq_llmtools.openai import tools_format
from prismq_llmtools.openai.models import encoding_for, model_info
from prismq_llmtools.openai.tokens import TokenEstimate, count_request, count_text

TEXT = "The quick brown fox jumps over the lazy dog."


def o200k(text: str) -> int:
    return count_text(text, encoding="o200k_base")


def chat(messages: list[dict[str, Any]], **extra: Any) -> int:
    return count_request({"model": "gpt-4o", "messages": messages, **extra}).prompt_tokens


def test_single_message_follows_published_framing() -> None:
    """One user message costs 3 (message) + role + content + 3 (reply priming)."""
    assert chat([{"role": "user", "content": TEXT}]) == 3 + o200k("user") + o200k(TEXT) + 3


def test_text_parts_count_like_their_texts() -> None:
    """A content list of text parts costs the sum of its texts."""
    parts = [{"type": "text", "text": TEXT}, {"type": "text", "text": " And again."}]
    expected = 3 + o200k("user") + o200k(TEXT) + o200k(" And again.") + 3
    assert chat([{"role": "user", "content": parts}]) == expected


def test_special_token_text_is_counted_as_text() -> None:
    """User text containing <|endoftext|> is counted as plain text, not rejected."""
    assert count_text("<|endoftext|>", encoding="o200k_base") > 1


def test_assistant_tool_calls_and_tool_results() -> None:
    """A tool call costs 3 + name + arguments (on o200k models as JSON without spaces); its
    result is framed like a function result (4 on o200k models), named after the function
    called (the rules and their sources are in tests/tokens/test_tokens_tools.py)."""
    call = {
        "id": "call_abc123",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    history: list[dict[str, Any]] = [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_abc123", "content": "18 C, sunny"},
    ]
    overhead = tools_format.CALL_OVERHEAD
    expected = 3 + o200k("assistant") + overhead + o200k("get_weather") + o200k('{"city":"Paris"}')
    expected += 4 + o200k("tool") + o200k("get_weather") + 1 + o200k("18 C, sunny")
    assert chat(history) == expected + 3


def test_legacy_function_call_history_and_function_role() -> None:
    """Legacy assistant function_call and function-role messages are counted."""
    history: list[dict[str, Any]] = [
        {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "function", "name": "f", "content": "42"},
    ]
    expected = 3 + o200k("assistant") + tools_format.CALL_OVERHEAD + o200k("f") + o200k("{}")
    expected += 4 + o200k("function") + o200k("f") + 1 + o200k("42")
    assert chat(history) == expected + 3


def test_tool_choice_modes_and_forced_function() -> None:
    """tool_choice auto and required add nothing, none 1; a forced function its name + 4."""
    messages = [{"role": "user", "content": "hi"}]
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    base = chat(messages, tools=tools)
    for choice in ("auto", "required"):
        assert chat(messages, tools=tools, tool_choice=choice) == base
    assert chat(messages, tools=tools, tool_choice="none") == base + 1
    forced = {"type": "function", "function": {"name": "lookup"}}
    extra = tools_format.FORCED_CHOICE_OVERHEAD + o200k("lookup")
    assert chat(messages, tools=tools, tool_choice=forced) == base + extra
    functions = [{"name": "lookup", "parameters": {}}]
    assert chat(messages, functions=functions, function_call={"name": "lookup"}) == base + extra


def test_nested_tool_parameters_are_counted() -> None:
    """Properties of nested objects and array items add tokens by the same rule."""
    flat = {"type": "object", "properties": {"q": {"type": "string", "description": "Query"}}}
    nested = {
        "type": "object",
        "properties": {
            "q": {
                "type": "object",
                "description": "Query",
                "properties": {"text": {"type": "string"}},
            }
        },
    }
    messages = [{"role": "user", "content": "hi"}]

    def with_params(params: dict[str, Any]) -> int:
        tool = {"type": "function", "function": {"name": "s", "parameters": params}}
        return chat(messages, tools=[tool])

    assert with_params(nested) > with_params(flat)


def test_responses_string_input_and_instructions() -> None:
    """A string input is one user message; instructions one developer message."""
    body: dict[str, Any] = {"model": "gpt-4o", "input": TEXT}
    plain = count_request(body).prompt_tokens
    assert plain == chat([{"role": "user", "content": TEXT}])
    body["instructions"] = "Be brief."
    extra = 3 + o200k("developer") + o200k("Be brief.")
    assert count_request(body).prompt_tokens == plain + extra


def test_responses_items_match_chat_equivalents() -> None:
    """Message items with input_text parts count like chat messages; tools in flat shape too."""
    items = [
        {"role": "system", "content": "You help."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": TEXT}]},
    ]
    flat_tool = {"type": "function", "name": "lookup", "description": "Find.", "parameters": {}}
    chat_tool = {"type": "function", "function": {"name": "lookup", "description": "Find."}}
    responses = count_request({"model": "gpt-4o", "input": items, "tools": [flat_tool]})
    messages = [{"role": "system", "content": "You help."}, {"role": "user", "content": TEXT}]
    assert responses.prompt_tokens == chat(messages, tools=[chat_tool])


def test_responses_function_call_items() -> None:
    """function_call and function_call_output items count as their chat equivalents."""
    items = [
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "42"},
    ]
    estimate = count_request({"model": "gpt-4o", "input": items})
    history: list[dict[str, Any]] = [
        {
            "role": "assistant",
            "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    assert estimate.prompt_tokens == chat(history)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (TEXT, "text"),
        ([TEXT, "second"], "texts"),
        ([1, 2, 3, 4], 4),
        ([[1, 2], [3, 4, 5]], 5),
    ],
)
def test_embeddings_input_counts_exactly(value: Any, expected: Any) -> None:
    """Embedding inputs cost exactly their tokens: no framing, and no completion cap."""
    estimate = count_request({"model": "text-embedding-3-small", "input": value})
    if expected == "text":
        expected = count_text(TEXT, encoding="cl100k_base")
    elif expected == "texts":
        expected = count_text(TEXT, encoding="cl100k_base") + count_text(
            "second", encoding="cl100k_base"
        )
    assert estimate.prompt_tokens == expected
    assert estimate.encoding == "cl100k_base"
    assert estimate.completion_cap is None


def test_completions_prompt_and_cap() -> None:
    """Legacy prompts count exactly; the cap multiplies by max(n, best_of) and prompts."""
    body = {"model": "davinci-002", "prompt": [TEXT, "b"], "max_tokens": 10, "n": 2, "best_of": 3}
    estimate = count_request(body)
    cl100k = count_text(TEXT, encoding="cl100k_base") + count_text("b", encoding="cl100k_base")
    assert estimate.prompt_tokens == cl100k
    assert estimate.completion_cap == 10 * 3 * 2
    tokens = count_request({"model": "davinci-002", "prompt": [5, 6, 7], "max_tokens": 4})
    assert (tokens.prompt_tokens, tokens.completion_cap) == (3, 4)


@pytest.mark.parametrize(
    ("extra", "cap"),
    [
        ({}, None),
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 50, "max_tokens": 100}, 50),
        ({"max_tokens": 100, "n": 3}, 300),
        ({"max_completion_tokens": 7, "n": None}, 7),
    ],
)
def test_chat_completion_cap(extra: dict[str, Any], cap: int | None) -> None:
    """The chat cap is max_completion_tokens (else max_tokens) times n, or None."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **extra}
    estimate = count_request(body)
    assert estimate.completion_cap == cap
    assert estimate.total_estimate == estimate.prompt_tokens + (cap or 0)


def test_responses_cap_is_max_output_tokens() -> None:
    """The Responses cap is max_output_tokens."""
    body = {"model": "o3-mini", "input": "hi", "max_output_tokens": 500}
    assert count_request(body).completion_cap == 500


def test_endpoint_inference_and_override() -> None:
    """input means embeddings for embedding models, Responses otherwise; endpoint= overrides."""
    embedding = count_request({"model": "text-embedding-ada-002", "input": "hi"})
    assert embedding.prompt_tokens == count_text("hi", encoding="cl100k_base")
    responses = count_request({"model": "gpt-4.1", "input": "hi"})
    assert responses.prompt_tokens == 3 + o200k("user") + o200k("hi") + 3
    forced = count_request({"model": "gpt-4.1", "input": "hi"}, endpoint="embeddings")
    assert forced.prompt_tokens == o200k("hi")
    with pytest.raises(ConfigurationError):
        count_request({"model": "gpt-4.1", "input": "hi"}, endpoint="images")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        {"messages": []},
        {"model": "gpt-4o"},
        {"model": "gpt-4o", "messages": "hi"},
        {"model": "gpt-4o", "messages": ["hi"]},
        {"model": "gpt-4o", "messages": [{"role": "user", "content": 5}]},
        {"model": "gpt-4o", "messages": [], "max_tokens": -1},
        {"model": "gpt-4o", "messages": [], "max_tokens": True},
        {"model": "gpt-4o", "messages": [], "tools": {"type": "function"}},
        {"model": "text-embedding-3-large", "input": [["a"]]},
    ],
)
def test_malformed_bodies_are_request_format_errors(body: dict[str, Any]) -> None:
    """Bodies that cannot be counted raise RequestFormatError (a ValueError), not KeyError."""
    with pytest.raises(RequestFormatError):
        count_request(body)


def test_unknown_model_needs_a_fallback() -> None:
    """An unknown model is an error naming the tokenizer settings, unless an encoding is given."""
    body = {"model": "acme-llm-1", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(UnknownModelError, match="PRISMQ_LLMTOOLS__<SITE>__TOKENIZER") as caught:
        count_request(body)
    assert isinstance(caught.value, KeyError)
    assert "tokenizer=" in str(caught.value)
    assert count_request(body, fallback_encoding="o200k_base").encoding == "o200k_base"
    assert count_request(body, encoding="cl100k_base").encoding == "cl100k_base"
    with pytest.raises(ConfigurationError, match="not one of"):
        count_request(body, fallback_encoding="bogus_base")


def test_encoding_overrides_a_known_models() -> None:
    """encoding= counts a known model with that encoding and the model's own format rules."""
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "héllo wörld ✓"}]}
    forced = count_request(body, encoding="cl100k_base")
    as_gpt4 = count_request({**body, "model": "gpt-4"})
    assert (forced.encoding, forced.prompt_tokens) == ("cl100k_base", as_gpt4.prompt_tokens)
    assert count_request(body, encoding="o200k_base") == count_request(body)


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-4-turbo-2024-04-09", "cl100k_base"),
        ("gpt-4-32k", "cl100k_base"),
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-4.1-mini-2025-04-14", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("o1", "o200k_base"),
        ("o1-mini", "o200k_base"),
        ("o3", "o200k_base"),
        ("o3-mini-2025-01-31", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("o4-mini-2025-04-16", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("gpt-5-nano-2025-08-07", "o200k_base"),
        ("gpt-5.1", "o200k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-3-large", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("ft:gpt-4o-mini:my-org::abc123", "o200k_base"),
        ("ft:gpt-3.5-turbo-0125:my-org:custom:id", "cl100k_base"),
        ("GPT-4o", "o200k_base"),
    ],
)
def test_every_current_family_has_an_encoding(model: str, encoding: str) -> None:
    """Families, dated snapshots and fine-tuned names resolve to their tokenizer."""
    assert encoding_for(model) == encoding


def test_families_resolve_by_longest_prefix() -> None:
    """gpt-4o-mini is not gpt-4o, gpt-4o is not gpt-4, and gpt-4.1 is not gpt-4."""
    assert model_info("gpt-4o-mini-2024-07-18").family == "gpt-4o-mini"
    assert model_info("gpt-4o-2024-08-06").family == "gpt-4o"
    assert model_info("gpt-4.1-2025-04-14").family == "gpt-4.1"
    assert model_info("gpt-4-0613").family == "gpt-4"
    assert model_info("gpt-3.5-turbo-0301").chat.per_message == 4
    assert model_info("text-embedding-3-small").is_embedding


def test_count_text_needs_exactly_one_of_model_or_encoding() -> None:
    """count_text by model uses the model's encoding; both or neither is an error."""
    assert count_text(TEXT, model="gpt-4") == count_text(TEXT, encoding="cl100k_base")
    with pytest.raises(ConfigurationError):
        count_text(TEXT)
    with pytest.raises(ConfigurationError):
        count_text(TEXT, model="gpt-4", encoding="cl100k_base")


def test_estimate_is_a_frozen_value() -> None:
    """TokenEstimate is immutable and rejects negative counts."""
    estimate = TokenEstimate(model="m", encoding="e", prompt_tokens=5, completion_cap=None)
    assert estimate.total_estimate == 5
    with pytest.raises(AttributeError):
        estimate.prompt_tokens = 6  # type: ignore[misc]
    with pytest.raises(ValueError, match="negative"):
        TokenEstimate(model="m", encoding="e", prompt_tokens=-1, completion_cap=None)


def test_importing_counting_modules_loads_no_tokenizer_or_client() -> None:
    """Importing the counting modules and the CLI command imports neither openai nor tiktoken."""
    code = (
        "import sys\n"
        "import prismq_llmtools.openai, prismq_llmtools.openai.tokens\n"
        "import prismq_llmtools.openai.vocab, prismq_llmtools.cli.count\n"
        "print(sorted(m for m in ('openai', 'tiktoken') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 300) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "role",
                    "content",
                    "name",
                    "type",
                    "text",
                    "image_url",
                    "url",
                    "detail",
                    "function",
                    "arguments",
                    "tool_calls",
                    "properties",
                    "parameters",
                    "enum",
                    "summary",
                    "output",
                    "width",
                    "height",
                    "description",
                    "items",
                    "function_call",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    field=st.sampled_from(
        ["messages", "input", "prompt", "tools", "functions", "tool_choice", "instructions"]
    ),
    value=json_values,
    model=st.sampled_from(["gpt-4o", "gpt-4.1-mini", "text-embedding-3-small", "davinci-002"]),
    cap=st.sampled_from([None, 5, -1, "10", 2.5]),
)
def test_arbitrary_bodies_count_or_raise_library_errors(
    field: str, value: Any, model: str, cap: Any
) -> None:
    """Whatever JSON a body holds, counting returns an estimate or raises an LLMToolsError."""
    body: dict[str, Any] = {"model": model, field: value, "max_tokens": cap}
    if field not in {"messages", "input", "prompt"}:
        body["messages"] = []
    try:
        estimate = count_request(body)
    except LLMToolsError:
        return
    assert estimate.prompt_tokens >= 0
