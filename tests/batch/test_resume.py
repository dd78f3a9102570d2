"""Resume: a rerun after a crash or Ctrl-C does not repeat finished items."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest

from prismq_llmtools.batch import batched
from prismq_llmtools.batch.checkpoint import Checkpoint
from prismq_llmtools.errors import BatchError
from prismq_llmtools.testing.simulator import Simulator

from .conftest import named
from .resume_worker import TOPICS, run, title_site


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


ROOT = Path(__file__).resolve().parents[2]


def _finished(mode: str, where: Path) -> int:
    if mode == "checkpoint":
        return len(Checkpoint(where).done) if where.exists() else 0
    return len(list(where.rglob("output.pkl")))


def _read_until(worker: subprocess.Popen[bytes], expected: set[str]) -> None:
    """Read the worker's lines until it has said every one of ``expected`` (in any order)."""
    assert worker.stdout is not None
    missing, said = set(expected), []
    while missing:
        raw = worker.stdout.readline()
        if not raw:  # the worker ended without saying them
            pytest.fail(f"the worker exited ({worker.wait()}) before {missing}; it said {said}")
        said.append(raw.decode().strip())
        missing.discard(said[-1])


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
    sim: Simulator, tmp_path: Path, mode: str, how: signal.Signals
) -> None:
    """Kill the process mid-batch; the rerun asks only for the items that had not finished.

    The interrupt lands at a point the test controls: items 0 to 5 have finished, and items
    6 and 7 (at concurrency 2, the only ones in flight) hold their answers until the test
    releases them, so the batch cannot move while the signal is delivered.
    """
    where = tmp_path / ("run.ckpt" if mode == "checkpoint" else "cache")
    command = [sys.executable, "-m", "tests.batch.resume_worker", mode, sim.url, str(where)]
    with (
        (tmp_path / "stderr").open("w+b") as stderr,
        subprocess.Popen(
            [*command, "6,7"], cwd=ROOT, stdin=PIPE, stdout=PIPE, stderr=stderr
        ) as worker,
    ):
        try:
            _read_until(worker, {"holding topic 6", "holding topic 7"})
            worker.send_signal(how)
            if how == signal.SIGINT:  # Ctrl-C: the items in flight end once it is handled
                _read_until(worker, {"interrupted"})
            assert worker.stdin is not None
            worker.stdin.close()
            if worker.wait() != -how:
                stderr.seek(0)
                pytest.fail(f"the worker exited {worker.returncode}: {stderr.read().decode()}")
        except BaseException:
            worker.kill()  # never left running, whatever failed
            raise
    assert _finished(mode, where) == 6
    assert sim.stats().received == 8  # no item started after the interrupt

    sim.reset()
    with sim.client() as client:  # the rerun: a new site over the same files
        answers = run(title_site(mode, client, where), mode, where)
    assert len(answers) == len(TOPICS)
    assert all(answers)
    assert sim.stats().received == len(TOPICS) - 6


def test_ctrl_c_while_the_driver_holds_an_items_lock_strands_no_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C can land anywhere in the thread running the batch, also while it holds the lock
    of an item in flight (a future's condition). The item must still be able to finish and
    its worker thread end: a lock left held blocks the worker in set_result forever, and the
    process, which joins its workers at exit, never ends.

    Deterministic: a trace function raises KeyboardInterrupt at the first line the driving
    thread runs while it owns the lock of an unfinished item; the items wait for the test.
    """
    import concurrent.futures

    release = threading.Event()

    @batched(max_concurrency=2, name="resume.held")
    def held(x: int) -> int:
        release.wait()
        return x

    futures: list[concurrent.futures.Future[Any]] = []
    submit = concurrent.futures.ThreadPoolExecutor.submit

    def recording_submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        future = submit(self, fn, *args, **kwargs)
        futures.append(future)
        return future

    monkeypatch.setattr(concurrent.futures.ThreadPoolExecutor, "submit", recording_submit)
    interrupted_in: list[str] = []

    def owns_an_unfinished_items_lock() -> bool:
        return any(
            f._condition._is_owned() and not f.done()  # type: ignore[attr-defined]
            for f in futures
        )

    def trace(frame: Any, event: str, arg: Any) -> Any:
        if interrupted_in:
            return None
        if event == "line" and owns_an_unfinished_items_lock():
            interrupted_in.append(frame.f_code.co_name)
            raise KeyboardInterrupt
        return trace

    before = set(threading.enumerate())
    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        with pytest.raises(KeyboardInterrupt):
            held.batch(range(6))
    finally:
        sys.settrace(previous)
        release.set()
    assert interrupted_in  # the interrupt landed while an item's lock was held
    workers = [t for t in set(threading.enumerate()) - before if t.name.startswith("prismq-batch")]
    for worker in workers:
        worker.join(timeout=10)
    stuck = [worker.name for worker in workers if worker.is_alive()]
    for future in futures:  # let a stuck worker go, so the test process can still exit
        while future._condition._is_owned():  # type: ignore[attr-defined]
            future._condition.release()
    assert not stuck, f"workers stuck on a lock left held in {interrupted_in}: {stuck}"
