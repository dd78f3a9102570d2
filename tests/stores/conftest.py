"""The store, rate-limit and budget suites share their fixtures (see tests.stores.fixtures);
the store suites also run on every store (tests.stores.store_servers)."""

from tests.stores.fixtures import _isolated, clock, events, registry
from tests.stores.store_servers import store, url

__all__ = ["_isolated", "clock", "events", "registry", "store", "url"]
