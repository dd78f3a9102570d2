"""Sources: file replay, merge by time, live structlog processor, follow with rotation."""

from __future__ import annotations

import gzip
import json
import os
import random
from pathlib import Path
from typing import Any

import structlog

from prismq_llmtools.alerts.alert import Alert
from prismq_llmtools.alerts.engine import AlertEngine
from prismq_llmtools.alerts.eventtime import format_event_time
from prismq_llmtools.alerts.rules import parse_rules
from prismq_llmtools.alerts.sources import AlertProcessor, replay
from prismq_llmtools.alerts.tail import FollowedFile, follow

RULES = """
[[rule]]
name = "errors"
event = "llm.call"
aggregate = "ratio"
group_by = "site"
window = "30s"
condition = "> 0.3"
min_count = 3
repeat = "20s"
numerator = { where = { outcome = "error" } }
denominator = {}

[[rule]]
name = "slow"
event = "llm.call"
aggregate = "p95"
field = "duration_s"
window = "1m"
condition = "> 2"
for = "10s"

[[rule]]
name = "silence"
event = "llm.call"
aggregate = "absence"
where = { outcome = "ok" }
window = "20s"

[[rule]]
name = "retries"
event = "llm.retry"
aggregate = "count"
group_by = ["site", "status_code"]
window = "10s"
condition = ">= 3"
"""
T0 = 1795478400.0


def make_events(count: int, seed: int = 3) -> list[dict[str, Any]]:
    """A reproducible mix of calls and retries over about 10 minutes, with quiet spells."""
    rng = random.Random(seed)
    events, moment = [], T0
    for _ in range(count):
        moment += rng.expovariate(2.0) + (40 if rng.random() < 0.005 else 0)
        site = rng.choice(["app.a", "app.b", "app.c"])
        if rng.random() < 0.8:
            events.append({
                "event": "llm.call", "timestamp": format_event_time(moment), "site": site,
                "outcome": "error" if rng.random() < 0.25 else "ok",
                "duration_s": rng.lognormvariate(0, 0.6), "cost_usd": 0.001,
            })  # fmt: skip
        else:
            events.append({
                "event": "llm.retry", "timestamp": format_event_time(moment), "site": site,
                "status_code": rng.choice([429, 500]), "attempt": 1, "wait_s": 0.5,
            })  # fmt: skip
    return events


def write_log(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    return path


def engine_with(alerts: list[Alert]) -> AlertEngine:
    return AlertEngine(parse_rules(RULES), actions=[alerts.append], lateness_s=2)


def replayed(paths: list[Path]) -> list[Alert]:
    alerts: list[Alert] = []
    replay(paths, engine_with(alerts))
    return alerts


def test_replay_equals_live(tmp_path: Path) -> None:
    """The same events through a live structlog processor and through file replay alert alike."""
    live_alerts: list[Alert] = []
    processor = AlertProcessor(engine_with(live_alerts))
    log_path = tmp_path / "live.log"
    with log_path.open("w") as handle:
        logger = structlog.wrap_logger(
            structlog.WriteLogger(handle),
            processors=[processor, structlog.processors.JSONRenderer()],
        )
        for event in make_events(3000):
            fields = dict(event)
            logger.info(fields.pop("event"), **fields)
    processor.flush()
    assert len(live_alerts) > 10
    assert {a.rule for a in live_alerts} == {"errors", "slow", "silence", "retries"}
    assert replayed([log_path]) == live_alerts


def test_merged_files_equal_one_sorted_file(tmp_path: Path) -> None:
    """Events split over three files replay, merged by time, like the single sorted log."""
    events = make_events(2000, seed=5)
    single = write_log(tmp_path / "all.log", events)
    parts = [write_log(tmp_path / f"part{i}.log", events[i::3]) for i in range(3)]
    expected = replayed([single])
    assert expected
    assert replayed(parts) == expected


def test_malformed_lines_are_counted_and_reported(tmp_path: Path) -> None:
    """Garbage, non-objects and events without time are counted with line numbers; no crash."""
    good = {"event": "llm.call", "timestamp": format_event_time(T0), "outcome": "ok"}
    lines = [
        json.dumps(good),
        "{not json",
        "",
        "[1, 2]",
        json.dumps({"event": "llm.call"}),
        '{"event": "llm.call", "timestamp": "soon"}',
        "\x00\xff",
        json.dumps(good),
    ]
    path = tmp_path / "bad.log"
    path.write_text("\n".join(lines) + "\n")
    engine = engine_with([])
    stats = replay([path], engine)
    assert (stats.lines, stats.malformed) == (8, 5)
    assert [(m.line, m.reason.split(":")[0]) for m in stats.examples] == [
        (2, "not JSON"),
        (4, "not a JSON object"),
        (5, "no valid timestamp"),
        (6, "no valid timestamp"),
        (7, "not JSON"),
    ]
    assert engine.stats.events == 2
    assert "5 malformed" in stats.summary()
    merged = (
        replay([path, tmp_path / "empty.log"], engine_with([]))
        if _touch(tmp_path / "empty.log")
        else None
    )
    assert merged is not None
    assert merged.malformed == 5


def _touch(path: Path) -> bool:
    path.write_text("")
    return True


def test_gzip_logs(tmp_path: Path) -> None:
    """Compressed logs replay like plain ones."""
    events = make_events(500)
    plain = write_log(tmp_path / "a.log", events)
    packed = tmp_path / "a.log.gz"
    with gzip.open(packed, "wt") as handle:
        handle.write(plain.read_text())
    assert replayed([packed]) == replayed([plain])


def test_processor_ignores_its_own_alerts_and_stamps_missing_time() -> None:
    """Alerts logged by an action go through untouched; events without time use the clock."""
    seen: list[str] = []
    engine = AlertEngine(parse_rules(RULES), lateness_s=0)
    processor = AlertProcessor(engine, clock=lambda: T0 + 100)
    logger = structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[processor, lambda _l, _m, ev: seen.append(ev["event"]) or ev],
    )
    engine.actions.append(lambda alert: logger.warning(alert.event, rule=alert.rule))
    logger.info("llm.call", outcome="error")  # no timestamp: the clock says T0 + 100
    processor.heartbeat(T0 + 200)  # 100 s without a successful call
    assert seen == ["llm.call", "alert.fired"]
    assert engine.stats.events == 1


