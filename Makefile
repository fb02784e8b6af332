# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test install install-dev compiled uncompiled lint types js-test py-test bench soak mutation clean

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

# mypy (mypyc) and setuptools, to build the compiled modules; not needed at run time.
$(VENV)/.installed-build: requirements-build.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-build.txt
	touch $@

## compiled: the per-event modules as C extensions (chatgenius/compiled.py), built unless every one is
## already built from its source as it is; without a C compiler the service runs from its Python source
compiled: $(VENV)/.installed
	@if $(BIN)/python chatgenius/compiled.py compiler; then $(MAKE) --no-print-directory $(VENV)/.installed-build; fi
	$(BIN)/python chatgenius/compiled.py ensure

## uncompiled: back to the Python source alone (a built module shadows its .py)
uncompiled:
	$(PYTHON) chatgenius/compiled.py clean

## run: the demo chat at http://127.0.0.1:8000 (one process, in-memory bus, dev auth)
run: install compiled
	@$(BIN)/python app.py

## test: lint, the JS client's types and unit tests, then the whole Python suite against real parts
test: install-dev compiled lint types js-test py-test

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

py-test: install-dev compiled
	$(BIN)/pytest $(PYTEST_ARGS)

## bench: the side-by-side benchmark (see docs/PERFORMANCE.md)
bench: install-dev compiled
	bench/run.sh

## soak: the long soak (default 2 hours, 2 % of the clients reconnecting each second); not part of `make test`
SOAK_MINUTES ?= 120
SOAK_CHURN   ?= 0.02
SOAK_OUT     ?= bench/results/soak/soak
soak: install-dev
	$(BIN)/python bench/soak.py --minutes $(SOAK_MINUTES) --churn $(SOAK_CHURN) --sample 60 --clients 200 --rate 40 --out $(SOAK_OUT)

## mutation: mutmut over cursor, stream, fan-out, events, auth and leases with the fast unit tests
## (setup.cfg [mutmut]); not part of `make test` (too slow for CI: see docs/TESTING.md for how long it takes)
MUTATION_JOBS ?= 2
mutation: install-dev uncompiled
	rm -rf mutants
	mkdir -p bench/results/mutation
	start=$$(date +%s); $(BIN)/mutmut run --max-children $(MUTATION_JOBS); echo "mutmut run took $$(( $$(date +%s) - start )) s"
	$(BIN)/mutmut results --all true > bench/results/mutation/results.txt
	$(BIN)/python tests/support/mutation_summary.py bench/results/mutation/results.txt bench/results/mutation/summary.md

clean:
	$(PYTHON) chatgenius/compiled.py clean
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .mypy_cache
