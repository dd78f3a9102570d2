"""The ``@batched`` aspect: a site's batch settings, and which batch item each call belongs to."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prismq_llmtools.aspect import Aspect
from prismq_llmtools.batch.items import (
    MergeSpec,
)
from prismq_llmtools.batch.runner import (
    item_box,
)
from prismq_llmtools.call import Call
from prismq_llmtools.settings.rules import Flag, Integer, Text, check_fields, register_keys

__all__ = ["BatchAspect", "BatchPolicy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchPolicy:
    """How ``f.batch`` runs; every field is also a settings key.

    Args:
        batch_max_concurrency: calls in flight at once (threads, or tasks for async sites).
        batch_progress: True draws a progress bar, False never, None on a terminal only.
        batch_merge: the list-capable parameter to merge items on (``input``), or None.
        batch_max_inputs: inputs per merged request.
        batch_max_tokens: tokens per merged request (None: unbounded).
    """

    batch_max_concurrency: int = 8
    batch_progress: bool | None = None
    batch_merge: str | None = None
    batch_max_inputs: int = 2048
    batch_max_tokens: int | None = 300_000

    def __post_init__(self) -> None:
        check_fields(self, "batched")
        MergeSpec(
            param=self.batch_merge or "-",
            max_inputs=self.batch_max_inputs,
            max_tokens=self.batch_max_tokens,
        )


register_keys(
    "batched",
    {
        "batch_max_concurrency": Integer(minimum=1),
        "batch_progress": Flag(optional=True),
        "batch_merge": Text(optional=True),
        "batch_max_inputs": Integer(minimum=1),
        "batch_max_tokens": Integer(minimum=1, optional=True),
    },
    arguments={
        "batch_max_concurrency": "max_concurrency",
        "batch_progress": "progress",
        "batch_merge": "merge",
        "batch_max_inputs": "max_inputs_per_request",
        "batch_max_tokens": "max_tokens_per_request",
    },
)


class BatchAspect(Aspect[BatchPolicy]):
    """Holds a site's batch settings and attributes each finished call to its batch item."""

    kind = "batched"

    def __init__(
        self,
        policy: BatchPolicy,
        *,
        split: Callable[[Any, int], Sequence[Any]] | None = None,
        count_tokens: Callable[[Any, str | None], int] | None = None,
    ) -> None:
        super().__init__(policy)
        self.split = split
        self.count_tokens = count_tokens
        self._lock = threading.Lock()
        self._items_running = 0

    def active_hooks(self) -> set[str]:
        # Only while batch items run does a call need attributing to its item: every
        # other call of the site skips the hook.
        return {"finish"} if self._items_running else set()

    @contextmanager
    def collecting(self) -> Iterator[None]:
        """Attribute the site's calls to their batch item while the block runs."""
        self._count_items(1)
        try:
            yield
        finally:
            self._count_items(-1)

    def _count_items(self, step: int) -> None:
        with self._lock:
            was = self._items_running
            self._items_running += step
            if (was == 0) != (self._items_running == 0) and self._site is not None:
                self._site.refresh_hooks()

    def finish(self, call: Call) -> None:
        box = item_box.get()
        if box is not None and call.site == box.site and call.parent is box.parent:
            box.add(call)

    def merge_spec(self) -> MergeSpec | None:
        """The merge settings, when this site merges items."""
        policy: BatchPolicy = self.settings
        if policy.batch_merge is None:
            return None
        return MergeSpec(
            param=policy.batch_merge,
            max_inputs=policy.batch_max_inputs,
            max_tokens=policy.batch_max_tokens,
            count_tokens=self.count_tokens,
            split=self.split,
            tokenizer=self._site.tokenizer if self._site is not None else None,
        )
