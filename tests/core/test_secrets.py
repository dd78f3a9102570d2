"""No secret leaks: one redaction covers every error type and every event type.

The error types and the event types are enumerated from the code (every ``LLMToolsError``
subclass in the package, every event of the schema), so a new one is covered without a new
test.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import typing
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

import prismq_llmtools
from prismq_llmtools import batched, configure_logging, retried
from prismq_llmtools.alerts import Alert, StructlogAction
from prismq_llmtools.call import Call
from prismq_llmtools.errors import BatchError, LLMToolsError
from prismq_llmtools.events import emit
from prismq_llmtools.redaction import redact
from prismq_llmtools.schema import EVENTS
from prismq_llmtools.testing.clock import FakeClock
from tests.drivers import Mode

from .fakes import Script, client

SECRETS = {
    "project key": "sk-proj-Zq3vCANARYpk0123456789abcdefXYZ",
    "legacy key": "sk-CANARYlegacy0123456789abcdefghijkl",
    "bearer token": "eyJhbGciOiJIUzI1NiJ9.CANARYbearer.c2lnbmF0dXJl",
    "organization": "org-CANARYorg0123456789abcdEF",
    "project id": "proj_CANARYproj0123456789abcdEF",
    "azure key": "0123456789abcdef0123456789ABCDEF",
}
"""Canary secrets, one of each kind, none of them a real credential."""


def echoed(prefix: str = "") -> str:
    """A server error text that echoes every canary, the way proxies echo headers."""
    s = SECRETS
    return (
        f"{prefix}Incorrect API key provided: {s['project key']}; old key {s['legacy key']}."
        f" Bearer {s['bearer token']} for {s['organization']} in {s['project id']}"
        f" (deployment key {s['azure key']}) header api-key={s['azure key']}"
    )


def leaked(text: str) -> list[str]:
    """The canaries (or a 12-character head of one) found in ``text``."""
    return [name for name, secret in SECRETS.items() if secret[:12] in text]


@pytest.mark.parametrize(
    "text",
    [
        "{secret}",
        "key {secret}.",
        '{{"error": "bad key", "key": "{secret}"}}',
        "x={secret}&y=1",
        "Authorization: Bearer {secret}",
        "'{secret}'",
        "key:{secret}",
        "{secret}\n",
    ],
)
@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_redaction_covers_each_secret_in_any_position(kind: str, text: str) -> None:
    """Each kind of secret is redacted at the start, inside words' punctuation, in JSON."""
    secret = SECRETS[kind]
    if kind == "bearer token" and "Bearer" not in text:
        secret = f"Bearer {secret}"
    assert leaked(redact(text.format(secret=secret))) == []


def test_an_openai_key_is_redacted_even_glued_to_a_word() -> None:
    """An sk- key after an underscore, or a key-length one after a letter, is still a key."""
    key = SECRETS["project key"]
    assert leaked(redact(f"OPENAI_API_KEY_{key} and x{key}")) == []


def test_redaction_keeps_what_is_not_a_secret() -> None:
    """Ids, hashes and ordinary words survive: a 64-hex digest, request ids, short hex."""
    text = (
        "req_0123456789abcdef0123456789abcdef call 1a2b3c4d00000001 model gpt-4o-mini "
        "digest " + "ab" * 32 + " organization of skills, a task-queue-of-projects, cyborg-arm1"
    )
    assert redact(text) == text


