"""Injected faults surface as the exceptions the official client raises for the real ones."""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.error
from collections.abc import Callable, Iterator

import openai
import pytest

from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.testing import (
    FakeClock,
    Fault,
    FaultKind,
    FaultProfile,
    LatencyModel,
    Simulator,
    SimulatorConfig,
)
from prismq_llmtools.testing.pytest_plugin import SimulatorFactory
from prismq_llmtools.testing.simulator.client import _call

MESSAGES = [{"role": "user", "content": "Say something."}]


@pytest.fixture
def client(simulator: Simulator) -> Iterator[openai.OpenAI]:
    with simulator.client() as client:
        yield client


def _chat(client: openai.OpenAI, model: str = "gpt-4o-mini") -> object:
    return client.chat.completions.create(model=model, messages=MESSAGES)


def test_script_503_then_429_with_retry_after_then_success(
    simulator: Simulator, client: openai.OpenAI
) -> None:
    """The next requests get the scripted faults in order, then normal answers."""
    simulator.script(
        Fault(kind=FaultKind.SERVICE_UNAVAILABLE), Fault(kind=FaultKind.RATE_LIMIT, retry_after_s=2)
    )
    with pytest.raises(openai.InternalServerError) as unavailable:
        _chat(client)
    assert unavailable.value.status_code == 503
    with pytest.raises(openai.RateLimitError) as limited:
        _chat(client)
    assert limited.value.code == "rate_limit_exceeded"
    assert limited.value.response.headers["retry-after"] == "2"
    assert limited.value.response.headers["retry-after-ms"] == "2000"
    _chat(client)
    stats = simulator.stats()
    assert stats.faults == {"rate_limit": 1, "service_unavailable": 1}
    assert stats.rejected == {"rate_limit": 1, "service_unavailable": 1}
    assert stats.served == 1
    assert stats.rate_limited == 0  # injected 429s are not bucket refusals


def test_insufficient_quota_is_distinguishable_from_a_rate_limit(
    simulator: Simulator, client: openai.OpenAI
) -> None:
    """insufficient_quota is a 429 whose code and type say it must not be retried."""
    simulator.script(Fault(kind=FaultKind.INSUFFICIENT_QUOTA))
    with pytest.raises(openai.RateLimitError) as caught:
        _chat(client)
    assert caught.value.code == "insufficient_quota"
    assert caught.value.type == "insufficient_quota"
    assert "retry-after" not in caught.value.response.headers


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (FaultKind.SERVER_ERROR, 500),
        (FaultKind.BAD_GATEWAY, 502),
        (FaultKind.SERVICE_UNAVAILABLE, 503),
    ],
)
def test_server_errors(
    simulator: Simulator, client: openai.OpenAI, kind: FaultKind, status: int
) -> None:
    """5xx faults raise InternalServerError with their status."""
    simulator.script(Fault(kind=kind))
    with pytest.raises(openai.InternalServerError) as caught:
        _chat(client)
    assert caught.value.status_code == status
    assert caught.value.request_id is not None


def test_request_timeout_408(simulator: Simulator, client: openai.OpenAI) -> None:
    """A 408 is an APIStatusError with status 408."""
    simulator.script(Fault(kind=FaultKind.TIMEOUT))
    with pytest.raises(openai.APIStatusError) as caught:
        _chat(client)
    assert caught.value.status_code == 408


def test_dropped_connection(simulator: Simulator, client: openai.OpenAI) -> None:
    """A closed socket without response is an APIConnectionError."""
    simulator.script(Fault(kind=FaultKind.DROP_CONNECTION))
    with pytest.raises(openai.APIConnectionError):
        _chat(client)
    _chat(client)  # the client reconnects
    assert simulator.stats().rejected == {"drop_connection": 1}


def test_slow_response_times_the_client_out(simulator: Simulator) -> None:
    """A slow fault delays the answer past the client's timeout: APITimeoutError."""
    simulator.script(Fault(kind=FaultKind.SLOW, delay_s=3600))  # (stopped with the test)
    with simulator.client(timeout=0.2) as client, pytest.raises(openai.APITimeoutError):
        _chat(client)


@pytest.mark.parametrize("kind", [FaultKind.MALFORMED_JSON, FaultKind.EMPTY_BODY])
def test_broken_200_bodies_fail_to_decode(
    simulator: Simulator, client: openai.OpenAI, kind: FaultKind
) -> None:
    """A 200 whose body is truncated or empty raises json.JSONDecodeError in the client."""
    simulator.script(Fault(kind=kind))
    with pytest.raises(json.JSONDecodeError):
        _chat(client)
    assert simulator.stats().faults == {kind.value: 1}


