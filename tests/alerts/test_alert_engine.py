"""The engine on hand-computed examples: aggregates, windows, for, repeat, groups, absence."""

from __future__ import annotations

import random

import pytest
from alert_helpers import brief, run_rules

from prismq_llmtools.alerts.alert import Alert
from prismq_llmtools.alerts.engine import AlertEngine
from prismq_llmtools.alerts.rules import parse_rules

RULE = '[[rule]]\nname = "r"\nevent = "llm.call"\n'


def test_count_fires_and_resolves_when_the_window_slides() -> None:
    """Two errors within 10 s fire at the second; the first leaving the window resolves it."""
    text = RULE + 'where = { outcome = "error" }\nwindow = "10s"\ncondition = ">= 2"'
    events = [(1, {"outcome": "error"}), (2, {"outcome": "ok"}), (3, {"outcome": "error"})]
    alerts = run_rules(text, events, end=30)
    # window at tick 11 covers buckets 2..11: only the error at t=3 is left
    assert brief(alerts) == [("fired", 3.0, 2.0), ("resolved", 11.0, 1.0)]


def test_sum_over_a_sliding_window() -> None:
    """Costs 1, 2, 3 at t=1, 2, 3 sum to 6 at t=3, 5 at t=4, 3 at t=5 (window 3 s)."""
    text = RULE + 'aggregate = "sum"\nfield = "cost_usd"\nwindow = "3s"\ncondition = "> 4"'
    events = [(1, {"cost_usd": 1.0}), (2, {"cost_usd": 2.0}), (3, {"cost_usd": 3.0})]
    assert brief(run_rules(text, events, end=20)) == [("fired", 3.0, 6.0), ("resolved", 5.0, 3.0)]


@pytest.mark.parametrize(
    ("aggregate", "values"),
    [
        ("count", [1, 2, 2, 1]),
        ("sum", [2, 10, 13, 5]),
        ("avg", [2, 5, 6.5, 5]),
        ("min", [2, 2, 5, 5]),
        ("max", [2, 8, 8, 5]),
        ("rate", [0.5, 1.0, 1.0, 0.5]),
    ],
)
def test_each_aggregate_tick_by_tick(aggregate: str, values: list[float]) -> None:
    """Values 2, 8, 5 at t=1, 2, 3 in a 2 s window, read every tick through a 1 s repeat."""
    field = "" if aggregate in ("count", "rate") else 'field = "cost_usd"\n'
    text = (
        RULE + f'aggregate = "{aggregate}"\n{field}window = "2s"\ncondition = "> 0"\nrepeat = "1s"'
    )
    events = [(1, {"cost_usd": 2}), (2, {"cost_usd": 8}), (3, {"cost_usd": 5})]
    alerts = run_rules(text, events, end=10)
    assert [a.value for a in alerts[:-1]] == values
    assert [a.at for a in alerts] == [1, 2, 3, 4, 5]
    assert [a.repeat for a in alerts[:-1]] == [False, True, True, True]
    assert (alerts[-1].state, alerts[-1].value) == ("resolved", None)


def test_rate_of_a_field_is_its_sum_per_second() -> None:
    """``rate`` with a field divides the field's sum by the window length."""
    text = RULE + 'aggregate = "rate"\nfield = "cost_usd"\nwindow = "4s"\ncondition = "> 1"'
    assert brief(run_rules(text, [(1, {"cost_usd": 3}), (2, {"cost_usd": 3})], end=10)) == [
        ("fired", 2.0, 1.5),
        ("resolved", 5.0, 0.75),
    ]


def test_ratio_with_min_count() -> None:
    """Errors per call: 1/1 is ignored below min_count=2, 1/2 is not above 0.5, 2/3 fires."""
    text = (
        RULE + 'aggregate = "ratio"\nwindow = "10s"\ncondition = "> 0.5"\nmin_count = 2\n'
        'numerator = { where = { outcome = "error" } }\ndenominator = {}'
    )
    events = [(1, {"outcome": "error"}), (2, {"outcome": "ok"}), (3, {"outcome": "error"})]
    assert brief(run_rules(text, events, end=30)) == [
        ("fired", 3.0, 0.666667),
        ("resolved", 11.0, 0.5),
    ]


def test_ratio_of_sums() -> None:
    """A ratio side with a field sums it: 429s (rate_limited) per attempt."""
    text = (
        RULE + 'aggregate = "ratio"\nwindow = "10s"\ncondition = ">= 0.25"\n'
        'numerator = { field = "rate_limited" }\ndenominator = { field = "attempts" }'
    )
    events = [(1, {"rate_limited": 0, "attempts": 1}), (2, {"rate_limited": 2, "attempts": 3})]
    assert brief(run_rules(text, events))[0] == ("fired", 2.0, 0.5)


