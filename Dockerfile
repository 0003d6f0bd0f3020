# syntax=docker/dockerfile:1
#
# phone-auth: a release build in the Rust image, run from a slim Debian image as a non-root user.
# GraphiQL's browser bundles come from npm (graphiql-assets/package-lock.json) in a Node stage and
# are embedded in the binary by build.rs, so the image serves GraphiQL at / with no internet access.
#   docker build -t phone-auth .
#   docker run --rm -p 8000:8000 -e JWT_SECRET="$(openssl rand -base64 48)" \
#     -e DATABASE_URL=postgres://... -e SMS_PROVIDER=webhook -e SMS_WEBHOOK_URL=... \
#     -e SMS_WEBHOOK_SECRET=... phone-auth
# The image runs in production mode (APP_ENV=production): a `docker run` that forgets the secret
# or the SMS provider refuses to start (exit 2, naming the variable) instead of serving codes in
# responses. docker-compose.yml is a local development setup that sets APP_ENV=development.

FROM node:20-bookworm-slim AS graphiql-assets
WORKDIR /assets
COPY graphiql-assets/package.json graphiql-assets/package-lock.json ./
# --ignore-scripts: only files are needed from these packages, nothing of theirs runs.
RUN npm ci --no-audit --no-fund --ignore-scripts

FROM rust:1-bookworm AS builder
WORKDIR /build
# The whole context (.dockerignore leaves out target/, node_modules/, .git, databases): every
# workspace member listed in Cargo.toml must be present for cargo to load the workspace.
COPY . .
COPY --from=graphiql-assets /assets/node_modules ./graphiql-assets/node_modules
# Named explicitly, so a missing bundle fails the build instead of falling back to the CDN page.
ENV GRAPHIQL_ASSETS_DIR=/build/graphiql-assets/node_modules
# Cache mounts keep the registry and build artefacts between builds; the binary is copied out
# of the cached target directory because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked --bin phone-auth \
    && install -m 0755 target/release/phone-auth /usr/local/bin/phone-auth

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 phone-auth \
    && useradd --system --uid 10001 --gid phone-auth --home-dir /app --shell /usr/sbin/nologin phone-auth \
    && mkdir -p /app \
    && chown phone-auth:phone-auth /app
COPY --from=builder /usr/local/bin/phone-auth /usr/local/bin/phone-auth

# /app is the working directory, so the default SQLite file (phone-auth.db) lands there.
WORKDIR /app
USER phone-auth
# Production unless told otherwise: the start-up refusals guard every deployment of the image.
ENV APP_ENV=production \
    LISTEN_ADDR=0.0.0.0:8000 \
    RUST_LOG=info
EXPOSE 8000

# /healthz answers 200 while the process is up. No curl in the slim image: bash's /dev/tcp.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${LISTEN_ADDR##*:} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

ENTRYPOINT ["/usr/local/bin/phone-auth"]
