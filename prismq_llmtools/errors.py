"""Exceptions raised by prismq_llmtools.

The tree::

    LLMToolsError
    ├── ConfigurationError (also ValueError)    bad settings, raised at decoration or load time
    │   ├── UnknownModelError (also KeyError)   a model with no known tokenizer encoding
    │   └── AlertRuleError                       an alert rule (file) is invalid; names rule and key
    ├── RequestFormatError (also ValueError)    a request body that cannot be counted
    ├── UnknownPriceError (also KeyError)       no price is known for a model (policy "raise")
    ├── VocabularyError (also RuntimeError)     a tokenizer vocabulary is missing or corrupt
    ├── TokenizerError (also RuntimeError)      a site's tokenizer (server:, hf:) cannot count
    ├── IncompleteStreamError                   a stream ended without saying how (retryable)
    ├── RateLimitTimeout (also TimeoutError)    the rate limiter could not admit a call in time
    ├── RequestTooLarge (also ValueError)       a request the rate limit's buckets can never hold
    ├── BudgetExceeded                          a token/USD budget refused a call (no API call made)
    ├── StateStoreError (also ConnectionError)  the rate-limit/budget state store is unreachable
    ├── BatchError                              batch items failed or did not run (keeps results)
    ├── ItemNotRun                              a batch item never started (budget, interrupt)
    └── BatchItemError                          the OpenAI Batch API answered an item with an error

Errors from the OpenAI client itself are never wrapped: callers keep catching
``openai.*Error`` as they already do.

Every message passes through :func:`prismq_llmtools.redaction.redact` when the error is
made, so neither ``str()`` nor ``repr()`` repeats an API key, even one the server echoed.
"""

from __future__ import annotations

from prismq_llmtools.redaction import redact

__all__ = [
    "AlertRuleError",
    "BatchError",
    "BatchItemError",
    "BudgetExceeded",
    "ConfigurationError",
    "IncompleteStreamError",
    "ItemNotRun",
    "LLMToolsError",
    "RateLimitTimeout",
    "RequestFormatError",
    "RequestTooLarge",
    "StateStoreError",
    "TokenizerError",
    "UnknownModelError",
    "UnknownPriceError",
    "VocabularyError",
]


