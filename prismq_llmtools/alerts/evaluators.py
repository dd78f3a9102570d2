"""Per-rule runtime state: windows per group, the pending/firing state machine, alerts.

A group is ``inactive``, ``pending`` (the condition holds, its ``for`` duration has not yet
passed) or ``firing``. Firing emits ``alert.fired`` once; while it stays firing it is emitted
again only each ``repeat`` interval; when the condition stops holding it emits
``alert.resolved``. Groups whose windows are empty and that are inactive are dropped, so
memory follows the live groups, not the history.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Literal, NamedTuple, Protocol

from prismq_llmtools.alerts.alert import Alert, render_message
from prismq_llmtools.alerts.durations import format_duration
from prismq_llmtools.alerts.periods import period_of
from prismq_llmtools.alerts.rules import Match, Rule
from prismq_llmtools.alerts.streams import FieldSlots, Partial
from prismq_llmtools.alerts.windows import Window

__all__ = [
    "AbsenceRuntime",
    "AggregateRuntime",
    "Feed",
    "Host",
    "RuleRuntime",
    "runtime_for",
]

INACTIVE, PENDING, FIRING = 0, 1, 2
_COMPARE = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt,
    "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}  # fmt: skip
Keys = dict[Hashable, None]  # an ordered set of group keys
Dirty = dict["RuleRuntime", Keys]  # the groups of each rule to evaluate at a tick


class Feed(NamedTuple):
    """One stream a rule reads, and which of the field's aggregates it needs.

    ``n`` (how many values were numbers) is read by means, percentiles and min/max; the sum
    by sums, means, rates, ratios and forecasts. Streams update only what some reader needs.
    """

    match: Match
    role: Literal["main", "other"]
    extremes: bool = False
    sketch: bool = False
    counted: bool = False
    summed: bool = False


class Host(Protocol):
    """What a rule runtime needs from the engine."""

    resolution_s: float

    def schedule(self, tick: int, runtime: RuleRuntime, key: Hashable) -> None: ...

    def emit(self, alert: Alert) -> None: ...


class _Group:
    __slots__ = (
        "main",
        "notified",
        "other",
        "period",
        "period_total",
        "scheduled",
        "since",
        "state",
    )

    def __init__(self, main: Window, other: Window | None) -> None:
        self.main = main
        self.other = other
        self.state = INACTIVE
        self.since = 0
        self.notified = 0
        self.period = -1
        self.period_total = 0.0
        self.scheduled = -1  # the expiry tick already on the agenda


def ticks_of(seconds: float, resolution_s: float) -> int:
    """Whole ticks covering ``seconds`` (durations round up to the resolution)."""
    return math.ceil(seconds / resolution_s - 1e-9)


class RuleRuntime:
    """Shared part of every rule runtime."""

    def __init__(self, rule: Rule, index: int, resolution_s: float) -> None:
        self.rule = rule
        self.index = index
        self.span = max(1, ticks_of(rule.window_s, resolution_s))
        self.for_ticks = ticks_of(rule.for_s, resolution_s)
        self.repeat_ticks = (
            0 if rule.repeat_s is None else max(1, ticks_of(rule.repeat_s, resolution_s))
        )
        self.groups: dict[Hashable, _Group] = {}

    def feeds(self) -> list[Feed]:
        """What this rule reads: one :class:`Feed` per stream (two for a ratio)."""
        rule = self.rule
        if rule.numerator is not None and rule.denominator is not None:
            return [
                Feed(rule.numerator, "main", summed=True),
                Feed(rule.denominator, "other", summed=True),
            ]
        assert rule.match is not None
        aggregate = rule.aggregate
        extremes = aggregate in ("min", "max")
        sketch = rule.quantile is not None
        return [
            Feed(
                rule.match,
                "main",
                extremes=extremes,
                sketch=sketch,
                counted=extremes or sketch or aggregate == "avg",
                summed=aggregate in ("sum", "avg", "rate", "forecast"),
            )
        ]

    def start(self, tick: int, host: Host) -> None:
        """Called once with the tick of the first event the engine sees."""

    def receive(
        self,
        tick: int,
        role: str,
        partials: dict[Hashable, Partial],
        slots: FieldSlots,
        dirty: Dirty,
    ) -> None:
        """Take one tick's partial aggregates of a stream this rule reads."""
        raise NotImplementedError

    def evaluate(self, tick: int, keys: Iterable[Hashable], host: Host) -> None:
        """Re-evaluate groups at ``tick``; emit alerts and schedule what comes next.

        Groups are independent: the order of ``keys`` does not change any group's state.
        """
        raise NotImplementedError

    def _alert(
        self, host: Host, tick: int, key: Hashable, state: Literal["fired", "resolved"],
        value: float | None, *, repeat: bool = False,
    ) -> None:  # fmt: skip
        rule = self.rule
        group = _group_dict(rule.group_by, key)
        values: dict[str, Any] = {
            **rule.labels,
            "rule": rule.name, "severity": rule.severity, "state": state, "value": value,
            "threshold": rule.threshold, "window": format_duration(rule.window_s),
            "aggregate": rule.aggregate,
            "group": ", ".join(f"{k}={v}" for k, v in group.items()) or "all",
        }  # fmt: skip
        template = rule.message or _default_template(rule)
        host.emit(
            Alert(
                rule=rule.name, state=state, severity=rule.severity, value=value,
                threshold=rule.threshold, group=group, labels=rule.labels,
                message=render_message(template, values), at=tick * host.resolution_s,
                repeat=repeat,
            )
        )  # fmt: skip


