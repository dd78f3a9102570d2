"""Structured events: names, the one emit path, and opt-in logging configuration.

Events go through structlog. A library must not configure the application's logging, so
until structlog is configured (by the application, or by :func:`configure_logging`) events
are dropped at the cost of one boolean check, the way a stdlib library logger with a
``NullHandler`` behaves.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, MutableMapping
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO, cast

import structlog

from prismq_llmtools import _state

if TYPE_CHECKING:
    from prismq_llmtools.call import Call

__all__ = [
    "ATTEMPT",
    "CALL",
    "RETRY",
    "close_log_file",
    "configure_logging",
    "current_names",
    "emit",
    "emit_call",
    "has_old_names",
    "redact",
    "redact_processor",
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
RETRY = "llm.retry"
PRICE_UNKNOWN = "llm.price.unknown"

_logger = structlog.get_logger("prismq_llmtools")

# OpenAI keys (sk-..., sk-proj-...), bearer tokens, and anything labelled as a key.
_SECRET = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,})|(Bearer\s+[A-Za-z0-9._\-]{8,})|"
    r"((?:api[_-]?key|authorization)['\"]?\s*[:=]\s*['\"]?(?:Bearer\s+)?)[^\s'\",}]{4,}",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """Return ``text`` with API keys and bearer tokens replaced by ``[REDACTED]``."""

    def _sub(match: re.Match[str]) -> str:
        label = match.group(3)
        return f"{label}[REDACTED]" if label else "[REDACTED]"

    return _SECRET.sub(_sub, text)


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: redact secrets from every string value of an event."""
    for key, value in event_dict.items():
        if isinstance(value, str):
            if len(value) > 8:
                event_dict[key] = redact(value)
        elif isinstance(value, list | dict):  # opt-in content: messages and their parts
            event_dict[key] = _redact_nested(value)
    return event_dict


def _redact_nested(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value) if len(value) > 8 else value
    if isinstance(value, list):
        return [_redact_nested(item) for item in value]
    if isinstance(value, dict):
        return {key: _redact_nested(item) for key, item in value.items()}
    return value


def _leading_fields(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Put ``timestamp``, ``level`` and ``event`` first, so lines read well and grep easily."""
    ordered = {k: event_dict.pop(k) for k in ("timestamp", "level", "event") if k in event_dict}
    ordered.update(event_dict)
    return ordered


def emit(call: Call | None, event: str, /, *, level: str = "info", **fields: Any) -> None:
    """Emit ``event`` with the fields every event carries for ``call``, plus ``fields``."""
    if not structlog.is_configured():
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
            clean[key] = _plain(value)
    getattr(_logger, level)(event, **clean)


def emit_call(call: Call, **extra: Any) -> None:
    """Emit the ``llm.call`` summary line of a finished invocation."""
    if not structlog.is_configured():
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
        fields["error_message"] = redact(str(call.error))[:500]
    if call.possibly_billed:
        fields["possibly_billed"] = True
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
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
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
