"""Policy as data: per-site overrides from a TOML file and the environment.

Decorator arguments are defaults. They are overridden, in increasing precedence, by:

1. ``[defaults]`` then ``[sites."<site name>"]`` of the settings file: the file named by
   ``PRISMQ_LLMTOOLS_CONFIG``, else ``[tool.prismq_llmtools]`` in ``./pyproject.toml``;
2. environment variables ``PRISMQ_LLMTOOLS__<SITE>__<KEY>`` (see
   :mod:`prismq_llmtools.settings.environment`), or ``ALL`` for every site;
3. runtime overrides through ``f.llm.override(...)`` / ``f.llm.configure(...)``.

Every value is checked by its key's rule (:mod:`prismq_llmtools.settings.rules`) where it is
read, and nothing is silently ignored: an unknown key or table is an error at load; a key of
a decorator the site lacks is an error at the site's first call; a site table or variable
naming no decorated site is reported by a :class:`SettingsWarning` at the first call of any
site (see docs/settings.md).
"""

from __future__ import annotations

import os
import sys
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prismq_llmtools import _state
from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.settings.environment import (
    ALL,
    ENV_PREFIX,
    env_key,
    parse_value,
    variables,
)
from prismq_llmtools.settings.files import key_lines
from prismq_llmtools.settings.rules import (
    Choice,
    Flag,
    SettingError,
    Text,
    check_value,
    closest,
    owners_of,
    register_keys,
)
from prismq_llmtools.settings.sites import forget_site, known_sites, note_site

__all__ = [
    "ENV_PREFIX",
    "TIKTOKEN_ENCODINGS",
    "Entry",
    "SettingError",
    "Settings",
    "SettingsWarning",
    "check_site",
    "check_tokenizer_form",
    "env_key",
    "forget_site",
    "load_settings",
    "note_site",
    "register_keys",
    "register_section",
    "report_unmatched",
    "reset_settings",
    "settings",
]

CONFIG_ENV = "PRISMQ_LLMTOOLS_CONFIG"

SITE = "site"
"""The owner of the keys every site understands, whatever its decorators."""

TIKTOKEN_ENCODINGS = ("cl100k_base", "o200k_base", "p50k_base", "r50k_base")
"""The tiktoken encodings a ``tokenizer`` setting may name (as ``openai.models`` knows them)."""


def check_tokenizer_form(value: str) -> None:
    """A ``tokenizer`` setting's form: a tiktoken encoding, ``server:http(s)://...`` or
    ``hf:PATH`` (no file is read and no server asked here). Raises ``ValueError``."""
    if value in TIKTOKEN_ENCODINGS:
        return
    if value.startswith("server:"):
        url = value[len("server:") :]
        if not url.startswith(("http://", "https://")) or not url.split("://", 1)[1]:
            raise ValueError("expected server:http://HOST:PORT (the server's base URL)")
        return
    if value.startswith("hf:"):
        if not value[len("hf:") :]:
            raise ValueError("expected hf:PATH to a tokenizer.json or a model directory")
        return
    raise ValueError(
        f"must be a tiktoken encoding ({', '.join(TIKTOKEN_ENCODINGS)}), server:URL or hf:PATH"
    )


register_keys(
    SITE,
    {
        "model": Text(optional=True),
        "operation": Text(optional=True),
        "log_content": Flag(),
        "tokenizer": Text(optional=True, validate=check_tokenizer_form),
        "endpoint": Choice(
            values=("chat", "responses", "embeddings", "completions"), optional=True
        ),
    },
)

_sections: set[str] = {"defaults", "sites"}


def register_section(name: str) -> None:
    """Declare a top-level table of the settings file that a part of the package reads
    (``[prices]``); any other table is an error at load."""
    _sections.add(name)


class SettingsWarning(UserWarning):
    """Settings that apply to nothing: a site table or an environment variable naming no
    decorated site. Issued once, at the first call of any site.

    .. versionadded:: 0.2
    """


@dataclass(frozen=True, slots=True)
class Entry:
    """One setting's value and where it came from (``llmtools.toml:4``, a variable)."""

    value: Any
    source: str


