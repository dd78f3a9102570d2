"""Process-global state: one module holds it, and ``testing.reset()`` puts all of it back."""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog

import prismq_llmtools
from prismq_llmtools import (
    _state,
    configure_logging,
    cost_tracked,
    pricing,
    rate_limited,
    usage_totals,
)
from prismq_llmtools.alerts import eventtime
from prismq_llmtools.alerts.eventtime import second_of
from prismq_llmtools.cache import key
from prismq_llmtools.cache.key import normalise
from prismq_llmtools.openai import boundary, vocab
from prismq_llmtools.openai.prices import openai_prices
from prismq_llmtools.openai.tokens import count_text, default_counter
from prismq_llmtools.pricing import price_table, set_price_table
from prismq_llmtools.settings import CONFIG_ENV, settings
from prismq_llmtools.site.wrapper import core_of
from prismq_llmtools.stores import default_registry
from prismq_llmtools.stores.memory import MemoryStore
from prismq_llmtools.testing import reset
from prismq_llmtools.testing.clock import FakeClock

from .fakes import Script, chat_body, client, ok

MODEL = "gpt-4o-mini"
PACKAGE = Path(prismq_llmtools.__file__).parent


def _ask_through_the_client(usage: int = 5) -> Any:
    answers = [ok(chat_body(prompt_tokens=usage, completion_tokens=1)) for _ in range(3)]
    api = client(Script(*answers))

    @cost_tracked()
    def ask() -> str:
        r = api.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
        return r.choices[0].message.content or ""

    return ask


def _levels(f: Any) -> list[float]:
    aspect = next(a for a in core_of(f).aspects if a.kind == "rate_limited")
    return default_registry.store().levels(MODEL, aspect.settings.specs(), clock=core_of(f).clock)


def test_settings_are_read_again_from_file_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settings installed or loaded before a reset are forgotten: the next use reads the file."""
    config = tmp_path / "llmtools.toml"
    config.write_text("[defaults]\nmodel = 'gpt-4o'\n", encoding="utf-8")
    monkeypatch.setenv(CONFIG_ENV, str(config))
    assert settings().source is None  # the test set-up installed empty settings
    reset()
    assert settings().defaults == {"model": "gpt-4o"}
    config.write_text("[defaults]\nmodel = 'o3'\n", encoding="utf-8")
    assert settings().defaults == {"model": "gpt-4o"}  # loaded once...
    reset()
    assert settings().defaults == {"model": "o3"}  # ...and again after a reset


def test_usage_totals_are_emptied_for_sites_decorated_before() -> None:
    """The totals are empty after a reset, and a site decorated earlier records into them."""
    ask = _ask_through_the_client()
    totals = usage_totals()
    ask()
    assert totals.total().calls == 1
    reset()
    assert usage_totals() is totals
    assert totals.total().calls == 0
    assert totals.by_operation() == {}
    ask()
    assert totals.total().input_tokens == 5


def test_the_default_price_table_comes_back() -> None:
    """A price table installed by hand is replaced by the default one."""
    custom = openai_prices().with_overrides({MODEL: {"input": 100, "output": 200}})
    set_price_table(custom)
    assert price_table().price_for(MODEL) != openai_prices().price_for(MODEL)
    reset()
    assert price_table() is not custom
    assert price_table().price_for(MODEL) == openai_prices().price_for(MODEL)


def test_buckets_and_limit_declarations_are_forgotten() -> None:
    """A drained bucket is full again, and its key may be declared with other limits."""
    clock = FakeClock()

    @rate_limited(rpm=2, burst=1.0, clock=clock, model=MODEL)
    def ask() -> str:
        return "ok"

    ask()
    ask()
    assert _levels(ask) == [0.0]
    with pytest.raises(prismq_llmtools.ConfigurationError):
        rate_limited(rpm=5, clock=clock, model=MODEL)(lambda: "other")()
    reset()
    assert _levels(ask) == [2.0]
    other = rate_limited(rpm=5, clock=clock, model=MODEL)(lambda: "other")
    assert other() == "other"


def test_stores_of_the_default_registry_are_closed() -> None:
    """A store the default registry held is closed, and a fresh one serves the next use."""

    class Recording(MemoryStore):
        closed = False

        def close(self) -> None:
            self.closed = True
            super().close()

    store = Recording()
    default_registry.install("memory", store)
    reset()
    assert store.closed
    assert default_registry.store() is not store


def test_logging_to_a_file_is_undone(tmp_path: Path) -> None:
    """configure_logging's file is closed and structlog unconfigured: nothing more is written."""
    log = tmp_path / "events.jsonl"
    ask = _ask_through_the_client()
    configure_logging(file=log)
    ask()
    written = log.read_text(encoding="utf-8")
    assert json.loads(written.splitlines()[-1])["event"] == "llm.call"
    reset()
    assert not structlog.is_configured()
    ask()
    assert log.read_text(encoding="utf-8") == written


