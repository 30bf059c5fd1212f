#!/usr/bin/env bash
# The WAN bench's system tools: iproute2 (ip netns, veth) and iptables (the router's delay queue and
# SYN counters), from Debian's packages when missing. It needs root anyway: it builds namespaces.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "make bench-wan builds network namespaces: run it as root" >&2
  exit 1
fi
missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
[ ${#missing[@]} -eq 0 ] && exit 0
DEBIAN_FRONTEND=noninteractive apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
