"""Settings from environment variables: ``PRISMQ_LLMTOOLS__<SITE>__<KEY>=<TOML value>``.

``<SITE>`` is the site name upper-cased with every character other than a letter or a digit
replaced by ``_`` (:func:`env_key`), or ``ALL`` for every site; ``<KEY>`` is the settings key,
upper-cased. The key is what follows the last ``__``, so a site name containing ``__``
(``__main__.chat``: ``__MAIN___CHAT``) is written as it is encoded. Two site names with the
same encoding (``svc.v2_api`` and ``svc.v2.api``) cannot be told apart by a variable: a
variable naming that encoding is an error naming both sites.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

__all__ = ["ALL", "ENV_PREFIX", "Variable", "env_key", "parse_value", "variables"]

ENV_PREFIX = "PRISMQ_LLMTOOLS__"
ALL = "ALL"


def env_key(site: str) -> str:
    """The environment-variable form of a site name (``app._helper``: ``APP__HELPER``)."""
    return re.sub(r"[^A-Za-z0-9]", "_", site).upper()


@dataclass(frozen=True, slots=True)
class Variable:
    """One ``PRISMQ_LLMTOOLS__...`` variable: the site part and the key it names.

    ``site`` and ``key`` are ``None`` when the name does not have the form
    ``PRISMQ_LLMTOOLS__<SITE>__<KEY>``.
    """

    name: str
    raw: str
    site: str | None
    key: str | None

    @property
    def source(self) -> str:
        """How errors name this variable."""
        return f"environment variable {self.name}"


def variables(environ: Mapping[str, str]) -> Iterator[Variable]:
    """Every variable of ours in ``environ``, in the environment's order."""
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        site, _, key = name[len(ENV_PREFIX) :].rpartition("__")
        if not site or not key or key.startswith("_"):
            yield Variable(name, raw, None, None)
        else:
            yield Variable(name, raw, site, key.lower())


def parse_value(raw: str) -> object:
    """A variable's value read as a TOML value (``300``, ``0.9``, ``true``, ``"x"``,
    ``[0.5, 0.9]``); anything else, such as a bare word, is the string itself."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw
