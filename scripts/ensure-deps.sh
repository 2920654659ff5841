#!/usr/bin/env bash
# Install what the test suite needs, when it is missing: a Docker Engine (dockerd, its
# containerd with ctr, and the Debian docker CLI that comes with it), busybox-static (test
# images are built from it), promtool (Prometheus' own checker and server), debootstrap (the
# image test's Debian base, and the trixie rootfs its Docker 26 engines run in), and gcc with
# Python's headers (the scan's C walk, which the suite requires), and docker-registry (the
# seed pushes an image to a private registry on loopback, so that it has RepoDigests).
# Debian/Ubuntu as root only; elsewhere it says exactly what is missing and how to get it.
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
[ -x /usr/bin/docker ] || need+=(docker.io)
# docker.io pulls it in, but the bbolt reader's tests run a private containerd of their own.
[ -x /usr/bin/containerd ] && [ -x /usr/bin/ctr ] || need+=(containerd)
# Test images are FROM scratch + busybox, so it must be the static build.
[ -f /usr/share/doc/busybox-static/copyright ] && [ -x /bin/busybox ] || need+=(busybox-static)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)  # the image test's Debian base
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)  # tests/harness/registry.py
# debootstrap only recommends these: without them it would not check the Release signatures
# (the trixie build passes --keyring, so a missing keyring fails instead of skipping the check).
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
command -v gpgv >/dev/null 2>&1 || need+=(gpgv)
# The trixie engines run in `unshare -m` + chroot (tests/harness/trixie.py).
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
# `make` builds a venv with this python3; Debian's needs python3-venv for that.
"${PYTHON:-python3}" -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
# The C walk (exporter/sources/_walk.c) compiles at `pip install`; Debian's own python3 keeps
# its headers in python3-dev (a pyenv or python.org build ships them).
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
"${PYTHON:-python3}" -c 'import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' >/dev/null 2>&1 || need+=(python3-dev)

mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u | sed '/^$/d')
if [ "${#need[@]}" -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing for the tests: ${need[*]} (Debian packages)." >&2
  echo "install them as root: apt-get install -y ${need[*]}" >&2
  exit 1
fi

echo "installing test dependencies: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Install without starting services: the tests run their own private daemon, and the
# system's dockerd would add a bridge and iptables rules nobody asked for.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
