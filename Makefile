# The two commands of the README, and the rest of the project's chores.
# Everything runs in .venv, created and filled from pyproject.toml on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench schema clean postgresql

demo: $(VENV)/.installed  ## Run a whole campaign on the demo shop (ARGS="--auto-approve" to skip the prompts)
	$(BIN)/ratchet demo $(ARGS)

test: $(VENV)/.installed postgresql  ## Run the test suite (real Temporal, k6, SQLite, PostgreSQL, demo shop)
	$(BIN)/python -m pytest $(ARGS)

# The tests start throwaway PostgreSQL servers from the Debian package `postgresql` (the server with its
# contrib modules, pg_stat_statements among them). Installed only when missing, so a machine that has it
# pays one dpkg-query and prints nothing. RATCHET_PG_BINDIR (binaries elsewhere, e.g. not Debian) skips it.
PG_PACKAGE := postgresql
postgresql:
	@if [ -n "$$RATCHET_PG_BINDIR" ]; then exit 0; fi; \
	if dpkg-query -W -f='$${Status}' $(PG_PACKAGE) 2>/dev/null | grep -q 'ok installed' \
	    && ls /usr/lib/postgresql/*/lib/pg_stat_statements.so >/dev/null 2>&1; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "PostgreSQL server (with contrib) is needed by the tests: install it, or set RATCHET_PG_BINDIR" >&2; \
	  exit 1; fi; \
	sudo=; if [ "$$(id -u)" != 0 ]; then sudo=sudo; fi; \
	echo "installing the Debian package $(PG_PACKAGE) (PostgreSQL server and contrib) for the tests"; \
	$$sudo apt-get update -qq && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(PG_PACKAGE) >/dev/null

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy ratchet/analysis ratchet/config ratchet/database

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
