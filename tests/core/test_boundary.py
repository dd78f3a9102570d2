"""Usage and headers observed at the openai client boundary, through the real client.

Tests taking ``mode`` run once with a sync function on ``openai.OpenAI`` and once with an
async one on ``openai.AsyncOpenAI`` (see tests/drivers.py).
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from prismq_llmtools import cost_tracked, retried
from prismq_llmtools.call import Call
from prismq_llmtools.openai import boundary
from prismq_llmtools.testing.clock import FakeClock
from tests.aspects import StubAspect
from tests.drivers import Mode, Steps

from .fakes import Script, chat_body, chunk, client, error, ok, sse

USAGE = {"prompt_tokens": 9, "completion_tokens": 2}


def _calls(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "llm.call"]


def test_plain_text_function_gets_observed_usage(mode: Mode, events: list[dict[str, Any]]) -> None:
    """A function returning text still reports the usage of the request it made."""
    script = Script(ok(chat_body(prompt_tokens=40, completion_tokens=7, cached_tokens=8)))
    api = client(script, mode)

    @cost_tracked(operation="titles")
    @mode.make
    def title(article: str, *, model: str = "gpt-4o-mini") -> Steps[str]:
        resp = yield api.chat.completions.create(
            model=model, messages=[{"role": "user", "content": article}]
        )
        return resp.choices[0].message.content or ""

    assert mode.invoke(title, "an article") == "Hello there"
    (line,) = _calls(events)
    assert line["usage_source"] == "observed"
    assert line["gen_ai.usage.input_tokens"] == 40
    assert line["gen_ai.usage.output_tokens"] == 7
    assert line["gen_ai.usage.cache_read.input_tokens"] == 8
    assert line["gen_ai.request.model"] == "gpt-4o-mini"
    assert line["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert line["request_id"] == "req_fake"
    assert line["operation"] == "titles"
    assert line["cost_usd"] > 0


def test_returned_response_object_is_read_when_the_boundary_is_off(
    mode: Mode, events: list[dict[str, Any]]
) -> None:
    """Without instrumentation, usage comes from the response the function returns."""
    api = client(Script(ok(chat_body(prompt_tokens=5, completion_tokens=1))), mode)

    @cost_tracked()
    @mode.make
    def ask() -> Any:
        return api.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )

    boundary.uninstrument()
    try:
        mode.invoke(ask)
    finally:
        boundary.instrument()
    (line,) = _calls(events)
    assert line["usage_source"] == "response"
    assert line["gen_ai.usage.input_tokens"] == 5


def test_with_raw_response_is_observed(mode: Mode, events: list[dict[str, Any]]) -> None:
    """``with_raw_response`` results are parsed once for usage; the caller can still parse."""
    api = client(Script(ok(chat_body(prompt_tokens=11, completion_tokens=4))), mode)

    @cost_tracked()
    @mode.make
    def ask() -> Any:
        return api.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )

    raw = mode.invoke(ask)
    assert raw.parse().usage.prompt_tokens == 11
    (line,) = _calls(events)
    assert line["gen_ai.usage.input_tokens"] == 11
    assert line["usage_source"] == "observed"


def _stream_script() -> Script:
    return Script(
        sse([chunk("Hel"), chunk("lo"), chunk(None, finish="stop"), chunk(None, usage=USAGE)])
    )


def test_stream_usage_is_requested_and_the_usage_chunk_hidden(
    mode: Mode, events: list[dict[str, Any]]
) -> None:
    """include_usage is added when the caller did not ask, and its chunk is not shown."""
    script = _stream_script()
    api = client(script, mode)

    @cost_tracked()
    @mode.make
    def story() -> Steps[str]:
        stream = yield api.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True
        )
        chunks = yield mode.chunks(stream)
        return "".join(c.choices[0].delta.content or "" for c in chunks)

    assert (
        mode.invoke(story) == "Hello"
    )  # no IndexError: the usage-only chunk never reached the caller
    assert script.requests[0]["stream_options"] == {"include_usage": True}
    (line,) = _calls(events)
    assert line["gen_ai.usage.input_tokens"] == 9
    assert line["usage_source"] == "observed"


def test_returned_stream_defers_the_call_until_consumed(
    mode: Mode, events: list[dict[str, Any]]
) -> None:
    """A function returning a stream ends its Call when the caller finishes the stream."""
    api = client(_stream_script(), mode)

    @cost_tracked()
    @mode.make
    def story() -> Any:
        return api.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            stream_options={"include_usage": True},
        )

    stream = mode.invoke(story)
    assert _calls(events) == []
    chunks = mode.invoke(mode.chunks, stream)
    assert chunks[-1].usage is not None  # the caller asked for usage: it sees the chunk
    (line,) = _calls(events)
    assert line["gen_ai.usage.output_tokens"] == 2


def test_early_break_still_reports_usage(events: list[dict[str, Any]]) -> None:
    """Breaking out of a stream finalises the Call with an estimate of what was billed.
    (Sync only: an async stream left early is closed by its reader, as
    tests/core/test_against_simulator.py does.)"""
    api = client(_stream_script())

    @cost_tracked()
    def first_word() -> str:
        stream = api.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], stream=True
        )
        for c in stream:
            return c.choices[0].delta.content or ""
        return ""

    assert first_word() == "Hel"
    (line,) = _calls(events)
    assert line["usage_source"] == "estimated"
    assert line["gen_ai.usage.input_tokens"] > 0
    assert line["gen_ai.usage.output_tokens"] >= 1


def test_stream_without_finish_reason_is_retried(mode: Mode, clock: FakeClock) -> None:
    """A stream that ends with no finish_reason is a failed attempt under @retried."""
    script = Script(
        sse([chunk("partial")]),
        sse([chunk("whole"), chunk(None, finish="stop"), chunk(None, usage=USAGE)]),
    )
    api = client(script, mode)

    @retried(attempts=3, clock=clock)
    @mode.make
    def story() -> Steps[str]:
        stream = yield api.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True
        )
        chunks = yield mode.chunks(stream)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    assert mode.invoke(story) == "whole"
    assert len(script.requests) == 2


def test_sdk_retries_are_off_inside_retried_sites(mode: Mode, clock: FakeClock) -> None:
    """One retry owner: the client's max_retries=2 does not multiply @retried's attempts."""
    script = Script(error(500), error(500), error(500))
    api = client(script, mode, max_retries=2)

    @retried(attempts=3, clock=clock)
    @mode.make
    def ask() -> Any:
        return api.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )

    with pytest.raises(openai.InternalServerError):
        mode.invoke(ask)
    assert len(script.requests) == 3  # not 9


def test_no_active_call_means_no_interference(mode: Mode) -> None:
    """Outside decorated functions the instrumented client behaves exactly as before."""
    boundary.instrument()
    script = Script(error(500), ok())
    api = client(script, mode, max_retries=1)
    api._client  # noqa: B018 (touch the client)
    messages = [{"role": "user", "content": "x"}]
    resp = mode.invoke(api.chat.completions.create, model="gpt-4o", messages=messages)
    assert resp.usage is not None
    assert len(script.requests) == 2


def test_instrumentation_is_idempotent_and_reversible() -> None:
    """instrument() twice wraps once; uninstrument() restores the original methods."""
    from openai._base_client import SyncAPIClient

    boundary.instrument()
    wrapped = SyncAPIClient.__dict__["request"]
    boundary.instrument()
    assert SyncAPIClient.__dict__["request"] is wrapped
    boundary.uninstrument()
    assert not hasattr(SyncAPIClient.__dict__["request"], "__wrapped__")
    boundary.instrument()
    assert SyncAPIClient.__dict__["request"] is not wrapped  # a fresh wrapper


def test_rate_limit_headers_reach_the_call(mode: Mode) -> None:
    """x-ratelimit-* headers of the last response are parsed onto the Call."""
    seen: list[Call] = []
    api = client(Script(ok()), mode)

    from prismq_llmtools.site.decorate import attach

    class Keep(StubAspect):
        kind = "keep"

        def finish(self, call: Call) -> None:
            seen.append(call)

    @attach(Keep())
    @mode.make
    def ask() -> Any:
        return api.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )

    mode.invoke(ask)
    headers = seen[0].rate_headers
    assert headers is not None
    assert headers.remaining_requests == 499
    assert headers.reset_requests_s == pytest.approx(0.12)
    assert headers.reset_tokens_s == 360
