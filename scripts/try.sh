#!/usr/bin/env bash
# Try whep-bridge on one machine, no SRS and no speech engine needed: builds it (installing
# cmake if missing), starts the synthetic WHEP source and a consumer that reports what it
# receives, and pulls one stream for SECONDS (default 15). Everything stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-15}
if ! command -v cmake >/dev/null 2>&1; then
  echo "== installing cmake (libopus is built from source)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null
fi
cargo build --release --quiet
B=target/release/whep-bridge
$B testsrc --listen 127.0.0.1:8088 & TS=$!
$B sink --listen 127.0.0.1:9000 & SK=$!
trap 'kill $TS $SK 2>/dev/null || true' EXIT
sleep 1
$B pull --whep http://127.0.0.1:8088/whep/demo --ws ws://127.0.0.1:9000/asr --duration "$SECONDS_TO_RUN"
sleep 2.5   # one more sink report
