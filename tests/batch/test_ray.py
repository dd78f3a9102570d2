"""A batch on a local Ray instance through Ray's joblib backend: one account at the driver.

Behind the ``ray`` extra; skipped, saying so, where Ray is not installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import joblib
import pytest

import prismq_llmtools as llm
from prismq_llmtools.testing import reset
from prismq_llmtools.testing.simulator import Simulator
from tests.batch.worker_sites import ITEMS, sites_module

__all__ = ["sites_module"]  # a fixture: the tests below use it

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_module(sites_module: tuple[Any, Simulator]) -> Iterator[tuple[Any, Simulator]]:
    """The sites, with a local Ray instance registered as joblib's ``ray`` backend."""
    from ray.util.joblib import register_ray

    # Four logical CPUs on any machine: the batch asks for four concurrent items.
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    register_ray()
    try:
        yield sites_module
    finally:
        ray.shutdown()


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    reset()
    yield
    reset()


def test_the_driver_accounts_for_every_call_ray_workers_made(
    ray_module: tuple[Any, Simulator],
) -> None:
    """Items run in Ray's worker processes, in order, with no 429 from the server; the
    driver's totals equal what the server billed, nested calls included, counted once."""
    sites, sim = ray_module
    sim.reset(buckets=True)
    texts = [f"item {n}" for n in range(ITEMS)]
    with joblib.parallel_config(backend="ray"):
        titles = sites.title.batch(texts)

    assert len(titles) == ITEMS
    pids = {title.rsplit("[", 1)[1].rstrip("]") for title in titles}
    assert str(os.getpid()) not in pids
    stats = sim.stats()
    assert (stats.served, stats.rate_limited) == (ITEMS, 0)
    billed = stats.models["gpt-4o-mini"]
    totals = llm.usage_totals().by_operation(rollup=False)
    own = totals["cluster.title"]
    assert own.calls == ITEMS
    assert (own.input_tokens, own.output_tokens) == (billed.prompt_tokens, billed.completion_tokens)
    assert totals["cluster.title/cluster.shout"].calls == ITEMS
    assert sites.title.llm.stats()["calls"] == ITEMS
