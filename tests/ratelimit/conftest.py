"""The store, rate-limit and budget suites share their fixtures (see tests.stores.fixtures)."""

from tests.stores.fixtures import _isolated, clock, events, registry

__all__ = ["_isolated", "clock", "events", "registry"]
