# robustnoise: `make demo` and `make test` work on a fresh machine (they create .venv and install when needed).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= logs/demo
PYTEST_WORKERS ?= 2

.PHONY: help install demo test test-fast bench lint format audit clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install robustnoise with its dev extras

# logger=none: nothing would record the per-epoch -C validation, so it is off
demo: install  ## train vanilla, GNT and ANT 1x1 on the bundled digits (2 seeds each), evaluate, print the grouped table
	rm -rf $(DEMO_DIR)
	$(PY) run.py -m experiment=digits_demo,digits_gnt,digits_ant1x1 seed=0,1 logger=none \
		eval.during_training.every_n_epochs=0 \
		trainer.enable_progress_bar=false ++trainer.enable_model_summary=false hydra.sweep.dir=$(DEMO_DIR)

# CPU kernel paths forced for a second pass over the bit-exact tests (`-m exact`): ATen's portable and AVX2 kernels,
# oneDNN limited to AVX2, MKL (GEMM, FFT, vector math) limited to AVX2. The main pass runs the machine's best path.
EXACT_KERNEL_PATHS ?= ATEN_CPU_CAPABILITY=default ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
EXACT_TEST_FILES = $(shell grep -l 'mark\.exact' tests/*.py)

test: install  ## the whole test suite (CPU, no network), then the bit-exact tests under other CPU kernel paths
	$(PY) -m pytest -n $(PYTEST_WORKERS) --durations=15 tests
	@for path in $(EXACT_KERNEL_PATHS); do \
		echo "== bit-exact tests with $$path"; \
		env $$path $(PY) -m pytest -q -p no:cacheprovider -m exact $(EXACT_TEST_FILES) || exit 1; \
	done

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

audit: install  ## pip-audit of .venv: says how many packages it checked; fails on known vulnerabilities or none checked
	$(PY) tools/audit.py

clean:  ## remove logs and caches (keeps .venv)
	rm -rf logs outputs multirun .pytest_cache .ruff_cache
