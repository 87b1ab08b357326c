#!/usr/bin/env bash
# RealtimeX receive-rate benchmark: the switchboard client speaking RealtimeX (Socket.IO),
# the bare read + hot-path scan floor, and socket.io-client under Node (subscribed the
# RealtimeX way), against one stream server (`server-event`s on bench), same run.
# Usage: bench/realtimex.sh        Env: EVENTS (2000000), SLOW_EVENTS (300000), RUNS (5)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-2000000}
SLOW_EVENTS=${SLOW_EVENTS:-300000}
RUNS=${RUNS:-5}
[ -d interop/node_modules/socket.io-client ] || npm ci --prefix interop --no-audit --no-fund
cargo build --release -q -p switchboard-bench
HARNESS=target/release/switchboard-bench
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
echo "# realtimex receive rate, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), $RUNS runs each"
for payload in 100 1000; do
  "$HARNESS" stream-server --protocol realtimex --payload "$payload" --events 4000000000 > "$work/server.out" &
  server_pid=$!
  for _ in $(seq 50); do grep -q listening "$work/server.out" && break; sleep 0.1; done
  addr=$(awk '/listening on/ {print $3}' "$work/server.out")
  # Interleaved rounds, so that a slow spell of the machine hits every receiver alike.
  for _ in $(seq "$RUNS"); do
    "$HARNESS" recv --mode realtimex-bare --addr "$addr" --events "$EVENTS" --payload "$payload"
    "$HARNESS" recv --mode realtimex-main --addr "$addr" --events "$EVENTS" --payload "$payload"
    "$HARNESS" recv --mode realtimex --addr "$addr" --events "$EVENTS" --payload "$payload"
    "$HARNESS" recv --mode realtimex --runtime current --io caller --addr "$addr" --events "$EVENTS" --payload "$payload"
    node interop/bench-socketio-recv.mjs "$addr" "$SLOW_EVENTS" "$payload"
  done | tee -a "$work/runs.txt"
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
done
echo "# medians of $RUNS runs"
bench/medians.sh < "$work/runs.txt"
