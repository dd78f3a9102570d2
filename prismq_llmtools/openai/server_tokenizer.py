"""``tokenizer="server:URL"``: ask the server that bills the request to count it.

What each server offers (their own documentation and source):

- **llama.cpp** (``llama-server``): ``POST /apply-template`` renders chat messages (and
  tools) through the model's chat template exactly as ``/v1/chat/completions`` does and
  answers ``{"prompt": ...}``; ``POST /tokenize`` with ``{"content", "add_special",
  "parse_special"}`` answers ``{"tokens": [...]}``. A chat request bills the tokens of the
  rendered prompt, tokenized with special tokens added and parsed, as the server does before
  generating; a completions or embeddings input bills its own tokens the same way.
- **vLLM**: ``POST /tokenize`` takes either chat ``messages`` (rendered with the model's chat
  template, ``add_generation_prompt`` true and no extra special tokens, as its chat endpoint
  does) or a ``prompt``, and answers ``{"count": ...}``.

Which kind a server is, is found once, by asking ``/apply-template`` then vLLM's chat
``/tokenize`` with a one-word message; a server with neither is a :class:`TokenizerError`
that says so. Counts are memoised like local counts (a bounded LRU, keyed by the fields that
shape the prompt), so a repeated system prompt or a retried request asks the server once.
The requests are synchronous, made where the count is needed: from an ``async`` site they
block the event loop for the duration of one loopback or LAN round trip, once per distinct
request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from prismq_llmtools.call import current_call
from prismq_llmtools.errors import RequestFormatError, TokenizerError
from prismq_llmtools.openai.request import counted_endpoint
from prismq_llmtools.openai.template_input import count_plain_input, responses_as_messages
from prismq_llmtools.openai.textcount import TokenMemo
from prismq_llmtools.usage import TokenEstimate

if TYPE_CHECKING:
    import openai

    from prismq_llmtools.openai.tokens import Endpoint

__all__ = ["ServerTokenizer"]

Kind = Literal["llama.cpp", "vllm"]

# Request fields that reach a chat template: the rest (temperature, max_tokens ...) do not
# change the prompt, so they are neither sent nor part of the memo key.
_TEMPLATE_FIELDS = (
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "chat_template_kwargs",
)
_PROBE = [{"role": "user", "content": "hi"}]


class ServerTokenizer:
    """Counts with the chat template and tokenizer of a llama.cpp or vLLM server.

    Args:
        url: The server's base URL; a trailing ``/v1`` (the OpenAI client's ``base_url``) is
            allowed and ignored.
        timeout_s: How long one tokenization request may take.
        memo_entries, memo_chars: Bounds of the memo of counts.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        memo_entries: int = 4096,
        memo_chars: int = 8_000_000,
    ) -> None:
        base = url.rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        self._base = base
        self.name = f"server:{_without_credentials(base)}"
        self._timeout_s = timeout_s
        self._memo = TokenMemo(memo_entries, memo_chars)
        self._kind: Kind | None = None
        self._client: openai.OpenAI | None = None
        self._lock = threading.Lock()  # finding the kind (which makes requests)
        self._client_lock = threading.Lock()

    @property
    def kind(self) -> Kind:
        """``"llama.cpp"`` or ``"vllm"``, found by asking the server on first use."""
        if self._kind is None:
            with self._lock:
                if self._kind is None:
                    self._kind = self._detect()
        return self._kind

    def count_request(self, body: Mapping[str, Any], endpoint: Endpoint | None) -> TokenEstimate:
        """The prompt tokens the server will bill for ``body``, and its completion cap."""
        from prismq_llmtools.openai.tokens import completion_cap

        chosen = counted_endpoint(body, endpoint)
        model: str = body["model"]  # counted_endpoint checked it
        if chosen in ("chat", "responses"):
            prompt = self._count_chat(body, chosen)
        else:
            prompt = count_plain_input(
                body, chosen, lambda text: self._count_plain(text, special=True)
            )
        return TokenEstimate(
            model=model,
            encoding=self.name,
            prompt_tokens=prompt,
            completion_cap=completion_cap(body, chosen),
        )

    def count_text(self, text: str) -> int:
        """Tokens of ``text`` alone: no template, no special tokens added or parsed."""
        return self._count_plain(text, special=False)

    def close(self) -> None:
        """Close the connection to the server (a later count opens one again)."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- the two protocols -------------------------------------------------------------

    def _count_chat(self, body: Mapping[str, Any], endpoint: Endpoint) -> int:
        if endpoint == "responses":
            fields: dict[str, Any] = {"messages": responses_as_messages(body)}
        else:
            fields = {name: body[name] for name in _TEMPLATE_FIELDS if name in body}
            if not isinstance(fields.get("messages"), list):
                raise RequestFormatError("messages must be a list of messages")
        key = (f"{self.name}|chat", json.dumps(fields, sort_keys=True, default=str))
        known = self._memo.get(key)
        if known is not None:
            return known
        if self.kind == "llama.cpp":
            prompt = self._post("/apply-template", fields).get("prompt")
            if not isinstance(prompt, str):
                raise TokenizerError(f"{self.name}: /apply-template answered no prompt")
            count = self._llama_tokens(prompt, special=True)
        else:
            count = self._vllm_count(
                {
                    **fields,
                    "model": body.get("model"),
                    "add_generation_prompt": True,
                    "add_special_tokens": False,
                }
            )
        self._memo.put(key, count)
        return count

    def _count_plain(self, text: str, *, special: bool) -> int:
        key = (f"{self.name}|{'special' if special else 'text'}", text)
        known = self._memo.get(key)
        if known is not None:
            return known
        if self.kind == "llama.cpp":
            count = self._llama_tokens(text, special=special)
        else:
            count = self._vllm_count({"prompt": text, "add_special_tokens": special})
        self._memo.put(key, count)
        return count

    def _llama_tokens(self, text: str, *, special: bool) -> int:
        answer = self._post(
            "/tokenize", {"content": text, "add_special": special, "parse_special": special}
        )
        tokens = answer.get("tokens")
        if not isinstance(tokens, list):
            raise TokenizerError(f"{self.name}: /tokenize answered no tokens")
        return len(tokens)

    def _vllm_count(self, payload: Mapping[str, Any]) -> int:
        count = self._post("/tokenize", payload).get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise TokenizerError(f"{self.name}: /tokenize answered no count")
        return count

    def _detect(self) -> Kind:
        """Which protocol the server speaks, from one small request to each."""
        statuses: list[str] = []
        status, answer = self._try("/apply-template", {"messages": _PROBE})
        if status == 200 and isinstance(answer.get("prompt"), str):
            return "llama.cpp"
        statuses.append(f"/apply-template: {status}")
        status, answer = self._try("/tokenize", {"messages": _PROBE, "add_generation_prompt": True})
        if status == 200 and isinstance(answer.get("count"), int):
            return "vllm"
        statuses.append(f"/tokenize with messages: {status}")
        raise TokenizerError(
            f"{self.name} offers no way to count a chat prompt: neither llama.cpp's "
            f"/apply-template and /tokenize nor vLLM's /tokenize for chat messages "
            f"(answered {'; '.join(statuses)}); set the site's tokenizer to a tiktoken "
            f"encoding or hf:PATH instead"
        )

    # -- HTTP ----------------------------------------------------------------------------

    def _http(self) -> openai.OpenAI:
        if self._client is None:
            import openai

            with self._client_lock:
                if self._client is None:
                    # The official client's documented way to reach endpoints it has no
                    # method for; no API key is sent (the placeholder is never checked).
                    self._client = openai.OpenAI(
                        base_url=self._base,
                        api_key="unused",
                        timeout=self._timeout_s,
                        max_retries=1,
                    )
        return self._client

    def _try(self, path: str, payload: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        import openai

        # A count is not a request of the Call being counted: the client boundary, which
        # records every request made inside a Call, must not see it.
        outside = current_call.set(None)
        try:
            answer = self._http().post(path, body=payload, cast_to=object)
        except openai.APIStatusError as exc:
            body = exc.body
            return exc.status_code, body if isinstance(body, dict) else {}
        except openai.APIConnectionError as exc:
            raise TokenizerError(f"{self.name}: cannot reach it ({type(exc).__name__})") from exc
        finally:
            current_call.reset(outside)
        return 200, answer if isinstance(answer, dict) else {}

    def _post(self, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        status, answer = self._try(path, payload)
        if status != 200:
            error = answer.get("error", answer)
            detail = error.get("message") if isinstance(error, dict) else error
            raise TokenizerError(f"{self.name}: {path} answered {status}: {detail or answer}")
        return answer


def _without_credentials(url: str) -> str:
    """``url`` without a ``user:password@``, so that the name is safe to log."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
