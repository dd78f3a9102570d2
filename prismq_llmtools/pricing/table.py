"""Price tables: model name -> price, with the date checked (re-exported by ``cost``)."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from prismq_llmtools.errors import ConfigurationError, UnknownPriceError
from prismq_llmtools.pricing.money import (
    ESTIMATE_PRICE,
    UNKNOWN_PRICE_POLICIES,
    ZERO_PRICE,
    Price,
    UnknownPricePolicy,
)
from prismq_llmtools.pricing.overrides import parse_price_overrides

__all__ = [
    "MatchKind",
    "ModelPattern",
    "PatternKind",
    "PriceMatch",
    "PriceTable",
    "read_price_overrides",
]


PatternKind = Literal["prefix", "suffix", "contains", "regex"]
MatchKind = Literal["exact", "override", "alias", "pattern", "fine-tune", "base"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelPattern:
    """A rule that gives many model names one table entry (``regex`` is searched, not
    anchored, and every rule compares lowercase names)."""

    kind: PatternKind
    value: str
    model: str
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.kind not in ("prefix", "suffix", "contains", "regex"):
            raise ValueError(f"unknown ModelPattern kind {self.kind!r}")
        object.__setattr__(self, "model", self.model.lower())
        if self.kind == "regex":
            object.__setattr__(self, "_regex", re.compile(self.value))
        else:
            object.__setattr__(self, "value", self.value.lower())

    def matches(self, name: str) -> bool:
        """Whether ``name`` (already lowercase) is covered by this rule."""
        if self._regex is not None:
            return self._regex.search(name) is not None
        if self.kind == "prefix":
            return name.startswith(self.value)
        if self.kind == "suffix":
            return name.endswith(self.value)
        return self.value in name


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceMatch:
    """How a model name was resolved: the table entry whose price applies, and the rule."""

    model: str
    how: MatchKind


# LiteLLM and OpenRouter write dates compactly (gpt-5.2-20251211); the price source
# rewrites them to OpenAI's form (gpt-5.2-2025-12-11) before giving up, and so do we.
_COMPACT_DATE = re.compile(r"-(20\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?=-|:|$)")
# A snapshot suffix the table does not list: gpt-4o-2031-01-01 or gpt-4-0125.
_SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


def _expand_compact_date(name: str) -> str:
    def expand(match: re.Match[str]) -> str:
        year, month, day = (int(part) for part in match.groups())
        try:
            date(year, month, day)
        except ValueError:
            return match.group(0)
        return f"-{year:04d}-{month:02d}-{day:02d}"

    return _COMPACT_DATE.sub(expand, name)


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceTable(Mapping[str, Price]):
    """Prices per model, frozen, with the date they were checked.

    A model name is resolved, lowercase, in this order (the first four as the price source
    does it):

    1. an entry of ``prices`` (a canonical model id, or a user override);
    2. an exact alias, e.g. a dated snapshot ``gpt-4o-2024-08-06`` -> ``gpt-4o``;
    3. the first matching :class:`ModelPattern`, e.g. ``ft:gpt-4o-2024-08-06:org::id``;
    4. steps 1-3 again with a compact date expanded (``-20251211`` -> ``-2025-12-11``);
    5. a fine-tuned name ``ft:BASE:org:suffix:id``: the fine-tuning price of BASE when the
       table has one (``ft:gpt-4o-mini:org::id`` -> ``ft:gpt-4o-mini``), else BASE's price;
    6. a snapshot suffix the table does not know (``gpt-4.1-2031-01-01``): the base model.

    Steps 5 and 6 report ``how="base"`` (or ``"fine-tune"``) so callers can tell a
    fallback from an exact price. Iterating yields the canonical ids; ``table[model]``
    resolves a name and raises :class:`~prismq_llmtools.errors.UnknownPriceError` (a
    ``KeyError``, so ``table.get(model)`` returns ``None`` for an unknown model).

    Args:
        prices: canonical model id -> price.
        checked_on: the date the prices were checked against the provider.
        source: where the prices come from, e.g. ``"genai-prices 0.2.3"``.
        aliases: exact model name -> canonical id.
        patterns: rules tried in order after the exact names.
        estimate: the stand-in price for the ``estimate`` policy (marked ``known=False``).
        overrides: the names whose price came from user overrides.
    """

    prices: Mapping[str, Price]
    checked_on: date
    source: str = "user"
    aliases: Mapping[str, str] = field(default_factory=dict)
    patterns: tuple[ModelPattern, ...] = ()
    estimate: Price = ESTIMATE_PRICE
    overrides: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        prices = {name.lower(): price for name, price in self.prices.items()}
        aliases = {name.lower(): target.lower() for name, target in self.aliases.items()}
        if not all(isinstance(price, Price) for price in prices.values()):
            raise TypeError("PriceTable.prices must map model names to Price")
        if missing := sorted(
            {*aliases.values(), *(p.model for p in self.patterns)} - prices.keys()
        ):
            raise ValueError(f"aliases or patterns point to models with no price: {missing}")
        object.__setattr__(self, "prices", MappingProxyType(prices))
        object.__setattr__(self, "aliases", MappingProxyType(aliases))
        object.__setattr__(self, "patterns", tuple(self.patterns))
        object.__setattr__(self, "overrides", frozenset(n.lower() for n in self.overrides))
        if self.estimate.known:
            object.__setattr__(self, "estimate", replace(self.estimate, known=False))

    def __getitem__(self, model: str) -> Price:
        return self.price_for(model)

    def __iter__(self) -> Iterator[str]:
        return iter(self.prices)

    def __len__(self) -> int:
        return len(self.prices)

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.resolve(model) is not None

    def resolve(self, model: str) -> PriceMatch | None:
        """Return the table entry whose price applies to ``model``, or ``None``."""
        name = model.strip().lower()
        if found := self._direct(name):
            return found
        expanded = _expand_compact_date(name)
        if expanded != name and (found := self._direct(expanded)):
            return found
        if name.startswith("ft:"):
            return self._fine_tuned(name)
        base = _SNAPSHOT_SUFFIX.sub("", expanded)
        if base != expanded and (found := self._direct(base)):
            return PriceMatch(model=found.model, how="base")
        return None

    def price_for(self, model: str, *, unknown: UnknownPricePolicy = "raise") -> Price:
        """Return the price of ``model``, applying the unknown-model policy when it has none.

        Raises:
            UnknownPriceError: the model has no price and ``unknown="raise"``.
            ValueError: ``unknown`` is not one of ``raise``, ``zero``, ``estimate``.
        """
        if unknown not in UNKNOWN_PRICE_POLICIES:
            raise ValueError(f"unknown must be one of {UNKNOWN_PRICE_POLICIES}, got {unknown!r}")
        match = self.resolve(model)
        if match is not None:
            return self.prices[match.model]
        if unknown == "zero":
            return ZERO_PRICE
        if unknown == "estimate":
            return self.estimate
        raise UnknownPriceError(model, source=self.source)

    def with_overrides(self, overrides: Mapping[str, Any]) -> PriceTable:
        """Return a table with user prices merged on top.

        ``overrides`` is the ``[prices]`` table of a settings file: model name -> a table
        with ``input``, ``output`` and optionally ``cached_input`` (USD per 1M tokens),
        ``batch_discount`` (fraction taken off, e.g. 0.5) or a ``batch`` rates table, and
        ``service_tiers`` (tier name -> rates table). An override replaces the model's whole
        price; an override of a canonical id also applies to its aliases and patterns.

        Raises:
            ConfigurationError: a bad key or value; the message names the model and the key.
        """
        parsed = parse_price_overrides(overrides)
        if not parsed:
            return self
        return replace(
            self,
            prices={**self.prices, **parsed},
            aliases={k: v for k, v in self.aliases.items() if k not in parsed},
            overrides=self.overrides | parsed.keys(),
        )

    def _direct(self, name: str) -> PriceMatch | None:
        if name in self.prices:
            return PriceMatch(model=name, how="override" if name in self.overrides else "exact")
        if (target := self.aliases.get(name)) is not None:
            return PriceMatch(model=target, how="alias")
        for pattern in self.patterns:
            if pattern.matches(name):
                return PriceMatch(model=pattern.model, how="pattern")
        return None

    def _fine_tuned(self, name: str) -> PriceMatch | None:
        base = name.split(":")[1]
        base_match = self.resolve(base) if base else None
        if base_match is None:
            return None
        # Fine-tuned inference has its own (higher) price where the table lists one, keyed by
        # the dated base name, e.g. ft:gpt-4o-mini-2024-07-18:...; try the base's names.
        names = {base, base_match.model}
        names.update(alias for alias, target in self.aliases.items() if target == base_match.model)
        for candidate in sorted(names):
            for pattern in self.patterns:
                if pattern.matches(f"ft:{candidate}:"):
                    return PriceMatch(model=pattern.model, how="fine-tune")
        return PriceMatch(model=base_match.model, how="base")


def read_price_overrides(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """Read the ``[prices]`` table of a TOML settings file (in ``pyproject.toml``:
    ``[tool.prismq_llmtools.prices]``) for :meth:`PriceTable.with_overrides`.

    Raises:
        ConfigurationError: the file cannot be read or parsed, or ``prices`` is not a table.
    """
    file = Path(path)
    try:
        with file.open("rb") as stream:
            document = tomllib.load(stream)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigurationError(f"cannot read price overrides from {file}: {error}") from None
    section: Any = document
    if file.name == "pyproject.toml":
        tool = document.get("tool", {})
        section = tool.get("prismq_llmtools", {}) if isinstance(tool, Mapping) else {}
    prices = section.get("prices", {}) if isinstance(section, Mapping) else None
    if not isinstance(prices, Mapping):
        raise ConfigurationError(f"{file}: 'prices' must be a table of model names")
    return prices
