"""What an item run in another process brings home: its calls and its events.

The path is exercised in this process by giving the runner another driver's process id,
as a worker process would see it; tests/batch/test_cluster.py runs it on real processes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import prismq_llmtools as llm
from prismq_llmtools import events
from prismq_llmtools.batch.items import Unit
from prismq_llmtools.batch.runner import StopFlag, UnitRunner
from prismq_llmtools.events import close_log_file, configure_logging
from prismq_llmtools.site import export
from prismq_llmtools.site.wrapper import core_of
from prismq_llmtools.testing import reset


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    reset()
    yield
    close_log_file()
    reset()


def answer(text: str) -> dict[str, object]:
    """An OpenAI-shaped answer with usage, so the call has tokens and a cost."""
    return {
        "model": "gpt-4o-mini",
        "choices": [{"message": {"content": text.upper()}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
    }


@llm.cost_tracked(operation="worker.inner", model="gpt-4o-mini")
def inner(text: str) -> dict[str, object]:
    return answer(text)


@llm.cost_tracked(operation="worker.outer", model="gpt-4o-mini")
@llm.batched(max_concurrency=1)
def outer(text: str) -> dict[str, object]:
    inner(text)
    return answer(text)


def run_as_worker(*texts: str) -> list[export.FinishedCall]:
    """Run items the way a worker process does, then deliver what they bring home to a
    driver that has counted nothing yet (here, the worker's counts are this process's)."""
    runner = UnitRunner(outer, "outer", StopFlag(), func_ref=None)
    runner.context = None
    runner.driver = "another-process"
    results = [runner(Unit(indices=(i,), args=(text,), kwargs={})) for i, text in enumerate(texts)]
    llm.usage_totals().reset()
    for site in (outer, inner):
        core_of(site).calls = 0
    notes: list[export.FinishedCall] = []
    for result in results:
        assert result.status == "ok", result.value
        assert result.from_worker is not None
        notes.extend(result.from_worker.calls)
        result.from_worker.deliver()
    return notes


def test_events_in_a_capture_are_kept_then_written_with_their_time(tmp_path: Path) -> None:
    """Captured events reach no log where they happen; replayed, they keep their time."""
    log = tmp_path / "events.jsonl"
    configure_logging(file=log)
    with events.capturing() as capture:
        events.emit(None, "llm.test", level="warning", n=1)
    assert log.read_text() == ""
    assert [(level, name) for level, name, _ in capture.lines] == [("warning", "llm.test")]
    happened = capture.lines[0][2]["_happened"]
    events.replay(capture)
    (line,) = [json.loads(text) for text in log.read_text().splitlines()]
    assert (line["event"], line["level"], line["n"]) == ("llm.test", "warning", 1)
    assert line["timestamp"] == happened
    assert "_happened" not in line


def test_events_are_captured_even_where_logging_is_not_configured() -> None:
    """A worker process need not configure logging: its events still travel home."""
    with events.capturing() as capture:
        events.emit(None, "llm.test")
    assert len(capture.lines) == 1


def test_a_workers_calls_are_counted_once_at_the_driver(tmp_path: Path) -> None:
    """Totals, nested operations and site statistics include the items' calls, once."""
    log = tmp_path / "events.jsonl"
    configure_logging(file=log)
    notes = run_as_worker("a", "b")
    assert [n.operation for n in notes] == ["worker.outer/worker.inner", "worker.outer"] * 2
    totals = llm.usage_totals().by_operation(rollup=False)
    assert totals["worker.outer"].calls == 2
    assert totals["worker.outer/worker.inner"].calls == 2
    assert totals["worker.outer"].input_tokens == 20
    assert llm.usage_totals().total().cost_usd > 0
    assert outer.llm.stats()["calls"] == 2
    assert inner.llm.stats()["calls"] == 2
    lines = [json.loads(text) for text in log.read_text().splitlines()]
    assert len([line for line in lines if line["event"] == "llm.call"]) == 4


def test_a_worker_call_whose_site_is_not_imported_at_the_driver_still_counts() -> None:
    """Recorded calls of a site the driver never imported go to the default totals."""
    (finished,) = [n for n in run_as_worker("a") if n.operation == "worker.outer"]
    llm.usage_totals().reset()
    stranger = export.FinishedCall(**{**_fields(finished), "site": "not.imported.here"})
    assert export.absorb([stranger]) == [stranger]


def _fields(finished: export.FinishedCall) -> dict[str, object]:
    return {name: getattr(finished, name) for name in finished.__dataclass_fields__}


def test_a_call_carried_home_records_the_same_totals_as_the_call_itself() -> None:
    """Whatever the usage totals read of a Call survives the trip as a FinishedCall."""
    from decimal import Decimal

    from prismq_llmtools.call import Call, Request
    from prismq_llmtools.cost.tracking import UsageTotals
    from prismq_llmtools.usage import Usage

    for cache in ("miss", "hit", None):
        call = Call("app.site", "outer/inner")
        call.request = Request(model="gpt-4o-mini")
        call.response_model = "gpt-4o-mini-2024-07-18"
        call.outcome = "error"
        call.usage = Usage(input_tokens=30, output_tokens=7, cached_input_tokens=10)
        call.cost_usd = Decimal("0.0012")
        call.unrecorded_usage = Usage(input_tokens=5, output_tokens=1)
        call.unrecorded_cost_usd = Decimal("0.0001")
        call.cache = cache
        call.saved_cost_usd = Decimal("0.004")
        call.retries, call.rate_limited, call.unread_requests = 2, 1, 1
        here, carried = UsageTotals(), UsageTotals()
        here.record(call, when=1_764_892_800)
        finished = export.FinishedCall.of(call)
        carried.record(finished.as_call(), when=1_764_892_800)
        assert carried.by_operation() == here.by_operation()
        assert carried.by_model() == here.by_model()
