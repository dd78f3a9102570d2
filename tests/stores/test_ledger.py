"""The budget ledger: reservations, settlement, periods, windows, thresholds."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prismq_llmtools.stores.ledger import BudgetLine, BudgetStatus, Crossing, Denial, LedgerState

DAY = BudgetLine(name="daily_tokens", unit="tokens", period="day", limit=1_000)
T0 = datetime(2026, 3, 31, 23, 0, tzinfo=UTC).timestamp()


def test_reservations_count_until_settled_with_the_actual_amount() -> None:
    """A reservation holds its worst case; settling replaces it by what was used."""
    ledger = LedgerState()
    assert ledger.reserve([DAY], {"tokens": 600}, T0, reservation_id="a", ttl_s=60) is None
    assert ledger.status([DAY], T0) == [BudgetStatus("daily_tokens", "tokens", 1_000, 0, 600)]
    denial = ledger.reserve([DAY], {"tokens": 500}, T0, reservation_id="b", ttl_s=60)
    assert denial == Denial("daily_tokens", "tokens", requested=500, remaining=400)
    ledger.settle([DAY], "a", {"tokens": 250}, T0)
    assert ledger.status([DAY], T0)[0].remaining == 750
    assert ledger.reserve([DAY], {"tokens": 500}, T0, reservation_id="b", ttl_s=60) is None


def test_every_line_must_allow_and_a_refusal_reserves_nothing() -> None:
    """One refusing line refuses the call; the others are left untouched."""
    usd = BudgetLine(name="daily_usd", unit="usd", period="day", limit=5_000_000)
    ledger = LedgerState()
    amounts = {"tokens": 10, "usd": 6_000_000}
    denial = ledger.reserve([DAY, usd], amounts, T0, reservation_id="a", ttl_s=60)
    assert denial is not None
    assert denial.line == "daily_usd"
    assert [s.reserved for s in ledger.status([DAY, usd], T0)] == [0, 0]


def test_calendar_periods_start_afresh_and_late_settlements_stay_in_their_period() -> None:
    """A new day starts at zero; a call reserved yesterday settles into yesterday."""
    ledger = LedgerState()
    ledger.reserve([DAY], {"tokens": 900}, T0, reservation_id="a", ttl_s=7200)
    tomorrow = T0 + 3600
    assert ledger.status([DAY], tomorrow)[0].remaining == 1_000
    ledger.settle([DAY], "a", {"tokens": 900}, tomorrow)
    assert ledger.status([DAY], tomorrow)[0].spent == 0


def test_months_follow_the_calendar() -> None:
    """Month periods change on the first of the month (UTC), whatever the month's length."""
    month = BudgetLine(name="monthly_tokens", unit="tokens", period="month", limit=10)
    march_end = datetime(2026, 3, 31, 23, 59, tzinfo=UTC).timestamp()
    april = datetime(2026, 4, 1, 0, 0, tzinfo=UTC).timestamp()
    assert month.period_of(april) == month.period_of(march_end) + 1
    assert month.period_of(datetime(1970, 1, 15, tzinfo=UTC).timestamp()) == 0


def test_rolling_windows_forget_spending_older_than_the_window() -> None:
    """A rolling budget frees what was spent more than a window ago (slot granularity)."""
    line = BudgetLine(name="window_tokens", unit="tokens", period="rolling", limit=100, window_s=60)
    ledger = LedgerState()
    ledger.reserve([line], {"tokens": 100}, 0.0, reservation_id="a", ttl_s=600)
    ledger.settle([line], "a", {"tokens": 100}, 1.0)
    assert ledger.reserve([line], {"tokens": 1}, 59.0, reservation_id="b", ttl_s=600) is not None
    assert ledger.status([line], 61.0)[0].spent == 0
    assert ledger.reserve([line], {"tokens": 100}, 61.0, reservation_id="b", ttl_s=600) is None


def test_unsettled_reservations_expire() -> None:
    """A reservation whose process died stops counting after its TTL."""
    ledger = LedgerState()
    ledger.reserve([DAY], {"tokens": 1_000}, T0, reservation_id="lost", ttl_s=30)
    assert ledger.status([DAY], T0 + 31)[0].reserved == 0


def test_soft_thresholds_fire_once_when_spending_crosses_them() -> None:
    """Crossing 50% and 80% reports each threshold once."""
    line = BudgetLine(
        name="daily_tokens", unit="tokens", period="day", limit=100, thresholds=(0.5, 0.8)
    )
    ledger = LedgerState()
    crossed: list[Crossing] = []
    for i, used in enumerate([40, 20, 5, 30]):
        ledger.reserve([line], {"tokens": used}, T0, reservation_id=str(i), ttl_s=60)
        crossed += ledger.settle([line], str(i), {"tokens": used}, T0)
    assert [(c.threshold, c.used) for c in crossed] == [(0.5, 60), (0.8, 95)]


