# syntax=docker/dockerfile:1
# The Tasklane server: a release build, run as an unprivileged user on a slim Debian.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Symbols stripped in the image (27 MB to 22 MB); the repository's release
# profile keeps them, for profiling the benchmarks.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tasklane-server \
 && cp target/release/tasklane-server /usr/local/bin/tasklane-server

FROM debian:bookworm-slim AS runtime
# ca-certificates: for a TLS connection to a managed PostgreSQL or Redis.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/tasklane --create-home tasklane
COPY --from=build /usr/local/bin/tasklane-server /usr/local/bin/tasklane-server
USER tasklane
WORKDIR /var/lib/tasklane
# Without DATABASE_URL the server keeps its SQLite database (tasklane.db) and generated signing
# key (tasklane.secret) here, in the working directory. A volume keeps them when the container
# is removed. The directory is the tasklane user's home, created above and owned by it, so a new
# named volume starts out owned by it too; a bind-mounted directory must be writable by uid 10001.
VOLUME /var/lib/tasklane
ENV ROCKET_ADDRESS=0.0.0.0 \
    ROCKET_PORT=8000
EXPOSE 8000
# The binary probes its own /health: no curl in the image.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["tasklane-server", "healthcheck"]
ENTRYPOINT ["tasklane-server"]
