# Habits kept in a file. Every target is a plain cargo command; see README.md.

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.PHONY: fmt lint test test-pg run schema ci mutants mutants-diff

## Format the whole workspace.
fmt:
	cargo fmt --all

## The lints CI runs (formatting check and clippy with warnings as errors).
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## The test suite on SQLite (each test gets its own in-memory database).
test:
	cargo test --workspace

## The same suite on PostgreSQL: each test creates its own test_<uuid> database on the server
## named by TEST_DATABASE_URL (default: the local server, user postgres, no password).
test-pg:
	TEST_DATABASE_URL='$(TEST_DATABASE_URL)' cargo test --workspace

## The server with its defaults: GraphiQL at http://127.0.0.1:8000/, SQLite file phone-auth.db.
run:
	cargo run --release

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

## Everything CI runs: fmt, clippy, tests on SQLite and on PostgreSQL.
ci:
	bash .ci/run

## The benchmark (heavy; never in CI): builds release binaries, starts the servers on SQLite
## and PostgreSQL, seeds, loads them with wrk; writes bench/results/latest.json. See README.md.
.PHONY: bench
bench:
	bench/run
