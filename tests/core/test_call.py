"""The Call record's typed per-call state."""

from __future__ import annotations

import pytest

from prismq_llmtools.call import Call, StateKey


def test_state_keys_keep_typed_values_apart() -> None:
    """Each key holds its own value; get and pop of a key never set give None."""
    first: StateKey[int] = StateKey("test.first")
    twin: StateKey[int] = StateKey("test.first")
    call = Call("site", "op")
    assert call.get(first) is None
    call.put(first, 1)
    assert call.get(first) == 1
    assert call.get(twin) is None  # keys compare by identity, not by name
    call.put(first, 2)
    assert call.pop(first) == 2
    assert call.pop(first) is None
    assert repr(first) == "StateKey('test.first')"


def test_calls_do_not_share_state() -> None:
    """State put on one Call is not seen on another, and each Call has its own streams."""
    key: StateKey[str] = StateKey("test.key")
    one, two = Call("site", "op"), Call("site", "op")
    one.put(key, "x")
    one.streams.append(_Stream())
    assert two.get(key) is None
    assert two.streams == []


class _Stream:
    def finalize(self, *, complete: bool) -> None:
        pass


def test_the_request_is_found_once_when_first_read_unless_set() -> None:
    """A request finder runs on the first read only (even when it fails), and setting the
    request replaces it without running it."""
    from prismq_llmtools.call import Request

    found: list[Call] = []
    asked = Request(model="gpt-4o-mini")

    def find(call: Call) -> Request:
        found.append(call)
        return asked

    call = Call("site", "op")
    assert call.request is None  # nothing to find
    call.find_request_when_read(find)
    assert found == []
    assert call.request is asked
    assert call.request is asked
    assert found == [call]

    call.find_request_when_read(find)
    call.request = None
    assert call.request is None
    assert found == [call]

    fresh = Call("site", "op")
    fresh.find_request_when_read(find)
    fresh.request = asked  # set before any read: the finder never runs
    assert fresh.request is asked
    assert found == [call]


def test_a_failing_finder_fails_the_first_read_only() -> None:
    """The read that runs a failing finder raises its error; later reads see no request."""

    def fail(call: Call) -> None:
        raise ValueError("unreadable arguments")

    call = Call("site", "op")
    call.find_request_when_read(fail)
    with pytest.raises(ValueError, match="unreadable"):
        _ = call.request
    assert call.request is None
