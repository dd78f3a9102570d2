"""One validation path: every settings key, from every source (decorator argument, settings
file, environment variable, f.llm.configure/override), is checked by the same rule, and a bad
value is a ConfigurationError naming the site, the key and the source."""

from __future__ import annotations

import math
import os
import re
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from prismq_llmtools import (
    ConfigurationError,
    batched,
    cached,
    cost_tracked,
    rate_limited,
    retried,
    token_budgeted,
)
from prismq_llmtools.batch.aspect import BatchPolicy
from prismq_llmtools.budget.policy import TokenBudget
from prismq_llmtools.cache.policy import CachePolicy
from prismq_llmtools.cost.tracking import CostPolicy
from prismq_llmtools.ratelimit.policy import RateLimit
from prismq_llmtools.retry import RetryPolicy
from prismq_llmtools.settings import ENV_PREFIX, Settings, env_key, reset_settings
from prismq_llmtools.settings.rules import (
    Choice,
    Flag,
    Fractions,
    Integer,
    Key,
    Money,
    Number,
    PathText,
    Text,
    registered_keys,
)
from prismq_llmtools.site.wrapper import core_of
from prismq_llmtools.testing import reset

SITE = "app.every"
NAN = float("nan")
INF = float("inf")

DECORATORS: dict[str, Callable[..., Any]] = {
    "batched": batched,
    "cost_tracked": cost_tracked,
    "cached": cached,
    "rate_limited": rate_limited,
    "retried": retried,
    "token_budgeted": token_budgeted,
}
POLICIES: dict[str, type] = {
    "batched": BatchPolicy,
    "cost_tracked": CostPolicy,
    "cached": CachePolicy,
    "rate_limited": RateLimit,
    "retried": RetryPolicy,
    "token_budgeted": TokenBudget,
}
REQUIRED: dict[str, dict[str, Any]] = {"rate_limited": {"rpm": 100}}
"""Arguments a decorator cannot go without."""


def every_aspect(**arguments: dict[str, Any]) -> Any:
    """A site with all six decorators; ``arguments`` by decorator name."""

    def f(text: str) -> str:
        return text

    site: Any = f
    for owner, decorator in DECORATORS.items():
        given_ = {**REQUIRED.get(owner, {}), **arguments.get(owner, {})}
        site = decorator(**given_, name=SITE)(site)
    return site


def test_the_registry_covers_every_settings_field() -> None:
    """Each field of each decorator's settings class is a registered key with a rule."""
    declared = {(k.owner, k.name) for k in registered_keys()}
    for owner, policy in POLICIES.items():
        for field in fields(policy):
            assert (owner, field.name) in declared


# -- the reported cases ------------------------------------------------------------------

REPORTED = [
    ("retried", {"deadline_s": "10"}, "deadline_s"),
    ("retried", {"attempts": True}, "attempts"),
    ("retried", {"initial_wait_s": NAN}, "initial_wait_s"),
    ("retried", {"max_wait_s": INF}, "max_wait_s"),
    ("token_budgeted", {"window_s": "60", "window_tokens": 10}, "window_s"),
    ("token_budgeted", {"thresholds": 0.8}, "thresholds"),
    ("token_budgeted", {"daily_tokens": True}, "daily_tokens"),
    ("token_budgeted", {"daily_usd": NAN}, "daily_usd"),
    ("cached", {"location": 12}, "cache_dir"),
    ("cached", {"version": True}, "cache_version"),
    ("rate_limited", {"rpm": 1, "timeout_s": NAN}, "timeout_s"),
    ("rate_limited", {"rpm": True}, "rpm"),
    ("rate_limited", {"rpm": 1, "burst": "0.5"}, "burst"),
    ("batched", {"max_concurrency": 2.5}, "batch_max_concurrency"),
    ("cost_tracked", {"unknown_price": 0}, "unknown_price"),
]


