"""``@retried``: retry transient failures, with tenacity's strategies on our clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import tenacity

from prismq_llmtools.aspect import Aspect
from prismq_llmtools.call import Call
from prismq_llmtools.clock import Clock
from prismq_llmtools.openai.errors import RetryAdvice, classify_openai_error
from prismq_llmtools.openai.headers import RETRY_AFTER_CAP_S
from prismq_llmtools.settings.rules import Integer, Number, check_fields, register_keys
from prismq_llmtools.site.core import RequestExtractor
from prismq_llmtools.site.decorate import attach
from prismq_llmtools.site.handle import LLMFunction

__all__ = ["RetryPolicy", "retried", "wait_retry_after"]

P = ParamSpec("P")
R = TypeVar("R")

Classifier = Callable[[BaseException], RetryAdvice]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How ``@retried`` retries.

    Args:
        attempts: attempts in all, the first included.
        initial_wait_s: scale of the exponential backoff (full jitter) without Retry-After.
        max_wait_s: the longest single backoff wait.
        retry_after_cap_s: the longest server-requested wait honoured; longer ones give up.
        deadline_s: give up rather than start a wait that would end after this many
            seconds since the call began (``None``: no deadline).
    """

    attempts: int = 6
    initial_wait_s: float = 0.5
    max_wait_s: float = 30.0
    retry_after_cap_s: float = RETRY_AFTER_CAP_S
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        check_fields(self, "retried")


register_keys(
    "retried",
    {
        "attempts": Integer(minimum=1),
        "initial_wait_s": Number(),
        "max_wait_s": Number(),
        "retry_after_cap_s": Number(),
        "deadline_s": Number(exclusive=True, optional=True),
    },
)


class wait_retry_after(tenacity.wait.wait_base):
    """Wait what the server asked (``retry-after-ms``/``Retry-After``), else ``fallback``."""

    def __init__(self, fallback: tenacity.wait.wait_base, cap_s: float) -> None:
        self.fallback = fallback
        self.cap_s = cap_s

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        advice: RetryAdvice | None = getattr(retry_state, "advice", None)
        if advice is not None and advice.after_s is not None:
            return advice.after_s
        return float(self.fallback(retry_state))


class RetryAspect(Aspect[RetryPolicy]):
    """Decides, after each failed attempt, whether and how long to wait before the next."""

    kind = "retried"

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        classify: Classifier,
        wait: tenacity.wait.wait_base | None,
        stop: tenacity.stop.stop_base | None,
        clock: Clock | None,
    ) -> None:
        super().__init__(policy, clock=clock)
        self.classify = classify
        self._custom_stop = stop
        self._custom_wait = wait
        self.configured()

    def configured(self) -> None:
        policy: RetryPolicy = self.settings
        self._stop = self._custom_stop or tenacity.stop_after_attempt(policy.attempts)
        self._wait = wait_retry_after(
            self._custom_wait
            or tenacity.wait_random_exponential(
                multiplier=policy.initial_wait_s, max=policy.max_wait_s
            ),
            policy.retry_after_cap_s,
        )

    def retry_delay(self, call: Call, error: BaseException) -> float | None:
        if not isinstance(error, Exception):
            return None
        advice = self.classify(error)
        if not advice.retry:
            return None
        policy: RetryPolicy = self.settings
        if advice.after_s is not None and advice.after_s > policy.retry_after_cap_s:
            return None  # the server asks for longer than we are allowed to wait
        state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = call.attempts
        state.outcome = tenacity.Future.construct(call.attempts, error, True)
        state.advice = advice  # type: ignore[attr-defined]
        if self._stop(state):
            return None
        delay = max(float(self._wait(state)), 0.0)
        deadline = policy.deadline_s
        if deadline is not None:
            elapsed = self.site.clock.now() - call.started
            if elapsed + delay > deadline:
                return None
        return delay


def retried(
    attempts: int = 6,
    *,
    initial_wait_s: float = 0.5,
    max_wait_s: float = 30.0,
    retry_after_cap_s: float = RETRY_AFTER_CAP_S,
    deadline_s: float | None = None,
    classify: Classifier = classify_openai_error,
    wait: tenacity.wait.wait_base | None = None,
    stop: tenacity.stop.stop_base | None = None,
    clock: Clock | None = None,
    name: str | None = None,
    model: str | None = None,
    request: RequestExtractor | None = None,
) -> Callable[[Callable[P, R]], LLMFunction[P, R]]:
    """Retry transient failures of the decorated function.

    Transient means (by default) 408, 409, 429 rate limits, 5xx, timeouts, connection errors,
    a 200 whose body is not JSON, and a stream cut short; never ``insufficient_quota``,
    400/401/403/404/422 or context-length errors. The server's ``retry-after-ms`` or
    ``Retry-After`` is honoured up to ``retry_after_cap_s``; otherwise exponential backoff
    with full jitter up to ``max_wait_s``. When attempts run out the original exception is
    raised. Inside the site the openai client's own retries are off.

    Args:
        attempts: attempts in all, the first included.
        initial_wait_s: backoff scale; ``max_wait_s``: longest backoff wait.
        retry_after_cap_s: longest server-requested wait honoured.
        deadline_s: overall time limit, measured on the site's clock.
        classify: ``exception -> RetryAdvice``; replace it for non-OpenAI errors.
        wait, stop: tenacity strategies replacing the backoff or the attempt limit.
        clock: the clock waits are measured and slept on (tests pass a FakeClock).
        name: the site name, default ``module.qualname``.
        model: the site's default model, when the arguments name none.
        request: builds the request (a JSON body) from the arguments by name.
    """

    def make() -> RetryAspect:
        policy = RetryPolicy(
            attempts=attempts,
            initial_wait_s=initial_wait_s,
            max_wait_s=max_wait_s,
            retry_after_cap_s=retry_after_cap_s,
            deadline_s=deadline_s,
        )
        return RetryAspect(policy, classify=classify, wait=wait, stop=stop, clock=clock)

    return attach(
        make,
        name=name,
        model=model,
        request=request,
    )
