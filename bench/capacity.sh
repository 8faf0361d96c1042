#!/usr/bin/env bash
# The measurements behind docs/capacity.md: what each part of a deployment
# costs on this machine, then many instances at once on a 3-master Redis
# Cluster, classic pub/sub against sharded (dynamic mode). One JSON line per
# measurement (cmd/loadgen's object, with the phase, the mode, the number of
# instances and the load average before and after added); bench/capacity.py
# turns them into the tables and the plots.
#
#   components  one eventserver, no Redis:
#                 idle     RSS per idle WebSocket (IDLE_CLIENTS)
#                 connects server CPU per connect, with 1 and JOIN_ROOMS rooms
#                          in each client's token (per room join: the slope)
#                 delivery server CPU per event and per delivery: the same
#                          rate to rooms of 1 and of ROOM_SIZE members
#               one standalone redis-server, classic pub/sub:
#                 redis    Redis CPU per publish with each count of instances
#                          of REDIS_INSTANCES (per subscriber: the slope)
#   simulation  a 3-master Redis Cluster started here; for each mode of
#               SIM_MODES and each count of SIM_INSTANCES, that many
#               eventservers with SIM_CLIENTS clients each, rooms of
#               ROOM_SIZE members, for each k of SIM_SPREAD every room on
#               every instance (0) or on k instances only, events
#               published over HTTP round-robin at each rate of SIM_RATES:
#               deliveries/s, latency, server CPU per delivery, CPU of each
#               Redis master
#
#   bash bench/capacity.sh                        # both phases (about 8 minutes)
#   PHASES=simulation SIM_INSTANCES="12" SIM_RATES=200 bash bench/capacity.sh
#   RESULTS=docs/capacity/results.jsonl PLOTS=docs/capacity bash bench/capacity.sh
#
# Every load is bounded; it listens and dials on 127.0.0.x only, and stops
# its processes on exit. Needs: Go, redis-server and redis-cli (7), python3,
# curl.
set -euo pipefail
cd "$(dirname "$0")/.."

PHASES=${PHASES:-components simulation}
IDLE_CLIENTS=${IDLE_CLIENTS:-5000}
CONNECTS=${CONNECTS:-3000}
JOIN_ROOMS=${JOIN_ROOMS:-5}
ROOM_SIZE=${ROOM_SIZE:-30}
DELIVERY_CLIENTS=${DELIVERY_CLIENTS:-3000}
DELIVERY_RATE=${DELIVERY_RATE:-500}
REDIS_INSTANCES=${REDIS_INSTANCES:-1 2 4 8}
REDIS_RATE=${REDIS_RATE:-1000}
SIM_MODES=${SIM_MODES:-classic dynamic}
SIM_INSTANCES=${SIM_INSTANCES:-4 8 12}
SIM_CLIENTS=${SIM_CLIENTS:-1000} # per instance
SIM_RATES=${SIM_RATES:-100,250,500}
SIM_SPREAD=${SIM_SPREAD:-0 3} # 0: every room on every instance; k: each room's members on k instances
STEP=${STEP:-5s}
PAYLOAD=${PAYLOAD:-128}
RESULTS=${RESULTS:-} # a file to keep the JSON lines in (bench/capacity.py reads them)
PLOTS=${PLOTS:-}     # a directory for bench/capacity.py's PNG plots
SOURCES=127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5

# One descriptor per client in the load generator (and per connection in
# each server): as many as this machine lets a process have.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
max_clients=$(($(ulimit -n) - 1500))
for n in $SIM_INSTANCES; do
  if [ $((n * SIM_CLIENTS)) -gt "$max_clients" ]; then
    echo "capacity.sh: $n instances × $SIM_CLIENTS clients exceed the open-files limit ($(ulimit -n)) of one load generator" >&2
    exit 2
  fi
done

. bench/lib.sh # work, pids (killed on exit), free_port, wait_for
run=()  # the eventservers of the current measurement
loadavg() { cut -d' ' -f1 /proc/loadavg; }

echo "building eventserver (scripts/build.sh) and cmd/loadgen" >&2
sh scripts/build.sh "$work/eventserver" >&2
go build -o "$work/loadgen" ./cmd/loadgen

secret=capacity-secret-$RANDOM$RANDOM
ptoken=capacity-publish-$RANDOM$RANDOM

