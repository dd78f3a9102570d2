"""Cache keys: a site's identity plus its normalised arguments, hashed.

Normalisation turns argument values into a canonical structure with an unambiguous
encoding: dict order is irrelevant, but types are kept apart (``1``, ``1.0``, ``True`` and
``"1"`` are four different keys), because anything that can change the function's answer
must change its key. Secrets and transport settings (API keys, clients, timeouts, headers,
request ids) are left out, so rotating a key or changing a timeout never invalidates the
cache, and no secret can leak into a key. The key itself is a 128-bit digest: cache files
never contain the arguments.

Two encodings of the structure are hashed, for two kinds of record:

* :func:`key_digest`, the cache's keys: ``marshal`` in format version 2, computed on every
  call and every hit, so its cost is felt on the cache's hottest path.
* :func:`digest`, identities written into batch checkpoints and Batch API state files:
  the structure's ``repr``. A change of encoding would make a resumed batch repeat (and
  pay for) its finished work, so this one never changes.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import inspect
import marshal
import pickle
import re
from collections.abc import Mapping
from typing import Any

from prismq_llmtools import _state
from prismq_llmtools.errors import LLMToolsError
from prismq_llmtools.openai.request import API_PARAMETERS

_volatile_types: _state.Memo[type, bool] = _state.Memo("volatile types")
"""Whether values of a type are volatile (left out of cache keys)."""

__all__ = [
    "VOLATILE_ARGUMENTS",
    "UnkeyableArgument",
    "digest",
    "function_fingerprint",
    "key_digest",
    "key_of_arguments",
    "normalise",
]

VOLATILE_ARGUMENTS = frozenset(
    {
        "api_key",
        "organization",
        "project",
        "base_url",
        "timeout",
        "max_retries",
        "extra_headers",
        "extra_query",
        "default_headers",
        "default_query",
        "request_id",
        "idempotency_key",
        "client",
        "async_client",
        "aclient",
        "http_client",
    }
)
"""Argument names never part of a key: secrets and transport settings."""

# Objects whose type lives in these modules are connections, loggers or locks: state that
# cannot change an answer, and that often holds the API key.
_VOLATILE_MODULES = (
    "openai._base_client",
    "httpx",
    "httpx2",
    "logging",
    "structlog",
    "threading",
    "_thread",
    "asyncio",
    "concurrent.futures",
    "sqlite3",
    "redis",
)
_SECRET = re.compile(r"sk-[A-Za-z0-9_\-]{16,}")
_MAX_DEPTH = 40


class UnkeyableArgument(LLMToolsError, TypeError):
    """An argument has no stable canonical form; the call bypasses the cache."""


# The canonical structure is made of str/int/float/bool/None/bytes/complex, lists, tuples,
# and two kinds of marked tuples whose marker no user value can produce (a user's Ellipsis
# or NotImplemented is itself turned into a marked tuple): ``(Ellipsis, k1, v1, ...)`` for a
# dict with str keys, and ``(NotImplemented, kind, payload)`` for anything typed. Its repr
# and its marshal are therefore unambiguous encodings, both computed entirely in C.
_DICT = Ellipsis
_TAGGED = NotImplemented


def _tag(name: str, payload: object) -> tuple[Any, ...]:
    return (_TAGGED, name, payload)


_ABSENT = _tag("absent", None)  # an SDK sentinel or a dropped secret: as if not passed
_VOLATILE = _tag("volatile", None)
_ATOMS = frozenset({str, int, float, bool, type(None), bytes, complex})
_NUMBERS = frozenset({int, float, bool, type(None)})


def _qualname(tp: type) -> str:
    return f"{tp.__module__}.{tp.__qualname__}"


def _is_volatile(tp: type) -> bool:
    known = _volatile_types.get(tp)
    if known is None:
        known = any(
            (getattr(klass, "__module__", None) or "").startswith(_VOLATILE_MODULES)
            for klass in getattr(tp, "__mro__", (tp,))
        )
        if len(_volatile_types) < 4096:
            _volatile_types[tp] = known
    return known


def _is_sentinel(tp: type) -> bool:
    return tp.__name__ in ("NotGiven", "Omit") and tp.__module__.startswith("openai")


def normalise(value: Any, _depth: int = 0) -> Any:
    """The canonical form of ``value`` (see the module docstring).

    Raises:
        UnkeyableArgument: for values with no stable form (too deep, cyclic, unpicklable).
    """
    tp = type(value)
    if tp in _ATOMS:
        if tp is str and value.startswith("sk-") and _SECRET.fullmatch(value):
            return _ABSENT
        return value
    if _depth > _MAX_DEPTH:
        raise UnkeyableArgument(f"argument nested deeper than {_MAX_DEPTH} levels (a cycle?)")
    depth = _depth + 1
    if tp is list:
        if depth > _MAX_DEPTH:  # any container inside is too deep: normalise says so
            return [normalise(v, depth) for v in value]
        # Messages: each dict normalised inline, without a call per message (a hit's key).
        return [
            v
            if type(v) in _NUMBERS
            else _dict(v, depth + 1)
            if type(v) is dict
            else normalise(v, depth)
            for v in value
        ]
    if tp is tuple:
        return tuple([normalise(v, depth) for v in value])
    if tp is dict:
        return _dict(value, depth)
    if isinstance(value, Mapping):
        return _tag(_qualname(tp), _dict(value, depth))
    return _other(value, tp, depth)


def _dict(value: Mapping[Any, Any], depth: int) -> tuple[Any, ...]:
    try:
        keys = sorted(value)
    except TypeError:  # keys of mixed types
        return _mixed_dict(value, depth)
    out: list[Any] = [_DICT]
    for k in keys:
        if type(k) is not str:
            return _mixed_dict(value, depth)
        v = value[k]
        tv = type(v)
        # leaves inline: a function call per message field would double the cost of a key
        if tv is str:
            if v.startswith("sk-") and _SECRET.fullmatch(v):
                continue
        elif tv not in _ATOMS:
            v = normalise(v, depth)
            if v is _ABSENT:
                continue
        out.append(k)
        out.append(v)
    return tuple(out)


def _mixed_dict(value: Mapping[Any, Any], depth: int) -> tuple[Any, ...]:
    items = []
    for k, v in value.items():
        nv = normalise(v, depth)
        if nv is not _ABSENT:
            items.append((repr(normalise(k, depth)), nv))
    items.sort(key=lambda item: item[0])
    return _tag("dict", tuple(items))


def _other(value: Any, tp: type, depth: int) -> Any:
    if _is_sentinel(tp):
        return _ABSENT
    if _is_volatile(tp):
        return _VOLATILE
    if isinstance(value, enum.Enum):
        return _tag(_qualname(tp), normalise(value.value, depth))
    if isinstance(value, set | frozenset):
        members = sorted((normalise(v, depth) for v in value), key=repr)
        return _tag("set" if tp in (set, frozenset) else _qualname(tp), tuple(members))
    bases: tuple[type[Any], ...] = (str, int, float, bytes, list, tuple)
    for base in bases:  # subclasses: keep the type apart
        if isinstance(value, base):
            return _tag(_qualname(tp), normalise(base(value), depth))
    dump = getattr(value, "model_dump", None)
    if callable(dump) and hasattr(tp, "model_fields"):  # pydantic: the JSON it would send
        return _tag(_qualname(tp), normalise(dump(mode="json", exclude_none=True), depth))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return _tag(_qualname(tp), _dict(fields, depth))
    if inspect.isfunction(value) or inspect.ismethod(value):
        return _function(value, depth)
    if isinstance(value, type):
        return _tag("type", _qualname(value))
    state = getattr(value, "__dict__", None)
    if isinstance(state, dict):
        return _tag(_qualname(tp), _dict(state, depth))
    try:  # anything else (numpy arrays, ...): its pickled bytes
        blob = pickle.dumps(value, protocol=4)
    except Exception as exc:
        raise UnkeyableArgument(f"cannot key an argument of type {_qualname(tp)}: {exc}") from exc
    return _tag(_qualname(tp), hashlib.blake2b(blob, digest_size=16).hexdigest())


def _function(value: Any, depth: int) -> tuple[Any, ...]:
    bound_self = getattr(value, "__self__", None)
    func = getattr(value, "__func__", value)
    cells = tuple(c.cell_contents for c in func.__closure__ or () if _filled(c))
    payload = (
        f"{func.__module__}.{func.__qualname__}",
        function_fingerprint(func),
        normalise(cells, depth),
        normalise(func.__defaults__ or (), depth),
        normalise(bound_self, depth) if bound_self is not None else None,
    )
    return _tag("function", payload)


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def function_fingerprint(func: Any) -> str:
    """A digest of a function's code: its source when available, else its bytecode.

    A changed prompt template inside the function changes its answers, so it changes keys.
    """
    try:
        text = inspect.getsource(func)
    except (OSError, TypeError):
        code = getattr(func, "__code__", None)
        if code is None:
            return "unknown"
        text = repr((code.co_code, code.co_consts, code.co_names))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def digest(structure: object) -> str:
    """The 32-hex-digit identity of a normalised structure, stable across versions.

    For records that outlive the process and guard against repeating paid work (batch
    checkpoints, Batch API state): hashed from the structure's ``repr``, an encoding that
    never changes.
    """
    data = repr(structure).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


_MARSHAL_VERSION = 2
"""Format 2: type-coded values, strings as length-prefixed UTF-8, floats as their 8 IEEE
bytes; unlike format 3 and later, no back-references and no interning flags, so equal
structures give equal bytes whatever their objects' identity or interning."""

