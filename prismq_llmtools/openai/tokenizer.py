"""Choosing the tokenizer a site counts with: its ``tokenizer`` setting.

A site's prompts are counted by OpenAI's rules with tiktoken unless its ``tokenizer``
setting names another tokenizer:

- a tiktoken encoding (``"o200k_base"``, ``"cl100k_base"``, ``"p50k_base"``, ``"r50k_base"``):
  OpenAI's chat rules with that encoding, for every model of the site (a deployment whose
  name OpenAI's tables do not know, a proxy that renames models);
- ``"server:URL"``: the server's own chat template and tokenizer, asked over HTTP
  (:mod:`prismq_llmtools.openai.server_tokenizer`): exact for llama.cpp and vLLM;
- ``"hf:PATH"``: a Hugging Face ``tokenizer.json`` through the ``tokenizers`` package
  (:mod:`prismq_llmtools.openai.hf_tokenizer`): exact for text, an estimate for the chat
  template's framing.

Unset, a site counts with its model's encoding; an unknown model is then an
:class:`~prismq_llmtools.errors.UnknownModelError` naming the settings that choose one.
Tokenizers are made once per setting and shared by every site that names it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from prismq_llmtools import _state
from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.openai.models import KNOWN_ENCODINGS
from prismq_llmtools.openai.tokens import count_request, count_text
from prismq_llmtools.settings import check_tokenizer_form

if TYPE_CHECKING:
    from prismq_llmtools.openai.tokens import Endpoint
    from prismq_llmtools.usage import TokenEstimate

__all__ = [
    "Tokenizer",
    "check_tokenizer",
    "count_request_with",
    "count_text_with",
    "tokenizer_for",
]

_lock = threading.Lock()


class Tokenizer(Protocol):
    """Counts request bodies and texts as one particular server would."""

    name: str
    """The setting it was made from (``"server:http://..."``); safe to log."""

    def count_request(self, body: Mapping[str, Any], endpoint: Endpoint | None) -> TokenEstimate:
        """The prompt tokens of ``body`` and its completion cap."""
        ...

    def count_text(self, text: str) -> int:
        """Tokens of a plain text, without chat framing or special tokens."""
        ...

    def close(self) -> None:
        """Release its connections (a later count opens them again)."""
        ...


def check_tokenizer(value: object) -> str:
    """``value`` if it is a valid ``tokenizer`` setting, else :class:`ConfigurationError`.

    Checks the form only (the settings rule of the key): no file is read and no server is
    asked until the first count.
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"tokenizer must be a string, got {value!r}")
    try:
        check_tokenizer_form(value)
    except ValueError as exc:
        raise ConfigurationError(f"tokenizer {value!r}: {exc}") from None
    return value


class _Made(_state.Memo[str, Tokenizer]):
    """The tokenizers made so far; reset closes their connections before forgetting them."""

    def reset(self) -> None:
        for made in list(self.values()):
            made.close()
        super().reset()


_made = _Made("tokenizers")


def tokenizer_for(spec: str) -> Tokenizer | None:
    """The shared tokenizer a non-tiktoken setting names; None for a tiktoken encoding."""
    if spec in KNOWN_ENCODINGS:
        return None
    if spec.startswith("server:"):  # one tokenizer per server, however its URL is written
        spec = spec.rstrip("/").removesuffix("/v1").rstrip("/")
    made = _made.get(spec)
    if made is not None:
        return made
    with _lock:
        made = _made.get(spec)
        if made is None:
            made = _make(check_tokenizer(spec))
            _made[spec] = made
    return made


def _make(spec: str) -> Tokenizer:
    if spec.startswith("server:"):
        from prismq_llmtools.openai.server_tokenizer import ServerTokenizer

        return ServerTokenizer(spec[len("server:") :])
    from prismq_llmtools.openai.hf_tokenizer import HFTokenizer

    return HFTokenizer(spec[len("hf:") :])


def count_request_with(
    body: Mapping[str, Any], *, endpoint: Endpoint | None, tokenizer: str | None
) -> TokenEstimate:
    """Count ``body`` with the site's ``tokenizer`` setting (None: the model's encoding)."""
    if tokenizer is None:
        return count_request(body, endpoint=endpoint)
    chosen = tokenizer_for(tokenizer)
    if chosen is None:
        return count_request(body, endpoint=endpoint, encoding=tokenizer)
    return chosen.count_request(body, endpoint)


def count_text_with(text: str, *, tokenizer: str) -> int:
    """Tokens of a plain text with a tokenizer setting, or with a tiktoken encoding's name."""
    chosen = tokenizer_for(tokenizer)
    if chosen is None:
        return count_text(text, encoding=tokenizer)
    return chosen.count_text(text)
