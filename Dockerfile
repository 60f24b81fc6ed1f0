# syntax=docker/dockerfile:1
#
# accessbot's container image: built in the Rust image, run in Debian slim as
# an unprivileged user, with the runbooks in /etc/accessbot/runbooks.
#
#   docker build -t accessbot .
#   docker run --env-file accessbot.env -p 3000:3000 accessbot
#
# Documentation: no container engine was available where this file was
# written, so it has been linted (hadolint) but never built. See README.md.

# ---- build ----
FROM rust:1.95-bookworm AS build
WORKDIR /src

# Dependencies first: this layer is reused until Cargo.toml, Cargo.lock or
# the bench list changes (cargo reads every declared target, hence benches/).
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo fetch --locked

# The schema is embedded at compile time (sqlx::migrate!), so migrations/ is
# part of the build. The target directory is a cache mount, hence the copy.
COPY src ./src
COPY migrations ./migrations
# The playground embeds its runbooks (include_str!), billing-admin from runbooks/.
COPY playground ./playground
COPY runbooks ./runbooks
RUN --mount=type=cache,target=/src/target \
    cargo build --release --locked --offline --bin accessbot \
    && install -m 0755 target/release/accessbot /usr/local/bin/accessbot

# ---- run ----
FROM debian:bookworm-slim

# ca-certificates and curl for the shipped scripts that call HTTPS APIs
# (runbooks/scripts/rest-role.sh), util-linux for their flock, tini so that
# processes a provider program leaves behind are reaped (accessbot is not an
# init).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl util-linux tini \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/accessbot \
        --create-home --shell /usr/sbin/nologin accessbot

COPY --from=build /usr/local/bin/accessbot /usr/local/bin/accessbot
# Replace with your own runbooks: mount a directory over this one, or build an
# image FROM this one that copies them in. `accessbot check` runs at build
# time so a broken runbook fails the build, not the start.
COPY runbooks /etc/accessbot/runbooks
RUN accessbot check --runbooks /etc/accessbot/runbooks

# sled's data directory (one machine) and the demo scripts' state; with
# ACCESSBOT_DATABASE_URL set the state is in PostgreSQL instead.
ENV ACCESSBOT_LISTEN=0.0.0.0:3000 \
    ACCESSBOT_DATA_DIR=/var/lib/accessbot/data \
    ACCESSBOT_RUNBOOKS=/etc/accessbot/runbooks \
    ACCESSBOT_STATE_DIR=/var/lib/accessbot/state
VOLUME ["/var/lib/accessbot"]

# Numeric, so a platform can tell it is not root without reading /etc/passwd
# (Kubernetes' runAsNonRoot).
USER 10001:10001
WORKDIR /var/lib/accessbot
EXPOSE 3000

# Liveness: /healthz answers 200 while the process serves, even when it
# reports `degraded` (restarting fixes none of that). Load balancers use
# /readyz instead (deploy/compose.yaml, deploy/Caddyfile).
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:3000/healthz"]

# SIGTERM lets running grants and revokes finish (up to 8 s): give `docker
# stop` more than that (compose.yaml sets stop_grace_period: 15s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "accessbot"]
CMD ["serve"]
