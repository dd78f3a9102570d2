"""``@batched``: ``f.batch(items)`` and ``await f.abatch(items)``.

Every item is one call of the decorated function, through its site: the rate limiter
admits each one (a batch waits instead of bursting into 429s), budgets reserve and refuse
(an exhausted budget stops the batch cleanly), the cache answers repeats. Results come back
in input order; failures are kept in place or carried by :class:`BatchError`. See
docs/batch.md.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

from prismq_llmtools.batch.aspect import BatchAspect, BatchPolicy
from prismq_llmtools.batch.estimate import BatchEstimate, estimate_batch
from prismq_llmtools.batch.items import Args, check_items
from prismq_llmtools.batch.plan import BATCH, BatchPlan, Collector, func_ref, plan_batch
from prismq_llmtools.batch.runner import StopFlag, UnitRunner, run_async, run_sync
from prismq_llmtools.call import Endpoint
from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.site.decorate import attach
from prismq_llmtools.site.handle import LLMFunction
from prismq_llmtools.site.wrapper import provide_batches

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


class BatchedFunction(LLMFunction[P, R_co], Protocol):
    """A decorated function with ``batch`` and ``abatch``."""

    def batch(self, items: Iterable[Any], **options: Any) -> Any:
        """Call the function once per item, concurrently; answers in input order."""
        ...

    async def abatch(self, items: Iterable[Any], **options: Any) -> Any:
        """The async twin of :meth:`batch`."""
        ...


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
    tokenizer: str | None = None,
    endpoint: Endpoint | None = None,
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
        tokenizer: what the site's prompts are counted with: a tiktoken encoding
            (``"o200k_base"``), ``"server:URL"`` or ``"hf:PATH"`` (``docs/counting.md``).
        endpoint: the API the function calls (``"chat"``, ``"responses"``, ``"embeddings"``,
            ``"completions"``) when its arguments do not say (an ``input`` parameter).
    """

    def make() -> BatchAspect:
        policy = BatchPolicy(
            batch_max_concurrency=max_concurrency,
            batch_progress=progress,
            batch_merge=merge,
            batch_max_inputs=max_inputs_per_request,
            batch_max_tokens=max_tokens_per_request,
        )
        return BatchAspect(policy, split=split, count_tokens=count_tokens)

    return attach(make, name=name, model=model, tokenizer=tokenizer, endpoint=endpoint)  # type: ignore[return-value]


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
    check_items(items)
    items = list(items)
    if mode not in ("calls", "batch_api"):
        raise ConfigurationError(f"mode must be 'calls' or 'batch_api', got {mode!r}")
    if mode == "batch_api":
        from prismq_llmtools.batch.api import run_batch_api

        plan = plan_batch(func, core, items, max_concurrency=1, progress=progress, checkpoint=None)
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
    plan = plan_batch(
        func,
        core,
        items,
        max_concurrency=max_concurrency,
        progress=progress,
        checkpoint=checkpoint,
    )
    if dry_run:
        return _estimate(func, plan, assumed_latency_s)
    collect = Collector(plan)
    runner = UnitRunner(func, core.name, StopFlag(), func_ref=func_ref(core))
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
    check_items(items)
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
    plan = plan_batch(
        func,
        core,
        items,
        max_concurrency=max_concurrency,
        progress=progress,
        checkpoint=checkpoint,
    )
    if dry_run:
        return _estimate(func, plan, assumed_latency_s)
    collect = Collector(plan)
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


def _estimate(func: Any, plan: BatchPlan, assumed_latency_s: float) -> BatchEstimate:
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
