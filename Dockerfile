# Lumen's container image: built in a Rust image with the project's own set-up (nightly +
# rust-src and bpf-linker for the kernel programs), run from a small Debian image with only the
# binary, its configs and the libraries it links. The eBPF source needs CAP_BPF and CAP_PERFMON
# (docs/PRIVILEGES.md); docker-compose.yml and deploy/kubernetes/ grant exactly those.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo xtask setup \
 && cargo build --release --locked --package lumen \
 && strip target/release/lumen

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/lumen /usr/local/bin/lumen
COPY config/ /etc/lumen/
VOLUME /var/lib/lumen
EXPOSE 9598 8443
ENTRYPOINT ["/usr/local/bin/lumen"]
CMD ["run", "--config", "/etc/lumen/elk-sidecar.toml"]
