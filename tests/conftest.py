"""Shared test set-up. The simulator fixtures (``simulator``, ``simulator_factory``) come from
the package's pytest plugin, registered as a ``pytest11`` entry point."""
