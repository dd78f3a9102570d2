"""Error responses shaped like OpenAI's: ``{"error": {message, type, param, code}}``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prismq_llmtools.testing.simulator.faults import Fault, FaultKind
from prismq_llmtools.testing.simulator.headers import (
    format_duration,
    retry_after_headers,
    retry_after_seconds_headers,
)
from prismq_llmtools.testing.simulator.ratelimit import Admission

__all__ = [
    "ApiError",
    "context_length_exceeded",
    "injected_error",
    "invalid_request",
    "model_not_found",
    "not_found",
    "rate_limited",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiError:
    """An error response; ``reason`` is what the stats count it under."""

    status: int
    reason: str
    message: str
    type: str
    code: str | None = None
    param: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)

    def body(self) -> Mapping[str, Any]:
        """The JSON body."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    """400 ``invalid_request_error``."""
    return ApiError(
        status=400,
        reason="invalid_request",
        message=message,
        type="invalid_request_error",
        param=param,
        code=code,
    )


def not_found(method: str, path: str) -> ApiError:
    """404 for a route the simulator does not serve."""
    return ApiError(
        status=404,
        reason="not_found",
        message=f"Invalid URL ({method} {path})",
        type="invalid_request_error",
    )


def model_not_found(model: str) -> ApiError:
    """404 ``model_not_found``, as OpenAI answers for a model that does not exist."""
    return ApiError(
        status=404,
        reason="model_not_found",
        message=f"The model `{model}` does not exist or you do not have access to it.",
        type="invalid_request_error",
        code="model_not_found",
    )


def context_length_exceeded(context_window: int, prompt: int, cap: int) -> ApiError:
    """400 ``context_length_exceeded`` with OpenAI's message."""
    return ApiError(
        status=400,
        reason="context_length_exceeded",
        message=(
            f"This model's maximum context length is {context_window} tokens. However, you "
            f"requested {prompt + cap} tokens ({prompt} in the messages, {cap} in the "
            "completion). Please reduce the length of the messages or completion."
        ),
        type="invalid_request_error",
        param="messages",
        code="context_length_exceeded",
    )


def rate_limited(model: str, admission: Admission, requested: int) -> ApiError:
    """429 ``rate_limit_exceeded`` from an empty bucket, with Retry-After when it can help."""
    per_min = (
        "requests per min (RPM)" if admission.limited_by == "requests" else "tokens per min (TPM)"
    )
    state = admission.requests if admission.limited_by == "requests" else admission.tokens
    assert state is not None  # a refusal always names a limited bucket
    amount = 1 if admission.limited_by == "requests" else requested
    if admission.too_large:
        message = (
            f"Request too large for {model} in organization org-simulator on {per_min}: "
            f"Limit {state.limit}, Requested {amount}. The input or output tokens must be "
            "reduced in order to run successfully."
        )
    else:
        message = (
            f"Rate limit reached for {model} in organization org-simulator on {per_min}: "
            f"Limit {state.limit}, Used {admission.used}, Requested {amount}. Please try again "
            f"in {format_duration(admission.retry_after_s)}. Visit "
            "https://platform.openai.com/account/rate-limits to learn more."
        )
    return ApiError(
        status=429,
        reason="request_too_large" if admission.too_large else f"rate_limit_{admission.limited_by}",
        message=message,
        type=admission.limited_by or "tokens",
        code="rate_limit_exceeded",
        headers=retry_after_headers(admission),
    )


_INJECTED: Mapping[FaultKind, tuple[int, str, str, str | None]] = {
    FaultKind.INSUFFICIENT_QUOTA: (
        429,
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
        "insufficient_quota",
    ),
    FaultKind.SERVER_ERROR: (
        500,
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    FaultKind.BAD_GATEWAY: (502, "Bad gateway.", "server_error", None),
    FaultKind.SERVICE_UNAVAILABLE: (
        503,
        "The engine is currently overloaded, please try again later.",
        "server_error",
        None,
    ),
    FaultKind.TIMEOUT: (408, "Request timed out.", "timeout", None),
}


def injected_error(fault: Fault, model: str | None, context_window: int) -> ApiError:
    """The error response of an injected status fault."""
    if fault.kind is FaultKind.RATE_LIMIT:
        return ApiError(
            status=429,
            reason="rate_limit",
            message=(
                f"Rate limit reached for {model} in organization org-simulator. Please try "
                f"again in {format_duration(fault.retry_after_s)}."
            ),
            type="requests",
            code="rate_limit_exceeded",
            headers=retry_after_seconds_headers(fault.retry_after_s),
        )
    if fault.kind is FaultKind.CONTEXT_LENGTH:
        return context_length_exceeded(context_window, context_window + 1, 0)
    status, message, kind, code = _INJECTED[fault.kind]
    return ApiError(status=status, reason=fault.kind.value, message=message, type=kind, code=code)
