# The two commands: `make run` and `make test`. Each bootstraps .venv by itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
KEYSHIFT := $(BIN)/keyshift

.PHONY: run test lint bench sysdeps clean sandbox-down

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing keyshift and its tools into $(VENV) (log: $(VENV)/install.log) ..."
	@( $(BIN)/python -m pip install -q --upgrade pip \
	   && $(BIN)/python -m pip install -q -e '.[dev]' ) > $(VENV)/install.log 2>&1 \
	  || { tail -40 $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

sysdeps:
	@scripts/ensure-system-deps

# Start the sandbox (OpenBao + moto), seed it, sync it, open the TUI.
# Runs inside a private D-Bus session with gnome-keyring unlocked, so keyshift's own
# secrets (the fingerprint key, the sandbox's tokens) live in a real Secret Service. That
# keyring is unlocked with a fixed, public password (scripts/with-keyring): a sandbox
# convenience that protects nothing, never a place for real secrets.
run: $(STAMP) sysdeps
	@scripts/with-keyring scripts/demo

test: $(STAMP) sysdeps
	@$(BIN)/ruff check console rotators screens tests bench
	@$(BIN)/lint-imports
	@KEYSHIFT_TEST_KEYRING=1 scripts/with-keyring $(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	@$(BIN)/ruff check console rotators screens tests bench
	@$(BIN)/lint-imports

bench: $(STAMP) sysdeps
	@scripts/with-keyring bash -c 'for b in bench/[!_]*.py; do $(BIN)/python $$b || exit 1; done'

sandbox-down: $(STAMP)
	@scripts/ks sandbox down

clean:
	rm -rf $(VENV) .pytest_cache
