"""An aspect's store handle: the registry's store, asked again after a reset or an install."""

from __future__ import annotations

from prismq_llmtools.stores import StateRegistry, StoreHandle
from prismq_llmtools.stores.memory import MemoryStore


def test_the_handle_follows_the_registry_and_says_when_it_renewed() -> None:
    registry = StateRegistry()
    renewed: list[int] = []
    handle = StoreHandle(registry, "memory", lambda: renewed.append(registry.generation))
    assert not handle.reached
    first = handle.get()
    assert handle.reached
    assert handle.get() is first  # looked up once
    assert renewed == [0]

    registry.reset()  # the in-process store is forgotten: a new one
    second = handle.get()
    assert second is not first
    assert renewed == [0, 1]

    installed = MemoryStore()
    registry.install("memory", installed)
    assert handle.get() is installed
    assert renewed == [0, 1, 2]
