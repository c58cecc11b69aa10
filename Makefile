# shopmesh developer commands. `make test` is what CI runs.
#
# Tools are pinned: uv (the installer) in UV_VERSION below, everything else in
# uv.lock. uv is installed into a cache outside the clone on first use.

SHELL := /bin/bash
.DEFAULT_GOAL := help

SHOPMESH_CACHE ?= $(HOME)/.cache/shopmesh
UV_VERSION := 0.13.8
UV_HOME := $(SHOPMESH_CACHE)/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv
export UV_PYTHON_DOWNLOADS := never
VENV := .venv
PY := $(VENV)/bin/python

STACK := $(PY) -m shopmesh_stack
export SHOPMESH_UV_PATH := $(UV_HOME)/bin

.PHONY: help deps gen gen-check render render-check lint buf-lint test unit fuzz breaking client-python clean-venv install up down status logs clean promote-admin dlq ledger-check bench-platform demo roll trace bench bench-deps bench-checkout bench-register bench-machine bench-footprint chaos

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(UV):
	@echo "==> installing uv $(UV_VERSION) into $(UV_HOME)"
	@python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$(UV_HOME)" "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	@echo "==> installing Python dependencies from uv.lock into $(VENV)"
	@$(UV) sync --frozen --python python3.11 --quiet
	@touch $@

deps: $(VENV)/.synced ## install pinned Python dependencies (uv.lock)

gen: deps ## regenerate gen/ (Python, descriptors, OpenAPI), the Go and TypeScript clients and docs/api
	@$(PY) scripts/gen.py

gen-check: deps ## fail if anything `make gen` writes is stale
	@$(PY) scripts/gen.py --check

render: deps ## render istio/, k8s/ and kafka/strimzi/ from mesh/mesh.yaml and kafka/topics.yaml
	@$(PY) -m shopmesh_render

render-check: deps ## fail if istio/, k8s/, kafka/strimzi/ are stale; validate them (Istio/K8s/Strimzi schemas)
	@$(PY) -m shopmesh_render --check
	@$(PY) -m shopmesh_render.validate

buf-lint: deps ## buf lint (STANDARD) and buf format on the contracts
	@$(PY) scripts/gen.py --image build/image.binpb
	@cd proto && ../$(VENV)/bin/buf lint ../build/image.binpb --path shopmesh --config buf.yaml
	@cd proto && ../$(VENV)/bin/buf format --diff --exit-code .
	@echo "buf: lint and format clean"

lint: deps buf-lint breaking gen-check render-check ## ruff, mypy, buf lint/format, buf breaking, generation and render drift, manifest validation
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy

breaking: deps ## buf breaking against the baseline commit recorded in proto/BASELINE
	@$(PY) -m shopmesh_gen.breaking

client-python: deps ## build the Python client's wheel (clients/python) into build/wheels
	@$(UV) build --wheel --quiet --out-dir build/wheels clients/python
	@ls build/wheels/shopmesh_client-*.whl

install: deps ## install the stack's components (PostgreSQL, Kafka, FerretDB, grpcurl, localstripe, Jaeger)
	@$(STACK) install

up: deps ## run the mesh: PostgreSQL, Kafka, FerretDB, localstripe, Jaeger, the services, Envoy
	@$(STACK) up

down: deps ## stop what `make up` started (by pid); keeps the data
	@$(STACK) down

status: deps ## each component: up/down, pid, port, log file
	@$(STACK) status

logs: deps ## recent logs of every component (follow: make logs ARGS=-f, one: ARGS=kafka)
	@$(STACK) logs $(ARGS)

demo: deps ## a narrated checkout through the edge, as one trace (starts the stack as `make up` if it is not up)
	@$(PY) -m shopmesh_demo --start

roll: deps ## replace services' processes without refusing a call: make roll SERVICE=orders (default: each in turn)
	@$(STACK) roll $(SERVICE)

clean: deps ## stop and delete the local stack's data (.stack/)
	@$(STACK) clean

promote-admin: deps ## make an account of the local stack an admin: make promote-admin EMAIL=you@example.com
	@SHOPMESH_DATABASE_URL=postgresql://postgres@127.0.0.1:$${SHOPMESH_PORT_POSTGRES:-55432}/users $(PY) -m shopmesh_users.admin promote "$(EMAIL)"

trace: deps ## print one trace's span tree (services, operations, durations) from the local Jaeger: make trace ID=<trace id> [WAIT=<seconds>]
	@$(STACK) trace $(ID) $(if $(WAIT),--wait $(WAIT))

dlq: deps ## dead letters and parked outbox rows: make dlq ARGS="list | redrive TOPIC | parked | unpark SERVICE"
	@$(STACK) dlq $(ARGS)

ledger-check: deps ## check every product's stock against the stock ledger (local stack; INVENTORY_DSN=... for another)
	@$(PY) -m shopmesh_inventory.ledger_check --dsn "$${INVENTORY_DSN:-postgresql://postgres@127.0.0.1:$${SHOPMESH_PORT_POSTGRES:-55432}/inventory}"

bench-platform: deps ## the platform's cost per call against a bare server (own stack; ~10 min; BENCH_DURATION=15 for longer runs)
	@$(PY) -m shopmesh_bench

# The checkout suite (scripts/shopmesh_bench/suite.py): each target starts its own stack;
# BENCH_DURATION (s per rate, default 60), BENCH_RUNS (3), BENCH_RATES (5,10,25,50,100),
# BENCH_SEED, BENCH_LABEL override the fixed defaults. Results: bench/results/, BENCHMARKS.md.
BENCH_SUITE := $(PY) -m shopmesh_bench.suite

bench-deps: deps ## the benchmarks' own dependencies (matplotlib: dependency group `bench`)
	@$(UV) sync --frozen --python python3.11 --quiet --group bench

bench: bench-deps bench-platform ## every benchmark: bench-platform, then checkout, registration, machine limits, footprint (one stack)
	@$(BENCH_SUITE) checkout register machine footprint

bench-checkout: bench-deps ## open-loop checkouts at 5/10/25/50/100 per s: latencies, knee, CPU per process, ledger
	@$(BENCH_SUITE) checkout

bench-register: bench-deps ## registrations/s and p99 (argon2id parameters printed)
	@$(BENCH_SUITE) register

bench-machine: bench-deps ## the machine's limits: PostgreSQL commits/s (pgbench, fsync), Kafka round trip
	@$(BENCH_SUITE) machine

bench-footprint: bench-deps ## RSS of every stack process idle and under load; up time
	@$(BENCH_SUITE) footprint

chaos: deps install ## crash-anything ledger test: 20 checkouts/s for 60 s, every component SIGKILLed once (own stack; CHAOS_SEED, CHAOS_RATE, CHAOS_DURATION, CHAOS_COMPONENTS)
	@$(PY) -m shopmesh_chaos

unit: deps ## run the tests only
	@$(VENV)/bin/pytest

# `make test` runs the fuzzers too, with 30 reproducible inputs per REST operation and
# kind, and per gRPC method and kind; this runs them alone with fresh random inputs.
FUZZ_EXAMPLES ?= 300
fuzz: deps install ## fuzz the REST surface (schemathesis) and every gRPC method (Hypothesis): make fuzz FUZZ_EXAMPLES=300
	@SHOPMESH_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) SHOPMESH_FUZZ_DERANDOMIZE=false $(VENV)/bin/pytest -s \
		tests/integration/test_fuzz_rest.py tests/integration/test_fuzz_grpc.py

test: lint install unit ## lint, install the stack components, then every test (unit and real-stack)

clean-venv: ## remove the project virtualenv
	rm -rf $(VENV) build
