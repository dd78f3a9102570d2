"""One test, both drivers: the same test body run through a sync and an async function.

A decorated function runs through its site's sync driver, or, when it is ``async def``,
through its async driver. The ``mode`` fixture (``tests/conftest.py``) runs a test once per
driver with a :class:`Mode`, which makes the test's function of that kind and calls it::

    def test_retries_wait_on_the_clock(mode: Mode, clock: FakeClock) -> None:
        @retried(attempts=3, clock=clock)
        @mode.make
        def flaky() -> str:
            ...

        assert mode.invoke(flaky) == "done"
        assert clock.sleeps == [...]

``mode.make(body)`` is the body itself in sync mode. In async mode it is an ``async def``
twin with the body's name, signature and source (so the site's name, settings and cache
identity are the same in both modes) that runs the body and awaits what it would await:

* a returned awaitable is awaited (``return api.chat.completions.create(...)`` is
  ``return await ...`` when ``api`` is an ``openai.AsyncOpenAI``);
* a ``yield`` marks an await point in the middle of a body: the async twin awaits the yielded
  value and sends the result back, the sync twin sends the value straight back::

      @mode.make
      def title(article: str) -> Steps[str]:
          response = yield api.chat.completions.create(model=MODEL, messages=[...])
          return response.choices[0].message.content

The openai clients come from the mode too: :meth:`Mode.openai` and :meth:`Mode.client_for`
give an ``openai.OpenAI`` or an ``openai.AsyncOpenAI``.

``mode.invoke(f, *args, **kwargs)`` calls ``f``; in async mode it runs the coroutine to
completion on the test's own event loop (one per test, closed at its end together with the
async clients the test made), in a copy of the caller's context as ``asyncio.run`` would.
``mode.batch(f, items)`` runs ``f.batch(items)``, or ``f.abatch(items)`` on that loop.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["MODES", "SYNC", "Mode", "Steps"]

T = TypeVar("T")

MODES: tuple[str, ...] = ("sync", "async")

Steps = Generator[Any, Any, T]
"""The type of a body that marks its await points with ``yield`` and returns a ``T``."""


class Mode:
    """Sync or async: how a test's functions are made and called (see the module docstring)."""

    def __init__(self, name: str) -> None:
        if name not in MODES:
            raise ValueError(f"unknown mode {name!r}")
        self.name = name
        self.is_async = name == "async"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: list[Any] = []  # async openai clients, closed on the test's loop
        # Sync clients, closed at the end of the test: left to the garbage collector, one
        # caught in a reference cycle (a logged traceback) may lose its socket first, which
        # Python reports as an unclosed socket in whichever test is running then.
        self._sync_clients: list[Any] = []

    def __repr__(self) -> str:
        return f"Mode({self.name!r})"

    # -- functions -----------------------------------------------------------------------

    def make(self, body: Callable[..., Any]) -> Callable[..., Any]:
        """The body as a function of this mode: itself (sync) or an ``async def`` twin."""
        if self.is_async:
            return _async_twin(body)
        if inspect.isgeneratorfunction(body):
            return _sync_twin(body)
        return body

    def invoke(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Call ``func``; an async function's coroutine runs to completion on the test's loop."""
        result = func(*args, **kwargs)
        if inspect.iscoroutine(result) != self.is_async:
            if inspect.iscoroutine(result):
                result.close()
            raise TypeError(f"{func!r} is not a {self.name} function: was it made by mode.make?")
        if not self.is_async:
            return result
        return self.run(result)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the test's event loop (async mode only)."""
        if not self.is_async:
            coroutine.close()
            raise TypeError("a sync mode runs no coroutines")
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        # The task copies the caller's context, as asyncio.run does: context managers the
        # test entered around the call (bypass_cache, ...) are seen by the call.
        return self._loop.run_until_complete(coroutine)

    # -- openai clients ------------------------------------------------------------------

    def openai(self, **kwargs: Any) -> Any:
        """An ``openai.OpenAI`` (sync) or ``openai.AsyncOpenAI`` (async) made with ``kwargs``."""
        import openai

        if not self.is_async:
            return openai.OpenAI(**kwargs)
        client = openai.AsyncOpenAI(**kwargs)
        self._clients.append(client)
        return client

    def http_client(self, handler: Callable[[Any], Any]) -> Any:
        """An httpx client of this mode whose requests ``handler`` answers (a MockTransport)."""
        import httpx2

        transport = httpx2.MockTransport(handler)
        if self.is_async:
            return httpx2.AsyncClient(transport=transport)
        return httpx2.Client(transport=transport)

    def client_for(self, simulator: Any, **kwargs: Any) -> Any:
        """The simulator's client of this mode (``max_retries=0`` unless given)."""
        if not self.is_async:
            client = simulator.client(**kwargs)
            self._sync_clients.append(client)
            return client
        client = simulator.async_client(**kwargs)
        self._clients.append(client)
        return client

    def chunks(self, stream: Any) -> Any:
        """A stream's chunks as a list: at once (sync), or awaitable (async; ``yield`` it)."""
        if not self.is_async:
            return list(stream)

        async def collect() -> list[Any]:
            return [chunk async for chunk in stream]

        return collect()

    def batch(self, func: Any, items: Any, **options: Any) -> Any:
        """``func.batch(items, **options)`` (sync), or ``await func.abatch(...)`` run to
        completion on the test's loop (async): each mode's way to run a batch."""
        if not self.is_async:
            return func.batch(items, **options)
        return self.run(func.abatch(items, **options))

    # -- clean-up ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the clients and the event loop the test used."""
        for sync_client in self._sync_clients:
            sync_client.close()
        self._sync_clients.clear()
        if not self._clients and self._loop is None:
            return
        loop = self._loop or asyncio.new_event_loop()
        try:
            pending = asyncio.all_tasks(loop)
            if pending:  # left running by the test: end them as asyncio.run does
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.wait(pending))
            for client in self._clients:
                loop.run_until_complete(client.close())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            self._clients.clear()
            self._loop = None
            loop.close()


SYNC = Mode("sync")
"""The sync mode, for helpers whose callers may not choose one."""


def _sync_twin(body: Callable[..., Generator[Any, Any, T]]) -> Callable[..., T]:
    """A plain function running a body whose ``yield`` points get their value straight back."""

    @functools.wraps(body)
    def twin(*args: Any, **kwargs: Any) -> T:
        steps = body(*args, **kwargs)
        try:
            value = next(steps)
            while True:
                value = steps.send(value)
        except StopIteration as stop:
            result: T = stop.value
            return result

    return twin


def _async_twin(body: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
    """An ``async def`` running ``body``, awaiting what it yields and an awaitable it returns."""
    if not inspect.isgeneratorfunction(body):

        @functools.wraps(body)
        async def twin(*args: Any, **kwargs: Any) -> Any:
            result = body(*args, **kwargs)
            return (await result) if inspect.isawaitable(result) else result

        return twin

    @functools.wraps(body)
    async def stepping_twin(*args: Any, **kwargs: Any) -> Any:
        steps = body(*args, **kwargs)
        try:
            awaited = next(steps)
            while True:
                try:
                    value = (await awaited) if inspect.isawaitable(awaited) else awaited
                except BaseException as exc:  # raised at the await point, inside the body
                    awaited = steps.throw(exc)
                else:
                    awaited = steps.send(value)
        except StopIteration as stop:
            result = stop.value
        return (await result) if inspect.isawaitable(result) else result

    return stepping_twin
