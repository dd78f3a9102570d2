"""The Batch API lifecycle through the official client, on a fake clock or a fast time scale."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import openai
import pytest

from prismq_llmtools.openai.tokens import count_request
from prismq_llmtools.testing import BatchTiming, FakeClock, Simulator, SimulatorConfig
from prismq_llmtools.testing.pytest_plugin import SimulatorFactory

TIMING = BatchTiming(validating_s=10, per_request_s=5, finalizing_s=10, cancelling_s=10)


def _line(custom_id: str, content: str, **extra: Any) -> dict[str, Any]:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def _upload(client: openai.OpenAI, lines: list[dict[str, Any]]) -> str:
    data = "\n".join(json.dumps(line) for line in lines).encode()
    uploaded = client.files.create(file=("requests.jsonl", io.BytesIO(data)), purpose="batch")
    assert uploaded.purpose == "batch"
    assert uploaded.bytes == len(data)
    return uploaded.id


def _jsonl(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(simulator_factory: SimulatorFactory, clock: FakeClock) -> Simulator:
    return simulator_factory(SimulatorConfig(batch=TIMING, rpm=1), clock=clock.now)


def test_full_lifecycle_with_output_and_error_files(sim: Simulator, clock: FakeClock) -> None:
    """validating -> in_progress -> finalizing -> completed; good lines out, bad lines to errors."""
    lines = [_line(f"item-{i}", f"Title for story {i}") for i in range(3)]
    lines.append(_line("too-long", "x", max_tokens=10**6))  # above the model's output limit
    with sim.client() as client:
        batch = client.batches.create(
            input_file_id=_upload(client, lines),
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"job": "titles"},
        )
        assert batch.status == "validating"
        assert batch.request_counts is not None
        assert batch.request_counts.total == 4
        clock.advance(10)
        batch = client.batches.retrieve(batch.id)
        assert batch.status == "in_progress"
        assert batch.in_progress_at is not None
        clock.advance(10)  # two of four lines are due
        batch = client.batches.retrieve(batch.id)
        assert batch.request_counts is not None
        assert batch.request_counts.completed == 2
        clock.advance(10)
        batch = client.batches.retrieve(batch.id)
        assert batch.status == "finalizing"
        clock.advance(10)
        batch = client.batches.retrieve(batch.id)
        assert batch.status == "completed"
        assert batch.request_counts is not None
        assert (batch.request_counts.completed, batch.request_counts.failed) == (3, 1)
        assert batch.completed_at is not None
        assert batch.completed_at >= batch.created_at
        assert batch.metadata == {"job": "titles"}
        output = _jsonl(client, batch.output_file_id)
        errors = _jsonl(client, batch.error_file_id)
        assert client.files.retrieve(batch.output_file_id or "").purpose == "batch_output"
    assert [line["custom_id"] for line in output] == ["item-0", "item-1", "item-2"]
    first = output[0]["response"]
    assert first["status_code"] == 200
    assert first["request_id"].startswith("req_")
    assert first["body"]["object"] == "chat.completion"
    assert first["body"]["usage"]["prompt_tokens"] == count_request(lines[0]["body"]).prompt_tokens
    assert errors[0]["custom_id"] == "too-long"
    assert errors[0]["response"]["status_code"] == 400
    assert errors[0]["response"]["body"]["error"]["code"] == "invalid_value"
    stats = sim.stats()
    assert stats.batch_requests == 4
    assert stats.rate_limited == 0  # rpm=1 does not apply to batch lines
    billed = sum(line["response"]["body"]["usage"]["prompt_tokens"] for line in output)
    assert stats.prompt_tokens == billed


def test_batch_lines_match_synchronous_answers(sim: Simulator, clock: FakeClock) -> None:
    """A batch line gets the answer the same request gets synchronously."""
    line = _line("only", "Deterministic?")
    with sim.client() as client:
        batch = client.batches.create(
            input_file_id=_upload(client, [line]),
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        clock.advance(100)
        batch = client.batches.retrieve(batch.id)
        direct = client.chat.completions.create(**line["body"])
        output = _jsonl(client, batch.output_file_id)
    assert output[0]["response"]["body"]["choices"][0]["message"]["content"] == (
        direct.choices[0].message.content
    )


def test_cancel_keeps_finished_lines(sim: Simulator, clock: FakeClock) -> None:
    """Cancelling in progress -> cancelling -> cancelled, with the lines done so far."""
    lines = [_line(f"c{i}", f"story {i}") for i in range(5)]
    with sim.client() as client:
        batch = client.batches.create(
            input_file_id=_upload(client, lines),
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        clock.advance(10 + 10)
        cancelling = client.batches.cancel(batch.id)
        assert cancelling.status == "cancelling"
        clock.advance(10)
        cancelled = client.batches.retrieve(batch.id)
        assert cancelled.status == "cancelled"
        assert cancelled.request_counts is not None
        assert cancelled.request_counts.completed == 2
        assert len(_jsonl(client, cancelled.output_file_id)) == 2
        with pytest.raises(openai.ConflictError):
            client.batches.cancel(batch.id)


def test_invalid_input_fails_the_batch_with_line_errors(sim: Simulator, clock: FakeClock) -> None:
    """Duplicate ids, a wrong url and bad JSON fail validation, each error naming its line."""
    wrong_url = _line("b", "x")
    wrong_url["url"] = "/v1/embeddings"
    data = "\n".join(
        [json.dumps(_line("a", "x")), json.dumps(_line("a", "y")), json.dumps(wrong_url), "{"]
    )
    with sim.client() as client:
        uploaded = client.files.create(
            file=("bad.jsonl", io.BytesIO(data.encode())), purpose="batch"
        )
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        clock.advance(10)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "failed"
    assert batch.errors is not None
    assert batch.errors.data is not None
    found = {(error.code, error.line) for error in batch.errors.data}
    assert found == {("duplicate_custom_id", 2), ("invalid_url", 3), ("invalid_json_line", 4)}


def test_create_rejects_unknown_files_and_wrong_purpose(sim: Simulator) -> None:
    """A missing input file or one not uploaded for 'batch' is a 400."""
    with sim.client() as client:
        with pytest.raises(openai.BadRequestError):
            client.batches.create(
                input_file_id="file-missing",
                endpoint="/v1/chat/completions",
                completion_window="24h",
            )
        other = client.files.create(file=("x.jsonl", io.BytesIO(b"{}")), purpose="user_data")
        with pytest.raises(openai.BadRequestError):
            client.batches.create(
                input_file_id=other.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve("batch_missing")


def test_expired_lines_go_to_the_error_file(simulator_factory: SimulatorFactory) -> None:
    """Lines not done within the 24 h window are reported as batch_expired."""
    clock = FakeClock()
    slow = BatchTiming(validating_s=0, per_request_s=20 * 3600, finalizing_s=0)
    sim = simulator_factory(SimulatorConfig(batch=slow), clock=clock.now)
    with sim.client() as client:
        batch = client.batches.create(
            input_file_id=_upload(client, [_line("a", "1"), _line("b", "2")]),
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        clock.advance(25 * 3600)
        batch = client.batches.retrieve(batch.id)
        assert batch.status == "expired"
        errors = _jsonl(client, batch.error_file_id)
    assert [(e["custom_id"], e["error"]["code"]) for e in errors] == [("b", "batch_expired")]


def test_list_batches_newest_first_with_pagination(sim: Simulator) -> None:
    """GET /v1/batches pages newest first; the client's auto-pagination walks them all."""
    with sim.client() as client:
        file_id = _upload(client, [_line("a", "1")])
        created = [
            client.batches.create(
                input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
            ).id
            for _ in range(3)
        ]
        first_page = client.batches.list(limit=2)
        assert [b.id for b in first_page.data] == created[::-1][:2]
        assert first_page.has_more
        assert [b.id for b in client.batches.list(limit=2)] == created[::-1]