@dataclass(frozen=True, slots=True)
class Settings:
    """Loaded settings: defaults for every site, per-site tables, the rest of the file.

    ``lines`` places each key in the file (by its path in the file, ``table`` leading), so
    that errors name the line. The tables' values are checked when the object is made.
    """

    source: str | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    sites: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sections: Mapping[str, Any] = field(default_factory=dict)
    lines: Mapping[tuple[str, ...], int] = field(default_factory=dict)
    table: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        checked = {k: self._check(None, k, v) for k, v in self.defaults.items()}
        object.__setattr__(self, "defaults", checked)
        sites = {
            site: {k: self._check(site, k, v) for k, v in table.items()}
            for site, table in self.sites.items()
        }
        object.__setattr__(self, "sites", sites)

    def where(self, *path: str) -> str:
        """The source of the entry at ``path`` (``defaults``, ``max_wait_s``): file:line."""
        name = self.source or "settings"
        line = self.lines.get(self.table + path)
        return f"{name}:{line}" if line is not None else name

    def _check(self, site: str | None, key: str, value: Any) -> Any:
        path = ("defaults", key) if site is None else ("sites", site, key)
        return check_value(key, value, source=self.where(*path), site=site)

    def entries(self, site: str, environ: Mapping[str, str] | None = None) -> dict[str, Entry]:
        """The overrides that apply to ``site``, with their sources: file defaults, the
        file's site table, then the environment (``ALL``, then the site's own variables).

        Raises:
            SettingError: a variable for this site (or ``ALL``) names an unknown key or
                holds a bad value.
            ConfigurationError: a variable for this site also names another site.
        """
        merged = {k: Entry(v, self.where("defaults", k)) for k, v in self.defaults.items()}
        own = self.sites.get(site, {})
        merged.update((k, Entry(v, self.where("sites", site, k))) for k, v in own.items())
        env = os.environ if environ is None else environ
        mine = env_key(site)
        found = [v for v in variables(env) if v.site in (ALL, mine)]
        found.sort(key=lambda v: v.site != ALL)  # the site's own variables win
        for variable in found:
            if variable.site == mine:
                known_sites().check_unique(site, variable)
            assert variable.key is not None
            value = check_value(
                variable.key, parse_value(variable.raw), source=variable.source, site=site
            )
            merged[variable.key] = Entry(value, variable.source)
        return merged

    def for_site(self, site: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The overrides that apply to ``site``: file defaults, file site table, environment."""
        return {k: e.value for k, e in self.entries(site, environ).items()}

    def own_entries(self, site: str, environ: Mapping[str, str] | None = None) -> dict[str, Entry]:
        """The entries written for ``site`` by name (its table, its variables): not
        ``[defaults]`` nor ``ALL``, which apply to whichever sites have the key."""
        out = {
            k: Entry(v, self.where("sites", site, k)) for k, v in self.sites.get(site, {}).items()
        }
        env = os.environ if environ is None else environ
        mine = env_key(site)
        for variable in variables(env):
            if variable.site == mine and variable.key is not None:
                out[variable.key] = Entry(parse_value(variable.raw), variable.source)
        return out


def check_site(site: str, kinds: set[str], environ: Mapping[str, str] | None = None) -> None:
    """Refuse a key written for ``site`` by name that none of its decorators (``kinds``)
    understands, e.g. ``daily_usd`` for a site without ``@token_budgeted``.

    Raises:
        ConfigurationError: naming the site, the key, its source and the decorator it needs.
    """
    for key, entry in settings().own_entries(site, environ).items():
        owners = owners_of(key)
        if owners and not owners & (kinds | {SITE}):
            needed = " or ".join(f"@{o}" for o in sorted(owners))
            raise ConfigurationError(
                f"site {site!r}: {key} ({entry.source}) is a setting of {needed}, "
                f"which this site does not have: add {needed} or remove the key"
            )


def report_unmatched(environ: Mapping[str, str] | None = None) -> None:
    """Warn (:class:`SettingsWarning`), once, of site tables and environment variables
    naming no decorated site, with the closest site names."""
    known = known_sites()
    if not known.take_report():
        return
    loaded = settings()
    names = known.names()
    lines: list[str] = []
    for site in loaded.sites:
        if site not in names:
            lines.append(
                _unmatched(f"[sites.{site!r}] ({loaded.where('sites', site)})", site, names)
            )
    encoded = {env_key(n): n for n in names}
    env = os.environ if environ is None else environ
    for variable in variables(env):
        if variable.site is None:
            lines.append(f"{variable.name}: not of the form {ENV_PREFIX}<SITE>__<KEY>")
        elif variable.site != ALL and variable.site not in encoded:
            near = [encoded[e] for e in closest(variable.site, encoded)]
            lines.append(_listing(variable.name, near, env=True))
    if lines:
        if any(n.startswith("__main__.") for n in names):
            lines.append(
                "sites of a script run directly are named __main__.<function>; "
                "give them a stable name with name= on their decorator"
            )
        warnings.warn(
            "settings naming no decorated site:\n  " + "\n  ".join(lines),
            SettingsWarning,
            stacklevel=_callers_level(),
        )


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _callers_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside this package
    (and the wrapt wrapper): the application's call of a decorated function."""
    level = 1
    frame = sys._getframe(1)  # the function that warns
    while frame.f_back is not None:
        name = frame.f_code.co_filename
        if not (name.startswith(_PACKAGE) or f"{os.sep}wrapt{os.sep}" in name):
            break
        frame = frame.f_back
        level += 1
    return level


def _unmatched(label: str, site: str, names: list[str]) -> str:
    near = closest(site, names)
    tail = site.rsplit(".", 1)[-1]
    near += [n for n in names if n.startswith("__main__.") and n.endswith("." + tail)]
    return _listing(label, list(dict.fromkeys(near)), env=False)


def _listing(label: str, near: list[str], *, env: bool) -> str:
    if not near:
        return f"{label}: no decorated site has this name"
    shown = ", ".join(f"{n!r} ({ENV_PREFIX}{env_key(n)}__...)" if env else repr(n) for n in near)
    return f"{label}: no decorated site has this name; closest: {shown}"


def _read(path: Path, *, table: tuple[str, ...]) -> Settings:
    try:
        text = path.read_text(encoding="utf-8")
        data: dict[str, Any] = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read settings file {path}: {exc}") from exc
    for part in table:
        data = data.get(part, {})
    lines = key_lines(text)
    for name in data:
        if name not in _sections:
            line = lines.get((*table, name))
            near = closest(name, _sections)
            hint = f"; did you mean [{near[0]}]?" if near else ""
            raise ConfigurationError(
                f"{path}{f':{line}' if line else ''}: unknown table or key [{name}]{hint} "
                f"(known: {', '.join(sorted(_sections))})"
            )
    defaults = data.get("defaults", {})
    sites = data.get("sites", {})
    if not isinstance(defaults, dict) or not isinstance(sites, dict):
        raise ConfigurationError(f"{path}: [defaults] and [sites] must be tables")
    for name, value in sites.items():
        if not isinstance(value, dict):
            raise ConfigurationError(f"{path}: [sites.{name!r}] must be a table")
    rest = {k: v for k, v in data.items() if k not in ("defaults", "sites")}
    return Settings(
        source=str(path), defaults=defaults, sites=sites, sections=rest, lines=lines, table=table
    )


def load_settings(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Read the settings file named by the environment, or ``./pyproject.toml``'s table.

    Raises:
        ConfigurationError: the file cannot be read, has an unknown table, an unknown key
            or a bad value (naming file and line).
    """
    env = os.environ if environ is None else environ
    explicit = env.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigurationError(f"{CONFIG_ENV}={explicit}: no such file")
        return _read(path, table=())
    pyproject = (cwd or Path.cwd()) / "pyproject.toml"
    if pyproject.is_file():
        return _read(pyproject, table=("tool", "prismq_llmtools"))
    return Settings()


_settings: _state.Slot[Settings] = _state.Slot("settings", load_settings)


def settings() -> Settings:
    """The process's settings, loaded on first use."""
    return _settings.get()


def reset_settings(value: Settings | None = None) -> None:
    """Forget the loaded settings (or install ``value``); the next use reloads them, and
    the next call of a site reports again what they name that matches no site."""
    _settings.set(value)
    known_sites().reopen()
