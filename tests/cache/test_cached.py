"""@cached through the real openai client against the simulator.

Tests taking ``mode`` run once with a sync function and once with an async one (the site's
two drivers; see tests/drivers.py).
"""

from __future__ import annotations

import contextlib
import os
import stat
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from prismq_llmtools import cost_tracked, usage_totals
from prismq_llmtools.cache import (
    bypass_cache,
    cache_of,
    cached,
    deterministic_only,
    refresh_cache,
)
from prismq_llmtools.call import Call
from prismq_llmtools.site.decorate import attach
from prismq_llmtools.testing.clock import FakeClock
from prismq_llmtools.testing.simulator import Simulator
from tests.aspects import StubAspect
from tests.drivers import Mode, Steps

from .conftest import named

CANARY = "sk-proj-CANARYcanary0123456789abcdef"
MESSAGES = [{"role": "user", "content": "Title for: caching"}]


def chat_site(mode: Mode, sim: Simulator, cache_dir: Path, **options: Any) -> Any:
    client = mode.client_for(sim, api_key=CANARY)

    @cost_tracked()
    @cached(cache_dir, **options)
    @mode.make
    def ask(
        messages: list[dict[str, str]],
        *,
        model: str = "gpt-4o-mini",
        temperature: float = 0.0,
        seed: int | None = None,
        api_key: str = CANARY,
        timeout: float = 30.0,
    ) -> Steps[str]:
        resp = yield client.chat.completions.create(
            model=model, messages=messages, temperature=temperature, seed=seed, timeout=timeout
        )
        return resp.choices[0].message.content or ""

    return ask


def test_identical_call_is_served_from_the_cache(
    mode: Mode, sim: Simulator, cache_dir: Path, events: list[dict[str, Any]]
) -> None:
    """The second identical call makes no request, costs $0 and reports the cost it saved."""
    ask = chat_site(mode, sim, cache_dir)
    first = mode.invoke(ask, MESSAGES)
    second = mode.invoke(ask, MESSAGES)
    assert first == second
    assert sim.stats().received == 1
    calls = named(events, "llm.call")
    assert [c["cache"] for c in calls] == ["miss", "hit"]
    assert calls[1]["cost_usd"] == 0
    assert calls[1]["usage_source"] == "cache"
    assert "gen_ai.usage.input_tokens" not in calls[1]
    (hit,) = named(events, "llm.cache.hit")
    assert hit["saved_cost_usd"] == calls[0]["cost_usd"] > 0
    assert hit["gen_ai.request.model"] == "gpt-4o-mini"


def test_hits_count_as_saved_never_as_billed(mode: Mode, sim: Simulator, cache_dir: Path) -> None:
    """Usage totals count the hit with its saved cost, and its tokens not at all."""
    ask = chat_site(mode, sim, cache_dir)
    mode.invoke(ask, MESSAGES)
    billed = usage_totals().total()
    mode.invoke(ask, MESSAGES)
    total = usage_totals().total()
    assert total.calls == 2
    assert total.cache_hits == 1
    assert total.input_tokens == billed.input_tokens == sim.stats().prompt_tokens
    assert total.cost_usd == billed.cost_usd
    assert total.saved_cost_usd == billed.cost_usd > 0


class Counting(StubAspect):
    """Stands in for @rate_limited and @token_budgeted: counts reservations and admissions."""

    kind = "counting"

    def __init__(self) -> None:
        super().__init__()
        self.reserved = 0
        self.admitted = 0

    def reserve(self, call: Call) -> None:
        self.reserved += 1

    def before_attempt(self, call: Call) -> float:
        self.admitted += 1
        return 0.0


