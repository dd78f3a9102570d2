"""The OpenAI Batch API mode of ``f.batch(items, mode="batch_api", client=client)``.

Each item's request is derived from the site's arguments (or its ``request=`` extractor),
written as one JSONL line with ``custom_id`` ``item-<index>``, uploaded, and submitted as a
batch (split at 50,000 requests or 200 MB). The batches are polled with a progress bar,
their output and error files downloaded and mapped back to the items in input order.
Each answer is the API's response object (``ChatCompletion``, ``CreateEmbeddingResponse``
or ``Response``), costed at the Batch API discount and recorded like any call of the site
(``llm.call`` events, usage totals, the cache). Items the cache can answer are not sent.
A ``state`` file records the batch ids as soon as they exist: rerun with the same file
after a crash and the batches are picked up where they are, not submitted again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prismq_llmtools import events
from prismq_llmtools.cache.key import digest
from prismq_llmtools.call import Call
from prismq_llmtools.errors import BatchItemError, ConfigurationError
from prismq_llmtools.files import FILE_MODE, private_dir
from prismq_llmtools.openai.responses import response_from_body

if TYPE_CHECKING:
    from prismq_llmtools.batch.progress import Progress
    from prismq_llmtools.site.core import SiteCore

__all__ = ["MAX_BYTES", "MAX_REQUESTS", "BatchJob", "build_lines", "split_lines"]

MAX_REQUESTS = 50_000
MAX_BYTES = 200 * 1024 * 1024
SUBMITTED = "llm.batch.submitted"
_URLS = {
    "chat": "/v1/chat/completions",
    "embeddings": "/v1/embeddings",
    "responses": "/v1/responses",
}
_DONE = ("completed", "failed", "expired", "cancelled")


@dataclass(slots=True)
class BatchJob:
    """One submitted batch: its id and the items it carries."""

    id: str
    indices: list[int]
    status: str = "validating"
    counted: int = 0
    batch: Any = None  # the last Batch object retrieved


def _json_default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json", exclude_none=True)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def build_lines(core: SiteCore, calls: list[tuple[int, Call]]) -> tuple[str, list[str]]:
    """The endpoint URL and one JSONL line per call (``custom_id`` ``item-<index>``).

    Raises:
        ConfigurationError: when a call's request cannot be derived from its arguments.
    """
    url = None
    lines = []
    for index, call in calls:
        request = call.request
        if request is None or request.endpoint not in _URLS or not request.model:
            raise ConfigurationError(
                f"site {core.name!r}: the Batch API mode needs the OpenAI request of each item,"
                " and it cannot be derived from this site's arguments; name them as the API"
                " does (model, messages or input, max_tokens, ...) or give the decorator a"
                " request= extractor"
            )
        item_url = _URLS[request.endpoint]
        if url is not None and item_url != url:
            raise ConfigurationError(f"site {core.name!r}: items go to {url} and {item_url}")
        url = item_url
        body = {k: v for k, v in request.body.items() if k not in ("stream", "stream_options")}
        try:
            line = {"custom_id": f"item-{index}", "method": "POST", "url": url, "body": body}
            lines.append(json.dumps(line, default=_json_default, ensure_ascii=False))
        except TypeError as exc:
            raise ConfigurationError(f"site {core.name!r}: item {index}: {exc}") from exc
    return url or _URLS["chat"], lines


def split_lines(
    lines: list[str], *, max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES
) -> list[tuple[int, int]]:
    """``(start, end)`` ranges of ``lines``, each within the request and size limits."""
    ranges = []
    start = size = 0
    for position, line in enumerate(lines):
        length = len(line.encode()) + 1
        if position > start and (position - start >= max_requests or size + length > max_bytes):
            ranges.append((start, position))
            start, size = position, 0
        size += length
    if start < len(lines):
        ranges.append((start, len(lines)))
    return ranges


class BatchState:
    """The ids of submitted batches, on disk as soon as they exist (resume after a crash)."""

    def __init__(self, path: str | os.PathLike[str] | None, fingerprint: str) -> None:
        self.path = Path(path) if path is not None else None
        self.fingerprint = fingerprint
        self.jobs: list[BatchJob] = []
        if self.path is not None and self.path.exists():
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("fingerprint") != fingerprint:
                raise ConfigurationError(
                    f"{self.path} belongs to another batch (other items or requests)"
                )
            self.jobs = [BatchJob(j["id"], list(j["indices"])) for j in data["batches"]]

    def add(self, job: BatchJob) -> None:
        self.jobs.append(job)
        if self.path is None:
            return
        data = {
            "fingerprint": self.fingerprint,
            "batches": [{"id": j.id, "indices": j.indices} for j in self.jobs],
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        private_dir(tmp.parent)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        os.fchmod(fd, FILE_MODE)  # a .tmp left by a crash keeps its mode: set it
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(data))
        tmp.replace(self.path)


def submit(
    client: Any,
    core: SiteCore,
    url: str,
    lines: list[str],
    indices: list[int],
    state: BatchState,
    *,
    max_requests: int,
    max_bytes: int,
) -> None:
    """Upload and create one batch per chunk of ``lines``; record each id at once."""
    for start, end in split_lines(lines, max_requests=max_requests, max_bytes=max_bytes):
        data = ("\n".join(lines[start:end]) + "\n").encode()
        upload = client.files.create(
            file=(f"{core.name}-{start}.jsonl", data, "application/jsonl"), purpose="batch"
        )
        batch = client.batches.create(
            input_file_id=upload.id,
            endpoint=url,
            completion_window="24h",
            metadata={"site": core.name[:512]},
        )
        state.add(BatchJob(batch.id, indices[start:end]))
        events.emit(
            None,
            SUBMITTED,
            site=core.name,
            batch_id=batch.id,
            requests=end - start,
            bytes=len(data),
        )


def poll(
    client: Any, core: SiteCore, jobs: list[BatchJob], progress: Progress, poll_s: float
) -> None:
    """Wait until every batch is done, updating the progress bar."""
    while True:
        done = 0
        for job in jobs:
            if job.status not in _DONE:
                batch = client.batches.retrieve(job.id)
                job.status = batch.status
                counts = batch.request_counts
                job.counted = (counts.completed + counts.failed) if counts else 0
                job.batch = batch
            done += len(job.indices) if job.status in _DONE else job.counted
        statuses = sorted({job.status for job in jobs})
        progress.update(done=done, failed=0, cost_usd=progress.cost_usd, status="/".join(statuses))
        if all(job.status in _DONE for job in jobs):
            return
        core.clock.sleep(poll_s)


def fingerprint(url: str, lines: list[str]) -> str:
    """Identifies a batch's requests, so a state file is never applied to other items."""
    return digest((url, tuple(lines)))


