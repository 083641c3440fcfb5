#!/usr/bin/env bash
# Dashboard end-to-end tests: Debian's headless Chromium driven by playwright-core against the
# REAL mcp-obs binary (../target/release/mcp-obs unless MCPOBS_BINARY says otherwise). The Python
# snippet runs in the Python SDK's mcp2 venv (made here when sdk/python/run-tests.sh has not).
# Screenshots: ../test-artifacts/e2e/.
set -euo pipefail
cd "$(dirname "$0")"
HERE="$(pwd)"
BIN="${MCPOBS_BINARY:-$HERE/../target/release/mcp-obs}"
if [ ! -x "$BIN" ]; then
  echo "run-tests.sh: appliance binary not found at $BIN (run 'cargo build --release' in the repository root)" >&2
  exit 2
fi
export MCPOBS_BINARY="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "run-tests.sh: Chromium not found (apt-get install chromium)" >&2
  exit 2
fi

venv="$HERE/../sdk/python/.venv-mcp2"
if [ -z "${MCPOBS_E2E_PYTHON:-}" ] && [ ! -x "$venv/bin/python" ]; then
  echo "==> creating $venv" >&2
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$HERE/../sdk/python/requirements-mcp2.txt"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps "$HERE/../sdk/python"
fi

stamp="node_modules/.installed-$( (cat package-lock.json; node --version) | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  rm -rf node_modules
  npm ci --no-audit --no-fund --loglevel=error >&2
  touch "$stamp"
fi

# The closing "N passed, N failed, N skipped" line is what test.sh totals (as for the SDKs).
tap="$(mktemp)"
trap 'rm -f "$tap"' EXIT
set +e
node --test --test-timeout=300000 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" \
  dashboard.test.mjs
rc=$?
set -e
count() { grep -E "^# $1 [0-9]+$" "$tap" | tail -1 | awk '{print $3}'; }
passed=$(count pass); failed=$(count fail); cancelled=$(count cancelled); skipped=$(count skipped)
passed=${passed:-0}; failed=$(( ${failed:-0} + ${cancelled:-0} )); skipped=${skipped:-0}
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi  # the runner itself failed
echo "[e2e] screenshots in $(cd .. && pwd)/test-artifacts/e2e" >&2
echo "$passed passed, $failed failed, $skipped skipped"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
