# One command runs the service on the embedded emulator; one command runs the tests.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Every install takes the exact versions (with hashes) of the lock: uv.lock, exported for pip as
# requirements/dev.txt (runtime + dev) and requirements/runtime.txt (the image). pyproject.toml keeps
# the compatible ranges for people who install the package as a library.
LOCKED := requirements/dev.txt
UV_EXPORT := $(VENV)/bin/uv export --frozen --quiet --format requirements-txt --no-emit-project --python 3.11
LATEST_VENV ?= .venv-latest
# The suite runs in parallel processes (pytest-xdist): most tests wait on sockets and child processes,
# so even 2 cores keep 3 busy. TEST_WORKERS=0 runs it in one process (pdb, -x on the first failure).
TEST_WORKERS ?= 3

.PHONY: run run-production test test-latest lint lock lock-check emulator bench clean

$(STAMP): pyproject.toml $(LOCKED)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCKED)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# In local mode both also listen for mutual TLS (device certificates) on 127.0.0.1:8443, through
# nginx (docs/attestation.md); PROVISIONER_TLS_BIND= (empty) turns that off.
LOCAL_TLS := $${PROVISIONER_TLS_BIND-$$([ -n "$$PROVISIONER_IOT_ENDPOINT" ] || echo 127.0.0.1:8443)}

run: $(STAMP)  ## the service on http://127.0.0.1:8000 (mutual TLS on :8443 with nginx) against the local emulator
	PROVISIONER_TLS_BIND=$(LOCAL_TLS) $(PY) -m service

run-production: $(STAMP)  ## nginx in front of gunicorn on http://127.0.0.1:8000 and mutual TLS on :8443 (needs nginx)
	PROVISIONER_TLS_BIND=$(LOCAL_TLS) $(PY) -m service.serving.production

emulator: $(STAMP)  ## the emulator alone, on its default ports
	$(PY) -m emulator

test: $(STAMP)  ## the whole suite (pytest's "no tests ran" fails too)
	$(PY) -m pytest -q -n $(TEST_WORKERS)

lint: $(STAMP)  ## ruff (lint and formatting) and mypy
	$(PY) -m ruff check emulator service provisioner_client tests bench
	$(PY) -m ruff format --check emulator service provisioner_client tests bench
	$(PY) -m mypy --strict service emulator provisioner_client
	$(VENV)/bin/lint-imports --no-cache --no-logo --contract apart --contract emulator-acyclic --contract mqtt-leaf --contract client-acyclic --contract doors-apart --contract service-acyclic

test-latest:  ## the suite on the newest versions pyproject.toml allows (a venv of its own, not the lock)
	test -x $(LATEST_VENV)/bin/python || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev]'
	$(LATEST_VENV)/bin/python -m pip list --format freeze > $(LATEST_VENV)/versions.txt
	$(LATEST_VENV)/bin/python -m pytest -q -n $(TEST_WORKERS)

lock: $(STAMP)  ## re-resolve uv.lock to the newest versions the ranges allow, export requirements/*.txt
	$(VENV)/bin/uv lock --upgrade --python 3.11
	$(UV_EXPORT) --extra dev > requirements/dev.txt
	$(UV_EXPORT) > requirements/runtime.txt

lock-check: $(STAMP)  ## fails when uv.lock no longer matches pyproject.toml or requirements/*.txt uv.lock
	$(VENV)/bin/uv lock --check --offline --python 3.11
	$(UV_EXPORT) --extra dev | diff -u requirements/dev.txt - >&2
	$(UV_EXPORT) | diff -u requirements/runtime.txt - >&2

bench: $(STAMP)  ## the benchmark (docs/benchmarks.md): service vs connect-per-request vs direct pool
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(LATEST_VENV) .emulator-data data .pytest_cache
