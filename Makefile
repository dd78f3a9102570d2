PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The modules mypyc compiles (pyproject.toml, hooks.mypyc): editing one rebuilds them, so no
# test ever runs a stale build.
COMPILED := $(shell $(PYTHON) -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['tool']['hatch']['build']['targets']['wheel']['hooks']['mypyc']['include'])")
BUILT := $(VENV)/.compiled
PURE := $(VENV)/pure

.PHONY: test lint unit unit-pure demo bench clean system-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,offline,redis,fast,plot]'
	touch $(STAMP) $(BUILT)

$(BUILT): $(STAMP) $(COMPILED)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(BUILT)

test: system-deps lint unit unit-pure

# Debian's redis-server, for the Redis store's tests (they start their own on a free loopback
# port). Installed where missing and possible; otherwise those tests skip and say why.
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -qq redis-server >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null && apt-get install -y -qq redis-server >/dev/null; } || \
	    echo "could not install redis-server: the Redis tests will be skipped"; \
	  else echo "redis-server missing and not installable here: the Redis tests will be skipped"; fi; }

lint: $(BUILT)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: $(BUILT)
	$(BIN)/pytest

# The same tests on the plain-Python modules (what `HATCH_BUILD_NO_HOOKS=true` installs).
unit-pure: $(BUILT)
	rm -rf $(PURE) && mkdir -p $(PURE)
	cp -r prismq_llmtools $(PURE)/ && find $(PURE) -name '*.so' -delete
	PRISMQ_LLMTOOLS_EXPECT_PURE=1 PYTHONPATH=$(CURDIR)/$(PURE) $(BIN)/pytest -q

demo: $(BUILT)
	$(BIN)/prismq-llmtools demo

bench: $(BUILT)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -name '*.so' -not -path './$(VENV)/*' -delete
