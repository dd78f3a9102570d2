"""The alert engine: routes events to rules, advances event time, evaluates at ticks.

Event time is the ``timestamp`` of each event; the engine never reads a clock. Time is cut
into ticks of ``resolution_s`` (1 s by default). An event at time ``t`` belongs to bucket
``ceil(t / resolution_s)``. Tick ``k`` is evaluated once the newest event time seen minus
``lateness_s`` has passed ``k * resolution_s``; until then events of that bucket may still
arrive in any order. An event whose bucket was already evaluated is *late*: it is counted in
:attr:`EngineStats.late` and dropped. So any arrival order whose disorder stays within
``lateness_s`` gives exactly the alerts of the time-sorted order, which is why replaying a
log gives the alerts the live run gave.

Per event the engine does one dict lookup by event name and one call of a generated function
that folds the event into the tick's partial aggregates of every stream of that name; the
work per rule happens once per tick and group (see :mod:`prismq_llmtools.alerts.streams`).
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prismq_llmtools.alerts.alert import Alert
from prismq_llmtools.alerts.evaluators import Dirty, RuleRuntime, runtime_for
from prismq_llmtools.alerts.eventtime import parse_event_time, second_of
from prismq_llmtools.alerts.rules import Rule, RuleSet
from prismq_llmtools.alerts.streams import (
    Collector,
    FieldSlots,
    Stream,
    StreamKey,
    build_collector,
    bundles_factory,
)
from prismq_llmtools.alerts.values import bad_value, read_fields
from prismq_llmtools.events import current_names, has_old_names

__all__ = ["AlertAction", "AlertEngine", "EngineStats"]

AlertAction = Callable[[Alert], None]
_IGNORED = frozenset({"alert.fired", "alert.resolved"})  # the engine's own output is not input
_NEVER = -(1 << 62)
_ceil = math.ceil
Fresh = Callable[[], list[Any]]
Entry = tuple[Collector, Collector, list[Any]]  # a tick's state of one event name, and its folds
Reader = tuple[int, bool, RuleRuntime, str, FieldSlots]  # bundle, grouped, rule, role, slots
_fromisoformat = datetime.fromisoformat


@dataclass(slots=True)
class EngineStats:
    """Counters of what the engine saw and did."""

    events: int = 0
    late: int = 0
    no_timestamp: int = 0
    bad_values: int = 0  # non-finite numbers, negative costs or tokens: skipped
    fired: int = 0
    resolved: int = 0
    action_errors: int = 0
    ticks: int = 0


class AlertEngine:
    """Evaluate rules over events on event time.

    Args:
        rules: a :class:`RuleSet` (its resolution and lateness are used) or rules.
        actions: callables that receive every :class:`Alert` (fired and resolved).
        resolution_s: tick length; windows, ``for`` and ``repeat`` round up to it.
        lateness_s: how far behind the newest event an event may arrive and still count.
    """

    def __init__(
        self,
        rules: RuleSet | Iterable[Rule],
        *,
        actions: Sequence[AlertAction] = (),
        resolution_s: float | None = None,
        lateness_s: float | None = None,
    ) -> None:
        ruleset = rules if isinstance(rules, RuleSet) else RuleSet(rules=tuple(rules))
        self.rules = ruleset.rules
        self.resolution_s = resolution_s if resolution_s is not None else ruleset.resolution_s
        self.lateness_s = lateness_s if lateness_s is not None else ruleset.lateness_s
        if not self.resolution_s > 0 or self.lateness_s < 0:
            raise ValueError("resolution_s must be > 0 and lateness_s >= 0")
        self.actions = list(actions)
        self.stats = EngineStats()
        self._runtimes = [
            runtime_for(rule, i, self.resolution_s) for i, rule in enumerate(self.rules)
        ]
        self._rule_index = {rule.name: i for i, rule in enumerate(self.rules)}
        self._routes: dict[str, tuple[Collector, Collector, list[Stream], Fresh]] = {}
        self._checks: dict[str, tuple[str, ...]] = {}  # event name -> numbers to check
        self._readers: dict[str, list[Reader]] = {}  # event name -> who reads which bundle
        self._wire()
        self._buffer: dict[int, dict[str, Entry]] = {}  # tick -> event name -> its state
        self._current_tick = _NEVER
        self._current: dict[str, Entry] = {}
        self._agenda: dict[int, Dirty] = {}  # tick -> rule -> groups to evaluate then
        self._agenda_ticks: list[int] = []
        self._done = _NEVER  # every tick up to this one has been evaluated
        self._newest = -math.inf  # newest event time seen
        self._due = math.inf  # evaluate when the newest event time passes this
        self._started = False
        self._held: list[Alert] | None = None  # alerts of the tick being evaluated
        self._scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]

    def _wire(self) -> None:
        streams: dict[StreamKey, Stream] = {}
        wiring: list[tuple[RuleRuntime, str, Stream, str | None]] = []
        for runtime in self._runtimes:
            for feed in runtime.feeds():
                match = feed.match
                key = StreamKey(match.event, match.where, runtime.rule.group_by)
                stream = streams.setdefault(key, Stream(key))
                stream.need(
                    match.field, extremes=feed.extremes, sketch=feed.sketch,
                    counted=feed.counted, summed=feed.summed,
                )  # fmt: skip
                wiring.append((runtime, feed.role, stream, match.field))
        by_event: dict[str, list[Stream]] = {}
        read: dict[str, list[str | None]] = {}
        for stream in streams.values():
            by_event.setdefault(stream.key.event, []).append(stream)
        for _, _, stream, field in wiring:
            read.setdefault(stream.key.event, []).append(field)
        # only what a rule reads: a token count no rule sums cannot skew an alert
        self._checks = {
            event: checks for event, fields in read.items() if (checks := read_fields(fields))
        }
        for event, event_streams in by_event.items():
            if event in _IGNORED:  # a rule on alert.* events never sees one
                continue
            fast = build_collector(event_streams)
            safe = build_collector(event_streams, safe_keys=True)
            self._routes[event] = (fast, safe, event_streams, bundles_factory(event_streams))
        for runtime, role, stream, field in wiring:
            if stream.key.event not in self._routes:
                continue
            reader = (stream.bundle, bool(stream.key.group_by), runtime, role, stream.slots(field))
            self._readers.setdefault(stream.key.event, []).append(reader)

    # -- input ---------------------------------------------------------------------------

    def process(self, event: Mapping[str, Any]) -> None:
        """Take one event; its ``timestamp`` gives its time (events without one are counted)."""
        moment = parse_event_time(event.get("timestamp"))
        if moment is None:
            self.stats.no_timestamp += 1
            return
        self.process_at(moment, event)

    def malformed(self, event: Mapping[str, Any]) -> str | None:
        """Why the rules must not read ``event`` (a non-finite number, a negative cost or
        token count), or ``None``: such an event is skipped as a malformed line."""
        name = event.get("event")
        check = self._checks.get(name) if isinstance(name, str) else None
        return None if check is None else bad_value(event, check)

    def process_at(self, moment: float, event: Mapping[str, Any]) -> None:
        """Take one event whose time (epoch seconds) is already known.

        The event is folded into per-tick aggregates at once; no reference to it is kept.
        """
        name: Any = event.get("event")
        if name in _IGNORED:
            return
        if has_old_names(event):  # a log written before a rename
            event = current_names(dict(event))
        check = self._checks.get(name) if isinstance(name, str) else None
        if check is not None and bad_value(event, check) is not None:
            self.stats.bad_values += 1  # the sources count it as malformed, with file:line
            return
        self.stats.events += 1
        tick = _ceil(moment / self.resolution_s)
        if tick <= self._done:
            self.stats.late += 1
            return
        if not self._started:
            self._start(tick)
        route = self._routes.get(name)
        if route is not None:
            buffered = self._current if tick == self._current_tick else self._bucket(tick)
            entry = buffered.get(name)
            if entry is None:
                entry = buffered[name] = (route[0], route[1], route[3]())
            try:
                entry[0](event, entry[2])
            except TypeError:  # a group value that cannot be a dict key (a JSON list)
                entry[1](event, entry[2])
        if moment > self._newest:
            self._newest = moment
            if moment > self._due:
                self._advance(_ceil((moment - self.lateness_s) / self.resolution_s) - 1)

    def process_lines(
        self,
        lines: Iterable[str],
        *,
        loads: Callable[[str], Any] | None = None,
        on_malformed: Callable[[int, str, str], None] | None = None,
    ) -> int:
        """Parse JSON lines and process each event; return how many lines were read.

        A malformed line (not JSON, or not an object) is passed to ``on_malformed`` with its
        index in ``lines`` and the reason, and skipped; blank lines are ignored. ``loads``
        replaces the stdlib parser (e.g. ``orjson.loads``). This is :meth:`process` inlined
        for replay speed.
        """
        scan = self._scan if loads is None else None
        parse = loads or json.loads
        checks = self._checks
        routes, ignored, resolution, lateness = (
            self._routes,
            _IGNORED,
            self.resolution_s,
            self.lateness_s,
        )
        # the second of the last schema timestamp, with its dot: () matches no text at all
        head: str | tuple[()] = ()
        base, events_seen, late = 0.0, 0, 0
        # engine state in locals, re-read after every call that may change it
        done, newest, due, started = self._done, self._newest, self._due, self._started
        current_tick, current = self._current_tick, self._current
        index = -1
        try:
            for index, line in enumerate(lines):
                try:
                    # the C scanner directly: no whitespace regex, no wrappers
                    event = scan(line, 0)[0] if scan is not None else parse(line)
                except (StopIteration, ValueError) as exc:
                    if not line.strip():
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        if on_malformed is not None:
                            on_malformed(index, line, f"not JSON: {exc}")
                        continue
                if event.__class__ is not dict:
                    if on_malformed is not None:
                        on_malformed(index, line, "not a JSON object")
                    continue
                if has_old_names(event):
                    current_names(event)
                stamp: Any = event.get("timestamp")
                try:  # the schema's form, computed exactly as parse_event_time does
                    if stamp[-1] != "Z":
                        raise ValueError
                    if not stamp.startswith(head):  # a new second: events come in bursts
                        if stamp[19] != ".":
                            raise ValueError
                        base = second_of(stamp[:19])
                        head = stamp[:20]
                    moment = base + float(stamp[19:-1])
                except (AttributeError, TypeError, ValueError, IndexError, KeyError):
                    numeric = parse_event_time(stamp)  # other ISO forms, epoch numbers, or None
                    if numeric is None:
                        self.stats.no_timestamp += 1
                        if on_malformed is not None:
                            on_malformed(index, line, "no valid timestamp")
                        continue
                    moment = numeric
                name: Any = event.get("event")
                check = checks.get(name) if name.__class__ is str else None
                if check is not None and (bad := bad_value(event, check)) is not None:
                    self.stats.bad_values += 1
                    if on_malformed is not None:
                        on_malformed(index, line, bad)
                    continue
                tick = _ceil(moment / resolution)
                if tick == current_tick and (entry := current.get(name)) is not None:
                    events_seen += 1  # the usual case: a tick and a name seen just before
                else:
                    route = routes.get(name)  # the engine's own output is never routed
                    if route is None and name in ignored:
                        continue
                    events_seen += 1
                    if tick <= done:
                        late += 1
                        continue
                    if not started:
                        self._start(tick)
                        started, due = True, self._due
                    if route is None:
                        entry = None
                    else:
                        if tick != current_tick:
                            current = self._bucket(tick)
                            current_tick, due = tick, self._due
                        entry = current.get(name)
                        if entry is None:
                            entry = current[name] = (route[0], route[1], route[3]())
                if entry is not None:
                    try:
                        entry[0](event, entry[2])
                    except TypeError:  # a group value that cannot be a dict key (a JSON list)
                        entry[1](event, entry[2])
                if moment > newest:
                    newest = moment
                    if moment > due:
                        self._newest = newest
                        self._advance(_ceil((moment - lateness) / resolution) - 1)
                        done, due = self._done, self._due
                        current_tick, current = self._current_tick, self._current
        finally:
            self._newest = newest
            self.stats.events += events_seen
            self.stats.late += late
        return index + 1

    def advance_to(self, moment: float) -> None:
        """Move event time forward without an event (a heartbeat from a wall clock).

        Ticks before ``moment - lateness_s`` are evaluated, so absence rules fire in silence.
        """
        if moment > self._newest:
            self._newest = moment
        self._advance(_ceil((self._newest - self.lateness_s) / self.resolution_s) - 1)

    def flush(self) -> None:
        """Evaluate every tick up to the newest event time (end of a replay)."""
        if self._newest > -math.inf:
            self._advance(_ceil(self._newest / self.resolution_s))

    # -- state ---------------------------------------------------------------------------

    @property
    def watermark(self) -> float | None:
        """Event time up to which everything has been evaluated (``None`` before any)."""
        return None if self._done == _NEVER else self._done * self.resolution_s

    def firing(self) -> list[tuple[str, Mapping[str, Any]]]:
        """``(rule, group)`` of every group currently firing."""
        from prismq_llmtools.alerts.evaluators import FIRING, _group_dict

        return [
            (runtime.rule.name, _group_dict(runtime.rule.group_by, key))
            for runtime in self._runtimes
            for key, group in runtime.groups.items()
            if group.state == FIRING
        ]

    def state_size(self) -> int:
        """Number of live groups plus buffered ticks (for memory checks)."""
        groups = sum(len(runtime.groups) for runtime in self._runtimes)
        return groups + len(self._buffer)

    # -- host interface for rule runtimes --------------------------------------------------

    def schedule(self, tick: int, runtime: RuleRuntime, key: Hashable) -> None:
        """Re-evaluate ``runtime``'s group ``key`` at ``tick``."""
        entries = self._agenda.get(tick)
        if entries is None:
            entries = self._agenda[tick] = {}
            heapq.heappush(self._agenda_ticks, tick)
            self._due = min(self._due, tick * self.resolution_s + self.lateness_s)
        keys = entries.get(runtime)
        if keys is None:
            keys = entries[runtime] = {}
        keys[key] = None

    def emit(self, alert: Alert) -> None:
        """Hand ``alert`` to every action; a failing action is counted, never raised.

        While a tick is evaluated its alerts are held, then delivered in canonical order.
        """
        if self._held is not None:
            self._held.append(alert)
            return
        if alert.state == "fired":
            self.stats.fired += 1
        else:
            self.stats.resolved += 1
        for action in self.actions:
            try:
                action(alert)
            except Exception:  # an action must never stop evaluation
                self.stats.action_errors += 1

    # -- internals -----------------------------------------------------------------------

    def _start(self, tick: int) -> None:
        self._started = True
        for runtime in self._runtimes:
            runtime.start(tick, self)

    def _bucket(self, tick: int) -> dict[str, Entry]:
        lists = self._buffer.get(tick)
        if lists is None:
            lists = self._buffer[tick] = {}
            self._due = min(self._due, tick * self.resolution_s + self.lateness_s)
        self._current_tick, self._current = tick, lists
        return lists

    def _next_tick(self) -> float:
        pending = min(self._buffer) if self._buffer else math.inf
        if self._agenda_ticks and self._agenda_ticks[0] < pending:
            return self._agenda_ticks[0]
        return pending

    def _advance(self, target: int) -> None:
        while True:
            tick = self._next_tick()
            if tick > target:
                break
            self._evaluate_tick(int(tick))
        if target > self._done:
            self._done = target
        following = self._next_tick()
        self._due = following * self.resolution_s + self.lateness_s

    def _evaluate_tick(self, tick: int) -> None:
        self.stats.ticks += 1
        dirty: Dirty = {}
        lists = self._buffer.pop(tick, None)
        if tick == self._current_tick:
            self._current_tick = _NEVER
        if lists:
            readers = self._readers
            for name, (_, _, bundles) in lists.items():
                for index, grouped, runtime, role, slots in readers[name]:
                    part = bundles[index]
                    runtime.receive(tick, role, part if grouped else {(): part}, slots, dirty)
        if self._agenda_ticks and self._agenda_ticks[0] == tick:
            heapq.heappop(self._agenda_ticks)
            for runtime, keys in self._agenda.pop(tick).items():
                changed = dirty.get(runtime)
                if changed is None:
                    dirty[runtime] = keys
                else:
                    changed.update(keys)
        held: list[Alert] = []
        self._held = held
        try:
            for runtime, keys in dirty.items():  # groups are independent: any order will do
                runtime.evaluate(tick, keys, self)
        finally:
            self._held = None
        # alerts in canonical order, so that the order of arrival within a tick does not show
        held.sort(key=self._rank)
        for alert in held:
            self.emit(alert)

    def _rank(self, alert: Alert) -> tuple[int, str]:
        """Rule order, then the group key's text: an order that arrival cannot change."""
        values = tuple(alert.group.values())
        key = values[0] if len(values) == 1 else values  # the group key, as rules keep it
        return self._rule_index[alert.rule], repr(key)
