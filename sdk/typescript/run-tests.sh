#!/usr/bin/env bash
# TypeScript SDK tests: real MCP servers and clients of @modelcontextprotocol/sdk 1.x and
# @modelcontextprotocol/server + /client 2.x, exporting to the REAL mcp-obs binary
# (../../target/release/mcp-obs unless MCPOBS_BINARY says otherwise).
# Usage: sdk/typescript/run-tests.sh [test files...]   (default: test/*.test.mjs)
# Ends with one line "N passed, M failed, K skipped"; exits non-zero when a test failed.
set -euo pipefail
cd "$(dirname "$0")"
HERE="$(pwd)"
BIN="${MCPOBS_BINARY:-$HERE/../../target/release/mcp-obs}"
if [ ! -x "$BIN" ]; then
  echo "run-tests.sh: appliance binary not found at $BIN (run 'cargo build --release' in the repository root)" >&2
  exit 2
fi
export MCPOBS_BINARY="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "run-tests.sh: $tool not found (Node.js 18.19 or newer is needed)" >&2; exit 2; }
done
node_major="$(node -p 'process.versions.node.split(".")[0]')"
echo "==> node $(node --version) ($(command -v node))" >&2
t0=$(date +%s)

# Dependencies from the committed lock files, reinstalled only when a lock (or node) changed: the
# package's own (runtime only: what `npm install ./sdk/typescript` brings) in node_modules/, and
# the harness's (both MCP SDK lines, TypeScript, zod; test/package.json) in test/node_modules/.
stamp="test/node_modules/.installed-$( (cat package-lock.json test/package-lock.json; node --version) | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "==> npm ci (package, then test harness)" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  (cd test && npm ci --no-audit --no-fund --loglevel=error >&2)
  touch "$stamp"
fi
# No build step: the package is plain ESM JavaScript (src/*.js) with hand-written declarations
# (src/index.d.ts, checked by test/types.test.mjs).

files=("$@")
[ ${#files[@]} -gt 0 ] || files=(test/*.test.mjs)
tap="$(mktemp)"
trap 'rm -f "$tap"' EXIT
set +e
# Node 18 has neither --test-concurrency nor --test-timeout (its runner still runs the files in
# parallel); the 2.x line's tests are skipped there (@modelcontextprotocol/server needs Node 20).
runner=(--test)
[ "$node_major" -ge 20 ] && runner+=(--test-concurrency=4 --test-timeout=120000)
node "${runner[@]}" \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" \
  "${files[@]}"
rc=$?
set -e
count() { grep -E "^# $1 [0-9]+$" "$tap" | tail -1 | awk '{print $3}'; }
passed=$(count pass); failed=$(count fail); cancelled=$(count cancelled); skipped=$(count skipped); todo=$(count todo)
passed=${passed:-0}; failed=$(( ${failed:-0} + ${cancelled:-0} )); skipped=$(( ${skipped:-0} + ${todo:-0} ))
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi  # the runner itself failed (e.g. a file crashed)
echo "==> TypeScript SDK tests took $(( $(date +%s) - t0 ))s" >&2
echo "$passed passed, $failed failed, $skipped skipped"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
