#!/usr/bin/env bash
# Scale-out benchmark: one node without Redis, one node with scaling on, and three nodes
# behind one redis-server, in the same run, same harness (subscribers spread over the nodes,
# events published through the first). Also counts Redis round trips per publish and per
# subscribe from redis-server's own command statistics.
# Usage: bench/scaling.sh        Env: K (1000), EVENTS (50), PAYLOAD (100), RATES ("0 20"),
# SOCKUDO_BIN (a Sockudo built with `--features local,redis`: run beside ours, one node on its
# local adapter and three on its Redis adapter)
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
redis_port=$(free_port)   # Sockudo's adapter takes a redis:// URL; ours uses the unix socket
redis-server --port "$redis_port" --bind 127.0.0.1 --unixsocket "$redis_sock" --save "" --appendonly no \
  --daemonize yes --pidfile "$work/redis.pid" >/dev/null
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
        --redis "unix://$redis_sock" >/dev/null 2>>"$work/sb.log" &
    else
      RUST_LOG=warn "$SWITCHBOARD" serve --port "$port" --app-id 1000 --app-key bench-key --app-secret bench-secret >/dev/null 2>>"$work/sb.log" &
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

SOCKUDO_BIN=${SOCKUDO_BIN:-$(command -v sockudo || true)}
# start_sockudo N DRIVER -> prints "pid:port" per node (DRIVER: local or redis)
start_sockudo() {
  local n=$1 driver=$2 i port metrics conf cache=memory
  # Sockudo refuses a clustered node with a node-local cache (it deduplicates through it).
  [ "$driver" = redis ] && cache=redis
  for i in $(seq "$n"); do
    port=$(free_port); metrics=$(free_port); conf="$work/sockudo-$i.toml"
    cat > "$conf" <<TOML
host = "127.0.0.1"
port = $port
mode = "production"
activity_timeout = 120
max_connections = 0
shutdown_grace_period = 1
[adapter]
driver = "$driver"
[adapter.redis]
prefix = "sockudo_bench:"
requests_timeout = 5000
[database.redis]
host = "127.0.0.1"
port = $redis_port
[app_manager]
driver = "memory"
[app_manager.array]
[[app_manager.array.apps]]
id = "1000"
key = "bench-key"
secret = "bench-secret"
enabled = true
[app_manager.array.apps.policy.limits]
max_connections = 0
max_client_events_per_second = 10000
max_presence_members_per_channel = 100
max_presence_member_size_in_kb = 2
max_event_payload_in_kb = 10
max_event_batch_size = 10
[cache]
driver = "$cache"
[queue]
driver = "memory"
[rate_limiter]
enabled = false
driver = "memory"
[metrics]
enabled = false
host = "127.0.0.1"
port = $metrics
TOML
    RUST_LOG=warn "$SOCKUDO_BIN" --config "$conf" >>"$work/sockudo.log" 2>&1 &
    echo "$!:$port"
    wait_port "$port" >&2
  done
}

run_sockudo() {
  local label=$1 n=$2 driver=$3 rate=$4 nodes first others node
  nodes=$(start_sockudo "$n" "$driver")
  first=$(echo "$nodes" | head -1)
  others=()
  for node in $(echo "$nodes" | tail -n +2); do others+=(--also-addr "127.0.0.1:${node##*:}"); done
  sleep 1   # let the nodes find each other on the bus
  "$HARNESS" fanout --label "$label" --addr "127.0.0.1:${first##*:}" --app-id 1000 --key bench-key --secret bench-secret \
    --server-pid "${first%%:*}" --subscribers "$K" --events "$EVENTS" --payload "$PAYLOAD" --rate "$rate" "${others[@]}" || true
  for node in $nodes; do kill -TERM "${node%%:*}"; done
  wait 2>/dev/null || true
}

echo "# scale-out fan-out, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), K=$K events=$EVENTS payload=${PAYLOAD}B"
for rate in "${RATES[@]}"; do
  run "1 node" 1 no "$rate"
  run "1 node+redis" 1 yes "$rate"
  run "3 nodes" 3 yes "$rate"
  if [ -n "$SOCKUDO_BIN" ]; then
    run_sockudo "sockudo 1" 1 local "$rate"
    run_sockudo "sockudo 3+redis" 3 redis "$rate"
  else
    echo "sockudo: not installed (set SOCKUDO_BIN to a build with --features local,redis)"
  fi
done
# Round trips per operation, measured alone on one scaled node whose heartbeat is parked
# (60 s), so only the operations themselves reach Redis: subscribes (+ their leaves), then
# publishes to one subscriber.
export SWITCHBOARD_SCALING_HEARTBEAT_MS=60000 SWITCHBOARD_SCALING_LEASE_MS=120000
per_op() {
  local subs=$1 events=$2 nodes node c0 c1
  nodes=$(start_nodes 1 yes); node=$(echo "$nodes" | head -1)
  sleep 0.5
  c0=$(calls)
  "$HARNESS" fanout --label "round trips" --addr "127.0.0.1:${node##*:}" --app-id 1000 --key bench-key --secret bench-secret \
    --server-pid "${node%%:*}" --subscribers "$subs" --events "$events" --payload "$PAYLOAD" --rate 0 >/dev/null || true
  sleep 0.5   # the leaves of the closed subscribers
  c1=$(calls)
  kill -TERM "${node%%:*}"; wait 2>/dev/null || true
  echo $((c1 - c0))
}
subs_calls=$(per_op 200 1)
pub_calls=$(per_op 1 200)
# Only scripts run on these paths (a command inside a script is not a round trip), and a
# script's first use on a connection may cost one NOSCRIPT retry.
echo "# script round trips: 200 subscribes + 200 leaves + 1 publish = $subs_calls; 1 subscribe + 1 leave + 200 publishes = $pub_calls"
python3 -c "print(f'# per subscribe+leave: {($subs_calls - 1) / 200:.2f}   per publish: {($pub_calls - 2) / 200:.2f}')"
kill "$(cat "$work/redis.pid")" 2>/dev/null || true
