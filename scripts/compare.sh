#!/usr/bin/env bash
# coremq and Mosquitto side by side: builds coremq and coremq-loadtest in release, then for each
# scenario starts a fresh coremq and a fresh Mosquitto on free loopback ports, runs the same
# coremq-loadtest flags against each back to back, and prints one table with the coremq/Mosquitto
# ratio of every figure.
#
#   scripts/compare.sh                  # about 2.5 minutes of runs on 2 cores, plus the build
#   DURATION=5 scripts/compare.sh       # shorter runs
#
# (To compare two brokers you started yourself, loadtest/compare.sh runs one flag set against
# both and prints the ratios; this script starts and measures the brokers too.)
#
# Figures per scenario and broker:
#   msgs/s      messages received per second by all subscribers in the measured window
#   p50, p99    end-to-end latency (publisher stamp -> subscriber), in microseconds
#   CPU s/M     broker CPU seconds (utime + stime of /proc/PID/stat, all threads) over the whole
#               run, per million messages delivered over the whole run
#   cores       broker CPU seconds / wall seconds of the run; "loadgen cores" is the same for
#               coremq-loadtest (its own and its children's times). When broker + loadgen is
#               close to the machine's core count, the load generator shares the bottleneck.
#   peak RSS    VmHWM of /proc/PID/status after the run (each broker starts fresh per scenario)
#   KiB/conn    idle scenario: (VmRSS after - VmRSS before) / connections, as coremq-loadtest
#               measures it with --broker-pid
# The "target" column is issue 6's goal for the ratio (it is judged, not enforced: a missed
# target does not change the exit status).
#
# Scenarios (closed loop unless noted; MQTT 3.1.1, 64-byte payloads):
#   QoS 0 fan-out 1->100, QoS 0 pairs x100, QoS 1 pairs x100, QoS 0 fan-in 100->1,
#   fixed rate: QoS 1 pairs x10 at RATE msgs/s in total (open loop, latency corrected for
#   coordinated omission), one in flight: one QoS 1 pair waiting for each PUBACK, its two clients
#   on the same coremq shard and on different ones (coremq-loadtest --placement; Mosquitto runs the
#   same ids), idle: IDLE connections held for 5 s.
#   Content filters (issue 17, keys `unfiltered` and `filtered`, not in the default set): 10
#   publishers -> 100 subscribers on one topic, without filters, then with each subscriber's
#   $filter/ passing one publisher (10% of the traffic); Mosquitto, which has no content filters,
#   runs the unfiltered traffic both times (its subscribers would filter themselves). Extra
#   figure "CPU us/published": broker CPU per message published; issue 17's target is coremq's
#   `filtered` below its `unfiltered`.
#   Persistence (issue 14): QoS 1 pairs x100 and QoS 1 fan-in 100->1 with persistent sessions
#   (--persistent), coremq with COREMQ_DATA_DIR and COREMQ_FSYNC=$FSYNC (default batch: every
#   acknowledgement waits for a group-committed fdatasync), Mosquitto with `persistence true`
#   (which saves on its autosave interval and at exit only); extra figure "disk B/msg": bytes the
#   broker wrote to disk (/proc/PID/io write_bytes) per message delivered.
#   Issue 22 (not in the default set): fixed rates (ONLY="rates": 1k, 10k, 50k delivered msgs/s,
#   QoS 0/1/2, pairs x10 and fan-out 1->10; targets CPU per delivered message <= 0.5x and p99 <=
#   Mosquitto's) and idle-sub: IDLE idle connections with one subscription each (KiB/conn, target
#   <= 0.5x; broker cores over the whole run, the connection and subscription storm included).
#   TLS (issue 15, keys `tls-connect tls-qos0-pairs tls-qos1-pairs tls-idle`, not in the default
#   set): both brokers serve TLS on the port under test (coremq COREMQ_TLS_LISTEN, Mosquitto a
#   `listener` with certfile/keyfile) with a P-256 certificate made for the run by openssl, and
#   coremq-loadtest runs with --tls --cafile: a connect storm of 50 loops (extra figure
#   "handshakes/s": connects with their TLS handshake and CONNACK per second), QoS 0 and QoS 1
#   pairs x100, and IDLE idle TLS connections (KiB/conn). rumqttd sits these out.
#
# Settings both brokers get (where they overlap; everything else is each broker's default):
#   listen on 127.0.0.1 only, anonymous clients allowed, no persistence, no TLS
#   outgoing QoS 1/2 in flight per client      20       COREMQ_MAX_INFLIGHT / max_inflight_messages
#   queued messages per client                 1000     COREMQ_MAX_QUEUED_MESSAGES / max_queued_messages
#   queued bytes per client                    64 MiB   COREMQ_MAX_QUEUED_BYTES / max_queued_bytes
#   QoS 0 queued for offline sessions          no       COREMQ_QUEUE_QOS0 / queue_qos0_messages
#   largest packet                             1 MiB    COREMQ_MAX_PACKET_SIZE / max_packet_size
#   connections                                100000   COREMQ_MAX_CONNECTIONS / max_connections
#   longest keep alive                         65535 s  COREMQ_MAX_KEEPALIVE / max_keepalive
#   topic aliases (MQTT 5)                     10       COREMQ_TOPIC_ALIAS_MAXIMUM / max_topic_alias
#   TCP_NODELAY on client sockets              yes      (coremq always) / set_tcp_nodelay true
#   logging                                    warnings and errors only, to stderr
#   per-source-address connection limits       off      (coremq: the load generator is one address;
#                                                         Mosquitto has none)
# coremq runs one shard per online CPU (its default, pinned); Mosquitto is single-threaded by
# design. The load tester runs one unpinned worker thread per CPU (--no-pin) against both.
#
# Open files: the broker under test and the load tester run on this host, one descriptor per
# connection each, so the idle scenario needs `ulimit -n` >= 2 x IDLE + headroom. The script raises the soft limit to
# 25000 (or the hard limit, if lower); when the hard limit is too low it holds fewer idle
# connections and says so.
#
# Environment: PEERS (the other brokers, default "mosquitto"; "mosquitto rumqttd" adds rumqttd
# 0.20.0, installed with `cargo install rumqttd --version 0.20.0 --root target/rumqttd` when
# missing; rumqttd keeps nothing on disk, so it sits out the persist-* scenarios),
# DURATION (s, default 10), WARMUP (s, 2), DRAIN (s, 3), RATE (msgs/s, 20000),
# IDLE (connections, 10000), OUT (a directory to keep every run's text and JSON output),
# SKIP_BUILD=1 (use the binaries already in target/release), ONLY (scenario keys to run, e.g.
# ONLY="rate idle"; keys: qos0-fanout qos0-pairs qos1-pairs qos0-fanin rate one-same one-cross idle persist-pairs
# persist-fanin unfiltered filtered idle-sub tls-connect tls-qos0-pairs tls-qos1-pairs tls-idle, rates (or
# one of its keys, r1k-pairs-q0 ... r50k-fanout-q2); the default runs
# all but the persist-*, tls-* ones and those two), FSYNC (always or batch, for the
# persist-* scenarios: `FSYNC=always ONLY="persist-pairs persist-fanin" scripts/compare.sh`).
#
# Cleans up: only the processes it started (brokers and load tests, by PID) are stopped, on any
# exit. Exit status: 0 when every run succeeded, 1 when a run failed (the load tester's exit status
# is non-zero: losses at QoS 1, failed connections, ... or a broker died), 2 on a setup error.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
DRAIN="${DRAIN:-3}"
RATE="${RATE:-20000}"
IDLE="${IDLE:-10000}"
FSYNC="${FSYNC:-batch}"
PEERS="${PEERS:-mosquitto}"
for peer in $PEERS; do
  case "$peer" in
    mosquitto | rumqttd) ;;
    *) echo "compare.sh: PEERS: unknown broker $peer (mosquitto, rumqttd)" >&2 && exit 2 ;;
  esac
