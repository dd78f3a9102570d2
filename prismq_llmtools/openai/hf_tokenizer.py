"""``tokenizer="hf:PATH"``: a Hugging Face ``tokenizer.json``, read by the ``tokenizers``
package (the ``hf`` extra), for a server that offers no tokenization endpoint.

Text is tokenized exactly as the model's tokenizer does. Chat messages are rendered with the
model's chat template when its directory has one (``tokenizer_config.json`` or
``chat_template.jinja``: :mod:`prismq_llmtools.openai.chat_template`), as ``transformers``
renders it: exact wherever the server renders the same template. Without one, messages are
framed as ChatML (``<|im_start|>role\\ncontent<|im_end|>\\n`` per message, then
``<|im_start|>assistant\\n``), the framing of the Qwen, SmolLM and many other families; a
template that frames differently, or adds text of its own (a default system prompt, a date,
tool instructions), makes that count an estimate, as ``docs/counting.md`` measures. Tool
definitions are then counted as their JSON text.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prismq_llmtools.errors import RequestFormatError, TokenizerError
from prismq_llmtools.openai.chat_template import ChatTemplate
from prismq_llmtools.openai.request import counted_endpoint
from prismq_llmtools.openai.template_input import count_plain_input, responses_as_messages
from prismq_llmtools.openai.textcount import TokenMemo
from prismq_llmtools.usage import TokenEstimate

if TYPE_CHECKING:
    import tokenizers

    from prismq_llmtools.openai.tokens import Endpoint

__all__ = ["HFTokenizer", "render_chatml"]


class HFTokenizer:
    """Counts with a ``tokenizer.json``, loaded on first use.

    Args:
        path: The ``tokenizer.json`` file, or a directory holding one.
    """

    def __init__(self, path: str, *, memo_entries: int = 4096, memo_chars: int = 8_000_000) -> None:
        self._path = Path(path)
        self.name = f"hf:{path}"
        self._memo = TokenMemo(memo_entries, memo_chars)
        self._loaded: tokenizers.Tokenizer | None = None
        self._template: ChatTemplate | None = None
        self._lock = threading.Lock()

    def _tokenizer(self) -> tokenizers.Tokenizer:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._load()
        return self._loaded

    def _load(self) -> tokenizers.Tokenizer:
        directory = self._path if self._path.is_dir() else self._path.parent
        self._template = ChatTemplate.find(directory)
        try:
            import tokenizers
        except ImportError as exc:
            raise TokenizerError(
                f"{self.name} needs the tokenizers package: pip install 'prismq_llmtools[hf]'"
            ) from exc
        path = self._path / "tokenizer.json" if self._path.is_dir() else self._path
        try:
            return tokenizers.Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust loader raises a bare Exception for any bad file
            raise TokenizerError(f"{self.name}: cannot read {path}: {exc}") from exc

    def _count(self, text: str, *, special: bool) -> int:
        key = (f"{self.name}|{'special' if special else 'text'}", text)
        known = self._memo.get(key)
        if known is not None:
            return known
        count = len(self._tokenizer().encode(text, add_special_tokens=special))
        self._memo.put(key, count)
        return count

    def count_text(self, text: str) -> int:
        """Tokens of ``text`` alone, no special tokens added."""
        return self._count(text, special=False)

    def close(self) -> None:
        """Nothing to release: the tokenizer is in memory."""

    def count_request(self, body: Mapping[str, Any], endpoint: Endpoint | None) -> TokenEstimate:
        """Prompt tokens of ``body`` (chat framing estimated as ChatML) and its completion cap."""
        from prismq_llmtools.openai.tokens import completion_cap

        chosen = counted_endpoint(body, endpoint)
        model: str = body["model"]  # counted_endpoint checked it
        if chosen in ("chat", "responses"):
            chat = responses_as_messages(body) if chosen == "responses" else body.get("messages")
            if not isinstance(chat, list):
                raise RequestFormatError("messages must be a list of messages")
            self._tokenizer()  # loads the template too
            if self._template is not None:
                text = self._template.render(chat, body.get("tools"))
            else:
                text = render_chatml(chat, body.get("tools"))
            prompt = self._count(text, special=False)
        else:
            prompt = count_plain_input(body, chosen, lambda text: self._count(text, special=True))
        return TokenEstimate(
            model=model,
            encoding=self.name,
            prompt_tokens=prompt,
            completion_cap=completion_cap(body, chosen),
        )


def render_chatml(messages: Sequence[Any], tools: object = None) -> str:
    """The ChatML text of ``messages`` (and ``tools`` as JSON in a first system block), with
    the assistant's generation prompt: the framing an ``hf:`` count assumes."""
    parts: list[str] = []
    if tools:
        parts.append(f"<|im_start|>system\n{json.dumps(tools, ensure_ascii=False)}<|im_end|>\n")
    for message in messages:
        if not isinstance(message, Mapping):
            raise RequestFormatError("each message must be an object")
        parts.append(f"<|im_start|>{message.get('role', 'user')}\n{_text(message)}<|im_end|>\n")
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def _text(message: Mapping[str, Any]) -> str:
    """A message's text: its content (text parts joined), then any tool calls as JSON."""
    content = message.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, Sequence):
        text = "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    else:
        raise RequestFormatError("a message's content must be a string or a list of parts")
    calls = message.get("tool_calls") or message.get("function_call")
    if calls:
        text += json.dumps(calls, ensure_ascii=False)
    return text
