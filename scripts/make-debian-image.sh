#!/bin/bash
# Builds a Debian minbase root filesystem with debootstrap and writes it as a gzip rootfs tarball,
# the larger test image of the tests (test/integration/engine-debian.test.ts), the benchmarks
# (bench/images.ts) and manual checks:
#
#   scripts/make-debian-image.sh OUT.tar.gz [SUITE] [MIRROR]
#   pivot import OUT.tar.gz localhost/debian:bookworm
#   pivot run --rm localhost/debian:bookworm cat /etc/debian_version
#
# Needs root, the debootstrap package and the Debian mirror (default: the first deb.debian.org-style
# URI of this machine's APT sources, else http://deb.debian.org/debian). It takes a minute or two.
# OUT is a cache: kept unless FORCE=1 or this script changed since it was made (OUT.stamp), so
# `bun test` builds it once per machine, in /var/cache/pivot-test (scripts/test.sh starts that
# build while the static checks run). Builders of one OUT take turns (a lock on OUT.lock): the
# second waits, then finds OUT made. Downloads give up after 3 tries of 60 s, so an unreachable
# mirror fails within minutes, with debootstrap's last lines.
set -euo pipefail
out=${1:?usage: make-debian-image.sh OUT.tar.gz [SUITE] [MIRROR]}
suite=${2:-bookworm}
mirror=${3:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
    awk '{print $2}' | head -1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi
# OUT.stamp names the script and suite OUT was made by: a changed script makes a new tarball.
stamp="$(sha256sum <"$0" | cut -d' ' -f1) $suite"
cached() {
  if [ -s "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ] && [ "${FORCE:-0}" != 1 ]; then
    echo "make-debian-image: $out exists (FORCE=1 rebuilds)" >&2
    exit 0
  fi
}
cached
if [ "$(id -u)" != 0 ]; then
  echo "make-debian-image: run me as root (debootstrap makes device nodes and chowns)" >&2
  exit 1
fi
command -v debootstrap >/dev/null || {
  echo "make-debian-image: debootstrap is missing: apt-get install debootstrap" >&2
  exit 1
}
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9
cached # made by the builder we waited for
work=$(mktemp -d "${TMPDIR:-/tmp}/pivot-debian-XXXXXX")
trap 'umount -R "$work/root" 2>/dev/null || true; rm -rf "$work"' EXIT
# debootstrap fetches with wget: a read, connect or DNS wait of 60 s at most, 3 tries per file
# (debootstrap retries a package a few times more). $WGETRC adds to /etc/wgetrc (proxies stay).
printf 'timeout = 60\ntries = 3\nwaitretry = 5\n' >"$work/wgetrc"
export WGETRC="$work/wgetrc"
echo "make-debian-image: debootstrap --variant=minbase $suite from $mirror" >&2
debootstrap --variant=minbase "$suite" "$work/root" "$mirror" >"$work/log" 2>&1 || {
  tail -20 "$work/log" >&2
  exit 1
}
# What a container image does not need: APT lists and caches, logs of the build. (Not the
# directories apt owns, such as lists/partial: dpkg --verify would call them missing.)
find "$work/root"/var/lib/apt/lists -mindepth 1 -maxdepth 1 ! -name partial -exec rm -rf {} +
rm -rf "$work/root"/var/cache/apt/*.bin "$work/root"/var/cache/apt/archives/*.deb \
  "$work/root"/var/log/*.log "$work/root"/var/log/apt/* "$work/root"/debootstrap
# debootstrap copies this machine's names and resolver into the root: an image must not carry
# them. The files stay (as placeholders, the way distributions ship them), since the runtime binds
# the container's own over them.
# (Removed first: a symlink there would be followed out of the root.)
rm -f "$work/root/etc/hostname" "$work/root/etc/resolv.conf"
echo localhost >"$work/root/etc/hostname"
: >"$work/root/etc/resolv.conf"
tar -C "$work/root" --numeric-owner --xattrs --xattrs-include='security.capability' -czf "$out.tmp" .
mv "$out.tmp" "$out"
echo "$stamp" >"$out.stamp"
echo "make-debian-image: $out ($(du -h "$out" | cut -f1), $(cat "$work/root/etc/debian_version"))" >&2
