"""Numbers a log line may not hold: non-finite values anywhere a rule or the report reads
one, and negative costs or token counts.

Python's JSON parser reads ``Infinity``, ``NaN`` and ``1e400`` as floats; a line holding
one, or a cost of -49.99, would turn a day's total into nonsense. Such a line is malformed:
counted, with its file and line, and skipped, like a line that is not JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prismq_llmtools.schema import EVENTS

__all__ = ["amount_fields", "bad_value", "checked_fields", "read_fields"]


def _is_amount(name: str, type_: str) -> bool:
    return type_ in ("int", "float") and (name.endswith("_usd") or "tokens" in name)


def amount_fields(event: str) -> tuple[str, ...]:
    """The cost and token fields of ``event`` in the schema (none for other events)."""
    spec = EVENTS.get(event)
    if spec is None:
        return ()
    return tuple(f.name for f in spec.fields if _is_amount(f.name, f.type))


def checked_fields(event: str, read: Iterable[str | None] = ()) -> tuple[str, ...]:
    """The fields of ``event`` to check: its amounts, and the numeric fields in ``read``."""
    names = dict.fromkeys(amount_fields(event))
    names.update(dict.fromkeys(name for name in read if name))
    return tuple(names)


def read_fields(read: Iterable[str | None]) -> tuple[str, ...]:
    """The distinct field names in ``read`` (``None``: a rule that reads no field)."""
    return tuple(dict.fromkeys(name for name in read if name))


def bad_value(event: Mapping[str, Any], fields: tuple[str, ...]) -> str | None:
    """Why ``event`` is malformed (a non-finite number, or a negative cost or token count
    among ``fields``), or ``None`` when it is not."""
    for name in fields:
        value = event.get(name)
        if value.__class__ is float:
            if value - value != 0.0:  # inf - inf and nan - nan are nan
                return f"{name} is not a finite number"
        elif value.__class__ is not int:
            continue
        if value < 0 and (name.endswith("_usd") or "tokens" in name):
            return f"{name} is negative ({value:g})"
    return None