def read_results(client: Any, job: BatchJob) -> dict[str, dict[str, Any]]:
    """``custom_id -> record`` of a finished batch's output and error files."""
    batch = job.batch or client.batches.retrieve(job.id)
    records: dict[str, dict[str, Any]] = {}
    for file_id in (batch.output_file_id, batch.error_file_id):
        if not file_id:
            continue
        text = client.files.content(file_id).text
        for raw in text.splitlines():
            if raw.strip():
                record = json.loads(raw)
                records[record["custom_id"]] = record
    for error in (batch.errors.data if batch.errors else None) or []:  # failed validation
        line = getattr(error, "line", None)
        if line is not None and 1 <= line <= len(job.indices):
            custom_id = f"item-{job.indices[line - 1]}"
            records.setdefault(custom_id, {"error": {"code": error.code, "message": error.message}})
    for index in job.indices:  # whatever the batch never answered (failed, cancelled)
        records.setdefault(
            f"item-{index}",
            {"error": {"code": f"batch_{job.status}", "message": f"batch {job.id} {job.status}"}},
        )
    return records


def to_answer(endpoint: str | None, record: Mapping[str, Any]) -> tuple[Any, BaseException | None]:
    """The parsed response of one record, or the error it carries."""
    response = record.get("response") or {}
    error = record.get("error")
    status = response.get("status_code")
    body = response.get("body") or {}
    if error or status != 200:
        detail = error or body.get("error") or {}
        return None, BatchItemError(
            str(detail.get("message") or "failed"),
            custom_id=str(record.get("custom_id", "")),
            status_code=status,
            code=detail.get("code"),
        )
    return response_from_body(endpoint, body), None


