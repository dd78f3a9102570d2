"""``prismq-llmtools count``: prompt tokens of a request file or stdin, plain or JSON."""

from __future__ import annotations

import importlib
import io
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from prismq_llmtools import cli
from prismq_llmtools.openai.tokens import count_request

BODY = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "Write a title for an article about otters."}],
    "max_tokens": 20,
    "n": 2,
}


@pytest.fixture(autouse=True)
def _sibling_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand in for subcommands other sessions have not landed yet, so main() can build."""
    for name in cli._SUBCOMMANDS:
        module_name = f"prismq_llmtools.cli.{name}"
        try:
            importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            stub = types.ModuleType(module_name)
            stub.register = lambda subparsers, _name=name: subparsers.add_parser(_name)  # type: ignore[attr-defined]
            monkeypatch.setitem(sys.modules, module_name, stub)


def write(tmp_path: Path, body: Any) -> str:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    return str(path)


def test_prints_prompt_tokens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The default output is the prompt token count alone."""
    assert cli.main(["count", write(tmp_path, BODY)]) == 0
    assert capsys.readouterr().out == f"{count_request(BODY).prompt_tokens}\n"


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints prompt_tokens, completion_cap, total_estimate, encoding and model."""
    assert cli.main(["count", "--json", write(tmp_path, BODY)]) == 0
    report = json.loads(capsys.readouterr().out)
    prompt = count_request(BODY).prompt_tokens
    assert report == {
        "model": "gpt-4o",
        "encoding": "o200k_base",
        "prompt_tokens": prompt,
        "completion_cap": 40,
        "total_estimate": prompt + 40,
    }


def test_reads_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The file name - reads the body from standard input."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(BODY)))
    assert cli.main(["count", "-"]) == 0
    assert capsys.readouterr().out.strip() == str(count_request(BODY).prompt_tokens)


def test_endpoint_and_fallback_encoding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--endpoint forces the API and --fallback-encoding counts unknown models."""
    body = {"model": "acme-embedder", "input": "hello world"}
    path = write(tmp_path, body)
    args = ["count", "--json", "--endpoint", "embeddings", "--fallback-encoding", "cl100k_base"]
    assert cli.main([*args, path]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["prompt_tokens"], report["encoding"]) == (2, "cl100k_base")
    assert report["completion_cap"] is None


def test_unknown_model_fails_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown model exits 1 and names the options and settings that choose a tokenizer."""
    path = write(tmp_path, {"model": "acme-1", "messages": []})
    assert cli.main(["count", path]) == 1
    err = capsys.readouterr().err
    assert "--tokenizer SPEC" in err
    assert "--fallback-encoding" in err
    assert "PRISMQ_LLMTOOLS__<SITE>__TOKENIZER" in err


def test_tokenizer_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--tokenizer counts any model with that encoding, and a malformed one exits 1."""
    path = write(tmp_path, {"model": "acme-1", "messages": [{"role": "user", "content": "hi"}]})
    assert cli.main(["count", "--json", "--tokenizer", "cl100k_base", path]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["encoding"] == "cl100k_base"
    assert (
        report["prompt_tokens"]
        == count_request(
            {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}
        ).prompt_tokens
    )
    assert cli.main(["count", "--tokenizer", "gpt2", path]) == 1
    assert "must be a tiktoken encoding" in capsys.readouterr().err


def test_unreadable_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file or invalid JSON exits 2 with the reason."""
    assert cli.main(["count", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert cli.main(["count", str(bad)]) == 2
