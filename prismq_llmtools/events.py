"""Structured events: names, the one emit path, and opt-in logging configuration.

Events go through structlog. A library must not configure the application's logging, so
until structlog is configured (by the application, or by :func:`configure_logging`) events
are dropped at the cost of one boolean check, the way a stdlib library logger with a
``NullHandler`` behaves.

A batch item run in another process (a Dask, Ray or loky worker) emits into a
:class:`Capture` instead, which travels back with the item's result; the driver writes the
lines with :func:`replay`, so one log holds the whole batch, in the driver's format.
"""

from __future__ import annotations

import contextvars
import json
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO, cast

import structlog

from prismq_llmtools import _state
from prismq_llmtools.files import private_file
from prismq_llmtools.redaction import redact, redact_value

if TYPE_CHECKING:
    from prismq_llmtools.call import Call

__all__ = [
    "ATTEMPT",
    "ATTEMPT_SENT",
    "CALL",
    "RETRY",
    "Capture",
    "capturing",
    "close_log_file",
    "configure_logging",
    "current_names",
    "emit",
    "emit_call",
    "enabled",
    "has_old_names",
    "redact",
    "redact_processor",
    "replay",
]


SEMCONV = "open-telemetry/semantic-conventions-genai@024a4f9"
"""The OpenTelemetry GenAI semantic conventions whose names the events use (docs/events.md)."""

PROVIDER = "openai"
"""The ``gen_ai.provider.name`` of every request the toolkit describes."""

RENAMED: dict[str, str] = {
    "error_type": "error.type",
    "gen_ai.prompt": "gen_ai.input.messages",
    "gen_ai.completion": "gen_ai.output.messages",
}
"""Fields that older logs carry under another name: old name -> current name."""

CALL = "llm.call"
ATTEMPT = "llm.attempt"
ATTEMPT_SENT = "llm.attempt.sent"
RETRY = "llm.retry"
PRICE_UNKNOWN = "llm.price.unknown"

_logger = structlog.get_logger("prismq_llmtools")


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: redact secrets from every value of an event (nested ones too)."""
    for key, value in event_dict.items():
        if not (value is None or isinstance(value, int | float)):
            event_dict[key] = redact_value(value)
    return event_dict


def _leading_fields(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Put ``timestamp``, ``level`` and ``event`` first, so lines read well and grep easily."""
    ordered = {k: event_dict.pop(k) for k in ("timestamp", "level", "event") if k in event_dict}
    ordered.update(event_dict)
    return ordered


@dataclass(slots=True)
class Capture:
    """Events emitted in a worker process, kept to be written by the driver (picklable)."""

    lines: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """Each event as (level, name, fields), the fields with their ``timestamp``."""


_capture: contextvars.ContextVar[Capture | None] = contextvars.ContextVar(
    "prismq_llmtools_event_capture", default=None
)
_stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)


@contextmanager
def capturing() -> Iterator[Capture]:
    """Within the block, events go into the returned :class:`Capture`, not to the log."""
    capture = Capture()
    token = _capture.set(capture)
    try:
        yield capture
    finally:
        _capture.reset(token)


def enabled() -> bool:
    """Whether events are wanted: logging is configured, or a capture is active."""
    return _capture.get() is not None or structlog.is_configured()


def replay(capture: Capture) -> None:
    """Write events captured in another process, keeping the time they happened at."""
    if not structlog.is_configured():
        return
    for level, event, fields in capture.lines:
        getattr(_logger, level)(event, **fields)


