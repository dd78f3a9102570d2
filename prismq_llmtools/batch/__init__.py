"""``@batched``: ``f.batch(items)`` and ``await f.abatch(items)``.

Every item is one call of the decorated function, through its site: the rate limiter
admits each one (a batch waits instead of bursting into 429s), budgets reserve and refuse
(an exhausted budget stops the batch cleanly), the cache answers repeats. Results come back
in input order; failures are kept in place or carried by :class:`BatchError`. See
the README, section @batched.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

from prismq_llmtools import events
from prismq_llmtools.aspect import Aspect
from prismq_llmtools.batch.checkpoint import Checkpoint, item_key
from prismq_llmtools.batch.estimate import BatchEstimate, estimate_batch
from prismq_llmtools.batch.items import (
    Args,
    MergeSpec,
    Unit,
    build_units,
    signature_of,
    split_answer,
    to_call,
)
from prismq_llmtools.batch.progress import Progress
from prismq_llmtools.batch.runner import (
    Outcome,
    StopFlag,
    UnitRunner,
    item_box,
    run_async,
    run_sync,
)
from prismq_llmtools.call import Call, current_call
from prismq_llmtools.errors import BatchError, ConfigurationError, ItemNotRun
from prismq_llmtools.settings import register_keys
from prismq_llmtools.site.decorate import attach
from prismq_llmtools.site.wrapper import provide_batches
from prismq_llmtools.types import LLMFunction

if TYPE_CHECKING:
    from prismq_llmtools.site.core import SiteCore

__all__ = [
    "BATCH",
    "Args",
    "BatchAspect",
    "BatchEstimate",
    "BatchPolicy",
    "BatchedFunction",
    "batched",
    "run_batch",
    "run_batch_async",
]

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

BATCH = "llm.batch"


class BatchedFunction(LLMFunction[P, R_co], Protocol):
    """A decorated function with ``batch`` and ``abatch``."""

    def batch(self, items: Iterable[Any], **options: Any) -> Any:
        """Call the function once per item, concurrently; answers in input order."""
        ...

    async def abatch(self, items: Iterable[Any], **options: Any) -> Any:
        """The async twin of :meth:`batch`."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchPolicy:
    """How ``f.batch`` runs; every field is also a settings key.

    Args:
        batch_max_concurrency: calls in flight at once (threads, or tasks for async sites).
        batch_progress: True draws a progress bar, False never, None on a terminal only.
        batch_merge: the list-capable parameter to merge items on (``input``), or None.
        batch_max_inputs: inputs per merged request.
        batch_max_tokens: tokens per merged request (None: unbounded).
    """

    batch_max_concurrency: int = 8
    batch_progress: bool | None = None
    batch_merge: str | None = None
    batch_max_inputs: int = 2048
    batch_max_tokens: int | None = 300_000

    def __post_init__(self) -> None:
        if not isinstance(self.batch_max_concurrency, int) or self.batch_max_concurrency < 1:
            raise ConfigurationError(
                f"batch_max_concurrency must be an int >= 1, got {self.batch_max_concurrency!r}"
            )
        if self.batch_progress is not None and not isinstance(self.batch_progress, bool):
            raise ConfigurationError(f"batch_progress must be a bool, got {self.batch_progress!r}")
        MergeSpec(
            param=self.batch_merge or "-",
            max_inputs=self.batch_max_inputs,
            max_tokens=self.batch_max_tokens,
        )


register_keys("batched", frozenset(BatchPolicy.__dataclass_fields__))


class BatchAspect(Aspect[BatchPolicy]):
    """Holds a site's batch settings and attributes each finished call to its batch item."""

    kind = "batched"

    def __init__(
        self,
        policy: BatchPolicy,
        *,
        split: Callable[[Any, int], Sequence[Any]] | None = None,
        count_tokens: Callable[[Any, str | None], int] | None = None,
    ) -> None:
        super().__init__(policy)
        self.split = split
        self.count_tokens = count_tokens
        self._lock = threading.Lock()
        self._items_running = 0

    def active_hooks(self) -> set[str]:
        # Only while batch items run does a call need attributing to its item: every
        # other call of the site skips the hook.
        return {"finish"} if self._items_running else set()

    @contextmanager
    def collecting(self) -> Iterator[None]:
        """Attribute the site's calls to their batch item while the block runs."""
        self._count_items(1)
        try:
            yield
        finally:
            self._count_items(-1)

    def _count_items(self, step: int) -> None:
        with self._lock:
            was = self._items_running
            self._items_running += step
            if (was == 0) != (self._items_running == 0) and self._site is not None:
                self._site.refresh_hooks()

    def finish(self, call: Call) -> None:
        box = item_box.get()
        if box is not None and call.site == box.site and call.parent is box.parent:
            box.add(call)

    def merge_spec(self) -> MergeSpec | None:
        """The merge settings, when this site merges items."""
        policy: BatchPolicy = self.settings
        if policy.batch_merge is None:
            return None
        return MergeSpec(
            param=policy.batch_merge,
            max_inputs=policy.batch_max_inputs,
            max_tokens=policy.batch_max_tokens,
            count_tokens=self.count_tokens,
            split=self.split,
        )