def test_state_round_trips_through_json() -> None:
    """What SQLite and Redis persist reads back the same."""
    ledger = LedgerState()
    ledger.reserve([DAY], {"tokens": 10}, T0, reservation_id="a", ttl_s=60)
    ledger.settle([DAY], "a", {"tokens": 5}, T0)
    ledger.reserve([DAY], {"tokens": 10}, T0, reservation_id="b", ttl_s=60)
    copy = LedgerState.from_dict(json.loads(json.dumps(ledger.to_dict())))
    assert copy.status([DAY], T0) == ledger.status([DAY], T0)


def test_bad_lines_are_rejected() -> None:
    """A line's period, window and thresholds are validated."""
    with pytest.raises(ValueError, match="window_s"):
        BudgetLine(name="x", unit="tokens", period="rolling", limit=1)
    with pytest.raises(ValueError, match="thresholds"):
        BudgetLine(name="x", unit="tokens", period="day", limit=1, thresholds=(1.5,))


# -- property: never overspent ---------------------------------------------------------

_steps = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "reserve", "settle"]),
        st.integers(0, 400),
        st.floats(0, 1, allow_nan=False),
        st.floats(0, 4_000, allow_nan=False),
        st.integers(0, 1_000),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(steps=_steps, period=st.sampled_from(["hour", "day", "rolling"]))
def test_budgets_are_never_overspent_under_any_interleaving(
    steps: list[tuple[str, int, float, float, int]], period: str
) -> None:
    """Whatever the order of reserves and settlements (each using at most what it
    reserved), spending in every period or window never exceeds the limit."""
    line = BudgetLine(
        name="b",
        unit="tokens",
        period=period,  # type: ignore[arg-type]
        limit=1_000,
        window_s=900.0 if period == "rolling" else 0.0,
    )
    ledger = LedgerState()
    now = T0
    open_: dict[str, tuple[int, float]] = {}
    spent: list[tuple[float, int]] = []  # (reservation time, amount)
    for i, (op, amount, fraction, dt, pick) in enumerate(steps):
        now += dt
        if op == "reserve":
            if ledger.reserve([line], {"tokens": amount}, now, reservation_id=str(i), ttl_s=1e9):
                continue
            open_[str(i)] = (amount, now)
        elif open_:
            rid = sorted(open_)[pick % len(open_)]
            reserved, at = open_.pop(rid)
            used = int(reserved * fraction)
            ledger.settle([line], rid, {"tokens": used}, now)
            spent.append((at, used))
        status = ledger.status([line], now)[0]
        assert status.spent + status.reserved <= line.limit
    for at, _ in spent:
        if period == "rolling":
            window = sum(a for t, a in spent if at - line.window_s < t <= at)
        else:
            window = sum(a for t, a in spent if line.period_of(t) == line.period_of(at))
        assert window <= line.limit


class _Scanning(LedgerState):
    """The expiry every ledger had before :attr:`LedgerState.next_expiry`: each operation
    looks at every open reservation."""

    def _expire(self, lines: Sequence[BudgetLine], now: float) -> None:
        self.next_expiry = -math.inf  # as if one might have expired: look at every one
        super()._expire(lines, now)


_expiry_steps = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "reserve", "settle", "status", "reload"]),
        st.integers(0, 300),
        st.floats(0, 1_000, allow_nan=False),
        st.floats(1, 4_000, allow_nan=False),
        st.integers(0, 1_000),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(steps=_expiry_steps, period=st.sampled_from(["hour", "day", "rolling"]))
def test_expiry_charges_what_looking_at_every_reservation_charged(
    steps: list[tuple[str, int, float, float, int]], period: str
) -> None:
    """Looking for expired reservations only once the earliest may have expired gives, after
    any sequence of reservations (any TTL), settlements, status reads and reloads, the same
    ledger and answers as looking at every reservation every time."""
    lines = [
        BudgetLine(
            name="b",
            unit="tokens",
            period=period,  # type: ignore[arg-type]
            limit=2_000,
            window_s=900.0 if period == "rolling" else 0.0,
            thresholds=(0.5, 0.9),
        )
    ]
    ledgers: list[LedgerState] = [LedgerState(), _Scanning()]
    now = T0
    opened: list[str] = []
    for i, (op, amount, dt, ttl_s, pick) in enumerate(steps):
        now += dt
        if op == "reload":
            ledgers = [
                type(ledger).from_dict(json.loads(json.dumps(ledger.to_dict())))
                for ledger in ledgers
            ]
            continue
        answers: list[object] = []
        for ledger in ledgers:
            if op == "reserve":
                got = ledger.reserve(
                    lines, {"tokens": amount}, now, reservation_id=f"r{i}", ttl_s=ttl_s
                )
                answers.append(got)
            elif op == "settle" and opened:
                rid = opened[pick % len(opened)]
                answers.append(ledger.settle(lines, rid, {"tokens": amount // 2}, now))
            else:
                answers.append(ledger.status(lines, now))
        if op == "reserve" and answers[0] is None:
            opened.append(f"r{i}")
        new, old = ledgers
        assert answers[0] == answers[1]
        assert new.to_dict() == old.to_dict()