def run_batch_api(
    func: Any,
    plan: Any,
    *,
    client: Any,
    return_exceptions: bool,
    state: str | os.PathLike[str] | None,
    poll_s: float,
    max_requests: int,
    max_bytes: int,
) -> list[Any]:
    """Run ``plan`` (from :mod:`prismq_llmtools.batch`) through the Batch API."""
    from prismq_llmtools.batch.items import Unit
    from prismq_llmtools.batch.plan import Collector
    from prismq_llmtools.batch.runner import ItemBox, StopFlag, UnitResult
    from prismq_llmtools.cache import CacheAspect
    from prismq_llmtools.pricing import cost_call
    from prismq_llmtools.site.observe import resolve_usage

    if client is None:
        raise ConfigurationError("mode='batch_api' needs client=openai.OpenAI(...)")
    core: SiteCore = plan.core
    cache = next((a for a in core.aspects if isinstance(a, CacheAspect)), None)
    costs = [a for a in core.aspects if a.kind == "cost_tracked"]
    instance = getattr(func, "_self_instance", None)
    collect = Collector(plan)

    def deliver(index: int, call: Call, value: Any, error: BaseException | None) -> None:
        call.duration_s = core.clock.now() - call.started
        for aspect in costs:
            aspect.finish(call)
        events.emit_call(call)
        box = ItemBox(core.name, None)
        box.add(call)
        status = "ok" if error is None else "error"
        collect(UnitResult(Unit((index,), (), {}), status, value if error is None else error, box))

    pending: list[tuple[int, Call]] = []
    for unit in plan.units:
        (index,) = unit.indices
        call = core.new_call(unit.args, unit.kwargs)
        call.started = core.clock.now()
        if instance is not None:
            call.instance = instance
        call.request = core.discover_request(call, instance)
        if cache is not None:
            found, value = cache.peek(call)
            if found:
                call.outcome = "ok"
                deliver(index, call, value, None)
                continue
        pending.append((index, call))
    jobs: list[BatchJob] = []
    if pending:
        url, lines = build_lines(core, pending)
        batches = BatchState(state, fingerprint(url, lines))
        if not batches.jobs:
            indices = [index for index, _ in pending]
            submit(
                client,
                core,
                url,
                lines,
                indices,
                batches,
                max_requests=max_requests,
                max_bytes=max_bytes,
            )
        jobs = batches.jobs
        poll(client, core, jobs, plan.progress, poll_s)
        calls = dict(pending)
        endpoint = next(iter(calls.values())).request.endpoint  # type: ignore[union-attr]
        for job in jobs:
            records = read_results(client, job)
            for index in job.indices:
                call = calls[index]
                answer, error = to_answer(endpoint, records[f"item-{index}"])
                call.batch_api = True
                if error is None:
                    call.outcome = "ok"
                    resolve_usage(call, answer)
                    if call.usage is not None:
                        cost_call(call, unknown=core.unknown_price)
                    if cache is not None:
                        cache.store(call, answer)
                else:
                    call.outcome, call.error = "error", error
                deliver(index, call, answer, error)
    return collect.finish(
        StopFlag(),
        return_exceptions=return_exceptions,
        mode="batch_api",
        batch_ids=[job.id for job in jobs] or None,
    )
