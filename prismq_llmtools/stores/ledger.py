"""Budgets as pure math: reserve before a call, settle with what it really used.

A scope (a site, or a name several sites share) has budget lines: a limit in tokens or in
micro-USD (integers, so sums are exact) per calendar hour, day or month (UTC), or per
rolling window. A reservation is counted against every line until it is settled; a call is
admitted only if, for every line, ``spent + reserved + requested <= limit``. Reserving the
worst case (prompt + completion cap) and settling with the actual usage, which is never
more, is why concurrent callers can never overspend a hard budget.

A reservation belongs to the period it was made in and settles there. Rolling windows keep
60 slots per window and count a slot as long as any part of it is inside the window (never
less than the truth). A reservation left unsettled (its process died mid-call) expires after
a TTL and is then charged in full: its call may have been sent and billed, and the worst case
reserved for it is the most it can have cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["BudgetLine", "BudgetStatus", "Crossing", "Denial", "LedgerState", "Period", "Unit"]

Unit = Literal["tokens", "usd"]
Period = Literal["hour", "day", "month", "rolling"]

_SLOTS_PER_WINDOW = 60
MICRO_USD = 1_000_000
"""Ledger amounts in USD are integers of micro-dollars."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetLine:
    """One budget: ``limit`` tokens or micro-USD per ``period`` (``window_s`` if rolling)."""

    name: str
    unit: Unit
    period: Period
    limit: int
    window_s: float = 0.0
    thresholds: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.unit not in ("tokens", "usd"):
            raise ValueError(f"budget {self.name}: unit must be 'tokens' or 'usd'")
        if self.period not in ("hour", "day", "month", "rolling"):
            raise ValueError(f"budget {self.name}: period must be hour, day, month or rolling")
        if not isinstance(self.limit, int) or self.limit < 0:
            raise ValueError(f"budget {self.name}: limit must be an int >= 0")
        if (self.period == "rolling") != (self.window_s > 0):
            raise ValueError(f"budget {self.name}: window_s > 0 exactly for rolling budgets")
        if any(not 0 < t <= 1 for t in self.thresholds) or list(self.thresholds) != sorted(
            self.thresholds
        ):
            raise ValueError(f"budget {self.name}: thresholds are ascending fractions in (0, 1]")

    @property
    def slot_s(self) -> float:
        """Width of one rolling-window slot."""
        return self.window_s / _SLOTS_PER_WINDOW

    def period_of(self, ts: float) -> int:
        """The calendar period (hours, days or months since 1970) or window slot of ``ts``."""
        if self.period == "hour":
            return math.floor(ts / 3600)
        if self.period == "day":
            return math.floor(ts / 86400)
        if self.period == "month":
            moment = datetime.fromtimestamp(ts, UTC)
            return (moment.year - 1970) * 12 + moment.month - 1
        return math.floor(ts / self.slot_s)


@dataclass(frozen=True, slots=True)
class Denial:
    """A reservation refused by ``line``: ``requested`` > ``remaining`` (ledger units)."""

    line: str
    unit: Unit
    requested: int
    remaining: int


@dataclass(frozen=True, slots=True)
class Crossing:
    """Settled spending crossed a soft threshold of ``line``."""

    line: str
    unit: Unit
    threshold: float
    used: int
    limit: int


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """One line now: settled ``spent``, outstanding ``reserved``, in ledger units."""

    line: str
    unit: Unit
    limit: int
    spent: int
    reserved: int

    @property
    def remaining(self) -> int:
        """What may still be reserved."""
        return max(0, self.limit - self.spent - self.reserved)


