"""The core through the real openai client against the simulator: usage, faults, streams.

Tests taking ``mode`` run once with a sync function on ``openai.OpenAI`` and once with an
async one on ``openai.AsyncOpenAI`` (see tests/drivers.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from prismq_llmtools import cost_tracked, retried
from prismq_llmtools.testing.clock import FakeClock
from prismq_llmtools.testing.simulator import Fault, FaultKind, Simulator, SimulatorConfig
from tests.drivers import Mode, Steps

MESSAGES = [{"role": "user", "content": "Write a haiku about bicycles."}]
PROMPT = "Write a haiku about bicycles."


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(seed=3)) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _fresh(sim: Simulator) -> None:
    sim.reset(buckets=True, prompt_cache=True, faults=True)


def _calls(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "llm.call"]


def test_usage_matches_what_the_server_billed(
    mode: Mode, sim: Simulator, events: list[dict[str, Any]]
) -> None:
    """The observed usage equals the tokens the simulator says it billed."""
    api = mode.client_for(sim, max_retries=2)

    @cost_tracked()
    @mode.make
    def haiku() -> Steps[str]:
        r = yield api.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=40)
        return r.choices[0].message.content or ""

    assert mode.invoke(haiku)
    (line,) = _calls(events)
    stats = sim.stats()
    assert line["gen_ai.usage.input_tokens"] == stats.prompt_tokens
    assert line["gen_ai.usage.output_tokens"] == stats.completion_tokens
    assert line["usage_source"] == "observed"


def test_streaming_usage(mode: Mode, sim: Simulator, events: list[dict[str, Any]]) -> None:
    """A stream's usage is captured from its final chunk, hidden from the caller."""
    api = mode.client_for(sim)

    @cost_tracked()
    @mode.make
    def haiku() -> Steps[str]:
        stream = yield api.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=40, stream=True
        )
        chunks = yield mode.chunks(stream)
        return "".join(c.choices[0].delta.content or "" for c in chunks)

    assert mode.invoke(haiku)
    (line,) = _calls(events)
    assert line["gen_ai.usage.output_tokens"] == sim.stats().completion_tokens
    assert line["usage_source"] == "observed"


def test_early_break_on_a_real_stream_is_estimated(
    sim: Simulator, events: list[dict[str, Any]]
) -> None:
    """Breaking out of a simulator stream still records usage, marked estimated (the async
    twin, which closes the stream it leaves, is the Responses test below)."""
    api = sim.client()

    @cost_tracked()
    def first() -> str:
        stream = api.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=60, stream=True
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                return chunk.choices[0].delta.content
        return ""

    assert first()
    (line,) = _calls(events)
    assert line["usage_source"] == "estimated"
    assert line["gen_ai.usage.input_tokens"] == sim.stats().prompt_tokens


def test_streamed_responses_usage_is_the_billed_usage(
    mode: Mode, sim: Simulator, events: list[dict[str, Any]]
) -> None:
    """A streamed Responses API call: usage from its final event, as the server billed it."""
    api = mode.client_for(sim)

    @cost_tracked()
    @mode.make
    def haiku() -> Steps[str]:
        stream = yield api.responses.create(model="o4-mini", input=PROMPT, stream=True)
        events = yield mode.chunks(stream)
        return "".join(e.delta for e in events if e.type == "response.output_text.delta")

    assert mode.invoke(haiku)
    (line,) = _calls(events)
    stats = sim.stats()
    assert line["usage_source"] == "observed"
    assert line["gen_ai.usage.input_tokens"] == stats.prompt_tokens
    assert line["gen_ai.usage.output_tokens"] == stats.completion_tokens
    assert line["gen_ai.usage.reasoning.output_tokens"] == stats.reasoning_tokens > 0


async def test_async_streamed_responses_early_break_is_estimated(
    sim: Simulator, events: list[dict[str, Any]]
) -> None:
    """Leaving an async Responses stream early still records usage, marked estimated."""
    api = sim.async_client()

    @cost_tracked()
    async def first() -> str:
        stream = await api.responses.create(
            model="gpt-4o-mini", input=PROMPT, max_output_tokens=60, stream=True
        )
        async for event in stream:
            if event.type == "response.output_text.delta":
                await stream.close()
                return str(event.delta)
        return ""

    async with api:
        assert await first()
    (line,) = _calls(events)
    assert line["usage_source"] == "estimated"
    assert line["gen_ai.usage.input_tokens"] == sim.stats().prompt_tokens


