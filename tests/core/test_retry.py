"""@retried: which failures are retried, how long it waits, and what the caller finally sees.

Tests taking ``mode`` run once with a sync function and once with an async one (the site's
two drivers; see tests/drivers.py).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
from typing import Any

import httpx2
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prismq_llmtools import ConfigurationError, IncompleteStreamError, retried, token_budgeted
from prismq_llmtools.budget import budget_status
from prismq_llmtools.call import current_call
from prismq_llmtools.openai.errors import RetryAdvice, classify_openai_error
from prismq_llmtools.openai.headers import RETRY_AFTER_CAP_S, RETRY_AFTER_MAX_S, read_retry_after
from prismq_llmtools.stores import StateRegistry
from prismq_llmtools.testing.clock import FakeClock
from tests.drivers import Mode

from .fakes import Script, chat_body, client, error, ok


def _status_error(
    status: int, code: str | None = None, headers: dict[str, str] | None = None
) -> openai.APIStatusError:
    api = client(Script(error(status, code, headers)), max_retries=0)
    try:
        api.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    except openai.APIStatusError as exc:
        return exc
    raise AssertionError("no error")


@pytest.mark.parametrize(
    ("status", "code", "retry"),
    [
        (408, None, True),
        (409, None, True),
        (429, "rate_limit_exceeded", True),
        (429, "insufficient_quota", False),
        (500, None, True),
        (502, None, True),
        (503, None, True),
        (400, None, False),
        (400, "context_length_exceeded", False),
        (401, None, False),
        (403, None, False),
        (404, None, False),
        (422, None, False),
    ],
)
def test_status_classification(status: int, code: str | None, retry: bool) -> None:
    """Only transient statuses are retried; insufficient_quota and 4xx never are."""
    assert classify_openai_error(_status_error(status, code)).retry is retry


def test_connection_timeout_and_malformed_body_are_transient() -> None:
    """Timeouts, connection errors, non-JSON 200 bodies and cut streams are transient."""
    request = httpx2.Request("POST", "http://x")
    assert classify_openai_error(openai.APITimeoutError(request=request)).retry
    assert classify_openai_error(openai.APIConnectionError(request=request)).retry
    assert classify_openai_error(json.JSONDecodeError("x", "", 0)).retry
    assert classify_openai_error(IncompleteStreamError("cut")).retry
    assert not classify_openai_error(ValueError("mine")).retry


def test_retry_after_headers_are_read() -> None:
    """retry-after-ms wins over Retry-After; both are parsed to seconds."""
    exc = _status_error(429, "rate_limit_exceeded", {"retry-after-ms": "250", "retry-after": "9"})
    assert classify_openai_error(exc).after_s == pytest.approx(0.25)
    exc = _status_error(503, None, {"retry-after": "2"})
    assert classify_openai_error(exc).after_s == 2


@pytest.mark.parametrize(
    ("headers", "seconds", "problem"),
    [
        ({"retry-after": "7"}, 7.0, None),
        ({"retry-after": "0"}, 0.0, None),
        ({"retry-after-ms": "1500"}, 1.5, None),
        ({"retry-after": "86400"}, 86_400.0, None),
        ({"retry-after": "inf"}, None, "not_finite"),
        ({"retry-after": "Infinity"}, None, "not_finite"),
        ({"retry-after": "nan"}, None, "not_finite"),
        ({"retry-after": "-5"}, None, "negative"),
        ({"retry-after": "1e300"}, None, "absurd"),
        ({"retry-after": "86401"}, None, "absurd"),
        ({"retry-after": "soon"}, None, "not_a_number"),
        ({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}, None, "not_a_number"),
        ({"retry-after-ms": "nan", "retry-after": "3"}, 3.0, None),
        ({"retry-after-ms": "-1", "retry-after": "x"}, None, "negative"),
    ],
)
def test_a_retry_after_is_used_only_when_it_is_a_bounded_number(
    headers: dict[str, str], seconds: float | None, problem: str | None
) -> None:
    """A requested wait is a finite number of seconds from 0 to a day; anything else is
    unusable, and says why (the first usable of retry-after-ms and Retry-After wins)."""
    read = read_retry_after(headers)
    assert read is not None
    assert (read.seconds, read.problem) == (seconds, problem)
    assert read_retry_after({}) is None
    assert RETRY_AFTER_MAX_S == 86_400.0


@given(
    st.one_of(
        st.text(max_size=30),
        st.floats().map(repr),
        st.floats().map(str),
        st.integers().map(str),
    ),
    st.sampled_from(["retry-after", "retry-after-ms"]),
)
def test_any_retry_after_is_a_bounded_wait_or_none(value: str, name: str) -> None:
    """Whatever the server sends, the wait read from it is a finite number of seconds from 0
    to a day, or there is none and the reason is given."""
    read = read_retry_after({name: value})
    assert read is not None
    if read.seconds is None:
        assert read.problem in ("not_a_number", "not_finite", "negative", "absurd")
    else:
        assert read.problem is None
        assert 0.0 <= read.seconds <= RETRY_AFTER_MAX_S


@pytest.mark.parametrize("value", ["inf", "nan", "-5", "1e300", "soon"])
def test_an_unusable_retry_after_falls_back_to_the_backoff(mode: Mode, value: str) -> None:
    """@retried ignores a Retry-After that is no bounded number: it backs off as if none was
    sent (full jitter, at most max_wait_s), instead of failing or waiting forever."""
    clock = FakeClock()
    script = Script(error(429, "rate_limit_exceeded", {"retry-after": value}), ok(chat_body()))
    api = client(script, mode)

    @retried(attempts=3, max_wait_s=2.0, clock=clock)
    @mode.make
    def ask() -> Any:
        return api.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )

    mode.invoke(ask)
    assert len(clock.sleeps) == 1
    assert 0.0 <= clock.sleeps[0] <= 2.0


def test_the_cap_is_one_setting_of_retried_and_rate_limited() -> None:
    """@retried and @rate_limited share retry_after_cap_s: one default, one settings key."""
    from prismq_llmtools import rate_limited
    from prismq_llmtools.ratelimit.policy import RateLimit
    from prismq_llmtools.retry import RetryPolicy

    assert RetryPolicy().retry_after_cap_s == RateLimit(rpm=1).retry_after_cap_s == 60.0
    for decorator in (retried, rate_limited):
        default = inspect.signature(decorator).parameters["retry_after_cap_s"].default
        assert default is RETRY_AFTER_CAP_S


def test_retry_after_is_honoured_on_the_fake_clock(
    mode: Mode, events: list[dict[str, Any]]
) -> None:
    """The server's Retry-After is the wait, slept on the injected clock, each attempt logged."""
    clock = FakeClock()
    script = Script(error(429, "rate_limit_exceeded", {"retry-after": "3"}), ok(chat_body()))
    api = client(script, mode)

    @retried(attempts=3, clock=clock)
    @mode.make
    def ask() -> Any:
        return api.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )

    mode.invoke(ask)
    assert clock.sleeps == [3.0]
    kinds = [e["event"] for e in events]
    assert kinds == [
        "llm.attempt.sent",
        "llm.attempt",
        "llm.retry",
        "llm.attempt.sent",
        "llm.attempt",
        "llm.call",
    ]
    retry = events[2]
    assert retry["wait_s"] == 3.0
    assert retry["status_code"] == 429
    assert retry["error.type"] == "RateLimitError"
    assert events[-1]["retries"] == 1
    assert events[-1]["rate_limited"] == 1


