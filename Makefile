# ragserve: the two set-up commands are `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install dev serve test test-cluster lint format typecheck unit fuzz demo-llm bench clean

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

# promtool (Debian package prometheus) checks the /metrics exposition and deploy/prometheus, nginx checks
# deploy/nginx; without them those tests skip. A freshly installed nginx is stopped (it would hold port 80).
test: lint typecheck
	-{ command -v promtool && command -v nginx; } >/dev/null || ! command -v apt-get >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus nginx; \
		  service nginx stop >/dev/null 2>&1 || true; }
	$(BIN)/pytest -q -m "not cluster"

# Three replicas (gunicorn, 2 workers each) behind nginx, with Redis and PostgreSQL, under a minute of
# load while one is killed and restarted: no failed request, no stale answer, global rate limits.
# Needs redis-server, nginx and PostgreSQL at 127.0.0.1:5432; takes a few minutes, so not in `make test`.
test-cluster: dev
	$(BIN)/pytest -q -m cluster tests/cluster -s

format: dev
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# Fallback without an API key: a local fake model server failing 30% of calls plays two providers.
DEMO_LLM_PORT ?= 8099
DEMO_PROVIDERS = [{"name":"primary","kind":"openai","base_url":"http://127.0.0.1:$(DEMO_LLM_PORT)/v1","model":"fake-gpt","timeout_s":2},{"name":"backup","kind":"anthropic","base_url":"http://127.0.0.1:$(DEMO_LLM_PORT)","api_key":"demo","model":"fake-claude","weight":0,"timeout_s":2},{"name":"extractive","kind":"extractive"}]
demo-llm: install
	$(BIN)/ragserve ingest samples --collection default
	@$(PY) -m ragserve.testing.fake_llm --port $(DEMO_LLM_PORT) --fail-rate 0.3 --latency 0.05 & \
	fake=$$!; trap "kill $$fake" EXIT INT TERM; \
	echo "ask: curl -s localhost:$(PORT)/v1/query -d '{\"query\":\"how do I change the port?\"}'  (see provider, failures)"; \
	RAGSERVE_LLM_PROVIDERS='$(DEMO_PROVIDERS)' $(BIN)/ragserve serve --host $(HOST) --port $(PORT)

# More generated cases than `make test` runs: RAGSERVE_FUZZ_EXAMPLES per operation and phase.
fuzz: dev
	RAGSERVE_FUZZ_EXAMPLES=$${RAGSERVE_FUZZ_EXAMPLES:-200} $(BIN)/pytest -q -p no:cacheprovider tests/integration/test_fuzz.py

bench: dev
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
