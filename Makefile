# trustmarket: one Makefile for set-up, demo, tests, benchmarks and lint.
# Everything installs into the project folder (.venv, node_modules, .solcx); nothing needs the network
# beyond the PyPI and npm registries.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
SOLC_VERSION := 0.8.30
SOLC_SHIM := $(CURDIR)/.solcx/solc-v$(SOLC_VERSION)

export SOLCX_BINARY_PATH := $(CURDIR)/.solcx
export PATH := $(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-fast bench lint clean compile browser postgres

EXPLORER_VENDOR := backend/api/explorer/static/vendor

install: $(VENV)/.installed node_modules/.installed $(SOLC_SHIM) .build/.compiled $(EXPLORER_VENDOR)/.copied browser postgres

# PostgreSQL, the documented deployment's database: the suite runs its API and feedback tests on a private
# server it starts itself (tests/postgres.py). Installed from Debian where apt works (CI runs as root);
# elsewhere those runs are skipped with the reason.
postgres:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing postgresql (apt-get)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null) \
	    || echo "apt-get could not install postgresql: the suite's PostgreSQL runs will be skipped"; \
	else echo "postgresql is not installed (apt-get install postgresql): the suite's PostgreSQL runs will be skipped"; fi

$(VENV)/.installed: pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11)"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# OpenZeppelin's npm package also ships 258 Hardhat JSON artifacts in build/: Ape copies the whole package into
# contracts/.cache, and its source scan stops at 500 files, which could then miss our own contracts.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	rm -rf node_modules/@openzeppelin/contracts/build
	touch $@

# py-solc-x (and so ape-solidity) finds compilers only as `solc-vX.Y.Z` files in SOLCX_BINARY_PATH:
# a two-line wrapper around solc-js from npm stands in for the native binary.
$(SOLC_SHIM): tools/solc-shim.js node_modules/.installed
	mkdir -p $(dir $@)
	printf '#!/bin/sh\nexec node "%s/tools/solc-shim.js" "$$@"\n' "$(CURDIR)" > $@
	chmod +x $@

.build/.compiled: $(VENV)/.installed $(SOLC_SHIM) $(wildcard contracts/*.sol contracts/*/*.sol) ape-config.yaml
	@# A dependency cache unpacked from an older OpenZeppelin copy (with build/) would keep the file count high.
	if [ -d contracts/.cache/openzeppelin/5.7.0/build ]; then rm -rf contracts/.cache; $(VENV)/bin/ape pm install --force; fi
	@# --force: Ape recompiles only the files that changed, not the contracts that import them (a changed
	@# contracts/market/*.sol module would leave TrainingMarket's artifact stale).
	$(VENV)/bin/ape compile --force
	touch $@

# The explorer's chart library (uPlot, pinned in package.json) is served by the API process: no CDN.
$(EXPLORER_VENDOR)/.copied: node_modules/.installed
	mkdir -p $(EXPLORER_VENDOR)
	cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css node_modules/uplot/LICENSE $(EXPLORER_VENDOR)/
	touch $@

# The explorer's browser tests drive Debian's chromium (Playwright's own browser download is not reachable). Where
# apt is not available, or we are not root, the tests skip and say why.
browser:
	@if command -v chromium >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
		 || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }) \
		|| echo "chromium could not be installed: the explorer's browser tests will skip"; \
	else echo "no chromium and no apt (as root): the explorer's browser tests will skip"; fi

compile: install

demo: install
	$(VENV)/bin/trustmarket demo

# Two workers, each test file on one of them (module fixtures such as one browser or one demo chain stay whole):
# the suite is half waiting on anvil, uvicorn and subprocesses, half one-thread torch, so two cores both work.
TEST_WORKERS ?= 2

test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) bench/run_all.py

# Every static gate in one place: lint, format, types, the one-way layers.
lint: install
	$(VENV)/bin/ruff check backend aggregator rag tests bench scripts
	$(VENV)/bin/ruff format --check backend aggregator rag tests bench scripts
	$(VENV)/bin/mypy backend aggregator rag
	$(VENV)/bin/lint-imports
	@# Slither over contracts/ (through the solc-js shim; forge on PATH answers crytic-compile's config query):
	@# every finding is fixed or triaged with its reason in slither-triage.json.
	$(PY) tools/slither_check.py

clean:
	rm -rf .build .cache .forge runs .pytest_cache
