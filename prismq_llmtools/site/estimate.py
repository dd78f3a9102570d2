"""The token estimate of a Call, counted at most once per invocation and only on demand."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from prismq_llmtools.call import Call, Endpoint
from prismq_llmtools.errors import LLMToolsError, UnknownModelError
from prismq_llmtools.openai.models import KNOWN_ENCODINGS
from prismq_llmtools.openai.request import API_PARAMETERS
from prismq_llmtools.openai.tokenizer import count_request_with, count_text_with
from prismq_llmtools.settings import ENV_PREFIX, env_key
from prismq_llmtools.usage import TokenEstimate, Usage

__all__ = ["count_for_site", "count_output_text", "ensure_estimate", "worst_case_of"]


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
    if request.endpoint is not None:
        call.estimate = count_for_site(call, request.body, request.endpoint)
        return call.estimate
    text = "\n".join(_strings(call.args, call.kwargs))
    chat = {"model": request.model, "messages": [{"role": "user", "content": text}]}
    base = count_for_site(call, chat, "chat")
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
    except LLMToolsError:  # an unknown model, an unreadable request, no vocabulary...
        return None
    if estimate is None:
        return None
    from prismq_llmtools.pricing import price_table
    from prismq_llmtools.pricing.money import total_usd_of

    usage = Usage(input_tokens=estimate.prompt_tokens, output_tokens=estimate.completion_cap or 0)
    price = price_table().price_for(estimate.model, unknown="estimate")
    request = call.request
    tier = request.body.get("service_tier") if request is not None else None
    return usage, total_usd_of(usage, price, service_tier=tier if isinstance(tier, str) else None)


def count_for_site(call: Call, body: Mapping[str, Any], endpoint: Endpoint) -> TokenEstimate:
    """Count ``body`` with the tokenizer of ``call``'s site.

    Raises:
        UnknownModelError: The site sets no tokenizer and the model is unknown; the message
            names this site's settings that choose one.
    """
    try:
        return count_request_with(body, endpoint=endpoint, tokenizer=call.tokenizer)
    except UnknownModelError as exc:
        variable = f"{ENV_PREFIX}{env_key(call.site)}__TOKENIZER"
        raise UnknownModelError(
            exc.model,
            f"set site {call.site!r}'s tokenizer: tokenizer= on its decorator, "
            f'`tokenizer = "..."` in [sites."{call.site}"] of the settings file, or the '
            f"environment variable {variable}; a tiktoken encoding "
            f"({', '.join(sorted(KNOWN_ENCODINGS))}), server:URL (the server counts) or "
            f"hf:PATH (a tokenizer.json)",
        ) from None


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
    """Tokens of a text result, by the site's tokenizer or the request model's encoding; 0 for
    anything else."""
    if not isinstance(result, str) or call.estimate is None:
        return 0
    # The site's setting itself, not the estimate's name of it (which hides credentials).
    return count_text_with(result, tokenizer=call.tokenizer or call.estimate.encoding)
