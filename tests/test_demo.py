"""The demo: the example pipeline against the simulator prints its tables and absorbs faults."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_counts_exactly_and_absorbs_faults(tmp_path: Path) -> None:
    """Counted prompt tokens equal billed ones, injected faults never reach the caller."""
    log = tmp_path / "events.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "prismq_llmtools",
            "demo",
            "--articles",
            "16",
            "--fault-rate",
            "0.3",
            "--log",
            str(log),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = result.stdout
    assert "prompt tokens counted before the calls vs billed after: exact" in out
    assert "calls that failed for the caller: 0" in out
    assert "briefing/titles" in out
    assert "TOTAL" in out  # the usage report, read back from the log
    assert "builtin.retry-storm" in out  # the fault profile trips the built-in pack
    events = [json.loads(line) for line in log.read_text().splitlines()]
    calls = [e for e in events if e["event"] == "llm.call"]
    assert len(calls) == 16 + 4 * 3
    assert all(c["outcome"] == "ok" for c in calls)
    assert any(e["event"] == "llm.retry" for e in events)
    assert any(e["event"] == "alert.fired" for e in events)
