"""Running a batch's calls: bounded concurrency, stop on an exhausted budget, outcomes in.

Sync functions run in a thread pool, or on joblib's parallel machinery when the caller
chose a backend with ``joblib.parallel_config(backend=...)`` (a Dask cluster, say); async
functions run as at most ``max_concurrency`` tasks. Every call goes through the
site, so the rate limiter admits (and delays) each one and the cache answers repeats.

An item run in another process (Dask, Ray, loky) sends home, with its result, the calls
it made there and the events they emitted (:class:`FromWorker`); the driver adds them to
its own sites' totals and statistics and writes the events to its own log, so the driver
accounts for the whole batch exactly once.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from prismq_llmtools import events
from prismq_llmtools.batch.items import Unit
from prismq_llmtools.call import Call, current_call
from prismq_llmtools.cost.tracking import usage_totals
from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.site import export
from prismq_llmtools.site.wrapper import core_of

__all__ = [
    "ItemBox",
    "UnitResult",
    "UnitRunner",
    "is_stop_error",
    "item_box",
    "run_async",
    "run_sync",
]


@dataclass(slots=True)
class ItemBox:
    """What the site's calls of one unit cost, filled by the batch aspect's ``finish`` hook."""

    site: str
    parent: Call | None
    cost_usd: Decimal = field(default_factory=Decimal)
    saved_cost_usd: Decimal = field(default_factory=Decimal)
    cache_hits: int = 0
    rate_limited: int = 0
    calls: int = 0

    def add(self, call: Call) -> None:
        self.calls += 1
        self.cost_usd += call.total_cost_usd()
        self.rate_limited += call.rate_limited
        if call.cache == "hit":
            self.cache_hits += 1
            self.saved_cost_usd += call.saved_cost_usd or Decimal(0)


item_box: contextvars.ContextVar[ItemBox | None] = contextvars.ContextVar(
    "prismq_llmtools_batch_item", default=None
)


@dataclass(slots=True)
class FromWorker:
    """What an item run in another process did there: the calls it made, its events."""

    calls: list[export.FinishedCall]
    events: events.Capture

    def deliver(self) -> None:
        """Add the calls to this process's totals and statistics; write the events."""
        for finished in export.absorb(self.calls):
            if finished.recorded:  # a tracked site this process never imported
                usage_totals().record(finished.as_call(), when=finished.finished_at)
        events.replay(self.events)


@dataclass(slots=True)
class UnitResult:
    """How one unit ended: ``ok`` with a value, ``error`` with an exception, or ``not_run``."""

    unit: Unit
    status: str
    value: Any
    box: ItemBox | None
    from_worker: FromWorker | None = None


def is_stop_error(exc: BaseException) -> bool:
    """Whether ``exc`` means no further item can succeed: a budget or the account's quota."""
    if any(klass.__name__ == "BudgetExceeded" for klass in type(exc).__mro__):
        return True
    return getattr(exc, "code", None) == "insufficient_quota"


class StopFlag:
    """Set once, by the first item whose error stops the batch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reason: BaseException | str | None = None

    def set(self, reason: BaseException | str) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason


class UnitRunner:
    """Calls the function for one unit and reports the outcome (picklable by reference)."""

    def __init__(
        self, func: Callable[..., Any], site: str, stop: StopFlag, *, func_ref: str | None
    ) -> None:
        self.func = func
        self.site = site
        self.stop = stop
        self.func_ref = func_ref
        self.context: contextvars.Context | None = contextvars.copy_context()
        self.parent = current_call.get()
        self.driver = export.this_process()
        # What the driver changed at run time travels to worker processes (file and
        # environment settings are theirs: the same where they share the machine's).
        self.runtime_settings = core_of(func).runtime_settings()

    def __call__(self, unit: Unit) -> UnitResult:
        if self.stop.reason is not None:
            return UnitResult(unit, "not_run", self.stop.reason, None)
        if self.context is not None:  # our threads: run in the caller's context (nesting)
            return self.context.copy().run(self._call, unit)
        if self.driver != export.this_process():
            return self._call_away(unit)
        return self._call(unit)  # a joblib backend's worker: keep the worker's own context

    def _call_away(self, unit: Unit) -> UnitResult:
        """In another process: the item's calls and events go home with its result."""
        core_of(self.func).adopt_runtime_settings(self.runtime_settings)
        local = [
            reason
            for aspect in core_of(self.func).aspects
            if (reason := aspect.process_local_state()) is not None
        ]
        if local:
            error = ConfigurationError(
                f"site {self.site!r} runs batch items in several processes, but "
                f"{'; '.join(local)}: each process would hold its own limits. Give it a "
                "store every process shares (store='sqlite:///path' on one machine, "
                "store='redis://host:6379/0' on several)."
            )
            return UnitResult(unit, "error", error, None)
        with export.exporting() as notes, events.capturing() as capture:
            result = self._call(unit)
        result.from_worker = FromWorker(notes.calls, capture)
        return result

    def _call(self, unit: Unit) -> UnitResult:
        box = ItemBox(self.site, self.parent)
        token = item_box.set(box)
        try:
            with _collecting(self.func):
                value = self.func(*unit.args, **unit.kwargs)
        except Exception as exc:
            if is_stop_error(exc):
                self.stop.set(exc)
            return UnitResult(unit, "error", exc, box)
        finally:
            item_box.reset(token)
        return UnitResult(unit, "ok", value, box)

    async def acall(self, unit: Unit, *, in_thread: bool) -> UnitResult:
        """The async variant: awaits the coroutine, or runs a sync function in a thread."""
        if self.stop.reason is not None:
            return UnitResult(unit, "not_run", self.stop.reason, None)
        box = ItemBox(self.site, self.parent)
        token = item_box.set(box)
        try:
            with _collecting(self.func):
                if in_thread:
                    value = await asyncio.to_thread(self.func, *unit.args, **unit.kwargs)
                else:
                    value = await self.func(*unit.args, **unit.kwargs)
        except Exception as exc:
            if is_stop_error(exc):
                self.stop.set(exc)
            return UnitResult(unit, "error", exc, box)
        finally:
            item_box.reset(token)
        return UnitResult(unit, "ok", value, box)

    def __reduce__(self) -> tuple[Any, ...]:
        # Process-based joblib backends (loky, Dask) receive the function by its import
        # path; the caller's context and stop flag stay behind.
        if self.func_ref is None:
            raise TypeError("only a module-level function can be sent to another process")
        return (_remote_runner, (self.func_ref, self.site, self.driver, self.runtime_settings))


def _collecting(func: Any) -> AbstractContextManager[None]:
    """While an item runs, its site's ``@batched`` aspect attributes calls to the item."""
    for aspect in core_of(func).aspects:
        if isinstance(aspect, _Collects):
            return aspect.collecting()
    return nullcontext()


@runtime_checkable
class _Collects(Protocol):
    """The ``@batched`` aspect, as the runner sees it."""

    def collecting(self) -> AbstractContextManager[None]: ...


def _remote_runner(
    func_ref: str, site: str, driver: str, runtime_settings: dict[str, Any]
) -> UnitRunner:
    module_name, _, qualname = func_ref.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    runner = UnitRunner(target, site, StopFlag(), func_ref=func_ref)
    runner.context = None
    runner.parent = None
    runner.driver = driver
    runner.runtime_settings = runtime_settings
    return runner


def joblib_backend_configured() -> bool:
    """Whether the caller chose a backend with ``joblib.parallel_config(backend=...)``."""
    import sys

    parallel = sys.modules.get("joblib.parallel")
    if parallel is None:  # joblib.parallel was never imported: nothing was configured
        return False
    config = getattr(getattr(parallel, "_backend", None), "config", None)
    backend = config.get("backend") if isinstance(config, dict) else None
    defaults = getattr(parallel, "default_parallel_config", {})
    return backend is not None and backend is not defaults.get("backend")


def run_sync(
    runner: UnitRunner,
    units: Iterable[Unit],
    *,
    max_concurrency: int,
    on_outcome: Callable[[UnitResult], None],
) -> None:
    """Run every unit with at most ``max_concurrency`` in flight.

    Threads by default; on joblib's backend when ``joblib.parallel_config`` names one.
    """
    if joblib_backend_configured():
        _run_joblib(runner, units, max_concurrency=max_concurrency, on_outcome=on_outcome)
        return
    import queue
    from concurrent.futures import Future, ThreadPoolExecutor

    pending = iter(units)
    pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="prismq-batch")
    # Each finished future is put on a queue the driver takes from. Not
    # concurrent.futures.wait: it takes every future's lock in turn, and a Ctrl-C landing
    # between two of those acquisitions leaves a lock held for good, so the worker running
    # that future blocks forever in set_result and the process never exits.
    finished: queue.SimpleQueue[Future[UnitResult]] = queue.SimpleQueue()
    running = 0
    try:
        for unit in pending:  # fill the pool, then refill one per completion: no polling
            pool.submit(runner, unit).add_done_callback(finished.put)
            running += 1
            if running >= max_concurrency:
                break
        while running:
            future = finished.get()
            running -= 1
            on_outcome(future.result())
            following = next(pending, None)
            if following is not None:
                pool.submit(runner, following).add_done_callback(finished.put)
                running += 1
    except BaseException as exc:  # Ctrl-C: no new unit starts; running ones finish
        runner.stop.set(exc)
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _run_joblib(
    runner: UnitRunner,
    units: Iterable[Unit],
    *,
    max_concurrency: int,
    on_outcome: Callable[[UnitResult], None],
) -> None:
    from joblib import Parallel, delayed

    # Backends run items in their own workers (and Dask relies on the worker's context):
    # items are not nested under the caller's Call there.
    runner.context = None
    runner.parent = None
    from joblib.parallel import get_active_backend

    # Outcomes as they come, where the backend can stream them; Ray's cannot: there they
    # all arrive when the last item is done (progress and checkpoints advance then).
    backend, _ = get_active_backend()
    streams = getattr(backend, "supports_return_generator", False)
    parallel = Parallel(
        n_jobs=max_concurrency,
        prefer="threads",
        return_as="generator_unordered" if streams else "list",
    )
    outcomes = parallel(delayed(runner)(unit) for unit in units)
    try:
        for outcome in outcomes:
            if outcome.from_worker is not None:
                outcome.from_worker.deliver()
            on_outcome(outcome)
    except BaseException as exc:
        runner.stop.set(exc)
        raise
    finally:
        close = getattr(outcomes, "close", None)
        if close is not None:
            close()


async def run_async(
    runner: UnitRunner,
    units: Iterable[Unit],
    *,
    max_concurrency: int,
    in_thread: bool,
    on_outcome: Callable[[UnitResult], None],
) -> None:
    """Run every unit as at most ``max_concurrency`` concurrent tasks."""
    pending = iter(units)

    async def worker() -> None:
        for unit in pending:  # one shared iterator: each unit is taken by one worker
            on_outcome(await runner.acall(unit, in_thread=in_thread))

    workers = [asyncio.create_task(worker()) for _ in range(max_concurrency)]
    try:
        await asyncio.gather(*workers)
    except BaseException as exc:
        runner.stop.set(exc)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