class LLMToolsError(Exception):
    """Root of every error this library raises; its message never holds a secret."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class ConfigurationError(LLMToolsError, ValueError):
    """A setting is invalid; raised as early as possible (decoration or load time)."""


class UnknownModelError(ConfigurationError, KeyError):
    """The model maps to no known tokenizer encoding and no fallback is configured."""

    def __init__(self, model: str, hint: str = "") -> None:
        self.model = model
        message = f"no tokenizer encoding is known for model {model!r}"
        super().__init__(f"{message}; {hint}" if hint else message)

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class RequestFormatError(LLMToolsError, ValueError):
    """A request body has a shape the token counter cannot read (e.g. no model, bad field type)."""


class UnknownPriceError(LLMToolsError, KeyError):
    """No price is known for a model and the unknown-price policy is ``raise``.

    A ``KeyError``, so ``PriceTable.get(model)`` returns ``None`` for such a model.
    """

    def __init__(self, model: str, *, source: str = "") -> None:
        self.model = model
        where = f" in {source}" if source else ""
        super().__init__(
            f'no price is known for model {model!r}{where}; add it under [prices."{model}"]'
            " (input, output, cached_input in USD per 1M tokens) or choose the unknown-price"
            " policy 'zero' or 'estimate'"
        )

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class VocabularyError(LLMToolsError, RuntimeError):
    """A tokenizer vocabulary file could not be found or failed its checksum."""


class TokenizerError(LLMToolsError, RuntimeError):
    """A site's ``server:`` or ``hf:`` tokenizer cannot count: the server is unreachable or
    offers no tokenization endpoint, or the ``tokenizer.json`` cannot be read."""


class IncompleteStreamError(LLMToolsError):
    """A streamed answer ended without saying how (no chat ``finish_reason``, no final
    Responses ``response.*`` event): the server cut it short.

    The official client raises nothing in that case; under ``@retried`` it is a transient
    failure and the attempt is retried.
    """


class AlertRuleError(ConfigurationError):
    """An alert rule is invalid; the message names the rule and the offending key."""

    def __init__(self, message: str, *, rule: str | None = None, key: str | None = None) -> None:
        self.rule = rule
        self.key = key
        where = " ".join(
            part
            for part in (f"rule {rule!r}" if rule else "", f"key {key!r}" if key else "")
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class RateLimitTimeout(LLMToolsError, TimeoutError):
    """The rate limiter could not admit a call within its ``timeout_s``.

    Raised as soon as the wait is known to exceed the timeout, without waiting it out.
    """

    def __init__(self, *, key: str, bucket: str, wait_s: float, timeout_s: float) -> None:
        self.key = key
        self.bucket = bucket
        self.wait_s = wait_s
        self.timeout_s = timeout_s
        super().__init__(
            f"rate limit {key!r}: the {bucket} bucket would admit this call in {wait_s:.3f} s,"
            f" beyond the timeout of {timeout_s:g} s"
        )


class RequestTooLarge(LLMToolsError, ValueError):
    """A request costs more than a rate-limit bucket can ever hold, so it can never be sent."""

    def __init__(self, *, key: str, bucket: str, requested: float, capacity: float) -> None:
        self.key = key
        self.bucket = bucket
        self.requested = requested
        self.capacity = capacity
        super().__init__(
            f"rate limit {key!r}: this request needs {requested:g} from the {bucket} bucket,"
            f" which holds at most {capacity:g}; raise the limit or shrink the request"
        )


class BudgetExceeded(LLMToolsError):
    """A budget refused a call before any network traffic.

    ``requested`` and ``remaining`` are in the budget's ``unit``: tokens, or USD (Decimal).
    """

    def __init__(
        self,
        *,
        scope: str,
        budget: str,
        unit: str,
        requested: object,
        remaining: object,
        reason: str = "",
    ) -> None:
        self.scope = scope
        self.budget = budget
        self.unit = unit
        self.requested = requested
        self.remaining = remaining
        super().__init__(
            reason
            or f"budget {budget!r} of scope {scope!r} is exhausted: the call needs up to"
            f" {requested} {unit}, {remaining} {unit} remain"
        )


class StateStoreError(LLMToolsError, ConnectionError):
    """The store holding rate-limit or budget state (SQLite, Redis) could not be used.

    Raised under the default ``on_store_error="raise"`` (fail closed); ``"allow"`` lets calls
    through with an ``llm.store.error`` warning event instead.
    """

    def __init__(self, url: str, error: BaseException) -> None:
        self.url = url
        self.error = error
        super().__init__(f"state store {url}: {type(error).__name__}: {error}")


class BatchError(LLMToolsError):
    """Some items of a batch failed or did not run; nothing is lost.

    ``results`` holds every item's answer in input order (``None`` where there is none),
    ``failures`` maps an item's index to its exception, ``not_run`` lists the items never
    started, and ``stop_reason`` is what stopped the batch early (a budget), if anything.
    """

    def __init__(
        self,
        *,
        results: list[object],
        failures: dict[int, BaseException],
        not_run: list[int],
        stop_reason: BaseException | None = None,
    ) -> None:
        self.results = results
        self.failures = failures
        self.not_run = not_run
        self.stop_reason = stop_reason
        parts = [f"{len(failures)} of {len(results)} items failed"]
        if not_run:
            parts.append(f"{len(not_run)} did not run")
        if stop_reason is not None:
            parts.append(f"stopped by {type(stop_reason).__name__}: {stop_reason}")
        elif failures:
            index, first = next(iter(sorted(failures.items())))
            parts.append(f"first: item {index}: {type(first).__name__}: {first}")
        super().__init__("; ".join(parts))

    @property
    def succeeded(self) -> list[int]:
        """Indices of the items that have an answer."""
        skip = set(self.failures) | set(self.not_run)
        return [i for i in range(len(self.results)) if i not in skip]


class ItemNotRun(LLMToolsError):
    """A batch item that was never started because the batch stopped (budget, interrupt)."""

    def __init__(self, index: int, reason: BaseException | str) -> None:
        self.index = index
        self.reason = reason
        why = f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else reason
        super().__init__(f"item {index} did not run ({why})")


class BatchItemError(LLMToolsError):
    """The OpenAI Batch API answered one item with an error instead of a response."""

    def __init__(
        self, message: str, *, custom_id: str, status_code: int | None, code: str | None
    ) -> None:
        self.custom_id = custom_id
        self.status_code = status_code
        self.code = code
        super().__init__(f"{custom_id}: {message}")
