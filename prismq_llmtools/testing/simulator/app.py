"""Routing and the life of one API request: faults, admission, latency, headers, stats."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

from prismq_llmtools.testing.simulator import api_errors, render
from prismq_llmtools.testing.simulator.admin import AdminRoutes
from prismq_llmtools.testing.simulator.api_errors import ApiError
from prismq_llmtools.testing.simulator.batches import BatchStore, LineResult
from prismq_llmtools.testing.simulator.engine import Completion, Endpoint, Engine, Prepared
from prismq_llmtools.testing.simulator.faults import (
    PRE_ADMISSION,
    Fault,
    FaultInjector,
    FaultKind,
)
from prismq_llmtools.testing.simulator.files import FileStore
from prismq_llmtools.testing.simulator.headers import new_request_id, rate_limit_headers
from prismq_llmtools.testing.simulator.http import DROP, Drop, Reply, Request, StreamReply
from prismq_llmtools.testing.simulator.resources import ResourceRoutes
from prismq_llmtools.testing.simulator.stats import StatsRecorder

__all__ = ["SimulatorApp"]

log = logging.getLogger("prismq_llmtools.testing.simulator")

AnyReply = Reply | StreamReply | Drop
_INFERENCE: Mapping[str, Endpoint] = {
    "/v1/chat/completions": "chat",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "responses",
}
_ENDPOINT_PATHS = {endpoint: path for path, endpoint in _INFERENCE.items()}


def error_reply(error: ApiError, headers: list[tuple[str, str]] | None = None) -> Reply:
    """The JSON reply of an API error."""
    return Reply(
        status=error.status,
        body=render.dumps(error.body()),
        headers=[*(headers or []), *error.headers],
    )


class SimulatorApp:
    """Answers HTTP requests the way the OpenAI API does."""

    def __init__(
        self,
        *,
        engine: Engine,
        faults: FaultInjector,
        stats: StatsRecorder,
        files: FileStore,
        clock: Callable[[], float],
    ) -> None:
        self.engine = engine
        self.faults = faults
        self.stats = stats
        self.files = files
        config = engine.config
        self._latency = config.latency
        self._latency_rng = random.Random(f"latency:{config.seed}")  # noqa: S311
        mono_start, wall_start = clock(), time.time()
        self.batches = BatchStore(
            timing=config.batch,
            clock=clock,
            epoch=lambda moment: int(wall_start + (moment - mono_start)),
            files=files,
            execute=self.execute_line,
        )
        self._resources = ResourceRoutes(engine=engine, files=files, batches=self.batches)
        self.admin = AdminRoutes(stats=stats, faults=faults, reset=self.reset)

    def reset(
        self, buckets: bool = False, prompt_cache: bool = False, faults: bool = False
    ) -> None:
        """Zero the stats; optionally refill the buckets, forget prompts, drop the script."""
        self.stats.reset()
        if buckets:
            self.engine.refill()
        if prompt_cache:
            self.engine.prompt_cache.clear()
        if faults:
            self.faults.clear()

    async def handle(self, request: Request) -> AnyReply:
        """Answer one request; every reply carries an ``x-request-id``."""
        request_id = new_request_id()
        try:
            reply = await self._dispatch(request)
        except Exception:
            log.exception("simulator error on %s %s", request.method, request.path)
            self.stats.responded(None, 500, "simulator_error")
            reply = error_reply(
                ApiError(
                    status=500,
                    reason="simulator_error",
                    message="The simulator failed on this request (see its log).",
                    type="server_error",
                )
            )
        if not isinstance(reply, Drop):
            reply.headers.append(("x-request-id", request_id))
            reply.headers.append(("openai-version", "2020-10-01"))
        return reply

    async def _dispatch(self, request: Request) -> AnyReply:
        if request.path.startswith("/_simulator/"):
            return self.admin.handle(request)
        endpoint = _INFERENCE.get(request.path)
        if endpoint is not None and request.method == "POST":
            return await self._inference(request, endpoint)
        self.stats.received(None)
        fault = self._pick_fault(request, None, inference=False, stream=False)
        if fault is not None and fault.kind in PRE_ADMISSION:
            return self._pre_admission_fault(fault, None, 0, [])
        outcome = self._resources.handle(request)
        if outcome is None:
            outcome = api_errors.not_found(request.method, request.path)
        if isinstance(outcome, ApiError):
            self.stats.responded(None, outcome.status, outcome.reason)
            return error_reply(outcome)
        self.stats.responded(None, outcome.status, None)
        return await self._post_admission_fault(fault, outcome, 0.0)

    def _bucket_headers(self, served_as: str | None) -> list[tuple[str, str]]:
        """Rate-limit headers of a model's buckets as they are (for replies that charge nothing)."""
        return rate_limit_headers(*self.engine.bucket_state(served_as)) if served_as else []

    def _pick_fault(
        self, request: Request, model: str | None, *, inference: bool, stream: bool
    ) -> Fault | None:
        fault = self.faults.pick(model=model, path=request.path, inference=inference, stream=stream)
        if fault is not None:
            self.stats.fault(fault.kind.value)
        return fault

    def _pre_admission_fault(
        self, fault: Fault, model: str | None, context_window: int, headers: list[tuple[str, str]]
    ) -> AnyReply:
        if fault.kind is FaultKind.DROP_CONNECTION:
            self.stats.responded(model, None, fault.kind.value)
            return DROP
        error = api_errors.injected_error(fault, model, context_window)
        self.stats.responded(model, error.status, fault.kind.value)
        return error_reply(error, headers)

    async def _post_admission_fault(
        self, fault: Fault | None, reply: Reply, delay_s: float
    ) -> Reply:
        if fault is not None and fault.kind is FaultKind.SLOW:
            delay_s += fault.delay_s
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        if fault is not None and fault.kind is FaultKind.MALFORMED_JSON:
            reply.body = reply.body[: max(1, len(reply.body) // 2)]
        elif fault is not None and fault.kind is FaultKind.EMPTY_BODY:
            reply.body = b""
        return reply

    async def _inference(self, request: Request, endpoint: Endpoint) -> AnyReply:
        stats = self.stats
        body = self.engine.parse(request.body)
        if isinstance(body, ApiError):
            stats.received(None)
            stats.responded(None, body.status, body.reason)
            return error_reply(body)
        model = body.get("model") if isinstance(body.get("model"), str) else None
        served_as = self.engine.resolve(model) if model else None
        stats.received(served_as)
        prepared = self.engine.prepare(endpoint, body)
        if isinstance(prepared, ApiError):
            stats.responded(served_as, prepared.status, prepared.reason)
            return error_reply(prepared, self._bucket_headers(served_as))
        fault = self._pick_fault(
            request, prepared.served_as, inference=True, stream=prepared.stream
        )
        if fault is not None and fault.kind in PRE_ADMISSION:
            return self._pre_admission_fault(
                fault,
                prepared.served_as,
                prepared.limits.context_window,
                self._bucket_headers(prepared.served_as),
            )
        admission = self.engine.admit(prepared)
        headers = rate_limit_headers(admission.requests, admission.tokens)
        if not admission.admitted:
            error = api_errors.rate_limited(
                prepared.model, admission, self.engine.admission_tokens(prepared)
            )
            stats.responded(prepared.served_as, 429, error.reason)
            return error_reply(error, headers)
        stats.charged(prepared.served_as, admission.charged_tokens)
        completion = self.engine.complete(prepared)
        self._bill(prepared, completion)
        stats.responded(prepared.served_as, 200, None)
        created = int(time.time())
        first_byte_s = self._latency.first_byte_s(self._latency_rng)
        if prepared.stream:
            return self._stream(prepared, completion, created, fault, first_byte_s, headers)
        delay_s = first_byte_s + self._latency.per_output_token_s * completion.completion_tokens
        reply = Reply(
            status=200, body=render.dumps(_render(prepared, completion, created)), headers=headers
        )
        return await self._post_admission_fault(fault, reply, delay_s)

    def _bill(self, prepared: Prepared, completion: Completion) -> None:
        self.stats.billed(
            prepared.served_as,
            prompt=completion.prompt_tokens,
            completion=completion.completion_tokens,
            cached=completion.cached_tokens,
            reasoning=completion.reasoning_tokens,
        )

    def _stream(
        self,
        prepared: Prepared,
        completion: Completion,
        created: int,
        fault: Fault | None,
        first_byte_s: float,
        headers: list[tuple[str, str]],
    ) -> StreamReply:
        kind = fault.kind if fault is not None else FaultKind.NONE
        finish = kind is not FaultKind.STREAM_NO_FINISH
        chat = prepared.endpoint == "chat"
        if chat:
            chunks = render.chat_chunks(prepared, completion, created, finish=finish)
            events = [b"data: " + render.dumps(chunk) + b"\n\n" for chunk, _ in chunks]
        else:  # Responses API: named events, and no [DONE] at the end
            chunks = render.response_events(prepared, completion, created, finish=finish)
            events = [
                b"event: " + chunk["type"].encode() + b"\ndata: " + render.dumps(chunk) + b"\n\n"
                for chunk, _ in chunks
            ]
        token_counts = [tokens for _, tokens in chunks]
        if kind is FaultKind.MALFORMED_JSON:
            events[len(events) // 2] = b'data: {"id": "chatcmpl-broken", "choices": [\n\n'
        cut = kind is FaultKind.STREAM_CUT
        if cut:
            events = events[: max(1, len(events) // 2)]
        elif kind is FaultKind.EMPTY_BODY:
            events = []
        elif chat:
            events.append(b"data: [DONE]\n\n")
        if kind is FaultKind.SLOW:
            first_byte_s += fault.delay_s if fault is not None else 0.0
        return StreamReply(
            status=200,
            chunks=self._paced(events, token_counts, first_byte_s),
            headers=headers,
            cut=cut,
        )

    async def _paced(
        self, events: list[bytes], token_counts: list[int], first_byte_s: float
    ) -> AsyncGenerator[bytes, None]:
        per_token_s = self._latency.per_output_token_s
        if first_byte_s > 0:
            await asyncio.sleep(first_byte_s)
        if per_token_s == 0:
            if events:
                yield b"".join(events)
            return
        for index, event in enumerate(events):
            tokens = token_counts[index] if index < len(token_counts) else 0
            if tokens:
                await asyncio.sleep(per_token_s * tokens)
            yield event

    def execute_line(self, path: str, body: Mapping[str, Any]) -> LineResult:
        """Run one batch line: like a request to ``path``, without rate limits or faults."""
        endpoint = _INFERENCE[path]
        request_id = new_request_id()
        self.stats.batch_line()
        prepared = self.engine.prepare(endpoint, body)
        if isinstance(prepared, ApiError):
            return LineResult(status=prepared.status, body=prepared.body(), request_id=request_id)
        completion = self.engine.complete(prepared)
        self._bill(prepared, completion)
        usage = {
            "input_tokens": completion.prompt_tokens,
            "cached_tokens": completion.cached_tokens,
            "output_tokens": completion.completion_tokens,
            "reasoning_tokens": completion.reasoning_tokens,
        }
        return LineResult(
            status=200,
            body=_render(prepared, completion, int(time.time())),
            request_id=request_id,
            usage=usage,
        )


def _render(prepared: Prepared, completion: Completion, created: int) -> dict[str, Any]:
    if prepared.endpoint == "chat":
        return render.chat_completion(prepared, completion, created)
    if prepared.endpoint == "responses":
        return render.response_object(prepared, completion, created)
    return render.embeddings(prepared, completion)