done
RUMQTTD="$here/target/rumqttd/bin/rumqttd"
# Set by run_one for the persist-* scenarios: the broker keeps its state on disk.
persist=0
# Set by run_one for the tls-* scenarios: the port under test speaks TLS.
tls=0
IDLE_HOLD=5
LT="$here/target/release/coremq-loadtest"
COREMQ="$here/target/release/coremq"

say() { echo "compare.sh: $*" >&2; }
die() {
  say "$*"
  exit 2
}

tmp="$(mktemp -d)"
pids=()

# Stops every process this script started (by PID), then removes the scratch directory.
cleanup() {
  local pid i
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for i in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT" && cp -r "$tmp"/. "$OUT"/ 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# --- prerequisites -------------------------------------------------------------------------------

if [ -z "${SKIP_BUILD:-}" ]; then
  say "building coremq and coremq-loadtest (release)"
  (cd "$here" && cargo build --release -p coremq -p coremq-loadtest) >&2 || die "build failed"
fi
[ -x "$COREMQ" ] && [ -x "$LT" ] || die "missing $COREMQ or $LT (run without SKIP_BUILD)"

MOSQUITTO="$(command -v mosquitto || true)"
[ -z "$MOSQUITTO" ] && [ -x /usr/sbin/mosquitto ] && MOSQUITTO=/usr/sbin/mosquitto
if [ -z "$MOSQUITTO" ]; then
  say "mosquitto is missing: installing Debian's package"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >&2 ||
      die "apt-get install mosquitto failed"
  elif command -v sudo >/dev/null; then
    sudo apt-get update -qq >&2 && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >&2 ||
      die "apt-get install mosquitto failed"
  else
    die "install mosquitto (apt-get install mosquitto) and run again"
  fi
  MOSQUITTO=/usr/sbin/mosquitto
  [ -x "$MOSQUITTO" ] || die "mosquitto not found after installing it"
fi

case " $PEERS " in
  *" rumqttd "*)
    if [ ! -x "$RUMQTTD" ]; then
      say "rumqttd is missing: cargo install rumqttd --version 0.20.0 --root target/rumqttd"
      cargo install rumqttd --version 0.20.0 --root "$here/target/rumqttd" >&2 ||
        die "cargo install rumqttd failed"
    fi
    ;;