@pytest.mark.parametrize(("aggregate", "expected"), [("p50", 50), ("p95", 95), ("p99", 99)])
def test_percentiles_within_one_percent(aggregate: str, expected: float) -> None:
    """Percentiles of 1..100 are the nearest-rank values within the sketch's 1% accuracy."""
    text = (
        RULE + f'aggregate = "{aggregate}"\nfield = "duration_s"\nwindow = "10s"\ncondition = "> 0"'
    )
    values = list(range(1, 101))
    random.Random(4).shuffle(values)
    alerts = run_rules(text, [(1, {"duration_s": v}) for v in values])
    assert alerts[0].value == pytest.approx(expected, rel=0.01)


def test_for_duration_must_hold() -> None:
    """With ``for = 3s`` a condition true from t=1 fires at t=4; a 2-tick blip never fires."""
    text = RULE + 'window = "2s"\ncondition = ">= 1"\nfor = "3s"'
    steady = [(t, {}) for t in (1, 2, 3, 4, 5)]
    assert brief(run_rules(text, steady, end=20)) == [("fired", 4.0, 2.0), ("resolved", 7.0, None)]
    assert run_rules(text, [(1, {})], end=20) == []


def test_pending_resets_when_condition_breaks() -> None:
    """A gap that clears the window restarts the ``for`` clock."""
    text = RULE + 'window = "1s"\ncondition = ">= 1"\nfor = "2s"'
    events = [(t, {}) for t in (1, 2, 4, 5, 6)]  # nothing in bucket 3
    assert brief(run_rules(text, events, end=20)) == [("fired", 6.0, 1.0), ("resolved", 7.0, None)]


def test_repeat_interval() -> None:
    """Firing from t=1 to t=11 with ``repeat = 4s`` notifies at 1, 5 and 9, then resolves."""
    text = RULE + 'window = "2s"\ncondition = ">= 1"\nrepeat = "4s"'
    events = [(t, {}) for t in range(1, 11)]
    alerts = run_rules(text, events, end=30)
    assert [(a.state, a.at, a.repeat) for a in alerts] == [
        ("fired", 1.0, False),
        ("fired", 5.0, True),
        ("fired", 9.0, True),
        ("resolved", 12.0, False),
    ]


def test_without_repeat_one_firing_until_resolved() -> None:
    """A condition that keeps holding fires once; after resolving it may fire again."""
    text = RULE + 'window = "2s"\ncondition = ">= 1"'
    events = [(t, {}) for t in (1, 2, 3, 4, 10, 11)]
    assert [(a.state, a.at) for a in run_rules(text, events, end=30)] == [
        ("fired", 1.0),
        ("resolved", 6.0),
        ("fired", 10.0),
        ("resolved", 13.0),
    ]


def test_group_by_fires_per_group() -> None:
    """Each (site, model) group has its own window and its own alerts."""
    text = RULE + 'group_by = ["site", "model"]\nwindow = "10s"\ncondition = ">= 2"'
    events = [
        (1, {"site": "a", "gen_ai.request.model": "m"}),
        (2, {"site": "b", "gen_ai.request.model": "m"}),
        (3, {"site": "a", "gen_ai.request.model": "m"}),
        (4, {"site": "a", "gen_ai.request.model": "n"}),
        (5, {"site": "b", "gen_ai.request.model": "m"}),
    ]
    alerts = run_rules(text, events, end=40)
    assert [(a.state, a.at, dict(a.group)) for a in alerts] == [
        ("fired", 3.0, {"site": "a", "gen_ai.request.model": "m"}),
        ("fired", 5.0, {"site": "b", "gen_ai.request.model": "m"}),
        ("resolved", 11.0, {"site": "a", "gen_ai.request.model": "m"}),
        ("resolved", 12.0, {"site": "b", "gen_ai.request.model": "m"}),
    ]


def test_absence_fires_when_the_watermark_passes() -> None:
    """No successful call from t=5 fires at t=15 (10 s of silence) and resolves on the next."""
    text = RULE + 'aggregate = "absence"\nwhere = { outcome = "ok" }\nwindow = "10s"'
    events = [(t, {"outcome": "ok"}) for t in range(6)]
    events += [(t, {"outcome": "error"}) for t in range(6, 31)]
    events += [(31, {"outcome": "ok"})]
    assert brief(run_rules(text, events, end=35)) == [
        ("fired", 15.0, 10.0),
        ("resolved", 31.0, 0.0),
    ]