def batched(
    max_concurrency: int = 8,
    *,
    progress: bool | None = None,
    merge: str | None = None,
    max_inputs_per_request: int = 2048,
    max_tokens_per_request: int | None = 300_000,
    split: Callable[[Any, int], Sequence[Any]] | None = None,
    count_tokens: Callable[[Any, str | None], int] | None = None,
    model: str | None = None,
    name: str | None = None,
) -> Callable[[Callable[P, R]], BatchedFunction[P, R]]:
    """Give the decorated function ``f.batch(items)`` and ``await f.abatch(items)``.

    Args:
        max_concurrency: calls in flight at once (``batch_max_concurrency``).
        progress: progress bar: True, False, or None for "on a terminal".
        merge: the list-capable parameter (``input`` of embeddings) whose items are combined
            into fewer requests; the answer is split back per item (see ``split``).
        max_inputs_per_request, max_tokens_per_request: limits of one merged request.
        split: ``(answer, n) -> n pieces`` for merged answers (default: ``answer.data``
            ordered by ``index``, or the answer itself when it is a sequence).
        count_tokens: ``(input, model) -> tokens`` for the merge limit (default: tiktoken).
        model: the site's default model; name: the site name.
    """
    policy = BatchPolicy(
        batch_max_concurrency=max_concurrency,
        batch_progress=progress,
        batch_merge=merge,
        batch_max_inputs=max_inputs_per_request,
        batch_max_tokens=max_tokens_per_request,
    )
    aspect = BatchAspect(policy, split=split, count_tokens=count_tokens)
    return attach(aspect, name=name, model=model)  # type: ignore[return-value]


def _aspect_of(core: SiteCore) -> BatchAspect:
    for aspect in core.aspects:
        if isinstance(aspect, BatchAspect):
            return aspect
    aspect = BatchAspect(BatchPolicy())  # f.batch works on any site, with the defaults
    core.add(aspect)
    return aspect


def _func_ref(core: SiteCore) -> str | None:
    qualname = getattr(core.func, "__qualname__", "")
    if "<locals>" in qualname or not qualname:
        return None
    return f"{core.func.__module__}:{qualname}"


@dataclass(slots=True)
class _Plan:
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


def _plan(
    func: Any,
    core: SiteCore,
    items: Iterable[Any],
    *,
    max_concurrency: int | None,
    progress: bool | None,
    checkpoint: str | os.PathLike[str] | None,
) -> _Plan:
    aspect = _aspect_of(core)
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
    units = build_units(calls, sig, merge=merge, default_model=core.default_model)
    concurrency = max_concurrency or policy.batch_max_concurrency
    if concurrency < 1:
        raise ConfigurationError(f"max_concurrency must be >= 1, got {concurrency}")
    enabled = progress if progress is not None else policy.batch_progress
    bar = Progress(n, enabled=enabled, label=core.name.rsplit(".", 1)[-1], clock=core.clock.now)
    concurrency = min(concurrency, max(len(units), 1))
    return _Plan(core, n, units, merge, concurrency, bar, store, keys, resumed)


class _Collector:
    """Receives outcomes (always on the calling thread), keeps answers in input order."""

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.core = plan.core
        self.progress = plan.progress
        self.results: list[Any] = [None] * plan.n
        for index, value in plan.resumed.items():
            self.results[index] = value
        self.failures: dict[int, BaseException] = {}
        self.not_run: list[int] = []
        self.done = len(plan.resumed)
        self.cost_usd = Decimal(0)
        self.saved_cost_usd = Decimal(0)
        self.cache_hits = 0
        self.rate_limited = 0
        self.started = self.core.clock.now()

    def __call__(self, outcome: Outcome) -> None:
        unit = outcome.unit
        box = outcome.box
        if box is not None:
            self.cost_usd += box.cost_usd
            self.saved_cost_usd += box.saved_cost_usd
            self.cache_hits += box.cache_hits
            self.rate_limited += box.rate_limited
        values: list[Any] = []
        status = outcome.status
        if status == "ok" and unit.merged:
            try:
                values = split_answer(outcome.value, len(unit.indices), self.plan.merge)  # type: ignore[arg-type]
            except ValueError as exc:
                status, outcome.value = "error", exc
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
            "requests": len(self.plan.units),
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


