"""Policy as data: per-site overrides from a TOML file and the environment.

Decorator arguments are defaults. They are overridden, in increasing precedence, by:

1. ``[defaults]`` then ``[sites."<site name>"]`` of the settings file: the file named by
   ``PRISMQ_LLMTOOLS_CONFIG``, else ``[tool.prismq_llmtools]`` in ``./pyproject.toml``;
2. environment variables ``PRISMQ_LLMTOOLS__<SITE>__<KEY>``, where ``<SITE>`` is the site
   name upper-cased with every non-alphanumeric character replaced by ``_`` (or ``ALL`` for
   every site), and the value is read as a TOML value (``300``, ``0.9``, ``true``, ``"x"``);
3. runtime overrides through ``f.llm.override(...)`` / ``f.llm.configure(...)``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prismq_llmtools import _state
from prismq_llmtools.errors import ConfigurationError

__all__ = [
    "ENV_PREFIX",
    "Settings",
    "env_key",
    "load_settings",
    "register_keys",
    "reset_settings",
    "settings",
]

ENV_PREFIX = "PRISMQ_LLMTOOLS__"
CONFIG_ENV = "PRISMQ_LLMTOOLS_CONFIG"

# Keys a site understands: each aspect registers the fields of its settings class.
_known_keys: dict[str, str] = {
    "model": "site",
    "operation": "site",
    "log_content": "site",
    "tokenizer": "site",
    "endpoint": "site",
}


def register_keys(owner: str, keys: set[str] | frozenset[str]) -> None:
    """Declare the settings keys ``owner`` (a decorator) understands."""
    for key in keys:
        _known_keys.setdefault(key, owner)


def env_key(site: str) -> str:
    """The environment-variable form of a site name."""
    return re.sub(r"[^A-Za-z0-9]", "_", site).upper()


@dataclass(frozen=True, slots=True)
class Settings:
    """Loaded settings: defaults for every site, per-site tables, the rest of the file."""

    source: str | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    sites: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sections: Mapping[str, Any] = field(default_factory=dict)

    def for_site(self, site: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The overrides that apply to ``site``: file defaults, file site table, environment."""
        merged: dict[str, Any] = dict(self.defaults)
        merged.update(self.sites.get(site, {}))
        merged.update(_environment(site, os.environ if environ is None else environ))
        return merged

    def check_keys(self, environ: Mapping[str, str] | None = None) -> None:
        """Raise :class:`ConfigurationError` for a key no decorator understands."""
        for where, table in [("defaults", self.defaults), *self.sites.items()]:
            _check(where, table, self.source)
        env = os.environ if environ is None else environ
        for name in env:
            if name.startswith(ENV_PREFIX):
                parts = name[len(ENV_PREFIX) :].split("__")
                if len(parts) != 2 or not parts[0] or not parts[1]:
                    raise ConfigurationError(
                        f"environment variable {name}: expected {ENV_PREFIX}<SITE>__<KEY>"
                    )
                key = parts[1].lower()
                if key not in _known_keys:
                    raise ConfigurationError(f"environment variable {name}: unknown key {key!r}")


def _check(where: str, table: Mapping[str, Any], source: str | None) -> None:
    for key in table:
        if key not in _known_keys:
            known = ", ".join(sorted(_known_keys))
            raise ConfigurationError(
                f"{source or 'settings'}: site {where!r}: unknown key {key!r} (known: {known})"
            )


def _environment(site: str, environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for scope in ("ALL", env_key(site)):
        prefix = f"{ENV_PREFIX}{scope}__"
        for name, raw in environ.items():
            if name.startswith(prefix):
                out[name[len(prefix) :].lower()] = _parse_value(name, raw)
    return out


def _parse_value(name: str, raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # a bare word is a string


def _read(path: Path, *, table: str | None) -> Settings:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read settings file {path}: {exc}") from exc
    if table is not None:
        for part in table.split("."):
            data = data.get(part, {})
    defaults = data.get("defaults", {})
    sites = data.get("sites", {})
    if not isinstance(defaults, dict) or not isinstance(sites, dict):
        raise ConfigurationError(f"{path}: [defaults] and [sites] must be tables")
    for name, value in sites.items():
        if not isinstance(value, dict):
            raise ConfigurationError(f"{path}: [sites.{name!r}] must be a table")
    rest = {k: v for k, v in data.items() if k not in ("defaults", "sites")}
    return Settings(source=str(path), defaults=defaults, sites=sites, sections=rest)


def load_settings(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Read the settings file named by the environment, or ``./pyproject.toml``'s table."""
    env = os.environ if environ is None else environ
    explicit = env.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigurationError(f"{CONFIG_ENV}={explicit}: no such file")
        return _read(path, table=None)
    pyproject = (cwd or Path.cwd()) / "pyproject.toml"
    if pyproject.is_file():
        return _read(pyproject, table="tool.prismq_llmtools")
    return Settings()


_settings: _state.Slot[Settings] = _state.Slot("settings", load_settings)


def settings() -> Settings:
    """The process's settings, loaded on first use."""
    return _settings.get()


def reset_settings(value: Settings | None = None) -> None:
    """Forget the loaded settings (or install ``value``); the next use reloads them."""
    _settings.set(value)
