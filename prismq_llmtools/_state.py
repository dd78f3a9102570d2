"""Global state department: every process-global object of prismq_llmtools, and :func:`reset`.

A process shares a few objects: every site reads the same settings and price table, records
into the same totals, limits through the same stores. They all live here, so that one
function can put them back (:func:`prismq_llmtools.testing.reset` calls :func:`reset`):

- ``settings`` (made by ``settings.load_settings``): forgotten, read again from file and env;
- ``price_table`` (``pricing``): forgotten, the default table again;
- ``usage_totals`` (``cost.tracking``): emptied in place, since sites hold the object;
- ``state_registry`` (``stores``): emptied in place, its stores closed and every bucket,
  budget and declaration forgotten;
- ``log`` (``events.configure_logging``): undone, structlog's defaults, its file closed;
- ``boundary`` (``openai.boundary``): removed; the next site call installs it again;
- ``vocabulary_loader`` (``openai.vocab``): kept while the environment configures it alike,
  since vocabularies are verified, immutable data that take a fraction of a second to load;
- ``token_counter`` (``openai.tokens``): forgotten, and its memo with it;
- call ids (``new_call_id``): a new random prefix, counting from 1 again;
- the memos ``volatile_types``, ``event_seconds``, ``known_prices``: cleared.

Not here, on purpose: context variables (the current Call, the cache mode, the batch item)
belong to a task, not to the process; ``openai.models`` and ``openai.prices`` memoise pure
functions of packaged data (``openai_prices.cache_clear()`` rebuilds the price snapshot);
``settings``' table of known keys is filled by the decorators as they are imported (code, not
state); the in-process store's ticket counter only has to be unique.

Importing this module makes nothing and imports no other module of the package: each
module provides the factory of its object when it is imported, so dependencies point down
(only the boundary's installer imports ``openai.boundary``, when a site first needs it).
Do not reload it.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, Protocol, TextIO, TypeVar

import structlog

if TYPE_CHECKING:
    from prismq_llmtools.cost.tracking import UsageTotals
    from prismq_llmtools.openai.tokens import TokenCounter
    from prismq_llmtools.openai.vocab import VocabularyLoader
    from prismq_llmtools.pricing.money import Price
    from prismq_llmtools.pricing.table import PriceTable
    from prismq_llmtools.settings import Settings
    from prismq_llmtools.stores import StateRegistry

__all__ = [
    "Boundary",
    "LogOutput",
    "Shared",
    "Slot",
    "boundary",
    "event_seconds",
    "known_prices",
    "log",
    "new_call_id",
    "price_table",
    "reset",
    "settings",
    "state_registry",
    "token_counter",
    "usage_totals",
    "vocabulary_loader",
    "volatile_types",
]

T = TypeVar("T")


class Slot(Generic[T]):
    """One process-global object, made on first use by the factory its module provides.

    :meth:`reset` forgets it, so the next use makes a fresh one, unless the module's ``keep``
    says the one made is still as good as a fresh one.
    """

    __slots__ = ("_factory", "_keep", "_lock", "_value", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._factory: Callable[[], T] | None = None
        self._keep: Callable[[T], bool] | None = None
        self._value: T | None = None
        self._lock = threading.Lock()

    def provide(self, factory: Callable[[], T], *, keep: Callable[[T], bool] | None = None) -> None:
        """Say how the object is made (its module does, at import) and when reset keeps it."""
        self._factory = factory
        self._keep = keep

    def get(self) -> T:
        """The object, made on first use."""
        value = self._value
        if value is None:
            with self._lock:
                value = self._value
                if value is None:
                    if self._factory is None:  # its module provides one when imported
                        raise RuntimeError(f"nothing provides the process's {self.name}")
                    value = self._value = self._factory()
        return value

    def peek(self) -> T | None:
        """The object if it was made, without making it."""
        return self._value

    def set(self, value: T | None) -> None:
        """Install ``value`` (``None``: make a fresh one on next use)."""
        with self._lock:
            self._value = value

    def reset(self) -> None:
        """Forget the object, unless ``keep`` says it is as good as a fresh one."""
        with self._lock:
            value = self._value
            if value is not None and not (self._keep is not None and self._keep(value)):
                self._value = None


class _Resettable(Protocol):
    def reset(self) -> None: ...


R = TypeVar("R", bound=_Resettable)


class Shared(Generic[R]):
    """A process-global object made once and never replaced, because decorated sites keep a
    reference to it; :meth:`reset` empties it in place instead."""

    __slots__ = ("_slot",)

    def __init__(self, name: str) -> None:
        self._slot: Slot[R] = Slot(name)

    def provide(self, factory: Callable[[], R]) -> None:
        """Say how the object is made (its module does, at import)."""
        self._slot.provide(factory)

    def get(self) -> R:
        """The object, made on first use."""
        return self._slot.get()

    def reset(self) -> None:
        """Empty the object, if it was made."""
        value = self._slot.peek()
        if value is not None:
            value.reset()


class LogOutput:
    """What :func:`~prismq_llmtools.events.configure_logging` set up: structlog's
    configuration, and the file it opened (``None`` for stderr or a caller's stream)."""

    __slots__ = ("configured", "file")

    def __init__(self) -> None:
        self.configured = False
        self.file: TextIO | None = None

    def close_file(self) -> None:
        """Close the file, if one was opened; structlog goes back to its defaults."""
        file, self.file = self.file, None
        if file is not None:
            structlog.reset_defaults()
            self.configured = False
            file.close()

    def reset(self) -> None:
        """Undo :func:`~prismq_llmtools.events.configure_logging`."""
        self.close_file()
        if self.configured:  # to stderr or to a caller's stream
            structlog.reset_defaults()
            self.configured = False


class Boundary:
    """The openai client instrumentation (:mod:`prismq_llmtools.openai.boundary`): the methods
    it replaced, whether sites install it, and whether they still need to look.

    Sites install it once openai has been imported by anyone, checking at each call until
    then, so importing prismq_llmtools or decorating a function never imports openai.
    """

    __slots__ = ("auto", "lock", "originals", "ready")

    def __init__(self) -> None:
        self.ready = False
        """Sites check this on every call until openai is imported and the boundary installed."""
        self.auto = True
        """Whether sites install it; ``openai.boundary.uninstrument()`` switches this off."""
        self.originals: dict[tuple[type, str], object] = {}
        """The client methods the instrumentation replaced, by class and attribute."""
        self.lock = threading.Lock()

    def maybe_instrument(self) -> None:
        """Install the instrumentation unless switched off (a site does, once openai is in)."""
        from prismq_llmtools.openai import boundary as openai_boundary

        if self.auto:
            openai_boundary.instrument()
        self.ready = True

    def restore(self) -> None:
        """Put the client's original methods back."""
        with self.lock:
            for (cls, attribute), original in self.originals.items():
                setattr(cls, attribute, original)
            self.originals.clear()

    def reset(self) -> None:
        """Remove the instrumentation; the next site call that needs it installs it again."""
        self.restore()
        self.auto = True
        self.ready = False


settings: Slot[Settings] = Slot("settings")
price_table: Slot[PriceTable] = Slot("price table")
usage_totals: Shared[UsageTotals] = Shared("usage totals")
state_registry: Shared[StateRegistry] = Shared("state registry")
log = LogOutput()
boundary = Boundary()
vocabulary_loader: Slot[VocabularyLoader] = Slot("vocabulary loader")
token_counter: Slot[TokenCounter] = Slot("token counter")

# Memos: each module that fills one also bounds its size.
volatile_types: dict[type, bool] = {}
"""``cache.key``: whether values of a type are volatile (left out of cache keys)."""
event_seconds: dict[str, float] = {}
"""``alerts.eventtime``: epoch seconds of an event time's ``YYYY-MM-DDTHH:MM:SS``."""
known_prices: dict[tuple[int, str], Price | None] = {}
"""``pricing``: a price table's price of a model, by ``(id(table), model)``."""

# Call ids: a random prefix and a counter, unique without paying for uuid4 on every call.
_call_id_prefix = os.urandom(4).hex()
_call_ids = itertools.count(1)


def new_call_id() -> str:
    """A new Call's id, unique in this process."""
    return f"{_call_id_prefix}{next(_call_ids):08x}"


def reset() -> None:
    """Put every process-global object back as it was at import (see the module docstring)."""
    global _call_id_prefix, _call_ids
    settings.reset()
    price_table.reset()
    known_prices.clear()
    usage_totals.reset()
    state_registry.reset()
    log.reset()
    boundary.reset()
    vocabulary_loader.reset()
    token_counter.reset()
    volatile_types.clear()
    event_seconds.clear()
    _call_id_prefix, _call_ids = os.urandom(4).hex(), itertools.count(1)
