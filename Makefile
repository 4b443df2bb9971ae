# Two commands do all set-up on a fresh machine:
#   make demo   build the demo profile store with Snakemake and train on it (CPU, a few minutes)
#   make test   run the test suite (make test-fast: in-process unit tests only, under a minute)
#   make lint   the quality gates: ruff, mypy, import contracts, snakefmt, snakemake --lint,
#               mkdocs build --strict
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: demo test test-fast lint setup bench clean comparison

setup: $(STAMP)

# torch is installed first and pinned exactly: a loose requirement downloads CUDA wheels.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[workflow,test,dev]'
	touch $(STAMP)

demo: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --profile profiles/local --cores $(CORES)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/protprof inspect results/store/profiles.zarr
	@tail -n 1 results/train/multitask/seed0/metrics.jsonl
	@cat results/evaluation/comparison.md 2>/dev/null || true

# The paper's comparison (MLM vs profile vs multitask, per-query and family targets, 5 seeds)
# at this machine's scale: ~2 h 10 min on 2 cores. Rerun after an interruption: it resumes.
COMPARISON := experiments/comparison
comparison: $(STAMP)
	$(BIN)/python $(COMPARISON)/make_data.py
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --profile profiles/local --cores $(CORES) \
		--configfile $(COMPARISON)/config.yaml
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --profile profiles/local --cores $(CORES) \
		--configfile $(COMPARISON)/config.yaml $(COMPARISON)/family.yaml
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python $(COMPARISON)/untrained_baseline.py

# Layers (pyproject's markers): slow = end-to-end runs, integration = child processes, real
# searches and training runs; test-fast runs neither. The 25 slowest tests are listed at the end.
test: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q --durations=25

test-fast: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q --durations=10 -m "not slow and not integration"

lint: $(STAMP)
	$(BIN)/ruff check protprof tests bench experiments data
	$(BIN)/ruff format --check protprof tests bench experiments data
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache --no-logo
	$(BIN)/snakefmt --check Snakefile workflow/rules
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --lint --cores 1
	$(BIN)/mkdocs build --strict --quiet

bench: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python bench/bench_search.py
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python bench/bench_loader.py
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python bench/bench_evaluate.py

clean:
	rm -rf results .snakemake site
