"""The resource endpoints: models, files and batches (everything but inference)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prismq_llmtools.testing.simulator import api_errors, render
from prismq_llmtools.testing.simulator.api_errors import ApiError
from prismq_llmtools.testing.simulator.batches import BatchStore
from prismq_llmtools.testing.simulator.engine import Engine
from prismq_llmtools.testing.simulator.files import PURPOSES, FileStore, parse_multipart
from prismq_llmtools.testing.simulator.http import Reply, Request

__all__ = ["ResourceRoutes"]

_MODEL_CREATED = 1_700_000_000
_MAX_FILE_BYTES = 200 * 1024 * 1024


def _json(value: Mapping[str, Any], status: int = 200) -> Reply:
    return Reply(status=status, body=render.dumps(value))


def _page(data: list[dict[str, Any]], has_more: bool = False) -> Reply:
    return _json(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": has_more,
        }
    )


def _no_such(kind: str, object_id: str) -> ApiError:
    return ApiError(
        status=404,
        reason="not_found",
        message=f"No such {kind} object: {object_id}",
        type="invalid_request_error",
        param="id",
    )


def _outcome(value: Mapping[str, Any] | ApiError) -> Reply | ApiError:
    return value if isinstance(value, ApiError) else _json(value)


class ResourceRoutes:
    """``/v1/models``, ``/v1/files`` and ``/v1/batches``."""

    def __init__(self, *, engine: Engine, files: FileStore, batches: BatchStore) -> None:
        self._engine = engine
        self._files = files
        self._batches = batches

    def handle(self, request: Request) -> Reply | ApiError | None:
        """The reply, or None when no route matches."""
        parts = request.path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != "v1":
            return None
        resource, rest, method = parts[1], parts[2:], request.method
        if resource == "models" and method == "GET":
            return self._models(rest)
        if resource == "files":
            return self._file_route(request, rest)
        if resource == "batches":
            return self._batch_route(request, rest)
        return None

    def _models(self, rest: list[str]) -> Reply | ApiError | None:
        config = self._engine.config
        if not rest:
            return _page([_model(name) for name in config.models])
        if len(rest) != 1:
            return None
        if self._engine.resolve(rest[0]) is None:
            return api_errors.model_not_found(rest[0])
        return _json(_model(rest[0]))

    def _file_route(self, request: Request, rest: list[str]) -> Reply | ApiError | None:
        method = request.method
        if not rest and method == "POST":
            return self._upload(request)
        if not rest and method == "GET":
            purpose = request.query.get("purpose")
            return _page([f.to_dict() for f in self._files.listing(purpose)])
        if not rest or len(rest) > 2:
            return None
        stored = self._files.get(rest[0])
        if stored is None:
            return _no_such("File", rest[0])
        if len(rest) == 2 and rest[1] == "content" and method == "GET":
            return Reply(status=200, body=stored.data, content_type="application/octet-stream")
        if len(rest) == 1 and method == "GET":
            return _json(stored.to_dict())
        if len(rest) == 1 and method == "DELETE":
            self._files.delete(stored.id)
            return _json({"id": stored.id, "object": "file", "deleted": True})
        return None

    def _upload(self, request: Request) -> Reply | ApiError:
        try:
            fields = parse_multipart(request.headers.get("content-type", ""), request.body)
        except ValueError as exc:
            return api_errors.invalid_request(str(exc))
        purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace")
        if purpose not in PURPOSES:
            return api_errors.invalid_request(
                f"'{purpose}' is not a valid purpose: use one of {', '.join(sorted(PURPOSES))}.",
                param="purpose",
            )
        if "file" not in fields:
            return api_errors.invalid_request("A file is required.", param="file")
        filename, data = fields["file"]
        if len(data) > _MAX_FILE_BYTES:
            return api_errors.invalid_request("The file is larger than 200 MB.", param="file")
        stored = self._files.add(
            filename=filename or "upload", purpose=purpose, data=data, created_at=int(time.time())
        )
        return _json(stored.to_dict())

    def _batch_route(self, request: Request, rest: list[str]) -> Reply | ApiError | None:
        method = request.method
        if not rest and method == "POST":
            body = self._engine.parse(request.body)
            return body if isinstance(body, ApiError) else _outcome(self._batches.create(body))
        if not rest and method == "GET":
            try:
                limit = int(request.query.get("limit", "20"))
            except ValueError:
                return api_errors.invalid_request("limit must be an integer.", param="limit")
            limit = min(max(limit, 1), 100)
            return _json(self._batches.page(limit=limit, after=request.query.get("after")))
        if len(rest) == 1 and method == "GET":
            return _outcome(self._batches.retrieve(rest[0]))
        if len(rest) == 2 and rest[1] == "cancel" and method == "POST":
            return _outcome(self._batches.cancel(rest[0]))
        return None


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": _MODEL_CREATED, "owned_by": "openai"}
