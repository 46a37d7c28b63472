#!/usr/bin/env bash
# Installs the Debian packages vendorwatch's build, demo and tests need, when they are missing.
# Usage: bash scripts/deps.sh [build|test]   (build: only what compiling needs)
set -euo pipefail
want=(pkg-config libpcap-dev libssl-dev)
if [ "${1:-test}" = test ]; then
  want+=(tshark tcpdump iproute2 python3 dnsmasq-base bind9-dnsutils curl openssl ethtool prometheus chromium rsyslog strace python3-scapy postgresql tcpreplay)
fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
