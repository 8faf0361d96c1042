#!/usr/bin/env bash
# Where the memory of idle WebSockets goes: builds eventserver with
# -tags heapprofile (net/http/pprof on a listener of its own), opens
# CLIENTS idle WebSockets with cmd/loadgen (the memory shape of
# bench/compare.sh: a user JWT, /tasks), and while they are open saves the
# heap profile (after a GC) and prints its top entries by bytes in use.
#
#   bash bench/heapprofile.sh                  # 5000 clients
#   CLIENTS=10000 OUT=/tmp/heap.pb.gz bash bench/heapprofile.sh
#   go tool pprof -sample_index=inuse_space -top -cum /tmp/heap.pb.gz
#
# Listens and dials on 127.0.0.x only; stops its processes on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-5000}
PING_MS=${PING_MS:-5000}
OUT=${OUT:-${TMPDIR:-/tmp}/eventserver-heap-$CLIENTS.pb.gz}
TOP=${TOP:-30}
ES_ENV=${ES_ENV:-}
SOURCES=127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8,127.0.0.9
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_for() { # wait_for SECONDS CMD...
  local n=$(($1 * 10)); shift
  for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "heapprofile.sh: timed out waiting for: $*" >&2; return 1
}

echo "building eventserver -tags heapprofile and cmd/loadgen" >&2
GOFLAGS="${GOFLAGS:-} -tags=heapprofile" sh scripts/build.sh "$work/eventserver" >&2
go build -o "$work/loadgen" ./cmd/loadgen

secret=heap-secret-$RANDOM$RANDOM
port=$(free_port)
pport=$(free_port)
# shellcheck disable=SC2086 # ES_ENV is a list of words
env EVENTSERVER_LISTEN="127.0.0.1:$port" EVENTSERVER_JWT_SECRET="$secret" EVENTSERVER_PUBLISH_TOKEN=heap-publish-$RANDOM$RANDOM \
  EVENTSERVER_PING_INTERVAL="${PING_MS}ms" EVENTSERVER_PING_TIMEOUT=20s EVENTSERVER_MAX_CONNECTIONS=0 \
  EVENTSERVER_LOG_LEVEL=warn EVENTSERVER_SHUTDOWN_DELAY=0s EVENTSERVER_DRAIN_TIMEOUT=0s \
  EVENTSERVER_PPROF_LISTEN="127.0.0.1:$pport" $ES_ENV \
  "$work/eventserver" >"$work/eventserver.log" 2>&1 &
pid=$!
pids+=("$pid")
wait_for 20 curl -sf "http://127.0.0.1:$port/readyz" || { cat "$work/eventserver.log" >&2; exit 1; }

# The clients stay open long enough for the profile to be taken.
"$work/loadgen" idle --url "http://127.0.0.1:$port" --clients "$CLIENTS" --pid "$pid" \
  --wait 600s --jwt-secret "$secret" --sources "$SOURCES" >"$work/loadgen.json" 2>"$work/loadgen.err" &
lpid=$!
pids+=("$lpid")
connected() {
  curl -sf "http://127.0.0.1:$port/metrics" |
    awk -v n="$CLIENTS" '/^eventserver_connections\{/ { s += $2 } END { exit !(s >= n) }'
}
wait_for 300 connected
sleep "$(python3 -c "print(($PING_MS + 1500) / 1000)")" # one ping cycle, as compare.sh
curl -sf -o "$OUT" "http://127.0.0.1:$pport/debug/pprof/heap?gc=1"
rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
echo "$CLIENTS idle websockets: RSS $rss KiB; heap profile in $OUT" >&2
go tool pprof -sample_index=inuse_space -top -nodecount="$TOP" "$OUT" 2>/dev/null
