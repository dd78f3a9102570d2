"""The settings keys every decorator understands, and the one check every value passes.

Each decorator declares its keys here (:func:`register_keys`) with a :class:`Rule` per key:
what type the value must have and which range it must lie in. Every value, from every source
(a decorator argument, the settings file, an environment variable, ``f.llm.configure()``),
is checked by the same rule, and a bad one is a :class:`SettingError` naming the site, the
key and where the value came from.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from prismq_llmtools.errors import ConfigurationError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "DECORATOR_ARGUMENT",
    "Choice",
    "Flag",
    "Fractions",
    "Integer",
    "Key",
    "Money",
    "Number",
    "PathText",
    "Rule",
    "SettingError",
    "Text",
    "check_fields",
    "check_value",
    "closest",
    "key_named",
    "owners_of",
    "register_keys",
    "registered_keys",
]

DECORATOR_ARGUMENT = "decorator argument"


class SettingError(ConfigurationError):
    """A setting's value is invalid: names the site, the key, the value's source and why.

    Raised when the site is not known yet (a decorator's arguments are checked before the
    decorator meets its function), it is completed with the site by :meth:`for_site`.
    """

    def __init__(
        self, key: str, problem: str, *, source: str, site: str | None = None, shown: str = ""
    ) -> None:
        self.key = key
        self.problem = problem
        self.source = source
        self.site = site
        self.shown = shown
        where = f"site {site!r}: " if site is not None else ""
        value = f"={shown}" if shown else ""
        super().__init__(f"{where}{key}{value} ({source}): {problem}")

    def for_site(self, site: str) -> SettingError:
        """The same error, naming ``site`` (unchanged if it names one already)."""
        if self.site is not None:
            return self
        return SettingError(self.key, self.problem, source=self.source, site=site, shown=self.shown)


class _Invalid(Exception):
    """A rule's refusal: the message says what the value must be."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """What a key's value must be. ``optional``: ``None`` is allowed (and means "unset")."""

    optional: bool = False

    def check(self, value: object) -> object:
        """The value, normalised (e.g. a path made a string), or :class:`_Invalid`."""
        if value is None:
            if self.optional:
                return None
            raise _Invalid(f"must be {self.describe()}, not None")
        return self.convert(value)

    def convert(self, value: object) -> object:
        raise NotImplementedError

    def describe(self) -> str:
        """What the value must be, in words ("an int >= 1")."""
        raise NotImplementedError

    def show(self, value: object) -> str:
        """The value as an error message may show it."""
        return repr(value)

    def refuse(self, value: object) -> _Invalid:
        kind = type(value).__name__
        article = "an" if kind[:1] in "aeiou" else "a"
        return _Invalid(f"must be {self.describe()}, not {article} {kind}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Integer(Rule):
    """An ``int`` (never a ``bool``) of at least ``minimum``."""

    minimum: int = 0

    def convert(self, value: object) -> object:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.refuse(value)
        if value < self.minimum:
            raise _Invalid(f"must be {self.describe()}")
        return value

    def describe(self) -> str:
        return f"an int >= {self.minimum}" + (" or None" if self.optional else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Number(Rule):
    """A finite ``int`` or ``float`` (never a ``bool``) in a range; seconds, fractions."""

    minimum: float = 0.0
    exclusive: bool = False
    """The minimum itself is refused (``> 0`` rather than ``>= 0``)."""
    maximum: float | None = None

    def convert(self, value: object) -> object:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self.refuse(value)
        if not math.isfinite(value):
            raise _Invalid(f"must be {self.describe()}, not {value}")
        low_ok = value > self.minimum if self.exclusive else value >= self.minimum
        if not low_ok or (self.maximum is not None and value > self.maximum):
            raise _Invalid(f"must be {self.describe()}")
        return value

    def describe(self) -> str:
        low = f"{'>' if self.exclusive else '>='} {self.minimum:g}"
        if self.maximum is not None:
            opening = "(" if self.exclusive else "["
            low = f"in {opening}{self.minimum:g}, {self.maximum:g}]"
        return f"a finite number {low}" + (" or None" if self.optional else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Money(Rule):
    """An amount in USD >= 0: an int, a float, a Decimal or a numeric string, made a Decimal."""

    def convert(self, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
            raise self.refuse(value)
        try:
            amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
        except InvalidOperation:
            raise _Invalid(f"must be {self.describe()}") from None
        if not amount.is_finite() or amount < 0:
            raise _Invalid(f"must be {self.describe()}")
        return amount

    def describe(self) -> str:
        return "an amount in USD >= 0" + (" or None" if self.optional else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Flag(Rule):
    """``True`` or ``False`` (never 0 or 1)."""

    def convert(self, value: object) -> object:
        if not isinstance(value, bool):
            raise self.refuse(value)
        return value

    def describe(self) -> str:
        return "true or false" + (" or None" if self.optional else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice(Rule):
    """One of a few strings."""

    values: tuple[str, ...]

    def convert(self, value: object) -> object:
        if not isinstance(value, str) or value not in self.values:
            raise _Invalid(f"must be {self.describe()}")
        return value

    def describe(self) -> str:
        listed = ", ".join(repr(v) for v in self.values)
        return f"one of {listed}" + (" or None" if self.optional else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Text(Rule):
    """A non-empty string; ``numbers``: an int is accepted and made a string (a version).

    ``validate`` checks the string further (raising :class:`ConfigurationError`), and
    ``display`` shows it without secrets (a store URL's password).
    """

    numbers: bool = False
    validate: Callable[[str], None] | None = None
    display: Callable[[str], str] | None = None

    def convert(self, value: object) -> object:
        if self.numbers and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise self.refuse(value)
        if not value:
            raise _Invalid(f"must be {self.describe()}, not empty")
        if self.validate is not None:
            try:
                self.validate(value)
            except ValueError as exc:
                raise _Invalid(str(exc)) from None
        return value

    def describe(self) -> str:
        kind = "a non-empty string" + (" or an int" if self.numbers else "")
        return kind + (" or None" if self.optional else "")

    def show(self, value: object) -> str:
        if isinstance(value, str) and self.display is not None:
            return repr(self.display(value))
        return repr(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class PathText(Rule):
    """A filesystem path (a string or an ``os.PathLike``), made a string."""

    def convert(self, value: object) -> object:
        if not isinstance(value, str | os.PathLike):
            raise self.refuse(value)
        path = os.fspath(value)
        if not isinstance(path, str) or not path:
            raise _Invalid(f"must be {self.describe()}")
        return path

    def describe(self) -> str:
        return "a path" + (" or None" if self.optional else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Fractions(Rule):
    """A list (any iterable but a string or a mapping) of fractions in (0, 1], made a
    sorted tuple of floats without repeats."""

    def convert(self, value: object) -> object:
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
            raise self.refuse(value)
        each = Number(minimum=0.0, exclusive=True, maximum=1.0)
        try:
            checked = [float(each.convert(item)) for item in value]  # type: ignore[arg-type]
        except _Invalid:
            raise _Invalid(f"must be {self.describe()}, got {value!r}") from None
        return tuple(sorted(set(checked)))

    def describe(self) -> str:
        return "a list of fractions in (0, 1]"


@dataclass(frozen=True, slots=True)
class Key:
    """One settings key: its name, the decorator it belongs to ("site" for every site),
    its rule, and the decorator argument that sets it when that is named otherwise."""

    name: str
    owner: str
    rule: Rule
    argument: str | None = None


_keys: dict[str, dict[str, Key]] = {}
"""Every key: by name, then by owner (two decorators may share a key, e.g. ``store``)."""


def register_keys(
    owner: str, rules: Mapping[str, Rule], *, arguments: Mapping[str, str] = {}
) -> None:
    """Declare the settings keys ``owner`` (a decorator, or "site") understands.

    Args:
        owner: the decorator's name (``"retried"``), or ``"site"`` for keys of every site.
        rules: each key's :class:`Rule`.
        arguments: the decorator argument of a key named otherwise (``cache_dir``:
            ``location``), for error messages.
    """
    for name, rule in rules.items():
        _keys.setdefault(name, {})[owner] = Key(name, owner, rule, arguments.get(name))


def registered_keys() -> tuple[Key, ...]:
    """Every declared key, sorted by name and owner."""
    return tuple(key for name in sorted(_keys) for _, key in sorted(_keys[name].items()))


def key_named(name: str) -> dict[str, Key]:
    """The declarations of ``name``, by owner (empty: no decorator knows it)."""
    return dict(_keys.get(name, {}))


def owners_of(name: str) -> set[str]:
    """The decorators (or "site") that understand the key ``name``."""
    return set(_keys.get(name, {}))


def closest(name: str, candidates: Iterable[str]) -> list[str]:
    """Up to three of ``candidates`` most like ``name`` (difflib), best first."""
    return difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)


def unknown_key(name: str) -> str:
    """The message for a key no decorator understands, with the closest known keys."""
    near = closest(name, _keys)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    return f"unknown key {name!r}{hint}"


def check_value(
    name: str, value: object, *, source: str, site: str | None = None, owner: str | None = None
) -> Any:
    """The value of key ``name`` from ``source``, checked and normalised.

    Args:
        owner: check by this decorator's rule only; default every decorator's knowing it.

    Raises:
        SettingError: the key is unknown, or the value breaks a rule.
    """
    declared = _keys.get(name)
    if not declared:
        raise SettingError(name, unknown_key(name), source=source, site=site)
    for key in [declared[owner]] if owner is not None else list(declared.values()):
        try:
            value = key.rule.check(value)
        except _Invalid as exc:
            raise SettingError(
                name, str(exc), source=source, site=site, shown=key.rule.show(value)
            ) from None
    return value


def check_fields(policy: DataclassInstance, owner: str) -> None:
    """Check and normalise every field of ``policy``, the settings dataclass of ``owner``.

    The one validation of a decorator's settings: called from each settings class's
    ``__post_init__``. A field's value that breaks its rule can only come from a decorator
    argument: values from the other sources are checked where they are read.

    Raises:
        SettingError: the first field whose value breaks its rule.
    """
    for field in fields(policy):
        key = _keys[field.name][owner]
        source = DECORATOR_ARGUMENT
        if key.argument is not None:
            source = f"{DECORATOR_ARGUMENT} {key.argument}="
        value = check_value(field.name, getattr(policy, field.name), source=source, owner=owner)
        object.__setattr__(policy, field.name, value)
