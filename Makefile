PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint unit demo bench clean system-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,offline,redis,fast,plot,dask,ray]'
	touch $(STAMP)

test: system-deps lint unit

# Debian's redis-server, for the Redis store's tests (they start their own on a free loopback
# port). Installed where missing and possible; otherwise those tests skip and say why.
system-deps:
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

unit: $(STAMP)
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/prismq-llmtools demo

# The benchmarks measure other projects beside ours (LiteLLM, aiolimiter): the `bench` extra.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