def test_context_length_fault(simulator: Simulator, client: openai.OpenAI) -> None:
    """An injected context_length_exceeded is a BadRequestError with that code."""
    simulator.script(Fault(kind=FaultKind.CONTEXT_LENGTH))
    with pytest.raises(openai.BadRequestError) as caught:
        _chat(client)
    assert caught.value.code == "context_length_exceeded"


def _stream(client: openai.OpenAI) -> list[object]:
    return list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )


def test_stream_cut_midway(simulator: Simulator, client: openai.OpenAI) -> None:
    """A stream cut half-way raises APIConnectionError while iterating; it waits for a stream."""
    simulator.script(Fault(kind=FaultKind.STREAM_CUT))
    _chat(client)  # a non-streaming request does not consume a stream fault
    with pytest.raises(openai.APIConnectionError):
        _stream(client)
    assert simulator.pending_faults() == ()


def test_stream_without_finish_reason(simulator: Simulator, client: openai.OpenAI) -> None:
    """A stream can end cleanly with no finish_reason and no usage chunk."""
    simulator.script(Fault(kind=FaultKind.STREAM_NO_FINISH))
    chunks = _stream(client)
    assert chunks
    assert all(c.choices and c.choices[0].finish_reason is None for c in chunks)  # type: ignore[attr-defined]
    assert all(c.usage is None for c in chunks)  # type: ignore[attr-defined]


def test_malformed_stream_event(simulator: Simulator, client: openai.OpenAI) -> None:
    """A broken event in a stream raises json.JSONDecodeError while iterating."""
    simulator.script(Fault(kind=FaultKind.MALFORMED_JSON))
    with pytest.raises(json.JSONDecodeError):
        _stream(client)


def test_script_filters_by_model_and_path(simulator: Simulator, client: openai.OpenAI) -> None:
    """A fault with a model waits for that model; one with a path hits that path."""
    simulator.script(
        Fault(kind=FaultKind.SERVER_ERROR, model="gpt-4o"),
        Fault(kind=FaultKind.BAD_GATEWAY, path="/v1/models"),
        Fault(kind=FaultKind.NONE),
        Fault(kind=FaultKind.SERVICE_UNAVAILABLE),
    )
    _chat(client, "gpt-4o-mini")  # consumes the NONE placeholder
    with pytest.raises(openai.InternalServerError) as on_model:
        _chat(client, "gpt-4o")
    assert on_model.value.status_code == 500
    with pytest.raises(openai.InternalServerError) as on_path:
        client.models.list()
    assert on_path.value.status_code == 502
    with pytest.raises(openai.InternalServerError):
        _chat(client)
    assert simulator.pending_faults() == ()


def test_script_from_the_config(simulator_factory: SimulatorFactory) -> None:
    """SimulatorConfig(script=...) applies from the first request."""
    sim = simulator_factory(script=(Fault(kind=FaultKind.SERVER_ERROR),))
    with sim.client() as client:
        with pytest.raises(openai.InternalServerError):
            _chat(client)
        _chat(client)


def test_pre_admission_faults_consume_no_rate_limit(simulator_factory: SimulatorFactory) -> None:
    """A request refused by an injected fault leaves the buckets untouched."""
    sim = simulator_factory(SimulatorConfig(rpm=1), clock=FakeClock().now)
    sim.script(Fault(kind=FaultKind.SERVICE_UNAVAILABLE))
    with sim.client() as client:
        with pytest.raises(openai.InternalServerError):
            _chat(client)
        _chat(client)


def _outcomes(sim: Simulator, count: int) -> list[str]:
    outcomes = []
    with sim.client() as client:
        for _ in range(count):
            try:
                _chat(client)
                outcomes.append("ok")
            except openai.APIStatusError as exc:
                outcomes.append(str(exc.status_code))
    return outcomes


def test_seeded_profile_is_reproducible(simulator_factory: SimulatorFactory) -> None:
    """The same seed draws the same faults for the same sequence of requests."""
    profile = FaultProfile(server_error=0.2, rate_limit=0.1, retry_after_s=0.5)
    first = _outcomes(simulator_factory(seed=3, faults=profile), 80)
    second = _outcomes(simulator_factory(seed=3, faults=profile), 80)
    other = _outcomes(simulator_factory(seed=4, faults=profile), 80)
    assert first == second
    assert first != other
    assert 8 <= first.count("500") <= 32
    assert 2 <= first.count("429") <= 20