esac

# Open files: see the header.
want_nofile=25000
hard_nofile="$(ulimit -Hn)"
if [ "$hard_nofile" = unlimited ] || [ "$hard_nofile" -ge "$want_nofile" ]; then
  ulimit -n "$want_nofile" 2>/dev/null || true
else
  ulimit -n "$hard_nofile" 2>/dev/null || true
fi
nofile="$(ulimit -n)"
idle_note=""
if [ "$nofile" != unlimited ] && [ $((2 * IDLE + 200)) -gt "$nofile" ]; then
  fit=$(((nofile - 200) / 2))
  idle_note="ulimit -n is $nofile (hard limit $hard_nofile, cannot raise it to $want_nofile): idle holds $fit connections instead of $IDLE"
  say "$idle_note"
  IDLE="$fit"
fi
if [ "$(id -u)" != 0 ] && [ "$(ulimit -l)" != unlimited ] && [ "$(ulimit -l)" -lt 8192 ]; then
  ulimit -l 8192 2>/dev/null || say "ulimit -l is $(ulimit -l) KiB; coremq needs 8192 (io_uring) and may refuse to start"
fi

hz="$(getconf CLK_TCK)"
ncpu="$(nproc)"

# --- processes -----------------------------------------------------------------------------------

# Broker ports are picked outside the kernel's ephemeral range (the local ports it gives client
# sockets): a previous scenario's hundreds of client sockets can still hold ports there (TIME_WAIT,
# closing), and a broker told to listen on one of them fails with "Address already in use".
read -r eph_lo eph_hi </proc/sys/net/ipv4/ip_local_port_range
port_bands=()
[ "$eph_lo" -gt 11000 ] && port_bands+=("10000 $((eph_lo - 1))")
[ "$eph_hi" -lt 64535 ] && port_bands+=("$((eph_hi + 1)) 65535")
[ "${#port_bands[@]}" -gt 0 ] || port_bands+=("1025 $((eph_lo - 1))")

# port_in_use PORT: whether any TCP socket (listening, connected or in TIME_WAIT, IPv4 or IPv6)
# has PORT at either end: what `ss -tan` shows, read from /proc so that nothing else is needed.
port_in_use() {
  awk -v p="$(printf '%04X' "$1")" 'FNR > 1 {
      split($2, l, ":"); split($3, r, ":")
      if (l[length(l)] == p || r[length(r)] == p) found = 1
    } END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# A loopback port outside the ephemeral range that no socket holds at all.
