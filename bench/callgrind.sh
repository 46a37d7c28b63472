#!/usr/bin/env bash
# Instructions per packet of a replay (valgrind --tool=callgrind): repeatable on a loaded
# machine, where wall time is not. See bench/README.md.
#   bash bench/callgrind.sh [BINARY] [PCAP]
# (default target/release/vendorwatch and bench-data/slice.pcap: the first 200,000 packets
# of the enterprise mix, `editcap -F pcap -r bench-data/enterprise.pcap bench-data/slice.pcap 1-200000`)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/vendorwatch}
pcap=${2:-bench-data/slice.pcap}
out=bench-data/callgrind
mkdir -p "$out"
editcap -F pcap -r "$pcap" "$out/first.pcap" 1-1
packets=$(capinfos -M -c "$pcap" | awk -F: '/Number of packets/ {gsub(/ /, "", $2); print $2}')
count() { # pcap callgrind-out -> instructions (and one file per thread: OUT-01, OUT-02, ...)
    rm -f "$2" "$2"-*
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$2" "$bin" replay \
        --no-seccomp --quiet --state none --workers 1 --alerts /dev/null "$1" 2>&1 |
        awk '/Collected/ {gsub(",", "", $NF); print $NF}' || true
}
thread_total() { # callgrind-out-NN -> instructions of that thread
    awk '/^summary:/ {print $2; exit}' "$1" 2>/dev/null || echo 0
}
total=$(count "$pcap" "$out/out.cg")
start=$(count "$out/first.pcap" "$out/first.cg")
echo "$pcap: $packets packets, $total instructions, $start of them start-up (one packet)"
echo "instructions per packet: $(((total - start) / (packets - 1)))"
# Per thread: the capture thread (the main one, 01) and the worker (the busiest other one).
# valgrind runs one thread at a time, so this is the split of the work, not of the time.
worker=$(for f in "$out"/out.cg-*; do [[ $f == *-01 ]] || echo "$(thread_total "$f") ${f##*-}"; done |
    sort -n | tail -1 | awk '{print $2}')
for part in "capture thread:01" "worker:$worker"; do
    name=${part%%:*} n=${part##*:}
    [[ -n $n ]] || continue
    t=$(thread_total "$out/out.cg-$n") s=$(thread_total "$out/first.cg-$n")
    echo "  $name: $(((t - ${s:-0}) / (packets - 1))) a packet"
done
