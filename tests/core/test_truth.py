"""Usage, usage source, cost and totals of an invocation are the same whatever else is true.

One parametrised test over every non-empty subset of the six decorators, both stacking orders,
logging on and off, sync and async functions, and every kind of result a function gives
(an OpenAI response object, an OpenAI-shaped dict, plain text with a described request,
plain text with nothing described, a stream, and plain text from a real client request).
Each case is compared with the same kind of call under ``@cost_tracked`` alone.

The case runs inside an outer ``@cost_tracked`` function, so that the invocation's usage and
cost are visible in the totals (nested calls roll up) even when the subset has no
``@cost_tracked`` of its own and logging is off.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
import structlog
from openai.types.chat import ChatCompletion
from structlog.testing import capture_logs

from prismq_llmtools import (
    batched,
    cached,
    cost_tracked,
    rate_limited,
    retried,
    token_budgeted,
    usage_totals,
)
from prismq_llmtools.testing.clock import FakeClock
from tests.core.fakes import Script, chat_body, chunk, client, ok, sse
from tests.drivers import Mode

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Write a title for an article about tides."}]
KINDS = ("response", "dict", "described_text", "undescribed_text", "stream", "client_text")
NAMES = ("batched", "cost_tracked", "cached", "rate_limited", "retried", "token_budgeted")
SUBSETS = [s for n in range(1, len(NAMES) + 1) for s in itertools.combinations(NAMES, n)]

_case_numbers = itertools.count()


def _decorators(names: tuple[str, ...], clock: FakeClock, cache_dir: Path) -> list[Any]:
    make: dict[str, Callable[[], Any]] = {
        "batched": lambda: batched(max_concurrency=2),
        "cost_tracked": lambda: cost_tracked(),
        "cached": lambda: cached(location=cache_dir, clock=clock),
        "rate_limited": lambda: rate_limited(rpm=10_000, tpm=10_000_000, key="truth", clock=clock),
        "retried": lambda: retried(attempts=3, clock=clock),
        "token_budgeted": lambda: token_budgeted(daily_tokens=10_000_000, clock=clock),
    }
    return [make[name]() for name in names]


def _stream_answer(_request: Any) -> Any:
    return sse(
        [
            chunk("Tides"),
            chunk(" rise", finish="stop"),
            chunk(None, usage={"prompt_tokens": 21, "completion_tokens": 4}),
        ]
    )


def _function(kind: str, mode: str) -> Callable[..., Any]:
    """A user function of ``kind`` (sync or async), with a name of its own."""
    api = client(lambda _r: ok(chat_body(prompt_tokens=17, completion_tokens=5)))
    aapi = client(lambda _r: ok(chat_body(prompt_tokens=17, completion_tokens=5)), Mode("async"))
    stream_api = client(Script(*[_stream_answer] * 4))
    astream_api = client(Script(*[_stream_answer] * 4), Mode("async"))
    response = ChatCompletion.model_validate(chat_body(prompt_tokens=12, completion_tokens=3))
    as_dict = chat_body(prompt_tokens=9, completion_tokens=2)

    def result(messages: list[dict[str, str]], model: str) -> Any:
        if kind == "response":
            return response
        if kind == "dict":
            return as_dict
        return "A title about tides"

    if kind == "undescribed_text":

        def sync_fn(article: str) -> Any:
            return f"Title for {article}"

        async def async_fn(article: str) -> Any:
            return f"Title for {article}"
    elif kind == "stream":

        def sync_fn(messages: list[dict[str, str]], model: str = MODEL) -> Any:
            return stream_api.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            )

        async def async_fn(messages: list[dict[str, str]], model: str = MODEL) -> Any:
            return await astream_api.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            )
    elif kind == "client_text":

        def sync_fn(messages: list[dict[str, str]], model: str = MODEL) -> Any:
            answer = api.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
            return answer.choices[0].message.content

        async def async_fn(messages: list[dict[str, str]], model: str = MODEL) -> Any:
            answer = await aapi.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
            return answer.choices[0].message.content
    else:

        def sync_fn(messages: list[dict[str, str]], model: str = MODEL) -> Any:
            return result(messages, model)

        async def async_fn(messages: list[dict[str, str]], model: str = MODEL) -> Any:
            return result(messages, model)

    fn = sync_fn if mode == "sync" else async_fn
    fn.__qualname__ = f"case_{next(_case_numbers)}"
    return fn


def _consume(value: Any) -> Any:
    if isinstance(value, openai.Stream):
        return "".join(c.choices[0].delta.content or "" for c in value if c.choices)
    return value


async def _aconsume(value: Any) -> Any:
    if isinstance(value, openai.AsyncStream):
        return "".join([c.choices[0].delta.content or "" async for c in value if c.choices])
    return value


def _run(fn: Any, kind: str, mode: str) -> None:
    """Call ``fn`` once inside an outer tracked function, reading any stream to its end."""
    args: tuple[Any, ...] = ("tides",) if kind == "undescribed_text" else (MESSAGES,)
    if mode == "sync":

        @cost_tracked(operation="outer", name="tests.truth.outer")
        def outer() -> None:
            _consume(fn(*args))

        outer()
    else:

        @cost_tracked(operation="outer", name="tests.truth.aouter")
        async def aouter() -> None:
            await _aconsume(await fn(*args))

        asyncio.run(aouter())


def _observe(
    names: tuple[str, ...],
    reverse: bool,
    logging_on: bool,
    mode: str,
    kind: str,
    tmp_path: Path,
) -> dict[str, Any]:
    """What one case reports: the roll-up in the totals, and its ``llm.call`` line's facts."""
    usage_totals().reset()
    clock = FakeClock()
    decorators = _decorators(names, clock, tmp_path / f"cache-{next(_case_numbers)}")
    if reverse:
        decorators.reverse()
    fn = _function(kind, mode)
    for decorate in reversed(decorators):  # the first in the list is the outermost
        fn = decorate(fn)
    lines: list[dict[str, Any]] = []
    if logging_on:
        with capture_logs() as lines:
            _run(fn, kind, mode)
    else:
        structlog.reset_defaults()
        assert not structlog.is_configured()
        _run(fn, kind, mode)
    outer = usage_totals().by_operation()["outer"]
    seen: dict[str, Any] = {
        "input_tokens": outer.input_tokens,
        "output_tokens": outer.output_tokens,
        "cost_usd": outer.cost_usd,
    }
    if "cost_tracked" in names:
        own = usage_totals().by_operation()[f"outer/{fn.llm.operation}"]
        seen["own"] = (own.input_tokens, own.output_tokens, own.cost_usd, own.calls)
    if logging_on:
        (line,) = [e for e in lines if e["event"] == "llm.call" and e["site"] == fn.llm.name]
        seen["line"] = {
            key: line.get(key)
            for key in (
                "usage_source",
                "gen_ai.usage.input_tokens",
                "gen_ai.usage.output_tokens",
                "cost_usd",
                "outcome",
            )
        }
    return seen


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[Any, dict[str, Any]]:
    """Each kind of call under ``@cost_tracked`` alone, logging on: what every case must say."""
    tmp = tmp_path_factory.mktemp("references")
    found = {
        (mode, kind): _observe(("cost_tracked",), False, True, mode, kind, tmp)
        for mode in ("sync", "async")
        for kind in KINDS
    }
    structlog.reset_defaults()
    return found


