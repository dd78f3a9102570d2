"""Cache keys: canonical, type-exact, order-free, and blind to secrets and transport."""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import threading
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prismq_llmtools.cache.key import (
    UnkeyableArgument,
    digest,
    function_fingerprint,
    key_digest,
    key_of_arguments,
    normalise,
)


def key(**bound: Any) -> str:
    return key_of_arguments("site", bound)


def test_dict_order_is_irrelevant_at_every_depth() -> None:
    """Two requests that differ only in the order of dict keys share one key."""
    a = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    b = {"temperature": 0, "messages": [{"content": "hi", "role": "user"}], "model": "m"}
    assert key(**a) == key(**b)


def test_types_are_kept_apart() -> None:
    """1, 1.0, True and "1" can change an answer (a prompt shows them differently): 4 keys."""
    assert len({key(x=1), key(x=1.0), key(x=True), key(x="1")}) == 4
    assert key(x=[1, 2]) != key(x=(1, 2))
    assert key(x=0.0) != key(x=-0.0)


def test_list_order_matters() -> None:
    """Message order changes the conversation, so it changes the key."""
    one = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    assert key(messages=one) != key(messages=list(reversed(one)))


def test_secrets_and_transport_settings_are_not_part_of_the_key() -> None:
    """Rotating an API key or changing a timeout keeps the cache valid."""
    base = key(messages=["hi"], model="m")
    assert key(messages=["hi"], model="m", api_key="sk-proj-AAAAAAAAAAAAAAAAAAAAAA") == base
    assert key(messages=["hi"], model="m", timeout=30, extra_headers={"x": "y"}) == base
    assert key(messages=["hi"], model="m", secret="sk-proj-BBBBBBBBBBBBBBBBBBBBBBBB") == base
    assert key(messages=["hi"], model="m", lock=threading.Lock()) == base


def test_openai_client_arguments_are_volatile() -> None:
    """A client object (holding the key) is never hashed into the key."""
    import openai

    a = openai.OpenAI(api_key="sk-aaaaaaaaaaaaaaaaaaaaaaaa", base_url="http://127.0.0.1:9/v1")
    b = openai.OpenAI(api_key="sk-bbbbbbbbbbbbbbbbbbbbbbbb", base_url="http://127.0.0.1:9/v1")
    assert key(prompt="p", llm=a) == key(prompt="p", llm=b)


def test_none_api_parameters_mean_not_sent() -> None:
    """``temperature=None`` sends nothing, exactly like leaving it out."""
    assert key(model="m", messages=[], temperature=None) == key(model="m", messages=[])
    assert key(model="m", style=None) != key(model="m")  # not an API parameter: a value


def test_sdk_not_given_sentinel_means_not_sent() -> None:
    """The openai SDK's NOT_GIVEN is the same as an absent argument."""
    import openai

    assert key(model="m", seed=openai.NOT_GIVEN) == key(model="m")


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Options:
    tone: str
    words: int


def test_rich_values_have_stable_forms() -> None:
    """Enums, dataclasses, sets, Decimals and pydantic models normalise deterministically."""
    from openai.types.chat import ChatCompletionMessage

    message = ChatCompletionMessage(role="assistant", content="hi")
    value = {
        "color": Color.RED,
        "options": Options("dry", 5),
        "tags": {"b", "a"},
        "price": Decimal("1.5"),
        "message": message,
    }
    assert digest(normalise(value)) == digest(normalise(dict(reversed(value.items()))))
    assert digest(normalise(Options("dry", 5))) != digest(normalise(Options("dry", 6)))
    assert digest(normalise(Color.RED)) != digest(normalise("red"))


def test_objects_are_keyed_by_their_state() -> None:
    """A method's instance is part of the key through its attributes."""

    class Writer:
        def __init__(self, tone: str) -> None:
            self.tone = tone
            self.lock = threading.Lock()

    assert key_of_arguments("s", {"x": 1}, Writer("dry")) == key_of_arguments(
        "s", {"x": 1}, Writer("dry")
    )
    assert key_of_arguments("s", {"x": 1}, Writer("dry")) != key_of_arguments(
        "s", {"x": 1}, Writer("warm")
    )


def test_functions_are_keyed_by_code_and_captured_values() -> None:
    """Two lambdas with the same code but different captured values are different."""

    def make(n: int) -> Any:
        return lambda x: x * n

    assert key(f=make(2)) == key(f=make(2))
    assert key(f=make(2)) != key(f=make(3))


def test_cycles_are_unkeyable() -> None:
    """A self-referencing structure raises UnkeyableArgument instead of recursing forever."""
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(UnkeyableArgument):
        normalise(loop)


def test_site_identity_is_part_of_the_key() -> None:
    """The same arguments at two sites are two entries."""
    assert key_of_arguments("a", {"x": 1}) != key_of_arguments("b", {"x": 1})


def test_function_fingerprint_follows_the_source() -> None:
    """Editing a function (its prompt template, say) changes its fingerprint."""

    def one() -> str:
        return "Title for: {x}"

    def two() -> str:
        return "Summary of: {x}"

    assert function_fingerprint(one) != function_fingerprint(two)
    assert len(digest("x")) == 32


# -- property: different requests never share a key -----------------------------------

