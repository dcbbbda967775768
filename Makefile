# DeploymentLite: the usual entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help demo test unit-test crd crd-check testenv-build testenv-up testenv-down build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

demo: ## the main job: on the local control plane (or $KUBECONFIG's cluster), install and show DeploymentLite at work
	hack/demo

test: ## every test: unit tests, then cluster tests against the local control plane (or $KUBECONFIG's cluster)
	hack/test

unit-test: ## unit tests only (no cluster)
	cargo test --lib --bins

build: ## the release binaries
	cargo build --release --bins

crd: ## regenerate crd/deploymentlite.yaml from the Rust types
	cargo run --quiet --bin crdgen > crd/deploymentlite.yaml

testenv-build: ## build (or find cached) etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, helm
	hack/testenv build

testenv-up: ## start the local control plane (idempotent)
	hack/testenv up

testenv-down: ## stop the local control plane and remove its data
	hack/testenv down
