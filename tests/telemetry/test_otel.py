"""OpenTelemetry spans and metrics through the real openai client against the simulator."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from prismq_llmtools import cached, cost_tracked, otel, rate_limited, retried, token_budgeted
from prismq_llmtools.otel import names
from prismq_llmtools.testing.clock import FakeClock
from prismq_llmtools.testing.simulator import Fault, FaultKind, Simulator
from tests.drivers import Mode, Steps

MESSAGES = [{"role": "user", "content": "Say hello"}]

# Every attribute name the export may write, as the pinned conventions (and we) spell them.
CONVENTION_SPAN_ATTRIBUTES = {
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.request.max_tokens",
    "gen_ai.request.temperature",
    "gen_ai.request.top_p",
    "gen_ai.request.seed",
    "gen_ai.request.stream",
    "gen_ai.request.choice.count",
    "gen_ai.response.model",
    "gen_ai.response.id",
    "gen_ai.response.finish_reasons",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.reasoning.output_tokens",
    "openai.api.type",
    "openai.request.service_tier",
    "openai.response.service_tier",
    "server.address",
    "server.port",
    "error.type",
}
CONVENTION_METRICS = {
    "gen_ai.client.inference.duration",
    "gen_ai.client.inference.usage.input_tokens",
    "gen_ai.client.inference.usage.output_tokens",
    "gen_ai.client.inference.usage.cache_read.input_tokens",
    "gen_ai.client.inference.usage.reasoning.output_tokens",
}


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.metrics = InMemoryMetricReader()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.meter_provider = MeterProvider(metric_readers=[self.metrics])

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        found = []
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def metric_names(self) -> set[str]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        return {
            metric.name
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    found = Telemetry()
    otel.instrument(tracer_provider=found.tracer_provider, meter_provider=found.meter_provider)
    yield found
    otel.uninstrument()
    found.meter_provider.shutdown()


@pytest.fixture
def api(sim: Simulator) -> Iterator[openai.OpenAI]:
    """A sync client of the simulator, closed after the test."""
    with sim.client() as client:
        yield client


def _by_kind(spans: list[ReadableSpan], kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in spans if s.kind == kind]


def test_an_invocation_is_an_operation_span_over_one_inference_span_per_attempt(
    mode: Mode, sim: Simulator, telemetry: Telemetry, clock: FakeClock
) -> None:
    """A retried call: one INTERNAL span named by its operation, one CLIENT span per request
    (the failed one with error.type), a retry event, usage and cost on the spans."""
    api = mode.client_for(sim)
    sim.script(Fault(kind=FaultKind.SERVER_ERROR))

    @cost_tracked(operation="greeting")
    @retried(attempts=3, clock=clock)
    @mode.make
    def greet() -> Steps[str]:
        r = yield api.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=20, temperature=0.5
        )
        return r.choices[0].message.content or ""

    assert mode.invoke(greet)
    spans = telemetry.finished()
    (operation,) = _by_kind(spans, SpanKind.INTERNAL)
    failed, answered = _by_kind(spans, SpanKind.CLIENT)
    assert operation.name == "greeting"
    for inference in (failed, answered):
        assert inference.name == "chat gpt-4o-mini"
        assert inference.parent is not None
        assert inference.parent.span_id == operation.context.span_id
        assert inference.attributes is not None
        assert inference.attributes["gen_ai.provider.name"] == "openai"
        assert inference.attributes["gen_ai.operation.name"] == "chat"
        assert inference.attributes["openai.api.type"] == "chat_completions"
        assert inference.attributes["server.address"] == "127.0.0.1"
        assert inference.attributes["server.port"] == sim.port
        assert inference.attributes["gen_ai.request.max_tokens"] == 20
        assert inference.attributes["gen_ai.request.temperature"] == 0.5
        assert set(inference.attributes) <= CONVENTION_SPAN_ATTRIBUTES | {names.USAGE_ESTIMATED}
    assert failed.attributes is not None
    assert answered.attributes is not None
    assert failed.attributes["error.type"] == "InternalServerError"
    assert failed.status.status_code == StatusCode.ERROR
    assert "gen_ai.usage.input_tokens" not in failed.attributes  # unknown, never zero
    stats = sim.stats()
    assert answered.attributes["gen_ai.usage.input_tokens"] == stats.prompt_tokens
    assert answered.attributes["gen_ai.usage.output_tokens"] == stats.completion_tokens
    assert answered.attributes["gen_ai.response.finish_reasons"] in (("stop",), ("length",))
    assert str(answered.attributes["gen_ai.response.model"]).startswith("gpt-4o-mini")
    attributes = operation.attributes
    assert attributes is not None
    assert attributes["prismq_llmtools.retries"] == 1
    assert attributes["prismq_llmtools.attempts"] == 2
    assert attributes["prismq_llmtools.cost_usd"] > 0
    assert attributes["prismq_llmtools.usage.input_tokens"] == stats.prompt_tokens
    assert attributes["prismq_llmtools.outcome"] == "ok"
    (retry,) = [e for e in operation.events if e.name == "prismq_llmtools.retry"]
    assert retry.attributes is not None
    assert retry.attributes["error.type"] == "InternalServerError"
    assert set(telemetry.metric_names()) >= CONVENTION_METRICS
    (duration_a, *rest) = telemetry.points("gen_ai.client.inference.duration")
    counts = sum(p.count for p in [duration_a, *rest])
    assert counts == 2
    assert isinstance(duration_a, HistogramDataPoint)
    assert tuple(duration_a.explicit_bounds) == names.DURATION_BUCKETS
    tokens = sum(p.value for p in telemetry.points("gen_ai.client.inference.usage.input_tokens"))
    assert tokens == stats.prompt_tokens
    (retries,) = telemetry.points("prismq_llmtools.retries")
    assert retries.value == 1
    (cost,) = telemetry.points("prismq_llmtools.cost")
    assert cost.value == pytest.approx(attributes["prismq_llmtools.cost_usd"])


def test_nested_operations_nest_and_a_cache_hit_has_no_inference_span(
    mode: Mode, sim: Simulator, telemetry: Telemetry, cache_dir: Any
) -> None:
    """A decorated call inside another is its child span; a cache hit is an operation span
    with no inference span under it."""
    api = mode.client_for(sim)

    @cost_tracked(operation="answer")
    @cached(location=str(cache_dir))
    @mode.make
    def answer(question: str) -> Steps[str]:
        r = yield api.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
        )
        return r.choices[0].message.content or ""

    @cost_tracked(operation="report")
    @mode.make
    def report() -> Steps[str]:
        first = yield answer("one")
        second = yield answer("one")  # the cache answers
        return first + second

    mode.invoke(report)
    spans = telemetry.finished()
    (outer,) = [s for s in spans if s.name == "report"]
    inner = [s for s in spans if s.kind == SpanKind.INTERNAL and s is not outer]
    assert len(inner) == 2
    for span in inner:
        assert span.parent is not None
        assert span.parent.span_id == outer.context.span_id
    hit = next(s for s in inner if (s.attributes or {}).get("prismq_llmtools.cache") == "hit")
    miss = next(s for s in inner if s is not hit)
    clients = _by_kind(spans, SpanKind.CLIENT)
    assert len(clients) == 1
    assert clients[0].parent is not None
    assert clients[0].parent.span_id == miss.context.span_id
    (hits,) = telemetry.points("prismq_llmtools.cache.hits")
    assert hits.value == 1


def test_rate_limit_waits_and_budgets_are_measured(
    mode: Mode, sim: Simulator, telemetry: Telemetry, clock: FakeClock
) -> None:
    """A rate-limit wait is a span event and adds to the wait counter; a budget's remaining
    tokens are a gauge."""
    api = mode.client_for(sim)

    @cost_tracked(operation="limited")
    @rate_limited(rpm=1, tpm=1_000_000, clock=clock)
    @token_budgeted(daily_tokens=100_000, clock=clock)
    @mode.make
    def limited(model: str = "gpt-4o-mini") -> Steps[str]:
        r = yield api.chat.completions.create(model=model, messages=MESSAGES, max_tokens=5)
        return r.choices[0].message.content or ""

    mode.invoke(limited)
    mode.invoke(limited)  # the second waits for the bucket
    spans = _by_kind(telemetry.finished(), SpanKind.INTERNAL)
    waits = [e for s in spans for e in s.events if e.name == "prismq_llmtools.ratelimit.wait"]
    assert waits
    (waited,) = telemetry.points("prismq_llmtools.ratelimit.wait")
    assert waited.value == pytest.approx(
        sum(e.attributes["prismq_llmtools.delay_s"] for e in waits)
    )
    (remaining,) = telemetry.points("prismq_llmtools.budget.remaining")
    stats = sim.stats()
    assert remaining.value == 100_000 - stats.prompt_tokens - stats.completion_tokens
    assert remaining.attributes["prismq_llmtools.budget.unit"] == "tokens"


def test_an_abandoned_stream_is_marked_estimated(
    sim: Simulator, telemetry: Telemetry, api: openai.OpenAI
) -> None:
    """A stream left before its usage chunk: its inference span carries the estimate, marked."""

    @cost_tracked()
    def first() -> str:
        stream = api.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=60, stream=True
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                return chunk.choices[0].delta.content
        return ""

    assert first()
    (inference,) = _by_kind(telemetry.finished(), SpanKind.CLIENT)
    assert inference.attributes is not None
    assert inference.attributes["gen_ai.request.stream"] is True
    assert inference.attributes[names.USAGE_ESTIMATED] is True
    assert inference.attributes["gen_ai.usage.input_tokens"] == sim.stats().prompt_tokens


def test_uninstrument_stops_the_export(telemetry: Telemetry, api: openai.OpenAI) -> None:
    """After uninstrument() calls make no spans."""

    @cost_tracked()
    def ask() -> str:
        r = api.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        return r.choices[0].message.content or ""

    ask()
    count = len(telemetry.finished())
    assert otel.is_instrumented()
    otel.uninstrument()
    ask()
    assert not otel.is_instrumented()
    assert len(telemetry.finished()) == count == 2


# -- end to end: OTLP over HTTP to a receiver the test starts -------------------------------


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: dict[str, list[bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.setdefault(self.path, []).append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_otlp_http_export_end_to_end(sim: Simulator, api: openai.OpenAI) -> None:
    """Spans and metrics exported with the OTLP/HTTP exporter reach a local receiver, which
    decodes them with opentelemetry-proto."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    received: dict[str, list[bytes]] = {}
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"))
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"), export_interval_millis=3_600_000
    )
    meter_provider = MeterProvider(metric_readers=[reader])
    otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)

    @cost_tracked(operation="exported")
    def ask() -> str:
        r = api.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        return r.choices[0].message.content or ""

    try:
        ask()
        meter_provider.force_flush()
        tracer_provider.force_flush()
    finally:
        otel.uninstrument()
        meter_provider.shutdown()
        tracer_provider.shutdown()
        server.shutdown()
        server.server_close()
    spans = {}
    for body in received["/v1/traces"]:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                assert scope.scope.name == "prismq_llmtools"
                assert scope.schema_url == names.SCHEMA_URL
                for span in scope.spans:
                    spans[span.name] = {a.key: a.value for a in span.attributes}
    assert set(spans) == {"exported", "chat gpt-4o-mini"}
    inference = spans["chat gpt-4o-mini"]
    assert inference["gen_ai.provider.name"].string_value == "openai"
    assert inference["gen_ai.usage.input_tokens"].int_value == sim.stats().prompt_tokens
    metric_names = set()
    for body in received["/v1/metrics"]:
        request = ExportMetricsServiceRequest.FromString(body)
        for resource in request.resource_metrics:
            for scope in resource.scope_metrics:
                metric_names.update(metric.name for metric in scope.metrics)
    assert metric_names >= CONVENTION_METRICS | {"prismq_llmtools.cost"}
