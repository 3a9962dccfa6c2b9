# sparktf: `make run` runs the whole pipeline, `make test` the test suite.
# Both create .venv and install the package with its test extras on first use.

VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
ARGS    ?=
PYTEST_ARGS ?=
# Test files run on this many processes (0: one process); a file stays on one process, so
# its module fixtures are built once. Why 3 on 2 cores: see pyproject.toml's test extras.
TEST_WORKERS ?= 3
# Files go out in collection order (tests/conftest.py puts the longest first); xdist's
# default reorder sends files with the most tests first, and one-test files that run for
# minutes (the cluster pipeline) last.
XDIST   := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
WORKDIR ?= sparktf-work
PORT    ?= 8501
UI_PORT ?= 5000

.PHONY: run serve live ui test test-unit test-integration lint format bench install java clean distclean

run: $(STAMP) java
	$(BIN)/sparktf run $(ARGS)

# After `make run`: serve the champion on 127.0.0.1:$(PORT), and the MLflow UI on :$(UI_PORT).
serve: $(STAMP) java
	$(BIN)/sparktf serve --workdir $(WORKDIR) --port $(PORT) $(ARGS)

# After `make run`: the server and the streaming job together (clicks → live recommendations).
live: $(STAMP) java
	$(BIN)/sparktf live --workdir $(WORKDIR) --port $(PORT) $(ARGS)

ui: $(STAMP)
	@test -f $(WORKDIR)/mlflow.db || { echo "No MLflow store at $(WORKDIR)/mlflow.db: run \`make run\` first."; exit 1; }
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath $(WORKDIR))/mlflow.db --host 127.0.0.1 --port $(UI_PORT)

test: $(STAMP) java
	$(BIN)/python -m pytest tests $(XDIST) $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP) java
	$(BIN)/python -m pytest tests/integration $(XDIST) $(PYTEST_ARGS)

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
