# LatchGate — `make up` starts the gate, `make test` runs every test.
SHELL := /bin/bash
CARGO ?= cargo
GATE_DIR ?= $(CURDIR)/.gate
CONFIG ?= $(GATE_DIR)/latchgate.toml
# 1 = the provider toolchain (rustc-web, cargo-web, rust-web-src, lld) is already installed.
SKIP_APT ?= 0

.PHONY: up test reachable build build-release deps deps-test fmt lint providers providers-check providers-test bench clean

## Start the gate in embedded mode (SQLite + embedded Rego); Ctrl-C stops it.
up: reachable deps build-release
	mkdir -p $(GATE_DIR)
	LATCHGATE_DATA_DIR=$(CURDIR) ./target/release/latchgate up --config $(CONFIG)

## clippy lints the workspace crates while the one build compiles them (clippy-driver
## as the workspace compiler, which is how `cargo clippy` works), so `make test` does
## not spend a second check-only pass over every dependency. Same lints and
## -D warnings as `make lint`; the test step keeps the same wrapper so nothing rebuilds.
CLIPPY_DRIVER := $(shell command -v clippy-driver 2>/dev/null)
LINTED := RUSTC_WORKSPACE_WRAPPER=$(CLIPPY_DRIVER) CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__

## Install test dependencies, build once, run all checks and tests.
test: reachable deps-test
	@[ -n "$(CLIPPY_DRIVER)" ] || { echo "make test: clippy-driver not found (rustup component add clippy)" >&2; exit 1; }
	$(MAKE) --no-print-directory providers-check SKIP_APT=1
	$(MAKE) --no-print-directory providers-test
	$(CARGO) fmt --all -- --check
	$(LINTED) $(CARGO) build --locked --workspace --all-targets
	$(LINTED) $(CARGO) test --locked --workspace --no-fail-fast

## As root the gate's processes run as their own users: they must reach this checkout.
reachable:
	@./scripts/check-reachable.sh $(CURDIR)

deps:
	./scripts/install-deps.sh build

deps-test:
	./scripts/install-deps.sh test

build: deps
	$(CARGO) build --locked --workspace

## Production binaries only: naming the packages keeps test-only features
## (latchgate-core/escape-probe, enabled by the test crate) out of them.
RELEASE_PACKAGES := -p latchgate -p latchgate-front -p latchgate-broker -p latchgate-executor -p latchgate-signer

build-release: deps
	$(CARGO) build --locked --release $(RELEASE_PACKAGES)

## Rebuild every provider reproducibly (Debian rustc-web, -Zbuild-std) and pin it:
## builtin -> providers/dist + digests.txt, test-only fixtures -> providers/dist-test + digests-test.txt.
providers:
	SKIP_APT=$(SKIP_APT) ./scripts/providers.sh build

## Rebuild into a temp dir; fail, naming the file, if a module or a manifest pin differs from the committed one.
providers-check:
	SKIP_APT=$(SKIP_APT) ./scripts/providers.sh check

## Unit tests of the provider crates (host build; the guest build is `make providers`).
providers-test:
	$(CARGO) test --locked --manifest-path providers/Cargo.toml -p http_api -p fs

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

## Gate overhead under load: release binaries, embedded mode, lease + execute at
## concurrency 1, 8 and 64 against a loopback target. JSON report in target/bench.json.
bench: deps-test
	$(CARGO) build --locked --release $(RELEASE_PACKAGES) -p latchgate-bench
	./target/release/latchgate-bench $(BENCH_ARGS) | tee target/bench.json

clean:
	$(CARGO) clean
