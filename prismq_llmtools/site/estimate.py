"""The token estimate of a Call, counted at most once per invocation and only on demand."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from prismq_llmtools.call import Call
from prismq_llmtools.openai.request import API_PARAMETERS
from prismq_llmtools.usage import TokenEstimate, Usage

__all__ = ["count_output_text", "ensure_estimate", "worst_case_of"]


def ensure_estimate(call: Call) -> TokenEstimate | None:
    """Count the request's prompt tokens and completion cap, once; ``None`` if unknowable.

    A request body (messages, input, prompt) is counted by OpenAI's rules; a site whose
    arguments are plain text (``write_title(article)``) is estimated from the text of its
    string arguments, the best available approximation of the prompt it will build.
    """
    if call.estimate is not None:
        return call.estimate
    request = call.request
    if request is None or request.model is None:
        return None
    from prismq_llmtools.openai.tokens import count_request

    if request.endpoint is not None:
        call.estimate = count_request(request.body, endpoint=request.endpoint)
        return call.estimate
    text = "\n".join(_strings(call.args, call.kwargs))
    base = count_request({"model": request.model, "messages": [{"role": "user", "content": text}]})
    cap = _cap(request.body)
    call.estimate = TokenEstimate(
        model=base.model,
        encoding=base.encoding,
        prompt_tokens=base.prompt_tokens,
        completion_cap=cap,
    )
    return call.estimate


def worst_case_of(call: Call) -> tuple[Usage, Decimal] | None:
    """The most one attempt of ``call`` can be billed (prompt + cap) and its price in USD,
    as a budget reserves it; ``None`` when the request cannot be counted."""
    try:
        estimate = ensure_estimate(call)
    except Exception:  # an unknown model or an unreadable request: nothing to count
        return None
    if estimate is None:
        return None
    from prismq_llmtools.pricing import price_table
    from prismq_llmtools.pricing.money import cost_of

    usage = Usage(input_tokens=estimate.prompt_tokens, output_tokens=estimate.completion_cap or 0)
    price = price_table().price_for(estimate.model, unknown="estimate")
    tier = call.request.body.get("service_tier") if call.request is not None else None
    cost = cost_of(usage, price, service_tier=tier if isinstance(tier, str) else None)
    return usage, cost.total_usd


def _cap(body: Any) -> int | None:
    for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(key)
        if isinstance(value, int):
            return value * int(body.get("n") or 1)
    return None


def _strings(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
    """The text arguments; request parameters given by keyword (model, ...) are not prompt."""
    named = [v for k, v in kwargs.items() if k not in API_PARAMETERS]
    return [v for v in (*args, *named) if isinstance(v, str)]


def count_output_text(call: Call, result: Any) -> int:
    """Tokens of a text result, in the request model's encoding; 0 for anything else."""
    if not isinstance(result, str) or call.estimate is None:
        return 0
    from prismq_llmtools.openai.tokens import count_text

    return count_text(result, encoding=call.estimate.encoding)
