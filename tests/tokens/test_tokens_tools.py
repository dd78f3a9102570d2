"""Function and tool definitions, results and calls, against API-reported prompt tokens.

Every expected count below is a ``prompt_tokens`` value the OpenAI API reported, and each
names its public source. Sources:

- [hmarr] github.com/hmarr/openai-chat-tokens, ``src/token-counts.test.ts``: request
  fixtures whose counts were taken from the API (model gpt-3.5-turbo, ``max_tokens=10``).
- [nyno] github.com/nyno-ai/openai-token-counter, ``tests/counter/resources.py``: the same
  fixtures; its ``tests/counter/test_token_counter.py`` sends each one to gpt-3.5-turbo and
  asserts that the API's ``prompt_tokens`` equals the fixture.
- [cequence] github.com/cequence-io/openai-scala-client,
  ``openai-count-tokens/src/test/scala/io/cequence/openaiscala/service/OpenAICountTokensServiceSpec.scala``:
  expected counts that the spec asserts against the API's ``prompt_tokens`` when run with
  ``validateWithChatGPT`` (gpt-3.5-turbo and gpt-4).
- [agent_kit] github.com/CtwoC/agent_kit, ``client/output_style/openai_output.py`` (the
  requests) and ``client/output_style/openai_output.md`` (the responses, gpt-4o-2024-08-06).
- [pydantic-ai] github.com/pydantic/pydantic-ai, ``tests/models/cassettes/test_openai/``,
  ``tests/cassettes/test_dbos/`` and ``tests/cassettes/test_temporal/``: recorded request
  bodies and the API's responses, usage included (file names below).
- [crewai] github.com/crewAIInc/crewAI, ``lib/crewai/tests/cassettes/agents/``: recorded
  request bodies and the API's responses, usage included (file names below).
- [mirascope] github.com/Mirascope/mirascope, ``python/tests/e2e/output/cassettes/``:
  recorded requests and the API's responses (gzip-compressed in the file), usage included.
- [harmony] github.com/openai/harmony, ``src/encoding.rs``: OpenAI's published renderer of
  tool definitions for its open-weight models (no counts; the title comment form).
- [openai-java#5] github.com/forestwanglin/openai-java/issues/5: a gpt-4 request with a
  tool call and its result, "OpenAI Count: 35".
- [forum-538914] community.openai.com/t/strange-token-cost-calculation-for-tool-calls/538914:
  gpt-3.5-turbo, one tool call (40), and as reported with two (89) and three (114).
- [forum-816259] and [forum-1375117], community.openai.com threads 816259 ("Bug: Unicode
  should not be escaped in multiple tool call results") and 1375117 ("Massive token
  overestimation in multiple tool calls due to internal unicode escaping"): results of
  several calls in one message reach the model JSON-escaped (no reproducible count).
- The cookbook's tool example (105 and 101) is in ``test_tokens_published.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prismq_llmtools.openai import tools_format
from prismq_llmtools.openai.tokens import count_request, count_text

EMPTY: dict[str, Any] = {"type": "object", "properties": {}}
HELLO = [{"role": "user", "content": "hello"}]
SYSTEM_HELLO = [{"role": "system", "content": "Hello"}, {"role": "user", "content": "Hi there"}]
SYSTEM_COLON = [{"role": "system", "content": "Hello:"}, {"role": "user", "content": "Hi there"}]
TWO_SYSTEMS = [
    {"role": "system", "content": "Hello:"},
    {"role": "system", "content": "Hello"},
    {"role": "user", "content": "Hi there"},
]
TWO_FUNCTIONS = [
    {"name": "do_stuff", "parameters": EMPTY},
    {"name": "do_other_stuff", "parameters": EMPTY},
]
BING_BONG = {"name": "bing_bong", "description": "Do a bing bong"}
RES_VARIANTS = [
    {
        "type": "object",
        "properties": {"kind": {"type": "string", "const": "post"}, "text": {"type": "string"}},
        "required": ["kind", "text"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {
            "kind": {"type": "string", "const": "user"},
            "name": {"type": "string", "enum": ["jane", "suzie", "adam"]},
        },
        "required": ["kind", "name"],
        "additionalProperties": False,
    },
]
RECIPE = {
    "name": "get_recipe",
    "parameters": {
        "type": "object",
        "required": ["ingredients", "instructions", "time_to_cook"],
        "properties": {
            "ingredients": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "unit", "amount"],
                    "properties": {
                        "name": {"type": "string"},
                        "unit": {
                            "enum": ["grams", "ml", "cups", "pieces", "teaspoons"],
                            "type": "string",
                        },
                        "amount": {"type": "number"},
                    },
                },
            },
            "instructions": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Steps to prepare the recipe (no numbering)",
            },
            "time_to_cook": {
                "type": "number",
                "description": "Total time to prepare the recipe in minutes",
            },
        },
    },
}


def _kinds(*variants: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "anyOf": [
            {
                "type": "object",
                "properties": {"kind": {"type": "string", "const": kind}, key: {"type": kind_type}},
            }
            for kind, key, kind_type in variants
        ]
    }


def _one_param(prop: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "do_stuff", "parameters": {"type": "object", "properties": {"foo": prop}}}]


# (id, messages, functions, function_call, API prompt_tokens); all from [hmarr] and [nyno].
GPT35_FIXTURES: list[tuple[str, list[dict[str, Any]], Any, Any, int]] = [
    ("user", HELLO, None, None, 8),
    ("user-2-words", [{"role": "user", "content": "hello world"}], None, None, 9),
    ("system", [{"role": "system", "content": "hello"}], None, None, 8),
    ("system-colon", [{"role": "system", "content": "hello:"}], None, None, 9),
    (
        "three-roles",
        [
            {"role": "system", "content": "# Important: you're the best robot"},
            {"role": "user", "content": "hello robot"},
            {"role": "assistant", "content": "hello world"},
        ],
        None,
        None,
        27,
    ),
    ("no-params", HELLO, [{"name": "foo", "parameters": EMPTY}], None, 31),
    ("call-none", HELLO, [{"name": "foo", "parameters": EMPTY}], "none", 32),
    ("call-auto", HELLO, [{"name": "foo", "parameters": EMPTY}], "auto", 31),
    ("call-forced", HELLO, [{"name": "foo", "parameters": EMPTY}], {"name": "foo"}, 36),
    (
        "description",
        HELLO,
        [{"name": "foo", "description": "Do a foo", "parameters": EMPTY}],
        None,
        36,
    ),
    (
        "one-param",
        HELLO,
        [
            {
                **BING_BONG,
                "parameters": {"type": "object", "properties": {"foo": {"type": "string"}}},
            }
        ],
        None,
        49,
    ),
    (
        "param-description",
        HELLO,
        [
            {
                **BING_BONG,
                "parameters": {
                    "type": "object",
                    "properties": {
                        "foo": {"type": "string"},
                        "bar": {"type": "number", "description": "A number"},
                    },
                },
            }
        ],
        None,
        57,
    ),
    (
        "nested-object-enum",
        HELLO,
        [
            {
                **BING_BONG,
                "parameters": {
                    "type": "object",
                    "properties": {
                        "foo": {
                            "type": "object",
                            "properties": {
                                "bar": {"type": "string", "enum": ["a", "b", "c"]},
                                "baz": {"type": "boolean"},
                            },
                        }
                    },
                },
            }
        ],
        None,
        68,
    ),
    (
        "function-result-empty",
        [
            {"role": "user", "content": "hello world"},
            {"role": "function", "name": "do_stuff", "content": "{}"},
        ],
        None,
        None,
        15,
    ),
    (
        "function-result",
        [
            {"role": "user", "content": "hello world"},
            {"role": "function", "name": "do_stuff", "content": '{"foo": "bar", "baz": 1.5}'},
        ],
        None,
        None,
        28,
    ),
    (
        "function-result-alone",
        [
            {
                "role": "function",
                "name": "dance_the_tango",
                "content": '{"a": { "b" : { "c": false}}}',
            }
        ],
        None,
        None,
        24,
    ),
    (
        "function-call",
        [
            {
                "role": "assistant",
                "content": "",
                "function_call": {"name": "do_stuff", "arguments": '{"foo": "bar", "baz": 1.5}'},
            }
        ],
        None,
        None,
        26,
    ),
    (
        "function-call-whitespace",
        [
            {
                "role": "assistant",
                "content": "",
                "function_call": {"name": "do_stuff", "arguments": '{"foo":"bar", "baz":\n\n 1.5}'},
            }
        ],
        None,
        None,
        25,
    ),
    (
        "any-of-results-forced",
        [
            {"role": "system", "content": "You are an AI assistant trained to foo or bar"},
            {"role": "user", "content": "My name is suzie"},
            {
                "role": "function",
                "name": "foo",
                "content": '{"res":{"kind":"user","name":"suzie"}}',
            },
            {"role": "user", "content": 'I want to post a message with the text "hello world"'},
            {
                "role": "function",
                "name": "foo",
                "content": '{"res":{"kind":"post","text":"hello world"}}',
            },
        ],
        [
            {
                "name": "foo",
                "description": "Return the foo or the bar",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "res": {"anyOf": RES_VARIANTS, "description": "The foo or the bar"}
                    },
                    "required": ["res"],
                    "additionalProperties": False,
                },
            }
        ],
        {"name": "foo"},
        158,
    ),
    ("any-of-one", SYSTEM_HELLO, _one_param(_kinds(("a", "baz", "boolean"))), None, 52),
    (
        "any-of-three",
        SYSTEM_HELLO,
        _one_param(_kinds(("a", "baz", "boolean"), ("b", "qux", "number"), ("c", "idk", "string"))),
        None,
        80,
    ),
    (
        "any-of-scalars",
        SYSTEM_HELLO,
        _one_param({"anyOf": [{"type": "string", "const": "a"}, {"type": "number"}]}),
        None,
        44,
    ),
    ("system-and-functions", SYSTEM_HELLO, [{"name": "do_stuff", "parameters": EMPTY}], None, 35),
    ("system-colon-functions", SYSTEM_COLON, [{"name": "do_stuff", "parameters": EMPTY}], None, 35),
    ("two-systems", TWO_SYSTEMS, [{"name": "do_stuff", "parameters": EMPTY}], None, 40),
    ("two-functions", TWO_SYSTEMS, TWO_FUNCTIONS, None, 49),
    ("two-functions-forced", TWO_SYSTEMS, TWO_FUNCTIONS, {"name": "do_stuff"}, 55),
    ("arrays-required-enum", HELLO, [RECIPE], None, 106),
    (
        "nested-description",
        HELLO,
        [
            {
                "name": "function",
                "description": "description",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "quality": {
                            "type": "object",
                            "properties": {
                                "pros": {
                                    "type": "array",
                                    "items": {"type": "string"},
                                    "description": "Write 3 points why this text is well written",
                                }
                            },
                        }
                    },
                },
            }
        ],
        None,
        46,
    ),
    (
        "nested-descriptions-enums",
        HELLO,
        [
            {
                "name": "function",
                "description": "desctiption1",
                "parameters": {
                    "type": "object",
                    "description": "desctiption2",
                    "properties": {
                        "mainField": {"type": "string", "description": "description3"},
                        "field number one": {
                            "type": "object",
                            "description": "description4",
                            "properties": {
                                "yesNoField": {
                                    "type": "string",
                                    "description": "description5",
                                    "enum": ["Yes", "No"],
                                },
                                "howIsInteresting": {
                                    "type": "string",
                                    "description": "description6",
                                },
                                "scoreInteresting": {
                                    "type": "number",
                                    "description": "description7",
                                },
                                "isInteresting": {
                                    "type": "string",
                                    "description": "description8",
                                    "enum": ["Yes", "No"],
                                },
                            },
                        },
                    },
                },
            }
        ],
        None,
        96,
    ),
]


@pytest.mark.parametrize(
    ("messages", "functions", "function_call", "api_prompt_tokens"),
    [pytest.param(*case[1:], id=case[0]) for case in GPT35_FIXTURES],
)
def test_gpt35_functions_match_api_reported_counts(
    messages: list[dict[str, Any]], functions: Any, function_call: Any, api_prompt_tokens: int
) -> None:
    """Legacy functions, function results and calls on gpt-3.5-turbo count what the API
    reported ([hmarr], [nyno])."""
    body: dict[str, Any] = {"model": "gpt-3.5-turbo", "messages": messages, "max_tokens": 10}
    if functions is not None:
        body["functions"] = functions
    if function_call is not None:
        body["function_call"] = function_call
    assert count_request(body).prompt_tokens == api_prompt_tokens


@pytest.mark.parametrize(
    "case", [case for case in GPT35_FIXTURES if case[2] is not None], ids=lambda case: case[0]
)
def test_gpt35_tools_count_like_functions(case: tuple[str, Any, Any, Any, int]) -> None:
    """The same definitions sent as ``tools`` (and a forced ``tool_choice``) count the same:
    the cookbook's tool example reproduces with the same rule (test_tokens_published.py)."""
    _, messages, functions, function_call, api_prompt_tokens = case
    body: dict[str, Any] = {
        "model": "gpt-3.5-turbo",
        "messages": messages,
        "tools": [{"type": "function", "function": f} for f in functions],
    }
    if isinstance(function_call, dict):
        body["tool_choice"] = {"type": "function", "function": function_call}
    elif function_call is not None:
        body["tool_choice"] = function_call
    assert count_request(body).prompt_tokens == api_prompt_tokens


