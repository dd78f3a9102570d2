"""Resume: a rerun after a crash or Ctrl-C does not repeat finished items."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prismq_llmtools.batch import batched
from prismq_llmtools.batch.checkpoint import Checkpoint
from prismq_llmtools.errors import BatchError
from prismq_llmtools.testing.simulator import LatencyModel, Simulator, SimulatorConfig

from .conftest import named


def test_a_rerun_with_the_checkpoint_skips_finished_items(
    tmp_path: Path, events: list[dict[str, Any]]
) -> None:
    """Items that succeeded are answered from the checkpoint; only the failed ones run again."""
    runs: list[int] = []
    broken = {3, 7}

    @batched(max_concurrency=3, name="resume.square")
    def square(x: int) -> int:
        runs.append(x)
        if x in broken:
            raise ValueError(x)
        return x * x

    path = tmp_path / "run.ckpt"
    with pytest.raises(BatchError):
        square.batch(range(10), checkpoint=path)
    assert sorted(runs) == list(range(10))
    broken.clear()
    runs.clear()
    assert square.batch(range(10), checkpoint=path) == [x * x for x in range(10)]
    assert sorted(runs) == [3, 7]
    assert named(events, "llm.batch")[-1]["resumed"] == 8
    runs.clear()
    assert square.batch([9, 8, 11], checkpoint=path) == [81, 64, 121]  # matched by arguments
    assert runs == [11]
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_record_cut_short_is_ignored(tmp_path: Path) -> None:
    """A crash in the middle of writing a record loses only that record."""
    path = tmp_path / "run.ckpt"
    store = Checkpoint(path)
    store.record("a", 1)
    store.record("b", 2)
    store.close()
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    again = Checkpoint(path)
    assert again.done == {"a": 1}
    again.record("c", 3)
    again.close()
    assert Checkpoint(path).done == {"a": 1, "c": 3}


@pytest.mark.parametrize("kept", [0, 3], ids=["empty", "cut-header"])
def test_a_checkpoint_killed_before_its_first_record_starts_afresh(
    tmp_path: Path, kept: int
) -> None:
    """A crash after the file is created but before its first record (which takes the header
    with it) is flushed leaves an empty file or part of the header: a rerun finds nothing done
    and carries on in the same file, instead of refusing it."""
    path = tmp_path / "run.ckpt"
    store = Checkpoint(path)
    store.record("a", 1)
    store.close()
    path.write_bytes(path.read_bytes()[:kept])
    runs: list[int] = []

    @batched(max_concurrency=1, name="resume.double")
    def double(x: int) -> int:
        runs.append(x)
        return 2 * x

    assert double.batch([1, 2], checkpoint=path) == [2, 4]
    assert double.batch([1, 2, 3], checkpoint=path) == [2, 4, 6]
    assert runs == [1, 2, 3]


def test_answers_holding_a_secret_are_not_checkpointed(tmp_path: Path) -> None:
    """Like the cache, a checkpoint never stores something that looks like an API key."""
    store = Checkpoint(tmp_path / "run.ckpt")
    assert not store.record("k", "Bearer sk-proj-abcdefghijklmnopqrstuvwxyz")
    assert store.record("k", "fine")
    store.close()


WORKER = """
import sys

import openai

from prismq_llmtools.batch import batched
from prismq_llmtools.cache import cached

mode, url, where = sys.argv[1:4]
client = openai.OpenAI(base_url=url, api_key="sk-test", max_retries=0)


def title(topic: str) -> str:
    resp = client.chat.completions.create(
        model="gpt-4o-mini", max_tokens=8, messages=[{"role": "user", "content": topic}]
    )
    return resp.choices[0].message.content


site = cached(where, name="resume.title")(title) if mode == "cache" else title
site = batched(max_concurrency=2, name="resume.title")(site)
answers = site.batch(
    [f"topic {i}" for i in range(40)], checkpoint=where if mode == "checkpoint" else None
)
assert len(answers) == 40 and all(answers)
print("complete")
"""


@pytest.fixture(scope="module")
def paced() -> Iterator[Simulator]:
    """50 ms per answer: a 40-item batch at concurrency 2 takes about a second."""
    with Simulator(SimulatorConfig(seed=5, latency=LatencyModel(base_s=0.05))) as sim:
        yield sim


def _finished(mode: str, where: Path) -> int:
    if mode == "checkpoint":
        return len(Checkpoint(where).done) if where.exists() else 0
    return len(list(where.rglob("output.pkl")))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "how"),
    [
        ("checkpoint", signal.SIGKILL),
        ("checkpoint", signal.SIGINT),
        ("cache", signal.SIGKILL),
    ],
    ids=["checkpoint-crash", "checkpoint-ctrl-c", "cache-crash"],
)
def test_interrupted_batch_resumes_without_repeating(
    paced: Simulator, tmp_path: Path, mode: str, how: signal.Signals
) -> None:
    """Kill the process mid-batch; the rerun asks only for the items that had not finished."""
    paced.reset()
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    where = tmp_path / ("run.ckpt" if mode == "checkpoint" else "cache")
    command = [sys.executable, str(script), mode, paced.url, str(where)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _finished(mode, where) < 6:
        assert first.poll() is None, first.communicate()[1].decode()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    first.send_signal(how)
    out, _ = first.communicate(timeout=30)
    assert b"complete" not in out
    finished = _finished(mode, where)
    assert 6 <= finished < 40

    paced.reset()
    rerun = subprocess.run(command, capture_output=True, timeout=60, check=False)
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert b"complete" in rerun.stdout
    assert paced.stats().received == 40 - finished
