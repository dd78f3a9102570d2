"""The inference engine: validate a request, count it, admit it, and generate its answer.

Shared by the synchronous endpoints and by batch lines (which skip admission).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prismq_llmtools.errors import LLMToolsError
from prismq_llmtools.openai.tokens import TokenEstimate, count_request, count_text
from prismq_llmtools.testing.simulator import api_errors
from prismq_llmtools.testing.simulator.api_errors import ApiError
from prismq_llmtools.testing.simulator.catalog import base_model_name
from prismq_llmtools.testing.simulator.config import ModelLimits, SimulatorConfig
from prismq_llmtools.testing.simulator.content import (
    embedding_vector,
    generate_text,
    request_rng,
)
from prismq_llmtools.testing.simulator.prompt_cache import (
    MIN_CACHED_TOKENS,
    PromptCache,
    render_prompt,
)
from prismq_llmtools.testing.simulator.ratelimit import Admission, BucketState, ModelRateLimiter

__all__ = ["Completion", "Endpoint", "Engine", "Prepared", "admission_chars"]

Endpoint = Literal["chat", "responses", "embeddings"]
_DEFAULT_ENCODING = "o200k_base"


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    """A valid request, counted, ready for admission."""

    endpoint: Endpoint
    body: Mapping[str, Any]
    model: str
    """The model as requested."""
    served_as: str
    """The configured model it resolves to (a snapshot resolves to its base)."""
    limits: ModelLimits
    estimate: TokenEstimate
    choice_cap: int | None
    """The completion cap of one choice."""
    stream: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """What a request produced: texts (or vectors) and the exact usage."""

    texts: tuple[str, ...] = ()
    finish_reasons: tuple[str, ...] = ()
    vectors: tuple[list[float], ...] = ()
    prompt_tokens: int
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0


def _content_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, Sequence) and not isinstance(content, bytes | bytearray):
        total = 0
        for part in content:
            if isinstance(part, str):
                total += len(part)
            elif isinstance(part, Mapping):
                total += _content_chars(part.get("text", part.get("content")))
            elif isinstance(part, int):  # a token id of a token-array input
                total += 4
        return total
    return 0


def admission_chars(endpoint: Endpoint, body: Mapping[str, Any]) -> int:
    """Characters of the request's contents, as OpenAI's character-based estimate reads them."""
    if endpoint == "chat":
        messages = body.get("messages") or ()
        return sum(_content_chars(m.get("content")) for m in messages if isinstance(m, Mapping))
    chars = _content_chars(body.get("instructions")) if endpoint == "responses" else 0
    value = body.get("input")
    if isinstance(value, Sequence) and not isinstance(value, str):
        for item in value:
            chars += _content_chars(item.get("content") if isinstance(item, Mapping) else item)
        return chars
    return chars + _content_chars(value)


def _int_field(body: Mapping[str, Any], name: str, *, minimum: int) -> int | ApiError | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        return api_errors.invalid_request(
            f"Invalid value for '{name}': expected an integer >= {minimum}, got {value!r}.",
            param=name,
            code="invalid_value",
        )
    return value


class Engine:
    """Turns request bodies into answers, by the config's models, limits and seed."""

    def __init__(self, config: SimulatorConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self._limits = {name: config.limits_for(name) for name in config.models}
        self._limiters = {
            name: ModelRateLimiter(rpm=limits.rpm, tpm=limits.tpm, clock=clock)
            for name, limits in self._limits.items()
        }
        self.prompt_cache = PromptCache()

    def warm_up(self) -> None:
        """Load the tokenizer vocabularies of every configured model now, not on a request."""
        for name, limits in self._limits.items():
            try:
                count_text("warm up", model=name)
            except LLMToolsError:  # unknown to the counter: served with its fallback encoding
                count_text("warm up", encoding=limits.encoding or _DEFAULT_ENCODING)

    def resolve(self, model: str) -> str | None:
        """The configured model ``model`` is served as, or None."""
        return base_model_name(model, self._limits)

    def bucket_state(self, served_as: str) -> tuple[BucketState | None, BucketState | None]:
        """The model's requests and tokens buckets now."""
        return self._limiters[served_as].state()

    def refill(self) -> None:
        """Make every bucket full."""
        for limiter in self._limiters.values():
            limiter.refill()

    def parse(self, raw: bytes) -> Mapping[str, Any] | ApiError:
        """The JSON object of a request body."""
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return api_errors.invalid_request(
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly.)"
            )
        if not isinstance(body, dict):
            return api_errors.invalid_request("The request body must be a JSON object.")
        return body

    def prepare(self, endpoint: Endpoint, body: Mapping[str, Any]) -> Prepared | ApiError:
        """Validate and count a request body."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return api_errors.invalid_request(
                "you must provide a model parameter",
                param="model",
                code="missing_required_parameter",
            )
        served_as = self.resolve(model)
        if served_as is None:
            return api_errors.model_not_found(model)
        limits = self._limits[served_as]
        if limits.is_embedding != (endpoint == "embeddings"):
            return api_errors.invalid_request(
                f"The model `{model}` does not support the {endpoint} endpoint.",
                param="model",
                code="model_not_supported",
            )
        shape_error = self._check_shape(endpoint, body)
        if shape_error is not None:
            return shape_error
        try:
            estimate = count_request(
                body, endpoint=endpoint, fallback_encoding=limits.encoding or _DEFAULT_ENCODING
            )
        except (ValueError, TypeError) as exc:  # RequestFormatError and friends
            return api_errors.invalid_request(str(exc))
        choice_cap = self._choice_cap(endpoint, body)
        if isinstance(choice_cap, ApiError):
            return choice_cap
        limit_error = self._check_limits(endpoint, body, limits, estimate, choice_cap)
        if limit_error is not None:
            return limit_error
        return Prepared(
            endpoint=endpoint,
            body=body,
            model=model,
            served_as=served_as,
            limits=limits,
            estimate=estimate,
            choice_cap=choice_cap,
            stream=endpoint in ("chat", "responses") and body.get("stream") is True,
        )

    @staticmethod
    def _check_shape(endpoint: Endpoint, body: Mapping[str, Any]) -> ApiError | None:
        if endpoint == "chat":
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                return api_errors.invalid_request(
                    "'messages' must be a non-empty array.", param="messages"
                )
        elif body.get("input") in (None, "", []):
            return api_errors.invalid_request("'input' is required.", param="input")
        return None

    @staticmethod
    def _choice_cap(endpoint: Endpoint, body: Mapping[str, Any]) -> int | ApiError | None:
        if endpoint == "embeddings":
            return None
        if endpoint == "responses":
            return _int_field(body, "max_output_tokens", minimum=16)
        cap = _int_field(body, "max_completion_tokens", minimum=1)
        if cap is None:
            cap = _int_field(body, "max_tokens", minimum=1)
        choices = _int_field(body, "n", minimum=1)
        return choices if isinstance(choices, ApiError) else cap

    def _check_limits(
        self,
        endpoint: Endpoint,
        body: Mapping[str, Any],
        limits: ModelLimits,
        estimate: TokenEstimate,
        choice_cap: int | None,
    ) -> ApiError | None:
        most = limits.max_output_tokens
        if choice_cap is not None and most is not None and choice_cap > most:
            name = "max_output_tokens" if endpoint == "responses" else "max_tokens"
            return api_errors.invalid_request(
                f"{name} is too large: {choice_cap}. This model supports at most {most} "
                f"completion tokens, whereas you provided {choice_cap}.",
                param=name,
                code="invalid_value",
            )
        if endpoint == "embeddings":
            dimensions = _int_field(body, "dimensions", minimum=1)
            if isinstance(dimensions, ApiError):
                return dimensions
            assert limits.embedding_dimensions is not None  # checked by prepare()
            if dimensions is not None and dimensions > limits.embedding_dimensions:
                return api_errors.invalid_request(
                    f"dimensions must be at most {limits.embedding_dimensions}.",
                    param="dimensions",
                    code="invalid_value",
                )
            if body.get("encoding_format", "float") not in ("float", "base64"):
                return api_errors.invalid_request(
                    "encoding_format must be 'float' or 'base64'.", param="encoding_format"
                )
            return self._check_embedding_inputs(body, limits, estimate)
        if estimate.prompt_tokens + (choice_cap or 0) > limits.context_window:
            return api_errors.context_length_exceeded(
                limits.context_window, estimate.prompt_tokens, choice_cap or 0
            )
        return None

    @staticmethod
    def _check_embedding_inputs(
        body: Mapping[str, Any], limits: ModelLimits, estimate: TokenEstimate
    ) -> ApiError | None:
        if estimate.prompt_tokens <= limits.context_window:
            return None
        value = body["input"]
        items = value if isinstance(value, list) and not _is_token_array(value) else [value]
        for item in items:
            tokens = (
                count_text(item, encoding=estimate.encoding) if isinstance(item, str) else len(item)
            )
            if tokens > limits.context_window:
                return api_errors.context_length_exceeded(limits.context_window, tokens, 0)
        return None

    def admission_tokens(self, prepared: Prepared) -> int:
        """What admission charges: prompt (exact or by characters) plus the completion cap."""
        cap = prepared.estimate.completion_cap or 0
        admission = self.config.admission
        if admission == "exact":
            return prepared.estimate.prompt_tokens + cap
        if admission == "chars":
            return math.ceil(admission_chars(prepared.endpoint, prepared.body) / 4) + cap
        body_bytes = (
            len(json.dumps(prepared.body, separators=(",", ":")).encode())
            if admission.prompt == "bytes"
            else 0
        )
        return admission.charge(
            tokens=prepared.estimate.prompt_tokens,
            chars=admission_chars(prepared.endpoint, prepared.body),
            body_bytes=body_bytes,
            cap=cap,
        )

    def admit(self, prepared: Prepared) -> Admission:
        """Charge the request against its model's buckets, or refuse it."""
        return self._limiters[prepared.served_as].admit(self.admission_tokens(prepared))

    def complete(self, prepared: Prepared) -> Completion:
        """Generate the answer and count its usage."""
        if prepared.endpoint == "embeddings":
            return self._embed(prepared)
        config = self.config
        rng = request_rng(config.seed, prepared.endpoint, prepared.body)
        encoding = prepared.estimate.encoding

        def count(text: str) -> int:
            return count_text(text, encoding=encoding)

        choices = (prepared.body.get("n") or 1) if prepared.endpoint == "chat" else 1
        texts: list[str] = []
        reasons: list[str] = []
        completion_tokens = reasoning_tokens = 0
        for _ in range(choices):
            target = rng.randint(*config.output_tokens)
            thinking = 0
            if prepared.limits.reasoning:
                share = rng.uniform(0.25, 0.75)
                thinking = round(target * share / (1 - share))
            cap = prepared.choice_cap
            if cap is not None:
                thinking = min(thinking, cap)
            generated = generate_text(rng, target, None if cap is None else cap - thinking, count)
            texts.append(generated.text)
            reasons.append("length" if generated.cut else "stop")
            completion_tokens += generated.tokens + thinking
            reasoning_tokens += thinking
        prompt_tokens = prepared.estimate.prompt_tokens
        cached = 0
        if config.prompt_caching and prompt_tokens >= MIN_CACHED_TOKENS:
            cached = self.prompt_cache.cached_tokens(
                prepared.served_as, render_prompt(prepared.body), prompt_tokens, count
            )
        return Completion(
            texts=tuple(texts),
            finish_reasons=tuple(reasons),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_tokens=cached,
            reasoning_tokens=reasoning_tokens,
        )

    def _embed(self, prepared: Prepared) -> Completion:
        value = prepared.body["input"]
        items = value if isinstance(value, list) and not _is_token_array(value) else [value]
        full = prepared.limits.embedding_dimensions
        assert full is not None  # prepare() only lets embedding models through
        dimensions = prepared.body.get("dimensions") or full
        vectors = tuple(
            embedding_vector(self.config.seed, prepared.served_as, item, full, dimensions)
            for item in items
        )
        return Completion(vectors=vectors, prompt_tokens=prepared.estimate.prompt_tokens)


def _is_token_array(value: list[Any]) -> bool:
    return bool(value) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
