"""Billed means counted: every request the server may have billed, whose usage could not be
read, is charged at its worst case (prompt + completion cap) in the usage, the cost, the
totals and the budget, and marked ``possibly_billed``.

Tests taking ``mode`` run once with a sync function and once with an async one.
"""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prismq_llmtools import (
    BudgetExceeded,
    IncompleteStreamError,
    cost_tracked,
    retried,
    token_budgeted,
)
from prismq_llmtools.budget import budget_status
from prismq_llmtools.cost.tracking import UsageTotals
from prismq_llmtools.openai.tokens import count_request
from prismq_llmtools.stores import StateRegistry
from prismq_llmtools.testing.clock import FakeClock
from tests.drivers import SYNC, Mode

from .fakes import RATE_HEADERS, Script, chat_body, chunk, client, ok, sse

MESSAGES = [{"role": "user", "content": "Say something short about billing."}]
CAP = 40


def _prompt() -> int:
    body = {"model": "gpt-4o", "messages": MESSAGES, "max_tokens": CAP}
    return count_request(body, endpoint="chat").prompt_tokens


def malformed() -> httpx2.Response:
    return httpx2.Response(
        200, headers={**RATE_HEADERS, "content-type": "application/json"}, content=b'{"id": "x'
    )


def empty() -> httpx2.Response:
    return httpx2.Response(200, headers={**RATE_HEADERS, "content-type": "application/json"})


def _site(mode: Mode, api: Any, totals: UsageTotals, **budget: Any) -> Any:
    @retried(attempts=3, clock=FakeClock())
    @cost_tracked(totals=totals)
    @token_budgeted(registry=StateRegistry(), **budget)
    @mode.make
    def ask(
        messages: list[dict[str, str]] = MESSAGES, model: str = "gpt-4o", max_tokens: int = CAP
    ) -> Any:
        return api.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)

    return ask


@pytest.mark.parametrize("unreadable", [malformed, empty], ids=["malformed", "empty"])
def test_an_unreadable_200_is_charged_at_its_worst_case(
    mode: Mode, events: list[dict[str, Any]], unreadable: Any
) -> None:
    """A 200 whose body cannot be read was billed: the retried call's usage, totals and budget
    hold its worst case plus the successful attempt's actual usage."""
    script = Script(unreadable(), ok(chat_body(prompt_tokens=20, completion_tokens=5)))
    totals = UsageTotals()
    ask = _site(mode, client(script, mode), totals, daily_tokens=100_000)

    mode.invoke(ask)

    worst = _prompt() + CAP
    assert len(script.requests) == 2
    total = totals.total()
    assert (total.input_tokens, total.output_tokens) == (_prompt() + 20, CAP + 5)
    assert total.possibly_billed == 1
    assert budget_status(ask)["daily_tokens"]["spent"] == worst + 25
    assert budget_status(ask)["daily_tokens"]["reserved"] == 0
    attempts = [e for e in events if e["event"] == "llm.attempt"]
    assert [a.get("possibly_billed") for a in attempts] == [True, None]
    (line,) = [e for e in events if e["event"] == "llm.call"]
    assert line["possibly_billed"] is True
    assert line["usage_source"] == "estimated"
    assert line["gen_ai.usage.output_tokens"] == CAP + 5


