"""The site settings ``tokenizer`` (what a site's prompts are counted with) and ``endpoint``
(which API a function calls when its arguments do not say)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from prismq_llmtools import (
    ConfigurationError,
    RequestFormatError,
    TokenizerError,
    UnknownModelError,
    batched,
    cost_tracked,
    rate_limited,
    token_budgeted,
)
from prismq_llmtools.openai.tokenizer import check_tokenizer, count_request_with
from prismq_llmtools.openai.tokens import count_request
from prismq_llmtools.settings import load_settings, reset_settings
from tests.conftest import _free_port
from tests.drivers import Mode

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Résumé of the Ünïcode standard, please: 東京"},
]


def _estimates(events: list[dict[str, Any]]) -> list[int]:
    return [e["prompt_tokens_estimate"] for e in events if e["event"] == "llm.call"]


def _counted_as(encoding: str) -> int:
    """What OpenAI's rules count for MESSAGES with ``encoding`` (a model known to use it)."""
    model = {"cl100k_base": "gpt-4", "o200k_base": "gpt-4o"}[encoding]
    return count_request({"model": model, "messages": MESSAGES}).prompt_tokens


@pytest.mark.parametrize(
    "decorator",
    [
        lambda tokenizer: rate_limited(rpm=100, tokenizer=tokenizer),
        lambda tokenizer: token_budgeted(max_prompt_tokens=1000, tokenizer=tokenizer),
        lambda tokenizer: cost_tracked(tokenizer=tokenizer),
        lambda tokenizer: batched(tokenizer=tokenizer),
    ],
    ids=["rate_limited", "token_budgeted", "cost_tracked", "batched"],
)
def test_every_counting_decorator_takes_a_tokenizer(
    mode: Mode, events: list[dict[str, Any]], decorator: Any
) -> None:
    """tokenizer= on any counting decorator counts an unknown model with that encoding."""

    @decorator("cl100k_base")
    @mode.make
    def chat(messages: list[dict[str, Any]], model: str = "acme-local-7b") -> str:
        return "ok"

    assert mode.invoke(chat, MESSAGES) == "ok"
    assert _estimates(events) == [_counted_as("cl100k_base")]
    assert chat.llm.settings()["tokenizer"] == "cl100k_base"


def test_settings_file_and_environment_choose_the_tokenizer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, events: list[dict[str, Any]]
) -> None:
    """The settings file's site table, then the environment, override the decorator's value."""
    path = tmp_path / "llmtools.toml"
    path.write_text('[sites."app.chat"]\ntokenizer = "o200k_base"\n')
    reset_settings(load_settings({"PRISMQ_LLMTOOLS_CONFIG": str(path)}))

    @rate_limited(rpm=100, tokenizer="cl100k_base", name="app.chat")
    def chat(messages: list[dict[str, Any]], model: str = "acme-local-7b") -> str:
        return "ok"

    assert chat.llm.settings()["tokenizer"] == "o200k_base"
    chat(MESSAGES)
    monkeypatch.setenv("PRISMQ_LLMTOOLS__APP_CHAT__TOKENIZER", "cl100k_base")
    with chat.llm.override():  # settings are read again
        chat(MESSAGES)
    with chat.llm.override(tokenizer="o200k_base"):
        chat(MESSAGES)
    assert _estimates(events) == [
        _counted_as("o200k_base"),
        _counted_as("cl100k_base"),
        _counted_as("o200k_base"),
    ]


def test_a_bad_tokenizer_names_the_site_key_and_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed value fails when the site is configured (a settings file: when it is
    loaded), naming the site, the key and where the value came from."""
    with pytest.raises(ConfigurationError, match=r"'app\.a': tokenizer='gpt2' \(decorator"):

        @rate_limited(rpm=1, tokenizer="gpt2", name="app.a")
        def a() -> None: ...

    monkeypatch.setenv("PRISMQ_LLMTOOLS__APP_B__TOKENIZER", "server:localhost:8080")
    with pytest.raises(ConfigurationError, match=r"PRISMQ_LLMTOOLS__APP_B__TOKENIZER.*server:"):

        @rate_limited(rpm=1, name="app.b")
        def b() -> None: ...

    path = tmp_path / "llmtools.toml"
    path.write_text('[defaults]\nendpoint = "images"\n')
    with pytest.raises(ConfigurationError, match=r"endpoint='images' \(.*llmtools\.toml:2\)"):
        load_settings({"PRISMQ_LLMTOOLS_CONFIG": str(path)})


def test_the_settings_rule_knows_the_counters_encodings() -> None:
    """The tokenizer rule accepts exactly the encodings the counter knows."""
    from prismq_llmtools.openai.models import KNOWN_ENCODINGS
    from prismq_llmtools.settings import TIKTOKEN_ENCODINGS

    assert set(TIKTOKEN_ENCODINGS) == KNOWN_ENCODINGS


@pytest.mark.parametrize(
    "value", ["cl100k_base", "o200k_base", "server:http://127.0.0.1:8080", "hf:/models/t.json"]
)
def test_valid_tokenizer_values(value: str) -> None:
    """Encodings, server:http(s)://... and hf:PATH are accepted as they are."""
    assert check_tokenizer(value) == value


