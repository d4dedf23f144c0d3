# QIS Data Management — task runner. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
VENV := .venv/bin
STACK := infra/local/stack.sh
INFRA_LINT := infra/lint/.venv/bin
PY_DIRS := $(wildcard app ops dashboards alarms tests benchmarks loadtests client)

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z][a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: setup
setup: ## Install uv if missing, then the locked Python dependencies into .venv
	@command -v uv >/dev/null 2>&1 || [ -x "$(UV)" ] || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	@$$(command -v uv || echo $(UV)) sync --frozen --extra tools --extra ingest --quiet

.PHONY: stack-up stack-down stack-status
stack-up: ## Install (if needed) and start PostgreSQL, Redis, Kafka, S3 (moto) and the document store (FerretDB) on loopback
	@bash $(STACK) up
stack-down: ## Stop the local stack; leaves no process behind
	@bash $(STACK) down
stack-status: ## Show the local stack's state
	@bash $(STACK) status

.PHONY: migrate
migrate: setup stack-up ## Apply database migrations, create Kafka topics, the S3 buckets, the local event bus and the Timestream tables
	@$(VENV)/qis db migrate
	@$(VENV)/qis kafka topics
	@eval "$$(bash $(STACK) env)" && $(VENV)/qis lake buckets
	@eval "$$(bash $(STACK) env)" && $(VENV)/qis events setup
	@eval "$$(bash $(STACK) env)" && $(VENV)/qis timestream setup

.PHONY: run
run: setup ## Run everything in the foreground: stack, migrations, api, worker, scheduler (Ctrl-C stops)
	@bash scripts/run.sh

.PHONY: lint lint-infra
lint: setup lint-infra ## ruff (explicit rule list), mypy --strict on app/ and the tools, and lint-infra
	@$(VENV)/ruff check $(PY_DIRS)
	@$(VENV)/ruff format --check $(PY_DIRS)
	@$(VENV)/mypy
lint-infra: setup ## hadolint, cfn-lint, checkov, helm lint + manifest validation (first run builds helm, ~4 min)
	@$$(command -v uv || echo $(UV)) sync --frozen --quiet --project infra/lint
	@$(INFRA_LINT)/hadolint Dockerfile && echo "hadolint: Dockerfile clean"
	@$(INFRA_LINT)/cfn-lint infra/cloudformation/*.yaml && echo "cfn-lint: infra/cloudformation clean"
	@cd infra/cloudformation && ../lint/.venv/bin/checkov --config-file .checkov.yaml
	@bash infra/helm/check.sh

.PHONY: unit
unit: setup ## Unit tests only (no services needed)
	@$(VENV)/pytest tests/unit -q

.PHONY: test
test: setup lint stack-up ## Everything CI runs: lint, types, unit, integration and e2e tests on the real stack (JUnit XML: .local/test-results/junit.xml)
	@$(VENV)/pytest -q --junitxml=.local/test-results/junit.xml

.PHONY: bench bench-gate loadtest-smoke sizing
bench: setup ## Micro benchmarks (pytest-benchmark groups; out of the default test run)
	@$(VENV)/pytest benchmarks/micro --benchmark-only --benchmark-enable -q
bench-gate: setup ## Micro benchmarks, base vs head interleaved; fails on a > 25 % slowdown of a group
	@$(VENV)/python -m benchmarks.gate
loadtest-smoke: setup stack-up ## 60 s headless Locust run on the local stack; exit code = SLO gate
	@$(VENV)/python -m loadtests.smoke
sizing: setup stack-up ## ElastiCache/Aurora sizing report measured on the local stack
	@$(VENV)/python -m benchmarks.sizing
