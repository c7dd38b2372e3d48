#!/bin/sh
# Compiles Pivot's commands into one standalone binary, OUTDIR/pivot (default: dist/pivot), that
# serves each command by the name it runs as (bin/pivot-multicall.ts). OUTDIR/pivot-runtime is the
# runtime's front door (native/runtime-front.c): it runs OUTDIR/pivot under that name with
# JavaScriptCore's JIT off, which every runtime command, short as they all are, starts faster
# without; conmon, which the engine hands that path, runs it the same way.
# scripts/setup.sh links /usr/local/bin/pivot and /usr/local/bin/pivot-runtime to them.
#   scripts/build-binary.sh [OUTDIR]
# Bytecode is compiled ahead of time: start-up is what a runtime's users feel (docs/benchmarks.md).
# --compile-jit-policy scales the JIT's thresholds up: start-up code runs once, and compiling it is
# work for nothing; the engine sets the normal policy back once a command's start-up is over
# (src/cli/jit.ts).
# --splitting keeps each command's code in its own chunk: without it the one bundle is loaded
# whole, and pivot-runtime paid for the engine's code at every start (--version: 25 ms of cpu
# against 12 ms split, measured here).
# The binary must not read bunfig.toml or .env from the directory it is run in (Bun's default for
# compiled programs): both commands run as root wherever their caller stands, a bunfig.toml's
# `preload` would run that directory's code, and a .env could set PIVOT_LAUNCHER or PATH
# (test/integration/binary.test.ts shows it).
# The launcher is found beside the binary or in ../native/build (see launcherPath). Re-run after
# changing the sources: the binary is a snapshot.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/dist}
mkdir -p "$out"
"$here/node_modules/.bin/bun" build "$here/bin/pivot-multicall.ts" --compile --bytecode --format=esm --splitting \
  --no-compile-autoload-dotenv --no-compile-autoload-bunfig --compile-jit-policy=100 \
  --outfile "$out/pivot" >/dev/null
make -s -C "$here/native" build/runtime-front
rm -f "$out/pivot-runtime"
cp "$here/native/build/runtime-front" "$out/pivot-runtime"
echo "built $out/pivot"
