"""Batch items: how one item becomes one call, and how list-capable calls are merged.

An item is the function's single argument, or a tuple of positional arguments, or a dict
of keyword arguments (when every key names a parameter), or an explicit :class:`Args`.
Merging groups items that differ only in one list-capable parameter (``input`` of an
embeddings call) into requests of at most ``max_inputs`` inputs and ``max_tokens`` tokens,
and splits each answer back into one piece per item, in order.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prismq_llmtools.cache.key import UnkeyableArgument, digest, normalise
from prismq_llmtools.errors import ConfigurationError

__all__ = [
    "PIECE",
    "Args",
    "MergeSpec",
    "Unit",
    "build_units",
    "check_items",
    "piece_arguments",
    "signature_of",
    "split_answer",
    "to_call",
]

PIECE = "__merged_input__"
"""Marks the cache arguments of one input of a merged request (see :func:`piece_arguments`),
so that its entry never answers a call of the function itself."""


class Args:
    """The arguments of one batch item, stated explicitly: ``Args(text, model="x")``."""

    __slots__ = ("args", "kwargs")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        shown = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"Args({', '.join(shown)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Args) and (self.args, self.kwargs) == (other.args, other.kwargs)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Signature:
    """What item normalisation needs to know about the function's parameters."""

    names: frozenset[str]
    var_keyword: bool
    signature: inspect.Signature | None


def signature_of(func: Callable[..., Any]) -> Signature:
    """The parameters of ``func`` (a decorated function, or a bound method)."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return Signature(frozenset(), True, None)
    params = sig.parameters.values()
    return Signature(
        frozenset(p.name for p in params if p.kind is not p.VAR_POSITIONAL),
        any(p.kind is p.VAR_KEYWORD for p in params),
        sig,
    )


def check_items(items: object) -> None:
    """Refuse a text as the items of a batch: iterating it would make one call per character.

    Raises:
        TypeError: ``items`` is a ``str``, ``bytes``, ``bytearray`` or ``memoryview``.
    """
    if isinstance(items, str | bytes | bytearray | memoryview):
        raise TypeError(
            f"batch items must be an iterable of items, not a {type(items).__name__} "
            f"(which would make one call per character): pass [{type(items).__name__}] "
            "for a single item"
        )


def to_call(item: Any, sig: Signature) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The ``(args, kwargs)`` of one item."""
    if isinstance(item, Args):
        return item.args, dict(item.kwargs)
    if type(item) is tuple:
        return item, {}
    if (
        type(item) is dict
        and item
        and all(isinstance(k, str) for k in item)
        and (sig.var_keyword or set(item) <= sig.names)
    ):
        return (), dict(item)
    return (item,), {}


