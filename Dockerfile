# ceph-rbd-exporter container image.
#   docker build -t ceph-rbd-exporter .
#   docker run -v /etc/ceph:/etc/ceph:ro -p 9289:9289 ceph-rbd-exporter
# The keyring under /etc/ceph must be readable by uid 10001 (the exporter
# never runs as root).

# Builder: Rust plus the librados headers (the C++ ones are for the shim that
# does list_watchers inside one compound read).
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends librados-dev libradospp-dev g++ pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
RUN cargo build --release --locked \
 && strip target/release/ceph-rbd-exporter

# Runtime: slim Debian with librados only (librbd is not used).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends librados2 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 exporter \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin exporter
COPY --from=build /src/target/release/ceph-rbd-exporter /usr/local/bin/ceph-rbd-exporter
USER 10001:10001
EXPOSE 9289
ENTRYPOINT ["/usr/local/bin/ceph-rbd-exporter"]
CMD ["--ceph.config=/etc/ceph/ceph.conf", "--ceph.user=rbd-exporter", "--web.listen-address=0.0.0.0:9289"]
