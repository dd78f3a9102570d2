"""Durations, event time and compiled filters."""

from __future__ import annotations

import pytest

from prismq_llmtools.alerts.durations import format_duration, parse_duration
from prismq_llmtools.alerts.eventtime import format_event_time, parse_event_time
from prismq_llmtools.alerts.match import Filter, compile_predicate, parse_filters


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), ("1h30m", 5400), ("250ms", 0.25),
     ("1.5h", 5400), (42, 42), (0.5, 0.5), (" 2 m ", 120), ("1w", 604800)],
)  # fmt: skip
def test_parse_duration(text: str | float, seconds: float) -> None:
    """Durations with units and bare numbers become seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5 minutes", "m", "-1s", "0s", True, None, "1x"])
def test_parse_duration_rejects(text: object) -> None:
    """Text without a unit, zero, negatives and other types are refused with a hint."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)  # type: ignore[arg-type]


def test_zero_duration_allowed_when_asked() -> None:
    """``for = 0`` is valid where zero is allowed."""
    assert parse_duration("0s", allow_zero=True) == 0


def test_format_duration() -> None:
    """Seconds print in the largest exact unit."""
    assert [format_duration(s) for s in (3600, 90, 300, 86400, 1.5)] == [
        "1h",
        "90s",
        "5m",
        "1d",
        "1.5s",
    ]


def test_event_time_round_trip() -> None:
    """The schema's ``Z`` timestamps parse to epoch seconds and format back identically."""
    text = "2026-11-24T06:40:00.123456Z"
    seconds = parse_event_time(text)
    assert seconds == pytest.approx(1795502400.123456)
    assert format_event_time(seconds) == text  # type: ignore[arg-type]
    assert parse_event_time("2026-11-24T06:40:00") == 1795502400.0  # naive is UTC
    assert parse_event_time("2026-11-24T07:40:00+01:00") == 1795502400.0
    assert parse_event_time(12.5) == 12.5
    assert parse_event_time("yesterday") is None
    assert parse_event_time(None) is None


def test_filters_each_operator() -> None:
    """Every operator of a ``where`` table behaves as documented, missing fields included."""
    where = {
        "outcome": "ok",
        "model": ["a", "b"],
        "status_code": {">=": 500, "lt": 600},
        "site": {"regex": r"^app\."},
        "error_type": {"exists": False},
        "cache": {"ne": "hit", "not_in": ["bypass"]},
    }
    check = compile_predicate(parse_filters(where))
    good = {"outcome": "ok", "model": "a", "status_code": 503, "site": "app.x", "cache": "miss"}
    assert check(good)
    assert check({**good, "status_code": 500.0})
    assert not check({**good, "outcome": "error"})
    assert not check({**good, "model": "c"})
    assert not check({**good, "status_code": 600})
    assert not check({**good, "status_code": "503"})  # text is not a number
    assert not check({k: v for k, v in good.items() if k != "status_code"})
    assert not check({**good, "site": "lib.app.x"})
    assert not check({**good, "site": 5})
    assert not check({**good, "error_type": "X"})
    assert not check({**good, "cache": "hit"})
    assert not check({**good, "cache": "bypass"})
    assert check({k: v for k, v in good.items() if k != "cache"})  # ne/not_in hold when missing


def test_no_filters_match_everything() -> None:
    """An empty filter list accepts every event."""
    assert compile_predicate(())({})


def test_filter_operands_are_never_code() -> None:
    """Field names and operands that look like code are data, not evaluated."""
    where = {"__import__('os').system('x')": {"eq": "') or True or ('"}}
    check = compile_predicate(parse_filters(where))
    assert not check({"a": 1})
    assert check({"__import__('os').system('x')": "') or True or ('"})


@pytest.mark.parametrize(
    ("where", "message"),
    [({"x": {"between": 1}}, "unknown operator"), ({"x": {">": "5"}}, "expected a number"),
     ({"x": {"regex": "("}}, "regex"), ({"x": {"in": 5}}, "expected a list"), ({"x": {}}, "empty")],
)  # fmt: skip
def test_filter_errors(where: dict[str, object], message: str) -> None:
    """Bad operators and operands raise errors that say what is wrong."""
    with pytest.raises(ValueError, match=message):
        parse_filters(where)


def test_filter_is_a_value_object() -> None:
    """Filters are frozen and comparable, so identical rules can share work."""
    assert Filter(field="a", op="eq", value=1) == Filter(field="a", op="eq", value=1)


def test_regex_answers_stay_right_past_the_remembered_texts() -> None:
    """A regex filter answers like re.search for repeated texts and for thousands of new ones."""
    import re

    check = compile_predicate(parse_filters({"site": {"regex": r"^app\.(a|b)\d*$"}}))
    texts = [f"app.{letter}{i}" for i in range(3000) for letter in "abc"] + ["app.a", "x", "app.b"]
    for text in texts + texts[::-1]:
        assert check({"site": text}) == (re.search(r"^app\.(a|b)\d*$", text) is not None)
    assert not check({"site": ["app.a"]})  # a list is not text (and not hashable)
