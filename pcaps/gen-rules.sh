#!/usr/bin/env bash
# Regenerates pcaps/vendor-domains.pcap and its expectation pcaps/expected-rules/vendor-domains.pcap.json.
#
#   sudo bash pcaps/gen-rules.sh              capture again and derive the expectation
#   bash pcaps/gen-rules.sh --rederive        only the expectation, from the capture there
#
# The scenario is pcaps/vendor-domains.scenario: one name per line with what the sensor must make
# of it. Every name is asked once, with dig, from its own client address, of dnsmasq (which answers
# every A query with 198.51.100.7, a documentation address), so that each name is one host in the
# sensor's report. Names under every registrable domain the packs' catch-alls cover, product names
# under the same domains, the research exclusions and look-alikes (kaspersky.com.example.net,
# notkaspersky.com, ...).
#
# Topology: two network namespaces joined by one veth pair, no default route, only 10.77.0.0/16:
#
#   ${VWR_PREFIX}c  eth0 10.77.1.10 .. 10.77.1.N (one address per name)  <-->  ${VWR_PREFIX}s  eth0 10.77.0.53 dnsmasq
#                                                                                capture: tcpdump on this eth0
#
# Expectations come from the capture by tshark (pcaps/expected_rules.py), which also checks the
# capture against the scenario and fails loudly; never from vendorwatch.
# Needs root and: iproute2 dnsmasq-base bind9-dnsutils tcpdump tshark ethtool python3.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SCENARIO="$HERE/vendor-domains.scenario"
OUT="$HERE/vendor-domains.pcap"
EXPECTED="$HERE/expected-rules/vendor-domains.pcap.json"
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

die() { echo "gen-rules: $*" >&2; exit 1; }
log() { echo "gen-rules: $*" >&2; }

if [[ ${1:-} == --rederive ]]; then
    [[ -f $OUT ]] || die "no $OUT to derive from"
    MADE_BY=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["made_by"])' "$EXPECTED")
    "$PY" "$HERE/expected_rules.py" --made-by "$MADE_BY" "$OUT" >"$EXPECTED.tmp"
    mv "$EXPECTED.tmp" "$EXPECTED"
    log "re-derived $EXPECTED"
    exit 0
