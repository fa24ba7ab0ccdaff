#!/usr/bin/env bash
# Failover drill on a local cluster (cluster/lib.sh: Redis + 3 nodes + testsrc + sink, all on
# 127.0.0.1): 9 streams with the `extended` envelope; once all deliver, SIGKILL the node that
# owns the most streams, wait, then SIGTERM the node that owns the most of the rest, wait, and
# print per trigger how many streams moved and the takeover gap the consumer saw (p50 / max,
# from the sink's --report-json), judged against the limits:
#   SIGKILL: gap <= lease TTL + 2 s (5 s with the default 3 s TTL): the lease must expire first
#   SIGTERM: gap <= 1 s: the leaving node drains and hands its leases over at once
# A trigger also FAILs if a stream of the stopped node does not resume on another node, if a
# stream of another node changes owner, or if any chunk arrives from an old epoch after a
# newer one (double delivery, SPEC §6). Exit status 0 only if everything PASSes.
#
#   bash cluster/drill.sh        (about 30 s; KEEP_RUN_DIR=1 keeps logs even on PASS)
#
# Environment: SETTLE_SECS (wait after each trigger, default 10), LEASE_TTL_SECS, and the
# variables of cluster/lib.sh. Needs redis-server, curl and jq.
set -euo pipefail
# shellcheck source=cluster/lib.sh
. "$(dirname "$0")/lib.sh"

STREAMS=9
SETTLE_SECS=${SETTLE_SECS:-10}
TTL=${LEASE_TTL_SECS:-3}
KILL_LIMIT_MS=$(awk -v t="$TTL" 'BEGIN { printf "%d", t * 1000 + 2000 }')
TERM_LIMIT_MS=1000
MAX_DRILL_SECS=300

VERDICT=FAIL
WATCHDOG_PID=""
ROWS=()

