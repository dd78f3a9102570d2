"""The call site: one wrapper, one Call, fixed phase order, whatever the stacking.

Tests taking ``mode`` run once with a sync function and once with an async one (the site's
two drivers; see tests/drivers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import inspect
import itertools
from typing import Any

import pytest

from prismq_llmtools import ConfigurationError, cost_tracked, retried
from prismq_llmtools.aspect import Aspect, CacheHit
from prismq_llmtools.call import Call, current_call
from prismq_llmtools.openai.errors import RetryAdvice
from prismq_llmtools.site.wrapper import Site, core_of
from prismq_llmtools.testing.clock import FakeClock
from tests.aspects import StubAspect
from tests.drivers import Mode, Steps


class Recorder(StubAspect):
    """An aspect that records which hooks ran, in order, into a shared log."""

    def __init__(self, kind: str, log: list[str], *, hit: Any = None) -> None:
        super().__init__()
        self.kind = kind  # type: ignore[misc]
        self.log = log
        self.hit = hit

    def enter(self, call: Call) -> CacheHit | None:
        self.log.append(f"{self.kind}.enter")
        return CacheHit(self.hit) if self.hit is not None else None

    def reserve(self, call: Call) -> None:
        self.log.append(f"{self.kind}.reserve")

    def before_attempt(self, call: Call) -> float:
        self.log.append(f"{self.kind}.before_attempt")
        return 0.0

    def after_attempt(self, call: Call, error: BaseException | None) -> None:
        self.log.append(f"{self.kind}.after_attempt")

    def settle(self, call: Call) -> None:
        self.log.append(f"{self.kind}.settle")

    def leave(self, call: Call, result: Any) -> None:
        self.log.append(f"{self.kind}.leave")

    def finish(self, call: Call) -> None:
        self.log.append(f"{self.kind}.finish")


def _decorator(aspect: Aspect) -> Any:
    from prismq_llmtools.site.decorate import attach

    return attach(aspect)


def test_decorated_function_keeps_signature_doc_and_name(mode: Mode) -> None:
    """inspect sees the original function through the wrapper, an async one as async."""

    @retried()
    @mode.make
    def write_title(article: str, *, model: str = "gpt-4o-mini") -> str:
        """Write a title."""
        return article.upper()

    assert mode.invoke(write_title, "abc") == "ABC"
    assert inspect.iscoroutinefunction(write_title) is mode.is_async
    assert write_title.__name__ == "write_title"
    assert write_title.__doc__ == "Write a title."
    assert list(inspect.signature(write_title).parameters) == ["article", "model"]
    assert write_title.llm.name.endswith(
        "test_site.test_decorated_function_keeps_signature_doc_and_name.<locals>.write_title"
    )


def test_stacked_decorators_share_one_site(mode: Mode) -> None:
    """Each further decorator adds an aspect to the same wrapper instead of nesting."""

    @cost_tracked(operation="titles")
    @retried(attempts=2)
    @mode.make
    def f(x: int) -> int:
        return x

    assert mode.invoke(f, 3) == 3
    assert isinstance(f, Site)
    assert not isinstance(f.__wrapped__, Site)
    assert [a.kind for a in core_of(f).aspects] == ["retried", "cost_tracked"]
    assert f.llm.operation == "titles"


def test_same_decorator_twice_is_a_configuration_error() -> None:
    """Applying one decorator twice fails at decoration time, naming the site."""
    with pytest.raises(ConfigurationError, match="applied twice"):

        @retried()
        @retried()
        def f() -> None: ...


@pytest.mark.parametrize("order", list(itertools.permutations(["a", "b", "c"])))
def test_phase_order_does_not_depend_on_stacking_order(mode: Mode, order: tuple[str, ...]) -> None:
    """Hooks run phase by phase in the same order for every stacking order."""
    log: list[str] = []

    @mode.make
    def f() -> str:
        log.append("run")
        return "ok"

    decorated: Any = f
    for kind in order:
        decorated = _decorator(Recorder(kind, log))(decorated)
    assert mode.invoke(decorated) == "ok"
    phases = [entry.split(".")[1] if "." in entry else entry for entry in log]
    assert phases == [
        "enter", "enter", "enter",
        "reserve", "reserve", "reserve",
        "before_attempt", "before_attempt", "before_attempt",
        "run",
        "after_attempt", "after_attempt", "after_attempt",
        "settle", "settle", "settle",
        "leave", "leave", "leave",
        "finish", "finish", "finish",
    ]  # fmt: skip


def test_cache_hit_skips_reserve_and_attempts(mode: Mode) -> None:
    """A hit returned by ``enter`` ends the call: no budget, no rate limit, no run."""
    log: list[str] = []

    @_decorator(Recorder("cache", log, hit="cached"))
    @_decorator(Recorder("budget", log))
    @mode.make
    def f() -> str:
        log.append("run")
        return "fresh"

    assert mode.invoke(f) == "cached"
    assert "run" not in log
    assert not any(e.endswith(("reserve", "before_attempt")) for e in log)


def service(mode: Mode) -> Any:
    """A class with a decorated method, classmethod and staticmethod of the mode's kind."""

    class Service:
        prefix = "svc"

        @retried()
        @mode.make
        def method(self, x: int) -> str:
            return f"{self.prefix}:{x}"

        @retried()
        @classmethod
        @mode.make
        def klass(cls, x: int) -> str:
            return f"{cls.prefix}:{x}"

        @retried()
        @staticmethod
        @mode.make
        def static(x: int) -> str:
            return f"static:{x}"

    return Service


