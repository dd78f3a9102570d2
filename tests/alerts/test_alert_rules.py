"""Rule files: TOML parsing, defaults and errors that name the rule and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from prismq_llmtools.alerts.match import Filter
from prismq_llmtools.alerts.rules import Condition, load_rules, parse_rules
from prismq_llmtools.errors import AlertRuleError, ConfigurationError

FULL = """
[settings]
resolution = "2s"
lateness = "10s"

[[rule]]
name = "spend"
event = "llm.call"
where = { model = "gpt-4o", status_code = { ">=" = 500 } }
aggregate = "sum"
field = "cost_usd"
window = "1h"
group_by = ["site", "model"]
condition = "> 5.0"
for = "5m"
repeat = "1h"
severity = "critical"
labels = { team = "ml" }
message = "{rule} {value:.2f}"

[[rule]]
name = "429s"
aggregate = "ratio"
event = "llm.call"
window = "5m"
condition = ">= 0.1"
numerator = { field = "rate_limited" }
denominator = { where = { outcome = "ok" } }
"""


def test_full_rule_file() -> None:
    """Every key of a rule is read, aliases resolved and durations converted."""
    ruleset = parse_rules(FULL)
    assert (ruleset.resolution_s, ruleset.lateness_s) == (2.0, 10.0)
    spend, ratio = ruleset.rules
    assert spend.match is not None
    assert spend.match.event == "llm.call"
    assert spend.match.field == "cost_usd"
    assert spend.match.where == (
        Filter(field="gen_ai.request.model", op="eq", value="gpt-4o"),
        Filter(field="status_code", op="ge", value=500),
    )
    assert spend.group_by == ("site", "gen_ai.request.model")
    assert spend.condition == Condition(op=">", threshold=5.0)
    assert (spend.window_s, spend.for_s, spend.repeat_s) == (3600, 300, 3600)
    assert (spend.severity, dict(spend.labels), spend.message) == (
        "critical",
        {"team": "ml"},
        "{rule} {value:.2f}",
    )
    assert ratio.numerator is not None
    assert ratio.denominator is not None
    assert (ratio.numerator.event, ratio.numerator.field) == ("llm.call", "rate_limited")
    assert ratio.denominator.where == (Filter(field="outcome", op="eq", value="ok"),)
    assert spend.threshold == 5.0


def test_load_rules_from_file(tmp_path: Path) -> None:
    """A rule file on disk loads like its text."""
    path = tmp_path / "rules.toml"
    path.write_text(FULL)
    assert load_rules(path) == parse_rules(FULL)


def test_pack_table_enables_builtin_rules() -> None:
    """``[packs.builtin]`` adds the built-in rules with the given parameters."""
    rules = parse_rules("[packs.builtin]\nspend_per_hour_usd = 2.5\n").rules
    by_name = {rule.name: rule for rule in rules}
    assert by_name["builtin.spend-per-hour"].threshold == 2.5
    assert "builtin.retry-storm" in by_name


A = '[[rule]]\nname = "a"\n'
AX = A + 'event = "x"\n'
W = 'window = "5m"\n'
C = 'condition = "> 1"\n'
FC = 'aggregate = "forecast"\nfield = "c"\nwindow = "1h"\n'


@pytest.mark.parametrize(
    ("text", "rule", "key"),
    [
        (AX + W + C + "colour = 1", "a", "colour"),
        (AX + 'window = "5 min"\n' + C, "a", "window"),
        (AX + C, "a", "window"),
        (AX + W + 'condition = "above 1"', "a", "condition"),
        (AX + W, "a", "condition"),
        (A + W + C, "a", "event"),
        (AX + 'aggregate = "sum"\n' + W + C, "a", "field"),
        (AX + 'aggregate = "median"\n' + W + C, "a", "aggregate"),
        (AX + 'where = { s = { "=~" = "x" } }\n' + W + C, "a", "where"),
        (
            A + 'aggregate = "ratio"\n' + W + C + 'numerator = { event = "x" }',
            "a",
            "denominator.event",
        ),
        (A + 'aggregate = "ratio"\n' + W + C + 'numerator = { evnt = "x" }', "a", "numerator.evnt"),
        (AX + 'aggregate = "absence"\n' + W + C, "a", "condition"),
        (AX + FC + 'period = "year"\nbudget = 1', "a", "period"),
        (AX + FC + 'period = "day"', "a", "budget"),
        (AX + W + C + 'repeat = "0s"', "a", "repeat"),
        (AX + W + C + 'message = "{oops"', "a", "message"),
        (AX + W + C + AX + W + C, "a", "name"),
        ('[[rule]]\nevent = "x"', None, "name"),
        ('[rules]\nname = "a"', None, "rules"),
        ("[packs.other]\nx = 1", None, "packs.other"),
        ("[packs.builtin]\nno_such_threshold = 1", None, "packs.builtin"),
        ('[settings]\nlateness = "soon"', None, "settings.lateness"),
    ],
)
def test_errors_name_rule_and_key(text: str, rule: str | None, key: str) -> None:
    """Each mistake raises an AlertRuleError naming the rule (when there is one) and the key."""
    with pytest.raises(AlertRuleError) as caught:
        parse_rules(text)
    assert caught.value.rule == rule
    assert caught.value.key == key
    assert key in str(caught.value)
    assert isinstance(caught.value, ConfigurationError)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    """Broken TOML and unreadable files are configuration errors, not tracebacks."""
    with pytest.raises(AlertRuleError, match="not valid TOML"):
        parse_rules("[[rule]\n")
    with pytest.raises(AlertRuleError, match="cannot read"):
        load_rules(tmp_path / "missing.toml")


def test_condition_parse_and_holds() -> None:
    """Conditions parse every comparison and test values with it."""
    assert Condition.parse(">= 0.8").holds(0.8)
    assert not Condition.parse("> 0.8").holds(0.8)
    assert Condition.parse("<1e3").holds(999)
    assert Condition.parse("== 0").holds(0.0)
    assert Condition.parse("!= 0").holds(1)
    assert Condition.parse("<= -1").holds(-1)
    assert str(Condition.parse(">5")) == "> 5"


def test_percentile_aggregates() -> None:
    """``pNN`` aggregates name their quantile; other names have none."""
    text = AX + 'aggregate = "p99.9"\nfield = "d"\n' + W + C
    assert parse_rules(text).rules[0].quantile == pytest.approx(0.999)


@pytest.mark.parametrize(
    ("table", "key", "suggestion"),
    [
        ('event = "llm.calls"\ncondition = "> 1"', "event", "'llm.call'"),
        ('event = "llm.call"\naggregate = "sum"\nfield = "cost"\ncondition = "> 1"', "field",
         "'cost_usd'"),
        ('event = "llm.call"\nwhere = { operaton = "x" }\ncondition = "> 1"', "where",
         "'operation'"),
        ('event = "llm.call"\ngroup_by = "modle"\ncondition = "> 1"', "group_by", "'model'"),
        ('event = "llm.call"\ncondition = "> 1"\nmessage = "{rule}: {vaule}"', "message",
         "'value'"),
        ('aggregate = "ratio"\nnumerator = { event = "llm.call", where = { outcom = "error" } }'
         '\ndenominator = { event = "llm.call" }\ncondition = "> 1"', "numerator.where",
         "'outcome'"),
    ],
)  # fmt: skip
def test_rules_are_checked_against_the_event_schema(table: str, key: str, suggestion: str) -> None:
    """A rule naming an unknown event, field, filter key, group field or template name is an
    AlertRuleError naming the key and the closest valid names."""
    with pytest.raises(AlertRuleError) as info:
        parse_rules(f'[[rule]]\nname = "r"\nwindow = "1m"\n{table}\n')
    assert info.value.key == key
    assert suggestion in str(info.value)


def test_an_applications_own_events_are_not_checked() -> None:
    """Events outside the library's namespaces (llm.*, alert.*) may carry any field."""
    rules = parse_rules(
        '[[rule]]\nname = "r"\nevent = "app.job"\naggregate = "sum"\nfield = "rows"\n'
        'window = "1m"\ncondition = "> 1"\nmessage = "{rule} {value}"\n'
    )
    assert rules.rules[0].match is not None
    assert rules.rules[0].match.field == "rows"


def test_short_field_names_still_resolve() -> None:
    """The short aliases (model, input_tokens) name schema fields."""
    rules = parse_rules(
        '[[rule]]\nname = "r"\nevent = "llm.call"\naggregate = "sum"\nfield = "input_tokens"\n'
        'where = { model = "gpt-4o" }\ngroup_by = "model"\nwindow = "1m"\ncondition = "> 1"\n'
    )
    assert rules.rules[0].group_by == ("gen_ai.request.model",)
