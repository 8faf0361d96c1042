#!/usr/bin/env bash
# Side by side, in one run: eventserver and the Node.js reference (socket.io
# 4.8 with @socket.io/redis-adapter 8.3, integration/clients/node-server.js),
# driven by the same load generator (cmd/loadgen) in three shapes, one server
# at a time, alone, on this machine. It prints one table with the ratio
# eventserver / Node.js.
#
#   memory    one process, no Redis: RSS per idle WebSocket after a ping
#             cycle, at each of IDLE_STEPS connections (a fresh process each);
#             with BIG=1 also BIG_CLIENTS idle WebSockets on one eventserver
#             (RSS and goroutines), dialled from several loopback addresses
#   connects  one warm process, no Redis: CONNECTS connects, IN_FLIGHT at a
#             time, each verifying an HS256 JWT (both servers)
#   fanout    3 processes and one Redis: CLIENTS clients in ROOMS rooms, every
#             room with members on every process; events published over HTTP
#             (POST /api/v1/emit) round-robin over the processes, one STEP per
#             rate of RATES: deliveries/s, completeness, latency, CPU/delivery
#
#   bash bench/compare.sh                                  # defaults below
#   SHAPES=fanout CLIENTS=300 ROOMS=10 RATES=100,200 bash bench/compare.sh
#   BIG=1 bash bench/compare.sh                            # + 100k idle WebSockets
#   ES_ENV="EVENTSERVER_MAX_WRITE_QUEUE=4MiB" bash bench/compare.sh   # extra eventserver environment
#
# Every load is bounded; it listens and dials on 127.0.0.x only, and stops
# its processes on exit. Needs: Go, redis-server, node, python3, curl and
# `npm ci` at the repository root; root (or a high hard limit) for BIG=1's
# file descriptors.
set -euo pipefail
cd "$(dirname "$0")/.."

SHAPES=${SHAPES:-memory connects fanout}
IDLE_STEPS=${IDLE_STEPS-5000 10000} # empty: none
BIG=${BIG:-0}
BIG_CLIENTS=${BIG_CLIENTS:-100000}
CONNECTS=${CONNECTS:-3000}
IN_FLIGHT=${IN_FLIGHT:-200}
CLIENTS=${CLIENTS:-3000}
ROOMS=${ROOMS:-100}
RATES=${RATES:-500,750,1000,1500,2000,3000}
STEP=${STEP:-5s}
PAYLOAD=${PAYLOAD:-128}
PING_MS=${PING_MS:-5000}
RESULTS=${RESULTS:-} # a file to keep loadgen's JSON lines in (bench/table.py reads them)
ES_ENV=${ES_ENV:-} # words NAME=value added to every eventserver's environment
SOURCES=127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8,127.0.0.9

# Room for the clients' and the servers' descriptors (both run from here).
if [ "$BIG" = 1 ]; then want=$((BIG_CLIENTS * 2 + 10000)); else want=65536; fi
ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$BIG" = 1 ] && [ "$BIG_CLIENTS" -gt $(($(ulimit -n) - 1000)) ]; then
  echo "compare.sh: open files are limited to $(ulimit -n) here (ulimit -Hn, not raisable):" \
    "BIG_CLIENTS $BIG_CLIENTS lowered to $(($(ulimit -n) - 1000))" >&2
  BIG_CLIENTS=$(($(ulimit -n) - 1000))
fi

. bench/lib.sh # work, pids (killed on exit), free_port, wait_for
fds=()    # fifo descriptors that keep node-server.js's stdin open
run=()    # the servers of the current measurement

echo "building eventserver (scripts/build.sh) and cmd/loadgen" >&2
sh scripts/build.sh "$work/eventserver" >&2
go build -o "$work/loadgen" ./cmd/loadgen

secret=compare-secret-$RANDOM$RANDOM
ptoken=compare-publish-$RANDOM$RANDOM
node_label="socket.io 4.8 (Node.js $(node --version))"
es_label="eventserver${ES_ENV:+ ($ES_ENV)}"

redis_url=""
start_redis() {
  [ -n "$redis_url" ] && return 0
  local port; port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
  pids+=($!)
  wait_for redis-cli -p "$port" ping
  redis_url="redis://127.0.0.1:$port/0"
}

# start_eventserver [REDIS_URL PREFIX]: the one place an eventserver starts;
# sets port and pid.
start_eventserver() {
  port=$(free_port)
  # shellcheck disable=SC2086 # ES_ENV is a list of words
  env EVENTSERVER_LISTEN="127.0.0.1:$port" EVENTSERVER_JWT_SECRET="$secret" EVENTSERVER_PUBLISH_TOKEN="$ptoken" \
    EVENTSERVER_REDIS_URL="${1:-}" EVENTSERVER_REDIS_PREFIX="${2:-socket.io}" \
    EVENTSERVER_PING_INTERVAL="${PING_MS}ms" EVENTSERVER_PING_TIMEOUT=20s \
    EVENTSERVER_MAX_CONNECTIONS=0 EVENTSERVER_LOG_LEVEL=warn EVENTSERVER_SHUTDOWN_DELAY=0s EVENTSERVER_DRAIN_TIMEOUT=0s $ES_ENV \
    "$work/eventserver" >>"$work/eventserver.log" 2>&1 &
  pid=$!
  pids+=("$pid"); run+=("$pid")
  wait_for curl -sf "http://127.0.0.1:$port/readyz"
}

