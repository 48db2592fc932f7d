# bonecast: `make run` (main job) and `make test` (whole suite) work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run pango chromium test lint typecheck unit bench clean docs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@echo "Compiling the simulator's kernel into Numba's disk cache (once per install)"
	$(BIN)/python -c 'from bonecast.clinical.forecast import prepare_engine; prepare_engine()'
	touch $(STAMP)

DEMO_DB ?= sqlite:///demo.db

# WeasyPrint (PDF reports) needs Pango (HarfBuzz-Subset silences a deprecation warning);
# installed from Debian's packages when missing (apt-get, as root or with sudo).
pango:
	@ldconfig -p | grep -q libpango-1.0 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0; }

# The browser tests (tests/browser) drive Debian's Chromium through Playwright; installed from
# Debian's packages when missing (Playwright's own browser download does not work here).
chromium:
	@[ -x /usr/bin/chromium ] || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get install -y -qq chromium 2>/dev/null || { \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }; }

run: $(STAMP) pango
	$(BIN)/bonecast demo --database $(DEMO_DB)
	@echo "Web app: http://127.0.0.1:8000/  (Ctrl-C stops it; bonecast is not a medical device)"
	$(BIN)/bonecast serve --database $(DEMO_DB) --host 127.0.0.1 --port 8000

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# The registry tests also run against a throwaway PostgreSQL server on 127.0.0.1 (installed from
# Debian's packages when missing); with CI set, they fail rather than skip without it. The browser
# tests in tests/browser need Chromium (the chromium target); with CI set, they fail without it.
unit: $(STAMP) pango chromium
	@trap 'scripts/test-postgres.sh stop' EXIT; \
	url=$$(scripts/test-postgres.sh start) || url=; \
	BONECAST_TEST_POSTGRES_URL="$$url" $(BIN)/pytest -q

test: lint typecheck unit

# The documentation site (MkDocs + Material + mkdocstrings) in site/; warnings are errors.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) results demo.db site .pytest_cache .mypy_cache .ruff_cache
