"""OpenTelemetry traces and metrics of every decorated call (the ``[otel]`` extra).

::

    from prismq_llmtools import otel

    otel.instrument()        # the global tracer and meter providers
    ...
    otel.uninstrument()

Spans: an INTERNAL span per invocation, named by its operation, parent of one CLIENT
inference span per request through the openai client. Metrics: the conventions' inference
duration and token counters, and ours for cost, cache hits and savings, retries, rate-limit
waits, budgets and operation durations. Names and the pinned conventions:
:mod:`prismq_llmtools.otel.names` and docs/telemetry.md.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from prismq_llmtools import _state, observers
from prismq_llmtools.otel.names import SCHEMA_URL
from prismq_llmtools.otel.observer import Telemetry

__all__ = ["instrument", "is_instrumented", "uninstrument"]


class _Installed:
    """The :class:`Telemetry` observer :func:`instrument` registered, if any."""

    __slots__ = ("telemetry",)

    def __init__(self) -> None:
        self.telemetry: Telemetry | None = None


_installed: _state.Slot[_Installed] = _state.Slot("otel instrumentation", _Installed)


def _version() -> str:
    try:
        return version("prismq_llmtools")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def instrument(
    tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
) -> None:
    """Trace and measure every decorated call from now on.

    Args:
        tracer_provider: where spans go; default: the global provider
            (``opentelemetry.trace.set_tracer_provider``).
        meter_provider: where metrics go; default: the global provider.

    Calling it again replaces the providers.
    """
    uninstrument()
    tracer = trace.get_tracer(
        "prismq_llmtools", _version(), tracer_provider=tracer_provider, schema_url=SCHEMA_URL
    )
    meter = metrics.get_meter(
        "prismq_llmtools", _version(), meter_provider=meter_provider, schema_url=SCHEMA_URL
    )
    telemetry = Telemetry(tracer, meter)
    _installed.get().telemetry = telemetry
    observers.add(telemetry)


def uninstrument() -> None:
    """Stop tracing and measuring (calls in progress end their spans unfinished)."""
    installed = _installed.get()
    if installed.telemetry is not None:
        observers.remove(installed.telemetry)
        installed.telemetry = None


def is_instrumented() -> bool:
    """Whether :func:`instrument` is in effect."""
    installed = _installed.peek()
    return installed is not None and installed.telemetry is not None
