"""The batch that ``test_resume.py`` interrupts, in a process of its own.

``python -m tests.batch.resume_worker MODE URL WHERE HOLD`` runs 40 titles at concurrency 2,
remembered by a checkpoint (MODE ``checkpoint``) or a cache (MODE ``cache``) at WHERE. The
items named in HOLD (``6,7``) get their answer, say ``holding topic N`` and then wait until
the test closes the worker's stdin; so the test knows exactly which items had finished when
it interrupts. The test reruns the batch in its own process with :func:`title_site`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import openai

from prismq_llmtools.batch import batched
from prismq_llmtools.cache import cached

TOPICS = [f"topic {i}" for i in range(40)]


def title_site(
    mode: str,
    client: openai.OpenAI,
    where: Path,
    *,
    held: Collection[str] = (),
    on_hold: Callable[[str], None] = lambda topic: None,
) -> Any:
    """The batched site; items in ``held`` call ``on_hold(topic)`` once answered."""

    def title(topic: str) -> str:
        resp = client.chat.completions.create(
            model="gpt-4o-mini", max_tokens=8, messages=[{"role": "user", "content": topic}]
        )
        if topic in held:
            on_hold(topic)
        return resp.choices[0].message.content or ""

    site = cached(where, name="resume.title")(title) if mode == "cache" else title
    return batched(max_concurrency=2, name="resume.title")(site)


def run(site: Any, mode: str, where: Path) -> list[str]:
    answers: list[str] = site.batch(
        TOPICS, checkpoint=where if mode == "checkpoint" else None, progress=False
    )
    return answers


def _say(line: str) -> None:
    os.write(1, f"{line}\n".encode())  # one write per line, whichever thread says it


def main(mode: str, url: str, where: str, hold: str) -> None:
    # Ctrl-C raises KeyboardInterrupt here even when the tests run as a background job,
    # which starts every child with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    release = threading.Event()

    def on_hold(topic: str) -> None:
        _say(f"holding {topic}")
        release.wait()

    def released() -> None:
        sys.stdin.read()  # until the test closes our stdin
        release.set()

    threading.Thread(target=released, daemon=True).start()
    # (a connect timeout longer than openai's 5 s, which can fire on a busy machine)
    timeout = openai.Timeout(600.0, connect=60.0)
    client = openai.OpenAI(base_url=url, api_key="sk-test", max_retries=0, timeout=timeout)
    held = {f"topic {i}" for i in hold.split(",") if i}
    site = title_site(mode, client, Path(where), held=held, on_hold=on_hold)
    try:
        answers = run(site, mode, Path(where))
    except KeyboardInterrupt:
        _say("interrupted")
        raise
    assert len(answers) == len(TOPICS)
    assert all(answers)
    _say("complete")


if __name__ == "__main__":
    main(*sys.argv[1:5])