free_port() {
  local p i band lo hi
  for i in $(seq 200); do
    band="${port_bands[$((RANDOM % ${#port_bands[@]}))]}"
    read -r lo hi <<<"$band"
    p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
    if ! port_in_use "$p"; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# wait_listening PORT PID: until something accepts on PORT (10 s), as long as PID lives.
wait_listening() {
  local i
  for i in $(seq 100); do
    kill -0 "$2" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# start_broker NAME: starts a fresh broker on a free port; sets $bpid and $bport. A broker that
# does not come up is tried once more on another port before the script gives up.
start_broker() {
  local attempt
  for attempt in 1 2; do
    launch_broker "$1"
    if wait_listening "$bport" "$bpid"; then
      say "$1 running as PID $bpid on 127.0.0.1:$bport"
      return 0
    fi
    tail -5 "$tmp/$1.log" >&2
    stop_broker
    [ "$attempt" = 1 ] && say "$1 did not start listening on 127.0.0.1:$bport; trying another port"
  done
  die "$1 did not start listening on 127.0.0.1:$bport"
}

# launch_broker NAME: starts NAME on a free port in the background; sets $bpid and $bport.
launch_broker() {
  bport="$(free_port)" || die "no free loopback port"
  case "$1" in
    coremq)
      local listen="127.0.0.1:$bport" tls_listen=""
      if [ "$tls" = 1 ]; then
        # The port under test speaks TLS; the plain listener goes elsewhere.
        listen="127.0.0.1:$(free_port)" tls_listen="127.0.0.1:$bport"
      fi
      COREMQ_LISTEN="$listen" COREMQ_TLS_LISTEN="$tls_listen" \
        COREMQ_TLS_CERT="$([ "$tls" = 1 ] && echo "$tmp/pki/server.pem")" \
        COREMQ_TLS_KEY="$([ "$tls" = 1 ] && echo "$tmp/pki/server.key")" \
        COREMQ_LOG=warn COREMQ_ALLOW_ANONYMOUS=true \
        COREMQ_MAX_INFLIGHT=20 COREMQ_MAX_QUEUED_MESSAGES=1000 COREMQ_MAX_QUEUED_BYTES=64MiB \
        COREMQ_QUEUE_QOS0=false COREMQ_MAX_PACKET_SIZE=1MiB COREMQ_MAX_CONNECTIONS=100000 \
        COREMQ_MAX_KEEPALIVE=65535 COREMQ_TOPIC_ALIAS_MAXIMUM=10 \
        COREMQ_MAX_CONNECTIONS_PER_ADDRESS=0 COREMQ_CONNECTION_RATE_PER_ADDRESS=0 \
        COREMQ_DATA_DIR="$([ "$persist" = 1 ] && echo "$tmp/data-$bport")" COREMQ_FSYNC="$FSYNC" \
        "$COREMQ" >>"$tmp/coremq.log" 2>&1 &
      bpid=$!
      ;;
    mosquitto)
      cat >"$tmp/mosquitto.conf" <<EOF
listener $bport 127.0.0.1
$([ "$tls" = 1 ] && printf 'certfile %s\nkeyfile %s\n' "$tmp/pki/server.pem" "$tmp/pki/server.key")
allow_anonymous true
persistence $([ "$persist" = 1 ] && echo true || echo false)
persistence_location $tmp/
max_inflight_messages 20
max_queued_messages 1000
max_queued_bytes 67108864
queue_qos0_messages false
max_packet_size 1048576
max_connections 100000
max_keepalive 65535
max_topic_alias 10
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
connection_messages false
EOF
      "$MOSQUITTO" -c "$tmp/mosquitto.conf" >>"$tmp/mosquitto.log" 2>&1 &
      bpid=$!
      ;;
    rumqttd)
      # The same limits where rumqttd has them (no queue-length or keep-alive settings).
      cat >"$tmp/rumqttd.toml" <<EOF
id = 0

[router]
id = 0
max_connections = 100010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:$bport"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 1048576
    max_inflight_count = 20
    dynamic_filters = true
EOF
      "$RUMQTTD" --config "$tmp/rumqttd.toml" >>"$tmp/rumqttd.log" 2>&1 &
      bpid=$!
      ;;
  esac
  pids+=("$bpid")
}

stop_broker() {
  local i
  kill -TERM "$bpid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$bpid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$bpid" 2>/dev/null || true
  wait "$bpid" 2>/dev/null || true
  forget "$bpid"
}

# CPU clock ticks (user + system, all threads) of a live process.
cpu_ticks() {
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# Seconds of CPU used by this shell's reaped children (user + system), from the `times` output
# in file $1 (`times` must run in this shell itself, not in a command substitution's subshell).
children_cpu() {
  tail -1 "$1" | awk '{
    s = 0
    for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); s += a[1] * 60 + a[2] }
    printf "%.2f", s }'
}

