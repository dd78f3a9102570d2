"""The names of the decorated sites, which settings are matched against."""

from __future__ import annotations

import threading

from prismq_llmtools import _state
from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.settings.environment import Variable, env_key

__all__ = ["SiteNames", "forget_site", "known_sites", "note_site"]


class SiteNames:
    """The names of the decorated sites (how often each is used), for the reports."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: dict[str, int] = {}
        self._reported = False

    def add(self, name: str) -> None:
        with self._lock:
            self._names[name] = self._names.get(name, 0) + 1

    def discard(self, name: str) -> None:
        with self._lock:
            left = self._names.get(name, 0) - 1
            if left > 0:
                self._names[name] = left
            else:
                self._names.pop(name, None)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._names)

    def check_unique(self, site: str, variable: Variable) -> None:
        """Raise when another decorated site's name has the same variable form."""
        others = [n for n in self.names() if n != site and env_key(n) == variable.site]
        if others:
            raise ConfigurationError(
                f"{variable.source} names site {site!r} and site {others[0]!r} alike "
                f"(both are {variable.site} in variable names): set this site in the "
                "settings file, or give one of them another name with name="
            )

    def take_report(self) -> bool:
        """True the first time it is asked after a reset (the report is made once)."""
        with self._lock:
            first, self._reported = not self._reported, True
            return first

    def reopen(self) -> None:
        """Make the report again at the next call (the settings were reloaded)."""
        with self._lock:
            self._reported = False

    def reset(self) -> None:
        with self._lock:
            self._names.clear()
            self._reported = False


_sites: _state.Shared[SiteNames] = _state.Shared("site names", SiteNames)


def known_sites() -> SiteNames:
    """The names of the decorated sites of this process."""
    return _sites.get()


def note_site(name: str) -> None:
    """Record a decorated site's name (its settings are looked up by it)."""
    _sites.get().add(name)


def forget_site(name: str) -> None:
    """Forget one use of a site name (the site was renamed)."""
    _sites.get().discard(name)
