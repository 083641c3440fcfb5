#!/usr/bin/env bash
# Runs every check and test of the repository: formatting, lints, the architecture invariant, unit,
# property and integration tests (against the real binary), docs, bench builds and a short fuzz run.
# Needs ../shared/fixtures beside the repository (the team's shared folder).
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n==> %s\n' "$*" >&2; }

# Test runner output is also kept here so the last line can total every runner's counts.
results="$(mktemp)"
trap 'rm -f "$results"' EXIT

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "invariant: storage knows nothing of warp, hyper or maud"
if cargo tree -p mcp-obs-storage -e normal --prefix none | grep -Ei '^(warp|hyper|maud) '; then
  echo "storage must not depend on HTTP or HTML crates" >&2
  exit 1
fi

step "invariant: no unsafe outside storage/"
# `grep -rn` prefixes each line with `file:line:`; comment lines (after that prefix) are skipped.
if grep -rn --include='*.rs' -E '\bunsafe\b' src web/src tests benches | grep -vE '^[^:]+:[0-9]+:\s*//' ; then
  echo "unsafe code outside storage/" >&2
  exit 1
fi

step "cargo build --release: the binary the integration and SDK tests drive, and the tests"
# One build for both: `cargo test` turns on the tests' dev-dependency features (tokio's test-util)
# for the whole workspace, binary included, so a separate `cargo build --release` first compiled
# tokio, hyper, warp, tantivy and our crates a second time (about 7 of a 31-minute run on a slow
# day). The binary is the same source, with tokio's paused clock compiled in and never used.
cargo test --workspace --release --locked --no-run

# The fuzz targets' instrumented build (several minutes, its own target directory) runs in the
# background at the lowest priority from here on: the tests below leave the cores partly idle.
fuzz_build_log="$(mktemp)"
fuzz_build_pid=""
if [ -x fuzz/run-brief.sh ]; then
  nice -n 19 fuzz/run-brief.sh --build-only >"$fuzz_build_log" 2>&1 &
  fuzz_build_pid=$!
fi
trap 'rm -f "$results" "$fuzz_build_log"; [ -z "$fuzz_build_pid" ] || { pkill -P "$fuzz_build_pid" 2>/dev/null; kill "$fuzz_build_pid" 2>/dev/null; } || true' EXIT

step "tests (unit, property, integration)"
cargo test --workspace --release --locked 2>&1 | tee -a "$results"

step "Python SDK tests (real MCP servers and clients against the release binary)"
sdk/python/run-tests.sh 2>&1 | tee -a "$results"

step "TypeScript SDK tests (real MCP servers and clients against the release binary)"
sdk/typescript/run-tests.sh 2>&1 | tee -a "$results"

step "TypeScript SDK tests on Node 18 (Debian's nodejs 18, installed on first use; the 1.x line)"
sdk/typescript/with-node18.sh sdk/typescript/run-tests.sh 2>&1 | tee -a "$results"

step "Dashboard end-to-end tests (headless Chromium against the release binary)"
e2e/run-tests.sh 2>&1 | tee -a "$results"

step "docs build"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "benchmarks build"
cargo bench --workspace --no-run --locked

if [ -x fuzz/run-brief.sh ]; then
  step "fuzz targets, briefly"
  if ! wait "$fuzz_build_pid"; then
    cat "$fuzz_build_log" >&2
    echo "the fuzz targets' build failed" >&2
    exit 1
  fi
  fuzz_build_pid=""
  FUZZ_SECONDS="${FUZZ_SECONDS:-15}" fuzz/run-brief.sh
fi

# One closing line over all runners: cargo's "test result: ok. N passed; M failed" and pytest's
# "N passed[, M failed]" lines.
python3 - "$results" <<'PY'
import re, sys
passed = failed = skipped = 0
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", line)
    if m:
        passed += int(m[1]); failed += int(m[2]); skipped += int(m[3])
        continue
    if line.startswith("["):
        continue  # run-tests.sh repeats pytest's lines in its summary
    m = re.match(r"^(\d+) passed(?:, (\d+) failed)?(?:, (\d+) skipped)?", line.strip())
    if m:
        passed += int(m[1]); failed += int(m[2] or 0); skipped += int(m[3] or 0)
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
