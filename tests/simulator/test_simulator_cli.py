"""The simulator as a separate process, its config files, control endpoints and stats."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from prismq_llmtools.cli import simulate
from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.testing import (
    Fault,
    FaultKind,
    Simulator,
    SimulatorStats,
    fetch_stats,
)
from prismq_llmtools.testing.simulator.client import push_faults, reset_remote
from prismq_llmtools.testing.simulator.config_file import config_from_mapping, load_config

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "hello"}]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    simulate.register(parser.add_subparsers())
    return parser.parse_args(["simulate", *argv])


def test_options_build_the_config() -> None:
    """Each option lands in the SimulatorConfig."""
    config = simulate.build_config(
        _args(
            "--rpm", "60", "--tpm", "9000", "--seed", "5", "--admission", "chars",
            "--fault-rate", "0.2", "--latency", "0.1", "--latency-per-token", "0.01",
            "--jitter", "0.02", "--time-scale", "500", "--no-prompt-cache",
        )
    )  # fmt: skip
    assert (config.rpm, config.tpm, config.seed, config.admission) == (60, 9000, 5, "chars")
    assert config.faults.server_error == pytest.approx(0.05)
    assert (config.latency.base_s, config.latency.per_output_token_s) == (0.1, 0.01)
    assert config.latency.jitter_s == 0.02
    assert config.batch.time_scale == 500
    assert config.prompt_caching is False
    single = simulate.build_config(_args("--fault", "drop_connection=0.3", "--fault", "slow=0.1"))
    assert (single.faults.drop_connection, single.faults.slow) == (0.3, 0.1)


def test_bad_options_are_rejected() -> None:
    """Unknown fault kinds and non-positive limits fail at parse time."""
    with pytest.raises(SystemExit):
        _args("--fault", "meteor=0.1")
    with pytest.raises(SystemExit):
        _args("--rpm", "0")


def test_toml_and_json_config_files(tmp_path: Path) -> None:
    """A config file sets every field; models override their catalog entry."""
    toml = tmp_path / "sim.toml"
    toml.write_text(
        'seed = 7\nrpm = 100\nadmission = "chars"\noutput_tokens = [4, 8]\n'
        "[latency]\nbase_s = 0.2\n[batch]\ntime_scale = 1000\n[faults]\nserver_error = 0.1\n"
        '[models."gpt-4o-mini"]\ntpm = 5000\n[models."house"]\ncontext_window = 2048\n'
        '[model_faults."gpt-4o"]\nrate_limit = 0.5\n[[script]]\nkind = "timeout"\n'
    )
    config = load_config(toml)
    assert (config.seed, config.rpm, config.admission, config.output_tokens) == (
        7,
        100,
        "chars",
        (4, 8),
    )
    assert config.latency.base_s == 0.2
    assert config.batch.time_scale == 1000
    assert config.faults.server_error == 0.1
    assert config.models["gpt-4o-mini"].tpm == 5000
    assert config.models["gpt-4o-mini"].context_window == 128_000
    assert config.models["house"].context_window == 2048
    assert config.model_faults["gpt-4o"].rate_limit == 0.5
    assert config.script == (Fault(kind=FaultKind.TIMEOUT),)
    as_json = tmp_path / "sim.json"
    as_json.write_text(json.dumps({"seed": 3, "faults": {"slow": 0.5, "slow_s": 0.1}}))
    assert load_config(as_json).faults.slow_s == 0.1
    from_args = simulate.build_config(_args("--config", str(as_json), "--seed", "9"))
    assert from_args.seed == 9
    assert from_args.faults.slow == 0.5


def test_config_errors_are_clear(tmp_path: Path) -> None:
    """Unknown keys, bad values and unreadable files raise ConfigurationError."""
    with pytest.raises(ConfigurationError, match="unknown simulator settings: rmp"):
        config_from_mapping({"rmp": 5})
    with pytest.raises(ConfigurationError):
        config_from_mapping({"latency": {"base": 1}})
    with pytest.raises(ConfigurationError):
        config_from_mapping({"rpm": -1})
    with pytest.raises(ConfigurationError):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ConfigurationError):
        load_config(broken)


def test_stats_snapshot_reset_and_round_trip(simulator: Simulator) -> None:
    """stats() is a frozen snapshot; reset() zeroes it; to_dict/from_dict round-trip."""
    with simulator.client() as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="nope", messages=MESSAGES)
    stats = simulator.stats()
    assert (stats.received, stats.served) == (2, 1)
    assert stats.rejected == {"model_not_found": 1}
    assert stats.prompt_tokens == stats.models["gpt-4o-mini"].prompt_tokens > 0
    assert SimulatorStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats
    with pytest.raises(TypeError):
        stats.rejected["x"] = 1  # type: ignore[index]
    simulator.reset()
    assert simulator.stats() == SimulatorStats()
    assert stats.received == 2  # the old snapshot did not change


def _start_process(*argv: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "prismq_llmtools", "simulate", "--port", "0", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    assert "listening on http://127.0.0.1:" in first, first
    return process, first.rsplit(" ", 1)[-1].strip()


def test_separate_process_is_inspected_over_http() -> None:
    """`prismq-llmtools simulate` serves the client; stats, reset and faults work over HTTP."""
    process, url = _start_process("--rpm", "2", "--seed", "1")
    try:
        with openai.OpenAI(base_url=url, api_key="sk-test", max_retries=0) as client:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            push_faults(url, [Fault(kind=FaultKind.BAD_GATEWAY)])
            with pytest.raises(openai.InternalServerError):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            stats = fetch_stats(url)
            assert (stats.received, stats.served, stats.rate_limited) == (4, 2, 1)
            assert stats.faults == {"bad_gateway": 1}
            reset_remote(url, buckets=True)
            assert fetch_stats(url).received == 0
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr


def test_busy_port_is_a_clear_error() -> None:
    """Asking for a port in use exits with status 1 and says why."""
    with Simulator() as running:
        result = subprocess.run(
            [sys.executable, "-m", "prismq_llmtools", "simulate", "--port", str(running.port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert "cannot listen on port" in result.stderr


def test_importing_testing_loads_no_server_and_no_tokenizer() -> None:
    """`import prismq_llmtools.testing` is cheap: no openai, tiktoken or h11 until used."""
    code = (
        "import sys, prismq_llmtools.testing as t\n"
        "loaded = [m for m in ('openai', 'tiktoken', 'h11') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "t.Simulator\n"
        "assert 'prismq_llmtools.testing.simulator.server' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
