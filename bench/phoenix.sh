#!/usr/bin/env bash
# Phoenix receive-rate benchmark: the switchboard Phoenix client, the bare read+parse floor,
# and phoenix.js under Node, against one stream server (V2 broadcasts on room:bench), same run.
# Usage: bench/phoenix.sh        Env: EVENTS (2000000), SLOW_EVENTS (300000), RUNS (5)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-2000000}
SLOW_EVENTS=${SLOW_EVENTS:-300000}
RUNS=${RUNS:-5}
[ -d interop/node_modules/phoenix ] || npm ci --prefix interop --no-audit --no-fund
cargo build --release -q -p switchboard-bench
HARNESS=target/release/switchboard-bench
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
echo "# phoenix receive rate, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), $RUNS runs each"
for payload in 100 1000; do
  "$HARNESS" stream-server --protocol phoenix --payload "$payload" --events 4000000000 > "$work/server.out" &
  server_pid=$!
  for _ in $(seq 50); do grep -q listening "$work/server.out" && break; sleep 0.1; done
  addr=$(awk '/listening on/ {print $3}' "$work/server.out")
  # Interleaved rounds, so that a slow spell of the machine hits every receiver alike.
  for _ in $(seq "$RUNS"); do
    "$HARNESS" recv --mode phoenix-bare --addr "$addr" --events "$EVENTS" --payload "$payload"
    "$HARNESS" recv --mode phoenix-main --addr "$addr" --events "$EVENTS" --payload "$payload"
    "$HARNESS" recv --mode phoenix --addr "$addr" --events "$EVENTS" --payload "$payload"
    "$HARNESS" recv --mode phoenix-main --io caller --addr "$addr" --events "$EVENTS" --payload "$payload"
    "$HARNESS" recv --mode phoenix --runtime current --io caller --addr "$addr" --events "$EVENTS" --payload "$payload"
    node interop/bench-phoenix-recv.mjs "$addr" "$SLOW_EVENTS" "$payload"
  done | tee -a "$work/runs.txt"
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
done
echo "# medians of $RUNS runs"
bench/medians.sh < "$work/runs.txt"