@dataclass(slots=True)
class Unit:
    """One call of the function: for one item, or for several merged items."""

    indices: tuple[int, ...]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    merged: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeSpec:
    """How to merge items of a list-capable site into fewer requests.

    Args:
        param: the parameter that takes a list of inputs (``input`` for embeddings).
        max_inputs: inputs per request (OpenAI embeddings: 2048).
        max_tokens: tokens per request, all inputs together (embeddings: 300,000).
        count_tokens: ``(input, model) -> tokens``; default tiktoken's count for the model.
        split: ``(answer, n) -> n pieces``; default: ``answer.data`` by ``index``, or the
            answer itself when it is a sequence of ``n`` pieces.
    """

    param: str
    max_inputs: int = 2048
    max_tokens: int | None = 300_000
    count_tokens: Callable[[Any, str | None], int] | None = None
    split: Callable[[Any, int], Sequence[Any]] | None = field(default=None)
    tokenizer: str | None = None
    """The site's ``tokenizer`` setting, for the default count."""

    def __post_init__(self) -> None:
        if not isinstance(self.max_inputs, int) or self.max_inputs < 1:
            raise ConfigurationError(f"max_inputs must be an int >= 1, got {self.max_inputs!r}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigurationError(f"max_tokens must be >= 1, got {self.max_tokens!r}")


def _default_tokens(value: Any, model: str | None, tokenizer: str | None = None) -> int:
    if isinstance(value, str):
        if tokenizer is not None:
            from prismq_llmtools.openai.tokenizer import count_text_with

            return count_text_with(value, tokenizer=tokenizer)
        from prismq_llmtools.openai.tokens import count_text

        return count_text(value, model=model or "text-embedding-3-small")
    if isinstance(value, list):  # already tokens
        return len(value)
    return len(str(value))


Call = tuple[int, tuple[Any, ...], dict[str, Any]]
"""One item as ``(index, args, kwargs)``."""


def build_units(
    calls: list[Call],
    sig: Signature,
    *,
    merge: MergeSpec | None = None,
    default_model: str | None = None,
) -> list[Unit]:
    """The function calls that cover ``calls`` (one each, or merged)."""
    if merge is None:
        return [Unit((i,), a, kw) for i, a, kw in calls]
    if sig.signature is None or merge.param not in sig.names:
        raise ConfigurationError(f"merge: the function has no parameter {merge.param!r}")
    return _merged(calls, sig.signature, merge, default_model)


def _merged(
    calls: list[Call],
    signature: inspect.Signature,
    spec: MergeSpec,
    default_model: str | None,
) -> list[Unit]:
    count = spec.count_tokens or functools.partial(_default_tokens, tokenizer=spec.tokenizer)
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    units: list[Unit] = []
    for index, args, kwargs in calls:
        try:
            named = dict(signature.bind(*args, **kwargs).arguments)
            if spec.param not in named or isinstance(named[spec.param], list | tuple):
                raise TypeError("not a single input")
            rest = {k: v for k, v in named.items() if k != spec.param}
            group_key = digest(normalise(rest))
        except (TypeError, UnkeyableArgument):  # not mergeable: a call of its own
            units.append(Unit((index,), args, kwargs))
            continue
        groups.setdefault(group_key, []).append((index, named))
    for members in groups.values():
        rest = {k: v for k, v in members[0][1].items() if k != spec.param}
        model = rest.get("model", default_model)
        chunk: list[int] = []
        inputs: list[Any] = []
        tokens = 0
        for index, named in members:
            value = named[spec.param]
            size = count(value, model) if spec.max_tokens is not None else 0
            full = len(chunk) >= spec.max_inputs or (
                spec.max_tokens is not None and chunk and tokens + size > spec.max_tokens
            )
            if full:
                units.append(Unit(tuple(chunk), (), {**rest, spec.param: inputs}, merged=True))
                chunk, inputs, tokens = [], [], 0
            chunk.append(index)
            inputs.append(value)
            tokens += size
        units.append(Unit(tuple(chunk), (), {**rest, spec.param: inputs}, merged=True))
    units.sort(key=lambda unit: unit.indices[0])
    return units


def piece_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], sig: Signature, spec: MergeSpec
) -> dict[str, Any] | None:
    """The arguments one mergeable item is cached under, on its own: the function's other
    arguments (defaults applied), its single input, and the :data:`PIECE` mark; ``None``
    when the item cannot be merged."""
    if sig.signature is None:
        return None
    try:
        bound = sig.signature.bind(*args, **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    named = dict(bound.arguments)
    value = named.get(spec.param)
    if spec.param not in named or isinstance(value, list | tuple):
        return None
    return {**named, PIECE: spec.param}


def split_answer(answer: Any, n: int, spec: MergeSpec) -> list[Any]:
    """One piece of a merged answer per item, in order; ValueError if it does not fit."""
    if spec.split is not None:
        pieces = list(spec.split(answer, n))
    else:
        data = getattr(answer, "data", None)
        if isinstance(data, list):
            pieces = sorted(data, key=lambda d: getattr(d, "index", 0))
        elif isinstance(answer, Sequence) and not isinstance(answer, str | bytes):
            pieces = list(answer)
        else:
            raise ValueError(f"cannot split a {type(answer).__name__} into {n} pieces: give split=")
    if len(pieces) != n:
        raise ValueError(f"a merged answer has {len(pieces)} pieces for {n} inputs")
    return pieces