def test_a_hit_consumes_no_budget_and_no_rate_limit(
    mode: Mode, sim: Simulator, cache_dir: Path
) -> None:
    """Whatever the stacking order, a hit ends before budget reservation and admission."""
    counting = Counting()
    ask = attach(counting)(chat_site(mode, sim, cache_dir))
    mode.invoke(ask, MESSAGES)
    mode.invoke(ask, MESSAGES)
    mode.invoke(ask, MESSAGES)
    assert (counting.reserved, counting.admitted) == (1, 1)


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o"},
        {"temperature": 0.5},
        {"seed": 3},
        {"messages": [{"role": "user", "content": "Title for: batching"}]},
        {"messages": [{"role": "system", "content": "Be terse."}, *MESSAGES]},
    ],
)
def test_different_requests_never_share_an_entry(
    mode: Mode, sim: Simulator, cache_dir: Path, change: dict[str, Any]
) -> None:
    """Any parameter that can change the answer makes a separate entry."""
    ask = chat_site(mode, sim, cache_dir)
    mode.invoke(ask, MESSAGES)
    mode.invoke(ask, **{"messages": MESSAGES, **change})
    assert sim.stats().received == 2


def test_defaults_and_secrets_do_not_split_entries(
    mode: Mode, sim: Simulator, cache_dir: Path
) -> None:
    """Explicit defaults, another API key and another timeout all hit the same entry."""
    ask = chat_site(mode, sim, cache_dir)
    mode.invoke(ask, MESSAGES)
    mode.invoke(ask, MESSAGES, model="gpt-4o-mini", temperature=0.0)
    mode.invoke(ask, messages=MESSAGES, api_key="sk-proj-OTHERother0123456789abcdef", timeout=5.0)
    assert sim.stats().received == 1


def test_no_secret_reaches_the_cache_directory(mode: Mode, sim: Simulator, cache_dir: Path) -> None:
    """The canary API key (argument and client) appears in no cache file."""
    ask = chat_site(mode, sim, cache_dir)
    mode.invoke(ask, MESSAGES)
    mode.invoke(ask, [{"role": "user", "content": "another"}], seed=1)
    files = [p for p in cache_dir.rglob("*") if p.is_file()]
    assert len(files) >= 2
    for path in files:
        assert b"CANARY" not in path.read_bytes(), path


def test_an_answer_holding_a_secret_is_never_stored(
    mode: Mode, sim: Simulator, cache_dir: Path, events: list[dict[str, Any]]
) -> None:
    """An answer whose pickle would hold an API key is served but not stored."""
    client = mode.client_for(sim, api_key=CANARY)

    @cached(cache_dir)
    @mode.make
    def leaky(prompt: str) -> Steps[dict[str, str]]:
        yield client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
        )
        return {"answer": "x", "auth": f"Bearer {CANARY}"}

    assert mode.invoke(leaky, "p")["answer"] == "x"
    mode.invoke(leaky, "p")
    assert sim.stats().received == 2
    assert [e["error"] for e in named(events, "llm.cache.error")] == ["answer holds a secret"] * 2
    for path in cache_dir.rglob("*"):
        if path.is_file():
            assert b"CANARY" not in path.read_bytes()


def test_raw_responses_are_never_stored(
    mode: Mode, sim: Simulator, cache_dir: Path, events: list[dict[str, Any]]
) -> None:
    """``with_raw_response`` results carry the HTTP request (and its headers): not cached."""
    client = mode.client_for(sim, api_key=CANARY)

    @cached(cache_dir)
    @mode.make
    def raw(prompt: str) -> Any:
        return client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
        )

    mode.invoke(raw, "p").parse()  # (a legacy raw response: parse() is sync in both modes)
    mode.invoke(raw, "p").parse()
    assert sim.stats().received == 2
    assert {e["reason"] for e in named(events, "llm.cache.skip")} == {"raw_response"}


def test_errors_are_never_cached(mode: Mode, sim: Simulator, cache_dir: Path) -> None:
    """A failed call leaves no entry: the next identical call goes upstream again."""
    client = mode.client_for(sim)
    fail = [True]

    @cached(cache_dir)
    @mode.make
    def ask(prompt: str) -> Steps[str]:
        resp = yield client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
        )
        if fail.pop() if fail else False:
            raise RuntimeError("post-processing failed")
        return resp.choices[0].message.content or ""

    with pytest.raises(RuntimeError):
        mode.invoke(ask, "p")
    assert mode.invoke(ask, "p")
    assert mode.invoke(ask, "p")
    assert sim.stats().received == 2


