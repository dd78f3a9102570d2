"""Global state department: every process-global object of prismq_llmtools, and :func:`reset`.

A process shares a few objects: every site reads the same settings and price table, records
into the same totals, limits through the same stores. Each is held by a :class:`Slot`,
:class:`Shared` or :class:`Memo` of this module, declared (typed) by the module that owns it
and registered here, so that one function can put them all back
(:func:`prismq_llmtools.testing.reset` calls :func:`reset`):

- "settings" (``settings``): forgotten, read again from file and environment;
- "site names" (``settings.sites``): emptied in place: the names of the decorated sites, which the
  report of settings naming no site compares against;
- "price table" (``pricing``): forgotten, the default table again;
- "usage totals" (``cost.tracking``): emptied in place, since sites hold the object;
- "state registry" (``stores``): emptied in place, its stores closed and every bucket,
  budget and declaration forgotten;
- "vocabulary loader" (``openai.vocab``): kept while the environment configures it alike,
  since vocabularies are verified, immutable data that take a fraction of a second to load;
- "token counter" (``openai.tokens``): forgotten, and its memo with it;
- "tokenizers" (``openai.tokenizer``): the ``server:`` and ``hf:`` tokenizers sites named,
  forgotten with their memos and connections;
- "observers" (``observers``): emptied in place, so telemetry exporters stop hearing calls;
- the memos "known prices" and "unknown prices warned" (``pricing``), "volatile types"
  (``cache.key``) and "event seconds" (``alerts.eventtime``): cleared;
- :data:`log` (``events.configure_logging``): undone, structlog's defaults, its file closed;
- :data:`boundary` (``openai.boundary``): removed; the next site call installs it again;
- call ids (:func:`new_call_id`): a new random prefix, counting from 1 again;
- ticket ids (:func:`new_ticket_id`): the same, and also in a child process after a fork.

Not here, on purpose: context variables (the current Call, the cache mode, the batch item)
belong to a task, not to the process; ``openai.models`` and ``openai.prices`` memoise pure
functions of packaged data (``openai_prices.cache_clear()`` rebuilds the price snapshot);
``settings``' table of known keys is filled by the decorators as they are imported (code, not
state).

Importing this module makes nothing and imports no other module of the package, not even
for type checking: each owner declares its slot with its factory when it is imported, so
dependencies point down. :func:`registered` lists what is held. Do not reload it.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TextIO, TypeVar

import structlog

__all__ = [
    "Boundary",
    "LogOutput",
    "Memo",
    "Shared",
    "Slot",
    "boundary",
    "log",
    "new_call_id",
    "registered",
    "reset",
]

T = TypeVar("T")


class _Resettable(Protocol):
    name: str

    def reset(self) -> None: ...


_held: list[_Resettable] = []
"""Every Slot, Shared and Memo, as their owners declared them."""


class Slot(Generic[T]):
    """One process-global object, made on first use by the factory its module provides.

    :meth:`reset` forgets it, so the next use makes a fresh one, unless the module's ``keep``
    says the one made is still as good as a fresh one.
    """

    __slots__ = ("_factory", "_keep", "_lock", "_value", "name")

    def __init__(
        self, name: str, factory: Callable[[], T], *, keep: Callable[[T], bool] | None = None
    ) -> None:
        self.name = name
        self._factory = factory
        self._keep = keep
        self._value: T | None = None
        self._lock = threading.Lock()
        _held.append(self)

    def get(self) -> T:
        """The object, made on first use."""
        value = self._value
        if value is None:
            with self._lock:
                value = self._value
                if value is None:
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


class _Emptiable(Protocol):
    def reset(self) -> None: ...


R = TypeVar("R", bound=_Emptiable)


class Shared(Slot[R]):
    """A process-global object made once and never replaced, because decorated sites keep a
    reference to it; :meth:`reset` empties it in place instead."""

    __slots__ = ()

    def __init__(self, name: str, factory: Callable[[], R]) -> None:
        super().__init__(name, factory)

    def reset(self) -> None:
        """Empty the object, if it was made."""
        value = self.peek()
        if value is not None:
            value.reset()


K = TypeVar("K")
V = TypeVar("V")


class Memo(dict[K, V]):
    """A process-global memo of a pure function; :func:`reset` clears it."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        _held.append(self)

    def reset(self) -> None:
        """Forget every remembered answer."""
        self.clear()


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

    def maybe_instrument(self, install: Callable[[], None]) -> None:
        """Run ``install`` unless switched off (a site does, once openai is in use)."""
        if self.auto:
            install()
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


log = LogOutput()
boundary = Boundary()

# Call ids: a random prefix and a counter, unique without paying for uuid4 on every call.
_call_id_prefix = os.urandom(4).hex()
_call_ids = itertools.count(1)


def new_call_id() -> str:
    """A new Call's id, unique in this process."""
    return f"{_call_id_prefix}{next(_call_ids):08x}"


def _ticket_id_source() -> Iterator[str]:
    # 8 random bytes: a ticket id must be unique in every process sharing a store (Redis).
    return map(f"{os.urandom(8).hex()}.".__add__, map(str, itertools.count(1)))


_ticket_ids = _ticket_id_source()


def new_ticket_id() -> str:
    """A new id for a rate limiter's ticket, unique among the processes sharing a store."""
    return next(_ticket_ids)


def _renew_ticket_ids() -> None:
    global _ticket_ids
    _ticket_ids = _ticket_id_source()


# A forked child would otherwise count on from its parent's prefix and count, as its siblings do.
os.register_at_fork(after_in_child=_renew_ticket_ids)


def registered() -> list[str]:
    """The names of the process-global objects held, in the order their owners declared them."""
    return [held.name for held in _held]


def reset() -> None:
    """Put every process-global object back as it was at import (see the module docstring)."""
    global _call_id_prefix, _call_ids
    for held in _held:
        held.reset()
    log.reset()
    boundary.reset()
    _call_id_prefix, _call_ids = os.urandom(4).hex(), itertools.count(1)
    _renew_ticket_ids()