def test_retry_after_longer_than_the_cap_gives_up(mode: Mode) -> None:
    """A server wait beyond retry_after_cap_s is not honoured: the error surfaces at once."""
    clock = FakeClock()
    script = Script(error(429, "rate_limit_exceeded", {"retry-after": "600"}))
    api = client(script, mode)

    @retried(attempts=5, retry_after_cap_s=60, clock=clock)
    @mode.make
    def ask() -> Any:
        return api.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )

    with pytest.raises(openai.RateLimitError):
        mode.invoke(ask)
    assert clock.sleeps == []


def test_exhausted_attempts_raise_the_original_exception(mode: Mode) -> None:
    """After the last attempt the caller gets the openai exception, not a wrapper."""
    clock = FakeClock()
    api = client(Script(*(error(503) for _ in range(4))), mode)

    @retried(attempts=4, initial_wait_s=1, max_wait_s=8, clock=clock)
    @mode.make
    def ask() -> Any:
        return api.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )

    with pytest.raises(openai.InternalServerError):
        mode.invoke(ask)
    assert len(clock.sleeps) == 3
    assert all(0 <= s <= 8 for s in clock.sleeps)


def test_permanent_errors_are_not_retried(mode: Mode) -> None:
    """A 400 is raised after one attempt."""
    clock = FakeClock()
    script = Script(error(400, "context_length_exceeded"))
    api = client(script, mode)

    @retried(attempts=5, clock=clock)
    @mode.make
    def ask() -> Any:
        return api.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )

    with pytest.raises(openai.BadRequestError):
        mode.invoke(ask)
    assert len(script.requests) == 1


def test_deadline_stops_retrying(mode: Mode) -> None:
    """No wait starts that would end past the deadline."""
    clock = FakeClock()
    calls = []

    @retried(attempts=100, initial_wait_s=4, max_wait_s=4, deadline_s=10, clock=clock,
             classify=lambda e: RetryAdvice(True, after_s=4))  # fmt: skip
    @mode.make
    def flaky() -> None:
        calls.append(clock.now())
        raise RuntimeError("again")

    with pytest.raises(RuntimeError):
        mode.invoke(flaky)
    assert clock.sleeps == [4, 4]
    assert len(calls) == 3


