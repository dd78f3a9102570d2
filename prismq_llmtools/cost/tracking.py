"""``@cost_tracked`` and the usage totals it feeds: per operation, per model, per day."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ParamSpec, TypeVar

from prismq_llmtools import _state
from prismq_llmtools.aspect import Aspect
from prismq_llmtools.call import Call, Endpoint
from prismq_llmtools.pricing import UnknownPrice
from prismq_llmtools.settings.rules import Choice, check_fields, register_keys
from prismq_llmtools.site.core import RequestExtractor
from prismq_llmtools.site.decorate import attach
from prismq_llmtools.site.handle import LLMFunction
from prismq_llmtools.usage import Usage

__all__ = ["CostPolicy", "Totals", "UsageTotals", "cost_tracked", "usage_totals"]

P = ParamSpec("P")
R = TypeVar("R")

_UNKNOWN_PRICE = ("raise", "zero", "estimate")


@dataclass(frozen=True, slots=True, kw_only=True)
class CostPolicy:
    """How ``@cost_tracked`` costs calls.

    Args:
        unknown_price: for a model with no known price: ``estimate`` (a documented stand-in
            price, plus an ``llm.price.unknown`` warning), ``zero`` (also warned), or ``raise``.
    """

    unknown_price: UnknownPrice = "estimate"

    def __post_init__(self) -> None:
        check_fields(self, "cost_tracked")


register_keys("cost_tracked", {"unknown_price": Choice(values=_UNKNOWN_PRICE)})


@dataclass(slots=True)
class Totals:
    """Running totals for one group of calls (cache hits are not billed usage)."""

    calls: int = 0
    errors: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = field(default_factory=Decimal)
    cache_hits: int = 0
    saved_cost_usd: Decimal = field(default_factory=Decimal)
    retries: int = 0
    rate_limited: int = 0
    possibly_billed: int = 0
    """Requests the server may have billed unread, counted in the usage at their worst case."""

    @property
    def usage(self) -> Usage:
        """The billed tokens as a :class:`Usage`."""
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cached_input_tokens=self.cached_input_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )

    def add(self, other: Totals) -> None:
        """Add another group's totals."""
        for name in _TOTALS_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, Any]:
        """The totals as a plain dict (amounts stay Decimal)."""
        return {name: getattr(self, name) for name in _TOTALS_FIELDS}


_TOTALS_FIELDS = tuple(f.name for f in fields(Totals))


