# Two commands do all the set-up: `make demo` and `make test`. Both are idempotent: the
# virtualenv is made once and reinstalled only when pyproject.toml or constraints.txt change.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-unit install lint docs bench clean check-wheel

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,yfinance,ccxt]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mdq demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check mdq flows tests bench

# The wheel as a user installs it: a fresh venv outside the checkout, mdq demo and mdq check.
check-wheel:
	bash .ci/check_wheel.sh

docs: $(STAMP)
	$(BIN)/mdq docs

# Benchmarks print tables of ratios measured in one run (sizes: see each script's --help).
bench: $(STAMP)
	$(BIN)/python bench/bench_backfill.py
	$(BIN)/python bench/bench_calendar_checks.py
	$(BIN)/python bench/bench_checks.py
	$(BIN)/python bench/bench_report.py
	$(BIN)/python bench/bench_repeat_check.py

clean:
	rm -rf $(VENV) .pytest_cache dbt_project/target dbt_project/logs build dist test-output
