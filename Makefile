# pod-identity-operator. The two commands that matter:
#   make run    the operator and agents on a local control plane and Azure emulator (or $KUBECONFIG)
#   make test   installs everything a fresh Debian machine needs, then lint, typecheck, unit and e2e tests
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Node.js 24 first on PATH for every target: the system node when new enough, otherwise a cached copy.
NODE_HOME := $(shell bash scripts/ensure-node.sh)
ifeq ($(NODE_HOME),)
$(error could not provide Node.js 24: see the message above)
endif
export PATH := $(NODE_HOME)/bin:$(PATH)

.PHONY: help
help:
	@echo "make run        start the whole product locally (control plane, Azure emulator, operator, agents, demo)"
	@echo "make test       install what is missing, then lint, typecheck, unit and e2e tests"
	@echo "make bench      benchmarks; writes bench-results/report.{md,json}"
	@echo "make migrate < old.yaml > new.yaml   aad-pod-identity objects to PodIdentities (ARGS=\"--mode Federated\")"
	@echo "make lint | typecheck | test-unit | test-e2e | build | deps | system-deps | clean"

# npm's output goes to stderr so targets that write to stdout (make migrate) stay clean. npm ci empties
# node_modules first, through a symlink too: a node_modules that links to a shared install is left alone.
node_modules/.package-lock.json: package.json package-lock.json
	@if [ -L node_modules ]; then echo "node_modules links to a shared install ($$(readlink node_modules)): not running npm ci through it" >&2; \
	else npm ci --no-audit --no-fund >&2; fi

.PHONY: deps
deps: node_modules/.package-lock.json

# OS packages for the network-namespace tests and the control-plane binaries (etcd, kube-apiserver).
.PHONY: system-deps
system-deps:
	@bash scripts/install-system-deps.sh
	@bash dev/local-cluster/controlplane/install-binaries.sh >/dev/null

.PHONY: build
build: deps
	npx tsc -p tsconfig.build.json

.PHONY: lint
lint: deps
	npx eslint .

.PHONY: typecheck
typecheck: deps
	npx tsc -p tsconfig.json --noEmit

.PHONY: test-unit
test-unit: deps
	node --import tsx --test --test-reporter=spec 'lib/**/*_test.ts' 'operator/**/*_test.ts' 'agent/**/*_test.ts' 'e2e/*_test.ts'

.PHONY: test-e2e
test-e2e: deps
	node --import tsx --test --test-reporter=spec --test-concurrency=1 --test-timeout=600000 \
	  --test-global-setup=e2e/testing/global-setup.mjs 'e2e/**/*_e2e.ts' 'dev/**/*_e2e.ts'

.PHONY: test
test: deps system-deps
	@bash scripts/test-all.sh

.PHONY: run
run: deps system-deps
	node --import tsx dev/local-cluster/main.ts

.PHONY: bench
bench: deps system-deps
	node --import tsx dev/bench/main.ts --update-readme README.md

.PHONY: migrate
migrate: deps ## aad-pod-identity YAML on stdin → PodIdentity YAML on stdout; ARGS="--mode Federated"
	@node --import tsx operator/migrate/main.ts $(ARGS)

.PHONY: clean
clean:
	rm -rf dist bench-results
