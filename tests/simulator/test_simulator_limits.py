"""Rate limits as OpenAI enforces them: per-model RPM/TPM buckets, 429s, headers, admission."""

from __future__ import annotations

import asyncio
import json
import math
import re

import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prismq_llmtools.errors import ConfigurationError
from prismq_llmtools.openai.tokens import count_request
from prismq_llmtools.testing import (
    Accounting,
    FakeClock,
    Simulator,
    SimulatorConfig,
    format_duration,
)
from prismq_llmtools.testing.pytest_plugin import SimulatorFactory
from prismq_llmtools.testing.simulator.config_file import config_from_mapping
from prismq_llmtools.testing.simulator.ratelimit import ModelRateLimiter, TokenBucket

MESSAGES = [{"role": "user", "content": "Write a title about rate limits, please."}]


def _parse_duration(text: str) -> float:
    """Inverse of format_duration, for checking headers."""
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    total = 0.0
    for value, unit in re.findall(r"([\d.]+)([hms])", text):
        total += float(value) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.02, "20ms"),
        (0.0004, "1ms"),
        (1, "1s"),
        (8.64, "8.64s"),
        (90.5, "1m30.5s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
        (3725.25, "1h2m5.25s"),
    ],
)
def test_durations_are_written_like_openai(seconds: float, text: str) -> None:
    """Durations use OpenAI's Go-style notation, rounded up to the millisecond."""
    assert format_duration(seconds) == text
    assert _parse_duration(text) == pytest.approx(math.ceil(seconds * 1000) / 1000)


def test_bucket_refills_continuously_and_never_overflows() -> None:
    """A bucket refills at limit/60 per second up to its capacity."""
    bucket = TokenBucket(60, now=0.0)
    bucket.take(60, now=0.0)
    assert bucket.level(0.5) == pytest.approx(0.5)
    assert bucket.wait_s(1, now=0.5) == pytest.approx(0.5)
    assert bucket.reset_s(now=30.0) == pytest.approx(30.0)
    assert bucket.level(1_000.0) == 60
    assert math.isinf(bucket.wait_s(61, now=1_000.0))


@given(
    st.lists(
        st.tuples(st.floats(0, 5, allow_nan=False), st.integers(1, 400)), min_size=1, max_size=60
    )
)
def test_limiter_never_admits_more_than_rate_times_time_plus_capacity(
    steps: list[tuple[float, int]],
) -> None:
    """Over any schedule, admitted tokens <= tpm/60 * elapsed + tpm (and the same for requests)."""
    clock = FakeClock(start=0.0)
    limiter = ModelRateLimiter(rpm=20, tpm=1_000, clock=clock.now)
    admitted_tokens = admitted_requests = 0
    for pause, tokens in steps:
        clock.advance(pause)
        verdict = limiter.admit(tokens)
        if verdict.admitted:
            admitted_tokens += tokens
            admitted_requests += 1
        else:
            assert verdict.retry_after_s > 0
        elapsed = clock.now()
        assert admitted_tokens <= 1_000 / 60 * elapsed + 1_000 + 1e-6
        assert admitted_requests <= 20 / 60 * elapsed + 20 + 1e-6


def test_rpm_burst_of_limit_plus_one_gets_exactly_one_429(
    simulator_factory: SimulatorFactory,
) -> None:
    """With time frozen, rpm requests pass and the next one is refused with Retry-After."""
    clock = FakeClock()
    sim = simulator_factory(SimulatorConfig(rpm=5), clock=clock.now)
    remaining = []
    with sim.client() as client:
        for _ in range(5):
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=MESSAGES
            )
            remaining.append(int(raw.headers["x-ratelimit-remaining-requests"]))
            assert raw.headers["x-ratelimit-limit-requests"] == "5"
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        error = caught.value
        assert remaining == [4, 3, 2, 1, 0]
        assert error.code == "rate_limit_exceeded"
        assert error.type == "requests"
        assert "requests per min (RPM): Limit 5, Used 5, Requested 1" in error.message
        assert error.response.headers["retry-after-ms"] == "12000"
        assert error.response.headers["retry-after"] == "12"
        assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
        assert error.response.headers["x-ratelimit-reset-requests"] == "1m0s"
        clock.advance(11.9)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        clock.advance(0.1)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    stats = sim.stats()
    assert stats.rate_limited == 2
    assert stats.models["gpt-4o-mini"].rejected == {"rate_limit_requests": 2}
    assert stats.statuses == {200: 6, 429: 2}


