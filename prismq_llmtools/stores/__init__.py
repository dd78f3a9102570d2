"""Where rate-limit buckets and budgets live: in-process, a SQLite file, or Redis.

A store is chosen by URL: ``memory`` (the default: this process only), ``sqlite:///path``
(several processes on one machine), ``redis://host:port/db`` (several machines). Every store
has the same semantics: the rate-limit math of :mod:`prismq_llmtools.stores.bucket` and the
budget math of :mod:`prismq_llmtools.stores.ledger`, applied atomically (a lock, a
``BEGIN IMMEDIATE`` transaction, a Lua script).

Stores are reached through a :class:`StateRegistry`: an explicit object, one per process by
default (:data:`default_registry`), injectable into the decorators and resettable in tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from prismq_llmtools import _state
from prismq_llmtools.clock import Clock
from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.stores.bucket import REORDER_WINDOW_S
from prismq_llmtools.stores.urls import display_url

if TYPE_CHECKING:
    from prismq_llmtools.stores.bucket import BucketSpec, Refusal, Ticket
    from prismq_llmtools.stores.ledger import BudgetLine, BudgetStatus, Crossing, Denial

__all__ = [
    "StateRegistry",
    "StateStore",
    "StoreHandle",
    "default_registry",
    "display_url",
]


class StateStore(Protocol):
    """The operations every store performs atomically.

    Time comes from the caller's ``clock`` (the site's): the in-process store reads its
    monotonic ``now()``, the SQLite store its ``wall()`` (shared by every process of the
    machine), the Redis store ignores it and asks the Redis server.
    """

    url: str

    def admit(
        self,
        key: str,
        specs: Sequence[BucketSpec],
        costs: Sequence[float],
        *,
        clock: Clock,
        ticket_id: str,
        ttl_s: float,
        max_wait_s: float,
    ) -> Ticket | Refusal:
        """Reserve ``costs`` in ``key``'s buckets (see :meth:`KeyState.admit`)."""
        ...

    def wait_s(
        self, key: str, specs: Sequence[BucketSpec], ticket: Ticket, *, clock: Clock
    ) -> float:
        """How long ``ticket``'s holder must still wait."""
        ...

    def release(
        self, key: str, specs: Sequence[BucketSpec], ticket: Ticket, *, clock: Clock
    ) -> None:
        """``ticket``'s request was answered and nothing needs correcting: forget it (see
        :meth:`KeyState.release`)."""
        ...

    def feedback(
        self,
        key: str,
        specs: Sequence[BucketSpec],
        ticket: Ticket,
        *,
        clock: Clock,
        deficits: Sequence[float | None] = (),
        refund: Sequence[float] = (),
        pause_s: float = 0.0,
        follow_down: bool = True,
        reorder_s: float = REORDER_WINDOW_S,
        server_limits: Sequence[float | None] = (),
        refused: bool = False,
    ) -> list[float]:
        """Apply what happened to ``ticket``'s request and learn from the server's answer
        (see :meth:`KeyState.feedback`)."""
        ...

    def levels(self, key: str, specs: Sequence[BucketSpec], *, clock: Clock) -> list[float]:
        """What each bucket of ``key`` holds now."""
        ...

    def reserve(
        self,
        scope: str,
        lines: Sequence[BudgetLine],
        amounts: dict[str, int],
        *,
        clock: Clock,
        reservation_id: str,
        ttl_s: float,
    ) -> Denial | None:
        """Reserve ``amounts`` (by unit) against every budget line, or refuse."""
        ...

    def settle(
        self,
        scope: str,
        lines: Sequence[BudgetLine],
        reservation_id: str,
        actual: dict[str, int],
        *,
        clock: Clock,
    ) -> list[Crossing]:
        """Replace a reservation by the actual amounts; return soft thresholds crossed."""
        ...

    def budget_status(
        self, scope: str, lines: Sequence[BudgetLine], *, clock: Clock
    ) -> list[BudgetStatus]:
        """Spent, reserved and remaining per budget line, now."""
        ...

    def clear(self) -> None:
        """Forget every bucket and budget this store holds (tests, operations)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def _open(url: str) -> StateStore:
    scheme = urlsplit(url).scheme
    if url in ("memory", "memory://") or scheme == "memory":
        from prismq_llmtools.stores.memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from prismq_llmtools.stores.sqlite import SQLiteStore

        return SQLiteStore(url)
    if scheme in ("redis", "rediss", "unix"):
        from prismq_llmtools.stores.redis import RedisStore

        return RedisStore(url)
    raise ConfigurationError(
        f"unknown state store {display_url(url)!r}: use 'memory', 'sqlite:///path' or"
        " 'redis://host:port/db'"
    )


def check_store_url(url: str | None) -> None:
    """Raise :class:`ConfigurationError` for a URL no store understands (no connection)."""
    if url is None or url in ("memory", "memory://"):
        return
    scheme = urlsplit(url).scheme
    if scheme not in ("memory", "sqlite", "redis", "rediss", "unix"):
        raise ConfigurationError(
            f"unknown state store {display_url(url)!r}: use 'memory', 'sqlite:///path' or"
            " 'redis://host:port/db'"
        )
    if scheme == "sqlite":
        from prismq_llmtools.stores.sqlite import sqlite_path

        sqlite_path(url)


class StateRegistry:
    """The stores of this process, by URL, and which limits each key was declared with.

    Every site naming the same store URL and key shares one bucket; the in-process store
    lives here, so a fresh registry (or :meth:`reset`) starts from full buckets and empty
    budgets.

    """

    def __init__(self) -> None:
        self._stores: dict[str, StateStore] = {}
        self._declared: dict[tuple[str, str], tuple[str, tuple[BucketSpec, ...]]] = {}
        self._lock = threading.Lock()
        self.generation = 0
        """Counts resets and installs: a user of a store asks again when it changed."""

    def store(self, url: str | None = None) -> StateStore:
        """The store at ``url`` (default ``memory``), opened on first use."""
        url = url or "memory"
        store = self._stores.get(url)
        if store is None:
            with self._lock:
                store = self._stores.get(url)
                if store is None:
                    store = self._stores[url] = _open(url)
        return store

    def install(self, url: str, store: StateStore) -> None:
        """Serve ``url`` from ``store`` (a custom backend, or a fake in tests); a store it
        replaces is closed."""
        with self._lock:
            replaced = self._stores.get(url)
            self._stores[url] = store
            self.generation += 1
        if replaced is not None and replaced is not store:
            replaced.close()

    def declare(self, url: str, key: str, specs: tuple[BucketSpec, ...], site: str) -> None:
        """Record ``key``'s limits; a different declaration by another site is an error."""
        known = self._declared.get((url, key))
        if known is None:
            with self._lock:
                known = self._declared.setdefault((url, key), (site, specs))
        if known[1] != specs:
            raise ConfigurationError(
                f"site {site!r}: rate-limit key {key!r} is already limited differently by"
                f" site {known[0]!r} ({_describe(known[1])} vs {_describe(specs)}); sites"
                " sharing a key must declare the same limits"
            )

    def reset(self) -> None:
        """Forget every in-process bucket and budget and close every store connection."""
        with self._lock:
            stores, self._stores = self._stores, {}
            self._declared.clear()
            self.generation += 1
        for store in stores.values():
            store.close()

    def __repr__(self) -> str:
        return f"StateRegistry(stores={sorted(display_url(u) for u in self._stores)})"


