"""Dependencies point down: records and storage know no feature (checked on the source, so
imports made for type checking alone count too)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import prismq_llmtools

PACKAGE = Path(prismq_llmtools.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at run time or for type checking alone."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            if node.module == "prismq_llmtools":  # from prismq_llmtools import _state
                found.update(f"prismq_llmtools.{alias.name}" for alias in node.names)
            else:
                found.add(node.module or "")
    return found


def _is_stdlib(module: str) -> bool:
    top = module.split(".")[0]
    return top in sys.stdlib_module_names or top == "__future__"


def test_call_is_a_leaf_module() -> None:
    """call.py imports the standard library, prismq_llmtools.usage and the process state
    (for call ids) only, even for typing: no feature can pull the record into an import
    cycle."""
    leaves = ("prismq_llmtools.usage", "prismq_llmtools._state")
    for module in _imported_modules(PACKAGE / "call.py"):
        assert module in leaves or _is_stdlib(module), module
    for module in _imported_modules(PACKAGE / "usage.py"):
        assert _is_stdlib(module), module


def test_storage_sits_below_the_features() -> None:
    """No store imports a feature (rate limiter, budget, cache...) or the site core."""
    allowed = (
        "prismq_llmtools.stores",
        "prismq_llmtools.clock",
        "prismq_llmtools.errors",
        "prismq_llmtools._state",
        "prismq_llmtools.files",  # a leaf: the user-only modes of state files
    )
    for path in sorted((PACKAGE / "stores").glob("*.py")):
        for module in _imported_modules(path):
            if module.startswith("prismq_llmtools"):
                assert module.startswith(allowed), f"{path.name} imports {module}"
