"""Alert rules in their TOML form: loading and parsing rule files.

A rule file holds ``[[rule]]`` tables, an optional ``[settings]`` table (``resolution``,
``lateness``) and an optional ``[packs.builtin]`` table that switches the built-in pack on
with its parameters. Every error names the rule and the key at fault. The rules themselves
are frozen data (:mod:`prismq_llmtools.alerts.rule`, re-exported here).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prismq_llmtools.alerts.durations import parse_duration
from prismq_llmtools.alerts.match import Filter, parse_filters
from prismq_llmtools.alerts.pack import builtin_rules
from prismq_llmtools.alerts.rule import (
    AGGREGATES,
    FIELD_ALIASES,
    MATCH_KEYS,
    RULE_KEYS,
    Condition,
    Match,
    Rule,
    RuleSet,
    resolve_field,
)
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
        if key not in RULE_KEYS:
            raise AlertRuleError(
                f"unknown key (known: {', '.join(sorted(RULE_KEYS))})", rule=name, key=key
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
        if sub not in MATCH_KEYS:
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
