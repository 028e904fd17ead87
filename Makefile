# Two commands on a fresh machine (Python 3.11+, git and make): `make demo`, `make test`.
#
# Every install comes from requirements.lock: exact versions with their hashes, the build
# backend included, so two machines run the same code. pyproject.toml keeps the loose
# ranges for people who install cmgit into an environment of their own.
#   make lock         refresh the lock to the newest allowed versions, then run the suite
#   make test-latest  the suite against the newest allowed versions, without the lock,
#                     so drift is seen before users meet it (run it weekly)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LATEST := .venv-latest
UV_VERSION := 0.13.8

.PHONY: demo test lint format bench lock test-latest clean

$(STAMP): requirements.lock pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@# Bytecode written once here, not recompiled by every command of a read-only install.
	$(BIN)/python -m compileall -q cmgit
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cmgit demo $(DIR)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check cmgit tests bench
	$(BIN)/ruff format --check cmgit tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format cmgit tests bench
	$(BIN)/ruff check --fix cmgit tests bench

# The scale targets at 10,000 and 100,000 cases (generated once, cached in
# ~/.cache/cmgit-bench): long, and loud about each PASS or FAIL; writes bench/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python bench/run.py 10000 100000

lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet uv==$(UV_VERSION)
	.venv-lock/bin/uv pip compile pyproject.toml requirements-build.in --extra test \
		--universal --python-version 3.11 --generate-hashes --no-header \
		--output-file requirements.lock
	$(MAKE) test

test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[test]'
	$(LATEST)/bin/python -m pip list --format=freeze
	$(LATEST)/bin/python -m pytest

clean:
	rm -rf $(VENV) $(LATEST) .venv-lock .pytest_cache .mypy_cache .ruff_cache
