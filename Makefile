# p2pnet — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-test

.PHONY: test lint typecheck pytest bench run demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

INTEROP := tests/interop

# The js-libp2p peer of tests/net/test_pnet_interop.py (those tests skip, saying why,
# when npm or the packages are missing).
$(INTEROP)/node_modules/.package-lock.json: $(INTEROP)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix $(INTEROP) --no-audit --no-fund --silent; \
	else echo "npm not found: the js-libp2p interop tests will be skipped"; fi

pytest: $(STAMP) $(INTEROP)/node_modules/.package-lock.json
	$(BIN)/pytest -q

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis $(INTEROP)/node_modules

# The terminal app on the default profile (first start: create your identity).
run: $(STAMP)
	$(BIN)/python -m tui

# Three nodes on this machine in a temporary home; the app opens as one of them.
demo: $(STAMP)
	$(BIN)/python -m tui.demo