# start_eventserver [REDIS_URL MODE]: one eventserver (ping interval PING,
# default 25s); sets port and pid.
start_eventserver() {
  port=$(free_port)
  local mode=()
  [ -n "${2:-}" ] && mode=(EVENTSERVER_REDIS_SUBSCRIPTION_MODE="$2")
  env EVENTSERVER_LISTEN="127.0.0.1:$port" EVENTSERVER_JWT_SECRET="$secret" EVENTSERVER_PUBLISH_TOKEN="$ptoken" \
    EVENTSERVER_REDIS_URL="${1:-}" EVENTSERVER_REDIS_PREFIX="capacity-$RANDOM" "${mode[@]}" \
    EVENTSERVER_PING_INTERVAL="${PING:-25s}" EVENTSERVER_PING_TIMEOUT=20s \
    EVENTSERVER_MAX_CONNECTIONS=0 EVENTSERVER_LOG_LEVEL=warn EVENTSERVER_SHUTDOWN_DELAY=0s EVENTSERVER_DRAIN_TIMEOUT=0s \
    "$work/eventserver" >>"$work/eventserver.log" 2>&1 &
  pid=$!
  pids+=("$pid"); run+=("$pid")
  wait_for curl -sf "http://127.0.0.1:$port/readyz"
}

# start_cluster N REDIS_URL MODE: N eventservers with one prefix; sets urls
# and eps (their pids).
start_cluster() {
  local prefix="capacity-$RANDOM$RANDOM"
  urls=(); eps=()
  for _ in $(seq 1 "$1"); do
    port=$(free_port)
    local mode=()
    [ -n "${3:-}" ] && mode=(EVENTSERVER_REDIS_SUBSCRIPTION_MODE="$3")
    env EVENTSERVER_LISTEN="127.0.0.1:$port" EVENTSERVER_JWT_SECRET="$secret" EVENTSERVER_PUBLISH_TOKEN="$ptoken" \
      EVENTSERVER_REDIS_URL="$2" EVENTSERVER_REDIS_PREFIX="$prefix" "${mode[@]}" \
      EVENTSERVER_PING_INTERVAL=25s EVENTSERVER_PING_TIMEOUT=20s \
      EVENTSERVER_MAX_CONNECTIONS=0 EVENTSERVER_LOG_LEVEL=warn EVENTSERVER_SHUTDOWN_DELAY=0s EVENTSERVER_DRAIN_TIMEOUT=0s \
      "$work/eventserver" >>"$work/eventserver.log" 2>&1 &
    pid=$!
    pids+=("$pid"); run+=("$pid"); eps+=("$pid")
    urls+=("http://127.0.0.1:$port")
  done
  for u in "${urls[@]}"; do wait_for curl -sf "$u/readyz"; done
}

stop_servers() {
  for p in "${run[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  run=()
}

results="$work/results.jsonl"
# measure PHASE NAME MODE INSTANCES LOADGEN-ARGS...: one loadgen run against
# the servers already started; its JSON line goes to the results.
measure() {
  local phase=$1 name=$2 mode=$3 n=$4; shift 4
  local rc=0 before after
  before=$(loadavg)
  "$work/loadgen" "$@" --label "$name" --jwt-secret "$secret" --sources "$SOURCES" >"$work/out.json" || rc=$?
  after=$(loadavg)
  if [ -s "$work/out.json" ]; then
    python3 -c '
import json, sys
r = json.loads(open(sys.argv[1]).read())
r.update(phase=sys.argv[2], name=sys.argv[3], mode=sys.argv[4], instances=int(sys.argv[5]),
         load_before=float(sys.argv[6]), load_after=float(sys.argv[7]))
print(json.dumps(r))' "$work/out.json" "$phase" "$name" "$mode" "$n" "$before" "$after" >>"$results"
  fi
  [ "$rc" = 0 ] || echo "capacity.sh: loadgen $name exited $rc (see the results)" >&2
  stop_servers
}

# The machine, as the first line of the results.
python3 -c '
import json, os, platform, subprocess, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
print(json.dumps({"phase": "machine", "cores": os.cpu_count(), "cpu": cpu, "mem_mib": mem, "kernel": platform.release(),
  "go": sys.argv[1], "redis": sys.argv[2], "open_files": int(sys.argv[3]), "load": os.getloadavg()[0],
  "date": sys.argv[4]}))' "$(go version | cut -d' ' -f3)" "$(redis-server --version | cut -d' ' -f3)" "$(ulimit -n)" \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$results"
head -1 "$results" >&2

