"""The :class:`Simulator`: an OpenAI-compatible server on 127.0.0.1, in a thread or in the
foreground."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.testing.simulator.app import SimulatorApp
from prismq_llmtools.testing.simulator.config import SimulatorConfig
from prismq_llmtools.testing.simulator.engine import Engine
from prismq_llmtools.testing.simulator.faults import Fault, FaultInjector
from prismq_llmtools.testing.simulator.files import FileStore
from prismq_llmtools.testing.simulator.http import serve_connection
from prismq_llmtools.testing.simulator.stats import SimulatorStats, StatsRecorder

if TYPE_CHECKING:
    import openai

__all__ = ["HOST", "Simulator"]

HOST = "127.0.0.1"
"""The only address the simulator binds: it is never reachable from another machine."""
_MAX_BODY_BYTES = 256 * 1024 * 1024
# The connect timeout of the simulator's clients. openai's default (5 s) can fire on a busy
# machine (an asyncio client first resolves the address in a thread of the loop's executor),
# and a test's call then fails, or retries, for no fault of the simulator's. A loopback
# connection with nothing listening is refused at once: a long timeout costs nothing.
_CONNECT_TIMEOUT_S = 60.0


class Simulator:
    """A local OpenAI-compatible API server.

    Use it as a context manager (a background thread serves requests)::

        with Simulator(SimulatorConfig(rpm=60, tpm=10_000)) as sim:
            client = openai.OpenAI(base_url=sim.url, api_key="sk-test", max_retries=0)

    or in the foreground with :meth:`serve_forever` (what ``prismq-llmtools simulate`` does).

    Args:
        config: What to simulate (default: every known model, no limits, no faults).
        port: TCP port on 127.0.0.1; 0 picks a free one.
        clock: Monotonic seconds for the rate-limit buckets and the batch timeline
            (inject a fake clock to test limits without waiting).
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        port: int = 0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not 0 <= port <= 65_535:
            raise ConfigurationError(f"port must be in 0..65535, got {port}")
        self.config = config or SimulatorConfig()
        self._requested_port = port
        clock = clock or time.monotonic
        self._stats = StatsRecorder()
        self._faults = FaultInjector(
            seed=self.config.seed,
            profile=self.config.faults,
            per_model=self.config.model_faults,
            script=self.config.script,
        )
        self.app = SimulatorApp(
            engine=Engine(self.config, clock),
            faults=self._faults,
            stats=self._stats,
            files=FileStore(),
            clock=clock,
        )
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        """The bound port (after start)."""
        if self._port is None:
            raise RuntimeError("the simulator is not running")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: the control endpoints live under ``/_simulator/``."""
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the ``base_url`` for an OpenAI client."""
        return f"{self.base_url}/v1"

    def stats(self) -> SimulatorStats:
        """A frozen snapshot of what the simulator saw."""
        return self._stats.snapshot()

    def reset(
        self, *, buckets: bool = False, prompt_cache: bool = False, faults: bool = False
    ) -> None:
        """Zero the stats; optionally refill the buckets, forget prompts, drop scripted faults."""
        self.app.reset(buckets, prompt_cache, faults)

    def script(self, *faults: Fault) -> None:
        """The next matching requests get these faults, in order."""
        self._faults.push(faults)

    def pending_faults(self) -> tuple[Fault, ...]:
        """Scripted faults not consumed yet."""
        return self._faults.pending()

    def client(self, **kwargs: Any) -> openai.OpenAI:
        """An ``openai.OpenAI`` for this simulator (``max_retries=0`` and a connect timeout of
        a minute unless given)."""
        import openai

        return openai.OpenAI(base_url=self.url, **_client_options(kwargs))

    def async_client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        """An ``openai.AsyncOpenAI`` for this simulator (``max_retries=0`` and a connect
        timeout of a minute unless given)."""
        import openai

        return openai.AsyncOpenAI(base_url=self.url, **_client_options(kwargs))

    # -- running in a background thread ------------------------------------------------

    def start(self) -> Simulator:
        """Serve from a background thread; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("the simulator is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                # Vocabularies load before the port opens, so no request waits for them.
                self.app.engine.warm_up()
                asyncio.run(self._serve(ready.set))
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()

        self._thread = threading.Thread(target=run, name="prismq-simulator", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket, then join the thread."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        thread.join()
        self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- running in the foreground -----------------------------------------------------

    def serve_forever(self, on_ready: Callable[[Simulator], None] | None = None) -> None:
        """Serve in this thread until SIGINT or SIGTERM."""

        def ready() -> None:
            loop = asyncio.get_running_loop()
            stop = self._stop
            assert stop is not None  # set by _serve before it calls ready
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, stop.set)
            if on_ready is not None:
                on_ready(self)

        self.app.engine.warm_up()
        asyncio.run(self._serve(ready))

    async def _serve(self, ready: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(
            self._on_connection, HOST, self._requested_port, backlog=1024, reuse_address=True
        )
        self._port = int(server.sockets[0].getsockname()[1])
        try:
            ready()
            await self._stop.wait()
        finally:
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await server.wait_closed()
            self._port = None
            self._loop = None

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None  # asyncio runs every connection callback in a task
        self._connections.add(task)
        try:
            await serve_connection(reader, writer, self.app.handle, max_body_bytes=_MAX_BODY_BYTES)
        except asyncio.CancelledError:
            # Shutting down. Ending normally matters: asyncio's stream callback calls
            # task.exception(), which would raise (and log) for a cancelled task.
            return
        finally:
            self._connections.discard(task)


def _client_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    import openai

    options = {"api_key": "sk-simulator", "max_retries": 0, **kwargs}
    options.setdefault("timeout", openai.Timeout(600.0, connect=_CONNECT_TIMEOUT_S))
    return options
