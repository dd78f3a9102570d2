"""``prismq-llmtools cost``: the USD cost of some usage, as text or JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from prismq_llmtools import cli
from prismq_llmtools.cli import cost as cost_command


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="prismq-llmtools")
    cost_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["cost", *argv])
    status: int = args.func(args)
    return status


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert run(*argv, "--json") == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


CONFIG_ENV = "PRISMQ_LLMTOOLS_CONFIG"


@pytest.fixture(autouse=True)
def no_settings_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)


def test_cost_is_a_registered_subcommand() -> None:
    """The command line framework loads the cost module."""
    assert "cost" in cli._SUBCOMMANDS


def test_text_output_shows_breakdown_and_total(capsys: pytest.CaptureFixture[str]) -> None:
    """The default output lists each part, the total and the price date."""
    status = run(
        "--model", "gpt-4o-2024-08-06", "--input-tokens", "1000", "--output-tokens", "500",
        "--cached-tokens", "200", "--reasoning-tokens", "100",
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0
    assert "priced as gpt-4o (alias), standard rates" in out
    assert "$0.00725" in out
    assert "(of which 100 reasoning)" in out
    assert "prices checked" in out


def test_json_breakdown(capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints exact amounts as strings, the rates used and the price date."""
    result = run_json(
        capsys, "--model", "gpt-4o", "--input-tokens", "1000", "--output-tokens", "500",
        "--cached-tokens", "200",
    )  # fmt: skip
    assert result["total_usd"] == "0.00725"
    assert result["uncached_input_usd"] == "0.002"
    assert result["cached_input_usd"] == "0.00025"
    assert result["output_usd"] == "0.005"
    assert result["price_known"] is True
    assert result["priced_as"] == "gpt-4o"
    assert result["rates"] == "standard"
    assert result["usd_per_million_tokens"] == {
        "input": "2.5",
        "cached_input": "1.25",
        "output": "10",
    }
    assert result["prices_checked_on"] >= "2026-11-10"
    assert result["price_source"].startswith("genai-prices")


def test_batch_and_service_tier(capsys: pytest.CaptureFixture[str]) -> None:
    """--batch and --service-tier select the rates that apply."""
    usage = ("--input-tokens", "1000000", "--output-tokens", "1000000")
    assert run_json(capsys, "--model", "gpt-4o-mini", *usage, "--batch")["total_usd"] == "0.375"
    flex = run_json(capsys, "--model", "o3", *usage, "--service-tier", "flex")
    assert (flex["rates"], flex["total_usd"]) == ("flex", "5")


def test_embeddings_need_no_output_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    """An embedding model is costed from its input tokens alone."""
    result = run_json(capsys, "--model", "text-embedding-3-small", "--input-tokens", "1234")
    assert result["total_usd"] == "0.00002468"


def test_unknown_model_fails_with_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown model is an error by default, never a silent $0."""
    assert run("--model", "gpt-9", "--input-tokens", "10") == 1
    assert "no price is known for model 'gpt-9'" in capsys.readouterr().err


def test_unknown_model_with_a_policy_warns(capsys: pytest.CaptureFixture[str]) -> None:
    """--unknown zero or estimate costs the model but warns and marks the price unknown."""
    zero = run_json(capsys, "--model", "gpt-9", "--input-tokens", "10", "--unknown", "zero")
    assert (zero["total_usd"], zero["price_known"], zero["match"]) == ("0", False, "unknown")
    assert run("--model", "gpt-9", "--input-tokens", "1000000", "--unknown", "estimate") == 0
    captured = capsys.readouterr()
    assert "$2.5" in captured.out
    assert "warning: no price is known for 'gpt-9'" in captured.err


def test_cached_tokens_cannot_exceed_input(capsys: pytest.CaptureFixture[str]) -> None:
    """Inconsistent token counts exit with status 2 and say why."""
    assert run("--model", "gpt-4o", "--input-tokens", "10", "--cached-tokens", "20") == 2
    assert "cached_input_tokens cannot exceed input_tokens" in capsys.readouterr().err


def test_negative_tokens_are_rejected_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    """A negative count is a usage error."""
    with pytest.raises(SystemExit) as raised:
        run("--model", "gpt-4o", "--input-tokens", "-1")
    assert raised.value.code == 2
    assert "must not be negative" in capsys.readouterr().err


def test_overrides_from_config_file_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The [prices] table of --config, or of $PRISMQ_LLMTOOLS_CONFIG, overrides prices."""
    config = tmp_path / "llmtools.toml"
    config.write_text('[prices."my-model"]\ninput = 1.0\ncached_input = 0.5\noutput = 4.0\n')
    usage = ("--input-tokens", "1000000", "--output-tokens", "1000000")
    result = run_json(capsys, "--model", "my-model", *usage, "--config", str(config))
    assert (result["total_usd"], result["match"]) == ("5", "override")
    monkeypatch.setenv(CONFIG_ENV, str(config))
    assert run_json(capsys, "--model", "my-model", *usage)["total_usd"] == "5"


def test_overrides_from_pyproject_in_the_working_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --config the CLI reads the settings the decorators read, pyproject.toml too."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.prismq_llmtools.prices."gpt-4o"]\ninput = 1\noutput = 2\n'
    )
    usage = ("--input-tokens", "1000000", "--output-tokens", "1000000")
    assert run_json(capsys, "--model", "gpt-4o-2024-08-06", *usage)["total_usd"] == "3"


def test_bad_config_exits_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid override is reported with the model and key, exit status 2."""
    config = tmp_path / "llmtools.toml"
    config.write_text('[prices."my-model"]\ninput = 1.0\n')
    assert run("--model", "gpt-4o", "--input-tokens", "1", "--config", str(config)) == 2
    assert 'prices."my-model".output: missing' in capsys.readouterr().err
