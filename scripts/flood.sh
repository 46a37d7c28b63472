#!/usr/bin/env bash
# Hostile traffic at scale: the floods of tests/floods.rs (random 5-tuples, IPv4 and IPv6
# fragment floods, TCP segments into reassembly, hostile DNS, QUIC Initials with garbage,
# vendor-like names from many hosts) made VW_FLOODS_SCALE times bigger, replayed by a release
# build, each with the same assertions as the test suite: legitimate detections kept, every
# shed item counted, peak RSS under the bound its caps give. Writes the table to FLOODS.md.
#
#   bash scripts/flood.sh                  # scale 10 (millions of flows and names; minutes)
#   bash scripts/flood.sh --scale 30 --out /tmp/floods.md
#
# Not part of scripts/test.sh (CI runs the same floods at scale 1). Needs tshark (the
# fragment floods count the legitimate fragmented datagrams with it): scripts/deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

scale=10
out=FLOODS.md
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) scale="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "flood.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
case "$scale" in ''|*[!0-9]*) echo "flood.sh: --scale takes a whole number" >&2; exit 2 ;; esac

command -v tshark >/dev/null || { echo "flood.sh: tshark is missing (bash scripts/deps.sh)" >&2; exit 2; }

results=$(mktemp)
log=$(mktemp)
trap 'rm -f "$results" "$log"' EXIT

started=$(date -u +%s)
status=0
# One flood at a time: each replays captures of up to a few hundred MB from $TMPDIR, and
# each test needs a process of its own for its peak RSS (nextest gives one; under cargo
# test each test re-runs itself alone).
if cargo nextest --version >/dev/null 2>&1; then
    VW_FLOODS_SCALE="$scale" VW_FLOODS_RESULTS="$results" \
        cargo nextest run --release --test floods --no-fail-fast --no-capture -j 1 2>&1 | tee "$log" || status=$?
else
    VW_FLOODS_SCALE="$scale" VW_FLOODS_RESULTS="$results" \
        cargo test --release --test floods -- --test-threads 1 --nocapture 2>&1 | tee "$log" || status=$?
fi
elapsed=$(( $(date -u +%s) - started ))

verdict="all floods passed"
[ "$status" -eq 0 ] || verdict="SOME FLOODS FAILED (exit $status): see the rows and the log of the run"

{
    echo "# Floods"
    echo
    echo "Hostile traffic at scale, replayed by a release build: \`bash scripts/flood.sh --scale $scale\`"
    echo "(the floods of \`tests/floods.rs\`, $scale times the test sizes; the test suite runs them at scale 1)."
    echo
    echo "- run: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- sensor tests || echo ' (with local changes)'), $elapsed s in all: $verdict"
    echo "- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), shared with other builds), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(rustc --version)"
    echo
    echo "Every flood carries legitimate traffic copied from the golden captures (\`pcaps/dns.pcap\`,"
    echo "\`tls.pcap\`, \`quic.pcap\`, \`dns-fragmented.pcap\`, \`passive-dns.pcap\`) at its start, middle and end (for the"
    echo "names floods all after the flood, once passive DNS is full); *legit* is how many of the"
    echo "detections tshark derived for them (\`pcaps/expected/\`) were found. *Peak RSS* is"
    echo "the replay's \`ru_maxrss\`; *baseline* the same replay of the legitimate traffic alone; *bound* the"
    echo "baseline plus what the caps allow (below) plus 24 MiB of slack. *Shed* lists every anomaly and"
    echo "drop counter of the summary (the same counters as \`vendorwatch_dropped_total\` and"
    echo "\`vendorwatch_decode_anomalies_total\`); each test asserts them against what its generator sent."
    echo
    echo "| flood | packets | seconds | peak RSS MiB | baseline MiB | bound MiB | legit | exit | shed (summary counters) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    cat "$results"
    echo
    echo "Caps behind the bounds (one worker, \`--workers 1\`):"
    echo
    echo "| flood | caps given | bound beyond the baseline |"
    echo "| --- | --- | --- |"
    echo "| flows | \`--max-flows 1000\` | 4 KiB per flow slot |"
    echo "| fragments-v4, fragments-v6 | defaults: 8,192 datagrams, 32 MiB (payload and bookkeeping), 256 per source, 128 fragments per datagram, 30 s | 40 MiB |"
    echo "| tcp (port 443, into the TLS ClientHello reassembly) | \`--max-flows 100\`, 16 KiB per direction in order and 16 KiB parked | 65 KiB per flow slot |"
    echo "| quic | \`--max-flows 500\` | 4 KiB per flow slot |"
    echo "| dns | DNS transaction table (65,536 entries); the hosts its long KSN names detect | 8 MiB and 160 KiB per detected host |"
    echo "| names, names ×2, hosts ×2 | \`--pdns-max 1000\`; 32 indicators per detection; no host cap yet | 160 KiB per host |"
    echo "| tcp, default --max-flows | the default table (262,144 flows) | none: recorded only |"
    echo
    echo "*tcp, default --max-flows* is the TCP flood again through the default flow table: reassembly"
    echo "has a cap per flow (16 KiB in order and 16 KiB parked, each direction) but none per worker,"
    echo "so it holds up to 64 KiB × \`--max-flows\` (16 GiB per worker at the defaults). *names* asks"
    echo "more distinct names per host than a detection keeps; *names ×2* twice as many (no more"
    echo "memory); *hosts ×2* twice the hosts: each detected host costs about 130 KiB, most of it the"
    echo "host report, built whole in memory before it is written."
    echo
    echo "Unbounded, the same floods would hold far more: the flows capture through a table as large"
    echo "as the flood (\`--max-flows 200000\`, 150,000 flows) peaks at about 155 MiB instead of 19 MiB"
    echo "(debug build); the fragment floods send 3 to 4 times the byte cap in never-completed"
    echo "datagrams; the TCP flood parks about 36 KiB per flow in thousands of flows."
} > "$out"
echo "flood.sh: wrote $out ($verdict)"
exit "$status"
