"""A site's hooks per phase: what the phase algorithm calls, rebuilt when settings change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prismq_llmtools.aspect import Aspect, UnknownPrice

__all__ = ["Hooks"]


class Hooks:
    """A site's hooks per phase, for its aspects' current settings (rebuilt when they change).

    An invocation keeps the hooks it started with, so a settings change in mid-call never
    skips the clean-up of a phase that already ran (a cache flight, a budget reservation).
    """

    __slots__ = (
        "after_attempt",
        "before_attempt",
        "enter",
        "finish",
        "leave",
        "reserve",
        "retry",
        "settle",
        "unknown_price",
    )

    def __init__(self, aspects: Sequence[Aspect[Any]]) -> None:
        active = [(aspect, aspect.active_hooks()) for aspect in aspects]

        def hooks(name: str) -> tuple[Any, ...]:
            return tuple(getattr(aspect, name) for aspect, names in active if name in names)

        self.enter = hooks("enter")
        self.reserve = hooks("reserve")
        self.before_attempt = hooks("before_attempt")
        self.after_attempt = hooks("after_attempt")
        self.settle = hooks("settle")
        self.leave = hooks("leave")
        self.finish = hooks("finish")
        retriers = [aspect for aspect, names in active if "retry_delay" in names]
        self.retry: Aspect[Any] | None = retriers[0] if retriers else None
        # Not a hook: the pricing policy decided by the same settings (``@cost_tracked``'s).
        decided = (aspect.unknown_price() for aspect in aspects)
        self.unknown_price: UnknownPrice = next(
            (policy for policy in decided if policy is not None), "estimate"
        )
