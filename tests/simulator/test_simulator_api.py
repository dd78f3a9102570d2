"""The simulator's endpoints through the official openai client: shapes, usage, determinism."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from prismq_llmtools.openai.tokens import count_request, count_text
from prismq_llmtools.testing import ModelLimits, Simulator, SimulatorConfig
from prismq_llmtools.testing.pytest_plugin import SimulatorFactory

MESSAGES = [
    {"role": "system", "content": "You write short titles."},
    {"role": "user", "content": "Title for: the kettle that boils fast."},
]


@pytest.fixture
def client(simulator: Simulator) -> Iterator[openai.OpenAI]:
    with simulator.client() as client:
        yield client


def test_chat_usage_is_counted_with_the_library_counter(client: openai.OpenAI) -> None:
    """prompt_tokens equals count_request; completion_tokens equals count_text of the content."""
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 200}
    response = client.chat.completions.create(**body)
    assert response.usage is not None
    assert response.usage.prompt_tokens == count_request(body).prompt_tokens
    content = response.choices[0].message.content or ""
    assert response.usage.completion_tokens == count_text(content, model="gpt-4o-mini")
    assert response.usage.total_tokens == (
        response.usage.prompt_tokens + response.usage.completion_tokens
    )
    assert response.choices[0].finish_reason == "stop"
    assert response.model == "gpt-4o-mini"
    assert response.object == "chat.completion"


def test_same_request_same_answer_different_request_other_answer(client: openai.OpenAI) -> None:
    """Content is a function of the seed and the request."""
    first = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    again = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    other = client.chat.completions.create(
        model="gpt-4o-mini", messages=[*MESSAGES, {"role": "user", "content": "Shorter."}]
    )
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.choices[0].message.content != other.choices[0].message.content


def test_seed_changes_the_answer(simulator_factory: SimulatorFactory) -> None:
    """Two simulators with different seeds answer the same request differently."""
    answers = set()
    for seed in (1, 2):
        sim = simulator_factory(seed=seed)
        with sim.client() as client:
            answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        answers.add(answer.choices[0].message.content)
    assert len(answers) == 2


def test_completion_cap_cuts_with_finish_reason_length(client: openai.OpenAI) -> None:
    """Content never exceeds the cap; a cut answer says finish_reason 'length'."""
    response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)
    assert response.usage is not None
    assert response.usage.completion_tokens == 5
    assert response.choices[0].finish_reason == "length"


def test_n_choices_share_the_cap_per_choice(client: openai.OpenAI) -> None:
    """n=3 gives three choices, each within max_completion_tokens, billed together."""
    response = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, n=3, max_completion_tokens=7
    )
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert response.usage is not None
    tokens = [count_text(c.message.content or "", model="gpt-4o") for c in response.choices]
    assert all(t <= 7 for t in tokens)
    assert response.usage.completion_tokens == sum(tokens)


def test_stream_with_usage_matches_the_non_streamed_answer(client: openai.OpenAI) -> None:
    """A stream ends with a usage chunk (empty choices) equal to the non-stream usage."""
    whole = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    *content_chunks, usage_chunk = chunks
    assert usage_chunk.choices == []
    assert usage_chunk.usage == whole.usage
    assert all(chunk.usage is None for chunk in content_chunks)
    text = "".join(c.choices[0].delta.content or "" for c in content_chunks)
    assert text == whole.choices[0].message.content
    reasons = [c.choices[0].finish_reason for c in content_chunks]
    assert reasons[-1] == "stop"
    assert reasons[:-1] == [None] * (len(reasons) - 1)
    assert content_chunks[-1].choices[0].delta.content  # the reason rides the last content


def test_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    """Without stream_options.include_usage no chunk carries usage."""
    chunks = list(
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    )
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)


async def test_async_client_streams_and_completes(simulator: Simulator) -> None:
    """AsyncOpenAI gets the same answers, streamed or not."""
    async with simulator.async_client() as client:
        whole = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage == whole.usage
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content


def test_reasoning_models_report_reasoning_tokens_within_the_cap(client: openai.OpenAI) -> None:
    """o-series and gpt-5 answers spend a seeded share of the output on reasoning."""
    for model in ("o3-mini", "gpt-5", "o4-mini-2025-04-16"):
        response = client.chat.completions.create(
            model=model, messages=MESSAGES, max_completion_tokens=2000
        )
        usage = response.usage
        assert usage is not None
        assert usage.completion_tokens_details is not None
        reasoning = usage.completion_tokens_details.reasoning_tokens or 0
        visible = count_text(response.choices[0].message.content or "", model=model)
        assert 0 < reasoning < usage.completion_tokens
        assert usage.completion_tokens == visible + reasoning
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert plain.usage is not None
    assert plain.usage.completion_tokens_details is not None
    assert plain.usage.completion_tokens_details.reasoning_tokens == 0


def test_reasoning_can_use_the_whole_cap(client: openai.OpenAI) -> None:
    """A tiny cap goes to reasoning first: empty content, finish_reason 'length'."""
    response = client.chat.completions.create(
        model="o3", messages=MESSAGES, max_completion_tokens=3
    )
    assert response.usage is not None
    assert response.usage.completion_tokens == 3
    assert response.choices[0].finish_reason == "length"


def test_repeated_long_prefix_reports_cached_tokens(client: openai.OpenAI) -> None:
    """Prompts >= 1024 tokens sharing a prefix report cached tokens in 128-token steps."""
    system = " ".join(f"rule {i}: be precise." for i in range(400))
    first = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": system}, {"role": "user", "content": "one"}],
    )
    second = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": system}, {"role": "user", "content": "two"}],
    )
    assert first.usage is not None
    assert second.usage is not None
    assert first.usage.prompt_tokens >= 1024
    assert first.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens or 0
    system_tokens = count_text(system, model="gpt-4o-mini")
    assert cached >= 1024
    assert (cached - 1024) % 128 == 0
    assert system_tokens - 128 < cached <= second.usage.prompt_tokens


def test_short_prompts_are_never_cached(client: openai.OpenAI) -> None:
    """Below 1024 prompt tokens nothing is cached, however often a prompt repeats."""
    for _ in range(2):
        response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert response.usage is not None
    assert response.usage.prompt_tokens_details is not None
    assert response.usage.prompt_tokens_details.cached_tokens == 0


def test_prompt_caching_can_be_disabled(simulator_factory: SimulatorFactory) -> None:
    """prompt_caching=False never reports cached tokens."""
    sim = simulator_factory(prompt_caching=False)
    long = " ".join(f"fact {i} is true." for i in range(500))
    with sim.client() as client:
        for _ in range(2):
            response = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": long}]
            )
    assert response.usage is not None
    assert response.usage.prompt_tokens_details is not None
    assert response.usage.prompt_tokens_details.cached_tokens == 0


def test_embeddings_float_base64_and_dimensions(client: openai.OpenAI) -> None:
    """Vectors are deterministic unit vectors; base64 decodes to the same floats."""
    as_float = client.embeddings.create(
        model="text-embedding-3-small", input=["alpha", "beta"], encoding_format="float"
    )
    default = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert len(as_float.data) == 2
    assert len(as_float.data[0].embedding) == 1536
    assert as_float.data[0].embedding != as_float.data[1].embedding
    for got, expected in zip(default.data, as_float.data, strict=True):
        assert got.embedding == pytest.approx(expected.embedding, abs=1e-6)
    assert sum(v * v for v in as_float.data[0].embedding) == pytest.approx(1.0)
    body = {"model": "text-embedding-3-small", "input": ["alpha", "beta"]}
    assert as_float.usage.prompt_tokens == count_request(body).prompt_tokens
    assert as_float.usage.total_tokens == as_float.usage.prompt_tokens
    short = client.embeddings.create(
        model="text-embedding-3-large", input="alpha", dimensions=256, encoding_format="float"
    )
    assert len(short.data[0].embedding) == 256


def test_embeddings_of_token_arrays(client: openai.OpenAI) -> None:
    """A token-array input is billed one token per id."""
    response = client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3, 4]])
    assert response.usage.prompt_tokens == 4
    assert len(response.data) == 1


def test_responses_api_usage_and_output_text(client: openai.OpenAI) -> None:
    """/v1/responses returns output_text and usage with input/output token details."""
    body = {"model": "gpt-4.1-mini", "input": "Say hello.", "instructions": "Be brief."}
    response = client.responses.create(**body)  # type: ignore[call-overload]
    assert response.status == "completed"
    assert response.output_text
    assert response.usage is not None
    assert response.usage.input_tokens == count_request(body, endpoint="responses").prompt_tokens
    assert response.usage.output_tokens == count_text(response.output_text, model="gpt-4.1-mini")
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0


def test_responses_api_cut_by_max_output_tokens(client: openai.OpenAI) -> None:
    """A cut Response is 'incomplete' with reason max_output_tokens; reasoning is counted."""
    response = client.responses.create(model="o4-mini", input="Think.", max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None
    assert response.usage.output_tokens == 16
    assert response.usage.output_tokens_details.reasoning_tokens > 0


@pytest.mark.parametrize(
    ("model", "cap"), [("gpt-4o-mini", None), ("o4-mini", 500), ("gpt-4o", 16)]
)
def test_responses_api_streams_the_answer_it_would_return(
    client: openai.OpenAI, model: str, cap: int | None
) -> None:
    """A streamed Responses call: its deltas spell the text, and its last event is the whole
    response with the usage of the same request unstreamed (incomplete when the cap cut it)."""
    options = {} if cap is None else {"max_output_tokens": cap}
    whole = client.responses.create(model=model, input="Name three rivers.", **options)
    events = list(
        client.responses.create(model=model, input="Name three rivers.", stream=True, **options)
    )
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created"
    assert kinds[-1] == f"response.{whole.status}"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == whole.output_text
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == whole.output_text
    assert final.usage == whole.usage


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    """/v1/models lists the configured models; an unknown one is 404 model_not_found."""
    ids = [model.id for model in client.models.list()]
    assert "gpt-4o-mini" in ids
    assert "text-embedding-3-small" in ids
    assert client.models.retrieve("gpt-4o-2024-08-06").id == "gpt-4o-2024-08-06"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-nonexistent")
    assert caught.value.code == "model_not_found"


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    """A chat request for a model that is not configured gets OpenAI's 404."""
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-7", messages=MESSAGES)
    assert caught.value.code == "model_not_found"
    assert caught.value.request_id is not None
    assert caught.value.request_id.startswith("req_")


