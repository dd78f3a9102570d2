"""Alert rules as frozen data, and their TOML form.

A rule file holds ``[[rule]]`` tables, an optional ``[settings]`` table (``resolution``,
``lateness``) and an optional ``[packs.builtin]`` table that switches the built-in pack on
with its parameters. Every error names the rule and the key at fault.
"""

from __future__ import annotations

import math
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prismq_llmtools.alerts.durations import parse_duration
from prismq_llmtools.alerts.match import Filter, parse_filters
from prismq_llmtools.errors import AlertRuleError

__all__ = [
    "AGGREGATES",
    "FIELD_ALIASES",
    "Condition",
    "Match",
    "Rule",
    "RuleSet",
    "load_rules",
    "parse_rules",
    "resolve_field",
]

FIELD_ALIASES: Mapping[str, str] = {
    "model": "gen_ai.request.model",
    "response_model": "gen_ai.response.model",
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
    "cached_input_tokens": "gen_ai.usage.cache_read.input_tokens",
    "reasoning_tokens": "gen_ai.usage.reasoning.output_tokens",
}
"""Short names accepted in rules for the OpenTelemetry-style field names of the schema."""

AGGREGATES = ("count", "sum", "avg", "min", "max", "rate", "ratio", "absence", "forecast")
"""Aggregate names; ``pNN`` (``p50``, ``p95``, ``p99``, ``p99.9``) is a percentile of ``field``."""

_NEEDS_FIELD = frozenset({"sum", "avg", "min", "max", "forecast"})
_PERCENTILE = re.compile(r"p(\d{1,2}(?:\.\d+)?)")
_CONDITION = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*")
_PERIODS = ("hour", "day", "month")
_RULE_KEYS = frozenset(
    {
        "name", "description", "event", "where", "aggregate", "field", "window", "group_by",
        "condition", "for", "repeat", "severity", "labels", "message", "min_count",
        "numerator", "denominator", "period", "budget",
    }
)  # fmt: skip
_MATCH_KEYS = frozenset({"event", "where", "field"})


