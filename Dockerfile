# oidc-authz container image.
#   docker build -t ghcr.io/example/oidc-authz:0.1.0 .
#
# Build: rust:1-bookworm (glibc 2.36). Runtime: distroless cc-debian12 (same glibc, plus
# libgcc_s and the CA bundle used for the IdP's TLS); aws-lc is linked statically, so
# nothing else is needed. Dependencies are compiled in their own cached layer
# (cargo-chef): editing src/ does not rebuild them.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS chef
# protoc for build.rs (the project's own gRPC API in proto/); harmless if unused.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# Reduce the project to its dependency graph (Cargo.toml + Cargo.lock + target skeleton).
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Dependency layer: rebuilt only when Cargo.toml / Cargo.lock change.
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin oidc-authz \
 && install -D -m 0755 target/release/oidc-authz /out/oidc-authz

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="oidc-authz" \
      org.opencontainers.image.description="Envoy / Istio ext_authz server for OIDC bearer tokens" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/oidc-authz /usr/local/bin/oidc-authz
# The nonroot user of the distroless image; Kubernetes runs it with the same UID.
USER 65532:65532
# 9001: gRPC ext_authz + grpc.health.v1   9002: HTTP /metrics /healthz /readyz
EXPOSE 9001 9002
ENTRYPOINT ["/usr/local/bin/oidc-authz"]
CMD ["serve", "--config", "/etc/oidc-authz/config.yaml"]