finish() {
  [ -n "$WATCHDOG_PID" ] && kill "$WATCHDOG_PID" 2>/dev/null
  stop_cluster
  if [ "$VERDICT" = PASS ] && [ "${KEEP_RUN_DIR:-0}" != 1 ] && [ -n "${RUN_DIR:-}" ]; then
    rm -rf "$RUN_DIR"
  elif [ -n "${RUN_DIR:-}" ]; then
    log "logs and the sink report kept in $RUN_DIR"
  fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'log "drill aborted"; exit 143' TERM

need jq curl
# Whatever happens, the drill ends: the watchdog interrupts it after MAX_DRILL_SECS.
(sleep "$MAX_DRILL_SECS" && log "drill took over ${MAX_DRILL_SECS}s" && kill -TERM $$) 2>/dev/null &
WATCHDOG_PID=$!

# `GET /v1/streams` from a live node, as [{id, owner, epoch, state}].
placement() {
  curl -sf --max-time 5 "$(live_node_url)/v1/streams" |
    jq -c '[.[] | {id: .spec.stmId, owner, epoch, state}] | sort_by(.id | ltrimstr("s") | tonumber? // 0)'
}

# "n1: 3 (s1 s4 s7), n2: ..." from a placement.
placement_line() {
  jq -r 'group_by(.owner) | map("\(.[0].owner): \(length) (\(map(.id) | join(" ")))") | join(", ")' <<<"$1"
}

# Sends signal $1 to the node that owns the most streams, waits SETTLE_SECS, and records a
# row of the result table; $2 is the gap limit in ms.
trigger() {
  local sig=$1 limit=$2 before_place victim owned ix pid before after exit_note summary
  before_place=$(placement) || die "no live node answers GET /v1/streams"
  victim=$(jq -r 'map(select(.owner != null and .owner != "")) | group_by(.owner)
    | max_by(length) | .[0].owner' <<<"$before_place")
  owned=$(jq -c --arg v "$victim" '[.[] | select(.owner == $v) | .id]' <<<"$before_place")
  ix=$(node_index "$victim") || die "owner $victim is not a node of this run"
  pid=${NODE_PIDS[ix]}
  before=$(report)
  log "SIG$sig $victim (pid $pid), which owns $(jq -r 'length' <<<"$owned") stream(s): $(jq -r 'join(" ")' <<<"$owned")"
  kill "-$sig" "$pid"
  # Reap a killed node at once (SIGKILL is immediate), so bash does not print "Killed".
  if [ "$sig" = KILL ]; then wait "$pid" 2>/dev/null || true; fi
  sleep "$SETTLE_SECS"
  after=$(report)

  exit_note="-"
  if [ "$sig" = TERM ]; then
    if alive "$pid"; then
      exit_note="still running"
    else
      local status=0
      wait "$pid" 2>/dev/null || status=$?
      exit_note="exit $status"
    fi
  fi

  # What the consumer saw, from the sink's report before and after the trigger.
  summary=$(jq -n -c --argjson b "$before" --argjson a "$after" --argjson owned "$owned" \
    --arg victim "$victim" --argjson limit "$limit" '
    def stale(r): [r[] | .staleChunks] | add // 0;
    [$owned[] as $id | {
        id: $id,
        from: "\($b[$id].node) e\($b[$id].epoch)", to: "\($a[$id].node) e\($a[$id].epoch)",
        gaps: (($a[$id].takeoverGapsMs // [])[(($b[$id].takeoverGapsMs // []) | length):]),
        moved: ($a[$id].node != $victim and ($a[$id].epoch // 0) > ($b[$id].epoch // 0)
                and ($a[$id].lastChunkAgoMs // 1e9) < 1000)
      }] as $streams
    | ([$streams[].gaps[]] | sort) as $gaps
    | {
        streams: $streams,
        owned: ($owned | length),
        moved: ([$streams[] | select(.moved)] | length),
        p50: (if ($gaps | length) > 0 then $gaps[($gaps | length) / 2 | floor] else null end),
        max: ($gaps | max),
        others: ([$a | to_entries[] | select(.key as $k | $owned | index($k) | not)
                  | select(.value.ownerChanges > ($b[.key].ownerChanges // 0))] | length),
        stale: (stale($a) - stale($b))
      }
    | .pass = (.owned > 0 and .moved == .owned and .max != null and .max <= $limit
               and .others == 0 and .stale == 0)')
  jq -r '.streams[] | "  \(.id): \(.from) -> \(.to), takeover gap \(.gaps | map("\(.) ms") | join(", ") | if . == "" then "none" else . end)"' <<<"$summary" >&2
  local result
  result=$(jq -r 'if .pass then "PASS" else "FAIL" end' <<<"$summary")
  if [ "$sig" = TERM ] && [ "$exit_note" != "exit 0" ]; then result=FAIL; fi
  ROWS+=("$(jq -r --arg sig "SIG$sig" --arg node "$victim" --arg exit "$exit_note" \
    --arg limit "$limit" --arg result "$result" '
    [$sig, $node, $exit, "\(.moved)/\(.owned)", (.p50 // "-"), (.max // "-"), $limit, .others,
     .stale, $result] | map(tostring) | join("\t")' <<<"$summary")")
  [ "$result" = PASS ]
}

start_cluster
log "run dir $RUN_DIR; $NODES nodes, lease TTL ${TTL}s; creating $STREAMS streams"
create_streams "$STREAMS"
wait_until 60 "all $STREAMS streams delivering" all_delivering "$STREAMS" ||
  die "not every stream delivers: $(report)"
sleep 3 # a few seconds of steady state before the first trigger
log "placement: $(placement_line "$(placement)")"

ok=1
trigger KILL "$KILL_LIMIT_MS" || ok=0
trigger TERM "$TERM_LIMIT_MS" || ok=0

final=$(placement)
log "placement after both triggers: $(placement_line "$final")"
delivering_now=$(delivering "$STREAMS")
[ "$delivering_now" -eq "$STREAMS" ] || ok=0

echo
fmt='%-8s %-5s %-10s %-13s %-10s %-10s %-8s %-12s %-12s %s\n'
# shellcheck disable=SC2059 # the format is the table layout
printf "$fmt" trigger node "node exit" "streams moved" "gap p50 ms" "gap max ms" "limit ms" \
  "others moved" "stale chunks" result
for row in "${ROWS[@]}"; do
  IFS=$'\t' read -r -a cells <<<"$row"
  # shellcheck disable=SC2059
  printf "$fmt" "${cells[@]}"
done
echo "streams delivering at the end: $delivering_now/$STREAMS"
if [ "$ok" = 1 ]; then VERDICT=PASS; fi
echo "$VERDICT"
[ "$VERDICT" = PASS ]
