"""A base for the stand-in aspects tests attach to sites."""

from __future__ import annotations

from prismq_llmtools.aspect import Aspect, NoSettings
from prismq_llmtools.clock import Clock


class StubAspect(Aspect[NoSettings]):
    """An aspect with no settings; subclasses override the hooks they test."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        super().__init__(NoSettings(), clock=clock)
