"""Settings are never silently ignored: names that match no site are reported, keys of a
decorator the site lacks are errors, and every site name can be set from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prismq_llmtools import ConfigurationError, SettingsWarning, retried, token_budgeted
from prismq_llmtools.settings import ENV_PREFIX, env_key, load_settings, reset_settings
from prismq_llmtools.testing import reset
from tests.drivers import Mode


def _load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "llmtools.toml"
    path.write_text(text)
    reset_settings(load_settings({"PRISMQ_LLMTOOLS_CONFIG": str(path)}))


def _retried_site(mode: Mode, name: str) -> Any:
    @retried(name=name)
    @mode.make
    def f() -> str:
        return "ok"

    return f


def test_a_site_table_naming_no_site_is_reported_at_the_first_call(
    mode: Mode, tmp_path: Path
) -> None:
    """A [sites."x"] table for a name no decorated site has is a SettingsWarning at the first
    call of any site, with the closest site names and the table's line; only once."""
    _load(tmp_path, '[sites."app.title"]\nattempts = 2\n\n[sites."app.titel"]\nattempts = 3\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing at decoration: other imports may follow
        f = _retried_site(mode, "app.title")
    with pytest.warns(SettingsWarning) as caught:
        assert mode.invoke(f) == "ok"
    message = str(caught[0].message)
    assert "[sites.'app.titel']" in message
    assert "llmtools.toml:4" in message
    assert "closest: 'app.title'" in message
    assert "app.title'" not in message.split("closest")[0]  # the matched table is not listed
    assert len(caught) == 1
    assert mode.invoke(f) == "ok"  # reported once: filterwarnings = error would fail here


def test_an_environment_variable_naming_no_site_is_reported(
    mode: Mode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variable whose site part matches no site, or that has no key part, is reported with
    the closest site names in variable form."""
    monkeypatch.setenv(f"{ENV_PREFIX}APP_TITEL__ATTEMPTS", "2")
    monkeypatch.setenv(f"{ENV_PREFIX}ATTEMPTS", "2")
    monkeypatch.setenv(f"{ENV_PREFIX}ALL__ATTEMPTS", "2")  # every site: never unmatched
    f = _retried_site(mode, "app.title")
    with pytest.warns(SettingsWarning) as caught:
        mode.invoke(f)
    message = str(caught[0].message)
    assert f"{ENV_PREFIX}APP_TITEL__ATTEMPTS: no decorated site" in message
    assert f"'app.title' ({ENV_PREFIX}APP_TITLE__...)" in message
    assert f"{ENV_PREFIX}ATTEMPTS: not of the form" in message
    assert "ALL__ATTEMPTS" not in message
    assert f.llm.settings()["retried"]["attempts"] == 2


def test_settings_that_all_match_are_not_reported(mode: Mode, tmp_path: Path) -> None:
    """No warning when every table and variable names a decorated site (filterwarnings =
    error turns any warning into a failure)."""
    _load(tmp_path, '[defaults]\nattempts = 2\n[sites."app.title"]\nattempts = 3\n')
    f = _retried_site(mode, "app.title")
    mode.invoke(f)
    assert f.llm.settings()["retried"]["attempts"] == 3


def test_a_misspelt_top_level_table_is_an_error_at_load(tmp_path: Path) -> None:
    """[site."x"] for [sites."x"] is a ConfigurationError at load naming file, line and the
    closest table."""
    path = tmp_path / "llmtools.toml"
    path.write_text('# settings\n\n[site."app.title"]\nattempts = 2\n')
    with pytest.raises(
        ConfigurationError, match=r"llmtools.toml:3: .*\[site\]; did you mean \[sites\]"
    ):
        load_settings({"PRISMQ_LLMTOOLS_CONFIG": str(path)})
    (tmp_path / "pyproject.toml").write_text("[tool.prismq_llmtools.default]\nattempts = 2\n")
    with pytest.raises(ConfigurationError, match=r"pyproject.toml:1: .*did you mean \[defaults\]"):
        load_settings({}, cwd=tmp_path)


@pytest.mark.parametrize("where", ["file", "environment"])
def test_a_key_of_a_decorator_the_site_lacks_is_an_error(
    mode: Mode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """daily_usd = 0 for a site without @token_budgeted is a ConfigurationError at the
    site's first call, naming the site, the key, its source and the decorator it needs;
    the call is not made."""
    if where == "file":
        _load(tmp_path, '[sites."app.chat"]\ndaily_usd = 0\n')
        source = r"[^)]*llmtools\.toml:2"
    else:
        monkeypatch.setenv(f"{ENV_PREFIX}APP_CHAT__DAILY_USD", "0")
        source = f"environment variable {ENV_PREFIX}APP_CHAT__DAILY_USD"
    calls: list[str] = []

    @retried(name="app.chat")
    @mode.make
    def chat() -> str:
        calls.append("called")
        return "ok"

    with pytest.raises(
        ConfigurationError, match=rf"site 'app\.chat': daily_usd \({source}\).*@token_budgeted"
    ):
        mode.invoke(chat)
    assert calls == []


def test_a_decorator_key_in_defaults_applies_only_where_it_means_something(
    mode: Mode, tmp_path: Path
) -> None:
    """[defaults] (and ALL) apply to the sites that have the key's decorator: a budget key
    there is no error for a site without a budget, and it binds a site with one."""
    _load(tmp_path, "[defaults]\ndaily_usd = 0\n")
    plain = _retried_site(mode, "app.plain")
    assert mode.invoke(plain) == "ok"

    @token_budgeted(model="gpt-4o-mini", name="app.budgeted")
    @mode.make
    def budgeted() -> str:
        return "ok"

    assert str(budgeted.llm.settings()["token_budgeted"]["daily_usd"]) == "0"


def test_runtime_keys_of_a_missing_decorator_name_it(mode: Mode) -> None:
    """f.llm.configure(daily_usd=...) on a site without @token_budgeted names the decorator."""
    f = _retried_site(mode, "app.chat")
    with pytest.raises(
        ConfigurationError, match=r"daily_usd \(f\.llm\.configure\(\)\).*@token_budgeted"
    ):
        f.llm.configure(daily_usd=1)


@pytest.mark.parametrize("name", ["app._helper", "__main__.chat", "pkg.__init__", "a.b_"])
def test_site_names_with_double_underscores_work_in_the_environment(
    mode: Mode, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A variable for a site whose name contains `__` (or ends in `_`) applies to it, and
    to no other site."""
    monkeypatch.setenv(f"{ENV_PREFIX}{env_key(name)}__ATTEMPTS", "2")
    other = _retried_site(mode, "app.other")
    f = _retried_site(mode, name)
    assert f.llm.settings()["retried"]["attempts"] == 2
    assert other.llm.settings()["retried"]["attempts"] == 6
    mode.invoke(f)


def test_a_bad_variable_breaks_only_its_own_site(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable with an unknown key is an error for the site it names alone."""
    monkeypatch.setenv(f"{ENV_PREFIX}__MAIN___CHAT__ATEMPTS", "2")

    @retried(name="app.fine")
    def fine() -> str:
        return "ok"

    with pytest.warns(SettingsWarning, match="__MAIN___CHAT__ATEMPTS: no decorated site"):
        assert fine() == "ok"  # chat is not decorated yet: reported, and fine still works
    with pytest.raises(ConfigurationError, match=r"__MAIN___CHAT__ATEMPTS.*did you mean attempts"):

        @retried(name="__main__.chat")
        def chat() -> str:
            return "ok"


def test_two_sites_alike_in_variable_form_are_an_error_naming_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """svc.v2_api and svc.v2.api share their variable form: a variable naming it is an
    error naming both sites; without such a variable both sites are fine."""

    @retried(name="svc.v2_api")
    def first() -> None: ...

    @retried(name="svc.v2.api")
    def second() -> None: ...

    monkeypatch.setenv(f"{ENV_PREFIX}SVC_V2_API__ATTEMPTS", "2")
    with pytest.raises(ConfigurationError, match=r"'svc\.v2\.api' and site 'svc\.v2_api'"):

        @retried(name="svc.v2.api")
        def third() -> None: ...


@given(
    st.lists(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True), min_size=1, max_size=4
    ).map(".".join)
)
def test_every_site_name_is_reachable_from_the_environment(name: str) -> None:
    """For any dotted name of identifiers, the variable written from env_key applies to
    that site."""
    reset()
    key = f"{ENV_PREFIX}{env_key(name)}__ATTEMPTS"
    old = os.environ.get(key)
    os.environ[key] = "3"
    try:

        @retried(name=name)
        def f() -> None: ...

        assert f.llm.settings()["retried"]["attempts"] == 3
    finally:
        if old is None:
            del os.environ[key]
        else:
            os.environ[key] = old


def _run(tmp_path: Path, *argv: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRISMQ_LLMTOOLS")}
    done = subprocess.run(
        [sys.executable, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_script_sites_are_named_by_how_the_script_runs(tmp_path: Path) -> None:
    """`python -m pkg.tool` names sites pkg.tool.f (as when imported); `python pkg/tool.py`
    names them __main__.f; name= names them the same either way."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tool.py").write_text(
        "from prismq_llmtools import retried\n"
        "@retried()\ndef f(): ...\n"
        "@retried(name='tool.g')\ndef g(): ...\n"
        "print(f.llm.name, g.llm.name)\n"
    )
    assert _run(tmp_path, "-m", "pkg.tool") == "pkg.tool.f tool.g"
    assert _run(tmp_path, "pkg/tool.py") == "__main__.f tool.g"
