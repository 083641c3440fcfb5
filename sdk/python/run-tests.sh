#!/usr/bin/env bash
# Python SDK tests: one venv per supported MCP version line, real clients and servers, the REAL
# mcp-obs binary (../../target/release/mcp-obs, built by the repository's test command).
# Usage: sdk/python/run-tests.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")"
HERE="$(pwd)"
PY="${PYTHON:-python3}"
BIN="${MCPOBS_BINARY:-$HERE/../../target/release/mcp-obs}"
if [ ! -x "$BIN" ]; then
  echo "run-tests.sh: appliance binary not found at $BIN (run 'cargo build --release' in the repository root)" >&2
  exit 2
fi
export MCPOBS_BINARY="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

# version line -> requirements file (add mcp1 / fastmcp here as their integrations land)
LINES="${MCPOBS_SDK_LINES:-mcp2}"
status=0
for line in $LINES; do
  venv="$HERE/.venv-$line"
  req="$HERE/requirements-$line.txt"
  stamp="$venv/.installed-$(sha1sum "$req" pyproject.toml | sha1sum | cut -c1-12)"
  if [ ! -f "$stamp" ]; then
    echo "==> [$line] creating venv and installing $req" >&2
    rm -rf "$venv"
    "$PY" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps "$HERE"
    touch "$stamp"
  else
    # reinstall the SDK itself (fast, no deps) so the tests always see the current source
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall "$HERE" >/dev/null
  fi
  echo "==> [$line] pytest" >&2
  if ! "$venv/bin/python" -m pytest -q -p no:cacheprovider tests "$@"; then
    status=1
  fi
done
exit $status
