#!/usr/bin/env bash
# Cross-node throughput and latency of a coremq cluster against a single node, on loopback.
#
#   scripts/cluster-bench.sh              # DURATION=8 seconds per row
#   SKIP_BUILD=1 DURATION=4 ONLY="pairs-q0 fanout-q0" scripts/cluster-bench.sh
#
# Starts a three-server NATS cluster with JetStream (Debian nats-server) on 127.0.0.1-3, three
# coremq nodes on 127.0.0.1-3 (SHARDS each, default 1) joined to it, and a lone coremq on
# 127.0.0.4 (no cluster) for the baseline; then runs coremq-loadtest with publishers on node 1
# and subscribers on node 1 (same node) or node 2 (cross-node). Everything it starts it stops by
# pid. Prints one table; the JSON of every row stays in $OUT (default target/cluster-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-8}
SHARDS=${SHARDS:-1}
OUT=${OUT:-target/cluster-bench}
NATS=${NATS:-/usr/sbin/nats-server}
[ -x "$NATS" ] || { echo "cluster-bench: $NATS missing (apt-get install nats-server)" >&2; exit 2; }
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release --workspace -q
fi
BIN=target/release/coremq
LT=target/release/coremq-loadtest
mkdir -p "$OUT"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  cp "$work"/*.log "$OUT"/ 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() { # host port
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "cluster-bench: nothing listens on $1:$2" >&2
  exit 1
}

routes="nats-route://127.0.0.1:16222, nats-route://127.0.0.2:16222, nats-route://127.0.0.3:16222"
urls="nats://127.0.0.1:14222,nats://127.0.0.2:14222,nats://127.0.0.3:14222"
for i in 1 2 3; do
  cat >"$work/n$i.conf" <<CONF
server_name: n$i
host: 127.0.0.$i
port: 14222
jetstream { store_dir: "$work/js$i" }
cluster { name: cmq, host: 127.0.0.$i, port: 16222, routes: [$routes] }
CONF
  "$NATS" -c "$work/n$i.conf" 2>"$work/nats$i.log" &
  pids+=($!)
done
for i in 1 2 3; do wait_port "127.0.0.$i" 14222; done

start_node() { # address [cluster node id]
  local env=(COREMQ_LISTEN="$1:1883" COREMQ_SHARDS="$SHARDS" COREMQ_PIN=false
    COREMQ_CONNECTION_RATE_PER_ADDRESS=0 COREMQ_MAX_CONNECTIONS_PER_ADDRESS=0 COREMQ_LOG="${LOG:-warn}")
  if [ -n "${2:-}" ]; then env+=(COREMQ_CLUSTER_NATS="$urls" COREMQ_NODE_ID="$2"); fi
  env "${env[@]}" "$BIN" 2>"$work/$1.log" &
  pids+=($!)
  wait_port "$1" 1883
}
start_node 127.0.0.1 node1
start_node 127.0.0.2 node2
start_node 127.0.0.3 node3
start_node 127.0.0.4
# The buckets and the NATS subscriptions come up in the background.
sleep 3

field() { # file key1 key2
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d[sys.argv[2]][sys.argv[3]])' "$@"
}

rows=(
  "pairs-q0|--scenario pairs --pairs 100 --qos 0"
  "pairs-q1|--scenario pairs --pairs 100 --qos 1"
  "fanout-q0|--scenario fan-out --publishers 1 --subscribers 100 --qos 0"
  "pairs-q1-10k|--scenario pairs --pairs 10 --qos 1 --rate 10000"
)
where=(
  "single|127.0.0.4|127.0.0.4"
  "same-node|127.0.0.1|127.0.0.1"
  "cross-node|127.0.0.1|127.0.0.2"
)
printf '%-13s %-11s %12s %10s %10s %6s\n' row placement msgs/s p50_us p99_us lost
for row in "${rows[@]}"; do
  key=${row%%|*}
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $key "* ]]; then continue; fi
  read -r -a flags <<<"${row#*|}"
  for w in "${where[@]}"; do
    IFS='|' read -r name pub sub <<<"$w"
    json="$OUT/$key.$name.json"
    "$LT" "${flags[@]}" --host "$pub" --sub-host "$sub" --duration "$DURATION" --warmup 1 \
      --json "$json" >"$OUT/$key.$name.txt" 2>&1 || true
    printf '%-13s %-11s %12.0f %10s %10s %6s\n' "$key" "$name" \
      "$(field "$json" throughput received_per_s)" "$(field "$json" latency_us p50)" \
      "$(field "$json" latency_us p99)" "$(field "$json" losses lost)"
  done
done