_MARSHALLED = b"\x00marshal2\x00"
"""Before the marshal bytes: a repr never holds a NUL byte, so the two encodings hashed by
:func:`key_digest` can never give the same bytes."""


def key_digest(structure: Any) -> str:
    """The 32-hex-digit cache key of a normalised structure.

    The key is computed on every call and every hit, so it hashes the structure's
    ``marshal``, several times faster than its ``repr`` (which escapes every character of
    every prompt). A structure holding a typed value (an enum, a dataclass, a set...) is
    marked with ``NotImplemented``, which marshal cannot write: its key hashes its repr.
    The hash is SHA-256 cut to 128 bits (most CPUs compute it in hardware).
    """
    try:
        data = _MARSHALLED + marshal.dumps(structure, _MARSHAL_VERSION)
    except ValueError:  # a marked, typed value inside
        data = repr(structure).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:32]


def key_of_arguments(identity: str, bound: Mapping[str, Any], instance: Any = None) -> str:
    """The key of one invocation: site identity plus its normalised bound arguments.

    Volatile arguments are dropped; for API parameters (``temperature``, ``seed``, ...)
    ``None`` means "not sent" and is dropped too, so the canonical request is what counts.
    """
    parts: list[Any] = [identity]
    for name in sorted(bound):
        if name in VOLATILE_ARGUMENTS:
            continue
        value = bound[name]
        if value is None and name in API_PARAMETERS:
            continue
        nv = value if type(value) in _NUMBERS else normalise(value)
        if nv is _ABSENT or nv is _VOLATILE:
            continue
        parts.append(name)
        parts.append(nv)
    if instance is not None:
        parts.append(_tag("self", normalise(instance)))
    return key_digest(parts)