@pytest.mark.parametrize(("owner", "arguments", "key"), REPORTED)
def test_bad_decorator_arguments_name_site_key_and_source(
    owner: str, arguments: dict[str, Any], key: str
) -> None:
    """Wrong types, booleans for numbers and non-finite numbers are ConfigurationErrors (not
    bare TypeErrors, not silently taken) naming the site, the key and "decorator argument"."""
    with pytest.raises(ConfigurationError, match=rf"site 'app\.x': {key}=.*\(decorator argument"):
        DECORATORS[owner](**{**REQUIRED.get(owner, {}), **arguments}, name="app.x")(len)


def test_a_store_url_is_shown_without_its_password() -> None:
    """The value shown by an error about a store URL has its password redacted."""
    with pytest.raises(ConfigurationError) as raised:
        rate_limited(rpm=1, store="mongodb://user:hunter2@db/0", name="app.x")(len)
    assert "hunter2" not in str(raised.value)
    assert "store=" in str(raised.value)


# -- every key, every kind of bad value, every source ------------------------------------


def bad_values(key: Key) -> list[object]:
    """Values of each kind the key's rule must refuse."""
    rule = key.rule
    common: list[object] = [object(), {"a": 1}]
    if isinstance(rule, Integer):
        return [*common, True, False, "10", 1.5, NAN, INF, rule.minimum - 1, [1]]
    if isinstance(rule, Number):
        below = rule.minimum if rule.exclusive else rule.minimum - 1
        above = [rule.maximum + 1] if rule.maximum is not None else []
        return [*common, True, "10", NAN, INF, -INF, below, *above, [1.0]]
    if isinstance(rule, Money):
        return [*common, True, "lots", NAN, INF, Decimal("NaN"), -1, [1]]
    if isinstance(rule, Flag):
        return [*common, 1, 0, "true", NAN]
    if isinstance(rule, Choice):
        return [*common, True, 1, NAN, "not-a-choice", [rule.values[0]]]
    if isinstance(rule, Text):
        return [*common, True, NAN, "", [], *([] if rule.numbers else [12])]
    if isinstance(rule, PathText):
        return [*common, 12, True, NAN, ""]
    if isinstance(rule, Fractions):
        return [*common, 0.8, "0.8", [NAN], [True], [0.0], [1.5], True]
    raise AssertionError(f"no bad values for {type(rule).__name__}: add them here")


def _decorator_source(key: Key, value: object) -> None:
    argument = key.argument or key.name
    if key.owner == "site":
        every_aspect(cost_tracked={argument: value})
    else:
        every_aspect(**{key.owner: {argument: value}})


def _file_source(key: Key, value: object) -> None:
    reset_settings(Settings(source="llmtools.toml", sites={SITE: {key.name: value}}))


def _configure_source(key: Key, value: object) -> None:
    every_aspect().llm.configure(**{key.name: value})