def test_logging_to_stderr_is_undone() -> None:
    """configure_logging without a file is undone as well."""
    configure_logging()
    assert structlog.is_configured()
    reset()
    assert not structlog.is_configured()


def test_the_client_instrumentation_is_removed_and_installed_again() -> None:
    """Reset removes the openai instrumentation; the next decorated call installs it again."""
    from openai._base_client import SyncAPIClient

    ask = _ask_through_the_client()
    ask()
    assert boundary.is_instrumented()
    reset()
    assert not boundary.is_instrumented()
    assert not hasattr(SyncAPIClient.__dict__["request"], "__wrapped__")
    boundary.uninstrument()  # switched off by hand: a reset switches it on again
    reset()
    ask()
    assert boundary.is_instrumented()
    assert usage_totals().total().input_tokens == 5  # observed through the boundary


def test_token_memo_is_new_and_loaded_vocabularies_are_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The token counter (and its memo) is new; the vocabulary loader stays while the
    environment configures it alike, and is replaced once it does not."""
    text = "a text long enough to be remembered by the memo of token counts " * 2
    count_text(text, model=MODEL)
    counter, loader = default_counter(), vocab.default_loader()
    assert counter.memo_stats().entries > 0
    reset()
    assert default_counter() is not counter
    assert default_counter().memo_stats().entries == 0
    assert vocab.default_loader() is loader
    assert loader.source_of("o200k_base") is not None
    monkeypatch.setenv(vocab.OFFLINE_ENV, "1")
    reset()
    assert vocab._loader.peek() is None


def test_memos_are_cleared() -> None:
    """The memos of event seconds, volatile types and resolved prices are emptied."""
    second_of("2026-01-02T03:04:05")
    normalise(FakeClock())  # not an atom: its type is looked up once
    _ask_through_the_client()()
    assert eventtime._seconds
    assert key._volatile_types
    assert pricing._resolved
    reset()
    assert not eventtime._seconds
    assert not pricing._resolved
    assert not key._volatile_types


def test_call_ids_start_again_from_a_new_prefix() -> None:
    """After a reset call ids count from 1 again, under a new random prefix: still unique."""
    before = _state.new_call_id()
    reset()
    after = _state.new_call_id()
    assert after.endswith("00000001")
    assert after[:8] != before[:8]


def test_ticket_ids_are_unique_across_a_reset_and_a_fork() -> None:
    """Ticket ids never repeat: not after a reset, nor between a forked child and its parent."""
    before = {_state.new_ticket_id() for _ in range(3)}
    reset()
    after = {_state.new_ticket_id() for _ in range(3)}
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child process)
        os.write(write, _state.new_ticket_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    forked = os.read(read, 100).decode()
    os.close(read)
    parent = _state.new_ticket_id()
    assert len(before | after | {forked, parent}) == 8


def test_reset_makes_nothing_and_imports_nothing_heavy() -> None:
    """Importing the package and resetting it load no openai, tiktoken or price data."""
    code = (
        "import sys\n"
        "import prismq_llmtools\n"
        "from prismq_llmtools.testing import reset\n"
        "reset()\n"
        "heavy = ('openai', 'tiktoken', 'genai_prices')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_state_module_imports_no_other_module_of_the_package() -> None:
    """_state sits at the bottom of the layers: loaded alone, it imports nothing of ours."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('state', {str(PACKAGE / '_state.py')!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "ours = [m for m in sys.modules if m.startswith('prismq_llmtools')]\n"
        "assert not ours, ours\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_process_global_is_held_by_the_state_module() -> None:
    """Once the whole package is imported, the state module holds each process-global object
    its docstring lists, and no other."""
    for module in PACKAGE.rglob("*.py"):
        name = ".".join(module.relative_to(PACKAGE.parent).with_suffix("").parts)
        if "testing" not in name and not name.endswith("__main__"):
            importlib.import_module(name.removesuffix(".__init__"))
    assert sorted(_state.registered()) == [
        "event seconds",
        "known prices",
        "observers",
        "otel instrumentation",
        "price table",
        "prometheus exporters",
        "settings",
        "site names",
        "state registry",
        "token counter",
        "tokenizers",
        "unknown prices warned",
        "usage totals",
        "vocabulary loader",
        "volatile types",
    ]


def test_no_module_but_state_rebinds_a_global() -> None:
    """Process-global state lives in _state: no other module has a ``global`` statement."""
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "_state.py"
        and any(isinstance(node, ast.Global) for node in ast.walk(ast.parse(path.read_text())))
    ]
    assert offenders == []
