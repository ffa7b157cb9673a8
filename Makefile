# Tuoyu: the two commands a newcomer needs are `make run` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup run stop test soak lint lint-docker bench clean

setup:
	@bash deploy/local/setup.sh

## Start private PostgreSQL and RabbitMQ, every service, and load demo data (Ctrl-C stops all).
run: setup
	$(PY) deploy/local/run.py start

## Stop everything `make run` started (from another terminal).
stop:
	@if [ -x $(PY) ]; then $(PY) deploy/local/run.py stop; fi

## ruff, then the whole pytest suite against real PostgreSQL and RabbitMQ.
test: setup lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

## The reliability suite's long version: every fault again and again for 30 minutes
## (TUOYU_SOAK_MINUTES), then the processes' resource bounds; bench-results/reliability/soak.md.
soak: setup
	TUOYU_RELIABILITY_PROFILE=soak $(PY) -m pytest -q tests/reliability/test_soak.py $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

## hadolint on the one image definition (every service's image; also checked in `make test`).
lint-docker: setup
	$(VENV)/bin/hadolint deploy/docker/Dockerfile

## Benchmarks; results written as JSON to bench-results/.
bench: setup
	$(PY) bench/run.py
	$(PY) bench/credit.py
	$(PY) bench/paths.py
	$(PY) bench/inspection.py
	$(PY) bench/subsidy.py
	$(PY) bench/dashboard.py
	$(PY) bench/audit.py

clean: stop
	rm -rf .local bench-results
