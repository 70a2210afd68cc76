#!/usr/bin/env bash
# A Debian base image made from Debian's own packages, for machines that reach no image registry:
#   scripts/base-image.sh [NAME]            (default distdqn-base:bookworm; needs root, debootstrap, docker)
# then `docker build --build-arg BASE_IMAGE=NAME ...`. It holds Python 3.11 (bookworm's), venv, the
# CA certificates, tini, wget, g++ and useradd (what the Dockerfile's runtime stage would install), and
# `python` on PATH (python -m venv and the Dockerfile call it so). About 4 minutes.
set -euo pipefail
name=${1:-distdqn-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$name" > /dev/null 2>&1; then
    echo "base image $name exists; docker rmi it to make it again"
    exit 0
fi
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,tini,wget,g++,passwd \
    bookworm "$rootfs" "$mirror" > "$rootfs.log" 2>&1 || { tail -20 "$rootfs.log"; exit 1; }
ln -sf python3 "$rootfs/usr/bin/python"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$name"
rm -f "$rootfs.log"
echo "made $name"
