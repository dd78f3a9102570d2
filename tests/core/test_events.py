"""Structured events: the llm.call line, JSON output, and secrets that never appear.

Tests taking ``mode`` run once with a sync function and once with an async one (the site's
two drivers; see tests/drivers.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest
import structlog

from prismq_llmtools import configure_logging, cost_tracked, retried
from prismq_llmtools.events import redact
from prismq_llmtools.testing.clock import FakeClock
from tests.drivers import Mode, Steps

from .fakes import CANARY_KEY, Script, chat_body, client, error, ok

CALL_FIELDS = {
    "timestamp",
    "level",
    "event",
    "site",
    "operation",
    "call_id",
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.response.id",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.reasoning.output_tokens",
    "usage_source",
    "cost_usd",
    "attempts",
    "retries",
    "rate_limited",
    "wait_s",
    "duration_s",
    "outcome",
    "request_id",
}


def test_json_lines_to_a_file_with_the_documented_fields(mode: Mode, tmp_path: Path) -> None:
    """configure_logging writes one JSON object per line carrying the schema's fields."""
    log = tmp_path / "events.jsonl"
    configure_logging(file=log)
    api = client(Script(ok(chat_body(prompt_tokens=30, completion_tokens=10))), mode)

    @cost_tracked(operation="titles")
    @mode.make
    def title() -> Steps[str]:
        r = yield api.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
        return r.choices[0].message.content or ""

    mode.invoke(title)
    lines = log.read_text().splitlines()
    (line,) = [json.loads(x) for x in lines if '"llm.call"' in x]
    assert set(line) >= CALL_FIELDS
    assert list(line)[:3] == ["timestamp", "level", "event"]
    assert line["timestamp"].endswith("Z")
    assert line["gen_ai.operation.name"] == "chat"
    assert log.stat().st_mode & 0o077 == 0  # created user-only


def test_the_canary_key_never_reaches_any_event(mode: Mode, tmp_path: Path) -> None:
    """Errors that quote the API key are logged redacted, in every event."""
    log = tmp_path / "events.jsonl"
    configure_logging(file=log)
    api = client(Script(error(500), error(401)), mode)

    @retried(attempts=3, clock=FakeClock())
    @mode.make
    def ask() -> Any:
        return api.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )

    with pytest.raises(openai.AuthenticationError):
        mode.invoke(ask)
    text = log.read_text()
    assert "llm.call" in text
    assert "error_message" in text
    assert CANARY_KEY not in text
    assert CANARY_KEY[:12] not in text


def test_redact_removes_keys_and_bearer_tokens() -> None:
    """The redaction covers OpenAI keys, bearer tokens and labelled keys."""
    text = redact(f"key {CANARY_KEY} Authorization: Bearer abc.def-ghi123 api_key='hunter2hunter'")
    assert CANARY_KEY not in text
    assert "abc.def-ghi123" not in text
    assert "hunter2hunter" not in text


def test_nothing_is_written_until_logging_is_configured(
    mode: Mode, capsys: pytest.CaptureFixture[str]
) -> None:
    """An application that never configured structlog sees no output from the library."""
    structlog.reset_defaults()

    @retried()
    @mode.make
    def f() -> int:
        return 1

    mode.invoke(f)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""


def test_logging_set_up_during_a_call_begins_with_the_next_call(mode: Mode, tmp_path: Path) -> None:
    """Whether a call's events are written is decided when it starts: logging set up while
    it runs writes none of its lines (never an ``llm.call`` without its write-ahead line),
    and every line of the next call."""
    structlog.reset_defaults()
    log = tmp_path / "events.jsonl"
    api = client(Script(ok(chat_body()), ok(chat_body())), mode)

    @cost_tracked(operation="titles")
    @retried()
    @mode.make
    def title(n: int) -> Steps[str]:
        if n == 1:
            configure_logging(file=log)
        r = yield api.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
        return r.choices[0].message.content or ""

    mode.invoke(title, 1)
    assert log.read_text() == ""
    mode.invoke(title, 2)
    events = [json.loads(x)["event"] for x in log.read_text().splitlines()]
    assert events.count("llm.attempt.sent") == 1
    assert events.count("llm.call") == 1


def test_import_loads_neither_openai_nor_tiktoken() -> None:
    """Importing the package does no work: no openai, no tiktoken, no logging setup."""
    code = (
        "import sys, logging, structlog\n"
        "import prismq_llmtools\n"
        "heavy = ('openai', 'tiktoken', 'genai_prices')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy]\n"
        "assert not bad, bad\n"
        "assert not structlog.is_configured()\n"
        "assert not logging.getLogger().handlers\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_prompt_and_completion_are_logged_only_when_the_site_opts_in(
    mode: Mode, events: list[dict[str, Any]]
) -> None:
    """log_content adds gen_ai.input.messages and gen_ai.output.messages, in the conventions'
    message shape; without it no text is logged."""
    api = client(Script(ok(), ok()), mode)

    @cost_tracked()
    @mode.make
    def ask(messages: list[dict[str, str]], *, model: str = "gpt-4o-mini") -> Steps[str]:
        r = yield api.chat.completions.create(model=model, messages=messages)
        return r.choices[0].message.content or ""

    secret_prompt = [{"role": "user", "content": "private words"}]
    mode.invoke(ask, secret_prompt)
    assert "private words" not in json.dumps(events)
    ask.llm.configure(log_content=True)
    mode.invoke(ask, secret_prompt)
    line = [e for e in events if e["event"] == "llm.call"][-1]
    assert line["gen_ai.input.messages"] == [
        {"role": "user", "parts": [{"type": "text", "content": "private words"}]}
    ]
    assert line["gen_ai.output.messages"] == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Hello there"}],
            "finish_reason": "stop",
        }
    ]
    assert "gen_ai.prompt" not in line
    assert "gen_ai.completion" not in line


def test_logged_content_is_the_prompt_as_asked(mode: Mode, events: list[dict[str, Any]]) -> None:
    """A site whose prompt was counted before it ran (here by the write-ahead line) still
    logs the messages as they were asked, though the function appended its answer."""

    @cost_tracked()
    @mode.make
    def ask(messages: list[dict[str, str]], *, model: str = "gpt-4o-mini") -> str:
        messages.append({"role": "assistant", "content": "an answer"})
        return "an answer"

    ask.llm.configure(log_content=True)
    prompt = [{"role": "user", "content": "a question"}]
    mode.invoke(ask, prompt)
    assert len(prompt) == 2
    (line,) = [e for e in events if e["event"] == "llm.call"]
    assert line["gen_ai.input.messages"] == [
        {"role": "user", "parts": [{"type": "text", "content": "a question"}]}
    ]