# Drops a reaped PID from the clean-up list (PIDs get reused).
forget() {
  local keep=() p
  for p in "${pids[@]}"; do
    [ "$p" = "$1" ] || keep+=("$p")
  done
  pids=("${keep[@]}")
}

# field FILE OBJECT KEY: a number from the load tester's one-line JSON document (empty if absent).
field() {
  local obj
  obj="$(grep -o "\"$2\":{[^}]*}" "$1" | head -1 || true)"
  echo "$obj" | grep -o "\"$3\":[0-9.e+-]*" | head -1 | cut -d: -f2 || true
}
top_field() { grep -o "\"$2\":[0-9.e+-]*" "$1" | head -1 | cut -d: -f2 || true; }

# --- runs ----------------------------------------------------------------------------------------

common=(--no-pin --warmup "$WARMUP" --duration "$DURATION" --drain "$DRAIN"
  --max-runtime "$((WARMUP + DURATION + DRAIN + 30))")
scenarios=(
  "qos0-fanout|QoS 0 fan-out 1->100|--scenario fan-out --publishers 1 --subscribers 100 --qos 0"
  "qos0-pairs|QoS 0 pairs x100|--scenario pairs --pairs 100 --qos 0"
  "qos1-pairs|QoS 1 pairs x100|--scenario pairs --pairs 100 --qos 1"
  "qos0-fanin|QoS 0 fan-in 100->1|--scenario fan-in --publishers 100 --subscribers 1 --qos 0"
  "rate|QoS 1 pairs x10 at $RATE/s|--scenario pairs --pairs 10 --qos 1 --rate $RATE"
  "one-same|QoS 1, 1 in flight, same|--scenario pairs --pairs 1 --qos 1 --inflight 1 --placement same"
  "one-cross|QoS 1, 1 in flight, cross|--scenario pairs --pairs 1 --qos 1 --inflight 1 --placement cross"
  "idle|$IDLE idle connections|--scenario idle --connections $IDLE"
  "persist-pairs|QoS 1 pairs x100, stored|--scenario pairs --pairs 100 --qos 1 --persistent"
  "persist-fanin|QoS 1 fan-in 100->1, stored|--scenario fan-in --publishers 100 --subscribers 1 --qos 1 --persistent"
  "unfiltered|QoS 0 10->100, no filter|--scenario fan-out --publishers 10 --subscribers 100 --qos 0"
  "filtered|QoS 0 10->100, 10% each|--scenario filtered --publishers 10 --subscribers 100 --qos 0|--scenario fan-out --publishers 10 --subscribers 100 --qos 0"
  "idle-sub|$IDLE idle connections, 1 subscription each|--scenario idle --connections $IDLE --subscribe"
  "tls-connect|TLS connect storm x50|--scenario connect --connections 50"
  "tls-qos0-pairs|TLS QoS 0 pairs x100|--scenario pairs --pairs 100 --qos 0"
  "tls-qos1-pairs|TLS QoS 1 pairs x100|--scenario pairs --pairs 100 --qos 1"
  "tls-idle|$IDLE idle TLS connections|--scenario idle --connections $IDLE"
)
# Issue 22's fixed rates (open loop, delivered msgs/s): 1k, 10k and 50k, QoS 0/1/2, pairs x10 and
# fan-out 1->10 (its publisher sends a tenth of the rate). Keys r1k-pairs-q0 ... r50k-fanout-q2;
# ONLY="rates" runs them all.
rate_keys=()
for r in 1000 10000 50000; do
  for shape in pairs fanout; do
    for q in 0 1 2; do
      key="r$((r / 1000))k-$shape-q$q"
      rate_keys+=("$key")
      if [ "$shape" = pairs ]; then
        scenarios+=("$key|QoS $q pairs x10 at $((r / 1000))k/s|--scenario pairs --pairs 10 --qos $q --rate $r")
      else
        scenarios+=("$key|QoS $q fan-out 1->10 at $((r / 1000))k/s|--scenario fan-out --publishers 1 --subscribers 10 --qos $q --rate $((r / 10))")
      fi
    done
  done
done
case " ${ONLY:-} " in *" rates "*) ONLY="$ONLY ${rate_keys[*]}" ;; esac
if [ -z "${ONLY:-}" ]; then
  ONLY="qos0-fanout qos0-pairs qos1-pairs qos0-fanin rate one-same one-cross idle"
