"""The SQLite store: buckets and budgets shared by every process of one machine.

Each key's buckets and each scope's budget is one JSON row. An operation reads the row,
applies the same pure math as the in-process store, and writes it back inside one
``BEGIN IMMEDIATE`` transaction, which SQLite serialises across processes (WAL journal,
a busy timeout instead of failing when another process holds the lock). Times are the
caller's wall clock (``clock.wall()``), which every process of the machine shares.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from prismq_llmtools.clock import Clock, wall_seconds
from prismq_llmtools.errors import ConfigurationError, StateStoreError
from prismq_llmtools.files import private_file
from prismq_llmtools.stores.bucket import (
    REORDER_WINDOW_S,
    BucketSpec,
    KeyState,
    Refusal,
    Ticket,
    check_admission,
    check_feedback,
    signature,
)
from prismq_llmtools.stores.ledger import BudgetLine, BudgetStatus, Crossing, Denial, LedgerState

__all__ = ["SQLiteStore", "sqlite_path"]

T = TypeVar("T")
S = TypeVar("S")


class _Corrupt(ValueError):
    """A stored state that cannot be read (the ``error`` of a :class:`StateStoreError`)."""


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rate_limits (key TEXT PRIMARY KEY, state TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS budgets (key TEXT PRIMARY KEY, state TEXT NOT NULL)",
)
_BUSY_TIMEOUT_MS = 30_000


def sqlite_path(url: str) -> Path:
    """The file of ``sqlite:///absolute/path`` or ``sqlite://relative/path``."""
    if not url.startswith("sqlite://") or len(url) <= len("sqlite://"):
        raise ConfigurationError(f"state store {url!r}: expected sqlite:///path/to/file")
    return Path(url[len("sqlite://") :])