def _keep_event_time(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A replayed event keeps the time it happened at, not the time it was written."""
    happened = event_dict.pop("_happened", None)
    if happened is not None:
        event_dict["timestamp"] = happened
    return event_dict


def emit(call: Call | None, event: str, /, *, level: str = "info", **fields: Any) -> None:
    """Emit ``event`` with the fields every event carries for ``call``, plus ``fields``."""
    capture = _capture.get()
    if capture is None and not structlog.is_configured():
        return
    clean: dict[str, Any] = {}
    if call is not None:
        clean["site"] = call.site
        clean["operation"] = call.operation
        clean["call_id"] = call.call_id
        if call.parent is not None:
            clean["parent_id"] = call.parent.call_id
    for key, value in fields.items():
        if value is not None:
            clean[key] = redact_value(_plain(value))
    if capture is not None:
        clean["_happened"] = _stamp(None, "", {})["timestamp"]
        capture.lines.append((level, event, clean))
        return
    getattr(_logger, level)(event, **clean)


def emit_call(call: Call, **extra: Any) -> None:
    """Emit the ``llm.call`` summary line of a finished invocation."""
    if not enabled():
        return
    usage = call.usage
    request = call.request
    fields: dict[str, Any] = {
        "gen_ai.operation.name": request.operation_name if request else None,
        "gen_ai.provider.name": PROVIDER if request is not None else None,
        "openai.api.type": request.api_type if request else None,
        "server.address": call.server_address,
        "server.port": call.server_port,
        "gen_ai.request.model": call.model,
        "gen_ai.response.model": call.response_model,
        "gen_ai.response.id": call.response_id,
        "usage_source": call.usage_source,
        "prompt_tokens_estimate": call.estimate.prompt_tokens if call.estimate else None,
        "cost_usd": call.cost_usd,
        "attempts": call.attempts,
        "retries": call.retries,
        "rate_limited": call.rate_limited,
        "wait_s": round(call.wait_s, 6),
        "duration_s": round(call.duration_s, 6),
        "cache": call.cache,
        "outcome": call.outcome,
        "status_code": call.status_code if call.outcome == "error" else None,
        "request_id": call.request_id,
        "openai.response.service_tier": call.service_tier,
    }
    if usage is not None:
        fields["gen_ai.usage.input_tokens"] = usage.input_tokens
        fields["gen_ai.usage.output_tokens"] = usage.output_tokens
        fields["gen_ai.usage.cache_read.input_tokens"] = usage.cached_input_tokens
        fields["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
    if call.rollup_usage is not None or call.rollup_cost_usd:
        fields["rollup_cost_usd"] = call.total_cost_usd()
    if call.error is not None:
        fields["error.type"] = type(call.error).__name__
        # redacted before it is cut: a cut could leave a key's head too short to recognise
        fields["error_message"] = redact(str(call.error))[:500]
    if call.possibly_billed:
        fields["possibly_billed"] = True
    if not call.price_known:
        fields["price_known"] = False
        fields["price_stand_in"] = call.price_stand_in
    fields.update(extra)
    emit(call, CALL, level="info" if call.outcome == "ok" else "warning", **fields)


def has_old_names(event: Mapping[str, Any]) -> bool:
    """Whether ``event`` carries a field under a name of :data:`RENAMED`."""
    return "error_type" in event or "gen_ai.prompt" in event or "gen_ai.completion" in event


def current_names(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` with every field of :data:`RENAMED` under its current name (in place).

    The report and the alert engine read logs written before and after a rename alike.
    """
    for old, new in RENAMED.items():
        if old in event:
            value = event.pop(old)
            event.setdefault(new, value)
    return event


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    return repr(value)


def close_log_file() -> None:
    """Close the file :func:`configure_logging` opened, if any (events then go nowhere)."""
    _state.log.close_file()


def configure_logging(
    *,
    json_lines: bool = True,
    file: str | Path | IO[str] | None = None,
    level: str = "info",
) -> None:
    """Configure structlog so every event is written, by default as one JSON object per line.

    Args:
        json_lines: JSON lines when true, otherwise structlog's human-readable console format.
        file: a path (appended to, created user-only) or an open text stream; default stderr.
        level: the minimum level written (``debug``, ``info``, ``warning``, ``error``).

    This configures structlog globally; call it from the application, never from a library.
    """
    import logging

    close_log_file()
    stream: TextIO
    if file is None:
        stream = sys.stderr
    elif isinstance(file, str | Path):
        path = Path(file)
        private_file(path)
        stream = _state.log.file = path.open("a", encoding="utf-8", buffering=1)
    else:
        stream = cast(TextIO, file)
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=json.dumps, default=_json_default)
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _keep_event_time,
            redact_processor,
            _leading_fields,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    _state.log.configured = True
