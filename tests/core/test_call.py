"""The Call record's typed per-call state."""

from __future__ import annotations

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
