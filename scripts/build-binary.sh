#!/bin/sh
# Compiles Pivot's commands into one standalone binary, dist/pivot, that serves each command by the
# name it runs as (bin/pivot-multicall.ts); scripts/setup.sh links /usr/local/bin/pivot-runtime to
# it. Bytecode is compiled ahead of time: start-up is what a runtime's users feel (docs/benchmarks.md).
# The launcher is found beside the binary or in ../native/build (see launcherPath). Re-run after
# changing the sources: the binary is a snapshot.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$here/dist"
"$here/node_modules/.bin/bun" build "$here/bin/pivot-multicall.ts" --compile --bytecode --format=esm \
  --outfile "$here/dist/pivot" >/dev/null
echo "built $here/dist/pivot"
