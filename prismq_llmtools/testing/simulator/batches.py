"""The Batch API: validating -> in_progress -> finalizing -> completed, on a time scale.

A batch advances lazily, whenever it is read: the phase it is in follows from the clock and
:class:`BatchTiming`, and the input lines due by then are processed, each as a request to
its url but without the synchronous rate limits. Output and error files use OpenAI's JSONL
lines (``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prismq_llmtools.testing.simulator import api_errors
from prismq_llmtools.testing.simulator.api_errors import ApiError
from prismq_llmtools.testing.simulator.batch_input import BatchLine, read_batch_input
from prismq_llmtools.testing.simulator.config import BatchTiming
from prismq_llmtools.testing.simulator.files import FileStore
from prismq_llmtools.testing.simulator.render import new_id

__all__ = ["BATCH_ENDPOINTS", "BatchStore", "LineResult"]

BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/responses")
_WINDOW_S = 24 * 3600.0
_TIMESTAMPS = (
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LineResult:
    """What one batch line returned, with the usage it billed."""

    status: int
    body: Mapping[str, Any]
    request_id: str
    usage: Mapping[str, int] = field(default_factory=dict)


Execute = Callable[[str, Mapping[str, Any]], LineResult]


@dataclass(slots=True, kw_only=True)
class _Job:
    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: Mapping[str, Any] | None
    model: str | None
    created: float
    lines: list[BatchLine]
    validation_errors: list[dict[str, Any]]
    status: str = "validating"
    times: dict[str, float] = field(default_factory=dict)
    done: int = 0
    outputs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None


class BatchStore:
    """Batches by id, advanced by an injected monotonic clock."""

    def __init__(
        self,
        *,
        timing: BatchTiming,
        clock: Callable[[], float],
        epoch: Callable[[float], int],
        files: FileStore,
        execute: Execute,
    ) -> None:
        self._timing = timing
        self._clock = clock
        self._epoch = epoch
        self._files = files
        self._execute = execute
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.RLock()

    def create(self, body: Mapping[str, Any]) -> Mapping[str, Any] | ApiError:
        """Start a batch from ``{"input_file_id", "endpoint", "completion_window"}``."""
        endpoint = body.get("endpoint")
        if endpoint not in BATCH_ENDPOINTS:
            return api_errors.invalid_request(
                f"endpoint must be one of {', '.join(BATCH_ENDPOINTS)}", param="endpoint"
            )
        if body.get("completion_window") != "24h":
            return api_errors.invalid_request(
                "completion_window must be '24h'", param="completion_window"
            )
        file_id = body.get("input_file_id")
        stored = self._files.get(file_id) if isinstance(file_id, str) else None
        if stored is None:
            return api_errors.invalid_request(
                f"Invalid 'input_file_id': {file_id!r}. File not found.", param="input_file_id"
            )
        if stored.purpose != "batch":
            return api_errors.invalid_request(
                "The input file must be uploaded with purpose 'batch'.", param="input_file_id"
            )
        lines, errors = read_batch_input(stored.data, str(endpoint))
        job = _Job(
            id=new_id("batch_"),
            endpoint=str(endpoint),
            input_file_id=stored.id,
            completion_window="24h",
            metadata=body.get("metadata"),
            model=lines[0].body.get("model") if lines else None,
            created=self._clock(),
            lines=lines,
            validation_errors=errors,
        )
        with self._lock:
            self._jobs[job.id] = job
            return self._to_dict(job)

    def retrieve(self, batch_id: str) -> Mapping[str, Any] | ApiError:
        """The batch, advanced to now."""
        with self._lock:
            job = self._jobs.get(batch_id)
            if job is None:
                return _no_such_batch(batch_id)
            self._advance(job, self._clock())
            return self._to_dict(job)

    def cancel(self, batch_id: str) -> Mapping[str, Any] | ApiError:
        """Ask a batch to stop; finished lines are kept in its output file."""
        with self._lock:
            job = self._jobs.get(batch_id)
            if job is None:
                return _no_such_batch(batch_id)
            now = self._clock()
            self._advance(job, now)
            if job.status not in ("validating", "in_progress"):
                return ApiError(
                    status=409,
                    reason="invalid_request",
                    message=f"Cannot cancel a batch with status '{job.status}'.",
                    type="invalid_request_error",
                )
            job.status = "cancelling"
            job.times["cancelling_at"] = now
            return self._to_dict(job)

    def page(self, *, limit: int, after: str | None) -> Mapping[str, Any]:
        """A page of batches, newest first, after the batch ``after``."""
        with self._lock:
            now = self._clock()
            jobs = list(reversed(self._jobs.values()))
            if after is not None:
                ids = [job.id for job in jobs]
                jobs = jobs[ids.index(after) + 1 :] if after in ids else []
            page = jobs[:limit]
            for job in page:
                self._advance(job, now)
            data = [self._to_dict(job) for job in page]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(jobs) > limit,
        }

    def clear(self) -> None:
        """Forget every batch."""
        with self._lock:
            self._jobs.clear()

    def _real(self, simulated_s: float) -> float:
        return self._timing.real_s(simulated_s)

    def _advance(self, job: _Job, now: float) -> None:
        timing = self._timing
        if job.status == "validating":
            started = job.created + self._real(timing.validating_s)
            if now < started:
                return
            if job.validation_errors:
                job.status = "failed"
                job.times["failed_at"] = started
                return
            job.status = "in_progress"
            job.times["in_progress_at"] = started
        if job.status in ("in_progress", "cancelling"):
            self._process_due(job, now)
        if job.status == "cancelling":
            cancelled = job.times["cancelling_at"] + self._real(timing.cancelling_s)
            if now >= cancelled:
                self._finish(job, "cancelled", cancelled)
        elif job.status == "finalizing":
            completed = job.times["finalizing_at"] + self._real(timing.finalizing_s)
            if now >= completed:
                self._finish(job, "completed", completed)

    def _process_due(self, job: _Job, now: float) -> None:
        started = job.times.get("in_progress_at")
        if started is None:  # cancelled while validating
            return
        per_line = self._real(self._timing.per_request_s)
        deadline = job.created + self._real(_WINDOW_S)
        until = min(now, deadline, job.times.get("cancelling_at", math.inf))
        due = (
            len(job.lines)
            if per_line == 0
            else min(len(job.lines), int((until - started) / per_line))
        )
        while job.done < due:
            self._run_line(job, job.lines[job.done])
            job.done += 1
        if job.status != "in_progress":
            return
        if job.done == len(job.lines):
            job.status = "finalizing"
            job.times["finalizing_at"] = started + per_line * len(job.lines)
        elif now >= deadline:
            for line in job.lines[job.done :]:
                job.errors.append(_expired_line(line))
            self._finish(job, "expired", deadline)

    def _run_line(self, job: _Job, line: BatchLine) -> None:
        result = self._execute(job.endpoint, line.body)
        record = {
            "id": new_id("batch_req_", 32),
            "custom_id": line.custom_id,
            "response": {
                "status_code": result.status,
                "request_id": result.request_id,
                "body": result.body,
            },
            "error": None,
        }
        (job.outputs if result.status == 200 else job.errors).append(json.dumps(record))
        for key, value in result.usage.items():
            job.usage[key] = job.usage.get(key, 0) + value

    def _finish(self, job: _Job, status: str, at: float) -> None:
        job.status = status
        job.times[f"{status}_at"] = at
        created_at = self._epoch(at)
        if job.outputs:
            job.output_file_id = self._store(job, "output", job.outputs, created_at)
        if job.errors:
            job.error_file_id = self._store(job, "error", job.errors, created_at)

    def _store(self, job: _Job, kind: str, lines: list[str], created_at: int) -> str:
        data = ("\n".join(lines) + "\n").encode()
        stored = self._files.add(
            filename=f"{job.id}_{kind}.jsonl",
            purpose="batch_output",
            data=data,
            created_at=created_at,
        )
        return stored.id

    def _to_dict(self, job: _Job) -> dict[str, Any]:
        completed = len(job.outputs)
        usage = job.usage
        out: dict[str, Any] = {
            "id": job.id,
            "object": "batch",
            "endpoint": job.endpoint,
            "model": job.model,
            "errors": (
                {"object": "list", "data": job.validation_errors}
                if job.validation_errors and job.status == "failed"
                else None
            ),
            "input_file_id": job.input_file_id,
            "completion_window": job.completion_window,
            "status": job.status,
            "output_file_id": job.output_file_id,
            "error_file_id": job.error_file_id,
            "created_at": self._epoch(job.created),
            "expires_at": self._epoch(job.created + self._real(_WINDOW_S)),
            "request_counts": {
                "total": len(job.lines),
                "completed": completed,
                "failed": len(job.errors),
            },
            "metadata": job.metadata,
            "usage": {
                "input_tokens": usage.get("input_tokens", 0),
                "input_tokens_details": {"cached_tokens": usage.get("cached_tokens", 0)},
                "output_tokens": usage.get("output_tokens", 0),
                "output_tokens_details": {"reasoning_tokens": usage.get("reasoning_tokens", 0)},
                "total_tokens": usage.get("input_tokens", 0) + usage.get("output_tokens", 0),
            },
        }
        for name in _TIMESTAMPS:
            moment = job.times.get(name)
            out[name] = None if moment is None else self._epoch(moment)
        return out


def _no_such_batch(batch_id: str) -> ApiError:
    return ApiError(
        status=404,
        reason="not_found",
        message=f"No batch found with id '{batch_id}'.",
        type="invalid_request_error",
    )


def _expired_line(line: BatchLine) -> str:
    return json.dumps(
        {
            "id": new_id("batch_req_", 32),
            "custom_id": line.custom_id,
            "response": None,
            "error": {
                "code": "batch_expired",
                "message": "This request could not be executed before the completion window "
                "expired.",
            },
        }
    )
