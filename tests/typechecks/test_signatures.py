"""Type checkers see the decorated function's original signature (ParamSpec), plus ``.llm``."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from mypy import api

# `make lint` runs mypy --strict on the package first, with the same configuration: starting
# from a copy of its cache, mypy checks the package's modules and openai's types only where
# they changed since (about 0.7 s instead of 3 s from nothing). Without one, it starts empty.
LINT_CACHE = Path(__file__).parents[2] / ".mypy_cache"

SNIPPET = textwrap.dedent(
    """
    from prismq_llmtools import cost_tracked, retried

    @cost_tracked(operation="titles")
    @retried(attempts=3)
    def write_title(article: str, *, model: str = "gpt-4o-mini") -> str:
        return article

    @retried()
    async def awrite(article: str) -> str:
        return article

    reveal_type(write_title("x"))
    reveal_type(write_title.llm.name)
    coro = awrite("x")
    _ = reveal_type(coro)
    coro.close()
    write_title(3)
    write_title("x", modle="gpt-4o")
    """
)


@pytest.mark.slow
def test_decorated_functions_keep_their_types(tmp_path: Path) -> None:
    """mypy --strict: return types survive, wrong arguments are reported, .llm is typed."""
    source = tmp_path / "usage.py"
    source.write_text(SNIPPET)
    cache = tmp_path / "cache"
    if LINT_CACHE.is_dir():
        shutil.copytree(LINT_CACHE, cache)  # a copy: the test never writes to the lint's cache
    out, _err, status = api.run(["--strict", "--cache-dir", str(cache), str(source)])
    assert status == 1
    assert out.count('Revealed type is "str"') == 2
    assert 'Revealed type is "typing.Coroutine[Any, Any, str]"' in out
    assert 'Argument 1 to "__call__" of "LLMFunction" has incompatible type "int"' in out
    assert 'Unexpected keyword argument "modle"' in out
    assert out.count("error:") == 2
