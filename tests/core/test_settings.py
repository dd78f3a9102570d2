"""Policy as data: decorator defaults overridden by the settings file, environment and runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from prismq_llmtools import ConfigurationError, retried
from prismq_llmtools.settings import env_key, load_settings, reset_settings


def _site_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "llmtools.toml"
    path.write_text(text)
    return path


def test_settings_file_overrides_decorator_defaults(tmp_path: Path) -> None:
    """A [sites."name"] table changes that site's effective settings."""
    path = _site_file(tmp_path, '[defaults]\nmax_wait_s = 5\n[sites."app.titles"]\nattempts = 2\n')
    reset_settings(load_settings({"PRISMQ_LLMTOOLS_CONFIG": str(path)}))

    @retried(attempts=6, name="app.titles")
    def f() -> None: ...

    view = f.llm.settings()["retried"]
    assert view["attempts"] == 2
    assert view["max_wait_s"] == 5


def test_pyproject_table_is_read(tmp_path: Path) -> None:
    """Without PRISMQ_LLMTOOLS_CONFIG, [tool.prismq_llmtools] in ./pyproject.toml applies."""
    (tmp_path / "pyproject.toml").write_text('[tool.prismq_llmtools.sites."x"]\nattempts = 3\n')
    settings = load_settings({}, cwd=tmp_path)
    assert settings.for_site("x", environ={}) == {"attempts": 3}


def test_environment_beats_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PRISMQ_LLMTOOLS__<SITE>__<KEY> overrides the file, values read as TOML."""
    path = _site_file(tmp_path, '[sites."app.titles"]\nattempts = 2\n')
    reset_settings(load_settings({"PRISMQ_LLMTOOLS_CONFIG": str(path)}))
    monkeypatch.setenv(f"PRISMQ_LLMTOOLS__{env_key('app.titles')}__ATTEMPTS", "4")
    monkeypatch.setenv("PRISMQ_LLMTOOLS__ALL__DEADLINE_S", "30.5")

    @retried(name="app.titles")
    def f() -> None: ...

    view = f.llm.settings()["retried"]
    assert view["attempts"] == 4
    assert view["deadline_s"] == 30.5


def test_bad_value_names_the_site_and_key(tmp_path: Path) -> None:
    """An invalid value fails when the file is loaded, naming the site, key, file and line."""
    path = _site_file(tmp_path, '[sites."app.titles"]\nattempts = 0\n')
    with pytest.raises(ConfigurationError, match=r"app\.titles.*attempts=0 \(.*llmtools.toml:2\)"):
        load_settings({"PRISMQ_LLMTOOLS_CONFIG": str(path)})


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    """A key no decorator understands is a ConfigurationError naming it."""
    path = _site_file(tmp_path, '[sites."app.titles"]\nattempt = 2\n')
    with pytest.raises(ConfigurationError, match="'attempt'; did you mean attempts"):
        load_settings({"PRISMQ_LLMTOOLS_CONFIG": str(path)})


def test_missing_config_file_is_an_error() -> None:
    """A settings path that does not exist is reported, not ignored."""
    with pytest.raises(ConfigurationError, match="no such file"):
        load_settings({"PRISMQ_LLMTOOLS_CONFIG": "/nonexistent/x.toml"})


def test_runtime_override_is_scoped() -> None:
    """f.llm.override changes settings inside the block only; unknown keys are refused."""

    @retried(attempts=6)
    def f() -> None: ...

    with f.llm.override(attempts=1):
        assert f.llm.settings()["retried"]["attempts"] == 1
    assert f.llm.settings()["retried"]["attempts"] == 6
    with pytest.raises(ConfigurationError, match="rpmm"), f.llm.override(rpmm=3):
        pass
    f.llm.configure(attempts=2)
    assert f.llm.settings()["retried"]["attempts"] == 2
