# sparktf: `make run` runs the whole pipeline, `make test` the test suite.
# Both create .venv and install the package with its test extras on first use.

VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
ARGS    ?=
PYTEST_ARGS ?=

.PHONY: run test test-unit test-integration lint format bench install java clean distclean

run: $(STAMP) java
	$(BIN)/sparktf run $(ARGS)

test: $(STAMP) java
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP) java
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench examples
	$(BIN)/ruff check --fix src tests bench examples

bench: $(STAMP) java
	$(BIN)/python -m bench.run_all $(ARGS)

install: $(STAMP)

java:
	@tools/require-java.sh

$(STAMP): pyproject.toml
	@PY=$$(tools/require-python.sh) && \
	  { [ -x $(BIN)/python ] || "$$PY" -m venv $(VENV); }
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[test]'
	@touch $(STAMP)

clean:
	rm -rf sparktf-work .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info

distclean: clean
	rm -rf $(VENV)
