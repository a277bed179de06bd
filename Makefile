PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# test processes: each has its own chDB data path and servers and takes whole files, in the
# order tests/conftest.py gives (longest first)
TEST_WORKERS ?= 2

.PHONY: install run test test-fast lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

run: install
	$(BIN)/gatrix migrate
	$(BIN)/gatrix serve

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# pure functions only (no server, engine or browser): seconds
test-fast: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m fast

lint: install
	$(BIN)/ruff check gatrix tests tools
	$(BIN)/ruff format --check gatrix tests tools

bench: install
	$(BIN)/python -m tools.bench ingest --seconds 15 --connections 64 --batch-events 200000 --output bench-ingest.json
	$(BIN)/python -m tools.bench insights --events 1000000 --events 10000000 --output bench-insights.json
	$(BIN)/python -m tools.bench dashboard --events 1000000 --output bench-dashboard.json

clean:
	rm -rf $(VENV) build *.egg-info
