#!/bin/bash
# All of Pivot's checks: type-check, lint/format, the C launcher with warnings as errors,
# unit and integration tests (integration tests need root), and a Node import smoke test.
# Ends with a line "N passed, N failed".
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PATH="$here/node_modules/.bin:$PATH"

# The Debian test image (test/integration/engine-debian.test.ts) is built once per machine, into
# a cache. On a fresh machine (CI) debootstrap runs while the static checks do, and `bun test`
# starts only when it is done, so it slows no container test. Its failure is not counted here:
# the test file tries the build again and fails with the reason.
prebuild=""
if [ $# -eq 0 ] && [ "$(id -u)" = 0 ]; then
  prebuild_log=$(mktemp)
  timeout --kill-after=30 600 scripts/make-debian-image.sh \
    "${PIVOT_TEST_DEBIAN_IMAGE:-/var/cache/pivot-test/debian-bookworm.tar.gz}" >"$prebuild_log" 2>&1 &
  prebuild=$!
fi

passed=0
failed=0
step() {
  local name=$1; shift
  echo "== $name"
  if "$@"; then passed=$((passed + 1)); else echo "FAILED: $name"; failed=$((failed + 1)); fi
}

step "launcher builds with -Werror" make -s -C native -B
step "type-check (tsc --noEmit, strict)" tsc --noEmit -p .
step "lint and format (biome)" biome check .
step "library builds for Node" tsc -p tsconfig.build.json
step "library imports under Node" node test/node-smoke.mjs

if [ -n "$prebuild" ]; then
  echo "== Debian test image (scripts/make-debian-image.sh)"
  wait "$prebuild" || echo "(exit $?: the Debian tests will try again and say why)"
  cat "$prebuild_log"
  rm -f "$prebuild_log"
fi

echo "== bun test"
log=$(mktemp)
bun test --timeout 60000 "$@" 2>&1 | tee "$log"
tests_pass=$(grep -Eo '^ *[0-9]+ pass' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
tests_fail=$(grep -Eo '^ *[0-9]+ fail' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
if ! grep -Eq '^ *[0-9]+ pass' "$log"; then tests_fail=$((tests_fail + 1)); echo "FAILED: bun test printed no summary"; fi
rm -f "$log"
passed=$((passed + tests_pass))
failed=$((failed + tests_fail))
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
