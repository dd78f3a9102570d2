"""Count the prompt tokens OpenAI will bill for a request, before sending it.

``count_request(body)`` takes a JSON request body as sent to the API (chat completions,
Responses, embeddings or legacy completions) and returns a :class:`TokenEstimate`: the exact
prompt tokens by OpenAI's format rules, and the completion cap reported separately. Text
seen again (a long system prompt, tool definitions) is counted once and remembered in a
bounded LRU memo. Everything is thread-safe.

:class:`TokenEstimate` is a plain record defined in :mod:`prismq_llmtools.usage` (so that
:class:`~prismq_llmtools.call.Call` can hold one without importing this module) and exported
here too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from prismq_llmtools import _state
from prismq_llmtools.errors import ConfigurationError, RequestFormatError
from prismq_llmtools.openai import messages
from prismq_llmtools.openai.models import ModelInfo, encoding_for, model_info
from prismq_llmtools.openai.textcount import MemoStats, TextCount, TokenMemo
from prismq_llmtools.usage import TokenEstimate, Usage

if TYPE_CHECKING:
    import tiktoken

    from prismq_llmtools.openai.vocab import VocabularyLoader

__all__ = [
    "Endpoint",
    "MemoStats",
    "TokenCounter",
    "TokenEstimate",
    "count_request",
    "count_text",
    "default_counter",
    "encoding_for",
    "infer_endpoint",
    "worst_case",
]

Endpoint = Literal["chat", "responses", "embeddings", "completions"]
_ENDPOINTS: frozenset[str] = frozenset({"chat", "responses", "embeddings", "completions"})


class TokenCounter:
    """Counts request bodies and texts; one instance is shared by every caller.

    Args:
        memo_entries: Most texts remembered (0 disables the memo).
        memo_chars: Most characters held by the memo in total, which bounds its memory.
        memo_min_chars: Shorter texts are encoded directly: below this, a memo lookup
            costs about as much as encoding (see ``benchmarks/bench_tokens.py``).
        fallback_encoding: Encoding for unknown models (else ``UnknownModelError``).
        loader: Where vocabularies come from (default: the process-wide offline-first loader).
    """

    def __init__(
        self,
        *,
        memo_entries: int = 4096,
        memo_chars: int = 8_000_000,
        memo_min_chars: int = 64,
        fallback_encoding: str | None = None,
        loader: VocabularyLoader | None = None,
    ) -> None:
        if memo_entries < 0 or memo_chars < 0 or memo_min_chars < 0:
            raise ConfigurationError("memo bounds must not be negative")
        self._memo = TokenMemo(memo_entries, memo_chars) if memo_entries and memo_chars else None
        self._memo_min_chars = memo_min_chars
        self._fallback_encoding = fallback_encoding
        self._loader = loader
        self._text_counters: dict[str, TextCount] = {}

    def encoding(self, name: str) -> tiktoken.Encoding:
        """The loaded ``tiktoken.Encoding`` called ``name``."""
        if self._loader is not None:
            return self._loader.get(name)
        from prismq_llmtools.openai.vocab import get_encoding

        return get_encoding(name)

    def text_counter(self, encoding: str) -> TextCount:
        """Counts texts in ``encoding`` through the memo; loads the vocabulary on first use.

        One per encoding, kept: the vocabulary is looked up once, not on every request.
        """
        counter = self._text_counters.get(encoding)
        if counter is None:
            counter = self._text_counters.setdefault(
                encoding,
                TextCount(
                    encoding,
                    lambda: self.encoding(encoding).encode_ordinary,
                    self._memo,
                    self._memo_min_chars,
                ),
            )
        return counter

    def count_text(
        self, text: str, *, model: str | None = None, encoding: str | None = None
    ) -> int:
        """Tokens of a plain text (no chat framing), by ``encoding`` or by ``model``'s encoding."""
        if (model is None) == (encoding is None):
            raise ConfigurationError("pass exactly one of model= or encoding=")
        if encoding is None:
            assert model is not None  # for mypy: guaranteed by the check above
            encoding = encoding_for(model, fallback=self._fallback_encoding)
        return self.text_counter(encoding)(text)

    def count_request(
        self,
        body: Mapping[str, Any],
        *,
        endpoint: Endpoint | None = None,
        fallback_encoding: str | None = None,
        encoding: str | None = None,
    ) -> TokenEstimate:
        """Count a request body as sent to the API.

        Args:
            body: The JSON body (``model`` plus ``messages``, ``input`` or ``prompt`` ...).
            endpoint: Which API it is for; inferred from the body when None.
            fallback_encoding: Encoding for unknown models, overriding the counter's.
            encoding: Encoding for any model (a site's ``tokenizer`` setting).

        Raises:
            UnknownModelError: Unknown model and no fallback encoding configured.
            RequestFormatError: The body has no model or a field of the wrong type.
            VocabularyError: The tokenizer vocabulary is missing or corrupt.
        """
        if type(body) is not dict and not isinstance(body, Mapping):
            raise RequestFormatError("a request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise RequestFormatError("the request body has no model")
        info = model_info(
            model, fallback=fallback_encoding or self._fallback_encoding, encoding=encoding
        )
        if endpoint is None:
            endpoint = infer_endpoint(body, info)
        elif endpoint not in _ENDPOINTS:
            raise ConfigurationError(f"endpoint must be one of {', '.join(sorted(_ENDPOINTS))}")
        count = self.text_counter(info.encoding)
        if endpoint == "chat":
            prompt = messages.count_chat(body, info.chat, count)
        elif endpoint == "responses":
            prompt = messages.count_responses(body, info.chat, count)
        elif endpoint == "embeddings":
            prompt = count_plain_input(body.get("input"), count, field="input")
        else:
            prompt = count_plain_input(body.get("prompt"), count, field="prompt")
        return TokenEstimate(
            model=model,
            encoding=info.encoding,
            prompt_tokens=prompt,
            completion_cap=completion_cap(body, endpoint),
        )

    def memo_stats(self) -> MemoStats:
        """Hits, misses and size of the memo (all zero when it is disabled)."""
        if self._memo is None:
            return MemoStats(hits=0, misses=0, entries=0, chars=0)
        return self._memo.stats()

    def clear_memo(self) -> None:
        """Forget every remembered count."""
        if self._memo is not None:
            self._memo.clear()
        self._text_counters.clear()  # and the short texts each encoding's counter keeps


def infer_endpoint(body: Mapping[str, Any], info: ModelInfo) -> Endpoint:
    """Which API a body is for: messages -> chat; prompt -> completions; input -> the rest."""
    if "messages" in body:
        return "chat"
    if "prompt" in body:
        return "completions"
    if "input" in body:
        return "embeddings" if info.is_embedding else "responses"
    raise RequestFormatError("the request body has none of messages, input or prompt")


def count_plain_input(value: object, count: TextCount, *, field: str) -> int:
    """Embeddings ``input`` / completions ``prompt``: a string, strings, tokens or token lists.

    No framing is added: OpenAI bills exactly the tokens of each input.
    """
    if value is None:
        raise RequestFormatError(f"the request body has no {field}")
    if isinstance(value, str):
        return count(value)
    if not isinstance(value, Sequence) or isinstance(value, bytes | bytearray):
        raise RequestFormatError(f"{field} must be a string, a list of strings or token arrays")
    if all(_is_token(item) for item in value):
        return len(value)
    total = 0
    for item in value:
        if isinstance(item, str):
            total += count(item)
        elif isinstance(item, Sequence) and all(_is_token(token) for token in item):
            total += len(item)
        else:
            raise RequestFormatError(f"{field} items must be strings or token arrays")
    return total


def _is_token(item: object) -> bool:
    return isinstance(item, int) and not isinstance(item, bool)


def _int_field(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_token(value) or value < 0:
        raise RequestFormatError(f"{name} must be a non-negative integer, got {value!r}")
    result: int = value
    return result


def _prompt_count(prompt: object) -> int:
    """How many prompts a completions request holds (each gets its own completions)."""
    if isinstance(prompt, Sequence) and not isinstance(prompt, str) and prompt:
        if all(_is_token(item) for item in prompt):
            return 1
        return len(prompt)
    return 1


def completion_cap(body: Mapping[str, Any], endpoint: Endpoint) -> int | None:
    """The most output tokens the request allows, over all its choices; None if unset.

    Chat: ``max_completion_tokens`` (else ``max_tokens``) times ``n``. Responses:
    ``max_output_tokens``. Completions: ``max_tokens`` times ``max(n, best_of)`` times the
    number of prompts. Embeddings: None.
    """
    if endpoint == "embeddings":
        return None
    if endpoint == "responses":
        return _int_field(body, "max_output_tokens")
    choices = _int_field(body, "n")
    choices = 1 if choices is None else choices
    if endpoint == "chat":
        cap = _int_field(body, "max_completion_tokens")
        if cap is None:
            cap = _int_field(body, "max_tokens")
        return None if cap is None else cap * choices
    cap = _int_field(body, "max_tokens")
    if cap is None:
        return None
    best_of = _int_field(body, "best_of") or 1
    return cap * max(choices, best_of) * _prompt_count(body.get("prompt"))


_counter: _state.Slot[TokenCounter] = _state.Slot("token counter", TokenCounter)


def default_counter() -> TokenCounter:
    """The process-wide counter the module-level functions use."""
    return _counter.get()


def count_request(
    body: Mapping[str, Any],
    *,
    endpoint: Endpoint | None = None,
    fallback_encoding: str | None = None,
    encoding: str | None = None,
) -> TokenEstimate:
    """Count a request body with the default counter (see :meth:`TokenCounter.count_request`)."""
    return default_counter().count_request(
        body, endpoint=endpoint, fallback_encoding=fallback_encoding, encoding=encoding
    )


def count_text(text: str, *, model: str | None = None, encoding: str | None = None) -> int:
    """Tokens of a plain text, by ``model`` or ``encoding`` (exactly one), memoised."""
    return default_counter().count_text(text, model=model, encoding=encoding)


def worst_case(
    body: Mapping[str, Any],
    endpoint: Endpoint | None,
    *,
    cap: int | None,
    fallback: TokenEstimate | None,
) -> Usage:
    """The most a request can be billed: its prompt plus its completion cap.

    ``cap`` is the cap added to requests that set none; ``fallback`` (the Call's estimate)
    answers when the body cannot be counted (no model, an unknown model). A request without
    any cap is charged its prompt only, as a budget reserves it.
    """
    try:
        estimate = count_request(body, endpoint=endpoint, fallback_encoding="o200k_base")
    except Exception:  # an unreadable body: the estimate made before the call, if any
        if fallback is None:
            return Usage()
        estimate = fallback
    output = estimate.completion_cap if estimate.completion_cap is not None else cap
    return Usage(input_tokens=estimate.prompt_tokens, output_tokens=output or 0)