def test_raw_response_usage(mode: Mode, sim: Simulator, events: list[dict[str, Any]]) -> None:
    """with_raw_response through the simulator is observed too."""
    api = mode.client_for(sim)

    @cost_tracked()
    @mode.make
    def raw() -> Any:
        return api.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)

    response = mode.invoke(raw)
    assert response.headers["x-request-id"]
    (line,) = _calls(events)
    assert line["gen_ai.usage.input_tokens"] == response.parse().usage.prompt_tokens
    assert line["request_id"] == response.headers["x-request-id"]


TRANSIENT = [
    FaultKind.RATE_LIMIT,
    FaultKind.SERVER_ERROR,
    FaultKind.BAD_GATEWAY,
    FaultKind.SERVICE_UNAVAILABLE,
    FaultKind.TIMEOUT,
    FaultKind.DROP_CONNECTION,
    FaultKind.MALFORMED_JSON,
    FaultKind.EMPTY_BODY,
]


@pytest.mark.parametrize("kind", TRANSIENT)
def test_each_transient_fault_is_retried(
    mode: Mode, sim: Simulator, kind: FaultKind, events: list[dict[str, Any]]
) -> None:
    """One injected transient fault costs one retry and the caller gets its answer."""
    sim.script(Fault(kind=kind, retry_after_s=0.5))
    api = mode.client_for(sim)
    clock = FakeClock()

    @retried(attempts=3, clock=clock)
    @mode.make
    def ask() -> Steps[str]:
        r = yield api.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
        return r.choices[0].message.content or ""

    assert mode.invoke(ask)
    (line,) = _calls(events)
    assert line["attempts"] == 2
    if kind is FaultKind.RATE_LIMIT:
        assert clock.sleeps == [0.5]
        assert line["rate_limited"] == 1


@pytest.mark.parametrize("kind", [FaultKind.STREAM_CUT, FaultKind.STREAM_NO_FINISH])
def test_broken_streams_are_retried(mode: Mode, sim: Simulator, kind: FaultKind) -> None:
    """A stream cut mid-way or ending without finish_reason is a failed attempt."""
    sim.script(Fault(kind=kind))
    api = mode.client_for(sim)

    @retried(attempts=3, clock=FakeClock())
    @mode.make
    def story() -> Steps[str]:
        stream = yield api.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=30, stream=True
        )
        chunks = yield mode.chunks(stream)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    assert mode.invoke(story)
    assert sim.stats().received == 2


@pytest.mark.parametrize("kind", [FaultKind.STREAM_CUT, FaultKind.STREAM_NO_FINISH])
def test_broken_response_streams_are_retried(mode: Mode, sim: Simulator, kind: FaultKind) -> None:
    """A Responses stream cut mid-way, or ending without its final event, is a failed
    attempt too."""
    sim.script(Fault(kind=kind))
    api = mode.client_for(sim)

    @retried(attempts=3, clock=FakeClock())
    @mode.make
    def story() -> Steps[str]:
        stream = yield api.responses.create(
            model="gpt-4o-mini", input=PROMPT, max_output_tokens=30, stream=True
        )
        events = yield mode.chunks(stream)
        return "".join(e.delta for e in events if e.type == "response.output_text.delta")

    assert mode.invoke(story)
    assert sim.stats().received == 2


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (FaultKind.INSUFFICIENT_QUOTA, openai.RateLimitError),
        (FaultKind.CONTEXT_LENGTH, openai.BadRequestError),
    ],
)
def test_permanent_faults_are_not_retried(
    mode: Mode, sim: Simulator, kind: FaultKind, error: type[Exception]
) -> None:
    """insufficient_quota and context_length_exceeded fail at once, as the original error."""
    sim.script(Fault(kind=kind))
    api = mode.client_for(sim)

    @retried(attempts=5, clock=FakeClock())
    @mode.make
    def ask() -> Any:
        return api.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with pytest.raises(error):
        mode.invoke(ask)
    assert sim.stats().received == 1