@pytest.mark.parametrize("value", ["gpt-4o", "server:", "server:ftp://x", "hf:", 3, None])
def test_invalid_tokenizer_values(value: object) -> None:
    """Anything else is a ConfigurationError saying what is expected."""
    with pytest.raises(ConfigurationError):
        check_tokenizer(value)


def test_unknown_model_error_names_this_sites_settings(mode: Mode) -> None:
    """Without a tokenizer, an unknown model fails naming the decorator argument, the
    settings-file table and the environment variable of this very site."""

    @rate_limited(rpm=100, name="app.local")
    @mode.make
    def chat(messages: list[dict[str, Any]], model: str = "acme-local-7b") -> str:
        return "ok"

    with pytest.raises(UnknownModelError) as caught:
        mode.invoke(chat, MESSAGES)
    text = str(caught.value)
    assert "'acme-local-7b'" in text
    assert "tokenizer= on its decorator" in text
    assert '[sites."app.local"]' in text
    assert "PRISMQ_LLMTOOLS__APP_LOCAL__TOKENIZER" in text
    assert "fallback_encoding" not in text  # no decorator takes it


def test_endpoint_says_an_input_is_for_embeddings(mode: Mode, events: list[dict[str, Any]]) -> None:
    """A function whose ``input`` parameter feeds embeddings on a model whose name does not
    say so is counted as embeddings input with endpoint="embeddings", not as Responses."""

    def make(**site: Any) -> Any:
        @rate_limited(rpm=100, tokenizer="cl100k_base", **site)
        @mode.make
        def embed(input: list[str], model: str = "acme-vectors-v2") -> str:
            return "ok"

        return embed

    texts = ["first text", "second, longer text"]
    mode.invoke(make(endpoint="embeddings"), texts)
    expected = count_request(
        {"model": "text-embedding-3-small", "input": texts}, endpoint="embeddings"
    )
    assert _estimates(events) == [expected.prompt_tokens]
    with pytest.raises(RequestFormatError):  # taken for Responses input without the setting
        mode.invoke(make(), texts)


def test_endpoint_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """endpoint is a site setting like any other: the environment sets it per site."""
    monkeypatch.setenv("PRISMQ_LLMTOOLS__APP_EMBED__ENDPOINT", "embeddings")

    @cost_tracked(name="app.embed")
    def embed(input: str, model: str = "acme-vectors-v2") -> str:
        return "ok"

    assert embed.llm.settings()["endpoint"] == "embeddings"


def test_an_unreachable_server_is_a_tokenizer_error() -> None:
    """A server tokenizer that cannot be reached fails with its name and the reason."""
    tokenizer = f"server:http://127.0.0.1:{_free_port()}"
    body = {"model": "m", "messages": MESSAGES}
    with pytest.raises(TokenizerError, match="cannot reach it"):
        count_request_with(body, endpoint="chat", tokenizer=tokenizer)


def test_server_credentials_never_appear_in_names() -> None:
    """A user:password in the server URL is not part of the tokenizer's name (logged)."""
    from prismq_llmtools.openai.server_tokenizer import ServerTokenizer

    server = ServerTokenizer("http://me:s3cret@127.0.0.1:1/v1")
    assert server.name == "server:http://127.0.0.1:1"


def _word_tokenizer(path: Path) -> Path:
    """A tokenizer.json splitting on whitespace, with ChatML's two special tokens."""
    tokenizers = pytest.importorskip("tokenizers", reason="the hf extra is not installed")
    words = ["<unk>", "<|im_start|>", "<|im_end|>", "user", "system", "assistant", "hi", "there"]
    model = tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>")
    tokenizer = tokenizers.Tokenizer(model)
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    target = path / "tokenizer.json"
    tokenizer.save(str(target))
    return target


