"""Reading a Batch API input file: one JSON request per line, validated as OpenAI does."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_BATCH_LINES", "BatchLine", "read_batch_input"]

MAX_BATCH_LINES = 50_000
_MAX_ERRORS = 100


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One request of a batch."""

    custom_id: str
    body: Mapping[str, Any]


def _error(code: str, message: str, line: int | None, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def _check_line(
    number: int, record: Any, endpoint: str, seen: set[str], model: str | None
) -> dict[str, Any] | None:
    if not isinstance(record, dict):
        return _error("invalid_json_line", "Each line must be a JSON object.", number)
    custom_id = record.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return _error("missing_required_parameter", "custom_id is required.", number, "custom_id")
    if custom_id in seen:
        return _error(
            "duplicate_custom_id",
            f"The custom_id '{custom_id}' appears more than once.",
            number,
            "custom_id",
        )
    if record.get("method") != "POST":
        return _error("invalid_method", "method must be 'POST'.", number, "method")
    if record.get("url") != endpoint:
        return _error(
            "invalid_url",
            f"url must be '{endpoint}', the batch's endpoint.",
            number,
            "url",
        )
    body = record.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return _error("invalid_request", "body must be an object with a model.", number, "body")
    if model is not None and body["model"] != model:
        return _error(
            "mismatched_model",
            "All requests of a batch must use the same model.",
            number,
            "body.model",
        )
    return None


def read_batch_input(data: bytes, endpoint: str) -> tuple[list[BatchLine], list[dict[str, Any]]]:
    """The valid lines of an input file and the validation errors (1-based line numbers)."""
    lines: list[BatchLine] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [], [_error("invalid_file_format", "The file must be UTF-8 JSONL.", None)]
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            errors.append(_error("invalid_json_line", "This line is not valid JSON.", number))
            continue
        model = lines[0].body["model"] if lines else None
        problem = _check_line(number, record, endpoint, seen, model)
        if problem is not None:
            errors.append(problem)
        else:
            seen.add(record["custom_id"])
            lines.append(BatchLine(custom_id=record["custom_id"], body=record["body"]))
        if len(errors) >= _MAX_ERRORS:
            break
    if not lines and not errors:
        errors.append(_error("empty_file", "The input file has no requests.", None))
    if len(lines) > MAX_BATCH_LINES:
        errors.append(
            _error("too_many_requests", f"A batch holds at most {MAX_BATCH_LINES} requests.", None)
        )
    return lines, errors
