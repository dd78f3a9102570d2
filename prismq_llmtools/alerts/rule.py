"""Alert rules as frozen data: what a rule matches, aggregates and compares, validated."""

from __future__ import annotations

import difflib
import math
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prismq_llmtools.alerts.match import Filter
from prismq_llmtools.errors import AlertRuleError
from prismq_llmtools.events import RENAMED
from prismq_llmtools.schema import EVENTS, fields_of

__all__ = [
    "AGGREGATES",
    "FIELD_ALIASES",
    "MATCH_KEYS",
    "RULE_KEYS",
    "Condition",
    "Match",
    "Rule",
    "RuleSet",
    "resolve_field",
]

FIELD_ALIASES: Mapping[str, str] = {
    "model": "gen_ai.request.model",
    "response_model": "gen_ai.response.model",
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
    "cached_input_tokens": "gen_ai.usage.cache_read.input_tokens",
    "reasoning_tokens": "gen_ai.usage.reasoning.output_tokens",
    **RENAMED,  # older logs' names: their events are read under the current ones
}
"""Short names accepted in rules for the OpenTelemetry-style field names of the schema."""

AGGREGATES = ("count", "sum", "avg", "min", "max", "rate", "ratio", "absence", "forecast")
"""Aggregate names; ``pNN`` (``p50``, ``p95``, ``p99``, ``p99.9``) is a percentile of ``field``."""

_NEEDS_FIELD = frozenset({"sum", "avg", "min", "max", "forecast"})
_PERCENTILE = re.compile(r"p(\d{1,2}(?:\.\d+)?)")
_CONDITION = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*")
_PERIODS = ("hour", "day", "month")
RULE_KEYS = frozenset(
    {
        "name", "description", "event", "where", "aggregate", "field", "window", "group_by",
        "condition", "for", "repeat", "severity", "labels", "message", "min_count",
        "numerator", "denominator", "period", "budget",
    }
)  # fmt: skip
MATCH_KEYS = frozenset({"event", "where", "field"})
TEMPLATE_NAMES = frozenset(
    {"rule", "severity", "state", "value", "threshold", "window", "aggregate", "group"}
)
"""Names a rule's ``message`` template may use, besides the rule's label keys."""
_OUR_EVENTS = ("llm.", "alert.")


def closest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'a', 'b'?)`` for the known names closest to ``name``, or ``""``."""
    near = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(n) for n in near)}?)" if near else ""


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
        for key, match in (("", self.match), ("numerator.", self.numerator),
                           ("denominator.", self.denominator)):  # fmt: skip
            if match is not None:
                self._check_schema(match, key)
        if self.message is not None:
            try:
                parts = list(string.Formatter().parse(self.message))
            except ValueError as exc:
                raise fail("message", f"bad template: {exc}") from None
            known = TEMPLATE_NAMES | set(self.labels)
            for _text, name, _spec, _conv in parts:
                root = re.split(r"[.\[]", name, maxsplit=1)[0] if name else ""
                if name is not None and root not in known:
                    raise fail(
                        "message",
                        f"the template names {{{root}}}, which no alert has"
                        f"{closest(root, known)}; known: {', '.join(sorted(known))}",
                    )

    def _check_schema(self, match: Match, key: str) -> None:
        """An event of the library's (``llm.*``, ``alert.*``) must be one of the schema, and
        the fields the rule reads, filters on and groups by must be among its fields."""
        if not match.event.startswith(_OUR_EVENTS):
            return  # an application's own event: its fields are the application's
        if match.event not in EVENTS:
            raise AlertRuleError(
                f"unknown event {match.event!r}{closest(match.event, EVENTS)}"
                " (events: docs/events.md)",
                rule=self.name,
                key=f"{key}event",
            )
        known = fields_of(match.event)
        named = [(f"{key}field", match.field)] if match.field else []
        named += [(f"{key}where", f.field) for f in match.where]
        named += [("group_by", g) for g in self.group_by]
        for where, name in named:
            if name is not None and name not in known:
                near = closest(name, known | FIELD_ALIASES.keys())
                raise AlertRuleError(
                    f"{match.event} has no field {name!r}{near} (fields: docs/events.md)",
                    rule=self.name,
                    key=where,
                )

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
