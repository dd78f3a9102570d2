"""Type aliases and Protocols of the public API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, ParamSpec, Protocol, TypeVar

if TYPE_CHECKING:
    from prismq_llmtools.site.handle import SiteHandle

__all__ = ["LLMFunction"]

P = ParamSpec("P")
R_co = TypeVar("R_co", covariant=True)


class LLMFunction(Protocol, Generic[P, R_co]):
    """A decorated function: same signature as the original, plus its site as ``.llm``."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    @property
    def llm(self) -> SiteHandle:
        """The call site: its name, effective settings, statistics, runtime overrides."""
        ...
