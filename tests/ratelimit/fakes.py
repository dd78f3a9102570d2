"""Fake OpenAI answers for the real client (httpx2.MockTransport), and a broken store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2

from tests.drivers import SYNC, Mode

Handler = Callable[[httpx2.Request], httpx2.Response]
MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Write a title about token buckets."}]


def chat(prompt_tokens: int = 12, completion_tokens: int = 5) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def limits(requests: tuple[int, int] | None, tokens: tuple[int, int] | None) -> dict[str, str]:
    """x-ratelimit headers: (limit, remaining) per bucket."""
    headers: dict[str, str] = {}
    for name, pair in (("requests", requests), ("tokens", tokens)):
        if pair is not None:
            headers[f"x-ratelimit-limit-{name}"] = str(pair[0])
            headers[f"x-ratelimit-remaining-{name}"] = str(pair[1])
            headers[f"x-ratelimit-reset-{name}"] = "1s"
    return headers


def ok(headers: dict[str, str] | None = None, **usage: int) -> httpx2.Response:
    return httpx2.Response(200, headers=headers or {}, json=chat(**usage))


def too_many(retry_after: str | None, headers: dict[str, str] | None = None) -> httpx2.Response:
    extra = dict(headers or {})
    if retry_after is not None:
        extra["retry-after"] = retry_after
    body = {
        "error": {"message": "Rate limit reached", "type": "tokens", "code": "rate_limit_exceeded"}
    }
    return httpx2.Response(429, headers=extra, json=body)


class Script:
    """Answers requests in order: a response, or an exception to raise."""

    def __init__(self, *answers: httpx2.Response | BaseException) -> None:
        self.answers = list(answers)
        self.requests = 0

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def client(handler: Handler, mode: Mode = SYNC) -> Any:
    """An ``openai.OpenAI`` answered by ``handler`` (an ``AsyncOpenAI`` in async mode)."""
    return mode.openai(
        api_key="sk-test",
        base_url="http://fake.test/v1",
        max_retries=0,
        http_client=mode.http_client(handler),
    )
