# ceph-rbd-exporter: the two commands are `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
BIN := target/release/ceph-rbd-exporter
DEMO_DIR ?= $(CURDIR)/.demo
DEMO_PORT ?= 40791
DEMO_LISTEN ?= 127.0.0.1:9289
RELEASE ?= tentacle

.PHONY: all deps build test demo demo-stop lint fmt bench soak clean deb image

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	$(CARGO) build --release --locked

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
	python3 scripts/check-layout.py

fmt:
	$(CARGO) fmt

# Unit tests (analysis, rendering, decoders on captured bytes), then the
# integration tests against a throwaway real cluster.
test: deps
	$(CARGO) build --release --locked --all-targets
	bash scripts/test.sh

# Performance at scale against the alternatives; writes BENCHMARKS.md.
bench: deps
	bash scripts/bench.sh

# An hour of churn with a mon restarted every 10 minutes, against the 3-mon,
# 4-OSD cluster of scripts/faults-test.sh; writes RELIABILITY.md. Not in CI.
soak: build
	bash scripts/soak.sh

# dist/ceph-rbd-exporter_<version>-1~<suite>_amd64.deb, built in the chroot of
# RELEASE (tentacle: Debian forky, Ceph 20; reef: Debian trixie, Ceph 18), or on
# this Debian 12 host itself (pacific: bookworm, Ceph 16).
deb: deps
	bash scripts/deb.sh "$(RELEASE)"

# The container image (Debian forky, librados 20), built with buildah, no registry.
image: deps
	bash scripts/image.sh

demo: build
	bash scripts/demo.sh "$(DEMO_DIR)" "$(DEMO_PORT)" "$(DEMO_LISTEN)"

demo-stop:
	-/usr/bin/python3 scripts/seed.py --conf "$(DEMO_DIR)/ceph.conf" --state-dir "$(DEMO_DIR)/state" stop-holders
	bash scripts/cluster.sh stop "$(DEMO_DIR)"

clean:
	$(CARGO) clean
	rm -rf .cluster-test .demo dist
