"""The observer seam: what the core tells telemetry exporters, and that they cannot break it."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

import pytest

from prismq_llmtools import cost_tracked, observers
from prismq_llmtools.call import Call
from prismq_llmtools.observers import Exchange, Observer
from prismq_llmtools.testing.simulator import Simulator
from tests.drivers import Mode, Steps

MESSAGES = [{"role": "user", "content": "Say hello"}]


class Recorder(Observer):
    def __init__(self) -> None:
        self.heard: list[str] = []

    def call_started(self, call: Call) -> None:
        self.heard.append(f"started {call.operation}")

    def call_left(self, call: Call) -> None:
        self.heard.append(f"left {call.operation}")

    def call_finished(self, call: Call) -> None:
        self.heard.append(f"finished {call.operation}")

    def request_started(self, exchange: Exchange) -> None:
        self.heard.append(f"request {exchange.model}")

    def request_finished(self, exchange: Exchange) -> None:
        usage = exchange.usage
        self.heard.append(f"answer {usage.input_tokens if usage else None}")


class Broken(Observer):
    def __getattribute__(self, name: str) -> Any:
        if name.startswith(("call_", "request_")):

            def fail(*args: Any) -> None:
                raise RuntimeError(f"{name} broke")

            return fail
        return super().__getattribute__(name)


def test_observers_hear_each_point_in_order(mode: Mode, sim: Simulator) -> None:
    """Started, the request and its answer, left, finished; nested calls inside."""
    recorder = Recorder()
    observers.add(recorder)
    api = mode.client_for(sim)

    @cost_tracked(operation="inner")
    @mode.make
    def inner() -> Steps[str]:
        r = yield api.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        return r.choices[0].message.content or ""

    @cost_tracked(operation="outer")
    @mode.make
    def outer() -> Steps[str]:
        return (yield inner())

    mode.invoke(outer)
    tokens = sim.stats().prompt_tokens
    assert recorder.heard == [
        "started outer",
        "started outer/inner",
        "request gpt-4o-mini",
        f"answer {tokens}",
        "left outer/inner",
        "finished outer/inner",
        "left outer",
        "finished outer",
    ]


def test_a_failing_observer_never_breaks_the_call(
    mode: Mode, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """An observer that raises everywhere: the call returns its answer, the failures are
    logged through the standard logging module, and other observers still hear."""
    recorder = Recorder()
    observers.add(Broken())
    observers.add(recorder)
    api = mode.client_for(sim)

    @cost_tracked(operation="ask")
    @mode.make
    def ask() -> Steps[str]:
        r = yield api.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        return r.choices[0].message.content or ""

    with caplog.at_level(logging.ERROR, logger="prismq_llmtools"):
        assert mode.invoke(ask)
    assert "call_started broke" in caplog.text
    assert "request_finished broke" in caplog.text
    assert "finished ask" in recorder.heard


def test_an_observer_removed_mid_call_still_hears_it_left(mode: Mode) -> None:
    """Whatever an observer made current when a call started, it can undo when it leaves."""
    recorder = Recorder()
    observers.add(recorder)

    @cost_tracked(operation="work")
    @mode.make
    def work() -> Steps[str]:
        observers.remove(recorder)
        return "done"
        yield

    mode.invoke(work)
    assert recorder.heard == ["started work", "left work"]


def test_importing_and_calling_loads_no_exporter() -> None:
    """Without instrument() or register(), neither opentelemetry nor prometheus_client is
    imported, and decorated calls work."""
    code = (
        "import sys\n"
        "from prismq_llmtools import cost_tracked\n"
        "@cost_tracked()\n"
        "def f():\n"
        "    return 'x'\n"
        "assert f() == 'x'\n"
        "names = ('opentelemetry', 'prometheus_client')\n"
        "loaded = [m for m in sys.modules if m.startswith(names)]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
