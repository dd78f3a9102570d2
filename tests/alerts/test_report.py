"""The usage report: hand-computed totals, groupings, time filters, table, CSV, JSON, chart."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from prismq_llmtools.cli import main
from prismq_llmtools.report import build_report
from prismq_llmtools.report.render import render_csv, render_json, render_table, series_label

DAY1, DAY2 = "2026-11-24T10:00:00.000000Z", "2026-11-25T09:30:00.000000Z"


def call(ts: str, op: str, model: str, **fields: Any) -> dict[str, Any]:
    return {"event": "llm.call", "timestamp": ts, "operation": op, "site": f"app.{op}",
            "gen_ai.request.model": model, **fields}  # fmt: skip


EVENTS = [
    call(DAY1, "titles", "gpt-4o-mini", cost_usd=0.01, duration_s=1.0, cache="miss", retries=1,
         rate_limited=1, outcome="ok", **{"gen_ai.usage.input_tokens": 100,
         "gen_ai.usage.cache_read.input_tokens": 50, "gen_ai.usage.output_tokens": 20,
         "gen_ai.usage.reasoning.output_tokens": 5}),
    call(DAY1, "titles", "gpt-4o-mini", cost_usd=0.0, duration_s=0.1, cache="hit", outcome="ok",
         usage_source="cache"),
    {"event": "llm.cache.hit", "timestamp": DAY1, "operation": "titles", "site": "app.titles",
     "gen_ai.request.model": "gpt-4o-mini", "saved_cost_usd": 0.01},
    call(DAY1, "summaries", "gpt-4o", cost_usd=0.02, duration_s=3.0, retries=2, rate_limited=2,
         outcome="error", **{"gen_ai.usage.input_tokens": 200}),
    call(DAY2, "titles", "gpt-4o", cost_usd=0.5, duration_s=2.0, outcome="ok",
         **{"gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 300}),
    {"event": "llm.retry", "timestamp": DAY1, "operation": "titles", "attempt": 1},
    {"event": "llm.call", "timestamp": "garbage", "cost_usd": 9.0},
]  # fmt: skip


def test_totals_per_operation() -> None:
    """Each operation's totals, hit rate, savings and latency quantiles as computed by hand."""
    report = build_report(EVENTS)
    assert [row.group for row in report.rows] == ["titles", "summaries"]  # by cost
    titles = report.rows[0].as_dict()
    assert titles == {
        "group": "titles", "calls": 3, "errors": 0, "input_tokens": 1100,
        "cached_input_tokens": 50, "output_tokens": 320, "reasoning_tokens": 5,
        "cost_usd": 0.51, "cache_hit_rate": 0.5, "saved_usd": 0.01, "retries": 1,
        "rate_limited": 1, "possibly_billed": 0, "price_estimated": False,
        "p50_latency_s": 1.0, "p95_latency_s": 2.0,
    }  # fmt: skip
    summaries = report.rows[1]
    assert (summaries.calls, summaries.errors, summaries.cache_hit_rate) == (1, 1, None)
    assert (summaries.retries, summaries.rate_limited, summaries.latency(0.5)) == (2, 2, 3.0)
    assert report.total.calls == 4
    assert report.total.cost_usd == pytest.approx(0.53)
    assert (report.events, report.skipped) == (5, 1)


def test_group_by_model_site_and_day() -> None:
    """The same events grouped by model, site and UTC day."""
    by_model = {row.group: row.calls for row in build_report(EVENTS, by="model").rows}
    assert by_model == {"gpt-4o": 2, "gpt-4o-mini": 2}
    by_site = {row.group: row.calls for row in build_report(EVENTS, by="site").rows}
    assert by_site == {"app.titles": 3, "app.summaries": 1}
    by_day = [(row.group, row.calls) for row in build_report(EVENTS, by="day").rows]
    assert by_day == [("2026-11-24", 3), ("2026-11-25", 1)]
    with pytest.raises(ValueError, match="group by"):
        build_report(EVENTS, by="colour")


def test_since_and_until() -> None:
    """--since is inclusive, --until exclusive, both on event time."""
    from prismq_llmtools.alerts.eventtime import parse_event_time

    day2 = parse_event_time(DAY2)
    assert build_report(EVENTS, since=day2).total.calls == 1
    assert build_report(EVENTS, until=day2).total.calls == 3


def test_table_is_aligned() -> None:
    """Every line of the table has the same column boundaries; numbers are right-aligned."""
    table = render_table(build_report(EVENTS))
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["operation", "calls", "errors"]
    assert lines[-1].startswith("TOTAL")
    assert "50.0%" in lines[2]
    assert "0.5100" in lines[2]
    widths = {len(line) for line in lines if not line.startswith("---")}
    assert len(widths) == 1  # right-aligned last column: equal lengths


def test_csv_and_json() -> None:
    """CSV and JSON carry the same rows and the total."""
    report = build_report(EVENTS)
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert [row["group"] for row in rows] == ["titles", "summaries", "TOTAL"]
    assert rows[1]["cache_hit_rate"] == ""
    document = json.loads(render_json(report))
    assert document["total"]["calls"] == 4
    assert document["rows"][0]["saved_usd"] == 0.01