QUALITY_PROS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "quality": {
            "type": "object",
            "properties": {
                "pros": {
                    "type": "array",
                    "description": "Write 3 points why this text is well written",
                    "items": {"type": "string"},
                }
            },
        }
    },
}
CATEGORIES = ["Basketball", "Football", "Golf", "F1", "Baseball", "Soccer"]
# (id, model, messages, functions, function_call, API prompt_tokens); all from [cequence].
CEQUENCE_FIXTURES: list[tuple[str, str, list[dict[str, Any]], Any, Any, int]] = [
    (
        "enum-no-description",
        "gpt-3.5-turbo",
        [{"role": "user", "content": "Hello"}],
        [
            {
                "name": "getWeather",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "location": {
                            "type": "string",
                            "description": "The city to get the weather for",
                        },
                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    },
                },
            }
        ],
        None,
        59,
    ),
    (
        "required-field",
        "gpt-3.5-turbo",
        [{"role": "user", "content": "text1\ntext2\ntext3\n"}],
        [
            {
                "name": "function",
                "description": "description",
                "parameters": {
                    "type": "object",
                    "properties": {"title": {"type": "string", "description": "Write something"}},
                    "required": ["title"],
                },
            }
        ],
        None,
        53,
    ),
    (
        "nested-descriptions-enums",
        "gpt-3.5-turbo",
        HELLO,
        [
            {
                "name": "function",
                "description": "description1",
                "parameters": {
                    "type": "object",
                    "description": "description2",
                    "properties": {
                        "mainField": {"type": "string", "description": "description3"},
                        "field number one": {
                            "type": "object",
                            "description": "description4",
                            "properties": {
                                "yesNoField": {
                                    "type": "string",
                                    "description": "description5",
                                    "enum": ["Yes", "No"],
                                },
                                "howIsInteresting": {
                                    "type": "string",
                                    "description": "description6",
                                },
                                "scoreInteresting": {
                                    "type": "number",
                                    "description": "description7",
                                },
                                "isInteresting": {
                                    "type": "string",
                                    "description": "description8",
                                    "enum": ["Yes", "No"],
                                },
                            },
                        },
                    },
                },
            }
        ],
        None,
        93,
    ),
    (
        "gpt4-nested-description",
        "gpt-4",
        HELLO,
        [{"name": "function", "description": "description", "parameters": QUALITY_PROS}],
        None,
        46,
    ),
    (
        "forced-nested-description",
        "gpt-3.5-turbo",
        HELLO,
        [{"name": "function", "description": "description", "parameters": QUALITY_PROS}],
        {"name": "function"},
        51,
    ),
    (
        "forced-array-of-enum",
        "gpt-3.5-turbo",
        HELLO,
        [
            {
                "name": "function",
                "description": "description",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "quality": {
                            "type": "object",
                            "properties": {
                                "pros": {
                                    "type": "array",
                                    "description": "Select few connected categories",
                                    "items": {"type": "string", "enum": CATEGORIES},
                                }
                            },
                        }
                    },
                },
            }
        ],
        {"name": "function"},
        78,
    ),
]


