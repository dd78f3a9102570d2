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
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar

from prismq_llmtools import events
from prismq_llmtools.clock import Clock, system_clock
from prismq_llmtools.errors import ConfigurationError, StateStoreError
from prismq_llmtools.pricing import UnknownPrice

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from prismq_llmtools.call import Call

__all__ = [
    "HOOKS",
    "STORE_ERROR",
    "Aspect",
    "CacheHit",
    "InFlight",
    "NoSettings",
    "SiteView",
    "UnknownPrice",
    "store_unreachable",
]

STORE_ERROR = "llm.store.error"

S = TypeVar("S", bound="DataclassInstance")


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


@dataclass(frozen=True, slots=True)
class NoSettings:
    """The settings of an aspect that has none."""


class SiteView(Protocol):
    """What an aspect sees of the site it joined (the site core implements it)."""

    @property
    def name(self) -> str:
        """The site's name (``module.qualname`` unless given)."""
        ...

    @property
    def func(self) -> Callable[..., Any]:
        """The decorated function itself."""
        ...

    @property
    def default_model(self) -> str | None:
        """The model of calls whose arguments name none."""
        ...

    @property
    def tokenizer(self) -> str | None:
        """The site's ``tokenizer`` setting (None: the model's tiktoken encoding)."""
        ...

    clock: Clock
    """The clock the site's waits are measured and slept on (an aspect may set it)."""

    def bind(self, call: Call, instance: Any) -> dict[str, Any]:
        """The invocation's arguments by parameter name, defaults applied."""
        ...

    def refresh_hooks(self) -> None:
        """Ask the aspects again which hooks are active (one changed its mind)."""
        ...


class Aspect(Generic[S]):
    """Base class of the per-decorator behaviours; every hook defaults to doing nothing.

    The site only calls the hooks a subclass overrides and reports active (see
    :meth:`active_hooks`).
    An aspect's settings ``S`` are a frozen dataclass: ``base`` holds the decorator's
    arguments, ``settings`` the effective values after the settings file, environment and
    runtime overrides (see :mod:`prismq_llmtools.settings`).
    """

    kind: ClassVar[str] = "aspect"

    def __init__(self, settings: S, *, clock: Clock | None = None) -> None:
        self.base: S = settings
        self.settings: S = settings
        self.clock = clock
        """The clock this aspect was given (tests pass a fake): it becomes the site's."""
        self._site: SiteView | None = None

    @property
    def site(self) -> SiteView:
        """The site this aspect joined."""
        if self._site is None:
            raise RuntimeError(f"@{self.kind} has not joined a site yet")
        return self._site

    def current_clock(self) -> Clock:
        """The site's clock (this aspect's own, or the system's, before it joins one)."""
        if self._site is not None:
            return self._site.clock
        return self.clock or system_clock

    def apply(self, overrides: Mapping[str, Any], site_name: str) -> None:
        """Set ``settings`` to ``base`` with the overrides that name its fields."""
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

    def attach(self, site: SiteView) -> None:
        """Called once when the aspect joins ``site``: the site's clock becomes this
        aspect's own, when it was given one."""
        self._site = site
        if self.clock is not None:
            site.clock = self.clock

    def unknown_price(self) -> UnknownPrice | None:
        """What costing does for a model with no known price, if this aspect decides it."""
        return None

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

    def absorb(self, call: Call, finished_at: float) -> None:
        """Count a call of this site that finished in another process at POSIX time
        ``finished_at`` (a batch worker ran it, and its hooks ran there): totals and
        statistics only, never shared state or money a second time."""

    def process_local_state(self) -> str | None:
        """What state of this aspect only this process holds (an in-process store), if
        any: a batch refuses to run such a site in several processes, each on its own."""
        return None

    def stats_view(self) -> dict[str, Any]:
        """This aspect's live statistics, for ``f.llm.stats()`` (empty: none)."""
        return {}

    def settings_view(self) -> dict[str, Any]:
        """This aspect's effective settings, for ``f.llm``."""
        return dataclasses.asdict(self.settings)

    def overrides(self) -> set[str]:
        """Which hooks this aspect's class overrides."""
        return {hook for hook in HOOKS if getattr(type(self), hook) is not getattr(Aspect, hook)}

    def active_hooks(self) -> set[str]:
        """The hooks the site calls under the current settings (default: every override).

        An aspect whose settings make a hook a no-op (a disabled cache, a budget without
        limits) leaves it out. The site asks again whenever settings change.
        """
        return self.overrides()


def store_unreachable(
    call: Call | None, exc: StateStoreError, policy: Literal["raise", "allow"]
) -> None:
    """A store operation failed: under ``policy`` "raise", fail closed (raise ``exc``);
    under "allow", warn (``llm.store.error``) and let the call go."""
    if policy == "raise":
        raise exc
    events.emit(call, STORE_ERROR, level="warning", store=exc.url, error=str(exc), policy="allow")
