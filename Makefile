# Two commands matter: `make demo` (set up everything, run the export on the local stack)
# and `make test` (set up everything, run every test). Everything else is a building block.
PYTHON ?= python3
# The virtualenv: .venv, created and kept up to date here. `make demo VENV=/path/to/venv` uses an
# existing one as it is (nothing is installed into it; it must have weward-pipeline, e.g. another
# checkout's .venv with PYTHONPATH pointing at this one): the newcomer test runs a fresh clone so.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv system-deps demo dev test lint format bench clean stack-up stack-down

ifeq ($(VENV),.venv)
venv: $(STAMP)
else
venv:
	@test -x $(BIN)/weward-pipeline || { echo "VENV=$(VENV) has no bin/weward-pipeline: leave VENV unset to create .venv"; exit 2; }
endif

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

system-deps:
	scripts/install-system-deps.sh
	scripts/install-browser-deps.sh

demo: venv
	@scripts/install-system-deps.sh
	@$(BIN)/weward-pipeline demo

# Ctrl-C stops the UI and the stack it started; the command then exits 0 (no "Error 130").
DEV_PORT ?= 3000
dev: venv
	@$(BIN)/weward-pipeline dev --port $(DEV_PORT)

stack-up: venv
	$(BIN)/weward-pipeline stack up

stack-down: venv
	$(BIN)/weward-pipeline stack down

# Everything CI runs: system packages (PostgreSQL server, Chromium; no-ops when present), the
# linter and formatter (ruff, ruff.toml), offline infra checks (terraform fmt, checkov, hadolint),
# then every test.
test: system-deps venv lint
	scripts/check-infra.sh
	$(BIN)/python -m pytest weward_pipeline_tests

# Fails on any lint finding or any file the formatter would change; `make format` fixes both.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The benchmark (minutes, not part of make test); peers (pandas, dlt, connectorx) live in their
# own venv, .venv-bench, so they never leak into the product's dependencies.
bench: venv
	scripts/install-system-deps.sh
	PYTHON=$(PYTHON) bench/setup.sh
	.venv-bench/bin/python -m bench.run

clean:
	-$(BIN)/weward-pipeline stack down
	rm -rf .local