@contextmanager
def _variable(name: str, raw: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = raw
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def _toml(value: object) -> str | None:
    """The TOML form of ``value`` for a variable, None when TOML cannot write it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return {math.inf: "inf", -math.inf: "-inf"}.get(
            value, "nan" if value != value else repr(value)
        )
    if isinstance(value, Decimal):
        return str(value).lower() if value.is_nan() else str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        parts = [_toml(v) for v in value]
        return None if None in parts else "[" + ", ".join(p for p in parts if p) + "]"
    if isinstance(value, dict):
        parts = [f"{k} = {_toml(v)}" for k, v in value.items()]
        return "{" + ", ".join(parts) + "}"
    return None


def _environment_source(key: Key, value: object) -> None:
    raw = _toml(value)
    if raw is None:
        raw = "{bad = [}"  # not TOML: read as the text itself
    name = f"{ENV_PREFIX}{env_key(SITE)}__{key.name.upper()}"
    with _variable(name, raw):
        every_aspect()


SOURCES: dict[str, Callable[[Key, object], None]] = {
    "decorator": _decorator_source,
    "file": _file_source,
    "environment": _environment_source,
    "configure": _configure_source,
}


def _named_source(source: str, key: Key) -> str:
    """How an error names each source (a regular expression)."""
    return {
        "decorator": r"\(decorator argument",
        "file": r"\(llmtools\.toml\)",
        "environment": rf"\(environment variable {ENV_PREFIX}{env_key(SITE)}__{key.name.upper()}\)",
        "configure": r"\(f\.llm\.configure\(\)\)",
    }[source]


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("key", registered_keys(), ids=lambda k: f"{k.owner}.{k.name}")
def test_every_bad_value_of_every_key_is_refused_from_every_source(key: Key, source: str) -> None:
    """Each kind of bad value for each registered key is a ConfigurationError naming the
    site, the key and the source, whatever the source."""
    for value in bad_values(key):
        if source == "environment" and _toml(value) is None:
            continue  # a variable cannot hold it
        if source == "decorator" and key.name == "log_content":
            continue  # a setting, not a decorator argument
        reset()
        reset_settings(Settings())
        with pytest.raises(ConfigurationError) as raised:
            SOURCES[source](key, value)
        message = str(raised.value)
        assert f"site {SITE!r}: {key.name}" in message, message
        assert re.search(_named_source(source, key), message), message


# -- the property: nothing slips through ------------------------------------------------

ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=10**7),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.one_of(st.floats(allow_nan=True), st.booleans(), st.text(max_size=2)), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


def _conforms(value: object, hint: object) -> bool:
    """Whether ``value`` is of the annotated type (bools are not numbers, numbers finite)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin is tuple:
        (item, _) = typing.get_args(hint)
        return isinstance(value, tuple) and all(_conforms(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    if hint is Decimal:
        return isinstance(value, Decimal) and value.is_finite()
    if hint is str:
        return isinstance(value, str)
    raise AssertionError(f"unexpected annotation {hint!r}")


def _effective(site: Any, key: Key) -> object:
    if key.owner == "site":
        core = core_of(site)
        return {
            "model": core.default_model,
            "operation": core.operation,
            "tokenizer": core.tokenizer,
            "endpoint": core.endpoint,
        }.get(key.name, core.log_content)
    return site.llm.settings()[key.owner][key.name]


_HINTS = {owner: typing.get_type_hints(policy) for owner, policy in POLICIES.items()}
_SITE_HINTS: dict[str, object] = {
    "model": str | None,
    "operation": str,
    "log_content": bool,
    "tokenizer": str | None,
    "endpoint": str | None,
}


def _take(key: Key, value: object, source: str) -> object:
    """Set ``value`` for ``key`` from ``source`` on a fresh site; its effective value."""
    if source == "environment":
        raw = _toml(value) or "{bad = [}"
        assume("\x00" not in raw)  # no variable can hold it
        with _variable(f"{ENV_PREFIX}{env_key(SITE)}__{key.name.upper()}", raw):
            return _effective(every_aspect(), key)
    if source == "decorator":
        assume(key.name != "log_content")  # a setting, not a decorator argument
        owner = "cost_tracked" if key.owner == "site" else key.owner
        return _effective(every_aspect(**{owner: {key.argument or key.name: value}}), key)
    if source == "file":
        reset_settings(Settings(sites={SITE: {key.name: value}}))
        return _effective(every_aspect(), key)
    site = every_aspect()
    with site.llm.override(**{key.name: value}):
        return _effective(site, key)


@settings(max_examples=400)
@given(
    key=st.sampled_from(registered_keys()),
    value=ANY_VALUE,
    source=st.sampled_from(sorted(SOURCES)),
)
def test_any_value_is_taken_well_typed_or_refused_naming_site_and_key(
    key: Key, value: object, source: str
) -> None:
    """Whatever the value and its source, either the site's effective setting has the
    declared type (no bool for a number, no nan or inf) or a ConfigurationError names the
    site and the key: never a bare TypeError, never a silently wrong value."""
    reset()
    reset_settings(Settings())
    refused: str | None = None
    try:
        effective = _take(key, value, source)
    except ConfigurationError as exc:
        refused = str(exc)
    if refused is not None:
        assert f"site {SITE!r}" in refused
        assert key.name in refused
    else:
        hint = _SITE_HINTS[key.name] if key.owner == "site" else _HINTS[key.owner][key.name]
        assert _conforms(effective, hint), (key, value, source)
