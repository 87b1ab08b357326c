#!/usr/bin/env bash
# Client receive-rate benchmark: switchboard, the bare read+parse floor, pusher-js under
# Node, and a seed-style Python websockets client, against one stream server, same run.
# Then memory per idle connection with 10,000 switchboard clients in one process.
# Usage: bench/client.sh    Env: EVENTS (2000000), SLOW_EVENTS (300000), RUNS (5), IDLE (10000)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-2000000}
SLOW_EVENTS=${SLOW_EVENTS:-300000}
RUNS=${RUNS:-5}
IDLE=${IDLE:-10000}
ulimit -n "$(ulimit -Hn)"
[ -d interop/node_modules/pusher-js ] || npm ci --prefix interop --no-audit --no-fund
python3 -c 'import websockets' 2>/dev/null || pip install -q -r bench/requirements.txt
cargo build --release -q -p switchboard-cli -p switchboard-bench
HARNESS=target/release/switchboard-bench
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

echo "# client receive rate, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), $RUNS runs each (Python: 1)"
for payload in 100 1000; do
  "$HARNESS" stream-server --payload "$payload" --events 4000000000 > "$work/server.out" &
  server_pid=$!
  for _ in $(seq 50); do grep -q listening "$work/server.out" && break; sleep 0.1; done
  addr=$(awk '/listening on/ {print $3}' "$work/server.out")
  # Interleaved rounds, so that a slow spell of the machine hits every receiver alike.
  for _ in $(seq "$RUNS"); do
    "$HARNESS" recv --mode bare --addr "$addr" --events "$EVENTS" --payload "$payload"
    "$HARNESS" recv --mode switchboard-main --addr "$addr" --events "$EVENTS" --payload "$payload"
    "$HARNESS" recv --mode switchboard --addr "$addr" --events "$EVENTS" --payload "$payload"
    "$HARNESS" recv --mode switchboard-main --io caller --addr "$addr" --events "$EVENTS" --payload "$payload"
    "$HARNESS" recv --mode switchboard --runtime current --io caller --addr "$addr" --events "$EVENTS" --payload "$payload"
    node interop/bench-recv.mjs "$addr" "$SLOW_EVENTS" "$payload"
  done | tee -a "$work/runs.txt"
  python3 bench/python_recv.py "$addr" "$SLOW_EVENTS" "$payload"
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
done
echo "# medians of $RUNS runs"
bench/medians.sh < "$work/runs.txt"
echo "# memory per idle subscribed client connection"
"$HARNESS" idle-clients --clients "$IDLE"
