"""OpenAI's published token counts, reproduced exactly.

Source: OpenAI Cookbook, "How to count tokens with tiktoken"
(examples/How_to_count_tokens_with_tiktoken.ipynb in openai/openai-cookbook), sections 6
("Counting tokens for chat completions API calls") and 7 ("... with tool calls"): the
``prompt_tokens`` the OpenAI API reported for its example requests.
"""

from __future__ import annotations

from typing import Any

import pytest

from prismq_llmtools.openai.tokens import count_request

CORPORATE_JARGON_MESSAGES: list[dict[str, str]] = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on "
        "opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]

WEATHER_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]

WEATHER_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(
    ("model", "api_prompt_tokens"),
    [
        ("gpt-3.5-turbo-0301", 127),
        ("gpt-3.5-turbo-0613", 129),
        ("gpt-3.5-turbo", 129),
        ("gpt-4-0314", 129),
        ("gpt-4-0613", 129),
        ("gpt-4", 129),
        ("gpt-4o", 124),
        ("gpt-4o-mini", 124),
    ],
)
def test_cookbook_chat_example_matches_api_usage(model: str, api_prompt_tokens: int) -> None:
    """The cookbook's six-message example counts exactly what the API reported per model."""
    body = {"model": model, "messages": CORPORATE_JARGON_MESSAGES, "max_tokens": 1}
    estimate = count_request(body)
    assert estimate.prompt_tokens == api_prompt_tokens
    assert estimate.completion_cap == 1


@pytest.mark.parametrize(
    ("model", "api_prompt_tokens"),
    [("gpt-3.5-turbo", 105), ("gpt-4", 105), ("gpt-4o", 101), ("gpt-4o-mini", 101)],
)
def test_cookbook_tools_example_matches_api_usage(model: str, api_prompt_tokens: int) -> None:
    """The cookbook's weather-tool example counts exactly what the API reported per model."""
    body = {"model": model, "messages": WEATHER_MESSAGES, "tools": WEATHER_TOOLS}
    assert count_request(body).prompt_tokens == api_prompt_tokens


def test_legacy_functions_count_like_tools() -> None:
    """Legacy ``functions`` definitions cost the same as the equivalent ``tools``."""
    functions = [tool["function"] for tool in WEATHER_TOOLS]
    body = {"model": "gpt-4o", "messages": WEATHER_MESSAGES, "functions": functions}
    assert count_request(body).prompt_tokens == 101


@pytest.mark.parametrize(
    ("model", "messages", "api_prompt_tokens"),
    [
        # pydantic/pydantic-ai, tests/models/cassettes/test_openai/
        # test_max_completion_tokens[o3-mini].yaml
        ("o3-mini", [{"role": "user", "content": "hello"}], 7),
        # ... test_system_prompt_role_o4_mini.yaml (o4-mini-2025-04-16)
        (
            "o4-mini-2025-04-16",
            [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What's the capital of France?"},
            ],
            22,
        ),
        # ... test_openai_model_settings_temperature_ignored_on_gpt_5.yaml (gpt-5-2025-08-07)
        ("gpt-5", [{"role": "user", "content": "What is the capital of France?"}], 13),
        # ... test_max_completion_tokens[gpt-4.5-preview].yaml: not a reasoning model, 3 as usual
        ("gpt-4.5-preview", [{"role": "user", "content": "hello"}], 8),
    ],
)
def test_reasoning_models_prime_the_reply_with_one_token_fewer(
    model: str, messages: list[dict[str, str]], api_prompt_tokens: int
) -> None:
    """o-series and gpt-5 requests cost 1 token less than the cookbook's framing gives: the
    API-reported prompt_tokens recorded in pydantic-ai's test cassettes (paths above)."""
    assert count_request({"model": model, "messages": messages}).prompt_tokens == api_prompt_tokens
