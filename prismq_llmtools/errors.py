"""Exceptions raised by prismq_llmtools.

The tree::

    LLMToolsError
    ├── ConfigurationError (also ValueError)    bad settings, raised at decoration or load time
    │   ├── UnknownModelError (also KeyError)   a model with no known tokenizer encoding
    │   └── AlertRuleError                       an alert rule (file) is invalid; names rule and key
    ├── RequestFormatError (also ValueError)    a request body that cannot be counted
    ├── UnknownPriceError (also KeyError)       no price is known for a model (policy "raise")
    ├── VocabularyError (also RuntimeError)     a tokenizer vocabulary is missing or corrupt
    └── IncompleteStreamError                   a stream ended without a finish_reason (retryable)

Errors from the OpenAI client itself are never wrapped: callers keep catching
``openai.*Error`` as they already do.
"""

from __future__ import annotations

__all__ = [
    "AlertRuleError",
    "ConfigurationError",
    "IncompleteStreamError",
    "LLMToolsError",
    "RequestFormatError",
    "UnknownModelError",
    "UnknownPriceError",
    "VocabularyError",
]


class LLMToolsError(Exception):
    """Root of every error this library raises."""


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


class IncompleteStreamError(LLMToolsError):
    """A streamed answer ended without a ``finish_reason``: the server cut it short.

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