def test_upstream_errors_are_never_cached(mode: Mode, sim: Simulator, cache_dir: Path) -> None:
    """An API error (unknown model: 404) is raised each time, never served from the cache."""
    ask = chat_site(mode, sim, cache_dir)
    for _ in range(2):
        with pytest.raises(openai.NotFoundError):
            mode.invoke(ask, MESSAGES, model="no-such-model")
    assert sim.stats().received == 2


def test_when_predicate_skips_the_cache(
    mode: Mode, sim: Simulator, cache_dir: Path, events: list[dict[str, Any]]
) -> None:
    """With ``deterministic_only``, sampling without a seed is never cached; with a seed it is."""
    ask = chat_site(mode, sim, cache_dir, when=deterministic_only)
    mode.invoke(ask, MESSAGES, temperature=0.9)
    mode.invoke(ask, MESSAGES, temperature=0.9)
    assert sim.stats().received == 2
    mode.invoke(ask, MESSAGES, temperature=0.9, seed=5)
    mode.invoke(ask, MESSAGES, temperature=0.9, seed=5)
    assert sim.stats().received == 3
    assert [c["cache"] for c in named(events, "llm.call")] == ["bypass", "bypass", "miss", "hit"]


def test_entries_expire(mode: Mode, sim: Simulator, cache_dir: Path, clock: FakeClock) -> None:
    """An entry older than ``ttl_s`` is a miss (memory and disk layers alike)."""
    ask = chat_site(mode, sim, cache_dir, ttl_s=60, clock=clock)
    mode.invoke(ask, MESSAGES)
    clock.advance(59)
    mode.invoke(ask, MESSAGES)
    assert sim.stats().received == 1
    clock.advance(2)
    mode.invoke(ask, MESSAGES)
    assert sim.stats().received == 2


def test_size_bound_keeps_the_most_recent_entries(
    mode: Mode, sim: Simulator, cache_dir: Path
) -> None:
    """With ``max_entries`` the directory never holds more entries than the bound."""
    ask = chat_site(mode, sim, cache_dir, max_entries=3)
    for i in range(8):
        mode.invoke(ask, [{"role": "user", "content": f"item {i}"}])
        assert cache_of(ask).entries_on_disk() <= 3


def test_bypass_and_refresh_per_call(mode: Mode, sim: Simulator, cache_dir: Path) -> None:
    """``bypass_cache()`` neither reads nor writes; ``refresh_cache()`` re-asks and stores."""
    ask = chat_site(mode, sim, cache_dir)
    first = mode.invoke(ask, MESSAGES)
    with bypass_cache():
        mode.invoke(ask, MESSAGES)
    assert sim.stats().received == 2
    with refresh_cache():
        refreshed = mode.invoke(ask, MESSAGES)
    assert sim.stats().received == 3
    assert mode.invoke(ask, MESSAGES) == refreshed
    assert sim.stats().received == 3
    assert first  # the simulator's answers depend on the request, so both are plausible


def test_version_and_namespace_invalidate(mode: Mode, sim: Simulator, cache_dir: Path) -> None:
    """A new version (or namespace) is a fresh cache; the old one is still there."""
    ask = chat_site(mode, sim, cache_dir)
    mode.invoke(ask, MESSAGES)
    with ask.llm.override(cache_version="2"):
        mode.invoke(ask, MESSAGES)
        mode.invoke(ask, MESSAGES)
    with ask.llm.override(cache_namespace="experiment"):
        mode.invoke(ask, MESSAGES)
    mode.invoke(ask, MESSAGES)
    assert sim.stats().received == 3


