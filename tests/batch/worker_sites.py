"""Decorated sites that batch items in worker processes import by name (Dask, Ray, loky).

The module is written to a directory on the path of the driver and of the workers, which
start after it exists; the environment tells it the simulator, the store and the cache.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from prismq_llmtools.testing.simulator import Simulator, SimulatorConfig

ITEMS = 24
RPM = 600

MODULE = """
import os

from openai import OpenAI

import prismq_llmtools as llm

STORE = os.environ["CLUSTER_TEST_STORE"]
client = OpenAI(base_url=os.environ["CLUSTER_TEST_URL"], api_key="sk-test", max_retries=0)


@llm.cost_tracked(operation="cluster.shout")
def shout(text: str) -> str:
    return text.upper()  # a nested call, no request: counted under its own operation


@llm.cost_tracked(operation="cluster.title")
@llm.retried(attempts=8, initial_wait_s=0.05, max_wait_s=1.0)
@llm.rate_limited(rpm={rpm}, key="cluster-test", store=STORE)
@llm.batched(max_concurrency=4)
def title(text: str) -> str:
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{{"role": "user", "content": f"A title for: {{text}}"}}],
        max_tokens=16,
    )
    shout(text)
    return (reply.choices[0].message.content or "") + f" [{{os.getpid()}}]"


@llm.cost_tracked(operation="cluster.cached")
@llm.cached(location=os.environ["CLUSTER_TEST_CACHE"])
@llm.batched(max_concurrency=2)
def remembered(text: str) -> str:
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{{"role": "user", "content": text}}], max_tokens=8
    )
    return reply.choices[0].message.content or ""


@llm.cost_tracked(operation="cluster.local")
@llm.rate_limited(rpm=600, key="cluster-local")
@llm.batched(max_concurrency=2)
def local_only(text: str) -> str:
    return text
"""


@pytest.fixture(scope="module")
def sites_module(
    tmp_path_factory: pytest.TempPathFactory, redis_server: str
) -> Iterator[tuple[Any, Simulator]]:
    """The decorated module, importable by worker processes, and the simulator it calls."""
    directory = tmp_path_factory.mktemp("cluster")
    (directory / "cluster_sites.py").write_text(textwrap.dedent(MODULE.format(rpm=RPM)))
    with Simulator(SimulatorConfig(rpm=RPM, seed=3)) as sim, pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLUSTER_TEST_URL", sim.url)
        mp.setenv("CLUSTER_TEST_STORE", redis_server)
        mp.setenv("CLUSTER_TEST_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.setenv("PYTHONPATH", str(directory))
        mp.syspath_prepend(str(directory))
        import cluster_sites  # type: ignore[import-not-found]

        yield cluster_sites, sim
        sys.modules.pop("cluster_sites", None)
