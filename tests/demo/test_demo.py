"""The demo: the example pipeline against the simulator prints its tables and absorbs faults."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.demo.conftest import DemoRun


def test_demo_counts_exactly_and_absorbs_faults(demo_run: DemoRun) -> None:
    """Counted prompt tokens equal billed ones, injected faults never reach the caller; the
    example ships with the package, so the demo runs from any directory."""
    status, out, err = demo_run.finish()
    assert status == 0, err
    print(out)  # shown by pytest when an assertion below fails
    assert "prompt tokens counted before the calls vs billed after: exact" in out
    assert "calls that failed for the caller, budget stops aside: 0" in out
    assert "0 rejected for exceeding its rate limits" in out
    assert "served from the cache" in out
    assert "the daily budget stopped the summaries cleanly" in out
    assert "briefing/titles" in out
    assert "TOTAL" in out  # the usage report, read back from the log
    assert "builtin.retry-storm" in out  # the fault profile trips the built-in pack
    events = [json.loads(line) for line in demo_run.log.read_text().splitlines()]
    calls = [e for e in events if e["event"] == "llm.call"]
    titles = [c for c in calls if c["operation"] == "titles"]
    assert len(titles) == 2 * 16  # a first pass, then a second one from the cache
    assert sum(c["cache"] == "hit" for c in titles) == 16
    assert all(c["outcome"] == "ok" for c in calls if c.get("error.type") != "BudgetExceeded")
    assert all(
        c["prompt_tokens_estimate"] == c["gen_ai.usage.input_tokens"]
        for c in titles
        if c["cache"] != "hit"
    )
    assert any(e["event"] == "llm.retry" for e in events)
    assert any(e["event"] == "alert.fired" for e in events)
