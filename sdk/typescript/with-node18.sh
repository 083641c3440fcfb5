#!/usr/bin/env bash
# Runs a command with Node.js 18 (Debian bookworm's nodejs 18.x) first on PATH, installing it when
# missing, so the SDK's "Node 18 or newer" is tested:  sdk/typescript/with-node18.sh sdk/typescript/run-tests.sh
#
# Debian's node is a small launcher plus libnode; both are unpacked (dpkg -x, nothing replaced)
# into MCPOBS_NODE18_DIR (default ~/.cache/mcp-obs/node18). libnode loads a few JavaScript
# modules from fixed paths under /usr/share/nodejs and links libuv / c-ares: those Debian packages
# (node-acorn, node-cjs-module-lexer, node-undici, libuv1, libc-ares2) are installed with apt-get;
# they add files only and leave an installed Node.js alone. Needs root and Debian's apt sources.
set -euo pipefail
dir="${MCPOBS_NODE18_DIR:-$HOME/.cache/mcp-obs/node18}"
lib="$dir/usr/lib/x86_64-linux-gnu"
run18() { LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$dir/usr/bin/node" "$@"; }
if ! run18 -e 'process.exit(process.versions.node.startsWith("18.") ? 0 : 1)' >/dev/null 2>&1; then
  echo "==> installing Node.js 18 from Debian into $dir" >&2
  command -v apt-get >/dev/null || { echo "with-node18.sh: needs apt-get (Debian)" >&2; exit 2; }
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    libuv1 libc-ares2 node-acorn node-cjs-module-lexer node-undici >&2
  # the newest 18.x of the nodejs package in the sources (bookworm, bookworm-security)
  version="$(apt-cache madison nodejs | awk -F'|' '{gsub(/ /, "", $2); print $2}' | grep -E '^18\.' | sort -V | tail -1)"
  [ -n "$version" ] || { echo "with-node18.sh: no nodejs 18.x in the apt sources (Debian bookworm)" >&2; exit 2; }
  tmp="$(mktemp -d)"
  (cd "$tmp" && apt-get download -qq "nodejs=$version" "libnode108=$version" >&2)
  rm -rf "$dir"
  mkdir -p "$dir"
  for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$dir"; done
  rm -rf "$tmp"
  run18 --version >/dev/null
fi
bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
# a `node` on PATH that finds its libnode (npm and the test runner start `node` by name)
printf '#!/bin/sh\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s" "$@"\n' "$lib" "$dir/usr/bin/node" > "$bin/node"
chmod +x "$bin/node"
PATH="$bin:$PATH" "$@"
