# Set-up and everyday commands. `make run` and `make test` need only python3 (3.11+).
# Both install from the lock files in requirements/ (pinned, with hashes): `make run` the
# runtime dependencies only, `make test` those and the test extras. `make lock` remakes
# the lock files from pyproject.toml.
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.installed-runtime
TEST_STAMP := $(VENV)/.installed-test
# The client generator of the tests (openapi-python-client), in a venv of its own: it pins
# typer below the version the shop uses.
CODEGEN_VENV ?= .venv-codegen
CODEGEN_STAMP := $(CODEGEN_VENV)/.installed

# The lock tool, in a venv of its own so that it is in neither lock.
UV_VERSION := 0.13.8
LOCK_VENV ?= .venv-lock
UV := $(LOCK_VENV)/bin/uv
# Locked for CPython 3.11 on Linux (the Dockerfile's image, CI, the developers' machines);
# the hashes cover every file of each pinned release. `make lock UPGRADE=1` moves every
# pin to the newest release pyproject.toml allows; without it the pins already in
# requirements/ are kept where they still fit.
LOCK_FLAGS := --quiet --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	--generate-hashes --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)

.PHONY: run test test-quick soak lint typecheck bench lock

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(RUNTIME_STAMP): requirements/runtime.txt pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -r requirements/runtime.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# The test lock holds the runtime one, so it also counts as the runtime install.
$(TEST_STAMP): requirements/test.txt requirements/runtime.txt pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -r requirements/test.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@ $(RUNTIME_STAMP)

run: $(RUNTIME_STAMP)  ## serve the shop on the embedded SQLite store (./var/), port 8000
	$(VENV)/bin/eventshop serve

$(CODEGEN_STAMP): requirements/codegen.txt
	python3 -m venv $(CODEGEN_VENV)
	$(CODEGEN_VENV)/bin/python -m pip install --quiet -r requirements/codegen.txt
	touch $@

# `ruff format --check` is not in `make test` yet: the tree is not format-clean
# (`make lint` shows where).
test: $(TEST_STAMP) $(CODEGEN_STAMP)  ## lint, type check, then the whole test suite (needs PostgreSQL on 127.0.0.1:5432)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

test-quick: $(TEST_STAMP)  ## the tests that need no PostgreSQL and are not slow
	$(VENV)/bin/pytest -q -m "not postgres and not slow"

soak: $(TEST_STAMP)  ## the slower runs: 20 cycles of SIGKILL under mixed load, restart and checks; deeper fuzzing
	$(PY) -m bench.soak --cycles 20
	EVENTSHOP_FUZZ_EXAMPLES=200 $(VENV)/bin/pytest -q tests/hardening/test_fuzz.py

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(TEST_STAMP)  ## mypy, as configured in pyproject.toml
	$(VENV)/bin/mypy

bench: $(TEST_STAMP)  ## the benchmark suite on PostgreSQL: a table, bench/results/bench.{png,json,md}
	$(PY) -m bench.run_all

$(UV):
	python3 -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet uv==$(UV_VERSION)

lock: $(UV)  ## remake requirements/runtime.txt and test.txt from pyproject.toml, codegen.txt from codegen.in
	$(UV) pip compile pyproject.toml $(LOCK_FLAGS) -o requirements/runtime.txt
	$(UV) pip compile pyproject.toml --extra test -c requirements/runtime.txt $(LOCK_FLAGS) \
		-o requirements/test.txt
	$(UV) pip compile requirements/codegen.in $(LOCK_FLAGS) -o requirements/codegen.txt