class AggregateRuntime(RuleRuntime):
    """Threshold rules over a windowed aggregate (count ... pNN, ratio, forecast)."""

    def __init__(self, rule: Rule, index: int, resolution_s: float) -> None:
        super().__init__(rule, index, resolution_s)
        aggregate = rule.aggregate
        self._extremes = aggregate in ("min", "max")
        self._quantile = rule.quantile
        self._ratio = aggregate == "ratio"
        self._is_forecast = aggregate == "forecast"
        self._resolution_s = resolution_s
        self._min_count = rule.min_count
        condition = rule.condition
        # a forecast fires above its budget
        self._compare = operator.gt if condition is None else _COMPARE[condition.op]
        self._threshold = (rule.budget or 0.0) if condition is None else condition.threshold
        self._value = self._value_reader()

    def _new_group(self) -> _Group:
        main = Window(self.span, extremes=self._extremes, sketch=self._quantile is not None)
        return _Group(main, Window(self.span) if self._ratio else None)

    def receive(
        self,
        tick: int,
        role: str,
        partials: dict[Hashable, Partial],
        slots: FieldSlots,
        dirty: Dirty,
    ) -> None:
        groups, count, n, sketch = self.groups, slots.count, slots.n, slots.sketch
        main = role == "main"
        changed = dirty.get(self)
        if changed is None:
            changed = dirty[self] = {}
        for key, p in partials.items():
            hits = p[count]
            if not hits:  # the group matched another stream of the bundle, not this one
                continue
            group = groups.get(key)
            if group is None:
                group = groups[key] = self._new_group()
            window = group.main if main else group.other
            assert window is not None
            if n is None:
                window.push(tick, hits)
            else:
                bins = None if sketch is None else p[sketch]
                window.push(tick, hits, p[n], p[n + 1], p[n + 2], p[n + 3], bins)
                if self._is_forecast:
                    period, _ = period_of((tick - 0.5) * self._resolution_s, self.rule.period or "")
                    if group.period != period:
                        group.period, group.period_total = period, 0.0
                    group.period_total += p[n + 1]
            changed[key] = None

    def value(self, group: _Group, tick: int) -> float | None:
        """The rule's aggregate for ``group`` at ``tick`` (windows already expired)."""
        return self._value(group, tick)

    def _value_reader(self) -> Callable[[_Group, int], float | None]:
        rule, min_count = self.rule, self._min_count
        aggregate = rule.aggregate
        if aggregate == "ratio":
            assert rule.numerator is not None
            assert rule.denominator is not None
            numerator_sums, denominator_sums = rule.numerator.field, rule.denominator.field

            def ratio(group: _Group, tick: int) -> float | None:
                main, other = group.main, group.other
                assert other is not None
                if other.count < min_count:
                    return None
                below = other.total if denominator_sums else other.count
                above = main.total if numerator_sums else main.count
                return above / below if below else None

            return ratio
        if aggregate == "forecast":
            return self._forecast
        reads: Callable[[Window], float | None]
        if aggregate == "count":
            reads = _read_count
        elif aggregate == "sum":
            reads = _read_total
        elif aggregate == "avg":
            reads = _read_mean
        elif aggregate == "min":
            reads = _read_minimum
        elif aggregate == "max":
            reads = _read_maximum
        elif aggregate == "rate":
            assert rule.match is not None
            sums, window_s = rule.match.field, rule.window_s

            def reads(window: Window) -> float | None:
                return (window.total if sums else window.count) / window_s
        else:
            quantile = self._quantile
            assert quantile is not None

            def reads(window: Window) -> float | None:
                return window.quantile(quantile)

        def windowed(group: _Group, tick: int) -> float | None:
            main = group.main
            if main.count < min_count or main.empty:
                return None
            return reads(main)

        return windowed

    def _forecast(self, group: _Group, tick: int) -> float:
        period, end = period_of((tick - 0.5) * self._resolution_s, self.rule.period or "")
        spent = group.period_total if group.period == period else 0.0
        rate = group.main.total / self.rule.window_s
        return spent + rate * max(0.0, end - tick * self._resolution_s)

    def evaluate(self, tick: int, keys: Iterable[Hashable], host: Host) -> None:
        groups, value_of, compare, threshold = (
            self.groups,
            self._value,
            self._compare,
            self._threshold,
        )
        for_ticks, repeat_ticks, schedule = self.for_ticks, self.repeat_ticks, host.schedule
        for key in keys:
            group = groups.get(key)
            if group is None:
                continue
            main, other = group.main, group.other
            main.expire(tick)
            if other is not None:
                other.expire(tick)
            value = value_of(group, tick)
            if value is not None and compare(value, threshold):
                if group.state == INACTIVE:
                    group.state, group.since = PENDING, tick
                if group.state == PENDING:
                    if tick - group.since >= for_ticks:
                        group.state, group.notified = FIRING, tick
                        self._alert(host, tick, key, "fired", value)
                        if repeat_ticks:
                            schedule(tick + repeat_ticks, self, key)
                    else:
                        schedule(group.since + for_ticks, self, key)
                elif repeat_ticks and tick - group.notified >= repeat_ticks:
                    group.notified = tick
                    self._alert(host, tick, key, "fired", value, repeat=True)
                    schedule(tick + repeat_ticks, self, key)
            else:
                if group.state == FIRING:
                    self._alert(host, tick, key, "resolved", value)
                group.state = INACTIVE
            leaves = main.leaves_at
            if other is not None:
                also = other.leaves_at
                if also is not None and (leaves is None or also < leaves):
                    leaves = also
            if leaves is not None:
                if leaves != group.scheduled:  # usually already on the agenda from the last tick
                    group.scheduled = leaves
                    schedule(leaves, self, key)
            elif group.state == INACTIVE and not group.period_total:
                del groups[key]


