#!/usr/bin/env bash
# A whep-bridge cluster on this machine, loopback only: redis-server (append-only file),
# the synthetic WHEP source, a WebSocket sink that writes a JSON report, and 3 nodes (n1..n3)
# coordinated through that Redis. Prints the addresses, then runs until Ctrl-C, which stops
# everything (nodes drain first). Logs, Redis data and the sink's report are in the run dir.
#
#   bash cluster/local.sh                # 3 nodes, no streams
#   STREAMS=9 bash cluster/local.sh      # and 9 streams s1..s9 created through the nodes
#
# Environment: STREAMS (default 0), and NODES, RUN_DIR, REDIS_PORT, SRC_PORT, SINK_PORT,
# NODE_PORTS, LEASE_TTL_SECS, WHEP_BRIDGE_BIN as described in cluster/lib.sh.
# Needs redis-server and curl (jq to read the report); builds target/release/whep-bridge if
# it is missing.
set -euo pipefail
# shellcheck source=cluster/lib.sh
. "$(dirname "$0")/lib.sh"

STREAMS=${STREAMS:-0}

trap stop_cluster EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_cluster
if [ "$STREAMS" -gt 0 ]; then
  create_streams "$STREAMS"
fi

first=$(node_url 1)
cat <<EOF
whep-bridge local cluster — logs, Redis data and the sink report in $RUN_DIR
  redis    $REDIS_URL  (append-only file in $RUN_DIR/redis)
  testsrc  $SRC_URL/whep/<name>  (any name; tones 440/660 Hz)
  sink     $SINK_URL/<any path>  (report every 1 s: $SINK_JSON)
EOF
for i in $(seq 1 "$NODES"); do
  printf '  %-8s %s  (pid %s, log %s)\n' "n$i" "$(node_url "$i")" "${NODE_PIDS[i]}" "$RUN_DIR/n$i.log"
done
cat <<EOF
Streams created: $STREAMS. Try:
  curl -s $first/v1/streams | jq '.[] | {id: .spec.stmId, state, owner, epoch}'
  curl -s $first/v1/nodes | jq
  jq . $SINK_JSON        # per stream: chunks, node, epoch, ownerChanges, maxGapMs, takeoverGapsMs
  curl -X POST $first/v1/streams -H 'Content-Type: application/json' \\
    -d '{"stmId":"x1","whepUrl":"$SRC_URL/whep/x1","wsUrl":"$SINK_URL/c/{stmId}","output":{"envelope":"extended"}}'
  kill -KILL <pid of a node>   # its streams move to the others after the lease TTL
Ctrl-C stops everything.
EOF

# Runs until interrupted; says so when a process ends on its own (or was killed by hand).
declare -A reported=()
while sleep 1; do
  for name in redis testsrc sink; do
    case $name in redis) pid=$REDIS_PID ;; testsrc) pid=$SRC_PID ;; sink) pid=$SINK_PID ;; esac
    if [ -z "${reported[$name]:-}" ] && ! alive "$pid"; then
      log "$name (pid $pid) has exited: see $RUN_DIR/$name.log"
      reported[$name]=1
    fi
  done
  for i in $(seq 1 "$NODES"); do
    if [ -z "${reported[n$i]:-}" ] && ! alive "${NODE_PIDS[i]}"; then
      log "n$i (pid ${NODE_PIDS[i]}) has exited: see $RUN_DIR/n$i.log"
      reported[n$i]=1
    fi
  done
done
