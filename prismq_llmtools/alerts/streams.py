"""Streams: the events of one name that pass one filter, aggregated per group and per tick.

Rules that watch the same events with the same filter and group-by share one stream, so an
event is matched and grouped once however many rules read it. For each event name the engine
generates ONE function that adds an event to every stream of that name, with the filters
inlined (see :mod:`prismq_llmtools.alerts.match`); events are folded into per-tick partials
as they arrive and never kept. A partial
aggregate per group is a flat list::

    [count, n_0, sum_0, min_0, max_0, n_1, sum_1, ..., bins_0, ...]

with four slots per numeric field (values that are not ``int``/``float`` are skipped) and one
quantile-sketch dict per field that some rule reads a percentile of. Only what some reader
needs is updated: ``n`` for means, percentiles and min/max, min/max for those alone. Streams
with the same group-by sit side by side in one list per group (see :func:`build_collector`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prismq_llmtools.alerts.match import Filter, predicate_source
from prismq_llmtools.alerts.sketch import INV_LOG_GAMMA, TINY, bin_of

__all__ = [
    "Collector",
    "FieldSlots",
    "Stream",
    "StreamKey",
    "build_collector",
    "bundles_factory",
]

Partial = list[Any]
Collector = Callable[[Mapping[str, Any], list[Any]], None]


@dataclass(frozen=True, slots=True)
class StreamKey:
    """What makes two rules share a stream."""

    event: str
    where: tuple[Filter, ...]
    group_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FieldSlots:
    """Where a stream's count and one field's aggregates sit in a partial."""

    count: int = 0
    n: int | None = None
    sketch: int | None = None


@dataclass(slots=True)
class Stream:
    """A stream and the numeric fields its readers need."""

    key: StreamKey
    fields: list[str] = field(default_factory=list)
    extremes: set[str] = field(default_factory=set)
    sketched: list[str] = field(default_factory=list)
    counted: set[str] = field(default_factory=set)  # fields whose numeric values are counted
    summed: set[str] = field(default_factory=set)  # fields whose numeric values are summed
    offset: int = 0  # where this stream's slots start in its bundle's partial
    bundle: int = 0  # index of its bundle among the event name's bundles

    def need(
        self,
        name: str | None,
        *,
        extremes: bool = False,
        sketch: bool = False,
        counted: bool = True,
        summed: bool = True,
    ) -> None:
        """Register a reader's need for ``name`` (``None``: the count alone).

        ``counted``: the reader reads ``n``, the number of numeric values (a mean, a
        percentile, min/max); ``summed``: it reads their sum. Each is left at 0 when no
        reader reads it.
        """
        if name is None:
            return
        if name not in self.fields:
            self.fields.append(name)
        if extremes:
            self.extremes.add(name)
        if counted:
            self.counted.add(name)
        if summed:
            self.summed.add(name)
        if sketch and name not in self.sketched:
            self.sketched.append(name)

    @property
    def width(self) -> int:
        """Number of slots this stream takes in a partial."""
        return 1 + 4 * len(self.fields) + len(self.sketched)

    def slots(self, name: str | None) -> FieldSlots:
        """Return the slots of ``name`` in partials (after every ``need`` and the build)."""
        base = self.offset
        if name is None:
            return FieldSlots(count=base)
        sketch = None
        if name in self.sketched:
            sketch = base + 1 + 4 * len(self.fields) + self.sketched.index(name)
        return FieldSlots(count=base, n=base + 1 + 4 * self.fields.index(name), sketch=sketch)

    def empty_slots_source(self) -> list[str]:
        """Python source of this stream's initial slot values."""
        return (
            ["0"] + ["0", "0.0", "_INF", "-_INF"] * len(self.fields) + ["{}"] * len(self.sketched)
        )


