#!/bin/bash
# One command to set Pivot up on a fresh Debian 12 or Ubuntu machine, as root:
# system packages, npm dependencies (Bun among them), the C launcher, the commands on PATH.
# Then it runs a first container. Safe to run again.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

if [ "$(id -u)" != 0 ]; then
  echo "setup: run me as root (containers need it): sudo $0" >&2
  exit 1
fi

packages=(build-essential pkg-config libseccomp-dev busybox-static tini procps iproute2 iptables nftables containernetworking-plugins ca-certificates attr skopeo containerd podman docker-registry apache2-utils conmon uidmap slirp4netns passt debootstrap)
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Rootless --network slirp4netns and pasta open /dev/net/tun as the user: udev makes it 0666
# (Debian's 50-udev-default.rules); without udev (containers, some VMs) it may be root's only.
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
  echo "setup: /dev/net/tun 0666 (rootless slirp4netns and pasta), as udev sets it"
  chmod 0666 /dev/net/tun
fi

echo "setup: npm dependencies"
npm ci --no-audit --no-fund --loglevel=error

echo "setup: building the C launcher and the library for Node"
make -s -C native
node_modules/.bin/tsc -p tsconfig.build.json

# Commands on PATH: containerd and podman name the runtime by its path.
for cmd in pivot-runtime pivot; do
  rm -f "/usr/local/bin/$cmd" # may be a link to the compiled binary: never write through it
  cat > "/usr/local/bin/$cmd" <<WRAP
#!/bin/sh
exec "$here/node_modules/.bin/bun" "$here/bin/$cmd.ts" "\$@"
WRAP
  chmod 755 "/usr/local/bin/$cmd"
done
# The compiled single binary starts several times faster than bun on the sources
# (docs/benchmarks.md): it replaces the wrapper when it builds. It is a snapshot: run
# scripts/build-binary.sh again after changing the sources (the tests use the sources).
if scripts/build-binary.sh; then for cmd in pivot-runtime pivot; do ln -sf "$here/dist/$cmd" "/usr/local/bin/$cmd"; done; fi

# A first container: a busybox root filesystem from Debian's busybox-static.
bundle=/var/lib/pivot/bundles/hello
if [ ! -d "$bundle/rootfs" ]; then
  mkdir -p "$bundle"
  scripts/make-busybox-rootfs.sh "$bundle/rootfs"
fi
rm -f "$bundle/config.json"
pivot-runtime spec --bundle "$bundle"
node -e '
  const fs = require("fs"); const f = process.argv[1];
  const c = JSON.parse(fs.readFileSync(f, "utf8"));
  c.process.terminal = false;
  c.process.args = ["sh", "-c", "echo Hello from a Pivot container: hostname $(hostname), PID $$, $(wc -l < /proc/self/mountinfo) mounts of its own"];
  fs.writeFileSync(f, JSON.stringify(c, null, 2));
' "$bundle/config.json"
pivot-runtime delete --force hello-pivot 2>/dev/null || true
pivot-runtime run --bundle "$bundle" hello-pivot
echo "setup: done. Try: pivot-runtime --help; tests: scripts/test.sh"
