"""Fake OpenAI HTTP answers for the real ``openai`` client, through httpx's MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx2

from tests.drivers import SYNC, Mode

CANARY_KEY = "sk-proj-CANARYcanary0123456789abcdef"

Handler = Callable[[httpx2.Request], httpx2.Response]


def chat_body(
    model: str = "gpt-4o-mini-2024-07-18",
    content: str = "Hello there",
    *,
    prompt_tokens: int = 12,
    completion_tokens: int = 3,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
        },
    }


RATE_HEADERS = {
    "x-request-id": "req_fake",
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-limit-tokens": "200000",
    "x-ratelimit-remaining-requests": "499",
    "x-ratelimit-remaining-tokens": "199000",
    "x-ratelimit-reset-requests": "120ms",
    "x-ratelimit-reset-tokens": "6m0s",
}


def ok(body: dict[str, Any] | None = None) -> httpx2.Response:
    return httpx2.Response(200, headers=RATE_HEADERS, json=body or chat_body())


def error(
    status: int, code: str | None = None, headers: dict[str, str] | None = None
) -> httpx2.Response:
    return httpx2.Response(
        status,
        headers=headers or {},
        json={"error": {"message": f"fake {status} for {CANARY_KEY}", "type": code, "code": code}},
    )


def sse(chunks: list[dict[str, Any]], *, done: bool = True) -> httpx2.Response:
    lines = [f"data: {json.dumps(c)}\n\n" for c in chunks]
    if done:
        lines.append("data: [DONE]\n\n")
    return httpx2.Response(
        200,
        headers={**RATE_HEADERS, "content-type": "text/event-stream"},
        content="".join(lines).encode(),
    )


def chunk(
    content: str | None, finish: str | None = None, usage: dict[str, int] | None = None
) -> dict[str, Any]:
    choices = (
        []
        if content is None and finish is None
        else [
            {"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish}
        ]
    )
    out: dict[str, Any] = {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": choices,
    }
    if usage is not None:
        out["usage"] = {
            **usage,
            "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"],
        }
    return out


class Script:
    """Answers requests from a list, one response per request; records every request body."""

    def __init__(
        self, *responses: httpx2.Response | Callable[[httpx2.Request], httpx2.Response]
    ) -> None:
        self._responses: Iterator[Any] = iter(responses)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[httpx2.Headers] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(json.loads(request.content) if request.content else {})
        self.headers.append(request.headers)
        answer = next(self._responses)
        return answer(request) if callable(answer) else answer


def client(handler: Handler, mode: Mode = SYNC, **kwargs: Any) -> Any:
    """An ``openai.OpenAI`` answered by ``handler`` (an ``AsyncOpenAI`` in async mode)."""
    return mode.openai(
        api_key=CANARY_KEY,
        base_url="http://fake.test/v1",
        http_client=mode.http_client(handler),
        **kwargs,
    )