fi
[[ $# -eq 0 ]] || die "usage: sudo bash pcaps/gen-rules.sh [--rederive]"
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, tcpdump)"
for t in ip dnsmasq dig tcpdump tshark ethtool; do
    command -v "$t" >/dev/null || die "$t is missing (apt-get install iproute2 dnsmasq-base bind9-dnsutils tcpdump tshark ethtool)"
done

# Namespace names carry the process id, so parallel runs never collide.
P=${VWR_PREFIX:-vwr$$}
CLI=${P}c
SRV=${P}s
SRV_ADDR=10.77.0.53
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ip netns del "$CLI" 2>/dev/null || true
    ip netns del "$SRV" 2>/dev/null || true
    rm -rf "/etc/netns/$CLI" "/etc/netns/$SRV"
    [[ -n ${VWR_KEEP_WORK:-} ]] && log "work directory kept: $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

mapfile -t NAMES < <(sed -e 's/#.*//' "$SCENARIO" | awk 'NF {print $1}')
((${#NAMES[@]} > 0 && ${#NAMES[@]} <= 240)) || die "scenario has ${#NAMES[@]} names (1..240 fit in 10.77.1.10-249)"

log "building $CLI <-> $SRV"
ip netns add "$CLI"
ip netns add "$SRV"
ip link add "${P}a" type veth peer name "${P}b"
ip link set "${P}a" netns "$CLI" name eth0
ip link set "${P}b" netns "$SRV" name eth0
for ns in "$CLI" "$SRV"; do
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    # wire-sized frames and correct checksums in the capture
    ip netns exec "$ns" ethtool -K eth0 tx off rx off tso off gso off gro off >/dev/null 2>&1 \
        || ip netns exec "$ns" ethtool -K eth0 tx off rx off tso off gso off >/dev/null
    mkdir -p "/etc/netns/$ns"
    printf '127.0.0.1 localhost\n' >"/etc/netns/$ns/hosts"
    printf 'nameserver %s\n' "$SRV_ADDR" >"/etc/netns/$ns/resolv.conf"
done
ip -n "$SRV" addr add "$SRV_ADDR/16" dev eth0
for i in "${!NAMES[@]}"; do
    ip -n "$CLI" addr add "10.77.1.$((10 + i))/16" dev eth0
done
for ns in "$CLI" "$SRV"; do
    [[ -z $(ip -n "$ns" route show default) ]] || die "$ns has a default route"
done

log "starting dnsmasq"
ip netns exec "$SRV" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
    --bind-interfaces --listen-address="$SRV_ADDR" --address="/#/198.51.100.7" --log-queries \
    --log-facility=- >"$WORK/dnsmasq.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do
    ip netns exec "$CLI" dig +time=1 +tries=1 +short -b 10.77.1.10 @"$SRV_ADDR" ready.test A >/dev/null 2>&1 && break
    sleep 0.2
done
ip netns exec "$CLI" dig +time=1 +tries=1 +short -b 10.77.1.10 @"$SRV_ADDR" ready.test A | grep -q 198.51.100.7 \
    || die "dnsmasq did not answer (log: $(cat "$WORK/dnsmasq.log"))"

log "capturing ${#NAMES[@]} lookups"
ip netns exec "$SRV" tcpdump -i eth0 -s 0 -U --immediate-mode -n -Z root -w "$WORK/raw.pcap" 'udp port 53' >"$WORK/tcpdump.log" 2>&1 &
TCPDUMP=$!
PIDS+=("$TCPDUMP")
for _ in $(seq 1 50); do grep -q "listening on" "$WORK/tcpdump.log" && break; sleep 0.1; done
grep -q "listening on" "$WORK/tcpdump.log" || die "tcpdump did not start: $(cat "$WORK/tcpdump.log")"
for i in "${!NAMES[@]}"; do
    ip netns exec "$CLI" dig +time=2 +tries=2 -b "10.77.1.$((10 + i))" @"$SRV_ADDR" "${NAMES[$i]}" A >"$WORK/dig.$i" \
        || die "dig ${NAMES[$i]} failed: $(cat "$WORK/dig.$i")"
done
# every query and its answer written out before tcpdump is stopped (a loaded machine delivers late)
WANT=$((2 * ${#NAMES[@]}))
for _ in $(seq 1 200); do
    (($(tcpdump -n -r "$WORK/raw.pcap" 2>/dev/null | wc -l) >= WANT)) && break
    sleep 0.1
done
kill -TERM "$TCPDUMP" # background jobs of a non-interactive bash ignore SIGINT; tcpdump flushes on TERM too
wait "$TCPDUMP" 2>/dev/null || true

V_DIG=$(dig -v 2>&1 | awk '{print $2}')
V_DNSMASQ=$(dnsmasq -v | awk 'NR==1 {print $3}')
V_TCPDUMP=$(tcpdump --version 2>&1 | awk 'NR==1 {print $3}')
MADE_BY="dig $V_DIG (one query per client address, ${#NAMES[@]} addresses) to dnsmasq $V_DNSMASQ (--address=/#/198.51.100.7) over a veth pair between two namespaces, captured by tcpdump $V_TCPDUMP on the server side (udp port 53); pcaps/gen-rules.sh"

# checksums of every frame are right (offloads were off)
BAD=$(tshark -n -r "$WORK/raw.pcap" -o ip.check_checksum:TRUE -o udp.check_checksum:TRUE \
    -Y 'ip.checksum.status == "Bad" || udp.checksum.status == "Bad"' 2>/dev/null | wc -l)
[[ $BAD -eq 0 ]] || die "$BAD frames with bad checksums"

mkdir -p "$(dirname "$EXPECTED")"
"$PY" "$HERE/expected_rules.py" --made-by "$MADE_BY" "$WORK/raw.pcap" >"$WORK/expected.json" \
    || die "the capture does not match the scenario"
# the expectation names the committed file, not the work file
"$PY" - "$WORK/expected.json" "$(basename "$OUT")" <<'EOF' >"$EXPECTED"
import json, sys
e = json.load(open(sys.argv[1]))
e["capture"] = sys.argv[2]
print(json.dumps(e, indent=1, sort_keys=True))
EOF
cp "$WORK/raw.pcap" "$OUT"
log "wrote $OUT ($(stat -c %s "$OUT") bytes) and $EXPECTED"