class UsageTotals:
    """Thread-safe totals of tracked calls, by operation path, model and UTC day.

    Each call is counted once, under its own operation path; :meth:`by_operation` with
    ``rollup=True`` adds nested operations into their ancestors (``report`` includes
    ``report/summarize``).
    """

    _last_operation: str | None
    _last_model: str | None

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # One table keyed by (operation, model, UTC day number); the per-operation,
        # per-model and per-day views are sums computed when read.
        self._groups: dict[tuple[str, str, int], Totals] = {}
        self._forget_latest()

    def record(self, call: Call, *, when: float | None = None) -> None:
        """Add one finished call (``when``: its POSIX time, default now)."""
        if when is None:
            when = time.time()
        request = call.request
        model = call.response_model or (request.model if request is not None else None)
        operation = call.operation
        lock = self._lock
        lock.acquire()
        try:
            if (  # the group of the latest call, that same day: most calls repeat it
                operation is self._last_operation
                and model is self._last_model
                and self._day_start <= when < self._day_end
            ):
                totals = self._last_totals
            else:
                totals = self._group(operation, model, when)
            totals.calls += 1
            if call.outcome == "error":
                totals.errors += 1
            if call.cache == "hit":
                totals.cache_hits += 1
                if call.saved_cost_usd:
                    totals.saved_cost_usd += call.saved_cost_usd
            else:
                usage = call.usage
                if call.unrecorded_usage is not None:  # untracked nested calls' usage
                    usage = (
                        call.unrecorded_usage if usage is None else usage + call.unrecorded_usage
                    )
                if usage is not None:
                    totals.input_tokens += usage.input_tokens
                    totals.cached_input_tokens += usage.cached_input_tokens
                    totals.output_tokens += usage.output_tokens
                    totals.reasoning_tokens += usage.reasoning_tokens
                if call.cost_usd:
                    totals.cost_usd += call.cost_usd
                if call.unrecorded_cost_usd:  # most calls: none
                    totals.cost_usd += call.unrecorded_cost_usd
            if call.retries:  # most calls: none
                totals.retries += call.retries
            if call.rate_limited:
                totals.rate_limited += call.rate_limited
            if call.unread_requests:
                totals.possibly_billed += call.unread_requests
        finally:
            lock.release()

    def record_recovered(
        self,
        *,
        operation: str,
        model: str | None,
        usage: Usage,
        cost_usd: Decimal,
        requests: int,
        when: float | None = None,
    ) -> None:
        """Add a call a dead process left in flight: failed, possibly billed, at its worst
        case (see :func:`prismq_llmtools.cost.recovery.recover_in_flight`)."""
        with self._lock:
            totals = self._group(operation, model, time.time() if when is None else when)
            totals.calls += 1
            totals.errors += 1
            totals.input_tokens += usage.input_tokens
            totals.output_tokens += usage.output_tokens
            totals.cost_usd += cost_usd
            totals.possibly_billed += requests

    def _group(self, operation: str, model: str | None, when: float) -> Totals:
        day = int(when // 86_400)
        key = (operation, model or "unknown", day)
        totals = self._groups.get(key)
        if totals is None:
            totals = self._groups[key] = Totals()
        self._last_operation, self._last_model, self._last_totals = operation, model, totals
        self._day_start, self._day_end = day * 86_400.0, (day + 1) * 86_400.0
        return totals

    def _forget_latest(self) -> None:
        """No latest group: the next call looks its group up."""
        self._last_operation = self._last_model = None
        self._last_totals = Totals()
        self._day_start = self._day_end = 0.0  # the latest call's UTC day: empty

    def _view(self, index: int) -> dict[Any, Totals]:
        with self._lock:
            items = [(key[index], _copy(t)) for key, t in self._groups.items()]
        out: dict[Any, Totals] = {}
        for key, totals in items:
            out.setdefault(key, Totals()).add(totals)
        return dict(sorted(out.items()))

    def total(self) -> Totals:
        """Everything recorded."""
        out = Totals()
        with self._lock:
            for totals in self._groups.values():
                out.add(totals)
        return out

    def by_operation(self, *, rollup: bool = True) -> dict[str, Totals]:
        """Totals per operation path; with ``rollup``, each path includes its descendants."""
        out: dict[str, Totals] = {}
        for path, totals in self._view(0).items():
            targets = [path]
            if rollup:
                parts = path.split("/")
                targets = ["/".join(parts[: i + 1]) for i in range(len(parts))]
            for target in targets:
                out.setdefault(target, Totals()).add(totals)
        return dict(sorted(out.items()))

    def by_model(self) -> dict[str, Totals]:
        """Totals per model (the model that answered, else the one asked for)."""
        return self._view(1)

    def by_day(self) -> dict[str, Totals]:
        """Totals per UTC day (``YYYY-MM-DD``)."""
        return {
            datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d"): totals
            for day, totals in self._view(2).items()
        }

    def reset(self) -> None:
        """Forget everything."""
        with self._lock:
            self._groups.clear()
            self._forget_latest()


def _copy(totals: Totals) -> Totals:
    out = Totals()
    out.add(totals)
    return out


_totals: _state.Shared[UsageTotals] = _state.Shared("usage totals", UsageTotals)


def usage_totals() -> UsageTotals:
    """The process-wide totals that ``@cost_tracked`` sites record into by default."""
    return _totals.get()


class CostAspect(Aspect[CostPolicy]):
    """Costs each call from its actual usage and records it in the totals."""

    kind = "cost_tracked"

    def __init__(self, policy: CostPolicy, totals: UsageTotals | None) -> None:
        super().__init__(policy)
        self.totals = totals

    def unknown_price(self) -> UnknownPrice:
        return self.settings.unknown_price

    def finish(self, call: Call) -> None:
        (self.totals or usage_totals()).record(call)
        call.recorded = True

    def absorb(self, call: Call, finished_at: float) -> None:
        (self.totals or usage_totals()).record(call, when=finished_at)


def cost_tracked(
    operation: str | None = None,
    *,
    unknown_price: UnknownPrice = "estimate",
    totals: UsageTotals | None = None,
    model: str | None = None,
    name: str | None = None,
    request: RequestExtractor | None = None,
    tokenizer: str | None = None,
    endpoint: Endpoint | None = None,
) -> Callable[[Callable[P, R]], LLMFunction[P, R]]:
    """Cost every call from the usage it really billed, and add it to the usage totals.

    Args:
        operation: the operation name in totals and events (default: the site name);
            nested tracked calls extend their parent's path, ``report/summarize``.
        unknown_price: ``estimate``, ``zero`` or ``raise`` for a model with no known price.
        totals: where to record (default: :func:`usage_totals`).
        model: the site's default model, when the arguments do not name one.
        name: the site name, default ``module.qualname``.
        request: builds the request (a JSON body) from the arguments by name.
        tokenizer: what the site's prompts are counted with: a tiktoken encoding
            (``"o200k_base"``), ``"server:URL"`` or ``"hf:PATH"`` (``docs/counting.md``).
        endpoint: the API the function calls (``"chat"``, ``"responses"``, ``"embeddings"``,
            ``"completions"``) when its arguments do not say (an ``input`` parameter).
    """
    return attach(
        lambda: CostAspect(CostPolicy(unknown_price=unknown_price), totals),
        name=name,
        model=model,
        operation=operation,
        request=request,
        tokenizer=tokenizer,
        endpoint=endpoint,
    )
