"""``tokenizer="server:URL"`` speaking vLLM's tokenization protocol.

No vLLM server can run here (it needs a GPU or a large CPU build), so a loopback stand-in
answers as vLLM's ``/tokenize`` is documented to (``TokenizeChatRequest`` and
``TokenizeCompletionRequest`` in, ``{"count", "max_model_len", "tokens"}`` out, no
``/apply-template``). It counts one token per whitespace-separated word plus two per
message, so that each answer shows what was asked.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from prismq_llmtools.openai.server_tokenizer import ServerTokenizer
from prismq_llmtools.openai.tokenizer import count_request_with


class _VLLMStandIn(BaseHTTPRequestHandler):
    asked: list[dict[str, Any]]

    def do_POST(self) -> None:
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/tokenize":
            self._answer(404, {"detail": "Not Found"})
            return
        self.asked.append(payload)
        if "messages" in payload:
            words = sum(len(str(m["content"]).split()) + 2 for m in payload["messages"])
            words += len(json.dumps(payload.get("tools", [])).split()) if "tools" in payload else 0
        else:
            words = len(payload["prompt"].split()) + (1 if payload["add_special_tokens"] else 0)
        self._answer(200, {"count": words, "max_model_len": 4096, "tokens": list(range(words))})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return


@pytest.fixture
def vllm() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    asked: list[dict[str, Any]] = []
    handler = type("Handler", (_VLLMStandIn,), {"asked": asked})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_chat_is_counted_by_vllms_chat_tokenize(vllm: tuple[str, list[dict[str, Any]]]) -> None:
    """A chat goes to /tokenize with its messages and tools, the model, the generation prompt
    on and no extra special tokens (as vLLM's chat endpoint renders it); the count is the
    answer's, asked once however often the same request is counted."""
    url, asked = vllm
    body = {
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "messages": [{"role": "user", "content": "three words here"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "temperature": 0.3,
        "max_tokens": 7,
    }
    first = count_request_with(body, endpoint=None, tokenizer=f"server:{url}/v1")
    again = count_request_with(
        {**body, "temperature": 0.9}, endpoint=None, tokenizer=f"server:{url}"
    )
    tools_words = len(json.dumps(body["tools"]).split())
    assert first.prompt_tokens == again.prompt_tokens == 3 + 2 + tools_words
    assert first.completion_cap == 7
    chat_asks = [a for a in asked if a.get("model")]
    assert chat_asks == [
        {
            "messages": body["messages"],
            "tools": body["tools"],
            "model": "Qwen/Qwen2.5-7B-Instruct",
            "add_generation_prompt": True,
            "add_special_tokens": False,
        }
    ]


def test_prompts_and_inputs_are_counted_as_text(vllm: tuple[str, list[dict[str, Any]]]) -> None:
    """Completions prompts and embeddings inputs go to /tokenize as a prompt with special
    tokens; token arrays count their length; output text is counted without special tokens."""
    url, asked = vllm
    tokenizer = ServerTokenizer(url)
    body = {"model": "m", "input": ["one two", "three", [5, 6, 7]]}
    assert tokenizer.count_request(body, "embeddings").prompt_tokens == (2 + 1) + (1 + 1) + 3
    assert tokenizer.count_text("four words of text") == 4
    assert tokenizer.kind == "vllm"
    assert {"prompt": "one two", "add_special_tokens": True} in asked
    assert {"prompt": "four words of text", "add_special_tokens": False} in asked
    tokenizer.close()
