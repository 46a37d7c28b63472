#!/usr/bin/env bash
# The main job on the bundled captures: replay them with the embedded rule packs and print
# the host table; alerts and the host report are written to ./demo-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build
mkdir -p demo-out
cargo run --release --quiet -- replay --state none \
  --alerts demo-out/alerts.jsonl --report demo-out/hosts.json --events demo-out/events.jsonl \
  pcaps/dns.pcap pcaps/tls.pcap pcaps/http-proxy.pcap pcaps/dns-forwarder.pcap pcaps/passive-dns.pcap pcaps/dns-public-resolver.pcap
echo "alerts: demo-out/alerts.jsonl  host report: demo-out/hosts.json  events: demo-out/events.jsonl" >&2