@pytest.mark.parametrize(
    ("model", "messages", "functions", "function_call", "api_prompt_tokens"),
    [pytest.param(*case[1:], id=case[0]) for case in CEQUENCE_FIXTURES],
)
def test_more_functions_match_api_reported_counts(
    model: str,
    messages: list[dict[str, Any]],
    functions: Any,
    function_call: Any,
    api_prompt_tokens: int,
) -> None:
    """Enums without descriptions, required fields, arrays of enums and forced calls, on
    gpt-3.5-turbo and gpt-4 ([cequence])."""
    body: dict[str, Any] = {"model": model, "messages": messages, "functions": functions}
    if function_call is not None:
        body["function_call"] = function_call
    assert count_request(body).prompt_tokens == api_prompt_tokens


GPT4O_SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
GPT4O_WEATHER_FUNCTION: dict[str, Any] = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "parameters": {
        "type": "object",
        "properties": {
            "location": {
                "type": "string",
                "description": "The city and state, e.g. San Francisco, CA",
            },
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"],
    },
}
GPT4O_WEATHER_TOOL: dict[str, Any] = {"type": "function", "function": GPT4O_WEATHER_FUNCTION}


def test_gpt4o_tool_definitions_match_api_reported_count() -> None:
    """A tool with a system message on gpt-4o-2024-08-06 (o200k): 91, as reported
    ([agent_kit] openai_output.md, "Tool Call Response")."""
    user = {
        "role": "user",
        "content": "What's the weather in Shanghai? Please use a weather tool to check.",
    }
    body = {
        "model": "gpt-4o-2024-08-06",
        "messages": [GPT4O_SYSTEM, user],
        "temperature": 0.7,
        "tools": [GPT4O_WEATHER_TOOL],
    }
    assert count_request(body).prompt_tokens == 91


def test_gpt4o_plain_chat_from_the_same_source() -> None:
    """The same source's tool-less request: 23 ([agent_kit], "Non-Streaming Response")."""
    user = {"role": "user", "content": "Tell me a short joke."}
    body = {"model": "gpt-4o-2024-08-06", "messages": [GPT4O_SYSTEM, user]}
    assert count_request(body).prompt_tokens == 23


def test_gpt4_tool_call_and_named_result_match_api_reported_count() -> None:
    """An assistant tool call and its tool result on gpt-4: 35 ([openai-java#5])."""
    call = {
        "id": "call_Id8ycVMsW8gdsf7kSXfgAcf1",
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "arguments": '{\n  "location": "Boston, MA"\n}',
        },
    }
    messages = [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {
            "role": "tool",
            "tool_call_id": call["id"],
            "name": "get_current_weather",
            "content": "29 degree celcius",
        },
    ]
    assert count_request({"model": "gpt-4", "messages": messages}).prompt_tokens == 35


def test_tool_result_without_name_is_named_after_its_call() -> None:
    """A tool result without ``name`` costs what it costs with the called function's name."""
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    result = {"role": "tool", "tool_call_id": "c1", "content": "42"}
    unnamed = [{"role": "assistant", "tool_calls": [call]}, result]
    named = [{"role": "assistant", "tool_calls": [call]}, {**result, "name": "lookup"}]
    for model in ("gpt-4", "gpt-4o"):
        count_unnamed = count_request({"model": model, "messages": unnamed}).prompt_tokens
        assert count_unnamed == count_request({"model": model, "messages": named}).prompt_tokens


def _calculator_history(calls: int) -> list[dict[str, Any]]:
    user = {"role": "user", "content": [{"type": "text", "text": "How much is 2 plus 2?"}]}
    tool_calls = [
        {
            "id": f"a{i}",
            "type": "function",
            "function": {"name": "calculator", "arguments": '{"a":2, "b":2}'},
        }
        for i in range(calls)
    ]
    results = [{"role": "tool", "tool_call_id": f"a{i}", "content": "4"} for i in range(calls)]
    return [user, {"role": "assistant", "tool_calls": tool_calls}, *results]


def test_single_tool_call_with_parts_content_is_within_one_token() -> None:
    """[forum-538914] reports 40 for one call after a one-part user message; the rules
    give 39 (the token is unexplained: see docs/counting.md)."""
    body = {"model": "gpt-3.5-turbo", "messages": _calculator_history(1)}
    assert count_request(body).prompt_tokens in (39, 40)


@pytest.mark.parametrize(("calls", "api_prompt_tokens"), [(2, 89), (3, 114)])
def test_parallel_tool_calls_are_not_undercounted(calls: int, api_prompt_tokens: int) -> None:
    """Several calls in one message (the multi_tool_use wrapper, an estimate) never count
    less than [forum-538914] reports, and stay within 6 tokens of it."""
    body = {"model": "gpt-3.5-turbo", "messages": _calculator_history(calls)}
    estimate = count_request(body).prompt_tokens
    assert api_prompt_tokens <= estimate <= api_prompt_tokens + 6


def test_rendering_is_the_published_namespace_shape() -> None:
    """The weather function renders as the namespace quoted in the forum thread
    community.openai.com/t/how-to-calculate-the-tokens-when-using-function-call/266573."""
    weather = GPT4O_WEATHER_FUNCTION
    text = tools_format.render_namespace([{**weather, "name": "x", "description": ""}])
    lines = text.split("\n")
    assert lines[0] == "namespace functions {"
    assert "type x = (_: {" in lines
    assert 'unit?: "celsius" | "fahrenheit",' in lines
    assert "location: string," in lines
    assert lines[-1] == "} // namespace functions"


def test_nested_objects_and_arrays_render_as_typescript() -> None:
    """Nested objects are indented blocks, arrays ``T[]``, optional keys ``?``, integers
    ``number``, nested descriptions left out (the [hmarr] counts require it)."""
    text = tools_format.render_namespace([RECIPE])
    assert "ingredients: {\n  name: string,\n" in text
    assert '  unit: "grams" | "ml" | "cups" | "pieces" | "teaspoons",' in text
    assert "}[]," in text
    assert "instructions: string[]," in text
    assert "// Steps to prepare the recipe (no numbering)" in text
    integer = {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "t": {"type": ["string", "null"]}},
    }
    rendered = tools_format.render_namespace([{"name": "f", "parameters": integer}])
    assert "n?: number," in rendered
    assert "t?: string | null," in rendered


@pytest.mark.parametrize(
    ("model", "encoding", "saving"), [("gpt-4", "cl100k_base", 0), ("gpt-4o", "o200k_base", 1)]
)
def test_definitions_cost_their_rendering_plus_framing(
    model: str, encoding: str, saving: int
) -> None:
    """Without a system message, definitions add their rendered text's tokens and 9; on
    o200k, less 1 per parameter block whose first line is a parameter (RECIPE's is)."""
    functions = [RECIPE]
    assert tools_format.bare_blocks(functions) == 1
    with_functions = count_request(
        {"model": model, "messages": HELLO, "functions": functions}
    ).prompt_tokens
    without = count_request({"model": model, "messages": HELLO}).prompt_tokens
    rendered = count_text(tools_format.render_namespace(functions), encoding=encoding)
    assert with_functions - without == rendered + tools_format.DEFINITIONS_OVERHEAD - saving


def test_responses_tools_and_instructions_count_like_chat() -> None:
    """Responses: instructions are the system message the definitions join; flat tools
    count like chat tools; outputs are tool results named after their call."""
    flat = {"type": "function", **GPT4O_WEATHER_FUNCTION}
    items = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "cold"},
    ]
    responses = count_request(
        {"model": "gpt-4o", "instructions": "Be brief.", "input": items, "tools": [flat]}
    ).prompt_tokens
    call = {"id": "c1", "function": {"name": "get_weather", "arguments": "{}"}}
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "cold"},
    ]
    chat = count_request(
        {"model": "gpt-4o", "messages": messages, "tools": [GPT4O_WEATHER_TOOL]}
    ).prompt_tokens
    assert responses == chat