def resolve_field(name: str) -> str:
    """Return the schema field name for ``name`` (a short alias or the name itself)."""
    return FIELD_ALIASES.get(name, name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """A threshold test such as ``> 5.0``."""

    op: str
    threshold: float

    def __post_init__(self) -> None:
        if self.op not in (">", ">=", "<", "<=", "==", "!="):
            raise ValueError(f"unknown comparison {self.op!r}")

    @classmethod
    def parse(cls, text: str) -> Condition:
        """Parse ``"> 5.0"``, ``"<= 0.2"``, ``"== 0"`` and the like."""
        found = _CONDITION.fullmatch(text)
        if found is None:
            raise ValueError(f"not a condition: {text!r} (expected e.g. '> 5.0' or '<= 0.2')")
        return cls(op=found[1], threshold=float(found[2]))

    def holds(self, value: float) -> bool:
        """Tell whether ``value`` satisfies the condition."""
        op, limit = self.op, self.threshold
        if op == ">":
            return value > limit
        if op == ">=":
            return value >= limit
        if op == "<":
            return value < limit
        if op == "<=":
            return value <= limit
        if op == "==":
            return value == limit
        return value != limit

    def __str__(self) -> str:
        return f"{self.op} {self.threshold:g}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Match:
    """Which events a rule (or one side of a ratio) counts, and the field it sums, if any."""

    event: str
    where: tuple[Filter, ...] = ()
    field: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One alert rule. Durations are seconds; see docs/alerts.md for the meaning of each key.

    Raises:
        AlertRuleError: the combination of keys is invalid (the message names the key).
    """

    name: str
    aggregate: str
    window_s: float
    match: Match | None = None
    numerator: Match | None = None
    denominator: Match | None = None
    group_by: tuple[str, ...] = ()
    condition: Condition | None = None
    for_s: float = 0.0
    repeat_s: float | None = None
    min_count: int = 1
    severity: str = "warning"
    labels: Mapping[str, str] = field(default_factory=dict)
    message: str | None = None
    period: str | None = None
    budget: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        def fail(key: str, message: str) -> AlertRuleError:
            return AlertRuleError(message, rule=self.name or "?", key=key)

        if not self.name or not isinstance(self.name, str):
            raise fail("name", "every rule needs a non-empty name")
        agg = self.aggregate
        if agg not in AGGREGATES and self.quantile is None:
            raise fail(
                "aggregate", f"unknown aggregate {agg!r} (known: {', '.join(AGGREGATES)}, pNN)"
            )
        if not (self.window_s > 0 and math.isfinite(self.window_s)):
            raise fail("window", "must be a positive duration")
        if agg == "ratio":
            if self.numerator is None or self.denominator is None:
                raise fail("numerator", "a ratio needs both [numerator] and [denominator]")
        elif self.match is None:
            raise fail("event", "names the event the rule watches, e.g. event = 'llm.call'")
        elif (agg in _NEEDS_FIELD or self.quantile is not None) and not self.match.field:
            raise fail("field", f"aggregate {agg!r} needs the field it reads, e.g. 'cost_usd'")
        if agg == "absence":
            if self.condition is not None:
                raise fail("condition", "an absence rule has no condition: it fires on silence")
            if self.for_s:
                raise fail("for", "an absence rule's silence duration is its window")
        elif agg == "forecast":
            if self.period not in _PERIODS:
                raise fail("period", f"must be one of {', '.join(_PERIODS)}")
            if self.budget is None or not self.budget > 0:
                raise fail("budget", "a forecast needs a positive budget")
            if self.condition is not None:
                raise fail("condition", "a forecast fires when it exceeds its budget")
        elif self.condition is None:
            raise fail("condition", "needs a condition such as '> 5.0'")
        if self.for_s < 0:
            raise fail("for", "must not be negative")
        if self.repeat_s is not None and not self.repeat_s > 0:
            raise fail("repeat", "must be a positive duration")
        if self.min_count < 0:
            raise fail("min_count", "must not be negative")
        if self.message is not None:
            try:
                list(string.Formatter().parse(self.message))
            except ValueError as exc:
                raise fail("message", f"bad template: {exc}") from None

    @property
    def quantile(self) -> float | None:
        """The quantile of a ``pNN`` aggregate (``p95 -> 0.95``), else ``None``."""
        found = _PERCENTILE.fullmatch(self.aggregate)
        if found is None or not 0 < float(found[1]) < 100:
            return None
        return float(found[1]) / 100

    @property
    def threshold(self) -> float | None:
        """The number the value is compared with (the budget for a forecast)."""
        if self.condition is not None:
            return self.condition.threshold
        return self.budget


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleSet:
    """Rules plus the engine settings a rule file may carry."""

    rules: tuple[Rule, ...]
    resolution_s: float = 1.0
    lateness_s: float = 5.0

    def __post_init__(self) -> None:
        names = [rule.name for rule in self.rules]
        for name in names:
            if names.count(name) > 1:
                raise AlertRuleError("two rules have this name", rule=name, key="name")
        if not self.resolution_s > 0:
            raise AlertRuleError("must be a positive duration", key="settings.resolution")
        if self.lateness_s < 0:
            raise AlertRuleError("must not be negative", key="settings.lateness")


def load_rules(path: str | Path) -> RuleSet:
    """Read a TOML rule file.

    Raises:
        AlertRuleError: the file is not valid TOML or a rule is invalid.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise AlertRuleError(f"cannot read rule file {str(path)!r}: {exc.strerror}") from None
    return parse_rules(text, source=str(path))


def parse_rules(document: str | Mapping[str, Any], *, source: str = "<rules>") -> RuleSet:
    """Parse rules from TOML text or from an already-parsed mapping."""
    if isinstance(document, str):
        try:
            document = tomllib.loads(document)
        except tomllib.TOMLDecodeError as exc:
            raise AlertRuleError(f"{source}: not valid TOML: {exc}") from None
    unknown = set(document) - {"rule", "settings", "packs"}
    if unknown:
        key = sorted(unknown)[0]
        raise AlertRuleError(f"{source}: unknown top-level table (use [[rule]])", key=key)
    settings = _table(document.get("settings", {}), None, "settings")
    resolution = _duration(settings.get("resolution", 1.0), None, "settings.resolution")
    lateness = _duration(settings.get("lateness", 5.0), None, "settings.lateness", zero=True)
    rules: list[Rule] = []
    for name, params in _table(document.get("packs", {}), None, "packs").items():
        if name != "builtin":
            raise AlertRuleError("the only pack is 'builtin'", key=f"packs.{name}")
        from prismq_llmtools.alerts.pack import builtin_rules

        try:
            rules.extend(builtin_rules(**_table(params, None, "packs.builtin")))
        except TypeError as exc:
            raise AlertRuleError(str(exc), key="packs.builtin") from None
    tables = document.get("rule", [])
    if not isinstance(tables, list):
        raise AlertRuleError("rules are an array of tables: write [[rule]]", key="rule")
    for index, table in enumerate(tables):
        rules.append(rule_from_table(_table(table, f"#{index + 1}", "rule")))
    return RuleSet(rules=tuple(rules), resolution_s=resolution, lateness_s=lateness)


def rule_from_table(table: Mapping[str, Any]) -> Rule:
    """Build one :class:`Rule` from its TOML table."""
    name = table.get("name")
    if not isinstance(name, str) or not name:
        raise AlertRuleError("every rule needs a non-empty text name", key="name")
    for key in table:
        if key not in _RULE_KEYS:
            raise AlertRuleError(
                f"unknown key (known: {', '.join(sorted(_RULE_KEYS))})", rule=name, key=key
            )
    aggregate = _text(table.get("aggregate", "count"), name, "aggregate")
    match = numerator = denominator = None
    event = table.get("event")
    field_name = table.get("field")
    if field_name is not None:
        field_name = resolve_field(_text(field_name, name, "field"))
    if aggregate == "ratio":
        numerator = _match(table.get("numerator"), name, "numerator", event)
        denominator = _match(table.get("denominator"), name, "denominator", event)
    elif event is not None:
        where = _where(table.get("where", {}), name, "where")
        match = Match(event=_text(event, name, "event"), where=where, field=field_name)
    group_by = table.get("group_by", ())
    if isinstance(group_by, str):
        group_by = (group_by,)
    if not isinstance(group_by, list | tuple) or not all(isinstance(g, str) for g in group_by):
        raise AlertRuleError("must be a field name or a list of them", rule=name, key="group_by")
    condition = None
    if "condition" in table:
        try:
            condition = Condition.parse(_text(table["condition"], name, "condition"))
        except ValueError as exc:
            raise AlertRuleError(str(exc), rule=name, key="condition") from None
    repeat = table.get("repeat")
    labels = _table(table.get("labels", {}), name, "labels")
    min_count = table.get("min_count", 1)
    if not isinstance(min_count, int) or isinstance(min_count, bool):
        raise AlertRuleError("must be an integer", rule=name, key="min_count")
    budget = table.get("budget")
    if budget is not None and (not isinstance(budget, int | float) or isinstance(budget, bool)):
        raise AlertRuleError("must be a number", rule=name, key="budget")
    message = table.get("message")
    return Rule(
        name=name,
        aggregate=aggregate,
        window_s=_duration(table.get("window"), name, "window"),
        match=match,
        numerator=numerator,
        denominator=denominator,
        group_by=tuple(resolve_field(g) for g in group_by),
        condition=condition,
        for_s=_duration(table.get("for", 0), name, "for", zero=True),
        repeat_s=None if repeat is None else _duration(repeat, name, "repeat"),
        min_count=min_count,
        severity=_text(table.get("severity", "warning"), name, "severity"),
        labels={str(k): str(v) for k, v in labels.items()},
        message=None if message is None else _text(message, name, "message"),
        period=None if "period" not in table else _text(table["period"], name, "period"),
        budget=None if budget is None else float(budget),
        description=_text(table.get("description", ""), name, "description"),
    )


def _match(spec: Any, rule: str, key: str, default_event: Any) -> Match:
    table = _table(spec if spec is not None else {}, rule, key)
    for sub in table:
        if sub not in _MATCH_KEYS:
            raise AlertRuleError(
                "unknown key (known: event, where, field)", rule=rule, key=f"{key}.{sub}"
            )
    event = table.get("event", default_event)
    if event is None:
        raise AlertRuleError("names the event it counts", rule=rule, key=f"{key}.event")
    field_name = table.get("field")
    return Match(
        event=_text(event, rule, f"{key}.event"),
        where=_where(table.get("where", {}), rule, f"{key}.where"),
        field=None
        if field_name is None
        else resolve_field(_text(field_name, rule, f"{key}.field")),
    )


def _where(spec: Any, rule: str, key: str) -> tuple[Filter, ...]:
    try:
        return parse_filters(_table(spec, rule, key), resolve_field)
    except ValueError as exc:
        raise AlertRuleError(str(exc), rule=rule, key=key) from None


def _duration(value: Any, rule: str | None, key: str, *, zero: bool = False) -> float:
    if value is None:
        raise AlertRuleError("is required (a duration such as '5m')", rule=rule, key=key)
    try:
        return parse_duration(value, allow_zero=zero)
    except ValueError as exc:
        raise AlertRuleError(str(exc), rule=rule, key=key) from None


def _text(value: Any, rule: str | None, key: str) -> str:
    if not isinstance(value, str):
        raise AlertRuleError(f"must be text, got {value!r}", rule=rule, key=key)
    return value


def _table(value: Any, rule: str | None, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise AlertRuleError(f"must be a table, got {value!r}", rule=rule, key=key)
    return value
