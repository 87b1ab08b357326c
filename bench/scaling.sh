#!/usr/bin/env bash
# Scale-out benchmark: one node without Redis, one node with scaling on, and three nodes
# behind one redis-server, in the same run, same harness (subscribers spread over the nodes,
# events published through the first). Also counts Redis round trips per publish and per
# subscribe from redis-server's own command statistics.
# Usage: bench/scaling.sh        Env: K (1000), EVENTS (50), PAYLOAD (100), RATES ("0 20")
# Not a test: numbers go to BENCHMARKS.md. Everything binds 127.0.0.1 or a unix socket.
set -euo pipefail
cd "$(dirname "$0")/.."
K=${K:-1000}
EVENTS=${EVENTS:-50}
PAYLOAD=${PAYLOAD:-100}
RATES=(${RATES:-0 20})
ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p switchboard-cli -p switchboard-bench
SWITCHBOARD=target/release/switchboard
HARNESS=target/release/switchboard-bench
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

redis_sock="$work/redis.sock"
redis-server --port 0 --unixsocket "$redis_sock" --save "" --appendonly no --daemonize yes --pidfile "$work/redis.pid" >/dev/null
for _ in $(seq 100); do [ -S "$redis_sock" ] && break; sleep 0.05; done
redis() { redis-cli -s "$redis_sock" "$@"; }
# Round trips so far that ran a script (every join, leave, publish and heartbeat is one).
calls() { redis info commandstats | awk -F'[:=,]' '/^cmdstat_(evalsha|eval):/ {n+=$3} END {print n+0}'; }

# start_nodes N SCALING -> prints "pid:port" per node
start_nodes() {
  local n=$1 scaling=$2 i port
  for i in $(seq "$n"); do
    port=$(free_port)
    if [ "$scaling" = yes ]; then
      RUST_LOG=warn "$SWITCHBOARD" serve --port "$port" --app-id 1000 --app-key bench-key --app-secret bench-secret \
        --redis "unix://$redis_sock" 2>>"$work/sb.log" &
    else
      RUST_LOG=warn "$SWITCHBOARD" serve --port "$port" --app-id 1000 --app-key bench-key --app-secret bench-secret 2>>"$work/sb.log" &
    fi
    echo "$!:$port"
    wait_port "$port" >&2
  done
}

run() {
  local label=$1 n=$2 scaling=$3 rate=$4 nodes first others pid c0 c1
  nodes=$(start_nodes "$n" "$scaling")
  first=$(echo "$nodes" | head -1)
  pid=${first%%:*}
  others=()
  for node in $(echo "$nodes" | tail -n +2); do others+=(--also-addr "127.0.0.1:${node##*:}"); done
  c0=$(calls)
  "$HARNESS" fanout --label "$label" --addr "127.0.0.1:${first##*:}" --app-id 1000 --key bench-key --secret bench-secret \
    --server-pid "$pid" --subscribers "$K" --events "$EVENTS" --payload "$PAYLOAD" --rate "$rate" "${others[@]}" || true
  c1=$(calls)
  if [ "$scaling" = yes ]; then
    echo "  script round trips during the run: $((c1 - c0)) for $K subscribes + $EVENTS publishes + $K leaves (+ heartbeats)"
  fi
  for node in $nodes; do kill -TERM "${node%%:*}"; done
  wait 2>/dev/null || true
}

echo "# scale-out fan-out, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), K=$K events=$EVENTS payload=${PAYLOAD}B"
for rate in "${RATES[@]}"; do
  run "1 node" 1 no "$rate"
  run "1 node+redis" 1 yes "$rate"
  run "3 nodes" 3 yes "$rate"
done
# Round trips per operation, measured alone: subscribes, then publishes, on one scaled node.
redis config resetstat >/dev/null
nodes=$(start_nodes 1 yes); node=$(echo "$nodes" | head -1)
sleep 1.2; redis config resetstat >/dev/null   # drop the start-up heartbeat
"$HARNESS" fanout --label "round trips" --addr "127.0.0.1:${node##*:}" --app-id 1000 --key bench-key --secret bench-secret \
  --server-pid "${node%%:*}" --subscribers 200 --events 200 --payload "$PAYLOAD" --rate 0 >/dev/null || true
echo "# redis commands in a run of 200 subscribes + 200 publishes + 200 unsubscribes (heartbeats included):"
redis info commandstats | grep -E '^cmdstat_(evalsha|eval|get|zadd|hset|publish|ping|hgetall)' || true
kill -TERM "${node%%:*}"; wait 2>/dev/null || true
kill "$(cat "$work/redis.pid")" 2>/dev/null || true
