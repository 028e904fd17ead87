# Two commands on a fresh machine (Python 3.11+, git, make): `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cmgit demo $(DIR)

test: $(STAMP)
	$(BIN)/python -m pytest

# The scale targets of issue #6 at 10,000 and 100,000 cases (generated once, cached in
# ~/.cache/cmgit-bench): long, and loud about each PASS or FAIL; writes bench/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python bench/run.py 10000 100000

lint: $(STAMP)
	$(BIN)/ruff check cmgit tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
