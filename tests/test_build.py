"""The modules every call runs through are the compiled build of their current source.

``make test`` runs the suite twice: on the mypyc build (the default install), then on the
plain-Python modules with ``PRISMQ_LLMTOOLS_EXPECT_PURE=1`` (what ``HATCH_BUILD_NO_HOOKS=true``
installs). Either way this says which one ran, so neither passes by testing the other.
"""

from __future__ import annotations

import importlib
import os
import tomllib
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOOK = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"][
    "wheel"
]["hooks"]["mypyc"]
COMPILED: list[str] = HOOK["include"]
EXPECT_PURE = os.environ.get("PRISMQ_LLMTOOLS_EXPECT_PURE") == "1"


@pytest.mark.parametrize("source", COMPILED)
def test_each_hot_module_runs_as_built(source: str) -> None:
    module = importlib.import_module(source.removesuffix(".py").replace("/", "."))
    loaded = Path(str(module.__file__))
    if EXPECT_PURE:
        assert loaded.suffix == ".py", f"{source}: the compiled module was loaded"
        return
    assert loaded.suffix == ".so", f"{source} is not compiled: run `make` (pip install -e .)"
    # The module's own entry beside its source (its __file__ may name the installed copy of
    # the library that holds the compiled code: both come from the same build).
    built = (ROOT / source).with_suffix(EXTENSION_SUFFIXES[0])
    assert built.stat().st_mtime >= (ROOT / source).stat().st_mtime, (
        f"{source} changed since it was compiled: run `make` (pip install -e .)"
    )


def test_the_compiled_modules_exist() -> None:
    """A renamed or removed module must leave the build list too."""
    for source in COMPILED:
        assert (ROOT / source).is_file(), source