def test_methods_classmethods_and_staticmethods(mode: Mode) -> None:
    """Methods bind normally, and ``.llm`` is reachable on the bound method too."""
    Service = service(mode)
    s = Service()
    assert mode.invoke(s.method, 1) == "svc:1"
    assert mode.invoke(Service.klass, 2) == "svc:2"
    assert mode.invoke(Service.static, 3) == "static:3"
    assert s.method.llm is Service.__dict__["method"].llm
    assert s.method.llm.name.endswith("Service.method")


def test_method_arguments_bind_without_self(mode: Mode) -> None:
    """Request discovery sees the method's arguments by name, not ``self``."""
    seen: list[dict[str, Any]] = []

    class Spy(StubAspect):
        kind = "spy"

        def enter(self, call: Call) -> None:
            seen.append(site.bind(call, call.args and obj))
            return

    class C:
        @_decorator(Spy())
        @mode.make
        def generate(self, prompt: str, model: str = "gpt-4o") -> str:
            return prompt

    obj = C()
    site = core_of(C.__dict__["generate"])
    mode.invoke(obj.generate, "hi")
    assert seen == [{"prompt": "hi", "model": "gpt-4o"}]


def test_nested_calls_form_a_tree_and_roll_up(mode: Mode) -> None:
    """A decorated call inside another gets it as parent and extends its operation path."""
    calls: list[Call] = []

    class Keep(StubAspect):
        kind = "keep"

        def finish(self, call: Call) -> None:
            calls.append(call)

    @cost_tracked(operation="summarize")
    @_decorator(Keep())
    @mode.make
    def inner() -> str:
        return "x"

    @cost_tracked(operation="report")
    @mode.make
    def outer() -> Steps[str]:
        assert current_call.get() is not None
        first = yield inner()
        second = yield inner()
        return first + second

    assert mode.invoke(outer) == "xx"
    assert [c.operation for c in calls] == ["report/summarize", "report/summarize"]
    assert calls[0].parent is not None
    assert calls[0].parent.operation == "report"
    assert current_call.get() is None


def test_retry_waits_on_the_site_clock(mode: Mode) -> None:
    """Backoff sleeps go through the injected clock: no real waiting."""
    clock = FakeClock()
    attempts = []

    @retried(attempts=3, clock=clock, classify=lambda e: RetryAdvice(True))
    @mode.make
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("transient")
        return "done"

    assert mode.invoke(flaky) == "done"
    assert len(attempts) == 3
    assert len(clock.sleeps) == 2
    assert flaky.llm.stats() == {"calls": 1, "errors": 0}


