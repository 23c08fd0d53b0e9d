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

demo: install  ## train vanilla, GNT and ANT 1x1 on the bundled digits (2 seeds each), evaluate, print the grouped table
	rm -rf $(DEMO_DIR)
	$(PY) run.py -m experiment=digits_demo,digits_gnt,digits_ant1x1 seed=0,1 logger=none \
		trainer.enable_progress_bar=false ++trainer.enable_model_summary=false hydra.sweep.dir=$(DEMO_DIR)

test: install  ## the whole test suite (CPU, no network)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --durations=15 tests

test-fast: install  ## the suite without the slow end-to-end tests
	$(PY) -m pytest -n $(PYTEST_WORKERS) -m "not slow" tests

bench: install  ## speed ratios against baselines measured in the same run
	$(PY) -m benchmarks

lint: install  ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install  ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:  ## remove logs and caches (keeps .venv)
	rm -rf logs outputs multirun .pytest_cache .ruff_cache
