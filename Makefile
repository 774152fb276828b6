# Signal Factory: `make up` runs the platform, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# Re-install whenever pyproject.toml changes.
STAMP_RUN := $(VENV)/.stamp-run
STAMP_DEV := $(VENV)/.stamp-dev

.PHONY: up test install install-dev tools lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(STAMP_RUN)

install: $(STAMP_RUN)
install-dev: $(STAMP_DEV)

## Run the platform on the embedded default: SQLite, in-process jobs, sample data.
up: install
	$(BIN)/signalfactory up --host $(HOST) --port $(PORT)

## System tools the tests use: promtool and amtool (alert rules, Alertmanager config) and headless Chromium (report
## screenshots, and the dashboard's browser tests through Playwright, which never downloads a browser), from
## Debian's packages. Installed when we can; their tests skip with a reason
## otherwise, except under CI=true where a missing tool fails the run.
APT_TOOLS := promtool:prometheus amtool:prometheus-alertmanager chromium:chromium pgbackrest:pgbackrest
tools:
	@missing=""; for pair in $(APT_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null) \
	      || echo "could not install$$missing; their tests will skip outside CI"; \
	  else echo "missing$$missing and not root: their tests will skip outside CI"; fi; \
	fi

lint: install-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy

## Every test: lint, import contracts, strict types of all of src, then pytest.
test: install-dev tools lint
	$(BIN)/pytest -q -n 2 --dist loadgroup --durations=25

bench: install-dev
	for f in benchmarks/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .signalfactory .pytest_cache .mypy_cache .ruff_cache
