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

# PYTEST_ARGS: more pytest arguments, e.g. PYTEST_ARGS="-n 2" or PYTEST_ARGS="-k vault".
# KOPPEL_TEST_DATABASE_URL and KOPPEL_TEST_REDIS_URL set: PostgreSQL and Redis; else SQLite.
# pytest's status 5 (no tests collected) is a failure, never a pass.
test: $(STAMP)
	@status=0; $(BIN)/python -m pytest $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .import_linter_cache