# start_node [REDIS_URL PREFIX]: node-server.js with the same token check,
# publish API and ping interval; without Redis, one process. Sets port and pid.
start_node() {
  port=$(free_port)
  local fifo="$work/node-$port.in" log="$work/node-$port.log" fd
  mkfifo "$fifo"
  exec {fd}<>"$fifo" # node-server.js stops at the end of stdin: keep it open
  fds+=("$fd")
  local cluster=(--no-redis)
  [ -n "${1:-}" ] && cluster=(--redis "$1" --prefix "$2")
  node integration/clients/node-server.js "${cluster[@]}" --host 127.0.0.1 --port "$port" --quiet \
    --jwt-secret "$secret" --publish-token "$ptoken" --ping-interval "$PING_MS" --ping-timeout 20000 \
    <"$fifo" >"$log" 2>&1 &
  pid=$!
  pids+=("$pid"); run+=("$pid")
  wait_for grep -q '"listening"' "$log"
}

stop_servers() {
  for p in "${run[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for fd in "${fds[@]}"; do exec {fd}>&-; done
  run=(); fds=()
}

results="$work/results.jsonl"
# measure KIND LOADGEN-ARGS...: one loadgen run against the servers already
# started; its JSON line goes to the results with the server's kind.
measure() {
  local kind=$1; shift
  local label=$es_label; [ "$kind" = node ] && label=$node_label # es, es-big or node
  local rc=0
  "$work/loadgen" "$@" --label "$label" --jwt-secret "$secret" --sources "$SOURCES" >"$work/out.json" || rc=$?
  if [ -s "$work/out.json" ]; then
    python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).read()); r["kind"]=sys.argv[2]; print(json.dumps(r))' \
      "$work/out.json" "$kind" >>"$results"
  fi
  [ "$rc" = 0 ] || echo "compare.sh: loadgen $1 against $kind exited $rc (see the table)" >&2
  stop_servers
}

one() { # one KIND: start one server without Redis
  if [ "$1" = es ]; then start_eventserver; else start_node; fi
  sleep 1 # let the start-up settle before reading the memory
}

echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r), $(go version | cut -d' ' -f3), Node.js $(node --version)" >"$work/machine"
cat "$work/machine" >&2

for shape in $SHAPES; do
  case $shape in
  memory)
    for n in $IDLE_STEPS; do
      for kind in es node; do
        echo "memory: $n idle websockets on $kind" >&2
        one "$kind"
        metrics=(); [ "$kind" = es ] && metrics=(--metrics "http://127.0.0.1:$port/metrics")
        measure "$kind" idle --url "http://127.0.0.1:$port" --clients "$n" --pid "$pid" \
          --wait "$((PING_MS + 1500))ms" "${metrics[@]}"
      done
    done
    if [ "$BIG" = 1 ]; then
      echo "memory: $BIG_CLIENTS idle websockets on one eventserver" >&2
      one es
      measure es-big idle --url "http://127.0.0.1:$port" --clients "$BIG_CLIENTS" --pid "$pid" \
        --wait "$((PING_MS + 5000))ms" --metrics "http://127.0.0.1:$port/metrics"
    fi
    ;;
  connects)
    for kind in es node; do
      echo "connects: $CONNECTS clients, $IN_FLIGHT in flight, on $kind" >&2
      one "$kind"
      measure "$kind" connects --url "http://127.0.0.1:$port" --clients "$CONNECTS" --in-flight "$IN_FLIGHT" --pid "$pid"
    done
    ;;
  fanout)
    start_redis
    for kind in es node; do
      echo "fanout: $CLIENTS clients in $ROOMS rooms on 3 $kind processes, rates $RATES/s" >&2
      urls=(); ps=(); prefix="bench-$kind-$RANDOM"
      for _ in 1 2 3; do
        if [ "$kind" = es ]; then start_eventserver "$redis_url" "$prefix"; else start_node "$redis_url" "$prefix"; fi
        urls+=("http://127.0.0.1:$port"); ps+=("$pid")
      done
      measure "$kind" fanout --url "$(IFS=,; echo "${urls[*]}")" --pid "$(IFS=,; echo "${ps[*]}")" \
        --publish-token "$ptoken" --clients "$CLIENTS" --rooms "$ROOMS" --rates "$RATES" --step "$STEP" --payload "$PAYLOAD"
    done
    ;;
  *) echo "compare.sh: unknown shape $shape (memory, connects, fanout)" >&2; exit 2 ;;
  esac
done

python3 bench/table.py "$results" "$work/machine" "$es_label" "$node_label"
if [ -n "${RESULTS:-}" ]; then cp "$results" "$RESULTS"; fi
