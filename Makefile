# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test install install-dev lint types js-test py-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## run: the demo chat at http://127.0.0.1:8000 (one process, in-memory bus, dev auth)
run: install
	@$(BIN)/python app.py

## test: lint, the JS client's types and unit tests, then the whole Python suite against real parts
test: install-dev lint types js-test py-test

lint:
	$(BIN)/ruff check .

# TypeScript, pinned by package-lock.json, only to check the client's declarations (no build step).
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

types: node_modules/.installed
	npx --no-install tsc -p tsconfig.json --noEmit --strict
	npx --no-install tsc -p tsconfig.checkjs.json

js-test:
	node --test tests/js/

py-test:
	$(BIN)/pytest $(PYTEST_ARGS)

## bench: the side-by-side benchmark (see docs/PERFORMANCE.md)
bench: install-dev
	bench/run.sh

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache
