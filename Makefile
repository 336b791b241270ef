# Cutover: `make demo` runs the local release rehearsal, `make test` runs every test.
# Each target installs what it needs into .venv first (from a fresh clone, too).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# checkov pins many packages of its own, so it gets a virtualenv of its own.
CHECKOV := .tools/checkov/bin/checkov

.PHONY: demo test lint bench install clean prometheus

install: $(STAMP)

$(STAMP): pyproject.toml app/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ./app -e '.[dev]'
	@touch $(STAMP)

$(CHECKOV):
	$(PYTHON) -m venv .tools/checkov
	.tools/checkov/bin/python -m pip install --quiet 'checkov>=3.2'

demo: $(STAMP)
	$(BIN)/cutover rehearse

# Two workers for everything but the end-to-end rehearsals (2 cores; most tests wait on
# processes, sockets and clocks; a file's tests stay in one worker), then the rehearsals
# alone: a rehearsal under load beside other tests starves (failed requests, timeouts).
test: $(STAMP) $(CHECKOV) prometheus
	$(BIN)/python -m pytest -n 2 --dist loadfile --ignore=tests/e2e
	$(BIN)/python -m pytest tests/e2e

# A real Prometheus for the canary-analysis tests (Debian's package; root, as in CI).
prometheus:
	@command -v prometheus >/dev/null || (apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends prometheus >/dev/null))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	@command -v wrk >/dev/null || (apt-get install -y -q wrk >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null))
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