def test_retries_wait_on_the_site_clock(mode: Mode) -> None:
    """Sites wait on their clock (async ones with its asleep) and call the function again."""
    clock = FakeClock()
    attempts = []

    @retried(attempts=3, clock=clock, classify=lambda e: RetryAdvice(True, after_s=1.5))
    @mode.make
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 2:
            raise RuntimeError("once")
        return "ok"

    assert mode.invoke(flaky) == "ok"
    assert attempts == [1, 1]
    assert clock.sleeps == [1.5]


class InterruptedWhileWaiting(FakeClock):
    """A clock whose waits are interrupted: Ctrl-C during a sync sleep, and the same
    KeyboardInterrupt raised inside an async one."""

    def sleep(self, seconds: float) -> None:
        raise KeyboardInterrupt

    async def asleep(self, seconds: float) -> None:
        raise KeyboardInterrupt


def test_an_interrupted_backoff_ends_the_call_and_releases_its_budget(mode: Mode) -> None:
    """An interrupt during the wait between attempts ends the call: no further attempt,
    the budget reservation released, no current Call left behind."""
    registry = StateRegistry()
    attempts = []

    @retried(attempts=5, clock=InterruptedWhileWaiting(), classify=lambda e: RetryAdvice(True))
    @token_budgeted(daily_tokens=1_000, registry=registry, model="gpt-4o")
    @mode.make
    def flaky(text: str) -> str:
        attempts.append(1)
        raise RuntimeError("transient")

    with pytest.raises(KeyboardInterrupt):
        mode.invoke(flaky, "hello")
    assert attempts == [1]
    assert budget_status(flaky)["daily_tokens"]["reserved"] == 0
    assert current_call.get() is None
    assert flaky.llm.stats() == {"calls": 1, "errors": 1}


async def test_a_task_cancelled_during_the_backoff_is_not_attempted_again() -> None:
    """Cancellation, the async counterpart of an interrupt: a task cancelled while it waits
    between attempts makes no further attempt and releases its budget reservation."""
    registry = StateRegistry()
    attempts = []
    waiting = asyncio.Event()

    class Stuck(FakeClock):
        async def asleep(self, seconds: float) -> None:
            waiting.set()
            await asyncio.Event().wait()  # until cancelled

    @retried(attempts=5, clock=Stuck(), classify=lambda e: RetryAdvice(True, after_s=1))
    @token_budgeted(daily_tokens=1_000, registry=registry, model="gpt-4o")
    async def flaky(text: str) -> str:
        attempts.append(1)
        raise RuntimeError("transient")

    task = asyncio.create_task(flaky("hello"))
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert attempts == [1]
    assert budget_status(flaky)["daily_tokens"]["reserved"] == 0
    assert flaky.llm.stats() == {"calls": 1, "errors": 1}


def test_timeout_is_recorded_as_possibly_billed(mode: Mode, events: list[dict[str, Any]]) -> None:
    """A client-side timeout may still have been served: the attempt says so."""
    clock = FakeClock()

    def slow(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("slow", request=request)

    api = client(Script(slow, ok()), mode)

    @retried(attempts=2, clock=clock)
    @mode.make
    def ask() -> Any:
        return api.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )

    mode.invoke(ask)
    first = next(e for e in events if e["event"] == "llm.attempt")
    assert first["possibly_billed"] is True
    assert first["error.type"] == "APITimeoutError"


@pytest.mark.parametrize(
    "bad",
    [{"attempts": 0}, {"max_wait_s": -1}, {"deadline_s": 0}, {"retry_after_cap_s": math.nan}],
)
def test_bad_settings_fail_at_decoration(bad: dict[str, Any]) -> None:
    """Invalid policy values are a ConfigurationError at decoration, naming the site."""
    with pytest.raises(ConfigurationError, match=r"site 'r': .* \(decorator argument\)"):
        retried(**bad, name="r")(lambda: None)


def test_a_failing_worst_case_never_fails_a_logged_call(
    mode: Mode, events: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write-ahead line is written only with logging on, so nothing it computes may fail
    the call: an unexpected error there leaves the line without its worst case."""
    from prismq_llmtools.site import flow

    def broken(call: Any) -> None:
        raise RuntimeError("not a counting error")

    monkeypatch.setattr(flow, "worst_case_of", broken)
    api = client(Script(ok(chat_body())), mode)

    @retried(attempts=2)
    @mode.make
    def ask() -> Any:
        return api.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )

    mode.invoke(ask)
    sent = [e for e in events if e["event"] == "llm.attempt.sent"]
    assert len(sent) == 1
    assert "worst_cost_usd" not in sent[0]
    assert [e["event"] for e in events][-1] == "llm.call"
