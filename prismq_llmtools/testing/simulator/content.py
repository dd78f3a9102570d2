"""Deterministic generated content: text of a seeded length, and embedding vectors.

Everything here is a pure function of the simulator's seed and the request, so the same
request always gets the same answer (streamed or not), and a different request another one.
"""

from __future__ import annotations

import array
import base64
import hashlib
import json
import math
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GeneratedText",
    "embedding_base64",
    "embedding_vector",
    "generate_text",
    "request_rng",
]

# Fields that change how an answer is delivered, not what it is.
_DELIVERY_FIELDS = frozenset({"stream", "stream_options", "user", "metadata", "store"})

# Common words that are one token each (with their leading space) in cl100k and o200k, so a
# text of n pieces is n tokens; the exact count always comes from the token counter.
_WORDS = (
    "the",
    "model",
    "data",
    "system",
    "value",
    "result",
    "time",
    "first",
    "new",
    "good",
    "way",
    "work",
    "number",
    "part",
    "people",
    "year",
    "place",
    "case",
    "point",
    "group",
    "problem",
    "fact",
    "hand",
    "week",
    "company",
    "word",
    "line",
    "order",
    "state",
    "level",
    "water",
    "power",
    "city",
    "money",
    "story",
    "light",
    "change",
    "market",
    "team",
    "idea",
    "process",
    "question",
    "answer",
    "report",
    "issue",
    "price",
    "cost",
    "rate",
    "limit",
    "token",
    "request",
    "server",
    "client",
    "test",
    "code",
    "file",
    "batch",
    "cache",
    "budget",
    "call",
    "event",
    "plan",
    "step",
    "list",
    "table",
    "page",
    "text",
    "image",
    "sound",
    "simple",
    "small",
    "large",
    "long",
    "short",
    "high",
    "low",
    "early",
    "late",
    "clear",
    "strong",
    "quick",
    "slow",
    "open",
    "close",
    "full",
    "free",
    "real",
    "true",
    "best",
    "last",
    "next",
    "same",
    "other",
    "each",
    "every",
    "many",
    "most",
    "some",
    "more",
    "less",
    "only",
    "also",
    "just",
    "then",
    "now",
    "here",
    "there",
    "when",
    "where",
    "while",
    "after",
    "before",
    "under",
    "over",
    "between",
    "through",
    "during",
    "without",
    "within",
    "along",
    "across",
    "around",
    "about",
    "again",
    "still",
    "make",
    "take",
    "give",
    "find",
    "keep",
    "show",
    "help",
    "turn",
    "start",
    "run",
    "move",
    "play",
    "hold",
    "bring",
    "write",
    "read",
    "learn",
    "build",
    "send",
    "pay",
    "meet",
    "grow",
    "lead",
    "stand",
    "begin",
    "seem",
    "feel",
    "try",
    "leave",
    "call",
    "need",
)
_SENTENCE_WORDS = 12


def request_rng(seed: int, purpose: str, body: Mapping[str, Any]) -> random.Random:
    """A generator seeded by the simulator's seed, a purpose and the request's content."""
    canonical = json.dumps(
        {k: v for k, v in body.items() if k not in _DELIVERY_FIELDS},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return _rng(seed, purpose, canonical)


def _rng(seed: int, purpose: str, text: str) -> random.Random:
    digest = hashlib.blake2b(f"{seed}\x00{purpose}\x00{text}".encode(), digest_size=16).digest()
    return random.Random(int.from_bytes(digest, "big"))  # noqa: S311 - simulation only


@dataclass(frozen=True, slots=True)
class GeneratedText:
    """A generated answer, its exact token count, and whether the cap cut it short."""

    text: str
    tokens: int
    cut: bool


def _render(pieces: Sequence[str]) -> str:
    return " ".join(pieces).replace(" .", ".")


def generate_text(
    rng: random.Random, target_tokens: int, cap: int | None, count: Callable[[str], int]
) -> GeneratedText:
    """About ``target_tokens`` tokens of text, never more than ``cap`` by ``count``.

    The text is built from pieces that are one token each (words, and a full stop every
    few words), so the first count is normally exact; trimming repeats until it fits.
    """
    limit = max(0, target_tokens if cap is None else min(target_tokens, cap))
    pieces = rng.choices(_WORDS, k=limit)
    for index in range(_SENTENCE_WORDS, limit, _SENTENCE_WORDS + 1):
        pieces[index] = "."
    text = _render(pieces)
    tokens = count(text) if pieces else 0
    while tokens > limit:
        del pieces[max(0, len(pieces) - max(1, tokens - limit)) :]
        text = _render(pieces)
        tokens = count(text) if pieces else 0
    return GeneratedText(text=text, tokens=tokens, cut=cap is not None and target_tokens > cap)


def embedding_vector(
    seed: int, model: str, item: str | Sequence[int], full_dimensions: int, dimensions: int
) -> list[float]:
    """A unit vector for one input; a shorter one is the longer one truncated, renormalised."""
    key = item if isinstance(item, str) else ",".join(map(str, item))
    rng = _rng(seed, f"embedding:{model}:{full_dimensions}", key)
    values = [rng.random() - 0.5 for _ in range(full_dimensions)][:dimensions]
    norm = math.sqrt(math.fsum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def embedding_base64(vector: Sequence[float]) -> str:
    """The vector as OpenAI's ``base64`` encoding: little-endian float32, base64."""
    packed = array.array("f", vector)
    if sys.byteorder != "little":  # pragma: no cover - every supported CI host is little-endian
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")
