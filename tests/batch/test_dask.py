"""A batch sent to a local Dask cluster through joblib's ``parallel_config``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import joblib
import pytest

from prismq_llmtools import batched

distributed = pytest.importorskip("distributed")


@batched(max_concurrency=4)
def worker_square(x: int) -> tuple[int, str]:
    """Squares ``x`` and says which Dask worker did it."""
    return x * x, distributed.get_worker().address


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            processes=False, n_workers=1, threads_per_worker=4, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_a_batch_runs_on_a_dask_cluster(dask_client: Any) -> None:
    """With ``parallel_config(backend="dask")`` every item runs on a cluster worker, in order."""
    with joblib.parallel_config(backend="dask"):
        results = worker_square.batch(range(8))
    assert [value for value, _ in results] == [x * x for x in range(8)]
    workers = {address for _, address in results}
    assert workers <= set(dask_client.scheduler_info()["workers"])
