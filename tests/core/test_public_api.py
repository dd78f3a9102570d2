"""The public surface: what ``import prismq_llmtools`` offers, and that it stays tidy."""

from __future__ import annotations

import inspect

import prismq_llmtools
from prismq_llmtools import errors


def test_all_is_sorted_and_importable() -> None:
    """__all__ is sorted and every name in it exists."""
    assert prismq_llmtools.__all__ == sorted(prismq_llmtools.__all__)
    for name in prismq_llmtools.__all__:
        assert hasattr(prismq_llmtools, name), name


def test_the_six_decorators_are_exported() -> None:
    """The design card's six decorators are top-level names."""
    for name in ("batched", "cached", "cost_tracked", "rate_limited", "retried", "token_budgeted"):
        assert name in prismq_llmtools.__all__


def test_every_error_is_exported_and_rooted() -> None:
    """Every exception class of errors.py is exported and derives from LLMToolsError."""
    classes = [
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, Exception) and obj.__module__ == errors.__name__
    ]
    assert len(classes) > 5
    for cls in classes:
        assert issubclass(cls, prismq_llmtools.LLMToolsError), cls
        if cls.__name__ != "AlertRuleError":  # lives with the alert rules API
            assert cls.__name__ in prismq_llmtools.__all__, cls


def test_every_error_appears_in_the_documented_tree() -> None:
    """The tree drawn in errors.py's docstring names every exception class."""
    doc = errors.__doc__ or ""
    for name, obj in inspect.getmembers(errors, inspect.isclass):
        if issubclass(obj, Exception) and obj.__module__ == errors.__name__:
            assert name in doc, name


def test_version_is_available() -> None:
    """__version__ comes from the installed metadata."""
    assert prismq_llmtools.__version__
