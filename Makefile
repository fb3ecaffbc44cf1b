# The two commands of the README, and the rest of the project's chores.
# Everything runs in .venv, created and filled from pyproject.toml on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench schema clean

demo: $(VENV)/.installed  ## Run a whole campaign on the demo shop (ARGS="--auto-approve" to skip the prompts)
	$(BIN)/ratchet demo $(ARGS)

test: $(VENV)/.installed  ## Run the test suite (real Temporal, k6, SQLite, demo shop)
	$(BIN)/python -m pytest $(ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy ratchet/analysis ratchet/config

bench: $(VENV)/.installed  ## Benchmarks: Ratchet's ingest beside a naive baseline, ratios from one run
	$(BIN)/python -m bench $(ARGS)

schema: $(VENV)/.installed  ## Regenerate the JSON Schemas of playbooks and targets
	$(BIN)/ratchet playbook schema --out playbooks/schema

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) .ratchet .pytest_cache
