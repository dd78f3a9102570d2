"""The Call: one record per invocation of a decorated function, shared by every aspect."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from prismq_llmtools.usage import Usage, UsageSource

if TYPE_CHECKING:
    from prismq_llmtools.openai.tokens import TokenEstimate
    from prismq_llmtools.ratelimit.feedback import Admission

__all__ = ["Call", "Endpoint", "Outcome", "RateHeaders", "Request", "current_call"]

Endpoint = Literal["chat", "responses", "embeddings", "completions"]
Outcome = Literal["ok", "error"]

_GEN_AI_OPERATION: dict[str, str] = {
    "chat": "chat",
    "responses": "responses",
    "embeddings": "embeddings",
    "completions": "text_completion",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """What is asked of the API: endpoint, model, the JSON body, and the completion cap."""

    model: str | None
    endpoint: Endpoint | None = None
    body: Mapping[str, Any] = field(default_factory=dict)

    @property
    def operation_name(self) -> str | None:
        """The OpenTelemetry ``gen_ai.operation.name`` of this request."""
        return _GEN_AI_OPERATION.get(self.endpoint) if self.endpoint else None


@dataclass(frozen=True, slots=True, kw_only=True)
class RateHeaders:
    """The ``x-ratelimit-*`` headers of one response, durations in seconds."""

    limit_requests: int | None = None
    limit_tokens: int | None = None
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None


_rollup_lock = threading.Lock()

# A process-unique prefix plus a counter: unique ids without paying for uuid4 on every call.
_ID_PREFIX = os.urandom(4).hex()
_ids = itertools.count(1)


def _new_id() -> str:
    return f"{_ID_PREFIX}{next(_ids):08x}"


class Call:
    """Everything known about one invocation: what was asked, what happened, what it cost.

    Aspects read and write it in a fixed phase order; ``llm.call`` is rendered from it.
    Usage and cost are this invocation's own; ``rollup_*`` add every nested Call's.
    The fields read on every call are set in ``__init__``; the rest read as their class-level
    defaults until an aspect sets them, so creating a Call costs twenty stores, not forty.
    """

    site: str
    operation: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    parent: Call | None
    instance: Any = None  # the object a method was called on (for binding its arguments)
    started: float = 0.0
    duration_s: float = 0.0

    request: Request | None = None
    estimate: TokenEstimate | None = None

    usage: Usage | None = None
    usage_source: UsageSource | None = None
    observed_usage: Usage | None = None
    observed_requests: int = 0
    cost_usd: Decimal | None = None
    price_known: bool = True
    rollup_usage: Usage | None = None
    rollup_cost_usd: Decimal = Decimal(0)

    attempts: int = 0
    retries: int = 0
    wait_s: float = 0.0
    rate_limited: int = 0
    cache: str | None = None
    saved_cost_usd: Decimal | None = None

    outcome: Outcome | None = None
    error: BaseException | None = None
    status_code: int | None = None
    request_id: str | None = None
    response_model: str | None = None
    response_id: str | None = None
    rate_headers: RateHeaders | None = None
    possibly_billed: bool = False
    admission: Admission | None = None
    """The rate limiter's admission of the latest attempt (kept off ``extra``: cheaper)."""

    owns_retries: bool = False
    _call_id: str | None = None
    _extra: dict[str, Any] | None = None

    def __init__(
        self,
        site: str,
        operation: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        parent: Call | None = None,
        owns_retries: bool = False,
    ) -> None:
        self.site = site
        self.operation = operation
        self.args = args
        self.kwargs = kwargs if kwargs is not None else {}
        self.parent = parent
        if owns_retries:
            self.owns_retries = True
        # The fields every call reads: stored here, they are read from the instance; left
        # to their class defaults, each read would miss the instance and search the class.
        self.request = None
        self.usage = None
        self.usage_source = None
        self.observed_requests = 0
        self._extra = None
        self.admission = None
        self.attempts = 0
        self.rate_headers = None
        self.outcome = None
        self.response_model = None
        self.cache = None
        self.cost_usd = None
        self.saved_cost_usd = None
        self.retries = 0
        self.rate_limited = 0

    @property
    def call_id(self) -> str:
        """This invocation's id (hex), made on first use."""
        if self._call_id is None:
            self._call_id = _new_id()
        return self._call_id

    @property
    def extra(self) -> dict[str, Any]:
        """Free-form facts aspects attach to the call (streams, batch, service tier...)."""
        if self._extra is None:
            self._extra = {}
        return self._extra

    def __repr__(self) -> str:
        return f"<Call {self.site} {self.call_id} outcome={self.outcome}>"

    @property
    def parent_id(self) -> str | None:
        """The enclosing invocation's id, if nested."""
        return self.parent.call_id if self.parent is not None else None

    @property
    def model(self) -> str | None:
        """The requested model, when the request is known."""
        return self.request.model if self.request is not None else None

    def add_observed(self, usage: Usage) -> None:
        """Record the usage of one real request made during this invocation."""
        self.observed_requests += 1
        self.observed_usage = usage if self.observed_usage is None else self.observed_usage + usage

    def total_usage(self) -> Usage | None:
        """This invocation's usage plus every nested invocation's."""
        if self.usage is None:
            return self.rollup_usage
        if self.rollup_usage is None:
            return self.usage
        return self.usage + self.rollup_usage

    def total_cost_usd(self) -> Decimal:
        """This invocation's cost plus every nested invocation's."""
        return (self.cost_usd or Decimal(0)) + self.rollup_cost_usd

    def roll_up_into_parent(self) -> None:
        """Add this invocation's totals to the enclosing one (children may finish in threads)."""
        parent = self.parent
        if parent is None:
            return
        total = self.total_usage()
        cost = self.total_cost_usd()
        with _rollup_lock:
            if total is not None:
                rolled = parent.rollup_usage
                parent.rollup_usage = total if rolled is None else rolled + total
            parent.rollup_cost_usd += cost


current_call: ContextVar[Call | None] = ContextVar("prismq_llmtools_current_call", default=None)
"""The innermost active Call in this thread or task; ``None`` outside decorated functions."""
