"""Prometheus metrics of every decorated call (the ``[prometheus]`` extra, on
``prometheus_client``).

::

    from prismq_llmtools import prometheus

    prometheus.register()                 # into prometheus_client's default registry
    server = prometheus.start_http_server(9464)   # or serve the registry your own way

Families (``llm`` is the default namespace), with ``site``, ``operation`` and ``model``
labels: ``llm_requests_total`` (and ``outcome``), ``llm_tokens_total`` (and ``direction``:
input, output, cache_read, reasoning), ``llm_cost_usd_total``, ``llm_cache_hits_total``,
``llm_cache_saved_usd_total``, ``llm_retries_total``, ``llm_ratelimit_wait_seconds_total``,
``llm_request_duration_seconds`` (a histogram); and ``llm_budget_remaining`` (a gauge, with
``scope``, ``budget`` and ``unit``). See docs/telemetry.md.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from prismq_llmtools import _state, observers
from prismq_llmtools.call import Call

__all__ = ["DURATION_BUCKETS", "Exporter", "register", "start_http_server", "unregister"]

DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
"""The OpenTelemetry GenAI conventions' duration buckets (seconds), for comparable charts."""

_LABELS = ("site", "operation", "model")


class Exporter(observers.Observer):
    """The metric families of one registry, updated from what the observers hear."""

    def __init__(self, registry: CollectorRegistry, namespace: str) -> None:
        self.registry = registry

        def counter(name: str, doc: str, *extra: str) -> Counter:
            return Counter(name, doc, (*_LABELS, *extra), namespace=namespace, registry=registry)

        self.requests = counter("requests", "Decorated calls, by outcome.", "outcome")
        self.tokens = counter(
            "tokens", "Tokens used (input and output; cache_read and reasoning are parts of them).",
            "direction",
        )  # fmt: skip
        self.cost = counter("cost_usd", "Cost of the calls in USD, from their actual usage.")
        self.cache_hits = counter("cache_hits", "Calls answered from the response cache.")
        self.cache_saved = counter("cache_saved_usd", "What the cache hits would have cost, USD.")
        self.retries = counter("retries", "Attempts retried after a failure.")
        self.wait = counter("ratelimit_wait_seconds", "Time the rate limiter held calls.")
        self.duration = Histogram(
            "request_duration_seconds",
            "Duration of the decorated calls, waits and retries included.",
            _LABELS,
            namespace=namespace,
            registry=registry,
            buckets=DURATION_BUCKETS,
        )
        self.budget = Gauge(
            "budget_remaining",
            "What a budget line has left, in its unit (tokens or usd).",
            ("scope", "budget", "unit"),
            namespace=namespace,
            registry=registry,
        )
        self.collectors = (
            self.requests, self.tokens, self.cost, self.cache_hits, self.cache_saved,
            self.retries, self.wait, self.duration, self.budget,
        )  # fmt: skip

    def call_finished(self, call: Call) -> None:
        site, operation, model = call.site, call.operation, call.model or ""
        self.requests.labels(site, operation, model, call.outcome or "error").inc()
        self.duration.labels(site, operation, model).observe(call.duration_s)
        if call.cache == "hit":
            self.cache_hits.labels(site, operation, model).inc()
            if call.saved_cost_usd is not None:
                self.cache_saved.labels(site, operation, model).inc(float(call.saved_cost_usd))
            return
        usage = call.usage
        if usage is not None:  # unknown usage is not counted, never as zero
            tokens = self.tokens
            tokens.labels(site, operation, model, "input").inc(usage.input_tokens)
            tokens.labels(site, operation, model, "output").inc(usage.output_tokens)
            tokens.labels(site, operation, model, "cache_read").inc(usage.cached_input_tokens)
            tokens.labels(site, operation, model, "reasoning").inc(usage.reasoning_tokens)
        if call.cost_usd is not None:
            self.cost.labels(site, operation, model).inc(float(call.cost_usd))

    def retry(self, call: Call, delay_s: float, error: BaseException) -> None:
        self.retries.labels(call.site, call.operation, call.model or "").inc()

    def rate_limit_wait(self, call: Call, seconds: float) -> None:
        self.wait.labels(call.site, call.operation, call.model or "").inc(seconds)

    def budget_remaining(
        self, call: Call, scope: str, line: str, unit: str, remaining: float
    ) -> None:
        self.budget.labels(scope, line, unit).set(remaining)

    def close(self) -> None:
        """Stop listening and take the families out of the registry."""
        observers.remove(self)
        for collector in self.collectors:
            self.registry.unregister(collector)


class _Exporters:
    """The exporters :func:`register` made, by registry; reset unregisters them all."""

    __slots__ = ("by_registry", "lock")

    def __init__(self) -> None:
        self.by_registry: dict[int, Exporter] = {}
        self.lock = threading.Lock()

    def reset(self) -> None:
        with self.lock:
            exporters, self.by_registry = list(self.by_registry.values()), {}
        for exporter in exporters:
            exporter.close()


_exporters: _state.Shared[_Exporters] = _state.Shared("prometheus exporters", _Exporters)


def register(registry: CollectorRegistry | None = None, namespace: str = "llm") -> Exporter:
    """Add the metric families to ``registry`` (default: ``prometheus_client.REGISTRY``) and
    keep them up to date from now on; registering the same registry again returns the same
    exporter."""
    target = registry if registry is not None else prometheus_client.REGISTRY
    exporters = _exporters.get()
    with exporters.lock:
        found = exporters.by_registry.get(id(target))
        if found is None:
            found = exporters.by_registry[id(target)] = Exporter(target, namespace)
            observers.add(found)
    return found


def unregister(registry: CollectorRegistry | None = None) -> None:
    """Take the families out of ``registry`` and stop updating them."""
    target = registry if registry is not None else prometheus_client.REGISTRY
    exporters = _exporters.get()
    with exporters.lock:
        found = exporters.by_registry.pop(id(target), None)
    if found is not None:
        found.close()


def start_http_server(
    port: int, addr: str = "127.0.0.1", registry: CollectorRegistry | None = None
) -> WSGIServer:
    """Serve ``registry`` (default: the default one) at ``http://addr:port/metrics`` from a
    daemon thread; ``port=0`` picks a free port (``server.server_port``). Stop it with
    ``server.shutdown()`` and ``server.server_close()``."""
    target = registry if registry is not None else prometheus_client.REGISTRY
    server, _thread = prometheus_client.start_http_server(port, addr=addr, registry=target)
    return server
