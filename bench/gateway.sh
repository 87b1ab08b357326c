#!/usr/bin/env bash
# Gateway benchmark: our gateway client and the official JS client (realtime-pubsub-client
# on Node) against one `switchboard serve`, in the same run, interleaved.
# Usage: bench/gateway.sh        Env: MESSAGES (200000), JS_MESSAGES (50000), ACKS (5000),
#                                     PAYLOAD (100), RUNS (3)
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${MESSAGES:-200000}
JS_MESSAGES=${JS_MESSAGES:-50000}
ACKS=${ACKS:-5000}
PAYLOAD=${PAYLOAD:-100}
RUNS=${RUNS:-3}
[ -d interop/node_modules/realtime-pubsub-client ] || npm ci --prefix interop --no-audit --no-fund
cargo build --release -q -p switchboard-cli -p switchboard-bench
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The benchmark publishes far faster than the default 100 messages/s per connection.
cat > "$work/serve.toml" <<TOML
port = $port
max_queued_messages = 100000
[[apps]]
id = "1000"
key = "bench-key"
secret = "bench-secret"
gateway_message_rate = 100000000
TOML
RUST_LOG=warn target/release/switchboard serve --config "$work/serve.toml" 2>"$work/serve.log" &
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
echo "# gateway, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), $RUNS runs each, server and clients on one machine"
for _ in $(seq "$RUNS"); do
  target/release/switchboard-bench gateway --addr "127.0.0.1:$port" --secret bench-secret \
    --messages "$MESSAGES" --acks "$ACKS" --payload "$PAYLOAD"
  node interop/bench-gateway.mjs "127.0.0.1:$port" 1000 bench-secret "$JS_MESSAGES" "$ACKS" "$PAYLOAD"
done
