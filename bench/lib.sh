# Shared by the benchmark scripts (sourced, not run): a work directory and
# the processes they start, both removed on exit, and two helpers.
#   work     a temporary directory, removed on exit
#   pids     every process started: append to it; killed on exit
#   free_port          a free 127.0.0.1 port whose +10000 (a Redis Cluster
#                      node's bus port) is free too
#   wait_for CMD...    poll CMD for up to 20 s

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c '
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p + 10000 <= 65535:
        b = socket.socket()
        try:
            b.bind(("127.0.0.1", p + 10000)); b.close(); s.close(); print(p); break
        except OSError:
            pass
    s.close()'
}

wait_for() {
  for _ in $(seq 1 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$(basename "$0"): timed out waiting for: $*" >&2; return 1
}
