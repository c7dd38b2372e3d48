#!/bin/sh
# Compiles Pivot's commands into one standalone binary, dist/pivot, that serves each command by the
# name it runs as (bin/pivot-multicall.ts): dist/pivot-runtime is a link to it, so that conmon, which
# the engine hands that path, runs it under that name; scripts/setup.sh links /usr/local/bin/pivot
# and /usr/local/bin/pivot-runtime to it. Bytecode is compiled ahead of time: start-up is what a
# runtime's users feel (docs/benchmarks.md). --splitting keeps each command's code in its own chunk:
# without it the one bundle is loaded whole, and pivot-runtime paid for the engine's code at every
# start (--version: 25 ms of cpu against 12 ms split, measured here).
# The launcher is found beside the binary or in ../native/build (see launcherPath). Re-run after
# changing the sources: the binary is a snapshot.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$here/dist"
"$here/node_modules/.bin/bun" build "$here/bin/pivot-multicall.ts" --compile --bytecode --format=esm --splitting \
  --outfile "$here/dist/pivot" >/dev/null
ln -sf pivot "$here/dist/pivot-runtime"
echo "built $here/dist/pivot"
