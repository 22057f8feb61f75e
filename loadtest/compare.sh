#!/usr/bin/env bash
# Runs the same load test against two brokers back to back and prints the ratios (A / B) of the
# headline figures. Loopback targets only, like the tester itself.
#
#   loadtest/compare.sh coremq:18831 mosquitto:18832 --scenario fan-out --qos 1 --duration 5
#
# LT selects the binary (default: target/release/coremq-loadtest of this workspace).
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 NAME_A:PORT_A NAME_B:PORT_B FLAGS..." >&2
  exit 2
fi
here="$(cd "$(dirname "$0")/.." && pwd)"
LT="${LT:-$here/target/release/coremq-loadtest}"
a="$1" b="$2"
shift 2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

status=0
for side in "$a" "$b"; do
  name="${side%%:*}" port="${side##*:}"
  echo "=== $name: coremq-loadtest $* --port $port" >&2
  "$LT" "$@" --port "$port" --json "$tmp/$name.json" >"$tmp/$name.txt" || status=1
  cat "$tmp/$name.txt"
done

# field FILE OBJECT KEY: a number from the one-line JSON document.
field() {
  local obj
  obj="$(grep -o "\"$2\":{[^}]*}" "$1" | head -1)"
  echo "$obj" | grep -o "\"$3\":[0-9.e+-]*" | head -1 | cut -d: -f2
}

na="${a%%:*}" nb="${b%%:*}"
printf '\n%-16s %14s %14s %8s\n' "figure" "$na" "$nb" "ratio"
for spec in throughput:sent_per_s:sent/s throughput:received_per_s:received/s \
  throughput:connects_per_s:connects/s throughput:behind_schedule:behind \
  latency_us:p50:p50_us latency_us:p99:p99_us \
  latency_us:p999:p99.9_us latency_us:max:max_us connect_latency_us:p99:connect_p99_us \
  losses:lost:lost losses:duplicates:duplicates; do
  IFS=: read -r obj key label <<<"$spec"
  va="$(field "$tmp/$na.json" "$obj" "$key")"
  vb="$(field "$tmp/$nb.json" "$obj" "$key")"
  [ -z "$va$vb" ] && continue
  awk -v l="$label" -v x="${va:-0}" -v y="${vb:-0}" 'BEGIN {
    if (x == 0 && y == 0) exit;
    r = (y > 0) ? sprintf("%.2f", x / y) : "-";
    printf "%-16s %14.0f %14.0f %8s\n", l, x, y, r }'
done
exit "$status"
