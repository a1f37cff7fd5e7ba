# syntax=docker/dockerfile:1
#
# Ampere: a drop-in replacement for the ElectricSQL sync service image. Same interface as
# Electric's: configuration by environment (DATABASE_URL, ELECTRIC_*; docs/configuration.md),
# HTTP on port 3000, persistent state in one volume.
#
#   docker build -t ampere .
#   docker run -e DATABASE_URL=postgresql://... -e ELECTRIC_SECRET=... -p 3000:3000 \
#     -v ampere-data:/app/persistent ampere
#
# The container has no Postgres server, so the dev mode (no DATABASE_URL) is not available in
# it: DATABASE_URL is required. compose.yaml runs Postgres, Ampere and nginx together.

# --- build -----------------------------------------------------------------------------------
# The toolchain CI builds and lints with (Cargo.toml's rust-version and every dependency's are
# at or below it; tests/e2e/compose_stack.test.mjs checks that). Debian 12 like the runtime
# image, so the binary links against the glibc it will run with.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Everything cargo reads to build the binary: the manifest and lockfile, the patched
# pgwire-replication the manifest's [patch.crates-io] points at, the sources, and the bench
# files (their targets are declared without a path, so cargo looks for them when it parses the
# manifest, even to build one binary; the integration test's explicit path is not checked).
# tests/e2e/compose_stack.test.mjs runs `cargo fetch --locked --offline` on exactly these.
COPY Cargo.toml Cargo.lock ./
COPY vendor ./vendor
COPY src ./src
COPY benches ./benches
# The registry and target dir are BuildKit cache mounts: a rebuild after a source change
# recompiles the crate, not its ~300 dependencies. The binary is copied out of the cache mount
# (which is not part of the image layer).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ampere \
    && install -D -m 0755 target/release/ampere /out/usr/local/bin/ampere \
    && mkdir -p /out/app/persistent

# --- runtime ---------------------------------------------------------------------------------
# distroless/cc: glibc, libgcc_s (panic unwinding), tzdata and CA certificates, no shell and no
# package manager: everything the binary needs (TLS is rustls with compiled-in roots, so no
# OpenSSL) and nothing an attacker could use. ~25 MB before the binary, against ~80 MB for
# debian:bookworm-slim plus tzdata. tzdata matters: `AT TIME ZONE` in where clauses reads the
# IANA zone files the way a Postgres built --with-system-tzdata does, so keep this image's
# Debian release (and its tzdata updates) in step with the database server's.
# The :nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/usr/local/bin/ampere /usr/local/bin/ampere
# The storage directory, owned by the runtime user: a named volume mounted here starts with
# this ownership, so the non-root process can write to it.
COPY --from=build --chown=65532:65532 /out/app /app
USER 65532:65532
WORKDIR /app
ENV ELECTRIC_PORT=3000 \
    ELECTRIC_STORAGE_DIR=/app/persistent
EXPOSE 3000
VOLUME ["/app/persistent"]
# `ampere health` asks the running server's /v1/health and exits 0 only for 200 "active".
# `starting` (connecting, restoring shapes) and `waiting` (another instance holds the
# replication lock: this one is a standby) are 202: not healthy, so a load balancer keeps
# traffic away, but the process is fine. start-period gives a large storage dir time to
# restore before failures count; snapshots of new shapes run per request and never make the
# server unhealthy. Docker itself does not restart unhealthy containers.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5m --retries=6 \
    CMD ["ampere", "health"]
ENTRYPOINT ["/usr/local/bin/ampere"]
