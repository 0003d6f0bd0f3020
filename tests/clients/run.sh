#!/usr/bin/env bash
# The client suite: real GraphQL clients, the GraphQL-over-HTTP audit and GraphiQL in Chromium,
# against the release binary.
#
# It builds nothing. Before it, from the repository root:
#   cargo build --release                          # target/release/phone-auth
#   npm ci --prefix graphiql-assets                # optional: GraphiQL served offline (else CDN)
#   npm ci --prefix tests/clients
#
# Usage: tests/clients/run.sh [test files...]    (default: every *.test.js here)
#
# It starts target/release/phone-auth on a free port with a fresh SQLite database in a temporary
# directory and OTP_EXPOSE on, waits for /readyz, runs `node --test`, and stops the server on exit.
# PHONE_AUTH_BIN overrides the binary (default: release/phone-auth under $CARGO_TARGET_DIR or
# target/). ARTIFACTS_DIR (default target/ci-artifacts) receives the server log, the TAP report
# (clients.tap) and the GraphiQL screenshot.
# The browser test needs /usr/bin/chromium (Debian's `chromium`); without it, it is skipped,
# unless REQUIRE_BROWSER=1 (CI sets it), when it fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# Where cargo put the binary: CARGO_TARGET_DIR (relative to the caller's directory, as cargo
# reads it) or the repository's target/.
target_dir="${CARGO_TARGET_DIR:-$root/target}"
[[ "$target_dir" == /* ]] || target_dir="$PWD/$target_dir"
bin="${PHONE_AUTH_BIN:-$target_dir/release/phone-auth}"
artifacts="${ARTIFACTS_DIR:-$root/target/ci-artifacts}"

if [[ ! -x "$bin" ]]; then
    echo "run.sh: $bin is missing: run 'cargo build --release' first" >&2
    exit 2
fi
if [[ ! -d "$here/node_modules" ]]; then
    echo "run.sh: $here/node_modules is missing: run 'npm ci --prefix tests/clients' first" >&2
    exit 2
fi
mkdir -p "$artifacts"
artifacts="$(cd "$artifacts" && pwd)"

work="$(mktemp -d "${TMPDIR:-/tmp}/phone-auth-clients.XXXXXX")"
server_pid=""
stop_server() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        # SIGTERM: the server finishes in-flight requests and exits; give it a few seconds.
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    server_pid=""
}
cleanup() {
    local status=$?
    stop_server
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free port: bind port 0 and report what the kernel chose. (Another process could take it
# before the server binds; the readiness wait below would then fail loudly, not hang.)
port="$(node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });')"
url="http://127.0.0.1:$port"

# Development settings, as a developer runs it, with codes exposed (the flow reads devCode) and
# no simulated SMS delay. Rate limits stay at their defaults: the suite stays under them.
env -i PATH="$PATH" HOME="${HOME:-/tmp}" \
    APP_ENV=development \
    LISTEN_ADDR="127.0.0.1:$port" \
    DATABASE_URL="sqlite://$work/phone-auth.db?mode=rwc" \
    JWT_SECRET="clients-suite-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" \
    OTP_EXPOSE=true \
    SMS_DELAY_MS=0 \
    ADMIN_PHONES=+79990000001 \
    RUST_LOG=warn,phone_auth=info \
    "$bin" >"$artifacts/server.log" 2>&1 &
server_pid=$!

ready=""
for _ in $(seq 1 100); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "run.sh: the server exited during start-up; its log:" >&2
        cat "$artifacts/server.log" >&2
        exit 1
    fi
    if curl -fsS -o /dev/null --max-time 2 "$url/readyz" 2>/dev/null; then
        ready=1
        break
    fi
    sleep 0.1
done
if [[ -z "$ready" ]]; then
    echo "run.sh: $url/readyz did not answer 200 within 10 s; the server log:" >&2
    cat "$artifacts/server.log" >&2
    exit 1
fi
echo "run.sh: phone-auth ($bin) is ready at $url"

cd "$here"
if [[ $# -gt 0 ]]; then
    tests=("$@")
else
    tests=(*.test.js)
fi

# Spec output for people, TAP into a file for machines; its "# pass N" / "# fail N" lines are
# repeated at the end, where .ci/run adds them to its totals.
status=0
PHONE_AUTH_URL="$url" ARTIFACTS_DIR="$artifacts" PHONE_AUTH_SERVER_LOG="$artifacts/server.log" \
    PHONE_AUTH_BIN="$bin" \
    node --test --test-concurrency=1 --test-timeout=180000 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$artifacts/clients.tap" \
    "${tests[@]}" || status=$?
stop_server
echo "run.sh: server log: $artifacts/server.log; TAP report: $artifacts/clients.tap"
grep -E '^# (tests|pass|fail|skipped|todo) [0-9]+$' "$artifacts/clients.tap" || true
exit "$status"
