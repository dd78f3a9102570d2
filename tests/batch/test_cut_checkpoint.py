"""A checkpoint cut by a crash resumes from the records written before the cut."""

from __future__ import annotations

from pathlib import Path

import pytest

from prismq_llmtools import batched


@pytest.mark.parametrize("cut", [1, 5, 9], ids=["last-byte", "inside-record", "inside-length"])
def test_a_batch_resumes_from_the_records_before_the_cut(tmp_path: Path, cut: int) -> None:
    """Cutting the last record anywhere (its payload or its length prefix) loses that record
    alone: a rerun answers the earlier items from the checkpoint and runs only the rest."""
    path = tmp_path / "run.ckpt"
    runs: list[int] = []

    @batched(max_concurrency=1, name="cut.triple")
    def triple(x: int) -> int:
        runs.append(x)
        return 3 * x

    assert triple.batch([1, 2, 3], checkpoint=path) == [3, 6, 9]
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(size - cut)
    runs.clear()
    assert triple.batch([1, 2, 3, 4], checkpoint=path) == [3, 6, 9, 12]
    assert runs == [3, 4]
