# The one entry point. `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BUF    := node_modules/.bin/buf
STAMP  := $(VENV)/.installed

.PHONY: run test ci lint fmt proto proto-check buf-lint buf-breaking typecheck bench fuzz soak clean install docs

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch node_modules/.installed

# The Node interop client (built from the .proto alone) has its own dependencies.
interop/node/node_modules/.installed: interop/node/package.json
	npm install --prefix interop/node --no-audit --no-fund --loglevel=error
	touch interop/node/node_modules/.installed

install: $(STAMP)

## run: the sidecar (mock provider, SQLite store, loopback binds when nothing is configured)
run: $(STAMP)
	$(VENV)/bin/voicecall-server $(if $(CONFIG),--config $(CONFIG))

## test: the whole test suite
test: $(STAMP) node_modules/.installed interop/node/node_modules/.installed
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP) node_modules/.installed buf-lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
	$(BUF) format -w

typecheck: $(STAMP)
	$(VENV)/bin/mypy

buf-lint: node_modules/.installed
	$(BUF) lint
	$(BUF) format --exit-code -d

## buf-breaking: the contract only grows; compared with the previous commit on main
buf-breaking: node_modules/.installed
	@if git rev-parse -q --verify HEAD~1 >/dev/null && git cat-file -e HEAD~1:proto 2>/dev/null; then \
		$(BUF) breaking --against '.git#ref=HEAD~1'; \
	else echo "buf breaking: no earlier proto to compare with"; fi

## docs: regenerate docs/configuration.md from the config schema
docs: $(STAMP)
	$(PY) scripts/config_reference.py

proto: $(STAMP)
	$(PY) scripts/genproto.py

proto-check: $(STAMP)
	rm -rf .proto-check && $(PY) scripts/genproto.py --out .proto-check
	diff -r voicecall_client/v1 .proto-check || (echo "voicecall_client/v1 is stale: run 'make proto'"; rm -rf .proto-check; exit 1)
	rm -rf .proto-check

ci: lint typecheck proto-check buf-breaking test

bench: $(STAMP)
	$(PY) -m bench.run_all

fuzz: $(STAMP)
	$(PY) -m bench.fuzz --all-modules -max_total_time=$(or $(FUZZ_SECONDS),300)

soak: $(STAMP)
	$(PY) -m bench.soak --minutes $(or $(MINUTES),5)

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache .proto-check
