"""Calls that finished in another process, carried home as data.

A batch item that a Dask, Ray or loky worker runs makes its calls in that worker's process:
their usage, cost, cache hits and site statistics land in the worker's totals, which the
driver never sees. While :func:`exporting` is active, every call that finishes is also
noted as a :class:`FinishedCall` (plain, picklable data); the batch runner sends the notes
back with the item's result, and the driver's :func:`absorb` adds each one to the site of
the same name in the driver's process, through the same hooks a local call goes through,
so the driver's totals, ``f.llm.stats()`` and reports count the worker's calls exactly once.
"""

from __future__ import annotations

import contextvars
import os
import time
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from prismq_llmtools.call import Call, Outcome, Request
from prismq_llmtools.usage import Usage

if TYPE_CHECKING:
    from prismq_llmtools.site.core import SiteCore

__all__ = ["FinishedCall", "Notes", "absorb", "exporting", "note", "register", "this_process"]

_BOOT = uuid.uuid4().hex


def this_process() -> str:
    """An id of this process, different in every process, forked children included."""
    return f"{os.getpid()}-{_BOOT}"


@dataclass(frozen=True, slots=True)
class FinishedCall:
    """What a finished call's totals and statistics need, as plain data."""

    site: str
    operation: str
    requested_model: str | None
    response_model: str | None
    finished_at: float
    """POSIX time the call finished at (its UTC day in the totals)."""
    outcome: Outcome | None
    usage: Usage | None
    cost_usd: Decimal | None
    unrecorded_usage: Usage | None
    unrecorded_cost_usd: Decimal
    cache: str | None
    saved_cost_usd: Decimal | None
    retries: int
    rate_limited: int
    unread_requests: int
    """Requests the server may have billed unread (counted at their worst case)."""
    recorded: bool

    @classmethod
    def of(cls, call: Call) -> FinishedCall:
        return cls(
            site=call.site,
            operation=call.operation,
            requested_model=call.model,
            response_model=call.response_model,
            finished_at=time.time(),
            outcome=call.outcome,
            usage=call.usage,
            cost_usd=call.cost_usd,
            unrecorded_usage=call.unrecorded_usage,
            unrecorded_cost_usd=call.unrecorded_cost_usd,
            cache=call.cache,
            saved_cost_usd=call.saved_cost_usd,
            retries=call.retries,
            rate_limited=call.rate_limited,
            unread_requests=call.unread_requests,
            recorded=call.recorded,
        )

    def as_call(self) -> Call:
        """A finished :class:`Call` with these facts, for the driver's hooks."""
        call = Call(self.site, self.operation)
        if self.requested_model is not None:
            call.request = Request(model=self.requested_model)
        call.response_model = self.response_model
        call.outcome = self.outcome
        call.usage = self.usage
        call.cost_usd = self.cost_usd
        call.unrecorded_usage = self.unrecorded_usage
        call.unrecorded_cost_usd = self.unrecorded_cost_usd
        call.cache = self.cache
        call.saved_cost_usd = self.saved_cost_usd
        call.retries = self.retries
        call.rate_limited = self.rate_limited
        call.unread_requests = self.unread_requests
        return call


@dataclass(slots=True)
class Notes:
    """The calls noted while :func:`exporting` was active."""

    calls: list[FinishedCall] = field(default_factory=list)


_notes: contextvars.ContextVar[Notes | None] = contextvars.ContextVar(
    "prismq_llmtools_exported_calls", default=None
)


@contextmanager
def exporting() -> Iterator[Notes]:
    """Within the block, every call that finishes is noted in the returned :class:`Notes`."""
    notes = Notes()
    token = _notes.set(notes)
    try:
        yield notes
    finally:
        _notes.reset(token)


def note(call: Call) -> None:
    """Note ``call`` (finished) when :func:`exporting` is active."""
    notes = _notes.get()
    if notes is not None:
        notes.calls.append(FinishedCall.of(call))


_sites: dict[str, weakref.WeakSet[SiteCore]] = {}
"""Live sites by name, for :func:`absorb` (a site lives as long as its function)."""


def register(site: SiteCore) -> None:
    """Make ``site`` findable by its name."""
    _sites.setdefault(site.name, weakref.WeakSet()).add(site)


def _site_named(name: str) -> SiteCore | None:
    """The one live site of that name (none when two live sites share it)."""
    live = list(_sites.get(name, ()))
    return live[0] if len(live) == 1 else None


def absorb(calls: list[FinishedCall]) -> list[FinishedCall]:
    """Add calls that finished in another process to this process's sites of the same
    names; returns those whose site is not known here (not imported, or ambiguous)."""
    unknown = []
    for finished in calls:
        site = _site_named(finished.site)
        if site is None:
            unknown.append(finished)
        else:
            site.absorb(finished.as_call(), finished.finished_at)
    return unknown