for phase in $PHASES; do
  case $phase in
  components)
    echo "components: $IDLE_CLIENTS idle websockets" >&2
    PING=5s start_eventserver; sleep 1
    measure components idle none 1 idle --url "http://127.0.0.1:$port" --clients "$IDLE_CLIENTS" --pid "$pid" \
      --wait 6500ms --metrics "http://127.0.0.1:$port/metrics"

    for k in 1 "$JOIN_ROOMS"; do
      echo "components: $CONNECTS connects, $k room(s) each" >&2
      start_eventserver; sleep 1
      measure components "connects-$k" none 1 connects --url "http://127.0.0.1:$port" --clients "$CONNECTS" \
        --pid "$pid" --rooms-per-client "$k"
    done

    for size in 1 "$ROOM_SIZE"; do
      echo "components: $DELIVERY_RATE events/s to rooms of $size, one process" >&2
      start_eventserver
      measure components "delivery-room$size" none 1 fanout --url "http://127.0.0.1:$port" --pid "$pid" \
        --publish-token "$ptoken" --clients "$DELIVERY_CLIENTS" --rooms $((DELIVERY_CLIENTS / size)) \
        --rates "$DELIVERY_RATE" --step "$STEP" --payload "$PAYLOAD"
    done

    rport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis-standalone.log" 2>&1 &
    rpid=$!; pids+=("$rpid")
    wait_for redis-cli -p "$rport" ping
    for n in $REDIS_INSTANCES; do
      echo "components: Redis CPU, $n classic instance(s) on one redis-server, $REDIS_RATE events/s" >&2
      start_cluster "$n" "redis://127.0.0.1:$rport/0" ""
      clients=$((n * 60))
      measure components "redis-$n" classic "$n" fanout --url "$(IFS=,; echo "${urls[*]}")" \
        --pid "$(IFS=,; echo "${eps[*]}")" --redis-pid "$rpid" --publish-token "$ptoken" \
        --clients "$clients" --rooms 20 --rates "$REDIS_RATE" --step "$STEP" --payload "$PAYLOAD"
    done
    kill "$rpid" 2>/dev/null || true
    ;;
  simulation)
    echo "simulation: a 3-master Redis Cluster" >&2
    masters=(); mpids=()
    for i in 1 2 3; do
      p=$(free_port)
      redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file "$work/nodes-$p.conf" \
        --cluster-node-timeout 5000 --save "" --appendonly no --dir "$work" --logfile "$work/cluster-$p.log" &
      mpids+=($!); pids+=($!)
      masters+=("127.0.0.1:$p")
      wait_for redis-cli -p "$p" ping
    done
    redis-cli --cluster create "${masters[@]}" --cluster-replicas 0 --cluster-yes >"$work/cluster-create.log" 2>&1
    for m in "${masters[@]}"; do
      wait_for sh -c "redis-cli -p ${m#*:} cluster info | grep -q cluster_state:ok"
    done
    cluster_url="redis+cluster://${masters[0]}?addr=${masters[1]}&addr=${masters[2]}"
    for spread in $SIM_SPREAD; do
      for mode in $SIM_MODES; do
        for n in $SIM_INSTANCES; do
          clients=$((n * SIM_CLIENTS))
          echo "simulation: $mode, $n instances × $SIM_CLIENTS clients, rooms of $ROOM_SIZE on ${spread/#0/all} instances, rates $SIM_RATES/s" >&2
          m=$mode; [ "$mode" = classic ] && m=""
          start_cluster "$n" "$cluster_url" "$m"
          measure simulation "sim-$mode-$n-s$spread" "$mode" "$n" fanout --url "$(IFS=,; echo "${urls[*]}")" \
            --pid "$(IFS=,; echo "${eps[*]}")" --redis-pid "$(IFS=,; echo "${mpids[*]}")" --publish-token "$ptoken" \
            --clients "$clients" --rooms $((clients / ROOM_SIZE)) --spread "$spread" --rates "$SIM_RATES" \
            --step "$STEP" --payload "$PAYLOAD"
        done
      done
    done
    ;;
  *) echo "capacity.sh: unknown phase $phase (components, simulation)" >&2; exit 2 ;;
  esac
done

if [ -n "$RESULTS" ]; then cp "$results" "$RESULTS"; fi
# matplotlib for the plots (PLOTS=dir): Debian's python3-matplotlib
/usr/bin/python3 bench/capacity.py "$results" ${PLOTS:+"$PLOTS"}