def test_system_message_as_parts_counts_like_a_string_beside_definitions() -> None:
    """The trailing newline the first system message gains goes to its last text part."""
    tools = [GPT4O_WEATHER_TOOL]
    as_text = [{"role": "system", "content": "Be brief."}, *HELLO]
    as_parts = [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, *HELLO]
    for model in ("gpt-4", "gpt-4o"):
        text_count = count_request({"model": model, "messages": as_text, "tools": tools})
        parts_count = count_request({"model": model, "messages": as_parts, "tools": tools})
        assert text_count.prompt_tokens == parts_count.prompt_tokens


_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
_SCHEMAS = st.recursive(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["string", "number", "integer", "boolean", "null", "object"])
            | st.lists(st.sampled_from(["string", "null"]), max_size=2),
            "description": st.text(max_size=12),
            "enum": st.lists(_JSON_SCALARS, max_size=3),
        },
    ),
    lambda inner: (
        st.fixed_dictionaries(
            {
                "type": st.just("object"),
                "properties": st.dictionaries(st.text(max_size=6), inner, max_size=3),
            },
            optional={"required": st.lists(st.text(max_size=6), max_size=2)},
        )
        | st.fixed_dictionaries({"type": st.just("array")}, optional={"items": inner})
        | st.fixed_dictionaries({"anyOf": st.lists(inner, max_size=3)})
    ),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(parameters=_SCHEMAS, description=st.text(max_size=20))
def test_any_schema_renders_and_tools_equal_functions(
    parameters: dict[str, Any], description: str
) -> None:
    """Any JSON schema renders inside the namespace, and tools count like functions."""
    function = {"name": "f", "description": description, "parameters": parameters}
    text = tools_format.render_namespace([function])
    assert text.startswith("namespace functions {\n\n")
    assert text.endswith("\n} // namespace functions")
    as_tools = count_request(
        {
            "model": "gpt-4o",
            "messages": HELLO,
            "tools": [{"type": "function", "function": function}],
        }
    )
    as_functions = count_request({"model": "gpt-4o", "messages": HELLO, "functions": [function]})
    assert as_tools.prompt_tokens == as_functions.prompt_tokens
    without = count_request({"model": "gpt-4o", "messages": HELLO}).prompt_tokens
    assert as_tools.prompt_tokens > without


def _open_url_history(calls: int, result: str) -> list[dict[str, Any]]:
    tool_calls = [
        {
            "id": f"call_demo{i}",
            "type": "function",
            "function": {"name": "open_url", "arguments": f'{{"url": "https://example{i}.com/"}}'},
        }
        for i in range(calls)
    ]
    results = [
        {"role": "tool", "name": "open_url", "tool_call_id": f"call_demo{i}", "content": result}
        for i in range(calls)
    ]
    return [
        {"role": "user", "content": "Test"},
        {"role": "assistant", "tool_calls": tool_calls},
        *results,
    ]


def test_parallel_results_are_counted_json_escaped() -> None:
    """Results of several calls made in one message reach the model JSON-escaped, so
    "你好" costs its ``\\u4f60\\u597d`` tokens ([forum-816259], [forum-1375117]): on o200k
    as one message listing them as JSON, on cl100k each as a result of its own; the result
    of a single call is counted as sent."""
    chinese = "result: 这是一句中文示例你好"
    plain = "result: plain"
    escaped = json.dumps(chinese)[1:-1]
    assert "\\u4f60\\u597d" in escaped
    assert count_text(escaped, encoding="o200k_base") > count_text(chinese, encoding="o200k_base")

    def prompt(model: str, calls: int, result: str) -> int:
        body = {"model": model, "messages": _open_url_history(calls, result)}
        return count_request(body).prompt_tokens

    def o200k(text: str) -> int:
        return count_text(text, encoding="o200k_base")

    def cl100k(text: str) -> int:
        return count_text(text, encoding="cl100k_base")

    joined = o200k(json.dumps([chinese, chinese])) - o200k(json.dumps([plain, plain]))
    assert prompt("gpt-4o", 2, chinese) - prompt("gpt-4o", 2, plain) == joined
    each = cl100k(escaped) - cl100k(json.dumps(plain)[1:-1])
    assert prompt("gpt-4", 2, chinese) - prompt("gpt-4", 2, plain) == 2 * each
    for model, text_count in (("gpt-4o", o200k), ("gpt-4", cl100k)):
        single = prompt(model, 1, chinese) - prompt(model, 1, plain)
        assert single == text_count(chinese) - text_count(plain)


# [pydantic-ai] cassettes: the request bodies as recorded, and the API's prompt_tokens.
CAPITAL_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "description": "Get the capital of a country.",
        "name": "get_capital",
        "parameters": {
            "additionalProperties": False,
            "properties": {"country": {"description": "The country name.", "type": "string"}},
            "required": ["country"],
            "type": "object",
        },
        "strict": True,
    },
}
COUNTRY_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "description": "",
        "name": "get_user_country",
        "parameters": {"additionalProperties": False, "properties": {}, "type": "object"},
    },
}
FINAL_RESULT_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "description": "The final response which ends this conversation",
        "name": "final_result",
        "parameters": {
            "additionalProperties": False,
            "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
            "required": ["city", "country"],
            "type": "object",
        },
        "strict": True,
    },
}
TEMPERATURE_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "description": "",
        "name": "get_temperature",
        "parameters": {
            "additionalProperties": False,
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "type": "object",
        },
        "strict": True,
    },
}


DELETE_FILE_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "description": "",
        "name": "delete_file",
        "parameters": {
            "additionalProperties": False,
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
            "type": "object",
        },
        "strict": True,
    },
}
HITL_TURNS: list[dict[str, Any]] = [
    {"content": "Just call tools without asking for confirmation.", "role": "system"},
    {"content": "Delete the file `.env`", "role": "user"},
]


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    function = {"arguments": arguments, "name": name}
    return {
        "content": None,
        "role": "assistant",
        "tool_calls": [{"function": function, "id": call_id, "type": "function"}],
    }


def _result(call_id: str, content: str) -> dict[str, Any]:
    return {"content": content, "role": "tool", "tool_call_id": call_id}


CAPITAL_TURNS: list[dict[str, Any]] = [
    {"content": "What is the capital of France?", "role": "user"},
    _call("pyd_ai_5c28ff78075941bd9a9fd2f43fe84ae1", "get_capital", '{"country":"France"}'),
    _result("pyd_ai_5c28ff78075941bd9a9fd2f43fe84ae1", "Paris"),
    {"content": "The capital of France is Paris.", "role": "assistant"},
    {"content": "What is the capital of England?", "role": "user"},
]
COUNTRY_QUESTION = {"content": "What is the largest city in the user country?", "role": "user"}
COUNTRY_TURNS = [
    COUNTRY_QUESTION,
    _call("call_v9ptDd3BVaua00Xt7oW46Sg2", "get_user_country", "{}"),
    _result("call_v9ptDd3BVaua00Xt7oW46Sg2", "Mexico"),
]
TOKYO_TURNS: list[dict[str, Any]] = [
    {"content": "You are a helpful assistant.", "role": "system"},
    {"content": "What is the temperature in Tokyo?", "role": "user"},
]


