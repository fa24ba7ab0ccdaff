# shellcheck shell=bash
# Pieces of a local whep-bridge cluster on 127.0.0.1, shared by cluster/local.sh and
# cluster/drill.sh (source it; it defines functions and variables only).
#
#   redis-server (append-only file in the run dir) + `whep-bridge testsrc` (synthetic WHEP
#   source) + `whep-bridge sink --report-json` (WebSocket consumer) + NODES `serve` nodes
#   (ids n1..nN) coordinated through that Redis.
#
# Every process gets its own log in RUN_DIR and its own process group (setsid), so a Ctrl-C
# at the terminal reaches only the script, whose cleanup then stops them in order: nodes
# first (SIGTERM: they drain and release their leases while Redis is still up), then the
# source, the sink and Redis.
#
# Environment (all optional):
#   WHEP_BRIDGE_BIN   binary (default target/release/whep-bridge, built if missing)
#   RUN_DIR           where logs, Redis data and sink.json go (default: a new /tmp dir)
#   NODES             number of nodes (default 3)
#   REDIS_PORT, SRC_PORT, SINK_PORT, NODE_PORTS ("p1 p2 p3")   fixed ports (default: free)
#   LEASE_TTL_SECS    redis.lease_ttl_secs of every node (default: the node's, 3 s)

CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$CLUSTER_DIR")
BIN=${WHEP_BRIDGE_BIN:-$REPO_DIR/target/release/whep-bridge}
NODES=${NODES:-3}

REDIS_PID="" SRC_PID="" SINK_PID=""
NODE_PIDS=() NODE_PORT=() NODE_IDS=()
USED_PORTS=" "

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (apt-get install $tool)"
  done
}

# The binary, built once if missing (an existing one is used as is: rebuild it yourself
# after changing the code).
ensure_binary() {
  if [ ! -x "$BIN" ]; then
    log "building $BIN (cargo build --release)"
    (cd "$REPO_DIR" && cargo build --release --quiet) || die "cargo build --release failed"
  fi
  [ -x "$BIN" ] || die "no binary at $BIN"
}

init_run_dir() {
  RUN_DIR=${RUN_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/whep-cluster.XXXXXX")}
  mkdir -p "$RUN_DIR/redis"
  SINK_JSON=$RUN_DIR/sink.json
}

# True if the process runs (a zombie or a reaped child does not count).
alive() {
  local pid=$1
  local state
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ -d /proc/self ] || return 0
  # Field 3 of /proc/PID/stat is the state; the process may vanish between the two looks.
  state=$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$state" != Z ]
}

# Sets the variable named $1 to a loopback TCP port nobody listens on and this run has not
# handed out yet, unless it is set already (a port fixed through the environment). Connecting
# is the test (bash's /dev/tcp: no extra tool); a refused connection means the port is free.
# It assigns rather than prints: a $(...) subshell would lose the record of ports handed out.
port_or_free() {
  local var=$1 p _
  [ -n "${!var:-}" ] && return 0
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 40000))
    case "$USED_PORTS" in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      USED_PORTS="$USED_PORTS$p "
      printf -v "$var" '%s' "$p"
      return 0
    fi
  done
  die "no free port found"
}

# Polls a command until it succeeds, for at most $1 seconds.
wait_until() {
  local secs=$1 what=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || { log "timed out after ${secs}s waiting for $what"; return 1; }
    sleep 0.2
  done
}

http_ok() { curl -sf -o /dev/null --max-time 2 "$1"; }

# One raw PING (no redis-cli needed); in a subshell so a refused connection is just "no".
redis_ping() {
  (
    exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT" || exit 1
    printf 'PING\r\n' >&3
    IFS= read -r -t 1 reply <&3 || exit 1
    [ "${reply%$'\r'}" = "+PONG" ]
  ) 2>/dev/null
}

# Runs "$@" in the background in its own session, output to $RUN_DIR/$1.log; sets SPAWNED.
spawn() {
  local name=$1
  shift
  if command -v setsid >/dev/null 2>&1; then
    setsid "$@" >"$RUN_DIR/$name.log" 2>&1 </dev/null &
  else
    "$@" >"$RUN_DIR/$name.log" 2>&1 </dev/null &
  fi
  SPAWNED=$!
}

start_redis() {
  need redis-server
  port_or_free REDIS_PORT
  redis_ping && die "something already answers on 127.0.0.1:$REDIS_PORT (REDIS_PORT)"
  spawn redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$RUN_DIR/redis" \
    --appendonly yes --save ""
  REDIS_PID=$SPAWNED
  wait_until 10 "redis-server" redis_ping || die "redis-server did not start: $RUN_DIR/redis.log"
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
}

start_testsrc() {
  port_or_free SRC_PORT
  spawn testsrc "$BIN" testsrc --listen "127.0.0.1:$SRC_PORT"
  SRC_PID=$SPAWNED
  SRC_URL="http://127.0.0.1:$SRC_PORT"
  wait_until 20 "testsrc" http_ok "$SRC_URL/healthz" || die "testsrc did not start: $RUN_DIR/testsrc.log"
}