def test_keyboard_interrupt_is_never_retried_and_context_is_restored(mode: Mode) -> None:
    """BaseException-only errors pass straight through and leave no current Call."""
    attempts = []

    @retried(attempts=5, clock=FakeClock(), classify=lambda e: RetryAdvice(True))
    @mode.make
    def f() -> None:
        attempts.append(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mode.invoke(f)
    assert attempts == [1]
    assert current_call.get() is None
    assert f.llm.stats()["errors"] == 1


async def test_a_cancelled_task_is_never_retried_and_context_is_restored() -> None:
    """Cancellation, the async counterpart of an interrupt: a task cancelled inside the
    function is not retried (even by a policy that retries everything) and counts as an error."""
    attempts = []
    running = asyncio.Event()

    @retried(attempts=5, clock=FakeClock(), classify=lambda e: RetryAdvice(True))
    async def f() -> None:
        attempts.append(1)
        running.set()
        await asyncio.Event().wait()  # until cancelled

    task = asyncio.create_task(f())
    await running.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert attempts == [1]
    assert current_call.get() is None
    assert f.llm.stats()["errors"] == 1


def test_request_extractor_describes_a_plain_text_site(mode: Mode) -> None:
    """request= turns the arguments into the request the site will send."""
    seen: list[Any] = []

    class Keep(StubAspect):
        kind = "keep"
        needs_request = True

        def reserve(self, call: Call) -> None:
            seen.append(call.request)

    from prismq_llmtools.site.decorate import attach

    @attach(
        Keep(),
        request=lambda a: {"model": "gpt-4o", "messages": [{"role": "user", "content": a["text"]}]},
    )
    @mode.make
    def title(text: str) -> str:
        return text

    mode.invoke(title, "hello")
    (request,) = seen
    assert request.model == "gpt-4o"
    assert request.endpoint == "chat"
    assert request.body["messages"][0]["content"] == "hello"


def test_site_default_model_when_arguments_name_none(mode: Mode) -> None:
    """model= on a decorator is the request's model when the arguments have none."""
    seen: list[Any] = []

    class Keep(StubAspect):
        kind = "keep"
        needs_request = True

        def reserve(self, call: Call) -> None:
            seen.append(call.request)

    from prismq_llmtools.site.decorate import attach

    @attach(Keep(), model="gpt-4.1-mini")
    @mode.make
    def title(text: str) -> str:
        return text

    mode.invoke(title, "x")
    assert seen[0].model == "gpt-4.1-mini"


def test_llm_stats_include_each_aspects_view(mode: Mode, tmp_path: Any) -> None:
    """f.llm.stats() shows the site's counts and its aspects' live statistics."""
    from prismq_llmtools import cached

    @cached(str(tmp_path))
    @retried()
    @mode.make
    def double(x: int) -> int:
        return 2 * x

    mode.invoke(double, 2)
    mode.invoke(double, 2)
    stats = double.llm.stats()
    assert stats["calls"] == 2
    assert stats["errors"] == 0
    assert stats["cached"]["hits"] == 1
    assert stats["cached"]["misses"] == 1


def test_plain_text_estimate_counts_the_text_not_the_model_name() -> None:
    """A plain-text site is estimated from its text; a model= keyword is not prompt text."""
    from prismq_llmtools.call import Request
    from prismq_llmtools.openai.tokens import count_request
    from prismq_llmtools.site.estimate import ensure_estimate

    text = "A bakery delivers bread by cargo bike."
    call = Call("s", "s", (text,), {"model": "gpt-4o-mini"})
    call.request = Request(model="gpt-4o-mini", body={"model": "gpt-4o-mini"})
    estimate = ensure_estimate(call)
    alone = count_request({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})
    assert estimate is not None
    assert estimate.prompt_tokens == alone.prompt_tokens


def test_decorating_a_bound_method_calls_it_with_its_instance(mode: Mode) -> None:
    """A site made from an already bound method sees its object as the call's instance,
    and a plain function's site sees none (as wrapt's own call would decide)."""
    seen: list[Any] = []

    class Spy(StubAspect):
        kind = "spy"

        def reserve(self, call: Call) -> None:
            seen.append(call.instance)

    class Greeter:
        @mode.make
        def greet(self, name: str) -> str:
            return f"hi {name}"

    greeter = Greeter()
    bound = _decorator(Spy())(greeter.greet)
    plain = _decorator(Spy())(mode.make(lambda name: name))
    assert mode.invoke(bound, "ann") == "hi ann"
    assert mode.invoke(plain, "bob") == "bob"
    assert seen == [greeter, None]


@pytest.mark.parametrize("default_model", [None, "gpt-4o-mini"])
def test_request_discovery_skips_binding_only_where_binding_would_find_nothing(
    default_model: str | None,
) -> None:
    """For a function whose parameters name no request field, the site's short way to the
    request gives exactly what binding the arguments and reading them gives."""
    from prismq_llmtools.openai.request import request_from_arguments
    from prismq_llmtools.site.core import SiteCore

    def plain(article: str, *extra: str, style: str = "short", **options: Any) -> str:
        return article

    core = SiteCore(plain)
    core.set_defaults(model=default_model)
    for args, kwargs in [
        (("text",), {}),
        (("text", "more"), {"style": "long"}),
        (("text",), {"tone": "dry"}),
        (("text",), {"model": "gpt-4o", "max_tokens": 9}),  # **options names request fields
    ]:
        call = Call(core.name, core.operation, args, kwargs)
        general = request_from_arguments(core.bind(call, None), default_model=default_model)
        assert core.discover_request(call, None) == general, (args, kwargs)


@pytest.mark.parametrize("logging_on", [False, True], ids=["logging off", "logging on"])
@pytest.mark.parametrize("with_cache", [False, True], ids=["alone", "with @cached"])
def test_a_function_changing_its_own_arguments_is_counted_as_it_was_called(
    mode: Mode, tmp_path: Any, logging_on: bool, with_cache: bool
) -> None:
    """The request is what was asked when the function was called, even when nothing reads
    it before the function runs (here, nothing does with logging off): a function that
    appends its answer to its messages and edits them in place, at any depth, is counted as
    it was called."""
    import structlog
    from structlog.testing import capture_logs

    from prismq_llmtools import cached, usage_totals
    from prismq_llmtools.openai.tokens import count_request

    def title(messages: list[dict[str, Any]], model: str = "gpt-4o-mini") -> str:
        messages[0]["content"] += " Make it long, and explain why, at length." * 5
        messages[1]["content"][0]["text"] += " and a second article" * 5
        messages.append({"role": "assistant", "content": "Tides, explained at length " * 20})
        return "Tides"

    inner = cached(str(tmp_path))(mode.make(title)) if with_cache else mode.make(title)
    site = cost_tracked(operation="titles")(inner)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You write titles."},
        {"role": "user", "content": [{"type": "text", "text": "An article about tides."}]},
    ]
    asked = count_request({"model": "gpt-4o-mini", "messages": copy.deepcopy(messages)})
    if not logging_on:
        structlog.reset_defaults()
    with capture_logs() if logging_on else contextlib.nullcontext():
        assert mode.invoke(site, messages) == "Tides"
    assert len(messages) == 3
    assert usage_totals().by_operation()["titles"].input_tokens == asked.prompt_tokens


@pytest.mark.parametrize("logging_on", [False, True], ids=["logging off", "logging on"])
def test_a_cache_hit_records_the_same_whoever_reads_its_request(
    mode: Mode, tmp_path: Any, logging_on: bool
) -> None:
    """A hit's request is found only when something reads it; what is recorded (totals by
    model, hits, saved cost) and the ``llm.call`` line do not depend on who reads it."""
    import structlog
    from structlog.testing import capture_logs

    from prismq_llmtools import cached, usage_totals

    @cost_tracked(operation="titles")
    @cached(str(tmp_path))
    @mode.make
    def title(messages: list[dict[str, str]], model: str = "gpt-4o-mini") -> str:
        return "Tides"

    messages = [{"role": "user", "content": "Write a title for an article about tides."}]
    mode.invoke(title, messages)  # a miss, stored
    lines: list[dict[str, Any]] = []
    if logging_on:
        with capture_logs() as lines:
            mode.invoke(title, messages, model="gpt-4o-mini")
    else:
        structlog.reset_defaults()
        mode.invoke(title, messages, model="gpt-4o-mini")
    (group,) = usage_totals().by_model().items()
    assert group[0] == "gpt-4o-mini"
    assert (group[1].calls, group[1].cache_hits) == (2, 1)
    assert group[1].saved_cost_usd > 0
    if logging_on:
        (line,) = [e for e in lines if e["event"] == "llm.call"]
        assert line["cache"] == "hit"
        assert line["gen_ai.request.model"] == "gpt-4o-mini"
        assert line["gen_ai.operation.name"] == "chat"


@pytest.mark.parametrize("logging_on", [False, True], ids=["logging off", "logging on"])
def test_a_failing_request_extractor_fails_a_cache_hit_too(
    mode: Mode, tmp_path: Any, logging_on: bool
) -> None:
    """An extractor is user code: it runs before the lookup, so its failure fails the call,
    hit or not, whether or not anything else would have read the request."""
    import structlog
    from structlog.testing import capture_logs

    from prismq_llmtools import cached

    calls = itertools.count()

    def extract(bound: dict[str, Any]) -> dict[str, Any]:
        if next(calls) > 0:
            raise LookupError("no model for this text")
        return {"model": "gpt-4o", "messages": [{"role": "user", "content": bound["text"]}]}

    @retried(request=extract)
    @cached(str(tmp_path))
    @mode.make
    def title(text: str) -> str:
        return text.upper()

    assert mode.invoke(title, "tides") == "TIDES"
    if not logging_on:
        structlog.reset_defaults()
    with (
        capture_logs() if logging_on else contextlib.nullcontext(),
        pytest.raises(LookupError, match="no model"),
    ):
        mode.invoke(title, "tides")
