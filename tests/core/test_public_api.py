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


def test_all_is_exactly_the_documented_surface() -> None:
    """``from prismq_llmtools import *`` gives the documented names, no more and no fewer."""
    assert prismq_llmtools.__all__ == [
        "Args",
        "BatchError",
        "BatchItemError",
        "BudgetExceeded",
        "Call",
        "ConfigurationError",
        "IncompleteStreamError",
        "ItemNotRun",
        "LLMToolsError",
        "RateLimitTimeout",
        "Request",
        "RequestFormatError",
        "RequestTooLarge",
        "SettingsWarning",
        "StateStoreError",
        "TokenizerError",
        "UnknownModelError",
        "UnknownPriceError",
        "Usage",
        "VocabularyError",
        "batched",
        "bypass_cache",
        "cached",
        "configure_logging",
        "cost_tracked",
        "rate_limited",
        "refresh_cache",
        "retried",
        "token_budgeted",
        "usage_totals",
    ]


def test_the_documented_submodules_offer_their_names() -> None:
    """Names the README and docs import from submodules are where they say."""
    import importlib

    documented = {
        "prismq_llmtools.testing": ["reset", "FakeClock", "Simulator"],
        "prismq_llmtools.openai.tokens": ["count_request", "count_text", "TokenEstimate"],
        "prismq_llmtools.openai.prices": ["openai_prices", "load_openai_prices"],
        "prismq_llmtools.openai.boundary": ["instrument", "uninstrument"],
        "prismq_llmtools.pricing": ["price_table", "set_price_table"],
        "prismq_llmtools.cost": ["Price", "PriceTable", "cost_of"],
        "prismq_llmtools.cache": ["cache_of", "cached"],
        "prismq_llmtools.budget": ["budget_status", "TokenBudget"],
        "prismq_llmtools.ratelimit": ["RateLimit", "rate_limited"],
        "prismq_llmtools.alerts": ["AlertEngine", "builtin_rules"],
        "prismq_llmtools.report": ["Report"],
        "prismq_llmtools.usage": ["Usage"],
    }
    for module_name, names in documented.items():
        module = importlib.import_module(module_name)
        for name in names:
            assert hasattr(module, name), f"{module_name}.{name}"


def test_f_llm_is_a_narrow_handle() -> None:
    """``f.llm`` names the site, shows its settings and statistics, and configures it; the
    engine behind it is not part of the public surface."""
    f = prismq_llmtools.retried()(lambda: "ok")
    public = {name for name in dir(f.llm) if not name.startswith("_")}
    assert public == {"configure", "name", "operation", "override", "settings", "stats"}
    with f.llm.override(attempts=2) as handle:
        assert handle.settings()["retried"]["attempts"] == 2
    assert f.llm.stats() == {"calls": 0, "errors": 0}
