"""Which OpenAI failures are transient, and how long the server asked us to wait."""

from __future__ import annotations

import json
from dataclasses import dataclass

from prismq_llmtools.errors import IncompleteStreamError
from prismq_llmtools.openai.headers import retry_after_s

__all__ = ["RetryAdvice", "classify_openai_error"]

_TRANSIENT_STATUS = frozenset({408, 409, 429})
_PERMANENT_CODES = frozenset({"insufficient_quota", "context_length_exceeded"})


@dataclass(frozen=True, slots=True)
class RetryAdvice:
    """Whether to retry a failure, the server's requested wait if any, and why."""

    retry: bool
    after_s: float | None = None
    reason: str = ""


def _code(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        return code
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("code"), str):
            return str(inner["code"])
        if isinstance(inner, dict) and isinstance(inner.get("type"), str):
            return str(inner["type"])
    return None


def classify_openai_error(exc: BaseException) -> RetryAdvice:
    """Transient: 408, 409, 429 rate limits, 5xx, timeouts, connection errors, a 200 with a
    body that is not JSON, a cut or unfinished stream. Never: insufficient_quota,
    context-length errors, or any other 4xx."""
    if isinstance(exc, IncompleteStreamError):
        return RetryAdvice(True, reason="incomplete_stream")
    if isinstance(exc, json.JSONDecodeError):
        return RetryAdvice(True, reason="malformed_body")
    if not type(exc).__module__.startswith("openai"):
        return RetryAdvice(False, reason="not_openai")
    import openai

    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return RetryAdvice(True, reason="timeout" if _is_timeout(exc) else "connection")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        code = _code(exc)
        if code in _PERMANENT_CODES:
            return RetryAdvice(False, reason=code or "")
        if status in _TRANSIENT_STATUS or status >= 500:
            return RetryAdvice(
                True, after_s=retry_after_s(exc.response.headers), reason=str(status)
            )
        return RetryAdvice(False, reason=str(status))
    if isinstance(exc, openai.APIError) and not isinstance(exc, openai.APIResponseValidationError):
        return RetryAdvice(True, reason="stream_error")  # an error event in the middle of a stream
    return RetryAdvice(False, reason=type(exc).__name__)


def _is_timeout(exc: BaseException) -> bool:
    return "Timeout" in type(exc).__name__
