# The README's commands. `make test` is what CI runs (.ci/run).
PY := .venv/bin/python
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup test lint typecheck unit demo clean-cluster

setup:
	bash .ci/setup

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	lint-imports

typecheck: setup
	$(PY) -m mypy operator/sriov_dra operator/sriov_dra_kube operator/sriov_dra_operator node_agent/sriov_dra_agent tests/devcluster/sriov_dra_devcluster

# Everything: lint, types, unit, netns, integration and e2e tests.
test: setup lint typecheck
	$(PY) -m pytest

# Only the tests that need no cluster and no root.
unit: setup
	$(PY) -m pytest tests/unit

demo:
	@echo ">> make demo: setting up first (the first run builds the Kubernetes and node binaries: ~15-20 min on 2 cores)"
	@$(MAKE) --no-print-directory setup
	$(PY) -m sriov_dra_devcluster.demo $(DEMO_ARGS)

# Stops what `make demo DEMO_ARGS=--keep` left running: pods, real nodes, simulated NICs, cluster.
clean-cluster:
	-$(PY) -m sriov_dra_devcluster.demo --down