@pytest.mark.parametrize(
    ("body", "api_prompt_tokens"),
    [
        pytest.param(  # test_multiple_agent_tool_calls.yaml, gpt-4o-mini-2024-07-18
            {
                "model": "gpt-4o-mini",
                "messages": CAPITAL_TURNS,
                "tool_choice": "auto",
                "tools": [CAPITAL_TOOL],
            },
            104,
            id="gpt-4o-mini-one-result",
        ),
        pytest.param(  # test_multiple_agent_tool_calls.yaml, gpt-4o-mini-2024-07-18
            {
                "model": "gpt-4o-mini",
                "messages": [
                    *CAPITAL_TURNS,
                    _call("call_NihFwNUckQ2eDoE0a9OQaO5l", "get_capital", '{"country":"England"}'),
                    _result("call_NihFwNUckQ2eDoE0a9OQaO5l", "London"),
                ],
                "tool_choice": "auto",
                "tools": [CAPITAL_TOOL],
            },
            129,
            id="gpt-4o-mini-two-results",
        ),
        pytest.param(  # test_openai_text_output_function.yaml, gpt-4o-2024-08-06
            {
                "model": "gpt-4o",
                "messages": [COUNTRY_QUESTION],
                "tool_choice": "auto",
                "tools": [COUNTRY_TOOL],
            },
            42,
            id="gpt-4o-no-parameters",
        ),
        pytest.param(  # test_openai_text_output_function.yaml, gpt-4o-2024-08-06
            {
                "model": "gpt-4o",
                "messages": COUNTRY_TURNS,
                "tool_choice": "auto",
                "tools": [COUNTRY_TOOL],
            },
            63,
            id="gpt-4o-one-result",
        ),
    ],
)
def test_o200k_tool_results_match_api_reported_counts(
    body: dict[str, Any], api_prompt_tokens: int
) -> None:
    """On o200k models a tool result is framed with 4 tokens, 3 more than on cl100k
    ([pydantic-ai]; the definitions alone match with the cl100k rule)."""
    assert count_request(body).prompt_tokens == api_prompt_tokens


@pytest.mark.parametrize(
    ("body", "api_prompt_tokens"),
    [
        pytest.param(  # test_openai_tool_output.yaml, gpt-4o-2024-08-06
            {
                "model": "gpt-4o",
                "messages": [COUNTRY_QUESTION],
                "tool_choice": "required",
                "tools": [COUNTRY_TOOL, FINAL_RESULT_TOOL],
            },
            68,
            id="gpt-4o-required",
        ),
        pytest.param(  # test_openai_tool_output.yaml, gpt-4o-2024-08-06
            {
                "model": "gpt-4o",
                "messages": COUNTRY_TURNS,
                "tool_choice": "required",
                "tools": [COUNTRY_TOOL, FINAL_RESULT_TOOL],
            },
            89,
            id="gpt-4o-required-one-result",
        ),
        pytest.param(  # test_openai_instructions_with_tool_calls.yaml, gpt-4.1-mini-2025-04-14
            {
                "model": "gpt-4.1-mini",
                "messages": TOKYO_TURNS,
                "tool_choice": "auto",
                "tools": [TEMPERATURE_TOOL],
            },
            50,
            id="gpt-4.1-mini",
        ),
        pytest.param(  # test_openai_instructions_with_tool_calls.yaml, gpt-4.1-mini-2025-04-14
            {
                "model": "gpt-4.1-mini",
                "messages": [
                    *TOKYO_TURNS,
                    _call("call_rtFKwAIteZdMYlGvskQUU6Ao", "get_temperature", '{"city":"Tokyo"}'),
                    _result("call_rtFKwAIteZdMYlGvskQUU6Ao", "20.0"),
                ],
                "tool_choice": "auto",
                "tools": [TEMPERATURE_TOOL],
            },
            75,
            id="gpt-4.1-mini-one-result",
        ),
        pytest.param(  # test_responses_count_tokens_with_tools.yaml, /v1/responses/input_tokens
            {
                "model": "gpt-4.1-mini",
                "input": [{"content": "What is the weather in Paris?", "role": "user"}],
                "tool_choice": "required",
                "tools": [
                    {
                        "description": "Get the weather for a location",
                        "name": "get_weather",
                        "parameters": {
                            "additionalProperties": False,
                            "properties": {"location": {"type": "string"}},
                            "type": "object",
                        },
                        "strict": False,
                        "type": "function",
                    }
                ],
            },
            51,
            id="gpt-4.1-mini-responses",
        ),
        pytest.param(  # tests/cassettes/test_temporal/test_temporal_agent_with_hitl_tool.yaml
            {  # gpt-4o-2024-08-06
                "model": "gpt-4o",
                "messages": HITL_TURNS,
                "tool_choice": "auto",
                "tools": [DELETE_FILE_TOOL],
            },
            51,
            id="gpt-4o-system",
        ),
        pytest.param(  # tests/cassettes/test_temporal/test_temporal_agent_with_hitl_tool.yaml
            {  # gpt-4o-2024-08-06
                "model": "gpt-4o",
                "messages": [
                    *HITL_TURNS,
                    _call("call_Cph2RPOCb9iTlHFKJpDoGGJ3", "delete_file", '{"path":".env"}'),
                    _result("call_Cph2RPOCb9iTlHFKJpDoGGJ3", "true"),
                ],
                "tool_choice": "auto",
                "tools": [DELETE_FILE_TOOL],
            },
            75,
            id="gpt-4o-system-one-result",
        ),
    ],
)
def test_o200k_block_opening_with_a_parameter_costs_one_token_less(
    body: dict[str, Any], api_prompt_tokens: int
) -> None:
    """On o200k a parameter block whose first line is a parameter (its first parameter has
    no description or title) costs one token less than its text ([pydantic-ai]; with
    ``tool_choice: "required"`` adding nothing)."""
    assert tools_format.bare_blocks(tools_format.function_definitions(body)) == 1
    assert count_request(body).prompt_tokens == api_prompt_tokens


def _agent_tool(
    name: str,
    description: str = "",
    properties: dict[str, Any] | None = None,
    *,
    strict: bool = False,
) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "additionalProperties": False,
        "properties": properties or {},
        "type": "object",
    }
    function: dict[str, Any] = {"description": description, "name": name, "parameters": parameters}
    if strict:
        parameters["required"] = list(properties or {})
        function["strict"] = True
    return {"type": "function", "function": function}


STRING = {"type": "string"}
ANSWER = {
    "additionalProperties": False,
    "properties": {"answer": STRING, "label": STRING},
    "required": ["label", "answer"],
    "type": "object",
}
# [pydantic-ai] tests/cassettes/test_dbos/test_complex_agent_run_in_workflow.yaml: 24 tools,
# multi-line docstring descriptions, a default, a $ref; gpt-4o-2024-08-06.
AGENT_TOOLS: list[dict[str, Any]] = [
    _agent_tool("get_weather", properties={"city": STRING}, strict=True),
    _agent_tool("get_country"),
    _agent_tool(
        "celsius_to_fahrenheit",
        "Convert Celsius to Fahrenheit.\n\n    Args:\n        celsius: Temperature in Celsius"
        "\n\n    Returns:\n        Temperature in Fahrenheit\n    ",
        {"celsius": {"type": "number"}},
        strict=True,
    ),
    _agent_tool(
        "get_weather_forecast",
        "Get the weather forecast for a location.\n\n    Args:\n        location: The location"
        " to get the weather forecast for.\n\n    Returns:\n        The weather forecast for the"
        " location.\n    ",
        {"location": STRING},
        strict=True,
    ),
    *(
        _agent_tool(name)
        for name in (
            "get_image_resource",
            "get_image_resource_link",
            "get_audio_resource",
            "get_audio_resource_link",
            "get_product_name",
            "get_product_name_link",
            "get_image",
            "get_dict",
            "get_unstructured_dict",
        )
    ),
    _agent_tool("get_error", properties={"value": {"default": False, "type": "boolean"}}),
    _agent_tool("get_none"),
    _agent_tool("get_multiple_items"),
    _agent_tool(
        "get_log_level",
        "Get the current log level.\n\n    Returns:\n        The current log level.\n    ",
    ),
    _agent_tool(
        "echo_deps",
        "Echo the run context.\n\n    Args:\n        ctx: Context object containing request and"
        " session information.\n\n    Returns:\n        Dictionary with an echo message and the"
        " deps.\n    ",
    ),
    _agent_tool("use_sampling", "Use sampling callback.", {"foo": STRING}, strict=True),
    _agent_tool(
        "get_client_info",
        "Get information about the connected MCP client.\n\n    Returns:\n        Dictionary"
        " with client info (name, version, etc.) or None if not available.\n    ",
    ),
    _agent_tool(
        "use_elicitation",
        "Use elicitation callback to ask the user a question.",
        {"question": STRING},
        strict=True,
    ),
    _agent_tool(
        "enable_hidden_tool", "Enable the hidden tool, triggering a ToolListChangedNotification."
    ),
    _agent_tool("external"),
    _agent_tool(
        "final_result",
        "The final response which ends this conversation",
        {"answers": {"items": {"$ref": "#/$defs/Answer"}, "type": "array"}},
        strict=True,
    ),
]
AGENT_TOOLS[-1]["function"]["parameters"]["$defs"] = {"Answer": ANSWER}
AGENT_QUESTION = {
    "content": "Tell me: the capital of the country; the weather there; the product name",
    "role": "user",
}
PARALLEL_CALLS: dict[str, Any] = {
    "content": None,
    "role": "assistant",
    "tool_calls": [
        {"function": {"arguments": "{}", "name": name}, "id": call_id, "type": "function"}
        for name, call_id in (
            ("get_country", "call_eK5pz0uCvmVafJi7a82JVYlJ"),
            ("get_product_name", "call_HZO7PbUZchDiEo3SaCpCLMHi"),
        )
    ],
}
AFTER_PARALLEL = [
    AGENT_QUESTION,
    PARALLEL_CALLS,
    _result("call_eK5pz0uCvmVafJi7a82JVYlJ", "Mexico"),
    _result("call_HZO7PbUZchDiEo3SaCpCLMHi", "Pydantic AI"),
]


