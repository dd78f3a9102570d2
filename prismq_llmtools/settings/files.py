"""Where each key of a TOML settings file is written, so that errors can name file and line.

``tomllib`` gives values without positions; this module finds, line by line, the line of
each table header and each key (dotted and quoted keys included). A key it cannot place (a
value inside an inline table) is named by its file alone.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping

__all__ = ["key_lines"]

Path_ = tuple[str, ...]


def _single_path(data: Mapping[str, object]) -> Path_ | None:
    """The one path of nested one-key tables in ``data`` (``{"a": {"b": 0}}``: ``a.b``)."""
    path: list[str] = []
    node: object = data
    while isinstance(node, dict) and len(node) == 1:
        name, node = next(iter(node.items()))
        path.append(name)
    return tuple(path) if path else None


def _parse(text: str) -> Path_ | None:
    try:
        return _single_path(tomllib.loads(text))
    except tomllib.TOMLDecodeError:
        return None


def key_lines(text: str) -> dict[Path_, int]:
    """The first line (1-based) of every table and key path written in ``text``."""
    lines: dict[Path_, int] = {}
    table: Path_ = ()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            array = line.startswith("[[")
            # [[a.b]] (an array of tables) is placed as the table [a.b]
            header = _parse(line[1 : line.rindex("]")] if array else line)
            if header is not None:
                table = header
                _record(lines, table, number)
            continue
        if "=" not in line:
            continue
        key = _parse(line.split("=", 1)[0] + "= 0")
        if key is not None:
            _record(lines, table + key, number)
    return lines


def _record(lines: dict[Path_, int], path: Path_, number: int) -> None:
    for end in range(1, len(path) + 1):
        lines.setdefault(path[:end], number)
