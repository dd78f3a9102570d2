"""Damage a key's stored rate-limit state the way an older version could have: a value
written raw into the store, past every check of this version."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from prismq_llmtools.clock import Clock
from prismq_llmtools.stores import StateStore
from prismq_llmtools.stores.bucket import BucketSpec, Ticket
from prismq_llmtools.stores.memory import MemoryStore
from prismq_llmtools.stores.redis import RedisStore
from prismq_llmtools.stores.sqlite import SQLiteStore

_REDIS_FIELDS = {"pause_until": "pu", "last_start": "ls", "shift_s": "sh", "tats": "t1"}


def poison(
    store: StateStore,
    key: str,
    specs: Sequence[BucketSpec],
    clock: Clock,
    field: str,
    value: float | str,
) -> None:
    """Store ``value`` as ``key``'s ``field`` (``pause_until``, ``last_start``, ``shift_s``,
    or ``tats``: its first bucket's), as the store itself keeps it.

    The key is first admitted a request, so that its state exists. A float is written as
    the older version wrote it (JSON ``Infinity``/``NaN`` in SQLite, ``%.17g`` in Redis); a
    string is written as is (text that is no number).
    """
    ticket = store.admit(
        key, specs, [1.0] * len(specs), clock=clock, ticket_id="p", ttl_s=60, max_wait_s=0
    )
    assert isinstance(ticket, Ticket)
    if isinstance(store, MemoryStore):
        state = store._partition(clock).keys[key][1]
        if field == "tats":
            state.tats[0] = float(value)
        else:
            setattr(state, field, float(value))
    elif isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as connection:
            (text,) = connection.execute(
                "SELECT state FROM rate_limits WHERE key = ?", (key,)
            ).fetchone()
            data = json.loads(text)
            if field == "tats":
                data["tats"][0] = value
            else:
                data[field] = value
            connection.execute(
                "UPDATE rate_limits SET state = ? WHERE key = ?", (json.dumps(data), key)
            )
    elif isinstance(store, RedisStore):
        raw = value if isinstance(value, str) else f"{value:.17g}"
        store._client.hset(f"prismq_llmtools:rl:{{{key}}}", _REDIS_FIELDS[field], raw)
    else:
        raise AssertionError(store)