def test_followed_file_survives_rename_and_truncation(tmp_path: Path) -> None:
    """New lines are read as written; partial lines wait; rename and truncation restart."""
    path = tmp_path / "app.log"
    followed = FollowedFile(path)
    assert followed.read_lines() == []  # not created yet
    path.write_text("one\ntw")
    assert followed.read_lines() == ["one"]
    with path.open("a") as handle:
        handle.write("o\nthree\n")
    assert followed.read_lines() == ["two", "three"]
    with path.open("a") as handle:
        handle.write("four\nfive-partial")
    os.rename(path, tmp_path / "app.log.1")
    assert followed.read_lines() == ["four"]  # the new file is not there yet
    path.write_text("six\n")
    assert followed.read_lines() == ["five-partial", "six"]
    path.write_text("7\n")  # truncated in place, shorter than before
    assert followed.read_lines() == ["7"]
    assert followed.rotations == 2
    followed.close()


def test_followed_file_can_start_at_the_end(tmp_path: Path) -> None:
    """Like ``tail -F``, existing content is skipped when asked."""
    path = tmp_path / "app.log"
    path.write_text("old\n")
    followed = FollowedFile(path, from_end=True)
    assert followed.read_lines() == []
    with path.open("a") as handle:
        handle.write("new\n")
    assert followed.read_lines() == ["new"]
    followed.close()


def test_follow_feeds_the_engine_across_rotation(tmp_path: Path) -> None:
    """follow() replays writes made between polls, through a rename rotation, with a fake sleep."""
    events = make_events(1500, seed=9)
    path = tmp_path / "app.log"
    chunks = [events[:500], events[500:1000], events[1000:]]
    path.write_text("")
    polls: list[float] = []

    def fake_sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 1:
            write_log(path, chunks[0])
        elif len(polls) == 2:
            with path.open("a") as handle:
                handle.write("".join(json.dumps(e) + "\n" for e in chunks[1]) + "garbage\n")
            os.rename(path, tmp_path / "app.log.1")
            write_log(path, chunks[2])

    alerts: list[Alert] = []
    engine = engine_with(alerts)
    stats = follow(
        [path], engine, poll_s=0.5, from_end=False, heartbeat=False, sleep=fake_sleep,
        should_stop=lambda: len(polls) >= 4,
    )  # fmt: skip
    engine.flush()
    assert stats.lines == 1501
    assert stats.malformed == 1
    assert polls == [0.5] * 4
    assert alerts == replayed([write_log(tmp_path / "all.log", events)])


def test_follow_heartbeat_uses_the_clock(tmp_path: Path) -> None:
    """With no new lines, event time follows the injected clock so silence is noticed."""
    path = write_log(
        tmp_path / "app.log",
        [{"event": "llm.call", "timestamp": format_event_time(T0), "outcome": "ok"}],
    )
    alerts: list[Alert] = []
    now = [T0]

    def fake_sleep(seconds: float) -> None:
        now[0] += seconds

    follow([path], engine_with(alerts), poll_s=10, from_end=False, sleep=fake_sleep,
           clock=lambda: now[0], should_stop=lambda: now[0] > T0 + 60)  # fmt: skip
    assert [(a.rule, a.state, a.at) for a in alerts] == [("silence", "fired", T0 + 20)]
