# Every target installs what it needs first (scripts/bootstrap is a no-op when up to date).
SHELL := /bin/bash
VENV := .venv/bin
BUF := node_modules/.bin/buf
BASE_PORT ?= 18000
# e.g. REPLICAS=planner=2,inference=2,worker=2,edge=3 (default: two edges, one of the rest)
REPLICAS ?=
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.DEFAULT_GOAL := help
.PHONY: help setup setup-tracing up down status proto proto-check lint fmt typecheck buf test test-e2e bench check clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## install Python and npm dependencies into .venv and node_modules
	@scripts/bootstrap

up: setup ## start the whole local mesh (Ctrl-C stops it); BASE_PORT=18000, REPLICAS=planner=2,..., WITH=tracing
	$(VENV)/switchboard up --base-port $(BASE_PORT) $(if $(REPLICAS),--replicas $(REPLICAS)) $(if $(WITH),--with $(WITH))

setup-tracing: setup ## install Phoenix, the trace receiver of `make up WITH=tracing`, outside .venv
	@scripts/setup-tracing

down: setup ## stop the mesh started by `make up`
	$(VENV)/switchboard down --base-port $(BASE_PORT)

status: setup ## show each process of the mesh and its health
	$(VENV)/switchboard status --base-port $(BASE_PORT)

proto: setup ## regenerate services/api from proto/
	$(VENV)/python scripts/genproto.py python

proto-check: setup ## fail if services/api differs from what proto/ generates
	@scripts/check-generated

lint: setup ## ruff lint and format check, and the architecture contracts (lint-imports)
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/lint-imports

fmt: setup ## apply ruff format and fixes
	$(VENV)/ruff format .
	$(VENV)/ruff check --fix .

typecheck: setup ## mypy --strict over the code, the tests and the benchmarks
	$(VENV)/mypy -p switchboard -p tests -p benchmarks

buf: setup ## buf lint, format and breaking (against the main branch)
	@scripts/buf-check

test: setup ## every test: unit, integration and end-to-end through Envoy
	$(VENV)/pytest

test-e2e: setup ## only the end-to-end tests against a fresh local mesh
	$(VENV)/pytest tests/e2e

bench: setup ## benchmarks (inference, then edge: SSE streams, events/s, added latency; then jobs, gRPC and REST, and a job's timeline); writes docs/benchmarks.md
	$(VENV)/python -m benchmarks.inference --write docs/benchmarks.md
	$(VENV)/python -m benchmarks.edge --write docs/benchmarks.md
	$(VENV)/python -m benchmarks.jobs --write docs/benchmarks.md
	$(VENV)/python -m benchmarks.jobs_rest --write docs/benchmarks.md
	$(VENV)/python -m benchmarks.job_timeline --write docs/benchmarks.md

check: lint typecheck buf proto-check test ## everything CI runs

clean: ## remove state folders and caches (keeps .venv and node_modules)
	rm -rf .switchboard .mypy_cache .ruff_cache
