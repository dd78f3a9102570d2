"""A batch on a real Dask cluster of worker processes: one account at the driver.

The simulator enforces an RPM limit; the rate limit is shared through Redis; items run in
two worker processes. The driver's totals, site statistics and log must count every call
the workers made exactly once, and equal what the server billed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import joblib
import pytest

import prismq_llmtools as llm
from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.events import close_log_file, configure_logging
from prismq_llmtools.report import build_report, read_events
from prismq_llmtools.testing import reset
from prismq_llmtools.testing.simulator import Simulator
from tests.batch.worker_sites import ITEMS, sites_module

__all__ = ["sites_module"]  # a fixture: the tests below use it

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster_module(sites_module: tuple[Any, Simulator]) -> Iterator[tuple[Any, Simulator]]:
    """The same, with a Dask cluster of two worker processes as joblib's backend."""
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster),
    ):
        yield sites_module


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    reset()
    yield
    reset()


def test_the_driver_accounts_for_every_call_the_workers_made(
    cluster_module: tuple[Any, Simulator], tmp_path: Path
) -> None:
    """Ordered results from several worker processes, no 429 from the server, and the
    driver's totals, statistics and log equal to what the server billed, counted once."""
    sites, sim = cluster_module
    sim.reset(buckets=True)
    log = tmp_path / "events.jsonl"
    configure_logging(file=log)
    texts = [f"item {n}" for n in range(ITEMS)]
    try:
        with joblib.parallel_config(backend="dask"):
            titles = sites.title.batch(texts)
    finally:
        close_log_file()

    pids = {title.rsplit("[", 1)[1].rstrip("]") for title in titles}
    assert len(pids) >= 2, "the items ran in one process"
    assert str(__import__("os").getpid()) not in pids
    assert all(title.startswith("Title") or title for title in titles)
    assert len(titles) == ITEMS

    stats = sim.stats()
    assert stats.rate_limited == 0
    assert stats.served == ITEMS
    billed = stats.models["gpt-4o-mini"]
    totals = llm.usage_totals().by_operation(rollup=False)
    own = totals["cluster.title"]
    assert own.calls == ITEMS
    assert (own.input_tokens, own.output_tokens) == (billed.prompt_tokens, billed.completion_tokens)
    assert own.cost_usd > 0
    assert totals["cluster.title/cluster.shout"].calls == ITEMS
    assert sites.title.llm.stats()["calls"] == ITEMS
    assert sites.shout.llm.stats()["calls"] == ITEMS

    lines = [json.loads(line) for line in log.read_text().splitlines()]
    calls = [line for line in lines if line["event"] == "llm.call"]
    assert len([c for c in calls if c["operation"] == "cluster.title"]) == ITEMS
    assert len({c["call_id"] for c in calls}) == len(calls) == 2 * ITEMS
    logged = sum(Decimal(str(c["cost_usd"])) for c in calls if c["operation"] == "cluster.title")
    assert abs(logged - own.cost_usd) < Decimal("1e-9")
    summary = [line for line in lines if line["event"] == "llm.batch"]
    assert len(summary) == 1
    assert (summary[0]["items"], summary[0]["ok"]) == (ITEMS, ITEMS)
    assert abs(Decimal(str(summary[0]["cost_usd"])) - own.cost_usd) < Decimal("1e-9")

    # The report over the driver's log equals the report of the same work in one process.
    sim.reset(buckets=True)
    alone = tmp_path / "alone.jsonl"
    configure_logging(file=alone)
    try:
        sites.title.batch(texts)  # the driver's own threads
    finally:
        close_log_file()
    assert _figures(log) == _figures(alone)


def _figures(log: Path) -> list[tuple[Any, ...]]:
    report = build_report(read_events([log]), by="operation")
    return [
        (r.group, r.calls, r.errors, r.input_tokens, r.output_tokens, round(r.cost_usd, 12))
        for r in report.rows
    ]


def test_a_store_of_one_process_is_refused_on_worker_processes(
    cluster_module: tuple[Any, Simulator], redis_server: str
) -> None:
    """A site whose rate limit lives in the in-process store fails clearly on a cluster,
    instead of giving each worker process a limit of its own; the store the driver sets at
    run time reaches the workers."""
    sites, _ = cluster_module
    with joblib.parallel_config(backend="dask"):
        results = sites.local_only.batch(["a", "b"], return_exceptions=True)
        assert all(isinstance(r, ConfigurationError) for r in results), results
        assert "in-process 'memory' store" in str(results[0])
        assert "redis://" in str(results[0])
        with sites.local_only.llm.override(store=redis_server):
            assert sites.local_only.batch(["a", "b"]) == ["a", "b"]


def test_each_batch_brings_home_only_its_own_calls(cluster_module: tuple[Any, Simulator]) -> None:
    """A second batch on the same long-lived workers adds its calls, not the first's again."""
    sites, _ = cluster_module
    with joblib.parallel_config(backend="dask"):
        sites.title.batch(["x", "y"])
        assert llm.usage_totals().total().calls == 4  # two items, each with a nested call
        sites.title.batch(["z"])
    assert llm.usage_totals().total().calls == 6


def test_cache_hits_in_worker_processes_count_at_the_driver(
    sites_module: tuple[Any, Simulator],
) -> None:
    """On joblib's own process pool (loky), a re-run is answered by the shared cache in the
    workers: the driver's statistics and totals show the hits and what they saved."""
    sites, sim = sites_module
    texts = ["one", "two", "three"]
    with joblib.parallel_config(backend="loky", n_jobs=2):
        first = sites.remembered.batch(texts)
        received = sim.stats().received
        again = sites.remembered.batch(texts)
    assert again == first
    assert sim.stats().received == received
    cache = sites.remembered.llm.stats()["cached"]
    assert (cache["hits"], cache["misses"], cache["stores"]) == (3, 3, 3)
    totals = llm.usage_totals().by_operation()["cluster.cached"]
    assert (totals.calls, totals.cache_hits) == (6, 3)
    assert totals.saved_cost_usd == totals.cost_usd > 0
