from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from prismq_llmtools.events import close_log_file
from prismq_llmtools.pricing import set_price_table
from prismq_llmtools.settings import Settings, reset_settings
from prismq_llmtools.testing.clock import FakeClock
from prismq_llmtools.tracking import usage_totals


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(__import__("os").environ):
        if name.startswith("PRISMQ_LLMTOOLS__"):
            monkeypatch.delenv(name)
    reset_settings(Settings())
    usage_totals().reset()
    yield
    reset_settings(None)
    set_price_table(None)
    close_log_file()
    structlog.reset_defaults()


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """Every event emitted during the test, as dicts."""
    with capture_logs() as captured:
        yield captured


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