def _agent_body(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": messages,
        "tool_choice": "required",
        "tools": AGENT_TOOLS,
    }


def test_many_tools_with_docstring_descriptions_match_api_reported_count() -> None:
    """24 tools with multi-line, indented descriptions (counted stripped), 7 of them with a
    parameter block opening with a parameter: the API reported 465 ([pydantic-ai]
    test_dbos/test_complex_agent_run_in_workflow.yaml; the same request in
    test_temporal/test_complex_agent_run.yaml reported 465 too)."""
    definitions = tools_format.function_definitions(_agent_body([AGENT_QUESTION]))
    assert tools_format.bare_blocks(definitions) == 7
    assert count_request(_agent_body([AGENT_QUESTION])).prompt_tokens == 465


AFTER_WEATHER = [
    *AFTER_PARALLEL,
    _call("call_bSctI9YLYVKPBGHPS9uwoamg", "get_weather", '{"city":"Mexico City"}'),
    _result("call_bSctI9YLYVKPBGHPS9uwoamg", "sunny"),
]


@pytest.mark.parametrize(
    ("messages", "api_prompt_tokens"),
    [
        pytest.param(AFTER_PARALLEL, 524, id="two-parallel-calls"),
        pytest.param(AFTER_WEATHER, 549, id="then-one-more-call"),
        pytest.param(
            [
                *AFTER_WEATHER,
                _call("call_a9M9ddwjl7r2k8MI8M1fwx7T", "get_product_name_link", "{}"),
                _result("call_a9M9ddwjl7r2k8MI8M1fwx7T", "Pydantic AI\n"),
            ],
            576,
            id="then-two-more-calls",
        ),
    ],
)
def test_parallel_calls_and_the_calls_after_them_match_api_reported_counts(
    messages: list[dict[str, Any]], api_prompt_tokens: int
) -> None:
    """[pydantic-ai] test_dbos/test_complex_agent_run_in_workflow.yaml (gpt-4o; the first
    two also in test_temporal/test_complex_agent_run.yaml): two parallel calls and their
    results cost 59, the single calls after them 25 and 27."""
    assert count_request(_agent_body(messages)).prompt_tokens == api_prompt_tokens


@pytest.mark.parametrize(
    ("body", "api_input_tokens"),
    [
        pytest.param(  # test_openai_responses/test_openai_responses_output_type.yaml (gpt-4o)
            {
                "input": [
                    {
                        "content": "Give me the name and age of Brazil, Argentina, and Chile.",
                        "role": "user",
                    }
                ],
                "model": "gpt-4o",
                "tool_choice": "required",
                "tools": [
                    {
                        "description": "The final response which ends this conversation",
                        "name": "final_result",
                        "parameters": {
                            "additionalProperties": False,
                            "properties": {"age": {"type": "integer"}, "name": STRING},
                            "required": ["name", "age"],
                            "type": "object",
                        },
                        "strict": True,
                        "type": "function",
                    }
                ],
            },
            66,
            id="gpt-4o-required",
        ),
        pytest.param(  # ..._responses/test_openai_conversation_id_tool_call_continuation.yaml
            {
                "input": [
                    {
                        "content": "Call get_conversation_code and reply with only the returned"
                        " code.",
                        "role": "user",
                    }
                ],
                "instructions": "Use the provided tool when the user asks for the conversation"
                " code.",
                "model": "gpt-4.1",
                "tool_choice": "auto",
                "tools": [
                    {
                        "description": None,
                        "name": "get_conversation_code",
                        "parameters": {
                            "additionalProperties": False,
                            "properties": {},
                            "type": "object",
                        },
                        "strict": False,
                        "type": "function",
                    }
                ],
            },
            57,
            id="gpt-4.1-instructions",
        ),
    ],
)
def test_responses_tool_requests_are_within_three_tokens(
    body: dict[str, Any], api_input_tokens: int
) -> None:
    """Responses requests with function tools: the recorded usage.input_tokens ([pydantic-ai],
    2026) is within 3 tokens of ours (66 for 64, 57 for 59); the Responses framing is an
    estimate (docs/counting.md)."""
    assert abs(count_request(body).prompt_tokens - api_input_tokens) <= 3


def test_content_parts_with_a_tool_match_api_reported_count() -> None:
    """A one-part user message beside a tool on gpt-4o: 46, as recorded ([pydantic-ai]
    test_openai/test_image_as_binary_content_tool_response.yaml, gpt-4o-2024-08-06)."""
    body = {
        "model": "gpt-4o",
        "messages": [
            {
                "content": [
                    {
                        "text": "What fruit is in the image you can get from the get_image tool?",
                        "type": "text",
                    }
                ],
                "role": "user",
            }
        ],
        "tool_choice": "auto",
        "tools": [_agent_tool("get_image")],
    }
    assert count_request(body).prompt_tokens == 46


# [crewai] recordings: parameters generated from pydantic models carry a ``title``.
def _titled_tool(name: str, description: str, key: str, about: str) -> dict[str, Any]:
    prop = {"description": about, "title": key.capitalize(), "type": "string"}
    parameters = {"properties": {key: prop}, "required": [key], "type": "object"}
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


CALCULATOR_TOOL = _titled_tool(
    "calculator",
    "Perform mathematical calculations. Use this for any math operations.",
    "expression",
    "Mathematical expression to evaluate",
)
COUNTING_TOOL = _titled_tool(
    "counting_tool", "A tool that counts how many times it's been called", "value", "Value to count"
)
SEARCH_TOOLS = [
    _titled_tool(
        f"parallel_local_search_{word}",
        f"Local search tool #{number} for concurrency testing.",
        "query",
        "Search query",
    )
    for number, word in ((1, "one"), (2, "two"), (3, "three"))
]
for _tool in SEARCH_TOOLS:
    _tool["function"]["strict"] = True
    _tool["function"]["parameters"]["additionalProperties"] = False
