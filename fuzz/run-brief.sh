#!/usr/bin/env bash
# Runs every fuzz target for a short while (FUZZ_SECONDS each, default 20), seeded with the captured
# OTLP fixtures, and fails on any crash, panic, timeout or broken invariant.
#
# Only a stable toolchain is assumed: RUSTC_BOOTSTRAP=1 lets stable rustc accept the -Z flags that
# cargo-fuzz passes (sanitizer, coverage instrumentation). The first build instruments every
# dependency and takes several minutes on 2 cores; later runs reuse fuzz/target.
#
# Environment: FUZZ_SECONDS (per target, default 20), FUZZ_SANITIZER (cargo-fuzz -s: none | address,
# default none: the code under test is safe Rust, and none builds and runs about twice as fast).
#
# `run-brief.sh --build-only` installs cargo-fuzz and builds every target, running none: test.sh
# starts it early, at low priority, so the instrumented build overlaps the SDK tests (which leave
# the cores partly idle), and the runs later find it built.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-20}"
sanitizer="${FUZZ_SANITIZER:-none}"
fixtures="../../shared/fixtures"
targets=(otlp_protobuf otlp_protobuf_fast otlp_json normalize)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (about 30 s)" >&2
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

if [ "${1:-}" = "--build-only" ]; then
  for target in "${targets[@]}"; do
    cargo fuzz build -s "$sanitizer" "$target"
  done
  exit 0
fi

# Seed corpora from the fixtures. Protobuf bodies are stored gzipped when they were sent so.
if [ -d "$fixtures" ]; then
  mkdir -p corpus/otlp_protobuf corpus/otlp_protobuf_fast corpus/normalize corpus/otlp_json
  for body in "$fixtures"/*.pb; do
    name="$(basename "$body")"
    if grep -Eq '"content_encoding": *"gzip"' "${body%.pb}.meta.json"; then
      gzip -dc <"$body" >"corpus/otlp_protobuf/$name"
    else
      cp "$body" "corpus/otlp_protobuf/$name"
    fi
    cp "corpus/otlp_protobuf/$name" "corpus/normalize/$name"
    cp "corpus/otlp_protobuf/$name" "corpus/otlp_protobuf_fast/$name"
  done
  # The OTLP/JSON capture, plus the proto3-JSON renderings (base64 ids, so they stop at the first
  # id, but their structure is a good starting point for mutation).
  for doc in "$fixtures"/*.json; do
    case "$doc" in *.meta.json) continue ;; esac
    cp "$doc" "corpus/otlp_json/$(basename "$doc")"
  done
else
  echo "warning: $fixtures not found, fuzzing from empty corpora" >&2
fi

for target in "${targets[@]}"; do
  echo "==> fuzz $target for ${seconds}s" >&2
  cargo fuzz run -s "$sanitizer" "$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
echo "fuzz: no crash in ${#targets[@]} targets x ${seconds}s" >&2