def write(path: Path) -> Path:
    path.write_text("".join(json.dumps(event) + "\n" for event in EVENTS) + "not json\n")
    return path


def test_cli_table_json_csv(tmp_path: Path, capsys: Any) -> None:
    """The command prints the table (or JSON/CSV) and a summary with malformed lines on stderr."""
    log = write(tmp_path / "events.log")
    assert main(["report", str(log), "--by", "model"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith("model")
    assert "1 malformed" in err
    assert main(["report", str(log), "--json", "--since", "2026-11-25T00:00:00Z"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["calls"] == 1
    assert main(["report", str(log), "--csv"]) == 0
    assert capsys.readouterr().out.startswith("group,calls,errors")
    assert main(["report", str(log), "--since", "last week"]) == 2
    assert main(["report", str(tmp_path / "missing.log")]) == 2


def test_cli_plot(tmp_path: Path, capsys: Any) -> None:
    """--plot writes a PNG of cost over time per operation."""
    pytest.importorskip("matplotlib")
    chart = tmp_path / "cost.png"
    assert main(["report", str(write(tmp_path / "events.log")), "--plot", str(chart)]) == 0
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_plot_without_matplotlib(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    """Without the [plot] extra, --plot fails with a clear message and status 2."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["report", str(write(tmp_path / "events.log")), "--plot", "x.png"]) == 2
    assert "pip install 'prismq_llmtools[plot]'" in capsys.readouterr().err


def test_a_stand_in_price_marks_its_row_estimated() -> None:
    """A call costed at a stand-in price makes its row say so, in every rendering."""
    events = [
        *EVENTS,
        call(DAY1, "local", "my-local-model", cost_usd=0.03, outcome="ok", price_known=False,
             price_stand_in="gpt-4o"),
    ]  # fmt: skip
    report = build_report(events)
    rows = {row.group: row.as_dict() for row in report.rows}
    assert rows["local"]["price_estimated"] is True
    assert rows["titles"]["price_estimated"] is False
    table = render_table(report).splitlines()
    assert next(line for line in table if line.startswith("local")).endswith("estimated")
    assert not next(line for line in table if line.startswith("titles")).endswith("estimated")
    assert json.loads(render_json(report))["total"]["price_estimated"] is True
    assert series_label(report, "local") == "local (estimated)"
    assert series_label(report, "titles") == "titles"


def test_attempts_left_in_flight_count_at_their_worst_case() -> None:
    """A sent attempt whose call never finished (its process died) counts as possibly billed
    at the worst case its sent line gives; a finished call's sent lines add nothing."""
    sent = {"event": "llm.attempt.sent", "timestamp": DAY1, "operation": "titles",
            "site": "app.titles", "gen_ai.request.model": "gpt-4o", "attempt": 1,
            "worst_input_tokens": 40, "worst_output_tokens": 10,
            "worst_cost_usd": 0.25}  # fmt: skip
    finished = {**sent, "call_id": "a1"}
    dead = {**sent, "call_id": "b2"}
    events = [finished, dead, {**call(DAY1, "titles", "gpt-4o", cost_usd=0.1), "call_id": "a1"}]
    report = build_report(events)
    (row,) = report.rows
    assert (row.calls, row.possibly_billed) == (1, 1)
    assert (row.input_tokens, row.output_tokens) == (40, 10)
    assert row.cost_usd == pytest.approx(0.35)


def _strict_json(text: str) -> Any:
    """Parse ``text`` as standard JSON: ``Infinity`` and ``NaN`` are errors."""

    def reject(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=reject)


_HEAD = '{"event": "llm.call", "timestamp": "' + DAY1 + '", "operation": "a", '
HOSTILE = [
    _HEAD + '"cost_usd": 1e400}',
    _HEAD + '"cost_usd": -49.99}',
    _HEAD + '"gen_ai.usage.input_tokens": -5}',
    _HEAD + '"duration_s": NaN}',
    _HEAD.replace("llm.call", "llm.cache.hit") + '"saved_cost_usd": Infinity}',
    _HEAD + '"cost_usd": 0.25}',
]


def test_non_finite_and_negative_amounts_are_malformed_lines(tmp_path: Path, capsys: Any) -> None:
    """Lines with an infinite, NaN or negative cost or token count are counted as malformed
    with their file and line, left out of the totals, and --json stays valid JSON."""
    log = tmp_path / "hostile.log"
    log.write_text("\n".join(HOSTILE) + "\n")
    assert main(["report", str(log), "--json"]) == 0
    captured = capsys.readouterr()
    document = _strict_json(captured.out)
    assert document["total"]["calls"] == 1
    assert document["total"]["cost_usd"] == 0.25
    assert document["total"]["input_tokens"] == 0
    assert "5 malformed" in captured.err
    assert f"{log}:1: cost_usd is not a finite number" in captured.err


def test_json_report_of_sums_beyond_a_float_is_valid_json() -> None:
    """Two finite costs whose sum overflows are written as null, never as Infinity."""
    events = [call(DAY1, "a", "m", cost_usd=1.5e308), call(DAY1, "a", "m", cost_usd=1.5e308)]
    document = _strict_json(render_json(build_report(events)))
    assert document["total"]["cost_usd"] is None