CREW_TASK = (
    "\nCurrent Task: {task}\n\nThis is the expected criteria for your final answer: {criteria}"
    "\nyou MUST return the actual complete content as the final answer, not a summary.\n\nThis"
    " is VERY important to you, your job depends on it!"
)
CALCULATOR_TURNS: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are Calculator. You calculate things.\nYour personal goal is: Perform"
        " calculations efficiently",
    },
    {"role": "user", "content": CREW_TASK.format(task="What is 100 / 4?", criteria="The result")},
]
COUNTING_TURNS: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are Counting Agent. You are an agent that counts things.\nYour personal"
        " goal is: Call the counting tool multiple times",
    },
    {
        "role": "user",
        "content": CREW_TASK.format(
            task="Call the counting_tool 3 times with values 'first', 'second', and 'third'",
            criteria="The results of the counting operations",
        ),
    },
]
SEARCH_TURNS: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are Parallel Tool Agent. You follow tool instructions precisely.\nYour"
        " personal goal is: Use both tools exactly as instructed",
    },
    {
        "role": "user",
        "content": "\nCurrent Task: This is a tool-calling compliance test. In your next"
        " assistant turn, emit exactly 3 tool calls in the same response (parallel tool calls),"
        " in this order: 1) parallel_local_search_one(query='latest OpenAI model release"
        " notes'), 2) parallel_local_search_two(query='latest Anthropic model release notes'),"
        " 3) parallel_local_search_three(query='latest Gemini model release notes'). Do not"
        " call any other tools and do not answer before those 3 tool calls are emitted. After"
        " the tool results return, provide a one paragraph summary.",
    },
]
ANALYZE = {
    "role": "user",
    "content": "Analyze the tool result. If requirements are met, provide the Final Answer."
    " Otherwise, call the next tool. Deliver only the answer without meta-commentary.",
}
SEARCHES = [
    ("call_kz1qLLRsugXwWiQMeH9oFAep", "one", "OpenAI"),
    ("call_yNouGq1Kv6P5W9fhTng6acZi", "two", "Anthropic"),
    ("call_O7MqnuniDmyT6a0BS31GTunB", "three", "Gemini"),
]
SEARCH_CALLS: dict[str, Any] = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": call_id,
            "type": "function",
            "function": {
                "name": f"parallel_local_search_{word}",
                "arguments": f'{{"query": "latest {vendor} model release notes"}}',
            },
        }
        for call_id, word, vendor in SEARCHES
    ],
}
SEARCH_RESULTS = [
    {
        "role": "tool",
        "tool_call_id": call_id,
        "name": f"parallel_local_search_{word}",
        "content": f"[{word}] latest {vendor} model release notes",
    }
    for call_id, word, vendor in SEARCHES
]


def _counting_round(call_id: str, value: str) -> list[dict[str, Any]]:
    return [
        _call(call_id, "counting_tool", f'{{"value": "{value}"}}'),
        _result(call_id, f"Counted: {value}"),
        ANALYZE,
    ]


def _crew_body(model: str, messages: list[dict[str, Any]], tools: list[Any]) -> dict[str, Any]:
    return {"messages": messages, "model": model, "tool_choice": "auto", "tools": tools}


def test_parameter_titles_render_as_harmony_writes_them() -> None:
    """A parameter's ``title`` is written above its description as ``// TITLE`` and ``//``,
    the form of OpenAI's own renderer ([harmony] ``json_schema_to_typescript``)."""
    text = tools_format.render_namespace([SEARCH_TOOLS[0]["function"]])
    assert "(_: {\n// Query\n//\n// Search query\nquery: string,\n})" in text
    untitled = {"properties": {"q": {"title": " ", "type": "string"}}, "type": "object"}
    assert "(_: {\nq?: string,\n})" in tools_format.render_namespace(
        [{"name": "f", "parameters": untitled}]
    )


@pytest.mark.parametrize(
    ("body", "api_prompt_tokens"),
    [
        pytest.param(
            _crew_body("gpt-4o-mini", CALCULATOR_TURNS, [CALCULATOR_TOOL]),
            127,
            id="one-titled-parameter",
        ),
        pytest.param(
            _crew_body("gpt-4o-mini", COUNTING_TURNS, [COUNTING_TOOL]),
            150,
            id="another-titled-parameter",
        ),
        pytest.param(
            _crew_body("gpt-4o-mini", SEARCH_TURNS, SEARCH_TOOLS),
            259,
            id="three-titled-tools",
        ),
    ],
)
def test_titled_parameters_match_api_reported_counts(
    body: dict[str, Any], api_prompt_tokens: int
) -> None:
    """gpt-4o-mini-2024-07-18 with parameters that have a title: exact with the title lines,
    3 tokens per title below without them. [crewai] lib/crewai/tests/cassettes/agents/:

    - one-titled-parameter: TestNativeToolCallingTokenUsage.test_openai_native_tool_calling_
      token_usage.yaml (the file name is one word)
    - another-titled-parameter: TestMaxUsageCountWithNativeToolCalling.test_max_usage_count_
      tracked_in_native_tool_calling.yaml
    - three-titled-tools: TestOpenAINativeToolCalling.test_openai_parallel_native_tool_
      calling_test_agent_kickoff.yaml
    """
    assert count_request(body).prompt_tokens == api_prompt_tokens


@pytest.mark.parametrize(
    ("body", "api_prompt_tokens"),
    [
        pytest.param(
            _crew_body(
                "gpt-4o-mini",
                [*COUNTING_TURNS, *_counting_round("call_HKZQEOJoVeVipb4ftvCStGtL", "first")],
                [COUNTING_TOOL],
            ),
            213,
            id="counting-round",
        ),
        pytest.param(
            _crew_body(
                "gpt-4o-mini",
                [
                    *COUNTING_TURNS,
                    *_counting_round("call_HKZQEOJoVeVipb4ftvCStGtL", "first"),
                    *_counting_round("call_2Ofvfm7nFFPPYIbxA1eosC4h", "second"),
                ],
                [COUNTING_TOOL],
            ),
            276,
            id="counting-two-rounds",
        ),
        pytest.param(
            _crew_body("gpt-4o-mini", [*SEARCH_TURNS, SEARCH_CALLS, *SEARCH_RESULTS], SEARCH_TOOLS),
            377,
            id="three-parallel-calls",
        ),
    ],
)
def test_crewai_call_rounds_match_api_reported_counts(
    body: dict[str, Any], api_prompt_tokens: int
) -> None:
    """gpt-4o-mini-2024-07-18: calls whose arguments were sent with spaces
    (``{"value": "first"}``) count as their JSON without spaces; three parallel calls and
    their results cost 118. [crewai] lib/crewai/tests/cassettes/agents/, the files of
    test_titled_parameters_match_api_reported_counts: the counting rounds are the second
    and third requests of the another-titled-parameter file, three-parallel-calls the second
    of the three-titled-tools file."""
    assert count_request(body).prompt_tokens == api_prompt_tokens


def test_calculator_round_is_one_token_below() -> None:
    """gpt-4o-mini-2024-07-18, the second request of the one-titled-parameter file of
    test_titled_parameters_match_api_reported_counts ([crewai]): 199, ours 198. The
    calculator's name is one token more after a dot (``.cal`` ``culator``) than alone, so
    the call or its result may be written with ``functions.calculator``; one recording does
    not say which. Pinned, as in docs/counting.md."""
    body = _crew_body(
        "gpt-4o-mini",
        [
            *CALCULATOR_TURNS,
            _call("call_rZQU4F2cauxK3VUKfLtXoNVC", "calculator", '{"expression":"100 / 4"}'),
            _result("call_rZQU4F2cauxK3VUKfLtXoNVC", "The result of 100 / 4 is 25.0"),
            ANALYZE,
        ],
        [CALCULATOR_TOOL],
    )
    assert count_request(body).prompt_tokens == 199 - 1


MATH_TURNS: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are Math Assistant. You are a helpful math assistant.\nYour personal goal"
        " is: Help users with mathematical calculations",
    },
    {
        "role": "user",
        "content": "\nCurrent Task: Calculate what is 15 * 8\n\nThis is the expected criteria for"
        " your final answer: The result of the calculation\nyou MUST return the actual complete"
        " content as the final answer, not a summary.",
    },
]
STRICT_CALCULATOR = {
    "type": "function",
    "function": {
        **CALCULATOR_TOOL["function"],
        "strict": True,
        "parameters": {**CALCULATOR_TOOL["function"]["parameters"], "additionalProperties": False},
    },
}
CRITERIA = (
    "\n\nThis is the expected criteria for your final answer: A one sentence summary of both"
    " tool outputs\nyou MUST return the actual complete content as the final answer, not a"
    " summary."
)
SEARCH_TURNS_WITH_CRITERIA = [
    SEARCH_TURNS[0],
    {**SEARCH_TURNS[1], "content": SEARCH_TURNS[1]["content"] + CRITERIA},
]