def _all_error_types() -> list[type[LLMToolsError]]:
    for module in pkgutil.walk_packages(prismq_llmtools.__path__, "prismq_llmtools."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    found: list[type[LLMToolsError]] = []
    todo: list[type[LLMToolsError]] = [LLMToolsError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(set(found), key=lambda c: f"{c.__module__}.{c.__qualname__}")


def _argument(annotation: Any) -> Any:
    """A value for a parameter of ``annotation`` that carries the canaries where it can."""
    text = typing.get_origin(annotation) or annotation
    if annotation in (str, "str") or text is object or annotation == "object":
        return echoed()
    if annotation in (int, "int") or "int | None" in str(annotation):
        return 400
    if annotation in (float, "float"):
        return 1.5
    if "BaseException" in str(annotation):
        if "dict" in str(annotation):
            return {0: RuntimeError(echoed()), 3: ValueError(echoed("second: "))}
        return RuntimeError(echoed())
    if "list" in str(annotation):
        return [echoed(), None]
    return echoed()


ERROR_TYPES = _all_error_types()


@pytest.mark.parametrize("error_type", ERROR_TYPES, ids=lambda c: c.__qualname__)
def test_no_error_type_repeats_a_secret(error_type: type[LLMToolsError]) -> None:
    """Built from texts that echo every canary, no error's str() or repr() holds one."""
    signature = inspect.signature(error_type.__init__)
    hints = {
        name: p.annotation
        for name, p in signature.parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    positional = [
        _argument(hints[name])
        for name, p in signature.parameters.items()
        if name in hints and p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty
    ]
    keywords = {
        name: _argument(hints[name])
        for name, p in signature.parameters.items()
        if name in hints and p.kind is p.KEYWORD_ONLY
    }
    if not hints:  # a plain message: Exception(*args)
        positional = [echoed()]
    error = error_type(*positional, **keywords)
    assert leaked(str(error)) == [], str(error)
    assert leaked(repr(error)) == [], repr(error)


def test_every_error_type_is_found() -> None:
    """The enumeration reaches the error tree and the errors other modules define."""
    names = {c.__qualname__ for c in ERROR_TYPES}
    assert {"BatchError", "StateStoreError", "AlertRuleError", "CorruptEntry"} <= names


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_no_event_type_writes_a_secret(event: str, tmp_path: Path) -> None:
    """Every field of every event of the schema, given the canaries, is written redacted."""
    log = tmp_path / "events.jsonl"
    configure_logging(file=log)
    call = Call(site=echoed("site "), operation=echoed("op "))
    fields: dict[str, Any] = {f.name: echoed() for f in EVENTS[event].fields}
    fields["nested"] = {"labels": [echoed()], echoed(): 1}
    if event.startswith("alert."):
        alert = Alert(
            state="fired" if event == "alert.fired" else "resolved",
            rule=echoed(),
            severity="critical",
            value=1.0,
            threshold=0.5,
            group={"site": echoed()},
            labels={"team": echoed()},
            message=echoed(),
            at=0.0,
        )
        StructlogAction()(alert)
    else:
        emit(call, event, **fields)
    text = log.read_text()
    assert event in text
    assert leaked(text) == [], text


def test_batch_error_never_repeats_the_key_a_server_echoes(mode: Mode) -> None:
    """A batch whose server answers with the key in its error text raises a BatchError whose
    str() and repr() hold no secret, while the original errors stay in ``failures``."""

    body = {"error": {"message": echoed(), "code": "invalid_api_key"}}
    api = client(Script(*[httpx2.Response(401, json=body) for _ in range(3)]), mode)

    @batched(max_concurrency=1)
    @retried(attempts=1, clock=FakeClock())
    @mode.make
    def ask(text: str) -> Any:
        return api.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
        )

    with pytest.raises(BatchError) as info:
        mode.batch(ask, ["a", "b", "c"])
    assert leaked(str(info.value)) == [], str(info.value)
    assert leaked(repr(info.value)) == [], repr(info.value)
    assert all(isinstance(e, openai.AuthenticationError) for e in info.value.failures.values())


def test_a_secret_in_the_log_file_is_never_written_in_json(tmp_path: Path) -> None:
    """The JSON line itself (not only its parsed values) holds no canary."""
    log = tmp_path / "events.jsonl"
    configure_logging(file=log)
    emit(None, "llm.store.error", error=echoed(), store="redis://x", policy="allow")
    (line,) = log.read_text().splitlines()
    assert leaked(line) == []
    assert "[REDACTED]" in json.loads(line)["error"]
