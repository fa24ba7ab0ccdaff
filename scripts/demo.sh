#!/usr/bin/env bash
# Try whep-bridge on one machine, no SRS, no Redis and no speech engine needed: installs cmake
# if missing (libopus is built from source), builds a release binary and runs
# `whep-bridge demo` — a synthetic WHEP source, a WebSocket consumer and a node with N streams
# in one process, a live per-stream table, then a summary and PASS/FAIL. Everything stays on
# 127.0.0.1. Arguments go to `demo`: e.g. `bash scripts/demo.sh --streams 10 --seconds 30`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null 2>&1; then
  echo "== installing cmake (libopus is built from source)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cmake >/dev/null
fi
cargo build --release --quiet
exec target/release/whep-bridge demo "$@"