def test_absence_counts_from_the_first_event_seen() -> None:
    """When no matching event ever came, silence starts with the first event of any kind."""
    text = RULE + 'aggregate = "absence"\nwhere = { outcome = "ok" }\nwindow = "10s"\nrepeat = "5s"'
    events = [(t, {"outcome": "error"}) for t in range(100, 121)]
    assert brief(run_rules(text, events)) == [
        ("fired", 110.0, 10.0),
        ("fired", 115.0, 15.0),
        ("fired", 120.0, 20.0),
    ]


def test_absence_per_group() -> None:
    """Grouped absence watches each group seen so far."""
    text = RULE + 'aggregate = "absence"\ngroup_by = "site"\nwindow = "5s"'
    events = [(1, {"site": "a"}), (1, {"site": "b"})] + [(t, {"site": "a"}) for t in range(2, 10)]
    alerts = run_rules(text, events)
    assert [(a.state, a.at, dict(a.group)) for a in alerts] == [("fired", 6.0, {"site": "b"})]


DAY = 1795478400.0  # 2026-11-24T00:00:00Z


def test_budget_forecast() -> None:
    """At 01:00 1 USD/h for 23 h more is 24 < 25; at noon 3 + 2 USD/h * 12 h = 27 > 25 fires."""
    text = RULE + (
        'aggregate = "forecast"\nfield = "cost_usd"\nwindow = "1h"\nperiod = "day"\nbudget = 25'
    )
    events = [(DAY + 3600, {"cost_usd": 1.0}), (DAY + 43200, {"cost_usd": 2.0})]
    alerts = run_rules(text, events)
    assert brief(alerts) == [("fired", DAY + 43200, 27.0)]


def test_forecast_starts_again_each_period() -> None:
    """Yesterday's spend does not count towards today's forecast."""
    text = RULE + (
        'aggregate = "forecast"\nfield = "cost_usd"\nwindow = "1h"\nperiod = "day"\nbudget = 10'
    )
    events = [(DAY - 7200, {"cost_usd": 9.0}), (DAY + 82800, {"cost_usd": 0.1})]
    # yesterday 22:00: 9 + 9 USD/h * 2 h = 27 fires; an hour later the rate is 0: 9 resolves.
    # today 23:00: 0.1 spent + 0.1 USD/h * 1 h = 0.2, nothing carried over from yesterday
    assert brief(run_rules(text, events)) == [
        ("fired", DAY - 7200, 27.0),
        ("resolved", DAY - 3600, 9.0),
    ]


def test_out_of_order_within_lateness_equals_sorted() -> None:
    """Any arrival order whose disorder stays within ``lateness`` gives the sorted alerts."""
    text = RULE + 'group_by = "site"\nwindow = "5s"\ncondition = ">= 3"\nrepeat = "3s"'
    rng = random.Random(7)
    ordered = sorted(
        (rng.uniform(0, 200), {"site": rng.choice("abc")}) for _ in range(400)
    )  # fmt: skip
    shuffled = sorted(ordered, key=lambda pair: pair[0] + rng.uniform(0, 4.9))
    expected = run_rules(text, ordered, lateness_s=5)
    assert expected
    assert run_rules(text, shuffled, lateness_s=5) == expected


def test_events_older_than_the_watermark_are_late() -> None:
    """An event behind the evaluated watermark is counted as late and ignored."""
    engine = AlertEngine(parse_rules(RULE + 'window = "5s"\ncondition = ">= 1"'), lateness_s=2)
    engine.process_at(10, {"event": "llm.call"})
    engine.process_at(20, {"event": "llm.call"})  # evaluates the ticks before t=18
    engine.process_at(17, {"event": "llm.call"})
    engine.process_at(19, {"event": "llm.call"})
    assert (engine.stats.events, engine.stats.late) == (4, 1)
    assert engine.watermark == 17


def test_robust_to_odd_events() -> None:
    """Missing timestamps are counted; text values, lists and booleans never crash."""
    alerts: list[Alert] = []
    text = (
        RULE
        + 'aggregate = "sum"\nfield = "cost_usd"\ngroup_by = "site"\nwindow = "5s"\n'
        + 'condition = "> 1"'
    )
    engine = AlertEngine(parse_rules(text), actions=[alerts.append])
    engine.process({"event": "llm.call", "cost_usd": 5})
    engine.process({"event": "llm.call", "timestamp": "never", "cost_usd": 5})
    for value in ("5", True, None, [1], 2):
        engine.process({"event": "llm.call", "timestamp": 1.0, "cost_usd": value, "site": ["odd"]})
    engine.process({"event": "alert.fired", "timestamp": 500.0})  # own output is not input
    engine.flush()
    assert engine.stats.no_timestamp == 2
    assert [(a.value, dict(a.group)) for a in alerts] == [(2.0, {"site": "['odd']"})]
    assert engine.watermark == 1


