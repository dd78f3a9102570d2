"""Streams: the events of one name that pass one filter, aggregated per group and per tick.

Rules that watch the same events with the same filter and group-by share one stream, so an
event is matched and grouped once however many rules read it. For each event name the engine
generates ONE collector function that runs every stream of that name over a tick's events in
a single loop, with the filters inlined (see :mod:`prismq_llmtools.alerts.match`). A partial
aggregate per group is a flat list::

    [count, n_0, sum_0, min_0, max_0, n_1, sum_1, ..., bins_0, ...]

with four slots per numeric field (values that are not ``int``/``float`` are skipped) and one
quantile-sketch dict per field that some rule reads a percentile of.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prismq_llmtools.alerts.match import Filter, predicate_source
from prismq_llmtools.alerts.sketch import INV_LOG_GAMMA, TINY, bin_of

__all__ = ["Collector", "FieldSlots", "Stream", "StreamKey", "build_collector"]

Partial = list[Any]
Collector = Callable[[list[Mapping[str, Any]]], list[dict[Hashable, Partial]]]


@dataclass(frozen=True, slots=True)
class StreamKey:
    """What makes two rules share a stream."""

    event: str
    where: tuple[Filter, ...]
    group_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FieldSlots:
    """Where one field's aggregates sit in a partial (``None`` for a plain count)."""

    n: int | None = None
    sketch: int | None = None


@dataclass(slots=True)
class Stream:
    """A stream and the numeric fields its readers need."""

    key: StreamKey
    fields: list[str] = field(default_factory=list)
    extremes: set[str] = field(default_factory=set)
    sketched: list[str] = field(default_factory=list)

    def need(self, name: str | None, *, extremes: bool = False, sketch: bool = False) -> None:
        """Register a reader's need for ``name`` (``None``: the count alone)."""
        if name is None:
            return
        if name not in self.fields:
            self.fields.append(name)
        if extremes:
            self.extremes.add(name)
        if sketch and name not in self.sketched:
            self.sketched.append(name)

    def slots(self, name: str | None) -> FieldSlots:
        """Return the slots of ``name`` in this stream's partials (after every ``need``)."""
        if name is None:
            return FieldSlots()
        sketch = None
        if name in self.sketched:
            sketch = 1 + 4 * len(self.fields) + self.sketched.index(name)
        return FieldSlots(n=1 + 4 * self.fields.index(name), sketch=sketch)

    def empty_partial_source(self) -> str:
        """Python source for a fresh partial of this stream."""
        numbers = ", ".join(["0, 0.0, _INF, -_INF"] * len(self.fields))
        sketches = ", ".join(["{}"] * len(self.sketched))
        return "[" + ", ".join(part for part in ("0", numbers, sketches) if part) + "]"


def build_collector(streams: Sequence[Stream], *, safe_keys: bool = False) -> Collector:
    """Return one function that aggregates a tick's events of one name for every stream.

    With ``safe_keys`` group values that cannot be dict keys (JSON lists and objects) are
    turned into text; the engine falls back to it when the fast version meets one.
    """
    namespace: dict[str, Any] = {
        "_INF": math.inf,
        "_log": math.log,
        "_ceil": math.ceil,
        "_INV": INV_LOG_GAMMA,
        "_TINY": TINY,
        "_bin_of": bin_of,
        "_key": _hashable,
    }
    body = ["def collect(events):"]
    body += [f"    o{i} = {{}}" for i in range(len(streams))]
    body.append("    for e in events:")
    for i, stream in enumerate(streams):
        condition = predicate_source(stream.key.where, namespace, f"_s{i}_")
        pad = "            " if condition != "True" else "        "
        if condition != "True":
            body.append(f"        if {condition}:")
        body.append(f"{pad}g = {_group_source(stream.key.group_by, namespace, i, safe_keys)}")
        body.append(f"{pad}p = o{i}.get(g)")
        body.append(f"{pad}if p is None:")
        body.append(f"{pad}    p = o{i}[g] = {stream.empty_partial_source()}")
        body.append(f"{pad}p[0] += 1")
        for j, name in enumerate(stream.fields):
            namespace[f"_s{i}_n{j}"] = name
            base = 1 + 4 * j
            body.append(f"{pad}v = e.get(_s{i}_n{j})")
            body.append(f"{pad}if v.__class__ is float or v.__class__ is int:")
            body.append(f"{pad}    p[{base}] += 1")
            body.append(f"{pad}    p[{base + 1}] += v")
            if name in stream.extremes:
                body.append(f"{pad}    if v < p[{base + 2}]: p[{base + 2}] = v")
                body.append(f"{pad}    if v > p[{base + 3}]: p[{base + 3}] = v")
            if name in stream.sketched:
                slot = stream.slots(name).sketch
                body.append(f"{pad}    b = p[{slot}]")
                body.append(f"{pad}    k = _ceil(_log(v) * _INV) if v > _TINY else _bin_of(v)")
                body.append(f"{pad}    b[k] = b.get(k, 0) + 1")
    body.append("    return [" + "".join(f"o{i}, " for i in range(len(streams))) + "]")
    exec("\n".join(body), namespace)  # noqa: S102 (field names and operands are namespace constants)
    collector: Collector = namespace["collect"]
    return collector


def _group_source(group_by: tuple[str, ...], namespace: dict[str, Any], i: int, safe: bool) -> str:
    parts = []
    for j, name in enumerate(group_by):
        namespace[f"_s{i}_g{j}"] = name
        get = f"e.get(_s{i}_g{j})"
        parts.append(f"_key({get})" if safe else get)
    if not parts:
        return "()"
    if len(parts) == 1:
        return parts[0]
    return "(" + ", ".join(parts) + ")"


def _hashable(value: Any) -> Hashable:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value  # type: ignore[no-any-return]
