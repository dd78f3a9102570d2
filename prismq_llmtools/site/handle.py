"""``f.llm``: what a decorated function tells and lets you change about its site."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar

if TYPE_CHECKING:
    from prismq_llmtools.site.core import SiteCore

__all__ = ["LLMFunction", "SiteHandle"]

P = ParamSpec("P")
R_co = TypeVar("R_co", covariant=True)


class SiteHandle:
    """The public face of a call site, reached as ``f.llm``.

    It names the site, shows its effective settings and live statistics, and changes its
    settings at run time; the machinery behind it stays private.
    """

    __slots__ = ("_core",)

    def __init__(self, core: SiteCore) -> None:
        self._core = core

    @property
    def name(self) -> str:
        """The site's name: the key of its settings (``module.qualname`` unless given)."""
        return self._core.name

    @property
    def operation(self) -> str:
        """The operation the site's calls are counted under in totals and events."""
        return self._core.operation

    def settings(self) -> dict[str, Any]:
        """The site's effective settings, by decorator (after file, environment, runtime)."""
        return self._core.settings()

    def stats(self) -> dict[str, Any]:
        """Live statistics: calls and errors, and each decorator's own view."""
        return self._core.stats()

    def configure(self, **changes: Any) -> None:
        """Change settings of this site at run time, until the process ends.

        Raises:
            ConfigurationError: for a key no decorator of the site knows, or a bad value.
        """
        self._core.configure(**changes)

    @contextmanager
    def override(self, **changes: Any) -> Iterator[SiteHandle]:
        """Change settings of this site inside a ``with`` block (tests, one operation)."""
        with self._core.override(**changes):
            yield self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SiteHandle) and other._core is self._core

    def __hash__(self) -> int:
        return hash(self._core)

    def __repr__(self) -> str:
        return repr(self._core)


class LLMFunction(Protocol, Generic[P, R_co]):
    """A decorated function: same signature as the original, plus its site as ``.llm``."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    @property
    def llm(self) -> SiteHandle:
        """The call site: its name, effective settings, statistics, runtime overrides."""
        ...
