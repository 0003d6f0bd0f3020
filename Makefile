# Habits kept in a file. Every target is a plain command; `make` alone lists them.
# See README.md and docs/testing.md.

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.DEFAULT_GOAL := help
.PHONY: help run test test-pg fmt lint schema ci bench

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

## Everything CI runs: lints, tests on SQLite and PostgreSQL, the client suite (.ci/run).
ci:
	bash .ci/run

## The benchmark (heavy, about 20 minutes; never in CI). See docs/performance.md.
bench:
	bench/run
