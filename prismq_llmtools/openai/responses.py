"""Turning response bodies (as JSON) back into the openai package's own response objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["response_from_body"]


def response_from_body(endpoint: str | None, body: Mapping[str, Any]) -> Any:
    """The openai model for a response ``body`` of ``endpoint``; a plain dict if unknown."""
    if endpoint == "chat":
        from openai.types.chat import ChatCompletion

        return ChatCompletion.model_validate(body)
    if endpoint == "embeddings":
        from openai.types import CreateEmbeddingResponse

        return CreateEmbeddingResponse.model_validate(body)
    if endpoint == "responses":
        from openai.types.responses import Response

        return Response.model_validate(body)
    return dict(body)