@pytest.mark.parametrize(
    ("body", "api_prompt_tokens", "known_error"),
    [
        pytest.param(
            _crew_body("gpt-5-nano", SEARCH_TURNS, SEARCH_TOOLS),
            343,
            0,
            id="three-tools",
        ),
        pytest.param(
            _crew_body("gpt-5-nano", [*SEARCH_TURNS, SEARCH_CALLS, *SEARCH_RESULTS], SEARCH_TOOLS),
            467,
            -6,
            id="three-tools-after-parallel-calls",
        ),
        pytest.param(
            _crew_body("gpt-5-nano", SEARCH_TURNS_WITH_CRITERIA, SEARCH_TOOLS),
            378,
            0,
            id="three-tools-longer-task",
        ),
        pytest.param(
            _crew_body(
                "gpt-5-nano",
                [*SEARCH_TURNS_WITH_CRITERIA, SEARCH_CALLS, *SEARCH_RESULTS, ANALYZE],
                SEARCH_TOOLS,
            ),
            537,
            -6,
            id="three-tools-longer-task-after-parallel-calls",
        ),
        pytest.param(
            _crew_body("gpt-5-nano", MATH_TURNS, [STRICT_CALCULATOR]),
            208,
            0,
            id="one-tool",
        ),
    ],
)
def test_gpt5_requests_with_tools(
    body: dict[str, Any], api_prompt_tokens: int, known_error: int
) -> None:
    """gpt-5-nano-2025-08-07 with function tools ([crewai] lib/crewai/tests/cassettes/agents/;
    three-tools and its parallel calls: TestOpenAINativeToolCalling.test_openai_parallel_
    native_tool_calling_tool_hook_parity_agent_kickoff.yaml, and the same 343 and 467 in
    TestAzureNativeToolCalling.test_azure_parallel_native_tool_calling_test_agent_kickoff.yaml;
    three-tools-longer-task and its parallel calls: TestOpenAINativeToolCalling.test_openai_
    parallel_native_tool_calling_test_crew.yaml; one-tool: TestOpenAINativeToolCalling.test_
    openai_agent_with_native_tool_calling.yaml; their call ids, not counted, differ from the
    gpt-4o-mini recording's).

    Every first request is billed 85 tokens above its text, whatever the number of tools:
    the gpt-5 family's ``function_tools`` overhead, exact with it. After parallel calls the
    count stays 6 below (the parallel turn costs gpt-5-nano 6 more than gpt-4o-mini, whose
    figure for the same messages is exact): not modelled, pinned as in docs/counting.md."""
    assert count_request(body).prompt_tokens - api_prompt_tokens == known_error


SECRET_TOOL = {
    "type": "function",
    "function": {
        "name": "secret_retrieval_tool",
        "description": "A tool that requires a password to retrieve a secret.",
        "parameters": {
            "properties": {"password": {"title": "Password", "type": "string"}},
            "required": ["password"],
            "additionalProperties": False,
            "type": "object",
        },
        "strict": False,
    },
}
SECRET_TURNS: list[dict[str, Any]] = [
    {"role": "system", "content": "Use parallel tool calling."},
    {
        "role": "user",
        "content": "Please retrieve the secrets associated with each of these passwords:"
        " mellon,radiance",
    },
]
SECRET_CALLS: list[dict[str, Any]] = [
    {
        "role": "assistant",
        "annotations": [],
        "tool_calls": [
            {
                "id": call_id,
                "function": {
                    "arguments": f'{{"password": "{word}"}}',
                    "name": "secret_retrieval_tool",
                },
                "type": "function",
            }
            for call_id, word in (
                ("call_v6LacIrChvs6ITVpIZqy5tFc", "mellon"),
                ("call_onyWzk4mLTGKzW9cthmf4Llq", "radiance"),
            )
        ],
    },
    {
        "role": "tool",
        "content": "Welcome to Moria!",
        "tool_call_id": "call_v6LacIrChvs6ITVpIZqy5tFc",
    },
    {
        "role": "tool",
        "content": "Life before Death",
        "tool_call_id": "call_onyWzk4mLTGKzW9cthmf4Llq",
    },
]


def test_title_without_description_and_two_parallel_calls_on_gpt4o() -> None:
    """gpt-4o-2024-08-06 ([mirascope] python/tests/e2e/output/cassettes/test_call_with_tools/
    openai_gpt_4o_completions/sync.yaml, whose response bodies are gzip-compressed; the
    same 75 and 149 with ``strict`` false and true): a parameter with a title and no
    description, 75, ours 76, the one count where the title lines are a token too many; two
    parallel calls and their results then add 74, exactly as counted (149, ours 150).
    Pinned, as in docs/counting.md."""
    first = count_request({"model": "gpt-4o", "messages": SECRET_TURNS, "tools": [SECRET_TOOL]})
    both = count_request(
        {"model": "gpt-4o", "messages": [*SECRET_TURNS, *SECRET_CALLS], "tools": [SECRET_TOOL]}
    )
    assert (first.prompt_tokens, both.prompt_tokens) == (75 + 1, 149 + 1)


def test_o200k_parallel_results_are_one_message_listing_the_outputs() -> None:
    """On o200k the results answering several calls made in one message are counted once, as
    a message from the parallel wrapper whose content is the JSON list of their outputs
    (text parts joined, images counted beside it); a message in between ends the group, and
    a result after it counts on its own."""
    calls = {
        "role": "assistant",
        "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            for i in (1, 2)
        ],
    }
    image = {
        "type": "image_url",
        "image_url": {"url": "https://example.com/x.png", "detail": "low"},
    }
    results = [
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "a"}, image]},
        {"role": "tool", "tool_call_id": "c2", "content": "b"},
    ]
    user = {"role": "user", "content": "next"}

    def chat(messages: list[dict[str, Any]]) -> int:
        return count_request({"model": "gpt-4o", "messages": messages}).prompt_tokens

    before = chat([user, calls])
    framing = 4 + 1  # o200k result framing and the wrapper's name overhead
    listed = framing + count_text(tools_format.PARALLEL_RECIPIENT, encoding="o200k_base")
    listed += count_text(json.dumps(["a", "b"]), encoding="o200k_base") + 85  # low-detail image
    assert chat([user, calls, *results]) == before + listed
    assert chat([user, calls, *results, user]) == chat([user, calls, *results]) + (chat([user]) - 3)
    late = chat([user, calls, results[0], user, results[1]])
    single_b = (
        4
        + count_text("tool", encoding="o200k_base")
        + 1
        + 1
        + count_text(json.dumps("b")[1:-1], encoding="o200k_base")
    )
    alone = framing + count_text(tools_format.PARALLEL_RECIPIENT, encoding="o200k_base")
    alone += count_text(json.dumps(["a"]), encoding="o200k_base") + 85
    assert late == before + alone + (chat([user]) - 3) + single_b


@pytest.mark.parametrize(
    ("arguments", "counted_as"),
    [
        ('{"a": 1, "b": [1, 2]}', '{"a":1,"b":[1,2]}'),
        ("not JSON {", "not JSON {"),
        ('{"long": "' + "word " * 400 + '", "n": 1}', '{"long":"' + "word " * 400 + '","n":1}'),
        ('{"name": "Zoë"}', '{"name":"Zoë"}'),
    ],
    ids=["spaces", "not-json", "long", "non-ascii-kept"],
)
def test_o200k_call_arguments_count_as_compact_json(arguments: str, counted_as: str) -> None:
    """On o200k a call's arguments count as their JSON without spaces (non-ASCII as is), text
    that is not JSON as sent, short or long; on cl100k as sent."""
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}
    messages = [{"role": "assistant", "tool_calls": [call]}]

    def chat(model: str) -> int:
        return count_request({"model": model, "messages": messages}).prompt_tokens

    base = 3 + 3 + 1 + tools_format.CALL_OVERHEAD  # priming, framing, role, call overhead
    name = count_text("f", encoding="o200k_base")
    assert chat("gpt-4o") == base + name + count_text(counted_as, encoding="o200k_base")
    name = count_text("f", encoding="cl100k_base")
    assert chat("gpt-4") == base + name + count_text(arguments, encoding="cl100k_base")