_text = st.text(max_size=12)
_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, width=32),
    _text,
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant"]), "content": _text},
    optional={"name": _text},
)
_request = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["gpt-4o-mini", "gpt-4o", "o3-mini"]),
        "messages": st.lists(_message, min_size=1, max_size=3),
    },
    optional={
        "temperature": st.sampled_from([0, 0.0, 0.5, 1, 1.0]),
        "top_p": st.sampled_from([0.1, 0.9, 1.0]),
        "seed": st.integers(0, 3),
        "n": st.integers(1, 3),
        "max_tokens": st.integers(1, 50),
        "max_completion_tokens": st.integers(1, 50),
        "service_tier": st.sampled_from(["auto", "default", "flex", "priority"]),
        "response_format": st.sampled_from(
            [{"type": "text"}, {"type": "json_object"}, {"type": "json_schema"}]
        ),
        "tools": st.lists(
            st.fixed_dictionaries({"type": st.just("function"), "function": _json}), max_size=2
        ),
        "stop": st.one_of(_text, st.lists(_text, max_size=2)),
        "logit_bias": st.dictionaries(st.sampled_from(["1", "2", "3"]), st.integers(-5, 5)),
        "reasoning_effort": st.sampled_from(["low", "medium", "high"]),
        "extra_body": st.dictionaries(_text, _json, max_size=2),
    },
)


def _canonical(request: dict[str, Any]) -> str:
    """What the server would see: JSON of the fields actually sent, types included."""

    def tagged(value: Any) -> Any:
        if isinstance(value, bool):
            return ["bool", value]
        if isinstance(value, int):
            return ["int", value]
        if isinstance(value, float):
            return ["float", repr(value)]
        if isinstance(value, list):
            return ["list", [tagged(v) for v in value]]
        if isinstance(value, dict):
            return ["dict", {k: tagged(v) for k, v in value.items()}]
        return value

    sent = {k: v for k, v in request.items() if v is not None}
    return json.dumps(tagged(sent), sort_keys=True)


@settings(max_examples=400, deadline=None)
@given(_request, _request)
def test_keys_agree_exactly_with_canonical_requests(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Two requests share a key if and only if they send the same canonical request."""
    assert (key(**a) == key(**b)) == (_canonical(a) == _canonical(b))


_FIELDS = ["temperature", "top_p", "seed", "n", "max_tokens", "service_tier", "stop"]


@settings(max_examples=300, deadline=None)
@given(_request, st.sampled_from(_FIELDS), st.data())
def test_changing_any_answer_shaping_field_changes_the_key(
    request: dict[str, Any], field: str, data: st.DataObject
) -> None:
    """Setting or changing one parameter that shapes the answer gives a different key."""
    changed = dict(request)
    new_value = data.draw(
        {
            "temperature": st.sampled_from([0.25, 0.75, 2]),
            "top_p": st.sampled_from([0.2, 0.3]),
            "seed": st.integers(10, 20),
            "n": st.integers(4, 6),
            "max_tokens": st.integers(60, 90),
            "service_tier": st.just("scale"),
            "stop": st.just("###"),
        }[field]
    )
    changed[field] = new_value
    assert key(**request) != key(**changed)


@settings(max_examples=200, deadline=None)
@given(_request, st.randoms(use_true_random=False))
def test_shuffled_dicts_share_a_key(request: dict[str, Any], rnd: Any) -> None:
    """Reordering the keys of every dict in a request never changes its key."""

    def shuffled(value: Any) -> Any:
        if isinstance(value, dict):
            items = list(value.items())
            rnd.shuffle(items)
            return {k: shuffled(v) for k, v in items}
        if isinstance(value, list):
            return [shuffled(v) for v in value]
        return value

    assert key(**request) == key(**shuffled(request))


# -- encodings: the cache's keys, and identities written into batch records ------------


def test_keys_depend_on_values_not_on_object_identity() -> None:
    """Equal requests share a key whether their strings are one object, copies, or interned."""
    role = "user"
    copy = "".join(["us", "er"])
    assert copy is not role
    shared = [{"role": role, "content": role}, {"role": role, "content": "x"}]
    copied = [
        {"role": copy, "content": "".join(["us", "er"])},
        {"role": sys.intern("user"), "content": "x"},
    ]
    assert key(messages=shared) == key(messages=copied)


def test_typed_values_are_keyed_through_their_repr() -> None:
    """A structure marshal cannot write (a typed value inside) still has a stable key, apart
    from any plain structure."""

    class Tone(enum.Enum):
        DRY = "dry"

    typed = key(tone=Tone.DRY, text="a")
    assert typed == key(text="a", tone=Tone.DRY)
    assert typed != key(tone="dry", text="a")
    assert len({key(x=...), key(x=NotImplemented), key(x=None), key(x=StopIteration)}) == 4


def test_a_known_request_keeps_its_cache_key() -> None:
    """Cache keys name files on disk: a change of encoding must be deliberate (every entry
    misses once)."""
    request = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hi é\n"}],
        "temperature": 0.5,
        "seed": 7,
        "stream": False,
    }
    assert key(**request) == KNOWN_CACHE_KEY


def test_batch_record_identities_never_change() -> None:
    """Checkpoints and Batch API state files hold ``digest`` identities: a new encoding
    would make a resumed batch repeat, and pay for, its finished work."""
    structure = ("site", normalise(({"role": "user", "content": "Hi é"},)), normalise({"n": 1}))
    assert digest(structure) == KNOWN_RECORD_DIGEST
    assert key_digest(structure) != digest(structure)


KNOWN_CACHE_KEY = "c4b82dcdc9137314356f34d241d7a8ad"
KNOWN_RECORD_DIGEST = "c1911cd204aff217eec9e7eb16c2a7d7"  # the encoding of 0.1.0