class SQLiteStore:
    """State in a SQLite file; one connection per thread (and per process after a fork)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    # -- connections -----------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # forked: never share a connection with the parent
            self._local = threading.local()
            self._connections = []
            self._pid = os.getpid()
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._open()
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _open(self) -> sqlite3.Connection:
        """A new connection to the file, in WAL mode, with the schema.

        Processes opening a new file at the same moment race to set it up: switching the
        journal mode can fail at once with "database is locked" (or an I/O error), without
        waiting on the busy timeout. The set-up is retried for as long as that timeout.
        """
        private_file(self.path)  # user-only; SQLite gives -wal and -shm the file's mode
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        pause = 0.01
        while True:
            connection = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            try:
                connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = NORMAL")
                for statement in _SCHEMA:
                    connection.execute(statement)
            except sqlite3.OperationalError:
                connection.close()
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.25)
            else:
                return connection

    def _update(
        self,
        table: str,
        key: str,
        read: Callable[[Any], S],
        change: Callable[[S], tuple[Any, T]],
        *,
        write: bool = True,
    ) -> T:
        """Read ``key``'s JSON into a state with ``read``, apply ``change`` (-> new JSON or
        None, result), write back.

        A read-only change runs without the write lock (WAL readers never wait for writers).
        A row that is not valid JSON, or not a state ``read`` accepts, is a
        :class:`StateStoreError` and is left as it is: never read as an empty state, which
        would reset a budget or a rate limit.
        """
        try:
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
            try:
                row = connection.execute(
                    f"SELECT state FROM {table} WHERE key = ?",  # noqa: S608 - fixed table names
                    (key,),
                ).fetchone()
                try:
                    state = read(json.loads(row[0]) if row else None)
                except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
                    problem = f"{type(exc).__name__}: {exc}"[:300]
                    raise _Corrupt(f"the {table} row {key!r} cannot be read ({problem})") from exc
                new, result = change(state)
                if new is not None:
                    connection.execute(
                        f"INSERT INTO {table} (key, state) VALUES (?, ?) "  # noqa: S608
                        "ON CONFLICT(key) DO UPDATE SET state = excluded.state",
                        (key, json.dumps(new, separators=(",", ":"))),
                    )
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        except (sqlite3.Error, _Corrupt) as exc:
            raise StateStoreError(self.url, exc) from exc
        return result

    def _on_key(
        self,
        key: str,
        specs: Sequence[BucketSpec],
        now: float,
        action: Callable[[KeyState], T],
        *,
        write: bool = True,
    ) -> T:
        names = signature(specs)

        def read(data: Any) -> KeyState:
            if data is not None and not isinstance(data, dict):
                raise ValueError(f"a key's state is a JSON object, not {type(data).__name__}")
            if data is None or data.get("names") != names:  # new, or other buckets: afresh
                return KeyState(len(specs))
            if len(data["tats"]) != len(specs):
                raise ValueError(f"{len(data['tats'])} buckets where {len(specs)} are declared")
            state = KeyState.from_dict(data, len(specs))
            # Numbers, but infinite, NaN or absurdly far ahead: what an older version stored
            # from an unbounded Retry-After. Kept, they would stall the key for good.
            state.recover(now)
            return state

        def change(state: KeyState) -> tuple[Any, T]:
            result = action(state)
            return ({"names": names, **state.to_dict()} if write else None), result

        return self._update("rate_limits", key, read, change, write=write)

    def _on_scope(self, scope: str, action: Callable[[LedgerState], T]) -> T:
        def read(data: Any) -> LedgerState:
            return LedgerState() if data is None else LedgerState.from_dict(data)

        def change(ledger: LedgerState) -> tuple[Any, T]:
            result = action(ledger)
            return ledger.to_dict(), result

        return self._update("budgets", scope, read, change)

    # -- rate limits -----------------------------------------------------------------

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
        check_admission(key, costs, ttl_s)
        now = wall_seconds(clock)
        return self._on_key(
            key,
            specs,
            now,
            lambda s: s.admit(
                specs, costs, now, ticket_id=ticket_id, ttl_s=ttl_s, max_wait_s=max_wait_s
            ),
        )

    def wait_s(
        self, key: str, specs: Sequence[BucketSpec], ticket: Ticket, *, clock: Clock
    ) -> float:
        now = wall_seconds(clock)
        return self._on_key(key, specs, now, lambda s: s.wait_s(ticket, now), write=False)

    def release(
        self, key: str, specs: Sequence[BucketSpec], ticket: Ticket, *, clock: Clock
    ) -> None:
        now = wall_seconds(clock)
        self._on_key(key, specs, now, lambda s: s.release(ticket, now))

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
        check_feedback(key, deficits, refund, pause_s)
        now = wall_seconds(clock)
        return self._on_key(
            key,
            specs,
            now,
            lambda s: s.feedback(
                specs,
                ticket,
                now,
                deficits=deficits,
                refund=refund,
                pause_s=pause_s,
                follow_down=follow_down,
                reorder_s=reorder_s,
                server_limits=server_limits,
                refused=refused,
            ),
        )

    def levels(self, key: str, specs: Sequence[BucketSpec], *, clock: Clock) -> list[float]:
        now = wall_seconds(clock)
        return self._on_key(
            key,
            specs,
            now,
            lambda s: [s.level(specs, i, now) for i in range(len(specs))],
            write=False,
        )

    # -- budgets ---------------------------------------------------------------------

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
        now = wall_seconds(clock)
        return self._on_scope(
            scope,
            lambda ledger: ledger.reserve(
                lines, amounts, now, reservation_id=reservation_id, ttl_s=ttl_s
            ),
        )

    def settle(
        self,
        scope: str,
        lines: Sequence[BudgetLine],
        reservation_id: str,
        actual: dict[str, int],
        *,
        clock: Clock,
    ) -> list[Crossing]:
        now = wall_seconds(clock)
        return self._on_scope(
            scope, lambda ledger: ledger.settle(lines, reservation_id, actual, now)
        )

    def budget_status(
        self, scope: str, lines: Sequence[BudgetLine], *, clock: Clock
    ) -> list[BudgetStatus]:
        now = wall_seconds(clock)
        return self._on_scope(scope, lambda ledger: ledger.status(lines, now))

    # -- housekeeping ----------------------------------------------------------------

    def clear(self) -> None:
        try:
            connection = self._connection()
            connection.execute("DELETE FROM rate_limits")
            connection.execute("DELETE FROM budgets")
        except sqlite3.Error as exc:
            raise StateStoreError(self.url, exc) from exc

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        self._local = threading.local()
        for connection in connections:
            connection.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"
