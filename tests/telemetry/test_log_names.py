"""The log's names: the pinned conventions' in new lines, older logs still read alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from prismq_llmtools import cost_tracked, retried
from prismq_llmtools.alerts import Alert, AlertEngine, parse_rules, replay
from prismq_llmtools.report import build_report, read_events
from prismq_llmtools.testing.clock import FakeClock
from prismq_llmtools.testing.simulator import Fault, FaultKind, Simulator
from tests.drivers import Mode, Steps

MESSAGES = [{"role": "user", "content": "Say hello"}]
OLD_NAMES = ("error_type", "gen_ai.prompt", "gen_ai.completion")


def _lines(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


def test_call_and_attempt_lines_carry_the_current_names(
    mode: Mode, sim: Simulator, clock: FakeClock, events: list[dict[str, Any]]
) -> None:
    """llm.call and llm.attempt carry gen_ai.provider.name, server.address and server.port,
    openai.api.type, openai.response.service_tier and error.type, and none of the old names."""
    api = mode.client_for(sim)
    sim.script(Fault(kind=FaultKind.SERVER_ERROR))

    @cost_tracked()
    @retried(attempts=3, clock=clock)
    @mode.make
    def ask() -> Steps[str]:
        r = yield api.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        return r.choices[0].message.content or ""

    mode.invoke(ask)
    failed, answered = _lines(events, "llm.attempt")
    assert failed["error.type"] == "InternalServerError"
    assert "error.type" not in answered
    for attempt in (failed, answered):
        assert attempt["gen_ai.provider.name"] == "openai"
        assert attempt["server.address"] == "127.0.0.1"
        assert attempt["server.port"] == sim.port
    (retry,) = _lines(events, "llm.retry")
    assert retry["error.type"] == "InternalServerError"
    (call,) = _lines(events, "llm.call")
    assert call["gen_ai.provider.name"] == "openai"
    assert call["gen_ai.operation.name"] == "chat"
    assert call["openai.api.type"] == "chat_completions"
    assert call["server.address"] == "127.0.0.1"
    assert call["server.port"] == sim.port
    assert call["openai.response.service_tier"] == "default"
    for line in events:
        assert not set(OLD_NAMES) & set(line)


def test_a_responses_api_call_is_a_chat_operation_of_the_responses_api(
    mode: Mode, sim: Simulator, events: list[dict[str, Any]]
) -> None:
    """The conventions name no `responses` operation: it is `chat`, with openai.api.type."""
    api = mode.client_for(sim)

    @cost_tracked()
    @mode.make
    def ask() -> Steps[str]:
        r = yield api.responses.create(model="gpt-4o-mini", input="Say hello")
        return str(r.output_text)

    mode.invoke(ask)
    (call,) = _lines(events, "llm.call")
    assert call["gen_ai.operation.name"] == "chat"
    assert call["openai.api.type"] == "responses"


def test_a_failed_call_carries_error_type(
    mode: Mode, sim: Simulator, events: list[dict[str, Any]]
) -> None:
    """A call that fails says error.type, the exception's class."""
    api = mode.client_for(sim)
    sim.script(Fault(kind=FaultKind.INSUFFICIENT_QUOTA))

    @cost_tracked()
    @mode.make
    def ask() -> Steps[str]:
        r = yield api.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        return r.choices[0].message.content or ""

    with pytest.raises(Exception, match="quota"):
        mode.invoke(ask)
    (call,) = _lines(events, "llm.call")
    assert call["error.type"] == "RateLimitError"
    assert call["outcome"] == "error"


@pytest.mark.parametrize("kind", [FaultKind.MALFORMED_JSON, FaultKind.EMPTY_BODY])
def test_an_unreadable_answer_is_never_recorded_as_zero_usage(
    mode: Mode, sim: Simulator, kind: FaultKind, events: list[dict[str, Any]]
) -> None:
    """An answer the client cannot read: its usage is unknown (no usage fields) or
    estimated (marked so), never zero tokens."""
    api = mode.client_for(sim)
    sim.script(Fault(kind=kind))

    @cost_tracked()
    @mode.make
    def ask(model: str = "gpt-4o-mini") -> Steps[str]:
        r = yield api.chat.completions.create(model=model, messages=MESSAGES)
        return r.choices[0].message.content or ""

    with pytest.raises(Exception):  # noqa: B017, PT011 (whichever the client raises)
        mode.invoke(ask)
    (call,) = _lines(events, "llm.call")
    if "gen_ai.usage.input_tokens" in call:
        assert call["usage_source"] == "estimated"
        assert call["gen_ai.usage.input_tokens"] > 0
    else:
        assert "usage_source" not in call
        assert "gen_ai.usage.output_tokens" not in call


# -- logs written before the renames ------------------------------------------------------


def _log(current: bool) -> list[dict[str, Any]]:
    """A minute of calls, half failing, as an older (or the current) version wrote them."""
    error = "error.type" if current else "error_type"
    prompt, completion = (
        ("gen_ai.input.messages", "gen_ai.output.messages")
        if current
        else ("gen_ai.prompt", "gen_ai.completion")
    )
    lines = []
    for second in range(60):
        line: dict[str, Any] = {
            "timestamp": f"2026-11-24T06:45:{second:02d}.000000Z",
            "level": "info",
            "event": "llm.call",
            "site": "app.titles",
            "operation": "titles",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 20,
            "cost_usd": 0.0001,
            "outcome": "ok",
            prompt: "[]" if not current else [],
            completion: "hi" if not current else [],
        }
        if second % 2:
            line.update({"outcome": "error", error: "RateLimitError", "cost_usd": 0.0})
        lines.append(line)
    return lines


def _write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


RULES = """
[[rule]]
name = "errors-old-name"
event = "llm.call"
where = { error_type = { exists = true } }
aggregate = "count"
window = "30s"
condition = ">= 10"

[[rule]]
name = "errors-new-name"
event = "llm.call"
where = { "error.type" = "RateLimitError" }
aggregate = "count"
window = "30s"
condition = ">= 10"
group_by = ["error_type"]
"""


def _alerts(paths: list[Path]) -> list[tuple[str, str, str]]:
    found: list[Alert] = []
    replay(paths, AlertEngine(parse_rules(RULES), actions=[found.append]))
    return [(a.rule, a.state, json.dumps(a.group, default=str)) for a in found]


def test_old_logs_report_and_alert_as_new_ones(tmp_path: Path) -> None:
    """A log with the old names (error_type, gen_ai.prompt, gen_ai.completion) gives the same
    report and the same alerts as one with the current names, whichever name a rule uses,
    read alone (the fast path) or merged with another file."""
    old = _write(tmp_path / "old.log", _log(current=False))
    new = _write(tmp_path / "new.log", _log(current=True))
    empty = _write(tmp_path / "empty.log", [])
    old_alerts, new_alerts = _alerts([old]), _alerts([new])
    assert {rule for rule, _, _ in old_alerts} == {"errors-old-name", "errors-new-name"}
    assert old_alerts == new_alerts
    assert _alerts([old, empty]) == _alerts([new, empty]) == old_alerts
    old_report = build_report(read_events([old]))
    new_report = build_report(read_events([new]))
    assert old_report.total == new_report.total
    assert old_report.total.errors == 30
    assert old_report.rows == new_report.rows