def test_per_model_profile(simulator_factory: SimulatorFactory) -> None:
    """model_faults applies to its model only."""
    sim = simulator_factory(model_faults={"gpt-4o": FaultProfile(service_unavailable=1.0)})
    with sim.client() as client:
        _chat(client, "gpt-4o-mini")
        with pytest.raises(openai.InternalServerError):
            _chat(client, "gpt-4o")


def test_fault_profile_validation() -> None:
    """Probabilities outside [0, 1] or summing above 1 are configuration errors."""
    with pytest.raises(ConfigurationError):
        FaultProfile(server_error=1.5)
    with pytest.raises(ConfigurationError):
        FaultProfile(server_error=0.6, rate_limit=0.6)
    with pytest.raises(ConfigurationError):
        SimulatorConfig(model_faults={"no-such-model": FaultProfile()})
    spread = FaultProfile.uniform(0.4)
    assert spread.rate_limit == spread.server_error == spread.service_unavailable == 0.1


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda v: Fault(kind=FaultKind.RATE_LIMIT, retry_after_s=v), "retry_after_s"),
        (lambda v: Fault(kind=FaultKind.SLOW, delay_s=v), "delay_s"),
        (lambda v: FaultProfile(rate_limit=0.1, retry_after_s=v), "retry_after_s"),
        (lambda v: FaultProfile(slow=0.1, slow_s=v), "slow_s"),
    ],
)
@pytest.mark.parametrize("value", [math.inf, math.nan, -5.0, "5"])
def test_fault_durations_must_be_finite_seconds(
    make: Callable[[object], object], name: str, value: object
) -> None:
    """A fault's Retry-After or delay that is infinite, NaN, negative or not a number is
    refused when the fault is made, naming the field, not when a request meets it."""
    with pytest.raises(ConfigurationError, match=f"{name} must be a finite number of seconds"):
        make(value)


def test_the_control_endpoint_refuses_an_infinite_retry_after(simulator: Simulator) -> None:
    """A fault pushed over HTTP with Retry-After Infinity is a 400 naming the field, and
    the simulator keeps serving."""
    with pytest.raises(urllib.error.HTTPError) as refused:
        _call(
            simulator.url, "faults", {"script": [{"kind": "rate_limit", "retry_after_s": math.inf}]}
        )
    assert refused.value.code == 400
    assert "retry_after_s" in refused.value.read().decode()
    assert simulator.pending_faults() == ()


def test_latency_model_delays_answers(simulator_factory: SimulatorFactory) -> None:
    """base_s + per_output_token_s * tokens is the time to answer."""
    sim = simulator_factory(latency=LatencyModel(base_s=0.05, per_output_token_s=0.001))
    with sim.client() as client:
        start = time.perf_counter()
        response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        elapsed = time.perf_counter() - start
    assert response.usage is not None
    assert elapsed >= 0.05 + 0.001 * response.usage.completion_tokens


def test_stop_ends_in_flight_requests_promptly() -> None:
    """Stopping the simulator during a slow answer closes the connection at once."""
    sim = Simulator().start()
    sim.script(Fault(kind=FaultKind.SLOW, delay_s=3600))
    outcome: list[BaseException] = []

    def call() -> None:
        with sim.client(timeout=3600) as client:
            try:
                _chat(client)
            except openai.APIConnectionError as exc:
                outcome.append(exc)

    worker = threading.Thread(target=call, daemon=True)  # (never left blocking the exit)
    worker.start()
    _wait_until(lambda: sim.stats().received == 1)
    sim.stop()
    worker.join(timeout=30)  # "at once": the answer, and the client's timeout, are an hour away
    assert not worker.is_alive()
    assert len(outcome) == 1


def test_streams_are_paced_by_the_latency_model(simulator_factory: SimulatorFactory) -> None:
    """A stream's chunks are paced, not sent all at once: the first (no tokens) comes after
    base_s, the next only after per_output_token_s for its token, an hour here."""
    sim = simulator_factory(latency=LatencyModel(base_s=0.02, per_output_token_s=3600))
    arrivals: list[float] = []
    first = threading.Event()
    ended = threading.Event()

    def read() -> None:
        with sim.client() as client:
            start = time.perf_counter()
            try:
                for _ in client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, stream=True, max_tokens=40
                ):
                    arrivals.append(time.perf_counter() - start)
                    first.set()
            except openai.APIConnectionError:
                pass  # the simulator stopped mid-stream
            finally:
                ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert first.wait(60)
    assert not ended.is_set()  # the next chunk is an hour away
    assert len(arrivals) == 1
    assert arrivals[0] >= 0.02
    sim.stop()
    assert ended.wait(30)


def _wait_until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Poll ``condition`` (the deadline only ends a test that is failing anyway)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)
