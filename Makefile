# Habits kept in a file. Every target is a plain command; `make` alone lists them.
# See README.md and docs/testing.md.

.DEFAULT_GOAL := help
.PHONY: help run test test-pg postgres postgres-down fmt lint schema ci bench mutants mutants-diff

## List the targets (the default).
help:
	@echo 'make <target>:'
	@awk '/^## /{doc=substr($$0,4); next} /^[a-z][a-z-]*:/{if(doc!=""){sub(/:.*/,"",$$1); printf "  %-13s %s\n",$$1,doc}; doc=""; next} {doc=""}' $(MAKEFILE_LIST)

## The server with its defaults: GraphiQL at http://127.0.0.1:8000/, SQLite file phone-auth.db.
run:
	cargo run --release

## The test suite on SQLite (each test gets its own in-memory database).
test:
	env -u TEST_DATABASE_URL cargo test --workspace

## The same suite on PostgreSQL: TEST_DATABASE_URL if it answers, else what `make postgres` finds.
test-pg:
	url="$$(scripts/postgres up)" && TEST_DATABASE_URL="$$url" cargo test --workspace

## Find or start a PostgreSQL for the tests and print its URL (scripts/postgres, as CI does).
postgres:
	@scripts/postgres up

## Stop and delete the throwaway PostgreSQL cluster `make postgres` made, if it made one.
postgres-down:
	scripts/postgres down

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
## one of them (0 .. MUTANTS_SHARDS-1); machines or CI jobs can take one each. Debug info is
## off for these builds: linking it was most of each mutant's time.
MUTANTS_SHARDS ?= 8
SHARD ?= 0
MUTANTS_BASE ?= main
mutants:
	CARGO_PROFILE_DEV_DEBUG=0 cargo mutants --shard $(SHARD)/$(MUTANTS_SHARDS) --sharding round-robin --timeout 120 \
		--output target/mutants-$(SHARD)

## Only the mutants on lines this branch changed against MUTANTS_BASE (minutes, not hours):
## run it before calling a new or changed rule done, and put the result in the note.
mutants-diff:
	git diff $(MUTANTS_BASE)... > target/mutants.diff
	CARGO_PROFILE_DEV_DEBUG=0 cargo mutants --in-diff target/mutants.diff --timeout 120 --output target/mutants-diff

## Everything CI runs (.ci/run: the lint, test and test-pg targets above, then the client suite).
ci:
	CI=true bash .ci/run

## The benchmark (heavy, about 20 minutes; never in CI). See docs/performance.md.
bench:
	bench/run
