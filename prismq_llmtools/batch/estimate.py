"""Dry run of a batch: tokens, cost and duration at the configured limits, no API call.

Each request is counted with tiktoken by OpenAI's rules (the same estimate the budget and
rate limiter use), priced at the model's input price, plus its completion cap at the
output price: an upper bound of the cost. Items the cache already holds are left out.
The duration is the longest of three bounds: requests at the rate limit's RPM, tokens
(prompt + cap, as the server charges them) at its TPM, and requests at
``max_concurrency`` in flight with an assumed latency each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from prismq_llmtools.batch.items import Unit
from prismq_llmtools.batch.progress import format_duration
from prismq_llmtools.usage import Usage

if TYPE_CHECKING:
    from prismq_llmtools.site.core import SiteCore

__all__ = ["BatchEstimate", "estimate_batch"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchEstimate:
    """What a batch would send and cost; ``f.batch(items, dry_run=True)`` returns it."""

    items: int
    requests: int
    cached: int
    prompt_tokens: int
    completion_tokens_max: int
    uncapped_requests: int
    cost_usd: Decimal
    unpriced_models: tuple[str, ...]
    duration_s: float
    limits: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        uncapped = f" ({self.uncapped_requests} without a cap)" if self.uncapped_requests else ""
        lines = [
            f"items              {self.items}",
            f"requests           {self.requests} ({self.cached} items already cached)",
            f"prompt tokens      {self.prompt_tokens:,}",
            f"completion tokens  at most {self.completion_tokens_max:,}{uncapped}",
            f"cost               at most ${self.cost_usd:.4f}",
            f"duration           about {format_duration(self.duration_s)}"
            f" ({', '.join(f'{k}={v}' for k, v in self.limits.items())})",
        ]
        if self.unpriced_models:
            lines.append(f"no price known for {', '.join(self.unpriced_models)}")
        return "\n".join(lines)


def _limits(core: SiteCore) -> tuple[float | None, float | None]:
    rpm = tpm = None
    for view in core.settings().values():
        if isinstance(view, dict):
            headroom = float(view.get("headroom") or 1.0)
            if view.get("rpm"):
                rpm = float(view["rpm"]) * headroom
            if view.get("tpm"):
                tpm = float(view["tpm"]) * headroom
    return rpm, tpm


def estimate_batch(
    func: Any,
    core: SiteCore,
    units: list[Unit],
    *,
    items: int,
    max_concurrency: int,
    assumed_latency_s: float,
) -> BatchEstimate:
    """The estimate of running ``units`` through ``core``."""
    from prismq_llmtools.cache import CacheAspect
    from prismq_llmtools.pricing import price_table
    from prismq_llmtools.pricing.money import total_usd_of
    from prismq_llmtools.site.estimate import ensure_estimate

    cache = next((a for a in core.aspects if isinstance(a, CacheAspect)), None)
    instance = getattr(func, "_self_instance", None)
    table = price_table()
    prompt = completion = uncapped = cached = requests = 0
    cost = Decimal(0)
    unpriced: set[str] = set()
    for unit in units:
        call = core.new_call(unit.args, unit.kwargs)
        if cache is not None and cache.contains(core.bind(call, instance), instance):
            cached += len(unit.indices)
            continue
        requests += 1
        call.request = core.discover_request(call, instance)
        estimate = ensure_estimate(call)
        if estimate is None:
            continue
        prompt += estimate.prompt_tokens
        cap = estimate.completion_cap
        if cap is None:
            uncapped += 1
        completion += cap or 0
        model = call.model or ""
        price = table.get(model)
        if price is None:
            unpriced.add(model)
            continue
        usage = Usage(input_tokens=estimate.prompt_tokens, output_tokens=cap or 0)
        cost += total_usd_of(usage, price)
    rpm, tpm = _limits(core)
    bounds = [math.ceil(requests / max_concurrency) * assumed_latency_s]
    if rpm:
        bounds.append(requests * 60.0 / rpm)
    if tpm:
        bounds.append((prompt + completion) * 60.0 / tpm)
    limits: dict[str, Any] = {"max_concurrency": max_concurrency, "latency_s": assumed_latency_s}
    if rpm:
        limits["rpm"] = rpm
    if tpm:
        limits["tpm"] = tpm
    return BatchEstimate(
        items=items,
        requests=requests,
        cached=cached,
        prompt_tokens=prompt,
        completion_tokens_max=completion,
        uncapped_requests=uncapped,
        cost_usd=cost,
        unpriced_models=tuple(sorted(unpriced)),
        duration_s=max(bounds),
        limits=limits,
    )