class StoreHandle:
    """An aspect's store: ``registry``'s store at ``url``, looked up on first use and again
    once the registry has been reset or a store installed (its generation changed), when
    ``on_renew`` is told (what the registry forgot, the aspect forgets too)."""

    __slots__ = ("_generation", "_on_renew", "_store", "registry", "url")

    def __init__(
        self, registry: StateRegistry, url: str, on_renew: Callable[[], None] | None = None
    ) -> None:
        self.registry = registry
        self.url = url
        self._on_renew = on_renew
        self._store: StateStore | None = None
        self._generation = -1

    @property
    def reached(self) -> bool:
        """Whether a store was ever found (it may have failed since)."""
        return self._store is not None

    def get(self) -> StateStore:
        """The store, asked of the registry again when its generation changed."""
        store = self._store
        generation = self.registry.generation
        if store is None or self._generation != generation:
            store = self._store = self.registry.store(self.url)
            self._generation = generation
            if self._on_renew is not None:
                self._on_renew()
        return store


def _describe(specs: tuple[BucketSpec, ...]) -> str:
    return ", ".join(f"{s.name}={s.capacity:g}/{s.capacity / s.rate_per_s:g}s" for s in specs)


_registry: _state.Shared[StateRegistry] = _state.Shared("state registry", StateRegistry)


def __getattr__(name: str) -> StateRegistry:
    # ``default_registry``: the registry decorators use unless given ``registry=``, one
    # object for the life of the process (prismq_llmtools._state holds it).
    if name == "default_registry":
        return _registry.get()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
