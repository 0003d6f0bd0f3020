# Habits kept in a file. Every target is a plain command; `make` alone lists them.
# See README.md and docs/testing.md.

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.DEFAULT_GOAL := help
.PHONY: help run test test-pg fmt lint schema ci bench mutants mutants-diff

## List the targets (the default).
help:
	@echo 'make <target>:'
	@awk '/^## /{doc=substr($$0,4); next} /^[a-z][a-z-]*:/{if(doc!=""){sub(/:.*/,"",$$1); printf "  %-9s %s\n",$$1,doc}; doc=""; next} {doc=""}' $(MAKEFILE_LIST)

## The server with its defaults: GraphiQL at http://127.0.0.1:8000/, SQLite file phone-auth.db.
run:
	cargo run --release

## The test suite on SQLite (each test gets its own in-memory database).
test:
	cargo test --workspace

## The same suite on PostgreSQL (TEST_DATABASE_URL, default the local server, user postgres).
test-pg:
	TEST_DATABASE_URL='$(TEST_DATABASE_URL)' cargo test --workspace

## Format the whole workspace.
fmt:
	cargo fmt --all

## The lints CI runs: formatting check, clippy with warnings as errors.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## Rewrite schema.graphql from the code.
schema:
	UPDATE_SCHEMA=1 cargo test --test api schema_file

## Mutation testing with cargo-mutants (`cargo install cargo-mutants --locked`; settings in
## .cargo/mutants.toml, guide and latest score in docs/testing-mutants.md). The whole crate is
## hours on one machine, so it is cut into MUTANTS_SHARDS shards: `make mutants SHARD=3` runs
## one of them (0 .. MUTANTS_SHARDS-1); machines or CI jobs can take one each.
MUTANTS_SHARDS ?= 8
SHARD ?= 0
MUTANTS_BASE ?= main
mutants:
	cargo mutants --shard $(SHARD)/$(MUTANTS_SHARDS) --sharding round-robin --timeout 120 \
		--output target/mutants-$(SHARD)

## Only the mutants on lines this branch changed against MUTANTS_BASE (minutes, not hours):
## run it before calling a new or changed rule done, and put the result in the note.
mutants-diff:
	git diff $(MUTANTS_BASE)... > target/mutants.diff
	cargo mutants --in-diff target/mutants.diff --timeout 120 --output target/mutants-diff

## Everything CI runs: lints, tests on SQLite and PostgreSQL, the client suite (.ci/run).
ci:
	CI=true bash .ci/run

## The benchmark (heavy, about 20 minutes; never in CI). See docs/performance.md.
bench:
	bench/run
