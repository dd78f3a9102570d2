"""Binding call arguments to parameter names, fast for the common signatures."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["Binder"]

_SIMPLE_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


class Binder:
    """Maps ``(args, kwargs)`` to ``{name: value}`` with defaults applied.

    Signatures made only of ordinary parameters take a dict-building fast path (about
    ten times cheaper than ``Signature.bind``); anything else falls back to ``bind``.
    """

    __slots__ = ("_defaults", "_names", "_signature", "_simple")

    def __init__(self, func: Callable[..., Any], *, skip_first: bool = False) -> None:
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):  # builtins without a signature
            signature = inspect.Signature(
                [inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL)]
            )
        params = list(signature.parameters.values())
        if (
            skip_first
            and params
            and params[0].kind
            in (
                inspect.Parameter.POSITIONAL_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
            )
        ):
            params = params[1:]
            signature = signature.replace(parameters=params)
        self._signature = signature
        self._simple = all(p.kind in _SIMPLE_KINDS for p in params)
        self._names = tuple(
            p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        self._defaults = {p.name: p.default for p in params if p.default is not p.empty}

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Names of every parameter, in order."""
        return tuple(self._signature.parameters)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Return the arguments by name, defaults applied; ``**kwargs`` are merged in."""
        if self._simple and len(args) <= len(self._names):
            bound = dict(self._defaults)
            bound.update(zip(self._names, args, strict=False))
            bound.update(kwargs)
            return bound
        try:
            ba = self._signature.bind(*args, **kwargs)
        except TypeError:  # the call itself will raise the user's TypeError
            return dict(kwargs)
        ba.apply_defaults()
        out: dict[str, Any] = {}
        for name, value in ba.arguments.items():
            kind = self._signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                out.update(value)
            else:
                out[name] = value
        return out
