"""Event filters (equals, in, regex, numeric comparison), compiled to fast predicates.

A filter list compiles to ONE Python expression over the event dict ``e`` (no function call
per filter), which the engine inlines into its per-event-name collector and which
:func:`compile_predicate` wraps in a function for everyone else. Field names and operands
never become code: they are bound as constants in the expression's namespace.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["OPERATORS", "Filter", "compile_predicate", "parse_filters", "predicate_source"]

OPERATORS: Mapping[str, str] = {
    "eq": "eq", "==": "eq", "ne": "ne", "!=": "ne",
    "in": "in", "not_in": "not_in",
    "regex": "regex", "~": "regex",
    "gt": "gt", ">": "gt", "ge": "ge", ">=": "ge",
    "lt": "lt", "<": "lt", "le": "le", "<=": "le",
    "exists": "exists",
}  # fmt: skip
_COMPARE = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_OTHER_OPS = frozenset({"eq", "ne", "in", "not_in", "regex", "exists"})
_NUMBER = (int, float)
_REMEMBERED = 4096  # regex answers kept per filter


@dataclass(frozen=True, slots=True, kw_only=True)
class Filter:
    """One condition on one event field: ``field op value``.

    ``op`` is one of ``eq ne in not_in regex gt ge lt le exists``. Numeric comparisons are
    false for a missing or non-numeric field; ``ne`` and ``not_in`` are true for a missing one.
    """

    field: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        if self.op not in _COMPARE and self.op not in _OTHER_OPS:
            raise ValueError(f"unknown filter operator {self.op!r} for field {self.field!r}")
        if self.op in _COMPARE and (
            not isinstance(self.value, _NUMBER) or isinstance(self.value, bool)
        ):
            raise ValueError(f"{self.field!r} {self.op}: expected a number, got {self.value!r}")
        if self.op in ("in", "not_in") and not isinstance(self.value, tuple):
            raise ValueError(f"{self.field!r} {self.op}: expected a list, got {self.value!r}")
        if self.op == "regex":
            if not isinstance(self.value, str):
                raise ValueError(f"{self.field!r} regex: expected text, got {self.value!r}")
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"{self.field!r} regex {self.value!r}: {exc}") from None
        if self.op == "exists" and not isinstance(self.value, bool):
            raise ValueError(f"{self.field!r} exists: expected true or false, got {self.value!r}")


def parse_filters(
    where: Mapping[str, Any], resolve: Callable[[str], str] = str
) -> tuple[Filter, ...]:
    """Return the filters of a ``where`` table: ``{field = value}`` or ``{field = {op = value}}``.

    Raises:
        ValueError: an unknown operator or an operand of the wrong type (the message names it).
    """
    filters: list[Filter] = []
    for name, spec in where.items():
        field = resolve(name)
        if isinstance(spec, Mapping):
            if not spec:
                raise ValueError(f"{name!r}: empty condition table")
            for op_text, value in spec.items():
                op = OPERATORS.get(op_text)
                if op is None:
                    known = ", ".join(sorted(set(OPERATORS) - {"=="}))
                    raise ValueError(f"{name!r}: unknown operator {op_text!r} (known: {known})")
                if isinstance(value, list):
                    value = tuple(value)
                filters.append(Filter(field=field, op=op, value=value))
        elif isinstance(spec, list):
            filters.append(Filter(field=field, op="in", value=tuple(spec)))
        else:
            filters.append(Filter(field=field, op="eq", value=spec))
    return tuple(filters)


def predicate_source(
    filters: Sequence[Filter],
    namespace: dict[str, Any],
    prefix: str,
    reads: Mapping[str, str] | None = None,
) -> str:
    """Return a Python expression over ``e`` that is true when every filter holds.

    Operands are added to ``namespace`` under names starting with ``prefix``. ``reads`` maps
    fields already read (``e.get(field)``) to the local variable that holds them.
    """
    if not filters:
        return "True"
    namespace.setdefault("_NUMBER_TYPES", frozenset(_NUMBER))
    terms = []
    for i, flt in enumerate(filters):
        field, operand, var = f"{prefix}f{i}", f"{prefix}c{i}", f"{prefix}v{i}"
        namespace[field] = flt.field
        get = (reads or {}).get(flt.field) or f"e.get({field})"
        if flt.op == "eq":
            namespace[operand] = flt.value
            terms.append(f"{get} == {operand}")
        elif flt.op == "ne":
            namespace[operand] = flt.value
            terms.append(f"{get} != {operand}")
        elif flt.op == "in":
            namespace[operand] = flt.value
            terms.append(f"{get} in {operand}")
        elif flt.op == "not_in":
            namespace[operand] = flt.value
            terms.append(f"{get} not in {operand}")
        elif flt.op == "regex":
            known, decide, seen = f"{prefix}k{i}", f"{prefix}d{i}", f"{prefix}r{i}"
            namespace[known], namespace[decide] = _remembered_search(flt.value)
            lookup = f"({seen} if ({seen} := {known}({var})) is not None else {decide}({var}))"
            terms.append(f"(({var} := {get}).__class__ is str and {lookup})")
        elif flt.op == "exists":
            terms.append(f"{field} in e" if flt.value else f"{field} not in e")
        else:
            namespace[operand] = flt.value
            compare = f"{var} {_COMPARE[flt.op]} {operand}"
            terms.append(f"(({var} := {get}).__class__ in _NUMBER_TYPES and {compare})")
    return " and ".join(f"({term})" for term in terms)


def _remembered_search(
    pattern: str,
) -> tuple[Callable[[str], bool | None], Callable[[str], bool]]:
    """``(known, decide)``: a remembered answer for a text (or None), and the search itself.

    Filtered fields (sites, models) take few values, so a dict lookup replaces most searches;
    after ``_REMEMBERED`` distinct texts the rest are searched every time.
    """
    search = re.compile(pattern).search
    answers: dict[str, bool] = {}

    def decide(text: str) -> bool:
        found = search(text) is not None
        if len(answers) < _REMEMBERED:
            answers[text] = found
        return found

    return answers.get, decide


def compile_predicate(filters: Sequence[Filter]) -> Callable[[Mapping[str, Any]], bool]:
    """Return a function that tells whether an event satisfies every filter."""
    namespace: dict[str, Any] = {}
    source = f"lambda e: bool({predicate_source(filters, namespace, '_')})"
    predicate: Callable[[Mapping[str, Any]], bool] = eval(source, namespace)  # noqa: S307 (operands are namespace constants, never code)
    return predicate