def test_memory_follows_live_groups() -> None:
    """Groups whose windows emptied are dropped: state stays small over a long run."""
    engine = AlertEngine(
        parse_rules(RULE + 'group_by = "call_id"\nwindow = "5s"\ncondition = "> 9"')
    )
    for i in range(20_000):
        engine.process_at(i * 0.1, {"event": "llm.call", "call_id": str(i)})
    assert engine.state_size() < 200


def test_message_template_and_labels() -> None:
    """Messages fill rule, value, group, labels."""
    text = RULE + (
        'window = "5s"\ncondition = ">= 1"\ngroup_by = "site"\nlabels = { team = "ml" }\n'
        'severity = "critical"\nmessage = "{rule}/{team}: {value:.1f} on {group}"'
    )
    alert = run_rules(text, [(1, {"site": "s"})])[0]
    assert alert.message == "r/ml: 1.0 on site=s"
    event = alert.to_event()
    assert event["event"] == "alert.fired"
    assert event["labels"] == {"team": "ml"}
    assert event["severity"] == "critical"
    assert event["evaluated_at"] == "1970-01-01T00:00:01.000000Z"


def test_failing_action_is_counted_not_raised() -> None:
    """An action that raises does not stop evaluation or the other actions."""
    seen: list[Alert] = []

    def broken(alert: Alert) -> None:
        raise RuntimeError("down")

    engine = AlertEngine(
        parse_rules(RULE + 'window = "5s"\ncondition = ">= 1"'), actions=[broken, seen.append]
    )
    engine.process_at(1, {"event": "llm.call"})
    engine.flush()
    assert (len(seen), engine.stats.action_errors) == (1, 1)
    assert engine.firing() == [("r", {})]


def test_heartbeat_advances_time() -> None:
    """``advance_to`` moves event time without events, so silence is noticed."""
    alerts: list[Alert] = []
    engine = AlertEngine(
        parse_rules(RULE + 'aggregate = "absence"\nwindow = "10s"'),
        actions=[alerts.append],
        lateness_s=1,
    )
    engine.process_at(100, {"event": "llm.call"})
    engine.advance_to(105)
    assert alerts == []
    engine.advance_to(111.5)
    assert brief(alerts) == [("fired", 110.0, 10.0)]


def test_line_and_event_paths_read_the_same_times() -> None:
    """process_lines and process agree bit for bit on every timestamp form, boundaries included."""
    import json

    stamps = ["2026-11-24T06:40:00.000000Z", "2026-11-24T06:40:00.999999Z", "2026-11-24T06:40:01Z",
              "2026-11-24T07:40:00.5+01:00", "2026-11-24T06:40:02.25", 1795502403.0]  # fmt: skip
    text = RULE + 'window = "1s"\ncondition = ">= 1"\nrepeat = "1s"'
    by_lines: list[Alert] = []
    by_events: list[Alert] = []
    lines_engine = AlertEngine(parse_rules(text), actions=[by_lines.append], lateness_s=0)
    events_engine = AlertEngine(parse_rules(text), actions=[by_events.append], lateness_s=0)
    events = [{"event": "llm.call", "timestamp": stamp} for stamp in stamps]
    lines_engine.process_lines([json.dumps(event) for event in events])
    for event in events:
        events_engine.process(event)
    lines_engine.flush()
    events_engine.flush()
    assert [(a.state, a.at - 1795502400) for a in by_lines] == [
        ("fired", 0),
        ("fired", 1),  # a repeat: 00.999999, 01 and 00.5+01:00 are all in tick 1
        ("resolved", 2),
        ("fired", 3),  # 02.25 and the epoch number 03.0 are in tick 3
    ]
    assert by_lines == by_events


def test_windows_longer_than_an_hour_move_in_blocks() -> None:
    """A 2 h window (7200 ticks > 3600) keeps 2-tick blocks: an event at t=1 leaves at 7202."""
    text = RULE + 'aggregate = "sum"\nfield = "cost_usd"\nwindow = "2h"\ncondition = "> 0"'
    assert brief(run_rules(text, [(1, {"cost_usd": 1.0})], end=8000)) == [
        ("fired", 1.0, 1.0),
        ("resolved", 7202.0, None),
    ]
    # an hour is exact: it leaves at 1 + 3600
    text = text.replace('"2h"', '"1h"')
    assert brief(run_rules(text, [(1, {"cost_usd": 1.0})], end=8000))[-1] == (
        "resolved",
        3601.0,
        None,
    )