def test_real_time_burst_also_gets_exactly_one_429(simulator_factory: SimulatorFactory) -> None:
    """On the real clock a quick burst of rpm + 1 requests refills too little for a second pass."""
    sim = simulator_factory(SimulatorConfig(rpm=6))  # one request back every 10 s
    waits = []
    with sim.client() as client:
        for _ in range(7):
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            except openai.RateLimitError as exc:
                waits.append(int(exc.response.headers["retry-after-ms"]))
    assert len(waits) == 1
    assert 9_000 < waits[0] <= 10_000


async def test_concurrent_async_burst_is_cut_exactly_at_the_limit(
    simulator_factory: SimulatorFactory,
) -> None:
    """64 concurrent requests against rpm=50 (time frozen): exactly 14 get 429."""
    sim = simulator_factory(SimulatorConfig(rpm=50), clock=FakeClock().now)
    async with sim.async_client() as client:

        async def one() -> bool:
            try:
                await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            except openai.RateLimitError:
                return False
            return True

        results = await asyncio.gather(*(one() for _ in range(64)))
    assert results.count(False) == 14
    assert sim.stats().rate_limited == 14


@pytest.mark.parametrize("admission", ["exact", "chars"])
def test_tpm_charges_prompt_plus_cap_at_admission(
    simulator_factory: SimulatorFactory, admission: str
) -> None:
    """Each request takes prompt estimate + max_tokens; the first that does not fit gets 429."""
    clock = FakeClock()
    sim = simulator_factory(SimulatorConfig(tpm=1_000, admission=admission), clock=clock.now)
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 150}
    if admission == "exact":
        charge = count_request(body).total_estimate
    else:
        charge = math.ceil(len(MESSAGES[0]["content"]) / 4) + 150
    fits = 1_000 // charge
    with sim.client() as client:
        for index in range(1, fits + 1):
            raw = client.chat.completions.with_raw_response.create(**body)
            assert int(raw.headers["x-ratelimit-remaining-tokens"]) == 1_000 - index * charge
            reset = _parse_duration(raw.headers["x-ratelimit-reset-tokens"])
            assert reset == pytest.approx(index * charge * 60 / 1_000, abs=0.001)
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(**body)
    error = caught.value
    assert error.type == "tokens"
    assert error.code == "rate_limit_exceeded"
    missing = charge - (1_000 - fits * charge)
    assert int(error.response.headers["retry-after-ms"]) == math.ceil(missing * 60_000 / 1_000)
    stats = sim.stats().models["gpt-4o-mini"]
    assert stats.charged_tokens == fits * charge
    assert stats.rejected == {"rate_limit_tokens": 1}


def test_exact_and_chars_admission_charge_differently() -> None:
    """A token-dense prompt costs more by tiktoken than by characters: the modes disagree."""
    content = "1 2 3 4 5 6 7 8 9 " * 20
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
    charges = {}
    for admission in ("exact", "chars"):
        with Simulator(SimulatorConfig(tpm=100_000, admission=admission)) as sim:  # type: ignore[arg-type]
            with sim.client() as client:
                client.chat.completions.create(**body)
            charges[admission] = sim.stats().charged_tokens
    assert charges["exact"] == count_request(body).prompt_tokens
    assert charges["chars"] == math.ceil(len(content) / 4)
    assert charges["exact"] != charges["chars"]


