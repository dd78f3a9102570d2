"""Shared test set-up: the simulator fixtures (``simulator``, ``simulator_factory``)."""

from __future__ import annotations

pytest_plugins = ["prismq_llmtools.testing.pytest_plugin"]
