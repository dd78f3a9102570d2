"""``@cached``: never pay twice for the same answer.

Answers are stored in a joblib.Memory directory keyed by the site's identity and its
normalised arguments (:mod:`prismq_llmtools.cache.key`), behind an in-memory LRU for hot
hits. A hit ends the invocation in the ``enter`` phase: no budget, no rate limit, $0, and an
``llm.cache.hit`` event carrying the cost the original call paid. Identical calls in flight
at the same time make one upstream call (single flight, threads and asyncio alike).

Never cached (see docs/cache.md): errors, streams (a streamed call always
goes upstream), answers of a call whose stream was cut short, raw HTTP responses, and
anything whose pickle contains something that looks like an API key.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

from prismq_llmtools import events
from prismq_llmtools.aspect import Aspect, CacheHit, InFlight
from prismq_llmtools.cache.flight import (
    ABANDONED,
    Flight,
    FlightResult,
    SingleFlight,
    descends_from,
)
from prismq_llmtools.cache.key import (
    UnkeyableArgument,
    digest,
    function_fingerprint,
    key_digest,
    normalise,
)
from prismq_llmtools.cache.key import key_of_arguments as _key_of_arguments
from prismq_llmtools.cache.policy import (
    CachePolicy,
    bypass_cache,
    current_mode,
    deterministic_only,
    refresh_cache,
)
from prismq_llmtools.cache.store import (
    CorruptEntry,
    DiskStore,
    Entry,
    MemoryLayer,
    decode,
    default_cache_dir,
    encode,
    is_immutable,
)
from prismq_llmtools.call import Call, StateKey
from prismq_llmtools.clock import Clock, wall_seconds
from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.site.decorate import attach
from prismq_llmtools.site.handle import LLMFunction
from prismq_llmtools.site.wrapper import core_of, is_site

__all__ = [
    "CACHE_CORRUPT",
    "CACHE_ERROR",
    "CACHE_HIT",
    "CACHE_SKIP",
    "CacheAspect",
    "CachePolicy",
    "bypass_cache",
    "cache_of",
    "cached",
    "deterministic_only",
    "refresh_cache",
]

P = ParamSpec("P")
R = TypeVar("R")

CACHE_HIT = "llm.cache.hit"
CACHE_CORRUPT = "llm.cache.corrupt"
CACHE_ERROR = "llm.cache.error"
CACHE_SKIP = "llm.cache.skip"

CacheKeyFunction = Callable[[Mapping[str, Any]], Any]
Predicate = Callable[[Mapping[str, Any]], bool]

ENTRY_KEY: StateKey[str] = StateKey("cache.entry_key")
"""The key a missed Call's answer is stored under."""
LEADING: StateKey[Flight] = StateKey("cache.leading")
"""The single flight a Call leads: identical calls wait for its answer."""
AWAITING: StateKey[Flight] = StateKey("cache.awaiting")
"""The single flight a Call waits for, until the site joins it."""

_ZERO = Decimal(0)
_MEMORY_MAX_BLOB = 1 << 20  # larger answers are served from disk only
_SECRET_BYTES = re.compile(rb"sk-[A-Za-z0-9_\-]{16,}|Bearer\s+[A-Za-z0-9._\-]{8,}")