def test_disabled_cache_is_transparent(
    mode: Mode, sim: Simulator, cache_dir: Path, events: list[dict[str, Any]]
) -> None:
    """``enabled=False``: every call goes upstream, no directory, no cache field."""
    ask = chat_site(mode, sim, cache_dir, enabled=False)
    mode.invoke(ask, MESSAGES)
    mode.invoke(ask, MESSAGES)
    assert sim.stats().received == 2
    assert not cache_dir.exists()
    assert all("cache" not in c for c in named(events, "llm.call"))


def test_disabled_by_environment(
    mode: Mode, sim: Simulator, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``PRISMQ_LLMTOOLS__ALL__CACHE_ENABLED=false`` turns every cache off."""
    from prismq_llmtools.settings import Settings, reset_settings

    monkeypatch.setenv("PRISMQ_LLMTOOLS__ALL__CACHE_ENABLED", "false")
    reset_settings(Settings())
    ask = chat_site(mode, sim, cache_dir)
    mode.invoke(ask, MESSAGES)
    mode.invoke(ask, MESSAGES)
    assert sim.stats().received == 2


def test_directory_is_created_lazily_and_user_only(
    mode: Mode, sim: Simulator, cache_dir: Path
) -> None:
    """Decorating and missing create nothing; the first store creates the root with 0o700."""
    ask = chat_site(mode, sim, cache_dir)
    assert not cache_dir.exists()
    with bypass_cache():
        mode.invoke(ask, MESSAGES)
    assert not cache_dir.exists()
    mode.invoke(ask, MESSAGES)
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700


def test_default_location_comes_from_the_environment(
    mode: Mode, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a location, ``$PRISMQ_LLMTOOLS_CACHE_DIR`` is used; the settings key wins."""
    monkeypatch.setenv("PRISMQ_LLMTOOLS_CACHE_DIR", str(tmp_path / "from-env"))
    ask = chat_site(mode, sim, None)  # type: ignore[arg-type]
    mode.invoke(ask, MESSAGES)
    assert (tmp_path / "from-env").is_dir()
    with ask.llm.override(cache_dir=str(tmp_path / "from-settings")):
        mode.invoke(ask, MESSAGES)
    assert (tmp_path / "from-settings").is_dir()
    assert cache_of(ask).location == tmp_path / "from-env"


def test_default_location_is_per_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With no environment variable the platform's per-user cache directory is used."""
    from prismq_llmtools.cache.store import default_cache_dir

    environ = {"XDG_CACHE_HOME": str(tmp_path)}
    if os.name == "posix" and os.uname().sysname == "Linux":
        assert default_cache_dir(environ) == tmp_path / "prismq_llmtools"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert str(default_cache_dir({})).startswith(str(tmp_path))


def test_hits_come_from_memory_and_from_disk(mode: Mode, sim: Simulator, cache_dir: Path) -> None:
    """A hit is served from the memory layer, and from the disk layer once memory forgot it."""
    client = mode.client_for(sim)

    @cached(cache_dir)
    @mode.make
    def ask(prompt: str) -> Steps[str]:
        resp = yield client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
        )
        return resp.choices[0].message.content or ""

    first = mode.invoke(ask, "p")
    assert mode.invoke(ask, "p") == first
    cache_of(ask)._memory.clear()  # the disk layer answers too
    assert mode.invoke(ask, "p") == first
    assert sim.stats().received == 1


def test_response_objects_are_copied_per_hit(mode: Mode, sim: Simulator, cache_dir: Path) -> None:
    """A caller mutating its answer does not change what the next caller gets."""
    client = mode.client_for(sim)

    @cached(cache_dir)
    @mode.make
    def ask(prompt: str) -> Any:
        return client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
        )

    first = mode.invoke(ask, "p")
    original = first.choices[0].message.content
    hit = mode.invoke(ask, "p")
    hit.choices[0].message.content = "mutated"
    assert mode.invoke(ask, "p").choices[0].message.content == original
    assert sim.stats().received == 1