def test_hf_tokenizer_counts_text_and_chatml_framing(tmp_path: Path) -> None:
    """hf:PATH counts text with the tokenizer.json, and frames messages as ChatML."""
    path = _word_tokenizer(tmp_path)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi there"}], "max_tokens": 5}
    counted = count_request_with(body, endpoint=None, tokenizer=f"hf:{path}")
    # <|im_start|> user hi there <|im_end|>, then <|im_start|> assistant
    assert (counted.prompt_tokens, counted.completion_cap) == (7, 5)
    assert counted.encoding == f"hf:{path}"
    embedded = {"model": "m", "input": ["hi there", "hi", [1, 2, 3]]}
    for where in (path, tmp_path):  # the file, or the directory holding it
        again = count_request_with(embedded, endpoint="embeddings", tokenizer=f"hf:{where}")
        assert again.prompt_tokens == 2 + 1 + 3


def test_hf_tokenizer_file_errors(tmp_path: Path) -> None:
    """A missing or unreadable tokenizer.json is a TokenizerError naming the file."""
    bad = tmp_path / "tokenizer.json"
    bad.write_text(json.dumps({"not": "a tokenizer"}))
    body = {"model": "m", "messages": MESSAGES}
    for path in (tmp_path / "missing.json", bad):
        with pytest.raises(TokenizerError, match=path.name):
            count_request_with(body, endpoint="chat", tokenizer=f"hf:{path}")


def test_batched_merges_by_the_sites_tokenizer() -> None:
    """@batched's merge limit counts inputs with the site's tokenizer, so an embeddings model
    OpenAI's tables do not know is merged by that count instead of failing (and, with
    endpoint="embeddings", its input is not taken for Responses input)."""
    from prismq_llmtools.openai.tokenizer import count_text_with

    sizes: list[int] = []

    @batched(
        merge="input", max_tokens_per_request=20, tokenizer="cl100k_base", endpoint="embeddings"
    )
    def embed(input: str | list[str], model: str = "acme-vectors-v2") -> list[int]:
        texts = [input] if isinstance(input, str) else input
        sizes.append(sum(count_text_with(t, tokenizer="cl100k_base") for t in texts))
        return [len(t) for t in texts]

    texts = [f"text number {i} " * (1 + i % 3) for i in range(10)]
    assert embed.batch(texts) == [len(t) for t in texts]
    assert max(sizes) <= 20
    assert 1 < len(sizes) < len(texts)  # merged, and split by the count


def test_hf_renders_the_models_chat_template(tmp_path: Path) -> None:
    """Beside the tokenizer.json, a tokenizer_config.json's template frames the chat (with
    its special tokens as variables and the generation prompt); chat_template.jinja wins over
    it, and a tool_use template is chosen when the request has tools."""
    path = _word_tokenizer(tmp_path)
    loop = "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
    config = {
        "bos_token": {"content": "<|im_start|>", "special": True},
        "chat_template": [
            {"name": "default", "template": "{{ bos_token }} " + loop + "assistant"},
            {"name": "tool_use", "template": "{{ tools | tojson }} " + loop},
        ],
    }
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    hf = f"hf:{path}"

    def count(**extra: Any) -> int:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi there"}], **extra}
        return count_request_with(body, endpoint="chat", tokenizer=hf).prompt_tokens

    assert count() == 5  # <|im_start|> user hi there assistant
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert count(tools=tools) == 3 + len(json.dumps(tools).split())  # unknown words count 1 each
    (tmp_path / "chat_template.jinja").write_text(loop)
    from prismq_llmtools.testing import reset

    reset()  # tokenizers are made once per setting
    assert count() == 3


def test_hf_template_errors_are_tokenizer_errors(tmp_path: Path) -> None:
    """A template that refuses a chat (raise_exception) or does not compile is a
    TokenizerError naming the file."""
    path = _word_tokenizer(tmp_path)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    (tmp_path / "chat_template.jinja").write_text("{{ raise_exception('no users here') }}")
    with pytest.raises(TokenizerError, match="refused: no users here"):
        count_request_with(body, endpoint="chat", tokenizer=f"hf:{path}")
    (tmp_path / "chat_template.jinja").write_text("{% for %}")
    with pytest.raises(TokenizerError, match=r"chat_template\.jinja is invalid"):
        count_request_with(body, endpoint="chat", tokenizer=f"hf:{tmp_path}")