def test_a_pluggable_accounting_charges_its_factor_constant_or_body_bytes() -> None:
    """``Accounting``: prompt measured as tokens, characters or body bytes, plus the cap,
    times a factor, plus a constant a request."""
    content = "administration development organization " * 3
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 30,
    }
    tokens = count_request(body).prompt_tokens
    size = len(json.dumps(body, separators=(",", ":")).encode())
    expected = {
        Accounting(factor=1.5): math.ceil(1.5 * (tokens + 30)),
        Accounting(factor=0.7, per_request=12): math.ceil(0.7 * (tokens + 30) + 12),
        Accounting(prompt="chars", per_request=5): math.ceil(len(content) / 4) + 30 + 5,
        Accounting(prompt="bytes"): math.ceil(size / 4) + 30,
        Accounting(): tokens + 30,
    }
    for accounting, charge in expected.items():
        with Simulator(SimulatorConfig(tpm=100_000, admission=accounting)) as sim:
            with sim.client() as client:
                response = client.chat.completions.with_raw_response.create(**body)
            assert sim.stats().charged_tokens == charge, accounting
            remaining = int(response.headers["x-ratelimit-remaining-tokens"])
            assert remaining == 100_000 - charge


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("factor", 0),
        ("factor", -1.0),
        ("factor", math.inf),
        ("factor", math.nan),
        ("factor", True),
        ("per_request", -1),
        ("per_request", math.inf),
        ("per_request", math.nan),
        ("per_request", "5"),
        ("prompt", "words"),
    ],
)
def test_an_accounting_must_be_finite_and_positive(field: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=f"Accounting.{field}"):
        Accounting(**{field: value})  # type: ignore[arg-type]


def test_an_accounting_comes_from_a_settings_table() -> None:
    config = config_from_mapping({"tpm": 1_000, "admission": {"prompt": "bytes", "factor": 1.2}})
    assert config.admission == Accounting(prompt="bytes", factor=1.2)
    with pytest.raises(ConfigurationError, match="factor"):
        config_from_mapping({"admission": {"factor": float("inf")}})
    with pytest.raises(ConfigurationError, match="admission"):
        SimulatorConfig(admission="tokens")  # type: ignore[arg-type]


def test_a_request_larger_than_the_bucket_is_refused_without_retry_after(
    simulator_factory: SimulatorFactory,
) -> None:
    """prompt + cap above the TPM limit can never pass: 429 'Request too large', no Retry-After."""
    sim = simulator_factory(SimulatorConfig(tpm=100))
    with sim.client() as client, pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=500)
    assert "Request too large" in caught.value.message
    assert "retry-after" not in caught.value.response.headers
    assert sim.stats().rejected == {"request_too_large": 1}


def test_buckets_are_per_model_and_snapshots_share_their_base(
    simulator_factory: SimulatorFactory,
) -> None:
    """Exhausting gpt-4o leaves gpt-4o-mini untouched; gpt-4o-2024-08-06 shares gpt-4o's bucket."""
    sim = simulator_factory(SimulatorConfig(rpm=1), clock=FakeClock().now)
    with sim.client() as client:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4o-2024-08-06", messages=MESSAGES)


def test_per_model_limits_override_the_global_ones(simulator_factory: SimulatorFactory) -> None:
    """A model's own rpm/tpm win over the config's; other models keep the global ones."""
    from dataclasses import replace

    from prismq_llmtools.testing.simulator.catalog import DEFAULT_MODELS

    models = dict(DEFAULT_MODELS)
    models["gpt-4o"] = replace(models["gpt-4o"], rpm=7, tpm=7_000)
    sim = simulator_factory(SimulatorConfig(models=models, rpm=3, tpm=3_000))
    with sim.client() as client:
        own = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
        shared = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    assert own.headers["x-ratelimit-limit-requests"] == "7"
    assert own.headers["x-ratelimit-limit-tokens"] == "7000"
    assert shared.headers["x-ratelimit-limit-requests"] == "3"


def test_headers_describe_the_buckets_consistently(simulator_factory: SimulatorFactory) -> None:
    """Remaining and reset agree: reset = (limit - remaining) / (limit / 60)."""
    sim = simulator_factory(SimulatorConfig(rpm=600, tpm=60_000), clock=FakeClock().now)
    with sim.client() as client:
        for _ in range(3):
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=MESSAGES, max_tokens=100
            )
    headers = raw.headers
    for kind in ("requests", "tokens"):
        limit = int(headers[f"x-ratelimit-limit-{kind}"])
        remaining = int(headers[f"x-ratelimit-remaining-{kind}"])
        reset = _parse_duration(headers[f"x-ratelimit-reset-{kind}"])
        assert reset == pytest.approx((limit - remaining) * 60 / limit, abs=0.002)
    assert headers["x-ratelimit-remaining-requests"] == "597"


def test_unlimited_models_send_no_rate_limit_headers(simulator: Simulator) -> None:
    """Without configured limits there is nothing to report."""
    with simulator.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    assert not [name for name in raw.headers if name.startswith("x-ratelimit")]
