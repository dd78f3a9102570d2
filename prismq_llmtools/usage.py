"""Tokens of a request: counted before it is sent (:class:`TokenEstimate`), and billed for
it or an aggregate of many (:class:`Usage`), in OpenAI's own terms.

Plain records below :mod:`prismq_llmtools.call`: the counting itself lives in
:mod:`prismq_llmtools.openai.tokens`, which also exports :class:`TokenEstimate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["TokenEstimate", "Usage", "UsageSource"]

UsageSource = Literal["response", "observed", "estimated", "cache"]
"""Where a Call's usage came from: a returned response object, requests observed at the
client boundary, a local estimate (nothing observed), or a cache hit (nothing billed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Tokens billed for a request.

    ``cached_input_tokens`` is the part of ``input_tokens`` served from OpenAI's prompt cache,
    and ``reasoning_tokens`` the part of ``output_tokens`` spent on reasoning: both are
    subsets, never extra tokens, exactly as OpenAI reports them.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        # Every response builds one: the usual case (plain ints, in range) is one test.
        inputs, outputs = self.input_tokens, self.output_tokens
        cached, reasoning = self.cached_input_tokens, self.reasoning_tokens
        if (
            type(inputs) is int  # exactly int: bool and other subclasses are judged below
            and type(outputs) is int
            and type(cached) is int
            and type(reasoning) is int
            and 0 <= cached <= inputs
            and 0 <= reasoning <= outputs
        ):
            return
        self._reject_or_accept()

    def _reject_or_accept(self) -> None:
        for name in ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"Usage.{name} must be a non-negative int, got {value!r}")
        if self.cached_input_tokens > self.input_tokens:
            raise ValueError("cached_input_tokens cannot exceed input_tokens")
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError("reasoning_tokens cannot exceed output_tokens")

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens billed at the full input price."""
        return self.input_tokens - self.cached_input_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenEstimate:
    """Prompt tokens counted before a call, and the most the completion may add."""

    model: str
    encoding: str
    prompt_tokens: int
    completion_cap: int | None
    """max_tokens / max_completion_tokens / max_output_tokens times n; None if unset."""

    def __post_init__(self) -> None:
        if self.prompt_tokens < 0 or (self.completion_cap is not None and self.completion_cap < 0):
            raise ValueError("token counts must not be negative")

    @property
    def total_estimate(self) -> int:
        """What a rate limiter charges at admission: prompt plus completion cap."""
        return self.prompt_tokens + (self.completion_cap or 0)
