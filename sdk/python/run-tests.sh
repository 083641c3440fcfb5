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

# version line -> requirements file; each line gets its own venv (.venv-LINE)
LINES="${MCPOBS_SDK_LINES:-mcp2 mcp1 fastmcp}"
t0=$(date +%s)

install_line() {  # create the venv of one line when its pins (or the SDK's pyproject) changed
  local line="$1" venv="$HERE/.venv-$1" req="$HERE/requirements-$1.txt" stamp
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
}

# installs are network/IO bound: run them concurrently, then test line by line
pids=()
for line in $LINES; do
  install_line "$line" & pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
if [ $status -ne 0 ]; then
  echo "run-tests.sh: installing a line failed" >&2
  exit 1
fi
echo "==> venvs ready in $(( $(date +%s) - t0 ))s" >&2

summary=""
for line in $LINES; do
  venv="$HERE/.venv-$line"
  echo "==> [$line] pytest" >&2
  log="$(mktemp)"
  set +e
  MCPOBS_SDK_LINE="$line" "$venv/bin/python" -m pytest -q -p no:cacheprovider tests "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" -eq 0 ] || status=1
  summary+="[$line] $(grep -E '^=*[ ]*[0-9]+ (passed|failed|error)|no tests ran' "$log" | tail -1 | sed 's/^=* *//; s/ *=*$//') (exit $rc)"$'\n'
  rm -f "$log"
done
echo "==> summary (total $(( $(date +%s) - t0 ))s)"
printf '%s' "$summary"
exit $status
