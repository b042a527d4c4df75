# LatchGate — `make up` starts the gate, `make test` runs every test.
SHELL := /bin/bash
CARGO ?= cargo
GATE_DIR ?= $(CURDIR)/.gate
CONFIG ?= $(GATE_DIR)/latchgate.toml

.PHONY: up test build build-release deps deps-test fmt lint providers providers-check bench clean

## Start the gate in embedded mode (SQLite + embedded Rego); Ctrl-C stops it.
up: deps build-release
	mkdir -p $(GATE_DIR)
	LATCHGATE_DATA_DIR=$(CURDIR) ./target/release/latchgate up --config $(CONFIG)

## Install test dependencies, build once, run all checks and tests.
test: deps-test
	$(CARGO) fmt --all -- --check
	$(CARGO) build --locked --workspace --all-targets
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) test --locked --workspace --no-fail-fast

deps:
	./scripts/install-deps.sh build

deps-test:
	./scripts/install-deps.sh test

build: deps
	$(CARGO) build --locked --workspace

build-release: deps
	$(CARGO) build --locked --release --workspace --bins

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
