#!/bin/sh
# Compiles Pivot's commands into one standalone program, OUTDIR/pivot.bin (default OUTDIR: dist),
# that serves each command by the name it runs as (bin/pivot-multicall.ts), and puts the two front
# doors beside it (native/front-door.c): OUTDIR/pivot and OUTDIR/pivot-runtime run the program as
# pivot or pivot-runtime with JavaScriptCore's JIT off, which the short commands start faster
# without; the engine's long commands run it again with the JIT on (src/cli/jit.ts); conmon, which
# the engine hands OUTDIR/pivot-runtime, runs it the same way.
# scripts/setup.sh links /usr/local/bin/pivot and /usr/local/bin/pivot-runtime to the doors.
#   scripts/build-binary.sh [OUTDIR]
# Bytecode is compiled ahead of time: start-up is what a runtime's users feel (docs/benchmarks.md).
# --compile-jit-policy scales the JIT's thresholds up, for the program run without its door (and
# the JIT on): start-up code runs once, and compiling it is work for nothing; the engine sets the
# normal policy back once a command's start-up is over (src/util/jit.ts).
# --minify-whitespace --minify-syntax: less code to load at every start (`pivot run` 0.3-0.4 ms,
# 1-2%, `--version` 0.15 ms less; names are kept); --sourcemap is embedded in the program, so
# `--debug` stack traces name the TypeScript sources (src/cli/engine.ts:449) rather than chunks.
# The .map files bun also writes beside it are not needed and are removed.
# --splitting keeps each command's code in its own chunk: without it the one bundle is loaded
# whole, and pivot-runtime paid for the engine's code at every start (--version: 25 ms of cpu
# against 12 ms split, measured here).
# The program must not read bunfig.toml or .env from the directory it is run in (Bun's default for
# compiled programs): both commands run as root wherever their caller stands, a bunfig.toml's
# `preload` would run that directory's code, and a .env could set PIVOT_LAUNCHER or PATH
# (test/integration/binary.test.ts shows it).
# The launcher is found beside the program or in ../native/build (see launcherPath). Re-run after
# changing the sources: the program is a snapshot.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/dist}
mkdir -p "$out"
"$here/node_modules/.bin/bun" build "$here/bin/pivot-multicall.ts" --compile --bytecode --format=esm --splitting \
  --minify-whitespace --minify-syntax --sourcemap \
  --no-compile-autoload-dotenv --no-compile-autoload-bunfig --compile-jit-policy=100 \
  --outfile "$out/pivot.bin" >/dev/null
rm -f "$out"/*.js.map "$out/pivot.bin.map"
make -s -C "$here/native" build/front-pivot build/front-pivot-runtime
for cmd in pivot pivot-runtime; do
  rm -f "$out/$cmd" # an earlier build's program (or a link to one): never write through it
  cp "$here/native/build/front-$cmd" "$out/$cmd"
done
echo "built $out/pivot.bin, and the doors $out/pivot and $out/pivot-runtime"
