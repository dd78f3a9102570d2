"""The test helper that writes a test once for both drivers (tests/drivers.py)."""

from __future__ import annotations

import inspect

import pytest

from prismq_llmtools import retried
from prismq_llmtools.cache.key import function_fingerprint
from prismq_llmtools.site.wrapper import core_of
from tests.drivers import Mode, Steps


def test_a_twin_keeps_the_bodys_name_signature_and_source(mode: Mode) -> None:
    """The site of a made function has the body's name, signature and code fingerprint, so
    its settings and cache keys are the same in both modes."""

    def title(article: str, *, model: str = "gpt-4o-mini") -> str:
        return article

    site = retried()(mode.make(title))
    assert inspect.iscoroutinefunction(site) is mode.is_async
    assert site.llm.name.endswith(
        "test_a_twin_keeps_the_bodys_name_signature_and_source.<locals>.title"
    )
    assert inspect.signature(site) == inspect.signature(title)
    assert function_fingerprint(core_of(site).func) == function_fingerprint(title)


def test_a_yield_is_an_await_point_where_errors_arrive(mode: Mode) -> None:
    """A yielded call's result is sent back, and its exception raised at the yield."""

    @retried(attempts=1)
    @mode.make
    def inner(x: int) -> int:
        if x < 0:
            raise ValueError("negative")
        return x * 2

    @retried(attempts=1)
    @mode.make
    def outer() -> Steps[str]:
        doubled = yield inner(21)
        try:
            yield inner(-1)
        except ValueError as exc:
            return f"{doubled} {exc}"
        return "not reached"

    assert mode.invoke(outer) == "42 negative"


def test_invoke_refuses_a_function_of_the_other_kind(mode: Mode) -> None:
    """A test that forgot ``mode.make`` fails instead of testing one driver twice."""

    @retried()
    def plain() -> int:
        return 1

    @retried()
    async def coroutine() -> int:
        return 1

    with pytest.raises(TypeError, match=r"mode\.make"):
        mode.invoke(coroutine if not mode.is_async else plain)
