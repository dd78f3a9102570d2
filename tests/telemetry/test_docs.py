"""docs/telemetry.md's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).parents[2] / "docs" / "telemetry.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL)


def test_the_page_has_examples() -> None:
    """The page shows the OpenTelemetry and the Prometheus set-up."""
    assert len(BLOCKS) == 2


@pytest.mark.parametrize("code", BLOCKS, ids=["otel", "prometheus"])
def test_each_example_runs(code: str, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each block runs to its end, its own assertions holding."""
    monkeypatch.setenv("PRISMQ_LLMTOOLS_CACHE_DIR", str(cache_dir))
    exec(compile(code, str(PAGE), "exec"), {"__name__": "docs_example"})  # noqa: S102
