# Ampere: a drop-in replacement for the ElectricSQL sync service image.
# Same env names (DATABASE_URL, ELECTRIC_*), same port (3000), same storage volume path.
FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked --bin ampere

FROM debian:bookworm-slim
# tzdata: `AT TIME ZONE` in where clauses reads the IANA zone files, as Postgres built
# --with-system-tzdata does; keep its release in step with the database server's.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /app ampere \
    && mkdir -p /app/persistent && chown ampere /app/persistent
COPY --from=build /src/target/release/ampere /usr/local/bin/ampere
USER ampere
WORKDIR /app
ENV ELECTRIC_PORT=3000 \
    ELECTRIC_STORAGE_DIR=/app/persistent
EXPOSE 3000
VOLUME ["/app/persistent"]
ENTRYPOINT ["/usr/local/bin/ampere"]
