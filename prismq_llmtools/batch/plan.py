"""A batch before and after it runs: its plan (calls, limits, progress, checkpoint) and the
collector that keeps answers in input order and emits the ``llm.batch`` summary."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from prismq_llmtools import events
from prismq_llmtools.batch.aspect import BatchAspect, BatchPolicy
from prismq_llmtools.batch.checkpoint import Checkpoint, item_key
from prismq_llmtools.batch.items import (
    MergeSpec,
    Unit,
    build_units,
    piece_arguments,
    signature_of,
    split_answer,
    to_call,
)
from prismq_llmtools.batch.progress import Progress
from prismq_llmtools.batch.runner import (
    ItemBox,
    StopFlag,
    UnitResult,
)
from prismq_llmtools.call import current_call
from prismq_llmtools.errors import BatchError, ConfigurationError, ItemNotRun

if TYPE_CHECKING:
    from prismq_llmtools.cache import CacheAspect
    from prismq_llmtools.site.core import SiteCore

__all__ = ["BATCH", "BatchPlan", "Collector", "aspect_of", "func_ref", "plan_batch"]

BATCH = "llm.batch"


def aspect_of(core: SiteCore) -> BatchAspect:
    for aspect in core.aspects:
        if isinstance(aspect, BatchAspect):
            return aspect
    aspect = BatchAspect(BatchPolicy())  # f.batch works on any site, with the defaults
    core.add(aspect)
    return aspect


def func_ref(core: SiteCore) -> str | None:
    qualname = getattr(core.func, "__qualname__", "")
    if "<locals>" in qualname or not qualname:
        return None
    return f"{core.func.__module__}:{qualname}"


@dataclass(slots=True)
class BatchPlan:
    """A batch ready to run: its calls, limits, progress bar and checkpoint."""

    core: SiteCore
    n: int
    units: list[Unit]
    merge: MergeSpec | None
    max_concurrency: int
    progress: Progress
    checkpoint: Checkpoint | None
    keys: list[str]
    resumed: dict[int, Any]
    pieces: dict[int, dict[str, Any]]
    """Merged sites with a cache: each mergeable item's own cache arguments."""
    from_cache: dict[int, Any]
    """Items whose answer the cache held on their own: no request carries them."""
    saved_usd: Decimal


def plan_batch(
    func: Any,
    core: SiteCore,
    items: Iterable[Any],
    *,
    max_concurrency: int | None,
    progress: bool | None,
    checkpoint: str | os.PathLike[str] | None,
) -> BatchPlan:
    aspect = aspect_of(core)
    policy: BatchPolicy = aspect.settings
    merge = aspect.merge_spec()
    sig = signature_of(func)
    calls = [(i, *to_call(item, sig)) for i, item in enumerate(items)]
    n = len(calls)
    store = Checkpoint(checkpoint) if checkpoint is not None else None
    keys: list[str] = []
    resumed: dict[int, Any] = {}
    if store is not None:
        keys = [item_key(core.name, args, kwargs, i) for i, args, kwargs in calls]
        resumed = {i: store.done[keys[i]] for i, _, _ in calls if keys[i] in store.done}
        calls = [c for c in calls if c[0] not in resumed]
    pieces: dict[int, dict[str, Any]] = {}
    from_cache: dict[int, Any] = {}
    saved = Decimal(0)
    cache = _cache(core) if merge is not None else None
    if cache is not None and merge is not None:  # each input is cached on its own
        for index, args, kwargs in calls:
            bound = piece_arguments(args, kwargs, sig, merge)
            if bound is None:
                continue
            pieces[index] = bound
            entry = cache.piece(bound)
            if entry is not None:
                from_cache[index] = entry.value
                saved += entry.cost_usd or 0
        calls = [c for c in calls if c[0] not in from_cache]
    units = build_units(calls, sig, merge=merge, default_model=core.default_model)
    concurrency = max_concurrency or policy.batch_max_concurrency
    if concurrency < 1:
        raise ConfigurationError(f"max_concurrency must be >= 1, got {concurrency}")
    enabled = progress if progress is not None else policy.batch_progress
    bar = Progress(n, enabled=enabled, label=core.name.rsplit(".", 1)[-1], clock=core.clock.now)
    concurrency = min(concurrency, max(len(units), 1))
    return BatchPlan(
        core, n, units, merge, concurrency, bar, store, keys, resumed, pieces, from_cache, saved
    )


def _cache(core: SiteCore) -> CacheAspect | None:
    from prismq_llmtools.cache import CacheAspect

    return next((a for a in core.aspects if isinstance(a, CacheAspect)), None)


