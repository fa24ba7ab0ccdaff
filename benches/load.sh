#!/usr/bin/env bash
# Load bench: N concurrent streams on one `whep-bridge serve` node, from `testsrc` to `sink`,
# all on 127.0.0.1. Prints CPU (% of one core) and RSS of the node process only, total and
# per stream, for each N. Usage: bash benches/load.sh [N ...]   (default: 1 20 100)
# Needs: a release build (cargo build --release), curl. Ports: BASE_PORT (default 28000)+{80,88,90}.
# WS_MODE=shared multiplexes all streams on one consumer connection (default: per-stream).
set -euo pipefail
cd "$(dirname "$0")/.."
B=target/release/whep-bridge
[ -x "$B" ] || { echo "build first: cargo build --release" >&2; exit 1; }
P=${BASE_PORT:-28000}
WARM=${WARM_SECS:-10}
MEASURE=${MEASURE_SECS:-30}
WS_MODE=${WS_MODE:-per-stream}
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

printf '| streams | live | CPU %% of one core | per stream | RSS MB | per stream MB |\n|---|---|---|---|---|---|\n'
for N in "${@:-1 20 100}"; do
  for n in $N; do
    $B testsrc --listen 127.0.0.1:$((P+88)) >/dev/null 2>&1 & TS=$!
    $B sink --listen 127.0.0.1:$((P+90)) --report-every 600 >/dev/null 2>&1 & SK=$!
    WHEP_BRIDGE_RTC_ALLOWED_IPS=127.0.0.1 $B serve --listen 127.0.0.1:$((P+80)) >/dev/null 2>&1 & SV=$!
    trap 'kill $TS $SK $SV 2>/dev/null || true' EXIT
    for _ in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:$((P+80))/readyz && break; sleep 0.2; done
    for i in $(seq 1 "$n"); do
      curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' \
        -d "{\"stmId\":\"s$i\",\"whepUrl\":\"http://127.0.0.1:$((P+88))/whep/s$i\",\"wsUrl\":\"ws://127.0.0.1:$((P+90))/load\",\"output\":{\"wsMode\":\"$WS_MODE\"}}" \
        http://127.0.0.1:$((P+80))/v1/streams
    done
    sleep "$WARM"
    live=$(curl -s http://127.0.0.1:$((P+80))/v1/streams | grep -o '"state":"live"' | wc -l)
    a=$(ticks $SV); sleep "$MEASURE"; b=$(ticks $SV)
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$SV/status")
    awk -v n="$n" -v live="$live" -v d="$((b-a))" -v hz="$hz" -v s="$MEASURE" -v rss="$rss" 'BEGIN {
      cpu = d / hz / s * 100; printf "| %d | %d | %.1f %% | %.3f %% | %.1f | %.2f |\n", n, live, cpu, cpu / n, rss / 1024, rss / 1024 / n }'
    kill -TERM $SV; sleep 3; kill $TS $SK 2>/dev/null || true; wait 2>/dev/null || true
  done
done