def build_collector(streams: Sequence[Stream], *, safe_keys: bool = False) -> Collector:
    """Return one function that adds an event of one name to every stream's partials.

    Streams with the same group-by share one partial per group (a *bundle*), so each event
    costs one group lookup per distinct group-by; each distinct filter is tested and each
    field read once per event (also a field that is a group key, a value and a filter). The
    function is ``add(event, bundles)``; ``bundles`` comes from :func:`bundles_factory` and
    holds, per bundle, the ``{group: partial}`` dict (or the single partial of a bundle
    without group-by). Sets every stream's ``offset`` and ``bundle``. All group lookups happen
    before any update and filters never raise, so when a group value cannot be a dict key (a
    JSON list) nothing has been counted yet; the engine then retries with ``safe_keys``,
    which turns such values into text.
    """
    ns: dict[str, Any] = {
        "_INF": math.inf, "_log": math.log, "_ceil": math.ceil, "_INV": INV_LOG_GAMMA,
        "_TINY": TINY, "_HUGE": 1e300, "_bin_of": bin_of, "_key": _hashable,
    }  # fmt: skip
    bundles = _bundles(streams)
    fields = list(dict.fromkeys(name for stream in streams for name in stream.fields))
    wheres = [stream.key.where for stream in streams if stream.key.where]
    filters = list(dict.fromkeys(wheres))
    reads = _shared_reads(bundles, fields, filters, ns)
    code = [f"    {var} = e.get(_{var})" for var in reads.values()]
    for b, (group_by, members) in enumerate(bundles):
        if not group_by:  # a single group: the partial itself, no lookup
            code.append(f"    p{b} = bundles[{b}]")
            continue
        fresh = "[" + ", ".join(s for stream in members for s in stream.empty_slots_source()) + "]"
        code.append(f"    o{b} = bundles[{b}]")
        code.append(f"    g = {_group_source(group_by, ns, b, safe_keys, reads)}")
        code.append(f"    p{b} = o{b}.get(g)")
        code.append(f"    if p{b} is None:")
        code.append(f"        p{b} = o{b}[g] = {fresh}")
    sketched = {name for stream in streams for name in stream.sketched}
    for j, name in enumerate(fields):
        ns[f"_n{j}"] = name
        code.append(f"    v{j} = {reads.get(name) or f'e.get(_n{j})'}")
        code.append(f"    c{j} = v{j}.__class__ is float or v{j}.__class__ is int")
        if name in sketched:  # the sketch bin, once per event however many streams need it
            fast_bin = f"_ceil(_log(v{j}) * _INV) if _TINY < v{j} < _HUGE else _bin_of(v{j})"
            code.append(f"    k{j} = ({fast_bin}) if c{j} else 0")
    tests = [predicate_source(where, ns, f"_w{j}_", reads) for j, where in enumerate(filters)]
    for j, where in enumerate(filters):
        if wheres.count(where) > 1:  # shared by streams with different group-bys: test once
            code.append(f"    m{j} = {tests[j]}")
            tests[j] = f"m{j}"
    for stream in streams:
        p, pad = f"p{stream.bundle}", "    "
        if stream.key.where:
            code.append(f"{pad}if {tests[filters.index(stream.key.where)]}:")
            pad += "    "
        code.append(f"{pad}{p}[{stream.offset}] += 1")
        for name in stream.fields:
            j, slots = fields.index(name), stream.slots(name)
            n = slots.n
            assert n is not None
            code.append(f"{pad}if c{j}:")
            if name in stream.counted:
                code.append(f"{pad}    {p}[{n}] += 1")
            if name in stream.summed:
                code.append(f"{pad}    {p}[{n + 1}] += v{j}")
            if name in stream.extremes:
                code.append(f"{pad}    if v{j} < {p}[{n + 2}]: {p}[{n + 2}] = v{j}")
                code.append(f"{pad}    if v{j} > {p}[{n + 3}]: {p}[{n + 3}] = v{j}")
            if slots.sketch is not None:
                code.append(f"{pad}    b = {p}[{slots.sketch}]")
                code.append(f"{pad}    b[k{j}] = b.get(k{j}, 0) + 1")
    code.insert(0, "def add(e, bundles):")
    exec("\n".join(code), ns)  # noqa: S102 (names and operands are namespace constants)
    collector: Collector = ns["add"]
    return collector


def _bundles(streams: Sequence[Stream]) -> list[tuple[tuple[str, ...], list[Stream]]]:
    by_group: dict[tuple[str, ...], list[Stream]] = {}
    for stream in streams:
        by_group.setdefault(stream.key.group_by, []).append(stream)
    bundles = list(by_group.items())
    for b, (_, members) in enumerate(bundles):
        width = 0
        for stream in members:
            stream.offset, stream.bundle = width, b
            width += stream.width
    return bundles


def bundles_factory(streams: Sequence[Stream]) -> Callable[[], list[Any]]:
    """Return a function that makes fresh per-tick state for :func:`build_collector`'s."""
    parts = []
    for group_by, members in _bundles(streams):
        if group_by:
            parts.append("{}")
        else:
            slots = (value for stream in members for value in stream.empty_slots_source())
            parts.append("[" + ", ".join(slots) + "]")
    source = "lambda: [" + ", ".join(parts) + "]"
    factory: Callable[[], list[Any]] = eval(source, {"_INF": math.inf})  # noqa: S307 (literals only)
    return factory


def _shared_reads(
    bundles: Sequence[tuple[tuple[str, ...], list[Stream]]],
    fields: Sequence[str],
    filters: Sequence[tuple[Filter, ...]],
    namespace: dict[str, Any],
) -> dict[str, str]:
    """Fields used more than once per event (group key, value, filter): read into a local."""
    uses: dict[str, int] = {}
    names = [name for group_by, _ in bundles for name in group_by] + list(fields)
    names += [flt.field for where in filters for flt in where if flt.op != "exists"]
    for name in names:
        uses[name] = uses.get(name, 0) + 1
    reads: dict[str, str] = {}
    for name, count in uses.items():
        if count > 1:
            var = reads[name] = f"r{len(reads)}"
            namespace[f"_{var}"] = name
    return reads


def _group_source(
    group_by: tuple[str, ...], namespace: dict[str, Any], b: int, safe: bool, reads: dict[str, str]
) -> str:
    parts = []
    for j, name in enumerate(group_by):
        namespace[f"_g{b}_{j}"] = name
        get = reads.get(name) or f"e.get(_g{b}_{j})"
        parts.append(f"_key({get})" if safe else get)
    if len(parts) == 1:
        return parts[0]
    return "(" + ", ".join(parts) + ")"


def _hashable(value: Any) -> Hashable:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value  # type: ignore[no-any-return]
