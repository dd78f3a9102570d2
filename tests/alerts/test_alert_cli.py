"""The ``prismq-llmtools alerts`` command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from prismq_llmtools.alerts.eventtime import format_event_time
from prismq_llmtools.cli import main

T0 = 1795478400.0
RULES = """
[settings]
lateness = "0s"

[[rule]]
name = "errors"
event = "llm.call"
where = { outcome = "error" }
window = "1m"
condition = ">= 3"
group_by = "site"
severity = "critical"
"""


def write(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    return path


def calls(outcomes: str, site: str = "app.a") -> list[dict[str, Any]]:
    return [
        {"event": "llm.call", "timestamp": format_event_time(T0 + i), "site": site,
         "outcome": "error" if mark == "x" else "ok"}
        for i, mark in enumerate(outcomes)
    ]  # fmt: skip


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    return path


def test_check_prints_alerts_and_summary(tmp_path: Path, rules: Path, capsys: Any) -> None:
    """Three errors in a minute fire once; the summary goes to stderr."""
    log = write(
        tmp_path / "a.log",
        [*calls("x.x.x"), {"event": "llm.call", "timestamp": format_event_time(T0 + 200)}],
    )
    assert main(["alerts", "check", "--rules", str(rules), str(log)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("2026-11-24T00:00:04.000000Z FIRED [critical] errors:")
    assert "RESOLVED" in lines[1]
    assert "1 fired, 1 resolved" in err
    assert "0 malformed" in err


def test_check_json_and_fail_on_alert(tmp_path: Path, rules: Path, capsys: Any) -> None:
    """--json prints alert events; --fail-on-alert exits 1 when something fired."""
    log = write(tmp_path / "a.log", calls("xxx"))
    status = main(["alerts", "check", "--rules", str(rules), "--json", "--fail-on-alert", str(log)])
    assert status == 1
    alerts = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(a["event"], a["rule"], a["group"]) for a in alerts] == [
        ("alert.fired", "errors", {"site": "app.a"})
    ]
    quiet = write(tmp_path / "b.log", calls("x.x"))
    assert main(["alerts", "check", "--rules", str(rules), "--fail-on-alert", str(quiet)]) == 0


def test_check_reports_malformed_lines(tmp_path: Path, rules: Path, capsys: Any) -> None:
    """Malformed lines are counted and the first ones named with their line numbers."""
    log = tmp_path / "bad.log"
    log.write_text("nope\n" + json.dumps(calls("x")[0]) + "\n[]\n")
    assert main(["alerts", "check", "--rules", str(rules), str(log)]) == 0
    err = capsys.readouterr().err
    assert "2 malformed (first: " in err
    assert "bad.log:3: not a JSON object" in err


def test_bad_rules_and_missing_logs_exit_2(tmp_path: Path, rules: Path, capsys: Any) -> None:
    """A rule error names the rule and key; an unreadable log is reported; both exit 2."""
    broken = tmp_path / "broken.toml"
    broken.write_text(
        '[[rule]]\nname = "x"\nevent = "llm.call"\nwindow = "5 minutes"\ncondition = "> 1"\n'
    )
    assert main(["alerts", "check", "--rules", str(broken), str(tmp_path / "a.log")]) == 2
    assert "rule 'x' key 'window'" in capsys.readouterr().err
    assert main(["alerts", "check", "--rules", str(rules), str(tmp_path / "missing.log")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["alerts", "check", str(tmp_path / "a.log")]) == 2
    assert "no rules" in capsys.readouterr().err
    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing yet\n")
    assert main(["alerts", "check", "--rules", str(empty), str(tmp_path / "a.log")]) == 2
    err = capsys.readouterr().err
    assert "the rule file holds no rules" in err
    assert str(empty) in err
    assert "give --rules" not in err
    assert main(["alerts", "check", "--pack", "builtin", "--pack-param", "nope=1", "x.log"]) == 2


def test_builtin_pack_catches_a_retry_storm(tmp_path: Path, capsys: Any) -> None:
    """The built-in pack with a low retry threshold fires on 20 retries in a minute."""
    retries = [
        {"event": "llm.retry", "timestamp": format_event_time(T0 + i), "site": "app.a",
         "attempt": 1, "wait_s": 0.5, "status_code": 429}
        for i in range(20)
    ]  # fmt: skip
    log = write(tmp_path / "r.log", retries)
    argv = [
        "alerts",
        "check",
        "--pack",
        "builtin",
        "--pack-param",
        "retries_per_minute=10",
        "--json",
    ]
    assert main([*argv, str(log)]) == 0
    fired = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["rule"] for a in fired] == ["builtin.retry-storm"]


def test_watch_follows_until_interrupted(
    tmp_path: Path, rules: Path, capsys: Any, monkeypatch: Any
) -> None:
    """watch --from-start reads what is there, and Ctrl-C ends it with a summary."""
    from prismq_llmtools.alerts import tail as follow_module

    log = write(
        tmp_path / "a.log",
        [*calls("xxx"), {"event": "llm.call", "timestamp": format_event_time(T0 + 100)}],
    )
    original = follow_module.FollowedFile.read_lines
    reads: list[int] = []

    def read_then_interrupt(self: Any) -> list[str]:
        reads.append(1)
        if len(reads) > 1:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(follow_module.FollowedFile, "read_lines", read_then_interrupt)
    assert main(["alerts", "watch", "--rules", str(rules), "--from-start", str(log)]) == 0
    out, err = capsys.readouterr()
    assert "FIRED [critical] errors" in out
    assert "1 fired" in err


SPEND = """
[settings]
lateness = "0s"

[[rule]]
name = "spend"
event = "llm.call"
aggregate = "sum"
field = "cost_usd"
window = "1m"
condition = "> 0.4"
"""


@pytest.mark.parametrize("files", [1, 2])
def test_non_finite_and_negative_costs_are_malformed_lines(
    tmp_path: Path, capsys: Any, files: int
) -> None:
    """A cost of 1e400, Infinity or -49.99 is a malformed line (counted, with file:line),
    never summed; the --json alerts are valid JSON, with or without merging several files."""
    rules = tmp_path / "rules.toml"
    rules.write_text(SPEND)

    def line(i: int, cost: str) -> str:
        stamp = format_event_time(T0 + i)
        return f'{{"event": "llm.call", "timestamp": "{stamp}", "cost_usd": {cost}}}\n'

    log = tmp_path / "a.log"
    log.write_text(line(0, "1e400") + line(1, "-49.99") + line(2, "0.5") + line(3, "Infinity"))
    logs = [str(log)]
    if files == 2:
        other = tmp_path / "b.log"
        other.write_text(line(4, "-1"))
        logs.append(str(other))
    assert main(["alerts", "check", "--rules", str(rules), "--json", *logs]) == 0
    captured = capsys.readouterr()

    def reject(constant: str) -> Any:
        raise ValueError(constant)

    fired = [json.loads(x, parse_constant=reject) for x in captured.out.splitlines()]
    assert [a["value"] for a in fired if a["event"] == "alert.fired"] == [0.5]
    assert f"{2 + files} malformed" in captured.err
    assert f"{log}:1: " in captured.err  # not finite, or not JSON to orjson (the [fast] extra)
    assert f"{log}:2: cost_usd is negative (-49.99)" in captured.err
