"""Prometheus metrics: the families and their values, and a real Prometheus scraping them."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client import CollectorRegistry

from prismq_llmtools import cached, cost_tracked, prometheus, retried, token_budgeted
from prismq_llmtools.testing.clock import FakeClock
from prismq_llmtools.testing.simulator import Fault, FaultKind, Simulator
from tests.drivers import Mode, Steps

if TYPE_CHECKING:
    from tests.telemetry.conftest import Scraping

MESSAGES = [{"role": "user", "content": "Say hello"}]
DASHBOARD = Path(__file__).parents[2] / "prismq_llmtools" / "examples" / "grafana-dashboard.json"


def _dashboard_queries() -> list[str]:
    """The PromQL of every panel, Grafana's variables replaced as Grafana would."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    return [
        q.replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
        .replace("$site", ".*")
        .replace("$operation", ".*")
        .replace("$model", ".*")
        for q in queries
    ]


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


def _pipeline(mode: Mode, sim: Simulator, clock: FakeClock, cache_dir: Path) -> Any:
    api = mode.client_for(sim)

    @cost_tracked(operation="titles", name="app.titles")
    @cached(location=str(cache_dir))
    @retried(attempts=3, clock=clock)
    @token_budgeted(daily_tokens=50_000, scope="team", clock=clock)
    @mode.make
    def titles(text: str, model: str = "gpt-4o-mini") -> Steps[str]:
        r = yield api.chat.completions.create(
            model=model, messages=[{"role": "user", "content": text}], max_tokens=10
        )
        return r.choices[0].message.content or ""

    return titles


def test_the_families_count_what_the_calls_did(
    mode: Mode, sim: Simulator, clock: FakeClock, cache_dir: Path
) -> None:
    """Requests by outcome, tokens by direction, cost, cache hits and savings, retries,
    durations and the budget left, labelled by site, operation and model."""
    registry = CollectorRegistry()
    prometheus.register(registry)
    titles = _pipeline(mode, sim, clock, cache_dir)
    sim.script(Fault(kind=FaultKind.SERVER_ERROR))
    mode.invoke(titles, "one")
    mode.invoke(titles, "one")  # a cache hit
    labels = {"site": "app.titles", "operation": "titles", "model": "gpt-4o-mini"}
    stats = sim.stats()
    assert _value(registry, "llm_requests_total", outcome="ok", **labels) == 2
    assert _value(registry, "llm_tokens_total", direction="input", **labels) == stats.prompt_tokens
    output = _value(registry, "llm_tokens_total", direction="output", **labels)
    assert output == stats.completion_tokens
    assert _value(registry, "llm_tokens_total", direction="cache_read", **labels) == 0
    assert _value(registry, "llm_tokens_total", direction="reasoning", **labels) == 0
    cost = _value(registry, "llm_cost_usd_total", **labels)
    assert cost > 0
    assert _value(registry, "llm_cache_hits_total", **labels) == 1
    assert _value(registry, "llm_cache_saved_usd_total", **labels) == pytest.approx(cost)
    assert _value(registry, "llm_retries_total", **labels) == 1
    assert _value(registry, "llm_request_duration_seconds_count", **labels) == 2
    remaining = _value(
        registry, "llm_budget_remaining", scope="team", budget="daily_tokens", unit="tokens"
    )
    assert remaining == 50_000 - stats.prompt_tokens - stats.completion_tokens


def test_register_is_idempotent_and_unregister_stops_counting(
    sim: Simulator, clock: FakeClock, cache_dir: Path
) -> None:
    """Registering a registry twice gives one exporter; after unregister nothing is counted."""
    registry = CollectorRegistry()
    assert prometheus.register(registry) is prometheus.register(registry)
    prometheus.unregister(registry)
    assert registry.get_sample_value("llm_requests_total", {}) is None
    assert list(registry.collect()) == []


def test_the_dashboard_reads_only_the_exported_families() -> None:
    """Every series the Grafana dashboard queries is one the exporter writes."""
    registry = CollectorRegistry()
    prometheus.register(registry)
    exported = {metric.name for metric in registry.collect()}
    samples = {sample.name for metric in registry.collect() for sample in metric.samples}
    written = exported | samples | {f"{name}_total" for name in exported}
    written |= {f"llm_request_duration_seconds_{part}" for part in ("bucket", "count", "sum")}
    read = set()
    for query in _dashboard_queries():
        read |= set(re.findall(r"\bllm_[a-z_]+", query))
    assert read
    assert read <= written, read - written


def _query(base: str, expression: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expression})}"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback http)
        answer = json.load(response)
    assert answer["status"] == "success"
    return list(answer["data"]["result"])


@pytest.mark.slow
def test_a_real_prometheus_scrapes_the_endpoint(
    prometheus_scraping: Scraping, sim: Simulator, clock: FakeClock, cache_dir: Path
) -> None:
    """Debian's prometheus, started on loopback and scraping our endpoint every second,
    returns the series and values the decorated calls produced."""
    registry = prometheus_scraping.registry
    prometheus.register(registry)
    titles = _pipeline(Mode("sync"), sim, clock, cache_dir)
    titles("one")
    titles("one")
    expected_cost = registry.get_sample_value(
        "llm_cost_usd_total", {"site": "app.titles", "operation": "titles", "model": "gpt-4o-mini"}
    )
    # Prometheus scrapes all along: wait for a scrape that began after both calls had
    # returned (its samples carry its start time, on this machine's clock).
    done_at = time.time()
    base = prometheus_scraping.url
    process = prometheus_scraping.process
    for _ in range(1200):  # up to 60 s on a busy machine; usually within a second
        try:
            scraped = _query(base, 'timestamp(llm_requests_total{job="llm"})')
        except OSError:
            scraped = []
        if scraped and float(scraped[0]["value"][1]) > done_at:
            break
        if process.poll() is not None:
            pytest.fail(f"prometheus exited with {process.returncode}")
        threading.Event().wait(0.05)
    else:
        pytest.fail("prometheus scraped nothing after the calls within 60 s")
    (requests,) = _query(base, 'llm_requests_total{job="llm"}')
    assert requests["metric"]["site"] == "app.titles"
    assert requests["metric"]["outcome"] == "ok"
    assert float(requests["value"][1]) == 2
    (cost,) = _query(base, "llm_cost_usd_total")
    assert float(cost["value"][1]) == pytest.approx(expected_cost)
    tokens = _query(base, "sum by (direction) (llm_tokens_total)")
    by_direction = {t["metric"]["direction"]: float(t["value"][1]) for t in tokens}
    stats = sim.stats()
    assert by_direction["input"] == stats.prompt_tokens
    assert by_direction["output"] == stats.completion_tokens
    (hits,) = _query(base, "llm_cache_hits_total")
    assert float(hits["value"][1]) == 1
    (budget,) = _query(base, 'llm_budget_remaining{unit="tokens"}')
    assert budget["metric"]["scope"] == "team"
    assert float(budget["value"][1]) == 50_000 - stats.prompt_tokens - stats.completion_tokens
    (count,) = _query(base, "llm_request_duration_seconds_count")
    assert float(count["value"][1]) == 2
    for query in _dashboard_queries():  # the dashboard's queries are valid PromQL
        _query(base, query)
