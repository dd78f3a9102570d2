"""The Aspect protocol: what each decorator contributes to a call site.

A site runs its aspects' hooks in a fixed phase order, whatever order the decorators
were stacked in::

    enter        cache lookup (a hit ends the invocation: no budget, no rate limit, $0)
    reserve      budget reservation (may refuse)
    per attempt:
      before_attempt   rate-limit admission (returns a wait in seconds, 0 to go)
      <run the function, observe usage and headers>
      after_attempt    feedback: 429 pauses, header corrections, refunds (called for
                       every attempt begun, with the error when it failed, was refused
                       or interrupted, even by a KeyboardInterrupt or a cancellation)
      retry_delay      the retry decision (only @retried has one)
    settle       budget settlement, rate-limit reconciliation (success or failure)
    leave        on success only: cache store
    finish       always, last: cost roll-ups, statistics

Hooks are synchronous and never sleep: a hook that must wait returns the wait and the
site's sync or async driver carries it out, so one algorithm serves both. Likewise an
``enter`` hook that finds the same call already in flight returns :class:`InFlight`: the
driver waits for that call's future, then runs ``enter`` again (single flight).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from prismq_llmtools.errors import ConfigurationError

if TYPE_CHECKING:
    from prismq_llmtools.call import Call
    from prismq_llmtools.site.core import SiteCore

__all__ = ["HOOKS", "Aspect", "CacheHit", "InFlight"]

HOOKS = (
    "enter",
    "reserve",
    "before_attempt",
    "after_attempt",
    "retry_delay",
    "settle",
    "leave",
    "finish",
)


@dataclass(frozen=True, slots=True)
class CacheHit:
    """The value an ``enter`` hook found, returned without calling the function."""

    value: Any


@dataclass(frozen=True, slots=True)
class InFlight:
    """An ``enter`` hook's answer: an identical call is computing the result right now.

    The driver waits until ``future`` is done (blocking the thread, or awaiting it without
    blocking the event loop), then runs the ``enter`` hooks again.
    """

    future: Future[Any]


class Aspect:
    """Base class of the per-decorator behaviours; every hook defaults to doing nothing.

    The site only calls the hooks a subclass overrides and reports active (see
    :meth:`active_hooks`), so an unused phase costs nothing.
    An aspect's settings are a frozen dataclass: ``base`` holds the decorator's arguments,
    ``settings`` the effective values after the settings file, environment and runtime
    overrides (see :mod:`prismq_llmtools.settings`).
    """

    kind: ClassVar[str] = "aspect"
    needs_request: ClassVar[bool] = False
    """Whether the site must discover the request (and estimate) before ``reserve``."""

    base: Any = None
    settings: Any = None

    def apply(self, overrides: Mapping[str, Any], site_name: str) -> None:
        """Set ``settings`` to ``base`` with the overrides that name its fields."""
        if self.base is None:
            return
        names = {f.name for f in dataclasses.fields(self.base)}
        mine = {k: v for k, v in overrides.items() if k in names}
        if not mine and self.settings is self.base:
            return
        try:
            new = dataclasses.replace(self.base, **mine)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"site {site_name!r}: {exc}") from exc
        self.settings = new
        self.configured()

    def configured(self) -> None:
        """Called after ``settings`` changed; rebuild anything derived from them."""

    def attach(self, site: SiteCore) -> None:
        """Called once when the aspect joins ``site``."""

    def enter(self, call: Call) -> CacheHit | InFlight | None:
        return None

    def reserve(self, call: Call) -> None:
        return None

    def before_attempt(self, call: Call) -> float:
        return 0.0

    def after_attempt(self, call: Call, error: BaseException | None) -> None:
        return None

    def retry_delay(self, call: Call, error: BaseException) -> float | None:
        return None

    def settle(self, call: Call) -> None:
        return None

    def leave(self, call: Call, result: Any) -> None:
        return None

    def finish(self, call: Call) -> None:
        return None

    def stats_view(self) -> dict[str, Any]:
        """This aspect's live statistics, for ``f.llm.stats()`` (empty: none)."""
        return {}

    def settings_view(self) -> dict[str, Any]:
        """This aspect's effective settings, for ``f.llm``."""
        if self.settings is None:
            return {}
        return dataclasses.asdict(self.settings)

    def overrides(self) -> set[str]:
        """Which hooks this aspect's class overrides."""
        return {hook for hook in HOOKS if getattr(type(self), hook) is not getattr(Aspect, hook)}

    def active_hooks(self) -> set[str]:
        """The hooks the site calls under the current settings (default: every override).

        An aspect whose settings make a hook a no-op (a disabled cache, a budget without
        limits) leaves it out, so the site does not pay for calling it. The site asks again
        whenever settings change.
        """
        return self.overrides()
