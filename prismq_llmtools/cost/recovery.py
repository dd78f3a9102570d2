"""Attempts in flight when a process died, found again in its event log.

Before each attempt is sent, the site writes an ``llm.attempt.sent`` line with the most the
attempt can be billed (its prompt plus its completion cap, and their price). A call that
finished wrote its ``llm.call`` line; a call whose process was killed (``kill -9``, a power
cut) wrote none. Its sent attempts, except those that ended without being billed, may have
been served and billed: :func:`find_in_flight` finds them, and :func:`recover_in_flight`
charges them at their worst case to usage totals and closes each such call in the log with
an ``llm.call`` line marked ``recovered``, so that no later recovery or report counts it twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from prismq_llmtools import events
from prismq_llmtools.usage import Usage

__all__ = ["InFlightAttempt", "InFlightTracker", "find_in_flight", "recover_in_flight"]


@dataclass(frozen=True, slots=True, kw_only=True)
class InFlightAttempt:
    """One attempt that may have been billed by a process that never finished its call."""

    call_id: str
    attempt: int
    site: str
    operation: str
    model: str | None
    usage: Usage
    """The attempt's worst case: what the server may have billed."""
    cost_usd: Decimal
    timestamp: str | None


class _Pending:
    __slots__ = ("ended", "sent")

    def __init__(self) -> None:
        self.sent: dict[int, Mapping[str, Any]] = {}
        self.ended: dict[int, bool] = {}  # attempt -> possibly billed


class InFlightTracker:
    """Reads events one at a time and keeps the calls sent but not finished yet."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: dict[str, _Pending] = {}

    def see(self, event: Mapping[str, Any]) -> None:
        """Take one event into account (any event; only the attempt and call lines count)."""
        name = event.get("event")
        if name != events.ATTEMPT_SENT and name != events.ATTEMPT and name != events.CALL:
            return
        call_id = event.get("call_id")
        if not isinstance(call_id, str):
            return
        if name == events.ATTEMPT_SENT:
            self._pending.setdefault(call_id, _Pending()).sent[_int(event.get("attempt"))] = event
        elif name == events.ATTEMPT:
            found = self._pending.get(call_id)
            if found is not None:
                found.ended[_int(event.get("attempt"))] = event.get("possibly_billed") is True
        else:
            self._pending.pop(call_id, None)

    def found(self) -> list[InFlightAttempt]:
        """The attempts of unfinished calls that may have been billed, in log order.

        An attempt that ended (its ``llm.attempt`` line) without ``possibly_billed`` cost
        nothing and is left out; the others count at the worst case their sent line gives.
        """
        return [
            _attempt(call_id, attempt, sent)
            for call_id, calls in self._pending.items()
            for attempt, sent in calls.sent.items()
            if calls.ended.get(attempt, True)
        ]


def find_in_flight(lines: Iterable[Mapping[str, Any]]) -> list[InFlightAttempt]:
    """The attempts of calls that were sent but never finished (see :class:`InFlightTracker`)."""
    tracker = InFlightTracker()
    for event in lines:
        tracker.see(event)
    return tracker.found()


def recover_in_flight(
    lines: Iterable[Mapping[str, Any]], *, totals: Any = None
) -> list[InFlightAttempt]:
    """Charge the attempts a dead process left in flight, once.

    Each is added to ``totals`` (a :class:`~prismq_llmtools.cost.tracking.UsageTotals`,
    default the process's) as a possibly billed failed call at its worst case, and its call
    is closed in the log by an ``llm.call`` line with ``outcome: "error"``,
    ``error.type: "InFlightAtExit"``, ``possibly_billed`` and ``recovered``, so a later
    recovery or ``prismq-llmtools report`` does not count it again.

    Args:
        lines: the events of the dead process's log (``report.read_events([path])``).
        totals: where to record them.
    """
    from prismq_llmtools.cost.tracking import usage_totals

    target = totals if totals is not None else usage_totals()
    found = find_in_flight(lines)
    by_call: dict[str, list[InFlightAttempt]] = {}
    for attempt in found:
        by_call.setdefault(attempt.call_id, []).append(attempt)
    for call_id, attempts in by_call.items():
        first = attempts[0]
        usage = sum((a.usage for a in attempts), Usage())
        cost = sum((a.cost_usd for a in attempts), Decimal(0))
        target.record_recovered(
            operation=first.operation,
            model=first.model,
            usage=usage,
            cost_usd=cost,
            requests=len(attempts),
        )
        events.emit(
            None,
            events.CALL,
            level="warning",
            site=first.site,
            operation=first.operation,
            call_id=call_id,
            outcome="error",
            attempts=max(a.attempt for a in attempts),
            usage_source="estimated",
            possibly_billed=True,
            recovered=True,
            cost_usd=cost,
            **{
                "error.type": "InFlightAtExit",
                "gen_ai.request.model": first.model,
                "gen_ai.usage.input_tokens": usage.input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
            },
        )
    return found


def _attempt(call_id: str, attempt: int, sent: Mapping[str, Any]) -> InFlightAttempt:
    model = sent.get("gen_ai.request.model")
    cost = sent.get("worst_cost_usd")
    return InFlightAttempt(
        call_id=call_id,
        attempt=attempt,
        site=str(sent.get("site") or ""),
        operation=str(sent.get("operation") or ""),
        model=model if isinstance(model, str) else None,
        usage=Usage(
            input_tokens=_int(sent.get("worst_input_tokens")),
            output_tokens=_int(sent.get("worst_output_tokens")),
        ),
        cost_usd=Decimal(str(cost)) if isinstance(cost, int | float) and cost >= 0 else Decimal(0),
        timestamp=sent.get("timestamp") if isinstance(sent.get("timestamp"), str) else None,
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