fi
if [ -n "${ONLY:-}" ]; then
  chosen=()
  for s in "${scenarios[@]}"; do
    # Two clients on different shards need two shards.
    [ "${s%%|*}" = one-cross ] && [ "$ncpu" -lt 2 ] && continue
    case " $ONLY " in *" ${s%%|*} "*) chosen+=("$s") ;; esac
  done
  [ "${#chosen[@]}" -gt 0 ] || die "ONLY=\"$ONLY\" matches no scenario"
  scenarios=("${chosen[@]}")
fi

# A CA and a server certificate for 127.0.0.1 for the tls-* scenarios.
case " ${scenarios[*]} " in
  *"tls-"*)
    command -v openssl >/dev/null || die "the tls-* scenarios need openssl (apt-get install openssl)"
    mkdir -p "$tmp/pki"
    (
      cd "$tmp/pki"
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=compare.sh CA" -keyout ca.key -out ca.pem
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
        -keyout server.key -out server.csr
      printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >ext
      openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile ext -out server.pem
    ) >/dev/null 2>&1 || die "openssl could not make the test certificates"
    # Mosquitto started as root reads them as the mosquitto user (a throwaway key, for this run).
    chmod a+rx "$tmp" "$tmp/pki" && chmod a+r "$tmp"/pki/*
    ;;
esac

status=0
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
started="$(date +%s)"

# run_one KEY BROKER FLAGS...: one load test against a fresh broker; figures go to $tmp/KEY.BROKER.*
run_one() {
  local key="$1" broker="$2"
  shift 2
  case "$key" in persist-*) persist=1 ;; *) persist=0 ;; esac
  case "$key" in tls-*) tls=1 ;; *) tls=0 ;; esac
  start_broker "$broker"
  local extra=()
  [ "$tls" = 1 ] && extra=(--tls --cafile "$tmp/pki/ca.pem")
  local flags=("$@" "${extra[@]}" --port "$bport" --json "$tmp/$key.$broker.json")
  if [ "$key" = idle ] || [ "$key" = tls-idle ] || [ "$key" = idle-sub ]; then
    flags=("$@" "${extra[@]}" --port "$bport" --json "$tmp/$key.$broker.json" --broker-pid "$bpid"
      --warmup 0 --duration "$IDLE_HOLD" --drain 0 --max-runtime 120)
  else
    flags=("${common[@]}" "${flags[@]}")
  fi
  echo "coremq-loadtest ${flags[*]}" >"$tmp/$key.$broker.cmd"
  say "$key against $broker: coremq-loadtest ${flags[*]}"
  local c0 c1 t0 t1 l0 l1 rc=0
  c0="$(cpu_ticks "$bpid")"
  times >"$tmp/times"
  l0="$(children_cpu "$tmp/times")"
  t0="$(date +%s.%N)"
  "$LT" "${flags[@]}" >"$tmp/$key.$broker.txt" 2>"$tmp/$key.$broker.err" &
  local lt=$!
  pids+=("$lt")
  wait "$lt" || rc=$?
  forget "$lt"
  t1="$(date +%s.%N)"
  times >"$tmp/times"
  l1="$(children_cpu "$tmp/times")"
  if ! kill -0 "$bpid" 2>/dev/null; then
    say "$broker (PID $bpid) died during $key"
    tail -5 "$tmp/$broker.log" >&2
    rc=1
    c1="$c0"
  else
    c1="$(cpu_ticks "$bpid")"
    awk '/^VmHWM:/ { print $2 }' "/proc/$bpid/status" >"$tmp/$key.$broker.hwm"
    awk '/^write_bytes:/ { print $2 }' "/proc/$bpid/io" >"$tmp/$key.$broker.disk"
  fi
  awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN { printf "%.2f", (b - a) / hz }' >"$tmp/$key.$broker.cpu"
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }' >"$tmp/$key.$broker.wall"
  awk -v a="$l0" -v b="$l1" 'BEGIN { printf "%.2f", b - a }' >"$tmp/$key.$broker.ltcpu"
  stop_broker
  if [ "$rc" -ne 0 ]; then
    say "$key against $broker FAILED (exit status $rc):"
    cat "$tmp/$key.$broker.txt" >&2
    tail -3 "$tmp/$key.$broker.err" >&2
    echo "$rc" >"$tmp/$key.$broker.failed"
    status=1
  fi
}

for s in "${scenarios[@]}"; do
  IFS='|' read -r key title flags mflags <<<"$s"
  for broker in coremq $PEERS; do
    # rumqttd keeps nothing on disk, and is compared over plain TCP only.
    case "$broker.$key" in rumqttd.persist-* | rumqttd.tls-*) continue ;; esac
    # A fourth field: what the other brokers run instead (they have no content filters).
    if [ "$broker" != coremq ] && [ -n "${mflags:-}" ]; then
      read -r -a args <<<"$mflags"
    else
      read -r -a args <<<"$flags"
    fi
    run_one "$key" "$broker" "${args[@]}"
  done
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- table ---------------------------------------------------------------------------------------

# value KEY BROKER FIGURE: one figure of one run, empty when not available.
value() {
  local f="$tmp/$1.$2"
  [ -f "$f.json" ] || return 0
  case "$3" in
    msgs) field "$f.json" throughput received_per_s | awk '{ printf "%.0f", $1 }' ;;
    connects) field "$f.json" throughput connects_per_s | awk '{ printf "%.0f", $1 }' ;;
    connect_p99) field "$f.json" connect_latency_us p99 ;;
    p50) field "$f.json" latency_us p50 ;;
    p99) field "$f.json" latency_us p99 ;;
    lost) field "$f.json" losses lost ;;
    behind) field "$f.json" throughput behind_schedule ;;
    cpu_per_m)
      awk -v c="$(cat "$f.cpu")" -v n="$(field "$f.json" throughput received_total)" \
        'BEGIN { if (n > 0) printf "%.3f", c / (n / 1e6) }'
      ;;
    cpu_per_pub)
      awk -v c="$(cat "$f.cpu")" -v n="$(field "$f.json" throughput sent_total)" \
        'BEGIN { if (n > 0) printf "%.2f", c / n * 1e6 }'
      ;;
    cores) awk -v c="$(cat "$f.cpu")" -v w="$(cat "$f.wall")" 'BEGIN { if (w > 0) printf "%.2f", c / w }' ;;
    ltcores) awk -v c="$(cat "$f.ltcpu")" -v w="$(cat "$f.wall")" 'BEGIN { if (w > 0) printf "%.2f", c / w }' ;;
    disk)
      [ -s "$f.disk" ] && awk -v d="$(cat "$f.disk")" -v n="$(field "$f.json" throughput received_total)" \
        'BEGIN { if (n > 0) printf "%.1f", d / n }'
      ;;
    hwm) if [ -s "$f.hwm" ]; then awk '{ printf "%.1f", $1 / 1024 }' "$f.hwm"; fi ;;
    kib_conn)
      awk -v a="$(top_field "$f.json" broker_rss_before_kib)" \
        -v b="$(top_field "$f.json" broker_rss_after_kib)" \
        -v n="$(field "$f.json" connections set_up)" \
        'BEGIN { if (n > 0 && b != "") printf "%.2f", (b - a) / n }'
      ;;
  esac
  return 0
}

# row TITLE LABEL KEY FIGURE TARGET: one figure of every broker, each peer's with coremq / it;
# TARGET (">=1.5", "<=0.5", "<1", "<=1" or "") is judged on the ratio to the first peer.
row() {
  local a b cells="" first="" any=""
  a="$(value "$3" coremq "$4")"
  [ -n "$a" ] && any=1
  for peer in $PEERS; do
    b="$(value "$3" "$peer" "$4")"
    [ -n "$b" ] && any=1
    cells="$cells$(awk -v a="$a" -v b="$b" 'BEGIN {
      r = (a != "" && b != "" && b + 0 != 0) ? sprintf("%.2f", a / b) : "-"
      printf " %14s %8s", b == "" ? "-" : b, r }')"
    if [ -z "$first" ]; then
      first="$(awk -v a="$a" -v b="$b" 'BEGIN { if (a != "" && b != "" && b + 0 != 0) print a / b }')"
    fi
  done
  [ -z "$any" ] && return 0
  awk -v t="$1" -v l="$2" -v a="$a" -v c="$cells" -v r="$first" -v g="$5" 'BEGIN {
    verdict = ""
    if (g != "" && r != "") {
      op = g; sub(/[0-9.]+$/, "", op); x = g; sub(/^[<>=]+/, "", x)
      ok = (op == ">=") ? r >= x : (op == "<=") ? r <= x : (op == "<") ? r < x : 0
      verdict = g (ok ? " ok" : " MISS")
    }
    printf "%-28s %-16s %14s%s  %s\n", t, l, a == "" ? "-" : a, c, verdict }'
}

{
  echo
  # (`mosquitto -h` exits 3: the version is read from its output, whatever its status.)
  versions="Mosquitto $({ "$MOSQUITTO" -h 2>&1 || true; } | head -1 | awk '{ print $3 }')"
  case " $PEERS " in *" rumqttd "*) versions="$versions, rumqttd 0.20.0" ;; esac
  echo "coremq vs $versions · $(date -u +%Y-%m-%dT%H:%MZ) · $ncpu CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')) · Linux $(uname -r)"
  echo "load average before: $load_before · after: $load_after · runs: warm-up ${WARMUP}s, measured ${DURATION}s, drain ≤${DRAIN}s · $(($(date +%s) - started)) s in all"
  [ -n "$idle_note" ] && echo "note: $idle_note"
  echo
  header="$(printf '%-28s %-16s %14s' scenario figure coremq)"
  for peer in $PEERS; do header="$header$(printf ' %14s %8s' "$peer" ratio)"; done
  printf '%s  target\n' "$header"
  printf '%s\n' "$(printf '%.0s-' $(seq 100))"
  for s in "${scenarios[@]}"; do
    IFS='|' read -r key title _ <<<"$s"
    if [ "$key" = idle ] || [ "$key" = tls-idle ] || [ "$key" = idle-sub ]; then
      goal_mem="<=1"
      # Issue 22: a connection with one subscription costs at most half of Mosquitto's.
      [ "$key" = idle-sub ] && goal_mem="<=0.5"
      row "$title" "KiB/conn" "$key" kib_conn "$goal_mem"
      [ "$key" = idle-sub ] && row "" "broker cores" "$key" cores ""
      row "" "peak RSS MiB" "$key" hwm ""
    elif [ "$key" = tls-connect ]; then
      row "$title" "handshakes/s" "$key" connects ">=1"
      row "" "connect p99 us" "$key" connect_p99 ""
      row "" "broker cores" "$key" cores ""
      row "" "peak RSS MiB" "$key" hwm ""
    else
      goal_tp=">=1.5" goal_cpu="<=0.5" goal_p99=""
      [ "$key" = rate ] && goal_tp="" goal_cpu="" goal_p99="<1"
      # Issue 22's goals at fixed rates: CPU per delivered message <= 0.5x, p99 no worse.
      case "$key" in r[0-9]*k-*) goal_tp="" goal_cpu="<=0.5" goal_p99="<=1" ;; esac
      # Issue 22's goals for a client that waits for each acknowledgement.
      case "$key" in one-*) goal_tp=">=1.2" goal_cpu="<=0.5" goal_p99="<=1" ;; esac
      # coremq filters; Mosquitto carries all of it (its subscribers would filter): compare the
      # broker CPU per published message (issue 17's target: below the unfiltered fan-out's).
      case "$key" in unfiltered | filtered) goal_tp="" goal_cpu="" ;; esac
      row "$title" "msgs/s" "$key" msgs "$goal_tp"
      case "$key" in unfiltered | filtered) row "" "CPU us/published" "$key" cpu_per_pub "" ;; esac
      row "" "p50 us" "$key" p50 ""
      row "" "p99 us" "$key" p99 "$goal_p99"
      row "" "CPU s/M msgs" "$key" cpu_per_m "$goal_cpu"
      row "" "broker cores" "$key" cores ""
      row "" "loadgen cores" "$key" ltcores ""
      row "" "peak RSS MiB" "$key" hwm ""
      [ "$(value "$key" coremq lost)$(value "$key" mosquitto lost)" != 00 ] &&
        row "" "lost" "$key" lost ""
      [ "$key" = rate ] && row "" "behind schedule" "$key" behind ""
      case "$key" in persist-*) row "" "disk B/msg" "$key" disk "" ;; esac
    fi
    for broker in coremq $PEERS; do
      [ -f "$tmp/$key.$broker.failed" ] && echo "  !! $broker run FAILED (exit status $(cat "$tmp/$key.$broker.failed"))"
    done
  done
  echo
  echo "ratio = coremq / the broker left of it; targets are judged on the first. Load tests: coremq-loadtest ${common[*]} SCENARIO FLAGS --port PORT"
} | sed 's/[[:space:]]*$//'

exit "$status"
