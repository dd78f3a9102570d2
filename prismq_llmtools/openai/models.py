"""Which tokenizer encoding and which prompt-format constants each OpenAI model uses.

A model name resolves to a *family* (``gpt-4o-mini``, ``gpt-4``, ``o3`` ...) by its longest
known prefix, so dated snapshots (``gpt-4o-2024-08-06``), suffixed variants (``o3-mini``,
``gpt-4-turbo``) and fine-tuned names (``ft:gpt-4o-mini:org::id``) resolve like their base.
The constants are facts OpenAI published (the cookbook "How to count tokens with tiktoken"
and the vision guide); where OpenAI published none for a family, the nearest documented
family's constants are used, as ``docs/counting.md`` lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

from prismq_llmtools.errors import ConfigurationError, UnknownModelError

__all__ = [
    "KNOWN_ENCODINGS",
    "ChatFormat",
    "ImageRule",
    "ModelInfo",
    "encoding_for",
    "model_info",
]

KNOWN_ENCODINGS = frozenset({"o200k_base", "cl100k_base", "p50k_base", "r50k_base"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRule:
    """How a family bills one image.

    Tile models: ``base_tokens`` for ``detail: low``; for high, ``base_tokens`` plus
    ``tile_tokens`` per 512 px tile. Patch models (``patch_multiplier`` set): 32 px
    patches (at most 1536) times the multiplier, whatever the detail.
    """

    base_tokens: int = 0
    tile_tokens: int = 0
    patch_multiplier: float | None = None

    def __post_init__(self) -> None:
        if min(self.base_tokens, self.tile_tokens) < 0:
            raise ConfigurationError("image token constants must not be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatFormat:
    """Tokens the chat format adds around content (sources in docs/counting.md).

    ``result_framing`` frames a function or tool result in place of ``per_message``.
    ``bare_block_saving`` is what a function's parameter block costs below the tokens of
    its text when its first line is a parameter rather than a comment. ``compact_calls``:
    call arguments count as their JSON without spaces, and the results of several calls
    made in one message as one message listing their outputs. ``function_tools`` is what
    a request with function definitions adds beyond them (gpt-5: a fixed text of 85 tokens,
    measured on gpt-5-nano).
    """

    per_message: int = 3
    per_name: int = 1
    reply_priming: int = 3
    result_framing: int = 1
    bare_block_saving: int = 0
    compact_calls: bool = False
    function_tools: int = 0
    image: ImageRule = ImageRule(base_tokens=85, tile_tokens=170)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInfo:
    """What counting needs to know about one model name."""

    model: str
    family: str
    encoding: str
    chat: ChatFormat
    is_embedding: bool = False


_O200K = ChatFormat(result_framing=4, bare_block_saving=1, compact_calls=True)
# Reasoning models (o-series, gpt-5) prime the reply with one token fewer (docs/counting.md).
_REASONING = replace(_O200K, reply_priming=2)
# gpt-5 requests with function tools are billed 85 tokens above their text, whatever the
# number of tools (docs/counting.md): counted, so that a budget is not under-reserved.
_GPT5 = replace(_REASONING, function_tools=85)
_CL100K = ChatFormat()
_TILES_4O = ImageRule(base_tokens=85, tile_tokens=170)
_TILES_GPT5 = ImageRule(base_tokens=70, tile_tokens=140)
_TILES_O_SERIES = ImageRule(base_tokens=75, tile_tokens=150)
_TILES_4O_MINI = ImageRule(base_tokens=2833, tile_tokens=5667)


def _patches(multiplier: float) -> ImageRule:
    return ImageRule(patch_multiplier=multiplier)


# family -> (encoding, chat format). Matching is by longest family prefix, see _family_of.
_FAMILIES: Mapping[str, tuple[str, ChatFormat]] = {
    # The 0301 snapshot used a different message framing (cookbook: 4 per message, -1 per name).
    "gpt-3.5-turbo-0301": ("cl100k_base", replace(_CL100K, per_message=4, per_name=-1)),
    "gpt-3.5-turbo": ("cl100k_base", _CL100K),
    "gpt-3.5": ("cl100k_base", _CL100K),
    "gpt-4": ("cl100k_base", _CL100K),
    "gpt-4o": ("o200k_base", _O200K),
    "chatgpt-4o": ("o200k_base", _O200K),
    "gpt-4o-mini": ("o200k_base", replace(_O200K, image=_TILES_4O_MINI)),
    "gpt-4.1": ("o200k_base", _O200K),
    "gpt-4.1-mini": ("o200k_base", replace(_O200K, image=_patches(1.62))),
    "gpt-4.1-nano": ("o200k_base", replace(_O200K, image=_patches(2.46))),
    "gpt-4.5": ("o200k_base", _O200K),
    "gpt-5": ("o200k_base", replace(_GPT5, image=_TILES_GPT5)),
    "gpt-5-mini": ("o200k_base", replace(_GPT5, image=_patches(1.62))),
    "gpt-5-nano": ("o200k_base", replace(_GPT5, image=_patches(2.46))),
    "o1": ("o200k_base", replace(_REASONING, image=_TILES_O_SERIES)),
    "o3": ("o200k_base", replace(_REASONING, image=_TILES_O_SERIES)),
    "o4-mini": ("o200k_base", replace(_REASONING, image=_patches(1.72))),
    "codex-mini": ("o200k_base", replace(_REASONING, image=_patches(1.72))),
    "computer-use-preview": (
        "o200k_base",
        replace(_O200K, image=ImageRule(base_tokens=65, tile_tokens=129)),
    ),
    "davinci-002": ("cl100k_base", _CL100K),
    "babbage-002": ("cl100k_base", _CL100K),
    "text-embedding-3-small": ("cl100k_base", _CL100K),
    "text-embedding-3-large": ("cl100k_base", _CL100K),
    "text-embedding-ada-002": ("cl100k_base", _CL100K),
}
_FAMILIES_LONGEST_FIRST = sorted(_FAMILIES, key=len, reverse=True)
# Versioned successors written with a dot (gpt-5.1, gpt-5.2-pro) belong to these families.
_DOT_VERSIONED = frozenset({"gpt-5"})


def _base_name(model: str) -> str:
    """Strip decorations that do not change the tokenizer: ``ft:`` names, Azure spellings."""
    name = model.strip().lower()
    if name.startswith("ft:"):
        name = name[3:].split(":", 1)[0]
    if name.startswith("openai/"):
        name = name[len("openai/") :]
    return name.replace("gpt-35-", "gpt-3.5-")


def _family_of(name: str) -> str | None:
    for family in _FAMILIES_LONGEST_FIRST:
        if name == family or name.startswith(family + "-"):
            return family
        if family in _DOT_VERSIONED and name.startswith(family + "."):
            return family
    return None


def _check_encoding(encoding: str | None) -> str | None:
    if encoding is not None and encoding not in KNOWN_ENCODINGS:
        raise ConfigurationError(
            f"encoding {encoding!r} is not one of {', '.join(sorted(KNOWN_ENCODINGS))}"
        )
    return encoding


UNKNOWN_MODEL_HINT = (
    'choose the site\'s tokenizer: tokenizer= on the decorator, `tokenizer = "..."` in the '
    'settings file\'s [defaults] or [sites."<site>"] table, or the environment variable '
    "PRISMQ_LLMTOOLS__<SITE>__TOKENIZER (ALL for every site); the value is a tiktoken "
    f"encoding ({', '.join(sorted(KNOWN_ENCODINGS))}), server:URL or hf:PATH"
)


@lru_cache(maxsize=1024)
def _resolve(model: str) -> ModelInfo | None:
    family = _family_of(_base_name(model))
    if family is None:
        return None
    encoding, chat = _FAMILIES[family]
    return ModelInfo(
        model=model,
        family=family,
        encoding=encoding,
        chat=chat,
        is_embedding="embedding" in family,
    )


def model_info(
    model: str, *, fallback: str | None = None, encoding: str | None = None
) -> ModelInfo:
    """Resolve ``model`` to its family, encoding and format constants.

    Args:
        model: A model name as sent to the API.
        fallback: Encoding for unknown models.
        encoding: Encoding for every model (a site's ``tokenizer`` setting): a known model
            keeps its family's format constants, with this encoding.

    Raises:
        UnknownModelError: The model is unknown and no encoding is given.
        ConfigurationError: ``fallback`` or ``encoding`` names no known encoding.
    """
    info = _resolve(model)
    forced = _check_encoding(encoding)
    if info is not None:
        return info if forced is None or forced == info.encoding else replace(info, encoding=forced)
    encoding = forced or _check_encoding(fallback)
    if encoding is None:
        raise UnknownModelError(model, UNKNOWN_MODEL_HINT)
    chat = _O200K if encoding == "o200k_base" else _CL100K
    return ModelInfo(
        model=model,
        family="unknown",
        encoding=encoding,
        chat=chat,
        is_embedding="embedding" in model.lower(),
    )


def encoding_for(model: str, *, fallback: str | None = None) -> str:
    """The tiktoken encoding name for ``model`` (``o200k_base``, ``cl100k_base`` ...).

    Raises:
        UnknownModelError: The model is unknown and no fallback is configured.
    """
    return model_info(model, fallback=fallback).encoding
