#!/usr/bin/env bash
# Side by side, in one run: eventserver and the Node.js reference (socket.io
# 4.8 with @socket.io/redis-adapter 8.3, integration/clients/node-server.js),
# each a member of a cluster on the same local Redis, each fanning the same
# events out to the same number of WebSocket clients (cmd/loadgen). The
# servers run one after the other, alone, on the same machine as the load
# generator, so the figures compare the two, not the machine.
#
#   bash bench/compare.sh                       # defaults below
#   CLIENTS=1000 EVENTS=2000 RATE=200 PAYLOAD=256 bash bench/compare.sh
#
# Needs: Go, redis-server, node and `npm ci` at the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-500}
EVENTS=${EVENTS:-1000}
RATE=${RATE:-200}
PAYLOAD=${PAYLOAD:-128}
ROUNDS=${ROUNDS:-1}

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_for() { # wait_for CMD...: poll for up to 20 s
  for _ in $(seq 1 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "compare.sh: timed out waiting for: $*" >&2; return 1
}

echo "building eventserver (scripts/build.sh) and cmd/loadgen"
sh scripts/build.sh "$work/eventserver"
go build -o "$work/loadgen" ./cmd/loadgen

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
wait_for redis-cli -p "$rport" ping
redis="redis://127.0.0.1:$rport/0"
secret=compare-secret-$RANDOM

run_eventserver() {
  local port; port=$(free_port)
  EVENTSERVER_LISTEN="127.0.0.1:$port" EVENTSERVER_JWT_SECRET="$secret" EVENTSERVER_REDIS_URL="$redis" \
    EVENTSERVER_LOG_LEVEL=warn EVENTSERVER_SHUTDOWN_DELAY=0s EVENTSERVER_DRAIN_TIMEOUT=0s \
    "$work/eventserver" >"$work/eventserver.log" 2>&1 &
  local pid=$!
  wait_for curl -sf "http://127.0.0.1:$port/readyz"
  "$work/loadgen" --label "eventserver (Go)" --url "http://127.0.0.1:$port" --redis "$redis" \
    --jwt-secret "$secret" --clients "$CLIENTS" --events "$EVENTS" --rate "$RATE" --payload "$PAYLOAD" --pid "$pid" --json
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

run_node() {
  local port; port=$(free_port)
  # node-server.js reads commands on stdin and stops at its end: keep it open.
  mkfifo "$work/node.in"
  node integration/clients/node-server.js --redis "redis://127.0.0.1:$rport" --port "$port" --host 127.0.0.1 \
    <"$work/node.in" >"$work/node.log" 2>&1 &
  local pid=$!
  exec 9>"$work/node.in"
  wait_for grep -q '"listening"' "$work/node.log"
  "$work/loadgen" --label "socket.io 4.8 (Node.js $(node --version))" --url "http://127.0.0.1:$port" --redis "$redis" \
    --auth-rooms --clients "$CLIENTS" --events "$EVENTS" --rate "$RATE" --payload "$PAYLOAD" --pid "$pid" --json
  exec 9>&-
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  rm -f "$work/node.in"
}

echo "clients=$CLIENTS events=$EVENTS rate=$RATE/s payload=${PAYLOAD}B rounds=$ROUNDS, $(nproc) cores"
results="$work/results.jsonl"
for _ in $(seq 1 "$ROUNDS"); do
  run_eventserver >>"$results"
  run_node >>"$results"
done

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cols = ["server", "delivered", "deliveries/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
        "RSS idle MiB", "RSS peak MiB", "CPU s", "CPU s / 1M deliveries"]
print("| " + " | ".join(cols) + " |")
print("|" + "---|" * len(cols))
for r in rows:
    l = r["Latency"]
    print("| " + " | ".join([
        r["label"], f'{r["delivered"]}/{r["expected_deliveries"]}', f'{r["deliveries_per_second"]:.0f}',
        f'{l["p50_ms"]:.2f}', f'{l["p90_ms"]:.2f}', f'{l["p99_ms"]:.2f}', f'{l["max_ms"]:.2f}',
        f'{r.get("rss_idle_kib", 0)/1024:.1f}', f'{r.get("rss_peak_kib", 0)/1024:.1f}',
        f'{r.get("cpu_seconds", 0):.2f}', f'{r.get("cpu_seconds_per_million_deliveries", 0):.2f}',
    ]) + " |")
PY
