"""The documentation's Python examples run, against the simulator.

Every fenced ``python`` block of README.md and docs/*.md runs, in order, one namespace per
page (as a reader would type them one after the other), with the OpenAI client's
environment pointing at the simulator. The examples may use these names without defining
them: ``client`` (an ``openai.OpenAI`` on the simulator), ``article``, ``articles``,
``texts``, ``messages`` and ``items``; and these files: ``app.log`` (an event log) and
``rules.toml`` (an alert rule). A block that cannot run here says why on the line before its
fence: ``<!-- not run: REASON -->``.
"""

from __future__ import annotations

import ast
import asyncio
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog

from prismq_llmtools.events import close_log_file
from prismq_llmtools.testing import reset
from prismq_llmtools.testing.simulator import BatchTiming, Simulator, SimulatorConfig

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^\s*```python[ \t]*$")
_NOT_RUN = re.compile(r"^\s*<!-- not run: (.+) -->$")

APP_LOG = "".join(
    line + "\n"
    for line in (
        '{"timestamp": "2026-11-24T10:00:00Z", "event": "llm.call", "site": "app.titles", '
        '"operation": "titles", "gen_ai.request.model": "gpt-4o-mini", "cost_usd": 0.0003, '
        '"gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 40, "cache": "miss", '
        '"outcome": "ok", "duration_s": 0.8}',
        '{"timestamp": "2026-11-24T10:00:05Z", "event": "llm.call", "site": "app.titles", '
        '"operation": "titles", "gen_ai.request.model": "gpt-4o-mini", "cost_usd": 0.0, '
        '"cache": "hit", "outcome": "ok", "duration_s": 0.001}',
    )
)
RULES_TOML = """
[[rule]]
name = "error-ratio"
event = "llm.call"
aggregate = "ratio"
numerator = { where = { outcome = "error" } }
denominator = {}
group_by = "site"
window = "5m"
condition = "> 0.05"
"""


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the first line of code
    code: str
    not_run: str | None


def blocks(page: Path) -> list[Block]:
    """The page's ``python`` blocks, with the reason given for not running one."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found = []
    index = 0
    while index < len(lines):
        if _FENCE.match(lines[index]):
            start = index + 1
            end = start
            while not lines[end].lstrip().startswith("```"):
                end += 1
            reason = _NOT_RUN.match(lines[index - 1]) if index else None
            code = textwrap.dedent("\n".join(lines[start:end])) + "\n"  # blocks in list items
            found.append(Block(page, start + 1, code, reason and reason[1]))
            index = end
        index += 1
    return found


@pytest.fixture(scope="module")
def docs_simulator() -> Iterator[Simulator]:
    """A simulator whose Batch API runs a thousand times faster than real time: a batch that
    the API would finish in four seconds is done within one of the example's polls."""
    with Simulator(SimulatorConfig(seed=7, batch=BatchTiming(time_scale=1000))) as simulator:
        yield simulator


@pytest.fixture
def reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, docs_simulator: Simulator
) -> Iterator[dict[str, Any]]:
    """The namespace a page's examples run in, in a fresh directory, on the simulator."""
    sim = docs_simulator
    sim.reset(buckets=True, prompt_cache=True, faults=True)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "app.log").write_text(APP_LOG)
    (tmp_path / "rules.toml").write_text(RULES_TOML)
    monkeypatch.setenv("OPENAI_BASE_URL", sim.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-docs-example-key-0000")
    article = "The city council approved a network of protected bike lanes on Tuesday."
    namespace: dict[str, Any] = {
        "__name__": "docs_example",
        "client": sim.client(),
        "article": article,
        "articles": [article, "A new library opens downtown.", "Rain expected all week."],
        "texts": ["first text", "second text", "third text"],
        "messages": [{"role": "user", "content": f"Title for:\n{article}"}],
        "items": ["item one", "item two"],
    }
    try:
        yield namespace
    finally:
        close_log_file()
        reset()
        structlog.reset_defaults()  # an example may configure the application's logging


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_pages_examples_run(page: Path, reader: dict[str, Any]) -> None:
    """Each page's examples run in order without an error."""
    for block in blocks(page):
        if block.not_run is not None:
            continue
        where = f"{block.page.relative_to(ROOT)}:{block.line}"
        try:
            code = compile(
                block.code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
            )
            result = eval(code, reader)  # noqa: S307 - our own documentation's examples
            if asyncio.iscoroutine(result):
                asyncio.run(result)
        except Exception as exc:
            pytest.fail(f"the example at {where} fails: {type(exc).__name__}: {exc}")


def test_every_block_that_does_not_run_says_why() -> None:
    """A reason is required, and only on a block that exists."""
    for page in PAGES:
        for block in blocks(page):
            assert block.not_run is None or block.not_run.strip(), f"{page}:{block.line}"


_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    anchors: set[str] = set()
    fence = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            anchors.add(_slug(line.lstrip("#")))
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_between_pages_resolve(page: Path) -> None:
    """Every link to a file of the repository names one that exists, and its anchor a
    heading of that file."""
    broken = []
    text = re.sub(r"(?ms)^\s*```.*?^\s*```", "", page.read_text(encoding="utf-8"))
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"
