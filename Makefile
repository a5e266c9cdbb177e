# One command runs the service on the embedded emulator; one command runs the tests.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run run-production test lint emulator bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## the service on http://127.0.0.1:8000 against the local emulator
	$(PY) -m service

run-production: $(STAMP)  ## nginx in front of gunicorn on http://127.0.0.1:8000 (needs nginx)
	$(PY) -m service.production

emulator: $(STAMP)  ## the emulator alone, on its default ports
	$(PY) -m emulator

test: $(STAMP)  ## the whole suite (pytest's "no tests ran" fails too)
	$(PY) -m pytest -q

lint: $(STAMP)  ## ruff (lint and formatting) and mypy
	$(PY) -m ruff check emulator service provisioner_client tests bench
	$(PY) -m ruff format --check emulator service provisioner_client tests bench
	$(PY) -m mypy service emulator provisioner_client

bench: $(STAMP)  ## issue 4's benchmark: service vs connect-per-request vs direct pool
	$(PY) -m bench

clean:
	rm -rf $(VENV) .emulator-data data .pytest_cache
