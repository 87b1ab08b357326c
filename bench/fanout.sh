#!/usr/bin/env bash
# Fan-out benchmark: switchboard serve and Sockudo side by side, in one run, same harness.
# Usage: bench/fanout.sh [K...]        (default: 1000 10000)
# Env:   SOCKUDO_BIN (default: sockudo on PATH), EVENTS (default 50), PAYLOAD (default 100),
#        RATES (default "0 20": unpaced for throughput, 20 events/s for latency)
# Not a test: numbers go to BENCHMARKS.md. Everything binds 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
KS=("${@:-1000 10000}")
read -r -a KS <<< "${KS[*]}"
EVENTS=${EVENTS:-50}
PAYLOAD=${PAYLOAD:-100}
RATES=(${RATES:-0 20})   # 0 = publish as fast as the API answers (throughput); 20/s for latency
SOCKUDO_BIN=${SOCKUDO_BIN:-$(command -v sockudo || true)}
ulimit -n "$(ulimit -Hn)"

cargo build --release -q -p switchboard-cli -p switchboard-bench
SWITCHBOARD=target/release/switchboard
HARNESS=target/release/switchboard-bench
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

run_switchboard() {
  local k=$1 port; port=$(free_port)
  RUST_LOG=warn "$SWITCHBOARD" serve --port "$port" --app-id 1000 --app-key bench-key --app-secret bench-secret 2>"$work/sb.log" &
  local pid=$!
  wait_port "$port"
  "$HARNESS" fanout --label switchboard --addr "127.0.0.1:$port" --app-id 1000 --key bench-key --secret bench-secret \
    --server-pid "$pid" --subscribers "$k" --events "$EVENTS" --payload "$PAYLOAD" --rate "$2" || true
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

run_sockudo() {
  local k=$1 port metrics; port=$(free_port); metrics=$(free_port)
  cat > "$work/sockudo.toml" <<TOML
host = "127.0.0.1"
port = $port
mode = "production"
activity_timeout = 120
max_connections = 0
shutdown_grace_period = 1
[adapter]
driver = "local"
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
driver = "memory"
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
  RUST_LOG=warn "$SOCKUDO_BIN" --config "$work/sockudo.toml" >"$work/sockudo.log" 2>&1 &
  local pid=$!
  wait_port "$port"
  "$HARNESS" fanout --label sockudo --addr "127.0.0.1:$port" --app-id 1000 --key bench-key --secret bench-secret \
    --server-pid "$pid" --subscribers "$k" --events "$EVENTS" --payload "$PAYLOAD" --rate "$2" || true
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

echo "# fan-out, $EVENTS events of ~${PAYLOAD} B padding, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
for k in "${KS[@]}"; do
  for rate in "${RATES[@]}"; do
    run_switchboard "$k" "$rate"
    if [ -n "$SOCKUDO_BIN" ]; then run_sockudo "$k" "$rate"; else echo "sockudo: not installed (set SOCKUDO_BIN)"; fi
  done
done