class Collector:
    """Receives outcomes (always on the calling thread), keeps answers in input order."""

    def __init__(self, plan: BatchPlan) -> None:
        self.plan = plan
        self.core = plan.core
        self.progress = plan.progress
        self.results: list[Any] = [None] * plan.n
        for index, value in (*plan.resumed.items(), *plan.from_cache.items()):
            self.results[index] = value
        self.failures: dict[int, BaseException] = {}
        self.not_run: list[int] = []
        self.done = len(plan.resumed) + len(plan.from_cache)
        self.cost_usd = Decimal(0)
        self.saved_cost_usd = plan.saved_usd
        self.cache_hits = len(plan.from_cache)  # items answered by the cache
        self.requests = 0  # calls that were not answered by the cache
        self.merged_requests = 0  # of those, the ones carrying several items
        self.rate_limited = 0
        self._cache = _cache(plan.core) if plan.pieces else None
        self.started = self.core.clock.now()

    def __call__(self, outcome: UnitResult) -> None:
        unit = outcome.unit
        box = outcome.box
        if box is not None:
            self.cost_usd += box.cost_usd
            self.saved_cost_usd += box.saved_cost_usd
            self.cache_hits += box.cache_hits * len(unit.indices)
            self.rate_limited += box.rate_limited
            sent = max(box.calls - box.cache_hits, 0)
            self.requests += sent
            self.merged_requests += sent if unit.merged else 0
        values: list[Any] = []
        status = outcome.status
        if status == "ok" and unit.merged:
            try:
                values = split_answer(outcome.value, len(unit.indices), self.plan.merge)  # type: ignore[arg-type]
            except ValueError as exc:
                status, outcome.value = "error", exc
        if values and self._cache is not None:
            self._keep_pieces(unit, values, box)
        checkpoint = self.plan.checkpoint
        for position, index in enumerate(unit.indices):
            if status == "ok":
                value = values[position] if unit.merged else outcome.value
                self.results[index] = value
                if checkpoint is not None:
                    checkpoint.record(self.plan.keys[index], value)
            elif status == "error":
                self.failures[index] = outcome.value
            else:
                self.not_run.append(index)
            self.done += 1
        self.progress.update(done=self.done, failed=len(self.failures), cost_usd=self.cost_usd)

    def _keep_pieces(self, unit: Unit, values: list[Any], box: ItemBox | None) -> None:
        """Cache each input of a merged answer on its own, with its share of the cost."""
        assert self._cache is not None
        share = box.cost_usd / len(values) if box is not None and box.cost_usd else None
        for index, value in zip(unit.indices, values, strict=True):
            bound = self.plan.pieces.get(index)
            if bound is not None:
                self._cache.store_piece(bound, value, cost_usd=share, model=self.core.default_model)

    def finish(
        self,
        stop: StopFlag,
        *,
        return_exceptions: bool,
        interrupted: bool = False,
        **extra: Any,
    ) -> list[Any]:
        self.progress.close()
        if self.plan.checkpoint is not None:
            self.plan.checkpoint.close()
        reason = stop.reason
        stopped = reason if isinstance(reason, BaseException) and not interrupted else None
        n = len(self.results)
        fields: dict[str, Any] = {
            "site": self.core.name,
            "operation": self.core.operation,
            "items": n,
            "ok": self.done - len(self.failures) - len(self.not_run),
            "failed": len(self.failures),
            "not_run": len(self.not_run) + (n - self.done),
            "resumed": len(self.plan.resumed) or None,
            "requests": self.requests,
            "merged_requests": self.merged_requests if self.plan.merge is not None else None,
            "cost_usd": self.cost_usd,
            "saved_cost_usd": self.saved_cost_usd,
            "cache_hits": self.cache_hits,
            "rate_limited": self.rate_limited,
            "duration_s": round(self.core.clock.now() - self.started, 6),
            "max_concurrency": self.plan.max_concurrency,
            "stopped_by": type(stopped).__name__ if stopped is not None else None,
            "interrupted": interrupted or None,
        }
        fields.update(extra)
        parent = current_call.get()
        if parent is not None:
            fields["parent_id"] = parent.call_id
        level = "info" if not (self.failures or self.not_run or interrupted) else "warning"
        events.emit(None, BATCH, level=level, **fields)
        if interrupted or (not self.failures and not self.not_run):
            return self.results
        self.not_run.sort()
        if return_exceptions:
            out = list(self.results)
            for index, exc in self.failures.items():
                out[index] = exc
            for index in self.not_run:
                out[index] = ItemNotRun(index, stopped or "the batch stopped")
            return out
        raise BatchError(
            results=self.results,
            failures=dict(sorted(self.failures.items())),
            not_run=self.not_run,
            stop_reason=stopped,
        )
