# Set-up and everyday commands. `make run` and `make test` need only python3 (3.11+).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)  ## serve the shop on the embedded SQLite store (./var/), port 8000
	$(VENV)/bin/eventshop serve

test: $(STAMP)  ## the whole test suite (needs PostgreSQL on 127.0.0.1:5432)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)  ## the benchmark suite on PostgreSQL: a table, bench/results/bench.{png,json,md}
	$(PY) -m bench.run_all