def test_the_references_are_what_really_happened(
    references: dict[Any, dict[str, Any]],
) -> None:
    """The reference of each kind is the usage the call really had, from the right source."""
    expected = {
        "response": ("response", 12, 3),
        "dict": ("response", 9, 2),
        "stream": ("observed", 21, 4),
        "client_text": ("observed", 17, 5),
    }
    for mode in ("sync", "async"):
        for kind, (source, tokens_in, tokens_out) in expected.items():
            line = references[mode, kind]["line"]
            assert line["usage_source"] == source, (mode, kind)
            assert line["gen_ai.usage.input_tokens"] == tokens_in, (mode, kind)
            assert line["gen_ai.usage.output_tokens"] == tokens_out, (mode, kind)
            assert Decimal(str(line["cost_usd"])) > 0, (mode, kind)
        described = references[mode, "described_text"]["line"]
        assert described["usage_source"] == "estimated"
        assert described["gen_ai.usage.input_tokens"] > 0
        assert described["gen_ai.usage.output_tokens"] > 0
        undescribed = references[mode, "undescribed_text"]
        assert undescribed["line"]["usage_source"] is None
        assert undescribed["input_tokens"] == 0


def _cases() -> Iterator[Any]:
    for names in SUBSETS:
        for reverse in (False, True) if len(names) > 1 else (False,):
            label = "+".join(names) or "bare"
            yield pytest.param(names, reverse, id=f"{label}{'-reversed' if reverse else ''}")


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("logging_on", [False, True], ids=["logging_off", "logging_on"])
@pytest.mark.parametrize(("names", "reverse"), list(_cases()))
def test_usage_and_cost_do_not_depend_on_stacking_or_logging(
    names: tuple[str, ...],
    reverse: bool,
    logging_on: bool,
    mode: str,
    references: dict[Any, dict[str, Any]],
    tmp_path: Path,
) -> None:
    """Every kind of call reports the usage, source and cost of ``@cost_tracked`` alone."""
    for kind in KINDS:
        reference = references[mode, kind]
        seen = _observe(names, reverse, logging_on, mode, kind, tmp_path)
        for key in ("input_tokens", "output_tokens", "cost_usd"):
            assert seen[key] == reference[key], (kind, key)
        if "own" in seen:
            assert seen["own"] == reference["own"], kind
        if logging_on:
            assert seen["line"] == reference["line"], kind