def test_custom_models_only(simulator_factory: SimulatorFactory) -> None:
    """A config with its own models serves those (counted with their fallback encoding)."""
    config = SimulatorConfig(
        models={"house-model": ModelLimits(context_window=4096, encoding="cl100k_base")}
    )
    sim = simulator_factory(config)
    with sim.client() as client:
        response = client.chat.completions.create(model="house-model", messages=MESSAGES)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert response.usage is not None
    body = {"model": "house-model", "messages": MESSAGES}
    assert response.usage.prompt_tokens == (
        count_request(body, fallback_encoding="cl100k_base").prompt_tokens
    )


def test_natural_context_length_exceeded(client: openai.OpenAI) -> None:
    """Prompt plus cap above the context window is 400 context_length_exceeded."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4", messages=MESSAGES, max_tokens=8190)
    assert caught.value.code == "context_length_exceeded"
    assert "maximum context length is 8192 tokens" in caught.value.message


def test_invalid_requests_are_400(client: openai.OpenAI) -> None:
    """No messages, a cap above the model's output limit, or a bad n are 400s."""
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20_000)
    assert caught.value.code == "invalid_value"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, n=0)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="gpt-4o-mini", input="x")


def test_every_response_has_a_request_id(simulator: Simulator, client: openai.OpenAI) -> None:
    """x-request-id is on successes, errors and unknown routes alike."""
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["x-request-id"].startswith("req_")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{simulator.url}/nothing-here", timeout=5)  # noqa: S310 - loopback
    assert caught.value.code == 404
    assert caught.value.headers["x-request-id"].startswith("req_")
    caught.value.close()


def _listening_addresses(port: int) -> set[str]:
    """Local addresses listening on ``port``, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def _non_loopback_address() -> str | None:
    """This machine's outgoing interface address (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_binds_loopback_only(simulator: Simulator) -> None:
    """The server listens on 127.0.0.1 and on no other address."""
    assert simulator.url.startswith("http://127.0.0.1:")
    listening = _listening_addresses(simulator.port)
    if listening:
        assert listening == {"0100007F"}  # 127.0.0.1, little-endian hex
    other = _non_loopback_address()
    if other is None and not listening:
        pytest.skip("no /proc/net/tcp and no non-loopback address to try")
    if other is not None:
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection((other, simulator.port), timeout=1),
        ):
            pass


def test_free_port_each_time_and_clean_restart() -> None:
    """Two simulators get different ports; a stopped one releases its port."""
    with Simulator() as one, Simulator() as two:
        assert one.port != two.port
        port = one.port
    with Simulator(port=port) as again, again.client() as client:
        assert client.models.list().data