def _read_count(window: Window) -> float:
    return float(window.count)


def _read_total(window: Window) -> float:
    return window.total


def _read_mean(window: Window) -> float | None:
    return window.mean


def _read_minimum(window: Window) -> float | None:
    return window.minimum


def _read_maximum(window: Window) -> float | None:
    return window.maximum


class AbsenceRuntime(RuleRuntime):
    """Fires when no matching event arrived for a whole window (per group, or at all)."""

    def __init__(self, rule: Rule, index: int, resolution_s: float) -> None:
        super().__init__(rule, index, resolution_s)
        self._last: dict[Hashable, int] = {}

    def start(self, tick: int, host: Host) -> None:
        if not self.rule.group_by:  # silence counts from the first event the engine saw
            self._last[()] = tick
            self.groups[()] = _Group(Window(1), None)
            host.schedule(tick + self.span, self, ())

    def receive(
        self,
        tick: int,
        role: str,
        partials: dict[Hashable, Partial],
        slots: FieldSlots,
        dirty: Dirty,
    ) -> None:
        changed = dirty.get(self)
        if changed is None:
            changed = dirty[self] = {}
        for key, p in partials.items():
            if not p[slots.count]:
                continue
            self._last[key] = tick
            if key not in self.groups:
                self.groups[key] = _Group(Window(1), None)
            changed[key] = None

    def evaluate(self, tick: int, keys: Iterable[Hashable], host: Host) -> None:
        for key in keys:
            self._evaluate_group(tick, key, host)

    def _evaluate_group(self, tick: int, key: Hashable, host: Host) -> None:
        group = self.groups.get(key)
        if group is None:
            return
        silent = tick - self._last[key]
        if silent < self.span:
            if group.state == FIRING:
                self._alert(host, tick, key, "resolved", silent * host.resolution_s)
                group.state = INACTIVE
            host.schedule(self._last[key] + self.span, self, key)
        elif group.state != FIRING:
            group.state, group.notified = FIRING, tick
            self._alert(host, tick, key, "fired", silent * host.resolution_s)
            if self.repeat_ticks:
                host.schedule(tick + self.repeat_ticks, self, key)
        elif self.repeat_ticks and tick - group.notified >= self.repeat_ticks:
            group.notified = tick
            self._alert(host, tick, key, "fired", silent * host.resolution_s, repeat=True)
            host.schedule(tick + self.repeat_ticks, self, key)


def runtime_for(rule: Rule, index: int, resolution_s: float) -> RuleRuntime:
    """Return the runtime that evaluates ``rule``."""
    if rule.aggregate == "absence":
        return AbsenceRuntime(rule, index, resolution_s)
    return AggregateRuntime(rule, index, resolution_s)


def _group_dict(group_by: tuple[str, ...], key: Hashable) -> Mapping[str, Any]:
    if not group_by:
        return {}
    if len(group_by) == 1:
        return {group_by[0]: key}
    assert isinstance(key, tuple)
    return dict(zip(group_by, key, strict=True))


def _default_template(rule: Rule) -> str:
    if rule.aggregate == "absence":
        return "{rule}: no matching event for {value:g}s [{group}]"
    if rule.aggregate == "forecast":
        return (
            "{rule}: forecast {value:.4g} for this "
            + (rule.period or "")
            + " > budget {threshold:g} [{group}]"
        )
    return "{rule}: {aggregate} over {window} = {value:.4g} (threshold {threshold:g}) [{group}]"