def test_methods_are_keyed_by_their_instance(mode: Mode, sim: Simulator, cache_dir: Path) -> None:
    """Two instances with different state do not share answers; equal state does."""
    client = mode.client_for(sim)

    class Writer:
        def __init__(self, tone: str) -> None:
            super().__init__()
            self.tone = tone
            self.client = client

        @cached(cache_dir)
        @mode.make
        def write(self, topic: str) -> Steps[str]:
            resp = yield self.client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"{self.tone}: {topic}"}],
            )
            return resp.choices[0].message.content or ""

    mode.invoke(Writer("dry").write, "x")
    mode.invoke(Writer("dry").write, "x")
    mode.invoke(Writer("warm").write, "x")
    assert sim.stats().received == 2


def test_key_function_customises_the_key(mode: Mode, sim: Simulator, cache_dir: Path) -> None:
    """``key=`` decides what matters; here letter case does not."""
    ask = chat_site(mode, sim, cache_dir, key=lambda bound: bound["messages"][0]["content"].lower())
    mode.invoke(ask, [{"role": "user", "content": "HELLO"}])
    mode.invoke(ask, [{"role": "user", "content": "hello"}])
    assert sim.stats().received == 1


def test_unpicklable_answers_are_served_but_not_stored(
    mode: Mode, sim: Simulator, cache_dir: Path, events: list[dict[str, Any]]
) -> None:
    """An answer that cannot be pickled is returned, with a skip event, and not stored."""
    client = mode.client_for(sim)

    @cached(cache_dir)
    @mode.make
    def ask(prompt: str) -> Steps[Any]:
        yield client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
        )
        return lambda: prompt

    assert mode.invoke(ask, "p")() == "p"
    assert mode.invoke(ask, "p")() == "p"
    assert sim.stats().received == 2
    assert {e["reason"] for e in named(events, "llm.cache.skip")} == {"unpicklable"}


def test_settings_view_shows_the_location(mode: Mode, cache_dir: Path) -> None:
    """``f.llm.settings()`` lists the cache settings and the resolved location."""

    @cached(cache_dir, ttl_s=5)
    @mode.make
    def f(x: int) -> int:
        return x

    view = f.llm.settings()["cached"]
    assert view["cache_ttl_s"] == 5
    assert view["location"] == str(cache_dir)
    assert mode.invoke(f, 2) == 2
    assert mode.invoke(f, 2) == 2
    assert cache_of(f).stats["hits"] == 1
    assert isinstance(Decimal(0), Decimal)


def test_streamed_calls_bypass_the_cache(
    mode: Mode, sim: Simulator, cache_dir: Path, events: list[dict[str, Any]]
) -> None:
    """A call with ``stream=True`` always goes upstream and its stream is never stored."""
    client = mode.client_for(sim)

    @cached(cache_dir)
    @mode.make
    def ask(prompt: str, stream: bool = False) -> Any:
        return client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], stream=stream
        )

    for _ in range(2):
        stream = mode.invoke(ask, "p", stream=True)
        chunks = mode.invoke(mode.chunks, stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert sim.stats().received == 2
    assert {e["reason"] for e in named(events, "llm.cache.skip")} == {"stream"}
    assert not cache_dir.exists()


@pytest.mark.parametrize("kind", ["stream_no_finish", "stream_cut"])
def test_an_interrupted_stream_is_never_cached(
    mode: Mode, sim: Simulator, cache_dir: Path, kind: str
) -> None:
    """A function that reads a stream cut short stores nothing; the next complete one is kept."""
    from prismq_llmtools.testing.simulator import Fault, FaultKind

    client = mode.client_for(sim)

    @cached(cache_dir)
    @mode.make
    def story(prompt: str) -> Steps[str]:
        stream = yield client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], stream=True
        )
        chunks = yield mode.chunks(stream)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    sim.script(Fault(kind=FaultKind(kind)))
    with contextlib.suppress(openai.APIError):  # a cut raises; a missing finish_reason not
        mode.invoke(story, "p")
    complete = mode.invoke(story, "p")
    assert mode.invoke(story, "p") == complete
    assert sim.stats().received == 2