start_sink() {
  port_or_free SINK_PORT
  spawn sink "$BIN" sink --listen "127.0.0.1:$SINK_PORT" --report-every 1 --report-json "$SINK_JSON"
  SINK_PID=$SPAWNED
  SINK_URL="ws://127.0.0.1:$SINK_PORT"
  # The sink writes its report (`{}`) as soon as it listens.
  wait_until 20 "sink" test -s "$SINK_JSON" || die "sink did not start: $RUN_DIR/sink.log"
}

# Starts node n$1 on its port and waits until it is ready.
start_node() {
  local i=$1 ports port
  read -ra ports <<<"${NODE_PORTS:-}"
  port=${ports[$((i - 1))]:-}
  port_or_free port
  local env=(WHEP_BRIDGE_REDIS_URL="$REDIS_URL" WHEP_BRIDGE_RTC_ALLOWED_IPS=127.0.0.1)
  [ -n "${LEASE_TTL_SECS:-}" ] && env+=(WHEP_BRIDGE_REDIS_LEASE_TTL_SECS="$LEASE_TTL_SECS")
  spawn "n$i" env "${env[@]}" "$BIN" serve --listen "127.0.0.1:$port" --node-id "n$i"
  NODE_PIDS[i]=$SPAWNED
  NODE_PORT[i]=$port
  NODE_IDS[i]=n$i
}

start_cluster() {
  need curl
  ensure_binary
  init_run_dir
  start_redis
  start_testsrc
  start_sink
  local i
  for i in $(seq 1 "$NODES"); do start_node "$i"; done
  for i in $(seq 1 "$NODES"); do
    wait_until 20 "node n$i" http_ok "$(node_url "$i")/readyz" || die "n$i did not start: $RUN_DIR/n$i.log"
  done
}

node_url() { echo "http://127.0.0.1:${NODE_PORT[$1]}"; }

# Index of the node with id $1.
node_index() {
  local i
  for i in "${!NODE_IDS[@]}"; do [ "${NODE_IDS[i]}" = "$1" ] && { echo "$i"; return 0; }; done
  return 1
}

# URL of any running node.
live_node_url() {
  local i
  for i in "${!NODE_PIDS[@]}"; do alive "${NODE_PIDS[i]}" && { node_url "$i"; return 0; }; done
  return 1
}

# Creates streams s1..s$1 through the nodes in turn (placement is the cluster's): each the
# testsrc stream of the same name, sent to the sink with the `extended` envelope (every chunk
# names its node and epoch, which the sink's report follows).
create_streams() {
  local n=$1 i ix body code
  for i in $(seq 1 "$n"); do
    ix=$(((i - 1) % NODES + 1))
    body=$(printf '{"stmId":"s%d","whepUrl":"%s/whep/s%d","wsUrl":"%s/c/{stmId}","output":{"envelope":"extended"}}' \
      "$i" "$SRC_URL" "$i" "$SINK_URL")
    code=$(curl -s -o "$RUN_DIR/post.out" -w '%{http_code}' --max-time 10 -X POST \
      -H 'Content-Type: application/json' -d "$body" "$(node_url "$ix")/v1/streams")
    [ "$code" = 201 ] || die "POST s$i to n$ix: $code $(cat "$RUN_DIR/post.out")"
  done
}

# Sends $1 (TERM, INT, KILL) to every pid given, then waits up to $2 s for them to end.
stop_pids() {
  local sig=$1 secs=$2 pid
  shift 2
  for pid in "$@"; do alive "$pid" && kill "-$sig" "$pid" 2>/dev/null; done
  local deadline=$((SECONDS + secs))
  for pid in "$@"; do
    while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  done
}

# Stops everything this run started; safe to call twice. Nodes drain first (bounded by
# their 8 s drain), then whatever is left is killed.
stop_cluster() {
  local pids=() pid
  for pid in "${NODE_PIDS[@]}"; do alive "$pid" && pids+=("$pid"); done
  if [ ${#pids[@]} -gt 0 ]; then
    stop_pids TERM 12 "${pids[@]}"
    stop_pids KILL 2 "${pids[@]}"
  fi
  # SIGINT lets the sink write its final report.
  [ -n "$SINK_PID" ] && stop_pids INT 3 "$SINK_PID"
  pids=()
  for pid in "$SRC_PID" "$SINK_PID" "$REDIS_PID"; do [ -n "$pid" ] && pids+=("$pid"); done
  if [ ${#pids[@]} -gt 0 ]; then
    stop_pids TERM 5 "${pids[@]}"
    stop_pids KILL 2 "${pids[@]}"
  fi
}

# --- reading the sink's report (jq) ---------------------------------------------------------

# The sink's report, or `{}` while it has none.
report() { cat "$SINK_JSON" 2>/dev/null || echo '{}'; }

# Number of the streams s1..s$1 that delivered a chunk in the last second.
delivering() {
  report | jq --argjson n "$1" '[range(1; $n + 1) | "s\(.)"] as $ids
    | [to_entries[] | select(.key as $k | $ids | index($k))
       | select(.value.lastChunkAgoMs != null and .value.lastChunkAgoMs < 1000)] | length'
}

all_delivering() { [ "$(delivering "$1")" -eq "$1" ]; }
