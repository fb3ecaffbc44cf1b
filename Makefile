# The two commands of the README, and the rest of the project's chores.
# Everything runs in .venv, created and filled from pyproject.toml on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo demo-workflows test test-fast lint bench bench-validation schema decoder clean postgresql chromium tmux

demo: $(VENV)/.installed chromium  ## Run a whole campaign on the demo shop (ARGS="--auto-approve" to skip the prompts)
	$(BIN)/ratchet demo $(ARGS)

demo-workflows: $(VENV)/.installed  ## Run a whole campaign on the example Temporal workflow application (ARGS="--auto-approve")
	$(BIN)/ratchet demo-workflows $(ARGS)

# The fast tier first (a logic error stops the run in two minutes), then the tests with real parts. Exit 5 is
# pytest's "no test selected": ARGS may pick tests of one tier only.
# The fast tier runs two tests at a time (pytest-xdist, one worker per core; PYTEST_WORKERS=0: one by one).
# The real tier runs two tests at a time too, each pinned to a core of its own with everything it starts
# (RATCHET_PIN_CPUS, tests/conftest.py): unpinned, three CI runs failed on three different verdicts a
# neighbour moved (a workflow's predicted time, the library's capacity, a guard's bake window); pinned, the
# tests that assert absolute timings took what they take alone. REAL_WORKERS: how many at a time (at most
# one per core; 0: one by one, unpinned).
PYTEST_WORKERS ?= 2
REAL_WORKERS ?= 2
PARALLEL := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist worksteal)

test: $(VENV)/.installed postgresql chromium tmux  ## Run the test suite: the fast tier, then real Temporal, k6, SQLite, PostgreSQL, Chromium, demo shop
	$(BIN)/python -m pytest -m "not real" $(PARALLEL) $(ARGS); status=$$?; [ $$status -eq 0 ] || [ $$status -eq 5 ] || exit $$status
ifeq ($(REAL_WORKERS),0)
	$(BIN)/python -m pytest -m real $(ARGS); status=$$?; [ $$status -eq 0 ] || [ $$status -eq 5 ] || exit $$status
else
	RATCHET_PIN_CPUS=1 $(BIN)/python -m pytest -m real -n $(REAL_WORKERS) --dist worksteal $(ARGS); status=$$?; [ $$status -eq 0 ] || [ $$status -eq 5 ] || exit $$status
endif

test-fast: $(VENV)/.installed chromium tmux  ## The fast tier, about two minutes: pure logic, the workflows on fake activities (Temporal dev and time-skipping servers), replays; no worker, shop or PostgreSQL
	$(BIN)/python -m pytest -m "not real" $(PARALLEL) $(ARGS)

# Debian packages, installed only when missing (a machine that has them pays one dpkg-query, prints nothing).
# $(call apt_install,PACKAGE,WHAT IT IS FOR)
define apt_install
	if ! command -v apt-get >/dev/null; then \
	  echo "the Debian package $(1) is needed ($(2)): install it by hand on this system" >&2; exit 1; fi; \
	sudo=; if [ "$$(id -u)" != 0 ]; then sudo=sudo; fi; \
	echo "installing the Debian package $(1) ($(2))"; \
	$$sudo apt-get update -qq && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(1) >/dev/null
endef

# Pages' web vitals are measured in Debian's Chromium, driven by k6's browser module. RATCHET_CHROMIUM (a
# Chromium elsewhere) skips it.
chromium:
	@if [ -n "$$RATCHET_CHROMIUM" ] || dpkg-query -W -f='$${Status}' chromium 2>/dev/null | grep -q 'ok installed'; \
	then exit 0; fi; \
	$(call apt_install,chromium,web vitals of pages)

# The live view is tested in a real terminal: tmux, installed only when missing.
tmux:
	@if command -v tmux >/dev/null; then exit 0; fi; \
	$(call apt_install,tmux,a real terminal for the live view's tests)

# The tests start throwaway PostgreSQL servers from the Debian package `postgresql` (the server with its
# contrib modules, pg_stat_statements among them). Installed only when missing, so a machine that has it
# pays one dpkg-query and prints nothing. RATCHET_PG_BINDIR (binaries elsewhere, e.g. not Debian) skips it.
PG_PACKAGE := postgresql
postgresql:
	@if [ -n "$$RATCHET_PG_BINDIR" ]; then exit 0; fi; \
	if dpkg-query -W -f='$${Status}' $(PG_PACKAGE) 2>/dev/null | grep -q 'ok installed' \
	    && ls /usr/lib/postgresql/*/lib/pg_stat_statements.so >/dev/null 2>&1; then exit 0; fi; \
	$(call apt_install,$(PG_PACKAGE),PostgreSQL server and contrib for the tests; or set RATCHET_PG_BINDIR)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy ratchet workflows activities roles worker.py

bench: $(VENV)/.installed  ## Benchmarks: Ratchet's ingest beside a naive baseline, ratios from one run
	$(BIN)/python -m bench $(ARGS)

bench-validation: $(VENV)/.installed  ## Validation's quality bars on the demo shop: A/A and a 20% slowdown, 20 repetitions
	$(BIN)/python -m bench.validation $(ARGS)

schema: $(VENV)/.installed  ## Regenerate the JSON Schemas of playbooks and targets
	$(BIN)/ratchet playbook schema --out playbooks/schema

# The trace receiver's span decoder is compiled at install, once: ahead of time into an extension module beside
# its source (about a minute; gcc and Python's headers are installed from Debian when missing), which a
# receiver loads without numba (it starts in under a second and idles at ~125 MB); and into numba's cache,
# which a receiver uses where the first could not be built or its sources changed since (then ~245 MB;
# compiling in it would hold ~1 GB).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@if ! command -v cc >/dev/null; then $(call apt_install,gcc libc6-dev,a C compiler for the span decoder); fi
	@include=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])'); \
	if [ ! -f "$$include/Python.h" ]; then $(call apt_install,python3-dev,Python's headers for the span decoder); fi
	$(BIN)/python -m ratchet.traces.wire_aot || echo "the span decoder was not compiled ahead of time (see above): receivers will run numba's" >&2
	$(BIN)/python -c "from ratchet.traces.columnar import warm_up; print(f'numba span decoder compiled in {warm_up(numba=True):.0f} s')"
	touch $@

# After a change of the span decoder's sources (ratchet/traces/wire*.py, ratchet/compiled_memory.py): its
# compiled module is rebuilt (a stale one is never loaded; the receiver runs numba's meanwhile).
decoder: $(VENV)/.installed
	$(BIN)/python -m ratchet.traces.wire_aot

clean:
	rm -rf $(VENV) .ratchet .pytest_cache
