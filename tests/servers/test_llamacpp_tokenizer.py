"""``tokenizer="server:URL"`` against a real llama.cpp server: the count made before each call
equals the ``prompt_tokens`` the server bills for it, through the official ``openai`` client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from prismq_llmtools import (
    TokenizerError,
    UnknownModelError,
    cost_tracked,
    rate_limited,
    token_budgeted,
)
from prismq_llmtools.openai.tokenizer import count_request_with
from tests.drivers import Mode, Steps

# The model's name as the server reports it does not matter to llama.cpp, and is unknown to
# OpenAI's tables: without a tokenizer setting, counting it is an UnknownModelError.
MODEL = "smollm2-135m-instruct"

CODE = '''def fib(n: int) -> int:
    """The n-th Fibonacci number."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b  # {tuple assignment}
    return a
'''

CHATS: dict[str, list[dict[str, Any]]] = {
    "user only": [{"role": "user", "content": "Hello!"}],
    "system": [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "What colour is the sky?"},
    ],
    "multi-turn": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "7"},
        {"role": "user", "content": "Another, larger one?"},
        {"role": "assistant", "content": "11"},
        {"role": "user", "content": "And the next?"},
    ],
    "non-English": [
        {"role": "user", "content": "東京の天気はどうですか。 Как дела? Ça va très bien, merci 🌤️"}
    ],
    "code": [
        {"role": "system", "content": "Review Python code."},
        {"role": "user", "content": f"```python\n{CODE}```\nIs this correct?"},
    ],
    "parts": [{"role": "user", "content": [{"type": "text", "text": "Two words: hello there."}]}],
}


@pytest.mark.parametrize("name", list(CHATS))
def test_server_count_is_the_billed_prompt(
    mode: Mode, llamacpp_url: str, name: str, events: list[dict[str, Any]]
) -> None:
    """Counted with the server's template and tokenizer, the estimate made before the call is
    exactly the prompt_tokens the server bills, for each kind of chat."""
    api = mode.openai(base_url=llamacpp_url + "/v1", api_key="unused", max_retries=0)

    @cost_tracked()
    @rate_limited(rpm=1000, tpm=1_000_000, tokenizer=f"server:{llamacpp_url}")
    @token_budgeted(max_prompt_tokens=4000)
    @mode.make
    def chat(messages: list[dict[str, Any]], model: str = MODEL) -> Steps[int]:
        response = yield api.chat.completions.create(
            model=model, messages=messages, max_tokens=1, temperature=0
        )
        return int(response.usage.prompt_tokens)

    billed = mode.invoke(chat, CHATS[name])
    again = mode.invoke(chat, CHATS[name])  # counted from the memo; the server caches the prompt
    calls = [e for e in events if e["event"] == "llm.call"]
    assert [c["prompt_tokens_estimate"] for c in calls] == [billed, again]
    assert billed == again


def test_completions_prompt_is_counted_as_billed(mode: Mode, llamacpp_url: str) -> None:
    """A completions prompt is counted by the server's tokenizer as the server bills it."""
    api = mode.openai(base_url=llamacpp_url + "/v1", api_key="unused", max_retries=0)
    prompts = ["Once upon a time", "def add(a, b):\n    return a + b\n# 東京", ""]

    for prompt in prompts:

        @mode.make
        def complete(text: str) -> Steps[int]:
            response = yield api.completions.create(model=MODEL, prompt=text, max_tokens=1)
            return int(response.usage.prompt_tokens)

        counted = count_request_with(
            {"model": MODEL, "prompt": prompt}, endpoint=None, tokenizer=f"server:{llamacpp_url}"
        )
        assert counted.prompt_tokens == mode.invoke(complete, prompt), prompt


RESPONSES: dict[str, dict[str, Any]] = {
    "instructions and text": {"instructions": "Be brief.", "input": "Hello there"},
    "message items": {
        "instructions": "Answer in French.",
        "input": [
            {"type": "message", "role": "user", "content": "Hi"},
            {"type": "message", "role": "assistant", "content": "Hello"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Bye"}]},
        ],
    },
}


@pytest.mark.parametrize("name", list(RESPONSES))
def test_responses_input_is_counted_as_billed(
    mode: Mode, llamacpp_url: str, name: str, events: list[dict[str, Any]]
) -> None:
    """A Responses request (found from an ``input`` and ``instructions`` argument) is counted
    by the server's template as the input_tokens its /v1/responses bills."""
    api = mode.openai(base_url=llamacpp_url + "/v1", api_key="unused", max_retries=0)

    @rate_limited(tpm=1_000_000, tokenizer=f"server:{llamacpp_url}/v1")
    @mode.make
    def respond(input: Any, instructions: str, model: str = MODEL) -> Steps[int]:
        response = yield api.responses.create(
            model=model, input=input, instructions=instructions, max_output_tokens=16
        )
        return int(response.usage.input_tokens)

    billed = mode.invoke(respond, **RESPONSES[name])
    assert [e["prompt_tokens_estimate"] for e in events if e["event"] == "llm.call"] == [billed]


def test_without_a_tokenizer_the_error_names_the_settings(llamacpp_url: str) -> None:
    """A model OpenAI's tables do not know fails with the settings that choose a tokenizer."""
    api = openai.OpenAI(base_url=llamacpp_url + "/v1", api_key="unused", max_retries=0)

    @token_budgeted(max_prompt_tokens=100, name="app.local_chat")
    def chat(messages: list[dict[str, Any]], model: str = MODEL) -> Any:
        return api.chat.completions.create(model=model, messages=messages, max_tokens=1)

    with pytest.raises(UnknownModelError) as caught:
        chat(CHATS["user only"])
    text = str(caught.value)
    assert "tokenizer=" in text
    assert '[sites."app.local_chat"]' in text
    assert "PRISMQ_LLMTOOLS__APP_LOCAL_CHAT__TOKENIZER" in text
    api.close()


def test_a_server_without_tokenize_endpoints_is_a_clear_error(sim: Any) -> None:
    """A server with neither llama.cpp's nor vLLM's endpoints (here the OpenAI simulator) is
    a TokenizerError that says what was asked and what it answered."""
    body = {"model": MODEL, "messages": CHATS["user only"]}
    with pytest.raises(TokenizerError, match="offers no way to count") as caught:
        count_request_with(body, endpoint="chat", tokenizer=f"server:{sim.base_url}")
    assert "/apply-template: 404" in str(caught.value)


@pytest.fixture(scope="module")
def smollm_tokenizer_json(tmp_path_factory: pytest.TempPathFactory, llamacpp_url: str) -> Path:
    """The served model's tokenizer as a tokenizer.json, rebuilt from its GGUF vocabulary."""
    pytest.importorskip("tokenizers", reason="the hf extra is not installed")
    from tests.servers.gguf_vocab import write_tokenizer_json
    from tests.servers.llamacpp_serve import model_path

    return write_tokenizer_json(model_path(), tmp_path_factory.mktemp("smollm2") / "tokenizer.json")


@pytest.fixture(scope="module")
def smollm_model_dir(tmp_path_factory: pytest.TempPathFactory, smollm_tokenizer_json: Path) -> Path:
    """A Hugging Face model directory: the tokenizer.json and a tokenizer_config.json with
    the model's chat template (both from its GGUF file)."""
    from tests.servers.gguf_vocab import write_tokenizer_config
    from tests.servers.llamacpp_serve import model_path

    directory = tmp_path_factory.mktemp("smollm2-dir")
    (directory / "tokenizer.json").write_bytes(smollm_tokenizer_json.read_bytes())
    write_tokenizer_config(model_path(), directory / "tokenizer_config.json")
    return directory


# SmolLM2's chat template adds this system message when a chat has none; ChatML framing
# alone (what hf: assumes) does not: 21 tokens, measured below.
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def test_hf_tokenizer_error_against_the_server(
    llamacpp_url: str, smollm_tokenizer_json: Path
) -> None:
    """hf:PATH with the model's own tokenizer.json and no chat template beside it: texts count
    exactly as the server counts them; chats, framed as ChatML, count exactly when they have a
    system message, and miss only the template's default system message (21 tokens) when they
    have none (the figures in docs/counting.md)."""
    hf = f"hf:{smollm_tokenizer_json}"
    server = f"server:{llamacpp_url}"
    api = openai.OpenAI(base_url=llamacpp_url + "/v1", api_key="unused", max_retries=0)
    from prismq_llmtools.openai.tokenizer import count_text_with

    for text in [
        "Hello world",
        CODE,
        "12345 678.9",
        "  spaced   out\n\n\ttabs",
        CHATS["non-English"][0]["content"],
    ]:
        assert count_text_with(text, tokenizer=hf) == count_text_with(text, tokenizer=server)
    default_block = count_text_with(
        f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n", tokenizer=hf
    )
    assert default_block == 21
    for name, messages in CHATS.items():
        billed = api.chat.completions.create(model=MODEL, messages=messages, max_tokens=1)
        assert billed.usage is not None
        counted = count_request_with(
            {"model": MODEL, "messages": messages}, endpoint="chat", tokenizer=hf
        ).prompt_tokens
        has_system = messages[0]["role"] == "system"
        assert billed.usage.prompt_tokens - counted == (0 if has_system else default_block), name
    api.close()


def test_hf_with_the_chat_template_is_exact(llamacpp_url: str, smollm_model_dir: Path) -> None:
    """hf:DIR of a model directory whose tokenizer_config.json has the chat template counts
    every chat exactly as the server bills it, default system message included."""
    api = openai.OpenAI(base_url=llamacpp_url + "/v1", api_key="unused", max_retries=0)
    for name, messages in CHATS.items():
        billed = api.chat.completions.create(model=MODEL, messages=messages, max_tokens=1)
        assert billed.usage is not None
        counted = count_request_with(
            {"model": MODEL, "messages": messages},
            endpoint="chat",
            tokenizer=f"hf:{smollm_model_dir}",
        )
        assert counted.prompt_tokens == billed.usage.prompt_tokens, name
    api.close()


def test_estimated_usage_counts_with_the_server(
    mode: Mode, llamacpp_url: str, events: list[dict[str, Any]]
) -> None:
    """A site whose function returns text and makes no request estimates its usage with the
    server's tokenizer: the prompt as the server would bill it, the text as it tokenizes it.
    Credentials in the URL are used, and appear in no event."""
    with_credentials = llamacpp_url.replace("http://", "http://user:s3cret@")

    @cost_tracked(tokenizer=f"server:{with_credentials}")
    @mode.make
    def reply(messages: list[dict[str, Any]], model: str = MODEL) -> str:
        return "Bonjour à tous, 東京 123"

    assert mode.invoke(reply, CHATS["system"]) == "Bonjour à tous, 東京 123"
    (call,) = [e for e in events if e["event"] == "llm.call"]
    tokenize = openai.OpenAI(base_url=llamacpp_url, api_key="unused", max_retries=0)
    tokens = tokenize.post(
        "/tokenize", body={"content": "Bonjour à tous, 東京 123"}, cast_to=object
    )
    tokenize.close()
    assert call["usage_source"] == "estimated"
    assert call["gen_ai.usage.output_tokens"] == len(tokens["tokens"])
    assert (
        call["gen_ai.usage.input_tokens"]
        == count_request_with(
            {"model": MODEL, "messages": CHATS["system"]},
            endpoint="chat",
            tokenizer=f"server:{with_credentials}",
        ).prompt_tokens
    )
    assert "s3cret" not in repr(events)
    from prismq_llmtools.openai import tokenizer

    # One tokenizer counted both, with the credentials: not a second one made from the name.
    assert list(tokenizer._made) == [f"server:{with_credentials}"]