def test_embeddings_batch_on_a_fast_time_scale(simulator_factory: SimulatorFactory) -> None:
    """With time_scale 1e5 a batch of embeddings completes within a fraction of a second."""
    sim = simulator_factory(batch=BatchTiming(time_scale=1e5))
    lines = [
        {
            "custom_id": f"e{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": f"text {i}"},
        }
        for i in range(20)
    ]
    with sim.client() as client:
        batch = client.batches.create(
            input_file_id=_upload(client, lines), endpoint="/v1/embeddings", completion_window="24h"
        )
        deadline = time.monotonic() + 60  # (reached only by a batch that never completes)
        while batch.status not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(0.02)
            batch = client.batches.retrieve(batch.id)
        assert batch.status == "completed"
        output = _jsonl(client, batch.output_file_id)
    assert len(output) == 20
    assert len(output[0]["response"]["body"]["data"][0]["embedding"]) == 1536


def test_files_list_retrieve_delete(sim: Simulator) -> None:
    """Uploaded files can be listed, retrieved, read back and deleted."""
    with sim.client() as client:
        uploaded = client.files.create(
            file=("notes.jsonl", io.BytesIO(b'{"a": 1}\n')), purpose="batch"
        )
        assert client.files.retrieve(uploaded.id).filename == "notes.jsonl"
        assert client.files.content(uploaded.id).content == b'{"a": 1}\n'
        assert uploaded.id in [f.id for f in client.files.list()]
        assert client.files.delete(uploaded.id).deleted
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve(uploaded.id)
        with pytest.raises(openai.BadRequestError):
            client.files.create(file=("x", io.BytesIO(b"")), purpose="nonsense")  # type: ignore[arg-type]
