#!/usr/bin/env bash
# Creates the RBD objects the captures in this directory were taken from.
# Run against a throwaway cluster: CEPH_CONF=... bash setup.sh
set -euxo pipefail
ceph osd pool create rbd 8
rbd pool init rbd
rbd create rbd/img1 --size 1G
rbd snap create rbd/img1@s1
rbd snap protect rbd/img1@s1
rbd snap create rbd/img1@s2
rbd clone --rbd-default-clone-format 2 rbd/img1@s1 rbd/clone2
rbd clone --rbd-default-clone-format 1 rbd/img1@s1 rbd/clone1
rbd create rbd/parent2 --size 256M
rbd snap create rbd/parent2@ps
rbd clone --rbd-default-clone-format 2 rbd/parent2@ps rbd/clone_trashsnap
rbd snap rm rbd/parent2@ps            # moves the snapshot to the trash namespace
rbd create rbd/img_trash --size 64M
rbd trash mv rbd/img_trash
rbd namespace create rbd/ns1
rbd create rbd/ns1/nsparent --size 128M
rbd snap create rbd/ns1/nsparent@nss
rbd snap protect rbd/ns1/nsparent@nss
rbd clone --rbd-default-clone-format 2 rbd/ns1/nsparent@nss rbd/nschild
rbd clone --rbd-default-clone-format 2 rbd/img1@s1 rbd/ns1/nsclone
rbd create rbd/locked --size 32M
rbd lock add rbd/locked mycookie
rbd create rbd/shared --size 32M
rbd lock add --shared tag1 rbd/shared c1
rbd lock add --shared tag1 rbd/shared c2
rbd create rbd/excl --size 64M
rbd resize rbd/img1 --size 2G          # head 2 GiB, snapshot s1 1 GiB
rbd create rbd/flagged --size 32M
rbd feature disable rbd/flagged fast-diff object-map
rbd feature enable rbd/flagged object-map   # leaves "object map invalid, fast diff invalid"
