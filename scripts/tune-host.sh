#!/usr/bin/env bash
# Shows the kernel settings and limits a dedicated coremq host needs, with what each is for;
# with --apply, sets them (root only) for the running system. Persist them yourself in
# /etc/sysctl.d/ and the service unit (scripts/coremq.service sets the limits).
set -euo pipefail

apply=false
case "${1:-}" in
  --apply) apply=true ;;
  ""|--show) ;;
  -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--show|--apply]" >&2; exit 2 ;;
esac

# name, wanted value, why
settings=(
  "net.core.somaxconn|4096|listen backlog per shard socket: connection storms queue instead of being refused"
  "net.ipv4.tcp_max_syn_backlog|8192|half-open connections waiting for the handshake during storms"
  "net.ipv4.ip_local_port_range|1024 65535|ephemeral ports for load generators on the same host (loopback tests)"
  "net.ipv4.tcp_tw_reuse|1|reuse TIME_WAIT ports for outgoing connections (load tests, bridges)"
  "fs.file-max|2097152|system-wide file descriptors: coremq uses one per connection (load generators on the same host one more each)"
  "net.core.rmem_max|16777216|largest socket receive buffer an application may ask for"
  "net.core.wmem_max|16777216|largest socket send buffer an application may ask for"
  "net.ipv4.tcp_rmem|4096 65536 16777216|per-connection receive buffer (min default max): the default keeps idle connections cheap"
  "net.ipv4.tcp_wmem|4096 65536 16777216|per-connection send buffer (min default max)"
  "kernel.io_uring_disabled|0|coremq's shards run on io_uring: it must not be disabled (0 = allowed)"
)

printf '%-32s %-22s %-22s %s\n' "setting" "now" "wanted" "why"
for s in "${settings[@]}"; do
  IFS='|' read -r name wanted why <<<"$s"
  path="/proc/sys/${name//.//}"
  now="(absent)"
  [ -r "$path" ] && now=$(tr '\t' ' ' <"$path")
  printf '%-32s %-22s %-22s %s\n' "$name" "$now" "$wanted" "$why"
  if $apply && [ -w "$path" ] && [ "$now" != "(absent)" ]; then
    sysctl -q -w "$name=$wanted"
  fi
done

echo
echo "Per-process limits (set them where coremq starts: ulimit in its shell, or the unit file):"
printf '  %-28s now %-10s wanted %s\n' "open files (ulimit -n)" "$(ulimit -n)" "connections + 100 (LimitNOFILE)"
printf '  %-28s now %-10s wanted %s\n' "locked memory (ulimit -l)" "$(ulimit -l)" "8192 KiB or more when not root (LimitMEMLOCK=8M): io_uring rings"
if $apply; then
  echo
  echo "Applied the sysctls above for the running system (root only)."
fi