class LedgerState:
    """The spending and open reservations of one scope."""

    __slots__ = ("lines", "next_expiry", "reservations")

    def __init__(self) -> None:
        self.lines: dict[str, dict[str, Any]] = {}
        """Per line: ``{"p": period, "s": spent, "m": mark}``, or for rolling lines
        ``{"slots": {slot: spent}, "m": mark}``; ``m`` counts the thresholds passed."""
        self.reservations: dict[str, dict[str, Any]] = {}
        """Per reservation id: ``{"e": expires_at, "a": {line: [amount, period]}}``."""
        self.next_expiry = math.inf
        """No open reservation expires before this: their earliest expiry when
        :meth:`_expire` last looked, or the expiry of one made since, if earlier."""

    def reserve(
        self,
        lines: Sequence[BudgetLine],
        amounts: dict[str, int],
        now: float,
        *,
        reservation_id: str,
        ttl_s: float,
    ) -> Denial | None:
        """Reserve ``amounts`` (by unit) on every line, or nothing and say which refused."""
        self._expire(lines, now)
        held: dict[str, list[int]] = {}
        for line in lines:
            amount = amounts.get(line.unit, 0)
            period = line.period_of(now)
            used = _spent(line, self._state(line, now, period)) + self._reserved(line, period)
            if used + amount > line.limit:
                return Denial(line.name, line.unit, amount, max(0, line.limit - used))
            held[line.name] = [amount, period]
        expires_at = now + ttl_s
        self.reservations[reservation_id] = {"e": expires_at, "a": held}
        if expires_at < self.next_expiry:
            self.next_expiry = expires_at
        return None

    def settle(
        self,
        lines: Sequence[BudgetLine],
        reservation_id: str,
        actual: dict[str, int],
        now: float,
    ) -> list[Crossing]:
        """Drop the reservation, record ``actual`` in its periods, report thresholds passed."""
        held = self.reservations.pop(reservation_id, {}).get("a", {})
        crossings: list[Crossing] = []
        for line in lines:
            amount = actual.get(line.unit, 0)
            current = line.period_of(now)
            period = held[line.name][1] if line.name in held else current
            state = self._state(line, now, current)
            _charge(line, state, period, amount)
            crossings.extend(_crossings(line, state))
        return crossings

    def status(self, lines: Sequence[BudgetLine], now: float) -> list[BudgetStatus]:
        """Each line as it stands at ``now``."""
        self._expire(lines, now)
        found = []
        for line in lines:
            period = line.period_of(now)
            spent = _spent(line, self._state(line, now, period))
            found.append(
                BudgetStatus(line.name, line.unit, line.limit, spent, self._reserved(line, period))
            )
        return found

    # -- internals -------------------------------------------------------------------

    def _state(self, line: BudgetLine, now: float, period: int) -> dict[str, Any]:
        """The line's state at ``now`` (whose period or slot is ``period``), made current."""
        state = self.lines.get(line.name)
        if line.period == "rolling":
            if state is None or "slots" not in state:
                state = self.lines[line.name] = {"slots": {}, "m": 0}
            oldest = math.floor((now - line.window_s) / line.slot_s)
            for slot in [s for s in state["slots"] if int(s) < oldest]:
                del state["slots"][slot]
            return state
        if state is None or "p" not in state or state["p"] < period:
            state = self.lines[line.name] = {"p": period, "s": 0, "m": 0}
        return state

    def _reserved(self, line: BudgetLine, period: int) -> int:
        """Held on ``line`` by the open reservations of ``period`` (all, if rolling)."""
        total = 0
        for reservation in self.reservations.values():
            held = reservation["a"].get(line.name)
            if held is not None and (line.period == "rolling" or held[1] == period):
                total += held[0]
        return total

    def _expire(self, lines: Sequence[BudgetLine], now: float) -> None:
        """Charge every reservation past its TTL in full, in the period it was made in.

        Looks only once ``now`` passes :attr:`next_expiry`, then finds the next one."""
        if now <= self.next_expiry:
            return
        for key in [k for k, r in self.reservations.items() if r["e"] < now]:
            held = self.reservations.pop(key)["a"]
            for line in lines:
                if line.name not in held:
                    continue
                amount, period = held[line.name]
                _charge(line, self._state(line, now, line.period_of(now)), period, amount)
        self._find_next_expiry()

    def _find_next_expiry(self) -> None:
        self.next_expiry = min((r["e"] for r in self.reservations.values()), default=math.inf)

    # -- persistence -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"lines": self.lines, "reservations": self.reservations}

    @classmethod
    def from_dict(cls, data: Any) -> LedgerState:
        """The inverse of :meth:`to_dict`.

        Raises:
            ValueError: ``data`` is not a ledger's state (never read as an empty one, which
                would reset the budget).
        """
        if not isinstance(data, dict):
            raise ValueError(f"a ledger is a JSON object, not {type(data).__name__}")
        state = cls()
        state.lines = _checked(data.get("lines", {}), "lines", _check_line)
        state.reservations = _checked(data.get("reservations", {}), "reservations", _check_held)
        state._find_next_expiry()
        return state


def _checked(table: Any, what: str, check: Callable[[Any], bool]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ValueError(f"{what} is not a JSON object")
    for name, value in table.items():
        if not check(value):
            raise ValueError(f"{what}[{name!r}] is not valid: {value!r}"[:300])
    return dict(table)


def _is_amount(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_line(state: Any) -> bool:
    if not isinstance(state, dict) or not _is_count(state.get("m")):
        return False
    if "slots" in state:
        slots = state["slots"]
        return isinstance(slots, dict) and all(
            _int_or_none(k) is not None and _is_amount(v) for k, v in slots.items()
        )
    return isinstance(state.get("p"), int) and _is_amount(state.get("s"))


def _check_held(reservation: Any) -> bool:
    if not isinstance(reservation, dict) or not _is_amount(reservation.get("e")):
        return False
    held = reservation.get("a")
    return isinstance(held, dict) and all(
        isinstance(h, list) and len(h) == 2 and _is_amount(h[0]) and isinstance(h[1], int)
        for h in held.values()
    )


def _int_or_none(text: Any) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _charge(line: BudgetLine, state: dict[str, Any], period: int, amount: int) -> None:
    """Record ``amount`` spent in ``period`` on a current ``state`` of ``line`` (a period
    already over is not recorded: its spending no longer counts)."""
    if line.period == "rolling":
        slots = state["slots"]
        slots[str(period)] = slots.get(str(period), 0) + amount
    elif period == state["p"]:
        state["s"] += amount


def _spent(line: BudgetLine, state: dict[str, Any]) -> int:
    """Settled spending in a current ``state`` of ``line``."""
    if line.period == "rolling":
        return int(sum(state["slots"].values()))
    return int(state["s"])


def _crossings(line: BudgetLine, state: dict[str, Any]) -> list[Crossing]:
    """The thresholds of ``line`` passed since the last settlement; moves the mark."""
    used = _spent(line, state)
    mark = 0
    for threshold in line.thresholds:  # ascending: those passed come first
        if used < threshold * line.limit:
            break
        mark += 1
    if mark == state["m"]:
        return []
    passed = line.thresholds[state["m"] : mark]
    state["m"] = mark
    return [Crossing(line.name, line.unit, t, used, line.limit) for t in passed]
