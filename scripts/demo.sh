#!/usr/bin/env bash
# The main job on the bundled captures: replay them with the embedded rule packs and print
# the host table; alerts and the host report are written to ./demo-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build
mkdir -p demo-out
# The first build compiles every dependency: say so and let cargo show its progress, rather
# than sit silent for minutes (a build already done prints one "Finished" line).
echo "demo: building vendorwatch (first run takes a few minutes)..." >&2
cargo build --release --bin vendorwatch
target/release/vendorwatch replay \
  --alerts demo-out/alerts.jsonl --report demo-out/hosts.json --events demo-out/events.jsonl \
  pcaps/dns.pcap pcaps/tls.pcap pcaps/http-proxy.pcap pcaps/dns-forwarder.pcap pcaps/passive-dns.pcap pcaps/dns-public-resolver.pcap
echo "alerts: demo-out/alerts.jsonl  host report: demo-out/hosts.json  events: demo-out/events.jsonl" >&2
