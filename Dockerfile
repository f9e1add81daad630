# syntax=docker/dockerfile:1
# One image with both binaries:
#   natrix-broker      the entrypoint (NatsCluster pods run it like nats-server: `-c /etc/nats/nats.conf`)
#   natrix-controller  the operator (the Helm chart's Deployment sets `command: [natrix-controller]`)
#
#   docker build -t ghcr.io/natrix-io/natrix:0.1.0 .

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src

# 1. Dependencies only: the manifests with stub targets, so this layer is rebuilt only
#    when Cargo.toml/Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
COPY broker/Cargo.toml broker/
COPY controller/Cargo.toml controller/
COPY jwt/Cargo.toml jwt/
COPY e2e/Cargo.toml e2e/
RUN set -eux; \
    mkdir -p broker/src broker/benches controller/src/bin jwt/src e2e/src/bin; \
    for f in broker/src/lib.rs controller/src/lib.rs jwt/src/lib.rs e2e/src/lib.rs; do : > "$f"; done; \
    for f in broker/src/main.rs controller/src/main.rs controller/src/bin/crdgen.rs \
             e2e/src/bin/natrix-bench.rs broker/benches/sublist.rs broker/benches/parser.rs; do \
        echo 'fn main() {}' > "$f"; \
    done; \
    cargo build --release --locked --bin natrix-broker --bin natrix-controller; \
    rm -rf broker/src controller/src jwt/src e2e/src broker/benches

# 2. The sources. COPY keeps the files' mtimes, which can be older than the stubs:
#    touch them so cargo rebuilds the workspace crates.
COPY broker/src broker/src
COPY broker/benches broker/benches
COPY controller/src controller/src
COPY jwt/src jwt/src
COPY e2e/src e2e/src
RUN set -eux; \
    find broker controller jwt e2e -name '*.rs' -exec touch {} +; \
    cargo build --release --locked --bin natrix-broker --bin natrix-controller; \
    install -D -m 0755 target/release/natrix-broker /out/natrix-broker; \
    install -D -m 0755 target/release/natrix-controller /out/natrix-controller

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="natrix" \
      org.opencontainers.image.description="Natrix: a NATS-compatible broker (natrix-broker) and its Kubernetes operator (natrix-controller)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/natrix-io/natrix"

# hadolint ignore=DL3008
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 1000 natrix; \
    useradd --system --uid 1000 --gid natrix --home-dir /data --no-create-home --shell /usr/sbin/nologin natrix; \
    mkdir -p /data /etc/nats /var/run/nats; \
    chown natrix:natrix /data /var/run/nats

COPY --from=builder /out/natrix-broker /out/natrix-controller /usr/local/bin/

# Same uid as the NatsCluster pods and the chart's operator Deployment (runAsUser 1000).
USER 1000:1000
WORKDIR /data
# client, cluster (routes), HTTP monitoring
EXPOSE 4222 6222 8222
ENTRYPOINT ["natrix-broker"]
