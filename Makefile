# bonecast: `make run` (main job) and `make test` (whole suite) work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/bonecast trial run examples/trials/atac_like.yaml --out results/atac_like.csv --plot results/atac_like.png
	@echo "Results table: results/atac_like.csv"
	@echo "Plot:          results/atac_like.png"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# The registry tests also run against a throwaway PostgreSQL server on 127.0.0.1 (installed from
# Debian's packages when missing); with CI set, they fail rather than skip without it.
unit: $(STAMP)
	@trap 'scripts/test-postgres.sh stop' EXIT; \
	url=$$(scripts/test-postgres.sh start) || url=; \
	BONECAST_TEST_POSTGRES_URL="$$url" $(BIN)/pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) results .pytest_cache .mypy_cache .ruff_cache
