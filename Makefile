# robustnoise: `make demo` and `make test` work on a fresh machine (they create .venv and install when needed).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= logs/demo
PYTEST_WORKERS ?= 2

.PHONY: help install demo test test-fast bench lint format clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install robustnoise with its dev extras

demo: install  ## train vanilla and GNT on the bundled digits, evaluate, print the robustness table
	rm -rf $(DEMO_DIR)
	$(PY) run.py experiment=digits_demo method=vanilla hydra.run.dir=$(DEMO_DIR)/vanilla
	$(PY) run.py experiment=digits_demo method=gnt hydra.run.dir=$(DEMO_DIR)/gnt
	@echo
	@$(PY) -m robustnoise.compare $(DEMO_DIR)/vanilla $(DEMO_DIR)/gnt

test: install  ## the whole test suite (CPU, no network)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --durations=15 tests

test-fast: install  ## the suite without the slow end-to-end tests
	$(PY) -m pytest -n $(PYTEST_WORKERS) -m "not slow" tests

bench: install  ## speed ratios against baselines measured in the same run
	$(PY) -m benchmarks

lint: install  ## ruff lint + format check + import layering (import-linter contracts in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: install  ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:  ## remove logs and caches (keeps .venv)
	rm -rf logs outputs multirun .pytest_cache .ruff_cache