def test_a_retry_after_an_unreadable_answer_needs_budget_for_its_own_worst_case(
    mode: Mode,
) -> None:
    """A hard budget with room for one worst case: the first attempt is billed unread and
    takes it all, so the retry is refused before it is sent; the server saw one request."""
    worst = _prompt() + CAP
    script = Script(malformed(), ok())
    totals = UsageTotals()
    ask = _site(mode, client(script, mode), totals, daily_tokens=worst + worst // 2)

    with pytest.raises(BudgetExceeded):
        mode.invoke(ask)

    assert len(script.requests) == 1
    status = budget_status(ask)["daily_tokens"]
    assert (status["spent"], status["reserved"]) == (worst, 0)
    assert totals.total().usage.total_tokens == worst


def test_a_cut_stream_is_charged_at_its_worst_case(mode: Mode) -> None:
    """A stream that ends without its finish reason or usage may have been generated up to
    its cap: charged at prompt + cap, and retried."""
    cut = sse([chunk("Hel"), chunk("lo")], done=False)
    whole = sse(
        [
            chunk("Hi", "stop"),
            chunk(None, usage={"prompt_tokens": 20, "completion_tokens": 2}),
        ]
    )
    script = Script(cut, whole)
    totals = UsageTotals()
    api = client(script, mode)

    def read() -> str:
        stream = api.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, max_tokens=CAP, stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    async def aread() -> str:
        stream = await api.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, max_tokens=CAP, stream=True
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    ask = retried(attempts=2, clock=FakeClock())(
        cost_tracked(totals=totals)(aread if mode.is_async else read)
    )
    assert mode.invoke(ask) == "Hi"
    total = totals.total()
    assert (total.input_tokens, total.output_tokens) == (_prompt() + 20, CAP + 2)
    assert total.possibly_billed == 1


def test_a_stream_cut_without_retries_still_counts(events: list[dict[str, Any]]) -> None:
    """Without @retried the cut stream is the caller's answer; it still counts at its worst
    case and the call says possibly_billed."""
    api = client(Script(sse([chunk("Hel")], done=False)))
    totals = UsageTotals()

    @cost_tracked(totals=totals)
    def ask() -> str:
        stream = api.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, max_tokens=CAP, stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    assert ask() == "Hel"
    assert totals.total().usage.total_tokens == _prompt() + CAP
    (line,) = [e for e in events if e["event"] == "llm.call"]
    assert line["possibly_billed"] is True


def test_a_timeout_then_a_success_counts_both(mode: Mode) -> None:
    """A read timeout may have been served: its worst case stays in the usage after the
    retry succeeds (it used to be replaced by the successful attempt's usage)."""

    def slow(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("slow", request=request)

    totals = UsageTotals()
    ask = _site(mode, client(Script(slow, ok()), mode), totals, daily_tokens=100_000)
    mode.invoke(ask)
    assert totals.total().usage.total_tokens == _prompt() + CAP + 15
    assert budget_status(ask)["daily_tokens"]["spent"] == _prompt() + CAP + 15


def test_a_request_that_never_left_costs_nothing(mode: Mode) -> None:
    """A connection that could not be opened cannot have been billed."""

    def refused(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    totals = UsageTotals()
    ask = _site(mode, client(Script(refused, refused, refused), mode), totals, daily_tokens=10**5)
    with pytest.raises(openai.APIConnectionError):
        mode.invoke(ask)
    assert totals.total().usage.total_tokens == 0
    assert totals.total().possibly_billed == 0
    assert budget_status(ask)["daily_tokens"]["spent"] == 0


def test_incomplete_stream_error_is_what_the_caller_sees_after_the_last_attempt() -> None:
    """Every attempt cut: each counts, and the caller gets IncompleteStreamError."""
    api = client(Script(*(sse([chunk("x")], done=False) for _ in range(2))))
    totals = UsageTotals()

    @retried(attempts=2, clock=FakeClock())
    @cost_tracked(totals=totals)
    def ask() -> str:
        stream = api.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, max_tokens=CAP, stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    with pytest.raises(IncompleteStreamError):
        ask()
    assert totals.total().usage.total_tokens == 2 * (_prompt() + CAP)
    assert totals.total().possibly_billed == 2


_OUTCOMES = st.lists(
    st.tuples(
        st.sampled_from(["ok", "malformed", "empty", "read_timeout", "connect", "server_error"]),
        st.integers(0, CAP),  # completion tokens the server generated (and billed, if it did)
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(outcomes=_OUTCOMES, room=st.integers(1, 8))
def test_what_the_server_bills_never_exceeds_a_hard_budget(
    outcomes: list[tuple[str, int]], room: int
) -> None:
    """Whatever mix of answers, unreadable answers, timeouts and failures the server gives,
    the tokens it bills never exceed a hard budget, and the budget's count is never below
    them."""
    prompt = _prompt()
    billed = [0]
    answers = iter(outcomes)

    def server(request: httpx2.Request) -> httpx2.Response:
        kind, completion = next(answers)
        if kind in ("connect", "server_error"):
            if kind == "connect":
                raise httpx2.ConnectError("refused", request=request)
            return httpx2.Response(500, json={"error": {"message": "boom"}})
        billed[0] += prompt + completion
        if kind == "read_timeout":
            raise httpx2.ReadTimeout("slow", request=request)
        if kind == "malformed":
            return malformed()
        if kind == "empty":
            return empty()
        return ok(chat_body(prompt_tokens=prompt, completion_tokens=completion))

    limit = room * (prompt + CAP) + (prompt + CAP) // 2
    ask = _site(SYNC, client(server), UsageTotals(), daily_tokens=limit)
    for _ in range(len(outcomes)):
        try:
            ask()
        except BudgetExceeded:
            break
        except (openai.APIError, ValueError):  # every attempt failed: the next call
            continue
        except StopIteration:  # the script ran out in the middle of a call
            break
    spent = budget_status(ask)["daily_tokens"]["spent"]
    assert billed[0] <= limit
    assert spent >= billed[0]
