"""The event schema is data: docs/events.md shows it, and the code writes no other event."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import prismq_llmtools
from prismq_llmtools.schema import COMMON_FIELDS, EVENTS, fields_of, markdown

PACKAGE = Path(prismq_llmtools.__file__).parent
DOCS = PACKAGE.parent / "docs" / "events.md"
_EVENT_NAME = re.compile(r"(?:llm|alert)\.[a-z_]+(?:\.[a-z_]+)*")


def _event_names_in_code() -> dict[str, list[str]]:
    """Every string constant of the package that reads as an event name, with where it is."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "schema.py":  # the schema itself, which names every event
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if is_text and _EVENT_NAME.fullmatch(node.value):
                where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
                found.setdefault(node.value, []).append(where)
    return found


def test_docs_events_md_shows_the_schema() -> None:
    """The tables of docs/events.md are the schema's data, written out."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("-->\n", text.index("<!-- schema: generated")) + len("-->\n")
    end = text.index("<!-- schema: end -->")
    assert text[start:end] == markdown(), (
        "docs/events.md differs from prismq_llmtools/schema.py; write the tables with "
        "python -c 'from prismq_llmtools.schema import markdown; print(markdown(), end=\"\")'"
    )


def test_every_event_name_in_the_code_is_in_the_schema() -> None:
    """An event the code writes (or a rule watches) is documented, and none is documented
    that the code never writes."""
    in_code = _event_names_in_code()
    unknown = {name: where for name, where in in_code.items() if name not in EVENTS}
    assert unknown == {}
    assert set(EVENTS) - set(in_code) == set()


def test_fields_of_adds_the_common_fields() -> None:
    """An event's fields are its own plus the ones every event carries."""
    assert {f.name for f in COMMON_FIELDS} <= fields_of("llm.retry")
    assert "wait_s" in fields_of("llm.retry")
    assert "gen_ai.usage.input_tokens" not in fields_of("llm.retry")
