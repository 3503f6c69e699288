# Koppel: `make run` starts everything on the embedded default; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	KOPPEL_WEBHOOKS_ALLOW_LOOPBACK=true $(BIN)/koppel run

# TEST_PROCESSES: pytest-xdist workers (2: the suite's machine has two cores; 0 for one
# process). PYTEST_ARGS: more pytest arguments, e.g. PYTEST_ARGS="-k vault".
# KOPPEL_TEST_DATABASE_URL and KOPPEL_TEST_REDIS_URL set: PostgreSQL and Redis; else SQLite.
# pytest's status 5 (no tests collected) is a failure, never a pass.
CLIENTS := tests/clients/node
TEST_PROCESSES ?= 2
test: $(STAMP) $(CLIENTS)/node_modules/.package-lock.json
	@status=0; $(BIN)/python -m pytest -n $(TEST_PROCESSES) $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

# make bench: Koppel against its references in one run, one table, docs/benchmarks.md
# (not CI; about 20 minutes, more on the first run, which seeds 1M connections).
# SCENARIO=refresh,login runs some (soak: not in the default set; SOAK_SECONDS);
# BENCH_CONNECTIONS=100000 shrinks the overview's database for a trial; BENCH_RUNS,
# BENCH_SECONDS. Uses PostgreSQL and Redis on 127.0.0.1 (started if down).
PEER := bench/peers/oidc-provider
bench: $(STAMP) $(PEER)/node_modules/.package-lock.json
	SCENARIO="$(SCENARIO)" SOAK_SECONDS="$(SOAK_SECONDS)" BENCH_CONNECTIONS="$(BENCH_CONNECTIONS)" \
		$(BIN)/python -m bench.run

$(PEER)/node_modules/.package-lock.json: $(PEER)/package-lock.json
	cd $(PEER) && npm ci --no-audit --no-fund

# The certified OpenID client libraries that tests/clients drives (pinned in the lockfile).
$(CLIENTS)/node_modules/.package-lock.json: $(CLIENTS)/package-lock.json
	cd $(CLIENTS) && npm ci --no-audit --no-fund

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .import_linter_cache .mypy_cache