def run_batch(
    func: Any,
    core: SiteCore,
    items: Iterable[Any],
    *,
    max_concurrency: int | None = None,
    return_exceptions: bool = False,
    progress: bool | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    dry_run: bool = False,
    assumed_latency_s: float = 1.0,
    mode: str = "calls",
    client: Any = None,
    state: str | os.PathLike[str] | None = None,
    poll_s: float = 30.0,
    max_requests_per_batch: int = 50_000,
    max_bytes_per_batch: int = 200 * 1024 * 1024,
) -> Any:
    """``f.batch(items, ...)``: call the function once per item; answers in input order.

    Args:
        items: each the argument, a tuple of arguments, a dict of keyword arguments, or
            an :class:`~prismq_llmtools.batch.items.Args`.
        max_concurrency: calls in flight at once (default: the site's setting, 8).
        return_exceptions: put each failure (and an ``ItemNotRun`` for each item that never
            started) in place instead of raising :class:`~prismq_llmtools.errors.BatchError`.
        progress: True, False, or None for "on a terminal".
        checkpoint: a file where finished items are recorded; a rerun with the same file
            skips them (resume after a crash or Ctrl-C).
        dry_run: return a :class:`BatchEstimate` (tokens, cost, duration) without calling.
        assumed_latency_s: per-request latency assumed by the dry run.
        mode: ``"calls"`` (call the function per item) or ``"batch_api"`` (submit the items'
            requests to the OpenAI Batch API: 50% price, results within 24 h; answers are the
            API's response objects).
        client: the ``openai.OpenAI`` client the Batch API mode uploads and polls with.
        state: Batch API mode: a file recording the batch ids; a rerun with it resumes.
        poll_s: Batch API mode: seconds between polls.
        max_requests_per_batch, max_bytes_per_batch: Batch API mode: where to split.

    Returns:
        The answers in input order (or a :class:`BatchEstimate` for a dry run).
    """
    items = list(items)
    if mode not in ("calls", "batch_api"):
        raise ConfigurationError(f"mode must be 'calls' or 'batch_api', got {mode!r}")
    if mode == "batch_api":
        from prismq_llmtools.batch.api import run_batch_api

        plan = _plan(func, core, items, max_concurrency=1, progress=progress, checkpoint=None)
        if dry_run:
            return _estimate(func, plan, assumed_latency_s)
        return run_batch_api(
            func,
            plan,
            client=client,
            return_exceptions=return_exceptions,
            state=state,
            poll_s=poll_s,
            max_requests=max_requests_per_batch,
            max_bytes=max_bytes_per_batch,
        )
    options = {
        "max_concurrency": max_concurrency,
        "return_exceptions": return_exceptions,
        "progress": progress,
        "checkpoint": checkpoint,
        "dry_run": dry_run,
        "assumed_latency_s": assumed_latency_s,
    }
    if core.is_async:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(run_batch_async(func, core, items, **options))  # type: ignore[arg-type]
        raise ConfigurationError(
            f"site {core.name!r} is async and an event loop is running: use await f.abatch()"
        )
    plan = _plan(
        func,
        core,
        items,
        max_concurrency=max_concurrency,
        progress=progress,
        checkpoint=checkpoint,
    )
    if dry_run:
        return _estimate(func, plan, assumed_latency_s)
    collect = _Collector(plan)
    runner = UnitRunner(func, core.name, StopFlag(), func_ref=_func_ref(core))
    try:
        run_sync(runner, plan.units, max_concurrency=plan.max_concurrency, on_outcome=collect)
    except BaseException:
        collect.finish(runner.stop, return_exceptions=True, interrupted=True)
        raise
    return collect.finish(runner.stop, return_exceptions=return_exceptions)


async def run_batch_async(
    func: Any,
    core: SiteCore,
    items: Iterable[Any],
    *,
    max_concurrency: int | None = None,
    return_exceptions: bool = False,
    progress: bool | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    dry_run: bool = False,
    assumed_latency_s: float = 1.0,
    **options: Any,
) -> Any:
    """``await f.abatch(items, ...)``: the async twin of :func:`run_batch`."""
    if options.get("mode", "calls") != "calls":
        return await asyncio.to_thread(
            run_batch,
            func,
            core,
            items,
            max_concurrency=max_concurrency,
            return_exceptions=return_exceptions,
            progress=progress,
            dry_run=dry_run,
            assumed_latency_s=assumed_latency_s,
            **options,
        )
    plan = _plan(
        func,
        core,
        items,
        max_concurrency=max_concurrency,
        progress=progress,
        checkpoint=checkpoint,
    )
    if dry_run:
        return _estimate(func, plan, assumed_latency_s)
    collect = _Collector(plan)
    runner = UnitRunner(func, core.name, StopFlag(), func_ref=None)
    try:
        await run_async(
            runner,
            plan.units,
            max_concurrency=plan.max_concurrency,
            in_thread=not core.is_async,
            on_outcome=collect,
        )
    except BaseException:
        collect.finish(runner.stop, return_exceptions=True, interrupted=True)
        raise
    return collect.finish(runner.stop, return_exceptions=return_exceptions)


def _estimate(func: Any, plan: _Plan, assumed_latency_s: float) -> BatchEstimate:
    if plan.checkpoint is not None:
        plan.checkpoint.close()
    return estimate_batch(
        func,
        plan.core,
        plan.units,
        items=plan.n,
        max_concurrency=plan.max_concurrency,
        assumed_latency_s=assumed_latency_s,
    )


provide_batches(run_batch, run_batch_async)
