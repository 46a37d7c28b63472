#!/usr/bin/env bash
# Memory cost per entry of each bounded table (issue 14, item 3): for each kind of
# bench/table_costs.py, replays a capture that fills that one table with N and with 2N
# entries (caps raised out of the way, one worker, no inventory) and prints the growth of
# peak RSS divided by N. Peak RSS is what the 64 MiB target is about, so this measures it
# (allocator overhead and all) rather than asking the code what it thinks it holds.
#
#   bash bench/table-costs.sh [BINARY]      (default target/release/vendorwatch)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/vendorwatch}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
caps=(--max-flows 4000000 --pdns-max 4000000 --max-hosts 4000000 --reassembly-mb 4096)

peak_kib() { # kind n state -> peak RSS KiB of one replay
    python3 bench/table_costs.py "$1" "$2" "$work/c.pcap"
    rm -f "$work/s.db"*
    /usr/bin/time -f '%M' -o "$work/rss" "$bin" replay --quiet --no-seccomp --workers 1 \
        --state "$3" --alerts /dev/null "${caps[@]}" "$work/c.pcap" >/dev/null 2>&1 || true
    tail -n 1 "$work/rss"
}

printf '| kind | N | peak RSS at N (KiB) | at 2N (KiB) | bytes per entry |\n|---|---:|---:|---:|---:|\n'
# kind:N, or kind:N:inventory to replay with an inventory (a fresh SQLite file, as a
# replay keeps by default) instead of --state none. DNS queries and asked names stay under
# the caps that no flag raises (16,384 DNS transactions and pending resolver queries per
# worker): at 2N above them the table stops growing and the row reads 0.
for spec in ${KINDS:-tcp-flows:100000 udp-flows:100000 dns-queries:8000 asked:8000 pdns:100000 hosts:30000 hosts:30000:inventory tls-held:20000}; do
    IFS=: read -r kind n inv <<<"$spec"
    state=none label=$kind
    if [ "$inv" = inventory ]; then state=$work/s.db label="$kind (with the inventory)"; fi
    a=$(peak_kib "$kind" "$n" "$state")
    b=$(peak_kib "$kind" $((2 * n)) "$state")
    printf '| %s | %d | %d | %d | %d |\n' "$label" "$n" "$a" "$b" $(((b - a) * 1024 / n))
done
