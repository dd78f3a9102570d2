"""The store, rate-limit and budget suites share their fixtures (see tests.stores.fixtures);
``url`` runs a budget test on every store (tests.stores.store_servers)."""

from tests.stores.fixtures import _isolated, clock, events, registry
from tests.stores.store_servers import url

__all__ = ["_isolated", "clock", "events", "registry", "url"]
