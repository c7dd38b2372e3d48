#!/bin/bash
# Builds a Debian minbase root filesystem with debootstrap and writes it as a gzip rootfs tarball,
# the larger test image of the benchmarks (bench/images.ts) and of manual checks:
#
#   scripts/make-debian-image.sh OUT.tar.gz [SUITE] [MIRROR]
#   pivot import OUT.tar.gz localhost/debian:bookworm
#   pivot run --rm localhost/debian:bookworm cat /etc/debian_version
#
# Needs root, the debootstrap package and the Debian mirror (default: the first deb.debian.org-style
# URI of this machine's APT sources, else http://deb.debian.org/debian). It takes a minute or two,
# so it is not part of `bun test` (the tests use busybox images built offline); the tarball is
# cached: an existing OUT is kept unless FORCE=1.
set -euo pipefail
out=${1:?usage: make-debian-image.sh OUT.tar.gz [SUITE] [MIRROR]}
suite=${2:-bookworm}
mirror=${3:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
    awk '{print $2}' | head -1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi
if [ -s "$out" ] && [ "${FORCE:-0}" != 1 ]; then
  echo "make-debian-image: $out exists (FORCE=1 rebuilds)" >&2
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "make-debian-image: run me as root (debootstrap makes device nodes and chowns)" >&2
  exit 1
fi
command -v debootstrap >/dev/null || {
  echo "make-debian-image: debootstrap is missing: apt-get install debootstrap" >&2
  exit 1
}
work=$(mktemp -d "${TMPDIR:-/tmp}/pivot-debian-XXXXXX")
trap 'umount -R "$work/root" 2>/dev/null || true; rm -rf "$work"' EXIT
echo "make-debian-image: debootstrap --variant=minbase $suite from $mirror" >&2
debootstrap --variant=minbase "$suite" "$work/root" "$mirror" >"$work/log" 2>&1 || {
  tail -20 "$work/log" >&2
  exit 1
}
# What a container image does not need: APT lists and caches, logs of the build.
rm -rf "$work/root"/var/lib/apt/lists/* "$work/root"/var/cache/apt/*.bin "$work/root"/var/cache/apt/archives/*.deb \
  "$work/root"/var/log/*.log "$work/root"/var/log/apt/* "$work/root"/debootstrap
tar -C "$work/root" --numeric-owner --xattrs --xattrs-include='security.capability' -czf "$out.tmp" .
mv "$out.tmp" "$out"
echo "make-debian-image: $out ($(du -h "$out" | cut -f1), $(cat "$work/root/etc/debian_version"))" >&2
