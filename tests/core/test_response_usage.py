"""Reading usage from response objects: the quick attribute lookup agrees with getattr."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from openai.types.chat import ChatCompletion
from openai.types.responses import Response, ResponseUsage

from prismq_llmtools.openai import usage as usage_module
from prismq_llmtools.openai.usage import facts_from_response

NAMES = [
    "usage",
    "model",
    "id",
    "service_tier",
    "http_response",
    "parse",
    "input_tokens",
    "prompt_tokens",
    "_request_id",
    "_private",
    "_unset",
    "_described",
    "extra_field",
    "model_config",
    "model_dump",
    "mro",
    "__dict__",
    "missing",
]


def chat_body(**extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "priority",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "x"}}
        ],
        "usage": {
            "prompt_tokens": 20,
            "completion_tokens": 5,
            "total_tokens": 25,
            "prompt_tokens_details": {"cached_tokens": 8},
            "completion_tokens_details": {"reasoning_tokens": 2},
        },
        **extra,
    }


class Described:
    """A descriptor: pydantic hands a private attribute with this default to ``__get__``."""

    def __get__(self, obj: object, owner: type | None = None) -> str:
        return "from the descriptor"


class WithPrivate(pydantic.BaseModel):
    usage: dict[str, int] | None = None
    _private: str = "kept"
    _request_id: str | None = None
    _unset: str
    _described: Any = pydantic.PrivateAttr(default=Described())


class WithGetattr(pydantic.BaseModel):
    usage: dict[str, int] | None = None

    def __getattr__(self, name: str) -> Any:
        return f"computed {name}"


class WithProperty(pydantic.BaseModel):
    """A read name answered by a class attribute: never read from the instance's fields."""

    usage: dict[str, int] | None = None

    @property
    def model(self) -> str:
        return "from the property"


class Loose(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")


class RawLike:
    """The shape of ``with_raw_response``: headers, http_response, parse()."""

    def __init__(self, parsed: Any) -> None:
        self.http_response = object()
        self.headers = {"x-request-id": "req_7"}
        self._parsed = parsed

    def parse(self) -> Any:
        return self._parsed


def objects() -> list[Any]:
    chat = ChatCompletion.model_validate(chat_body())
    with_extras = ChatCompletion.model_validate(
        chat_body(http_response="an extra field", input_tokens=3, extra_field=1)
    )
    chat._request_id = "req_1"  # type: ignore[attr-defined]
    private = WithPrivate(usage={"prompt_tokens": 1})
    private._request_id = "req_2"
    response = Response.model_construct(
        id="resp_1",
        model="gpt-4o-mini",
        usage=ResponseUsage.model_construct(input_tokens=9, output_tokens=4, total_tokens=13),
    )
    unfinished = ChatCompletion.model_construct()
    return [
        chat,
        chat.usage,
        with_extras,
        with_extras.usage,
        private,
        WithGetattr(),
        WithProperty(usage={"prompt_tokens": 2}),
        Loose(usage=None, http_response=1),
        response,
        response.usage,
        unfinished,
        RawLike(chat),
        {"usage": {"prompt_tokens": 1}},
        object(),
    ]


@pytest.mark.parametrize("obj", objects(), ids=lambda o: type(o).__name__)
def test_quick_lookup_equals_getattr(obj: Any) -> None:
    """_attr is getattr(obj, name, None) for models, extras, privates and plain objects."""
    for name in NAMES:
        expected = getattr(obj, name, None)
        found = usage_module._attr(obj, name)
        assert found is expected or found == expected, name


@pytest.mark.parametrize("obj", objects(), ids=lambda o: type(o).__name__)
def test_facts_equal_the_plain_getattr_reading(obj: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """facts_from_response gives the same facts with and without the quick lookup."""
    quick = facts_from_response(obj)
    monkeypatch.setattr(usage_module, "_attr", lambda obj, name: getattr(obj, name, None))
    monkeypatch.setattr(usage_module, "_reader", _plain_reader)
    assert facts_from_response(obj) == quick


def _plain_reader(obj: Any) -> Any:
    if isinstance(obj, dict):
        return obj.get
    return lambda name: getattr(obj, name, None)


@pytest.mark.parametrize("obj", objects(), ids=lambda o: type(o).__name__)
def test_reader_equals_getattr(obj: Any) -> None:
    """_reader(obj)(name) is getattr(obj, name, None) (a dict's get for a dict)."""
    read = usage_module._reader(obj)
    for name in sorted(usage_module._READ_NAMES):
        expected = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        found = read(name)
        assert found is expected or found == expected, name


def test_chat_completion_facts() -> None:
    """A ChatCompletion's usage, model, id and tier are read as OpenAI reports them."""
    chat = ChatCompletion.model_validate(chat_body())
    facts = facts_from_response(chat)
    assert facts is not None
    assert facts.usage is not None
    assert (facts.usage.input_tokens, facts.usage.output_tokens) == (20, 5)
    assert (facts.usage.cached_input_tokens, facts.usage.reasoning_tokens) == (8, 2)
    assert (facts.model, facts.response_id, facts.service_tier) == (
        "gpt-4o-mini-2024-07-18",
        "chatcmpl-1",
        "priority",
    )


def test_quick_lookup_is_taken_only_for_pydantic_lookup() -> None:
    """Only classes whose lookup is pydantic's own take the quick path; any other goes
    through getattr (its own ``__getattr__`` may answer anything)."""
    chat = ChatCompletion.model_validate(chat_body())
    assert usage_module._learn_class(type(chat)) is not None
    assert "model_dump" in (usage_module._learn_class(type(chat)) or ())
    assert usage_module._learn_class(WithGetattr) is None
    assert usage_module._learn_class(RawLike) is None
    assert usage_module._attr(WithGetattr(), "http_response") == "computed http_response"


@pytest.mark.parametrize("obj", objects(), ids=lambda o: type(o).__name__)
def test_every_name_read_through_a_reader_is_declared(
    obj: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name the field-dict reader reads must be in _READ_NAMES, whose class attributes
    rule the reader out: otherwise a class attribute could be missed."""
    read: list[str] = []
    plain = usage_module._reader

    def recording(target: Any) -> Any:
        get = plain(target)

        def one(name: str) -> Any:
            read.append(name)
            return get(name)

        return one

    monkeypatch.setattr(usage_module, "_reader", recording)
    facts_from_response(obj)
    assert set(read) <= usage_module._READ_NAMES, set(read) - usage_module._READ_NAMES
