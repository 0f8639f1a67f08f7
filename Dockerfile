# ceph-rbd-exporter container image.
#   docker build -t ceph-rbd-exporter .        (or: make image, with buildah; see scripts/image.sh)
#   docker run -v /etc/ceph:/etc/ceph:ro -p 9289:9289 ceph-rbd-exporter
# The keyring under /etc/ceph must be readable by uid 10001 (the exporter
# never runs as root).
#
# Why Debian forky: Ceph 20 (Tentacle) clusters issue aes256k cephx keys by
# default and librados before 20 cannot read them, so the image must carry
# librados >= 20. Debian 14 "forky" has Ceph 20.2 (and the Rust toolchain to
# build with), and it is the very librados `make test` runs the exporter with
# (scripts/chroot.sh tentacle, scripts/artifacts-test.sh).
#
# Why not Ceph's own quay.io/ceph/ceph image, the base ceph-csi uses: it is a
# ~1.3 GB CentOS Stream image holding every Ceph daemon and tool, and the
# exporter needs librados alone (it never loads librbd). Rook users who want
# the exact Ceph build of their cluster can still rebase onto it, see below.
#
# Another base: both stages take DEBIAN_IMAGE, any Debian or Ubuntu image whose
# librados2 is >= 20 (pin a digest for reproducible builds):
#   docker build --build-arg DEBIAN_IMAGE=debian:forky-slim@sha256:<digest> .
# A base with librados from elsewhere (e.g. quay.io/ceph/ceph:v20 for Rook) needs
# its own package commands: build in a builder of that same distribution with
# its librados headers (librados-devel; the shim uses librados' C++ API, whose
# ABI follows the compiler and the Ceph build), and keep the runtime stage's
# useradd, COPY, USER, EXPOSE, ENTRYPOINT and CMD.
ARG DEBIAN_IMAGE=debian:forky-slim

# Builder: Debian's Rust plus the librados headers (the C++ ones are for the
# shim that does list_watchers inside one compound read).
FROM ${DEBIAN_IMAGE} AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      cargo rustc librados-dev libradospp-dev g++ pkg-config ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin ceph-rbd-exporter \
 && strip target/release/ceph-rbd-exporter

# Runtime: slim Debian with librados only (librbd is not used).
FROM ${DEBIAN_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
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
