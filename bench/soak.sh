#!/usr/bin/env bash
# Soak: CONNECTIONS (10000) connections to `switchboard serve`, CHURN (100) of them replaced
# every second for DURATION (300) seconds, PUBLISH_RATE (20) events/s published; the server's RSS and
# open descriptors are sampled every SAMPLE_EVERY (15) s, and again once every connection
# has closed. Everything binds 127.0.0.1. Not a test: the numbers go to BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${CONNECTIONS:-10000}
DURATION=${DURATION:-300}
CHURN=${CHURN:-100}
PUBLISH_RATE=${PUBLISH_RATE:-20}
SAMPLE_EVERY=${SAMPLE_EVERY:-15}
ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p switchboard-cli -p switchboard-bench
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=warn target/release/switchboard serve --port "$port" --app-id 1000 --app-key soak-key --app-secret soak-secret 2>"$work/server.log" &
pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
echo "# soak, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), switchboard serve pid $pid"
target/release/switchboard-bench soak --addr "127.0.0.1:$port" --app-id 1000 --key soak-key --secret soak-secret \
  --server-pid "$pid" --connections "$CONNECTIONS" --seconds "$DURATION" --churn "$CHURN" \
  --publish-rate "$PUBLISH_RATE" --sample-every "$SAMPLE_EVERY"
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
grep -c . "$work/server.log" | xargs echo "server log lines:"