class CacheAspect(Aspect[CachePolicy]):
    """Looks answers up in ``enter`` and stores them in ``leave``."""

    kind = "cached"

    def __init__(
        self,
        policy: CachePolicy,
        *,
        key: CacheKeyFunction | None = None,
        when: Predicate | None = None,
        backend: str = "local",
        compress: bool | int = False,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(policy, clock=clock)
        self._key_function = key
        self._when = when
        self._backend = backend
        self._compress = compress
        self._lock = threading.Lock()
        self._flights = SingleFlight()
        self._identity: str | None = None
        self._disk: DiskStore | None = None
        self._memory = MemoryLayer(policy.cache_memory_entries)
        self._since_trim = [0, 0]  # stores and bytes since the size bound was last enforced
        self.stats = {"hits": 0, "misses": 0, "skipped": 0, "stores": 0, "corrupt": 0}

    # -- configuration ------------------------------------------------------------------

    def active_hooks(self) -> set[str]:
        return self.overrides() if self.settings.cache_enabled else set()

    def configured(self) -> None:
        with self._lock:
            self._identity = None
            self._disk = None
            self._memory = MemoryLayer(self.settings.cache_memory_entries)

    def _ready(self) -> tuple[str, DiskStore]:
        identity, disk = self._identity, self._disk
        if identity is not None and disk is not None:
            return identity, disk
        with self._lock:
            policy: CachePolicy = self.settings
            site = self.site
            if self._identity is None:
                self._identity = digest(
                    (
                        site.name,
                        function_fingerprint(site.func),
                        policy.cache_namespace,
                        policy.cache_version,
                    )
                )
            if self._disk is None:
                self._disk = DiskStore(
                    self.location,
                    namespace=policy.cache_namespace,
                    site=site.name,
                    backend=self._backend,
                    compress=self._compress,
                )
            return self._identity, self._disk

    @property
    def location(self) -> Path:
        """The cache's root directory (it may not exist yet)."""
        configured = self.settings.cache_dir
        return Path(configured).expanduser() if configured else default_cache_dir()

    # -- keys ---------------------------------------------------------------------------

    def key_of(self, bound: Mapping[str, Any], instance: Any = None) -> str:
        """The cache key of a call with these bound arguments."""
        identity = self._identity
        if identity is None or self._disk is None:
            identity, _ = self._ready()
        if self._key_function is not None:
            arguments = dict(bound) if instance is None else {**bound, "self": instance}
            return key_digest((identity, normalise(self._key_function(arguments))))
        # the site's default model is configurable: a different model is a different answer
        model = self.site.default_model
        if model is not None and "model" not in bound:
            bound = {**bound, "model": model}
        return _key_of_arguments(identity, bound, instance)

    def contains(self, bound: Mapping[str, Any], instance: Any = None) -> bool:
        """Whether a call with these arguments would be a hit now (no events, no side effects)."""
        if not self.settings.cache_enabled or (self._when is not None and not self._when(bound)):
            return False
        try:
            key = self.key_of(bound, instance)
        except UnkeyableArgument:
            return False
        found = self._memory.get(key)
        if found is not None and not self._expired(found[0]):
            return True
        try:
            blob = self._ready()[1].load(key)
            return blob is not None and not self._expired(decode(blob))
        except CorruptEntry:
            return False

    # -- enter: lookup and single flight ------------------------------------------------

    def enter(self, call: Call) -> CacheHit | InFlight | None:
        if not self.settings.cache_enabled:
            return None
        # Waiting on a flight left the call looked up (a miss) with the flight to rejoin.
        awaited = call.pop(AWAITING) if call.cache is not None else None
        if awaited is not None:
            return self._joined(call, awaited)
        mode = current_mode()
        if mode == "bypass":
            self._skip(call, "bypass_cache")
            return None
        bound = self.site.bind(call, call.instance)
        if bound.get("stream") is True:
            self._skip(call, "stream")
            return None
        if self._when is not None and not self._when(bound):
            self._skip(call, "when")
            return None
        try:
            key = self.key_of(bound, call.instance)
        except UnkeyableArgument as exc:
            self._skip(call, "unkeyable_argument", error=str(exc))
            return None
        if mode != "refresh":
            hit = self._lookup(call, key)
            if hit is not None:
                return hit
        call.put(ENTRY_KEY, key)
        call.cache = "miss"
        self.stats["misses"] += 1
        return self._lead_or_follow(call, key, refresh=mode == "refresh")

    def absorb(self, call: Call, finished_at: float) -> None:
        if call.cache == "hit":
            self.stats["hits"] += 1
        elif call.cache == "miss":
            self.stats["misses"] += 1
            if call.outcome == "ok":
                self.stats["stores"] += 1
        elif call.cache == "bypass":
            self.stats["skipped"] += 1

    def _skip(self, call: Call, reason: str, **fields: Any) -> None:
        call.cache = "bypass"
        self.stats["skipped"] += 1
        events.emit(call, CACHE_SKIP, level="debug", reason=reason, **fields)

    def _lookup(self, call: Call, key: str) -> CacheHit | None:
        found = self._memory.get(key)
        if found is not None:
            entry, blob = found
            if not self._expired(entry):
                return self._hit(call, entry, blob, "memory")
            self._memory.pop(key)
        _, disk = self._ready()
        try:
            blob = disk.load(key)
            if blob is None:
                return None
            entry = decode(blob)
        except CorruptEntry as exc:
            self.stats["corrupt"] += 1
            events.emit(
                call,
                CACHE_CORRUPT,
                level="warning",
                key=key[:16],
                error=events.redact(str(exc))[:300],
            )
            self._forget(disk, key)
            return None
        if self._expired(entry):
            self._forget(disk, key)
            return None
        shared = is_immutable(entry.value)
        if len(blob) <= _MEMORY_MAX_BLOB:
            self._memory.put(key, entry, None if shared else blob)
        return self._hit(call, entry, None if shared else blob, "disk", fresh=True)

    def _forget(self, disk: DiskStore, key: str) -> None:
        with contextlib.suppress(OSError):  # already removed, or a read-only disk
            disk.delete(key)

    def _expired(self, entry: Entry) -> bool:
        ttl = self.settings.cache_ttl_s
        return ttl is not None and self._now() - entry.created > ttl

    def _now(self) -> float:
        return wall_seconds(self.site.clock)

    def _hit(
        self, call: Call, entry: Entry, blob: bytes | None, layer: str, *, fresh: bool = False
    ) -> CacheHit:
        value = entry.value if blob is None or fresh else decode(blob).value
        call.cache = "hit"
        call.usage_source = "cache"
        call.cost_usd = _ZERO
        call.saved_cost_usd = entry.cost_usd
        call.response_model = entry.response_model
        self.stats["hits"] += 1
        if call.logged:
            fields: dict[str, Any] = {"gen_ai.request.model": entry.model}
            events.emit(
                call,
                CACHE_HIT,
                saved_cost_usd=entry.cost_usd if entry.cost_usd is not None else _ZERO,
                layer=layer,
                age_s=round(max(self._now() - entry.created, 0.0), 3),
                **fields,
            )
        return CacheHit(value)

    def _lead_or_follow(self, call: Call, key: str, *, refresh: bool) -> InFlight | CacheHit | None:
        flights = self._flights
        with flights.lock:
            flight = flights.get(key)
            if flight is None:
                if not refresh:  # the previous leader may have finished since our lookup
                    found = self._memory.get(key)
                    if found is not None and not self._expired(found[0]):
                        self.stats["misses"] -= 1
                        return self._hit(call, found[0], found[1], "memory")
                flight = flights.start(key, call)
                call.put(LEADING, flight)
                # Should the call end without its finish hook (another hook raised), free the
                # waiters when it is collected rather than never.
                weakref.finalize(call, flights.finish, flight, ABANDONED)
                return None
        if descends_from(call, flight.leader_id):  # the leader calls itself: never wait on it
            self._skip(call, "recursion")
            return None
        call.put(AWAITING, flight)
        return InFlight(flight.future)

    def _joined(self, call: Call, flight: Flight) -> CacheHit | InFlight | None:
        outcome = flight.future.result()
        if outcome[0] == "ok":
            self.stats["misses"] -= 1
            return self._hit(call, outcome[1], outcome[2], "flight")
        if outcome[0] == "error":
            raise outcome[1]
        return self.enter(call)  # the leader gave up (cancelled, stream): try again

    def _resolve(self, call: Call, outcome: FlightResult) -> None:
        flight = call.pop(LEADING)
        if flight is not None:
            self._flights.finish(flight, outcome)

    # -- leave: store -------------------------------------------------------------------

    def leave(self, call: Call, result: Any) -> None:
        if call.cache != "miss":  # a hit, or not looked up: nothing to store
            return
        key = call.get(ENTRY_KEY)
        if key is None:
            return
        reason = _unstorable(call, result)
        if reason is not None:
            self._skip(call, reason)
            self._resolve(call, ABANDONED)
            return
        self._resolve(call, self._store(call, key, result))

    def _store(self, call: Call, key: str, result: Any) -> FlightResult:
        """Store ``result`` under ``key``; the outcome single-flight waiters receive."""
        entry = Entry(
            value=result,
            created=self._now(),
            cost_usd=call.total_cost_usd()
            if call.cost_usd is not None or call.rollup_cost_usd
            else None,
            model=call.model,
            response_model=call.response_model,
            usage=call.usage,
        )
        try:
            blob = encode(entry)
        except Exception as exc:
            self._skip(call, "unpicklable", error=f"{type(exc).__name__}: {exc}"[:300])
            return ("ok", entry, None)
        shared = is_immutable(result)
        if _SECRET_BYTES.search(blob):
            events.emit(
                call, CACHE_ERROR, level="warning", key=key[:16], error="answer holds a secret"
            )
            return ("ok", entry, None if shared else blob)
        if len(blob) <= _MEMORY_MAX_BLOB:
            self._memory.put(key, entry, None if shared else blob)
        self._save(call, key, blob)
        return ("ok", entry, None if shared else blob)

    def peek(self, call: Call) -> tuple[bool, Any]:
        """``(True, answer)`` when the cache holds ``call``'s answer (used by the Batch API
        mode, which answers cached items without submitting them); records a hit on ``call``.
        """
        if not self.settings.cache_enabled:
            return False, None
        bound = self.site.bind(call, call.instance)
        if self._when is not None and not self._when(bound):
            return False, None
        try:
            key = self.key_of(bound, call.instance)
        except UnkeyableArgument:
            return False, None
        call.put(ENTRY_KEY, key)
        hit = self._lookup(call, key)
        return (True, hit.value) if hit is not None else (False, None)

    # -- one input of a merged request (f.batch with merge=) -----------------------------

    def piece(self, bound: Mapping[str, Any]) -> Entry | None:
        """The entry kept for one input of a merged request, if any and fresh (no events).

        ``bound`` names the input's own arguments (:func:`prismq_llmtools.batch.items.
        piece_arguments`): each input of a merged request is cached on its own, so a rerun
        with one new input sends that input alone.
        """
        if not self._usable(bound, reading=True):
            return None
        try:
            key = self.key_of(bound)
        except UnkeyableArgument:
            return None
        found = self._memory.get(key)
        if found is not None and not self._expired(found[0]):
            return found[0]
        _, disk = self._ready()
        try:
            blob = disk.load(key)
            entry = decode(blob) if blob is not None else None
        except CorruptEntry:
            self.stats["corrupt"] += 1
            self._forget(disk, key)
            return None
        if entry is None or self._expired(entry):
            return None
        self.stats["hits"] += 1
        return entry

    def store_piece(
        self, bound: Mapping[str, Any], value: Any, *, cost_usd: Decimal | None, model: str | None
    ) -> None:
        """Keep the answer to one input of a merged request (see :meth:`piece`)."""
        if not self._usable(bound, reading=False):
            return
        try:
            key = self.key_of(bound)
            blob = encode(Entry(value=value, created=self._now(), cost_usd=cost_usd, model=model))
        except Exception:  # an unkeyable argument or an unpicklable answer: not cached
            return
        if _SECRET_BYTES.search(blob):
            return
        self._save(None, key, blob)

    def _usable(self, bound: Mapping[str, Any], *, reading: bool) -> bool:
        if not self.settings.cache_enabled:
            return False
        mode = current_mode()
        if mode == "bypass" or (reading and mode == "refresh"):
            return False
        return self._when is None or bool(self._when(bound))

    def store(self, call: Call, result: Any) -> None:
        """Store the answer of a call answered outside the site (a Batch API result)."""
        key = call.get(ENTRY_KEY)
        if key is not None and self.settings.cache_enabled:
            self._store(call, key, result)

    def _save(self, call: Call | None, key: str, blob: bytes) -> None:
        _, disk = self._ready()
        try:
            disk.save(key, blob)
        except Exception as exc:  # a full or read-only disk must not fail the call
            events.emit(
                call,
                CACHE_ERROR,
                level="warning",
                key=key[:16],
                error=events.redact(str(exc))[:300],
            )
            return
        self.stats["stores"] += 1
        self._maybe_trim(disk, len(blob))

    def _maybe_trim(self, disk: DiskStore, size: int) -> None:
        policy: CachePolicy = self.settings
        max_bytes, max_entries = policy.cache_max_bytes, policy.cache_max_entries
        if max_bytes is None and max_entries is None:
            return
        since = self._since_trim
        since[0] += 1
        since[1] += size
        # Enforce when the overshoot could reach about a tenth of a bound: bounded, and
        # cheap (a directory walk every few stores, not at every one).
        due = (max_entries is not None and since[0] >= max(1, max_entries // 10)) or (
            max_bytes is not None and since[1] >= max(1, max_bytes // 10)
        )
        if due:
            since[0] = since[1] = 0
            self.trim()

    def finish(self, call: Call) -> None:
        if call.cache != "miss" or call.get(LEADING) is None:  # (only a miss leads a flight)
            return
        error = call.error
        if call.outcome == "error" and isinstance(error, Exception):
            self._resolve(call, ("error", error))
        else:
            self._resolve(call, ABANDONED)

    # -- maintenance --------------------------------------------------------------------

    def trim(self) -> None:
        """Enforce ``cache_max_bytes`` / ``cache_max_entries`` now."""
        policy: CachePolicy = self.settings
        _, disk = self._ready()
        disk.trim(max_bytes=policy.cache_max_bytes, max_entries=policy.cache_max_entries)

    def clear(self) -> None:
        """Remove every entry of this site, in memory and on disk."""
        _, disk = self._ready()
        self._memory.clear()
        disk.clear()

    def entries_on_disk(self) -> int:
        """How many entries this site has on disk."""
        return self._ready()[1].count()

    def settings_view(self) -> dict[str, Any]:
        view = super().settings_view()
        view["location"] = str(self.location)
        return view

    def stats_view(self) -> dict[str, Any]:
        """Hits, misses, skips, stores and corrupt entries since the process started."""
        return dict(self.stats)


def _unstorable(call: Call, result: Any) -> str | None:
    if call.stream_interrupted or call.stream_incomplete:
        return "stream_interrupted"
    if isinstance(result, Iterator | AsyncIterator | Awaitable):
        return "stream"
    if type(result).__module__ in ("openai._legacy_response", "openai._response"):
        return "raw_response"
    return None


def cache_of(func: Any) -> CacheAspect:
    """The cache of a ``@cached`` function: ``clear()``, ``trim()``, ``stats``, ``location``."""
    if is_site(func):
        for aspect in core_of(func).aspects:
            if isinstance(aspect, CacheAspect):
                return aspect
    raise ConfigurationError(f"{func!r} is not decorated with @cached")


def cached(
    location: str | os.PathLike[str] | None = None,
    *,
    enabled: bool = True,
    key: CacheKeyFunction | None = None,
    when: Predicate | None = None,
    ttl_s: float | None = None,
    max_bytes: int | None = None,
    max_entries: int | None = None,
    namespace: str = "default",
    version: str | int = "1",
    memory_entries: int = 1024,
    backend: str = "local",
    compress: bool | int = False,
    clock: Clock | None = None,
    model: str | None = None,
    name: str | None = None,
) -> Callable[[Callable[P, R]], LLMFunction[P, R]]:
    """Cache the decorated function's answers on disk (joblib.Memory), keyed by its request.

    Args:
        location: the cache directory (settings key ``cache_dir``; default
            ``$PRISMQ_LLMTOOLS_CACHE_DIR``, else the per-user cache directory).
        enabled: False makes the decorator fully transparent (``cache_enabled``).
        key: ``bound arguments -> value`` replacing the default key (the arguments that are
            not secrets or transport settings); the site identity is always added.
        when: ``bound arguments -> bool``: only calls for which it is true use the cache
            (see :func:`deterministic_only`).
        ttl_s: expiry in seconds; ``max_bytes`` / ``max_entries``: bounds of the site's
            directory (least recently used go first).
        namespace, version: part of every key; change either to invalidate.
        memory_entries: entries kept in the in-memory front layer.
        backend, compress: passed to ``joblib.Memory`` (a registered joblib store backend
            can put the cache on shared storage).
        clock: the clock whose wall time dates entries (tests pass a FakeClock).
        model: the site's default model; name: the site name.
    """

    def make() -> CacheAspect:
        policy = CachePolicy(
            cache_enabled=enabled,
            cache_dir=os.fspath(location) if isinstance(location, os.PathLike) else location,
            cache_ttl_s=ttl_s,
            cache_max_bytes=max_bytes,
            cache_max_entries=max_entries,
            cache_namespace=namespace,
            cache_version=cast(str, version),  # its rule makes an int a string
            cache_memory_entries=memory_entries,
        )
        return CacheAspect(
            policy, key=key, when=when, backend=backend, compress=compress, clock=clock
        )

    return attach(make, name=name, model=model)
