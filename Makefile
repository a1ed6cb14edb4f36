# ragserve: the two set-up commands are `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install dev serve test lint format typecheck unit fuzz bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	# The CPU build of torch first, so nothing pulls a CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

serve: install
	$(BIN)/ragserve ingest samples --collection default
	$(BIN)/ragserve serve --host $(HOST) --port $(PORT)

lint: dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: dev
	$(BIN)/mypy

unit: dev
	$(BIN)/pytest -q tests/unit

# promtool (Debian package prometheus) checks the /metrics exposition; without it that test skips.
test: lint typecheck
	-command -v promtool >/dev/null || ! command -v apt-get >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }
	$(BIN)/pytest -q

format: dev
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# More generated cases than `make test` runs: RAGSERVE_FUZZ_EXAMPLES per operation and phase.
fuzz: dev
	RAGSERVE_FUZZ_EXAMPLES=$${RAGSERVE_FUZZ_EXAMPLES:-200} $(BIN)/pytest -q -p no:cacheprovider tests/integration/test_fuzz.py

bench: dev
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
