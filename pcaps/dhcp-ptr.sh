#!/usr/bin/env bash
# Captures dhcp-ptr.pcap: real DHCP clients leasing from dnsmasq (DHCPv4 and DHCPv6), PTR
# lookups of their leases (in-addr.arpa and ip6.arpa), an address that moves from one machine
# to another, and clients that then look up Kaspersky names (so the report has detected hosts
# with host names and identity history).
#
#   sudo bash pcaps/dhcp-ptr.sh OUT.pcap      (generate.sh --only dhcp-ptr calls it)
#
# Its own small network (namespaces prefixed $VWP_PREFIX, default "vwp-", then "d"), so that
# the clients start without an address, as DHCP clients do:
#
#   d1 dhclient  02:00:5e:10:03:11 "ws-alice" --+
#   d2 udhcpc    02:00:5e:10:03:12 "ws-bob"   --+-- dsw (bridge, floods) -- p-dsrv -- dsrv: dnsmasq
#   d3 dhclient  02:00:5e:10:03:13 "ws-carol" --+                 = capture point      10.10.3.1
#      (and dhclient -6, DUID-LL)                                                    fd00:10::3:1
#
# dnsmasq (DHCP and DNS for the "lab" domain) gives fixed addresses by MAC: ws-alice and ws-carol
# share one dhcp-host line (as a laptop's two interfaces would), so they
# both get 10.10.3.101: when ws-alice releases it and ws-carol takes it, the address has moved
# between machines; ws-carol also leases fd00:10::3:103 over DHCPv6 (dhcp-host by DUID) with
# its FQDN; dnsmasq answers PTR queries from its leases.
# Nothing leaves the machine: private addresses, no default route.
set -euo pipefail
OUT=${1:?usage: dhcp-ptr.sh OUT.pcap}
[[ ${EUID} -eq 0 ]] || { echo "dhcp-ptr.sh must run as root" >&2; exit 1; }
for cmd in dnsmasq dhclient busybox dig tcpdump ip bridge ethtool; do
    command -v "$cmd" >/dev/null || { echo "dhcp-ptr.sh needs $cmd (dnsmasq-base isc-dhcp-client busybox bind9-dnsutils tcpdump iproute2 ethtool)" >&2; exit 1; }
done

P=${VWP_PREFIX-vwp-}d
SW=${P}sw SRV=${P}srv D1=${P}1 D2=${P}2 D3=${P}3
NS=("$D1" "$D2" "$D3" "$SRV" "$SW")
SRV_4=10.10.3.1 SRV_6=fd00:10::3:1 CAROL_6=fd00:10::3:103
MAC1=02:00:5e:10:03:11 MAC2=02:00:5e:10:03:12 MAC3=02:00:5e:10:03:13
MOVED_4=10.10.3.101 BOB_4=10.10.3.102
WORK=$(mktemp -d /tmp/vwp-dhcp.XXXXXX)
chmod 755 "$WORK"
PIDS=()

teardown() {
    local ns pid
    for ns in "${NS[@]}"; do
        if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
            sleep 0.2
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
}
cleanup() {
    local rc=$? pid
    set +e
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    teardown
    if [[ $rc -ne 0 ]]; then
        echo "dhcp-ptr.sh failed (rc=$rc); logs:" >&2
        tail -n 20 "$WORK"/*.log >&2 2>/dev/null
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
die() { printf '\nFATAL: %s\n' "$*" >&2; exit 1; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
teardown

for ns in "${NS[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n "$SW" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
ip -n "$SW" link set br0 up
attach() { # NS PORT MAC
    ip link add name eth0 netns "$1" type veth peer name "$2" netns "$SW"
    ip -n "$1" link set eth0 address "$3"
    nsx "$1" ethtool -K eth0 tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
    nsx "$SW" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
    # IPv6 for DHCPv6, without router solicitations or DAD probes (less noise on the wire)
    nsx "$1" sysctl -qw net.ipv6.conf.eth0.accept_ra=0 net.ipv6.conf.eth0.router_solicitations=0 \
        net.ipv6.conf.eth0.accept_dad=0
    ip -n "$SW" link set "$2" master br0
    nsx "$SW" bridge link set dev "$2" learning off flood on
    ip -n "$SW" link set "$2" up
    ip -n "$1" link set eth0 up
}
nsx "$SW" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
attach "$SRV" p-dsrv 02:00:5e:10:03:01
attach "$D1" p-d1 $MAC1
attach "$D2" p-d2 $MAC2
attach "$D3" p-d3 $MAC3
ip -n "$SRV" addr add $SRV_4/16 dev eth0
ip -n "$SRV" addr add $SRV_6/64 dev eth0 nodad

# dnsmasq inside the server namespace only (it sees nothing but the server veth)
ip netns exec "$SRV" dnsmasq --no-daemon --conf-file=/dev/null --interface=eth0 --bind-interfaces \
    --no-resolv --no-hosts --domain=lab --local=/lab/ \
    --dhcp-range=10.10.3.100,10.10.3.150,255.255.0.0,1h --dhcp-authoritative \
    --dhcp-range=fd00:10::3:100,fd00:10::3:150,64,1h \
    --dhcp-host=id:00:03:00:01:$MAC3,[$CAROL_6] \
    --dhcp-host=$MAC1,$MAC3,$MOVED_4 --dhcp-host=$MAC2,$BOB_4 \
    --dhcp-leasefile="$WORK/leases" --address=/dnl-01.geo.kaspersky.com/10.10.2.80 \
    --address=/ksn-file-geo.kaspersky-labs.com/10.10.2.80 \
    --address=/dnl-01.geo.kaspersky.com/fd00:10::80 \
    --user=root --pid-file= --log-dhcp --log-queries --log-facility=- >"$WORK/dnsmasq.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do grep -q 'started, version' "$WORK/dnsmasq.log" 2>/dev/null && break; sleep 0.1; done
grep -q 'DHCP, IP range' "$WORK/dnsmasq.log" || die "dnsmasq did not start: $(cat "$WORK/dnsmasq.log")"

# The clients' scripts only configure the address (the stock ones would rewrite resolv.conf).
cat >"$WORK/dhclient-script" <<'EOF'
#!/bin/sh
case "$reason" in
    BOUND|RENEW|REBIND|REBOOT) ip addr replace "$new_ip_address/16" dev "$interface" ;;
    RELEASE|EXPIRE|STOP) [ -n "$old_ip_address" ] && ip addr del "$old_ip_address/16" dev "$interface" ;;
    # (an IA_NA address is a /128; with no router advertisements here, the /64 is on-link)
    BOUND6|RENEW6|REBIND6|REBOOT6) ip -6 addr replace "$new_ip6_address/64" dev "$interface" nodad ;;
esac
exit 0
EOF
cat >"$WORK/udhcpc-script" <<'EOF'
#!/bin/sh
case "$1" in
    bound|renew) ip addr replace "$ip/16" dev "$interface" ;;
    deconfig) ip addr flush dev "$interface" ;;
esac
exit 0
EOF
chmod 755 "$WORK/dhclient-script" "$WORK/udhcpc-script"
dhclient_conf() { # HOSTNAME
    cat <<EOF
send host-name "$1";
send fqdn.fqdn "$1.lab.";
send fqdn.encoded on;
send fqdn.server-update off;
request subnet-mask, domain-name-servers, domain-name, host-name;
EOF
}
dhclient_conf ws-alice >"$WORK/d1.conf"
dhclient_conf ws-carol >"$WORK/d3.conf"
DHCLIENT() { # NS NAME [args...]
    nsx "$1" dhclient -4 -v -cf "$WORK/$2.conf" -sf "$WORK/dhclient-script" -lf "$WORK/$2.leases" \
        -pf "$WORK/$2.pid" "${@:3}" eth0 >>"$WORK/$2.log" 2>&1
}
has_addr() { ip -n "$1" -o addr show dev eth0 | grep -q " $2/"; }
DIG() { nsx "$1" dig +time=2 +tries=1 @$SRV_4 "${@:2}" >>"$WORK/dig.log"; }

tcpdump_log=$WORK/tcpdump.log
ip netns exec "$SW" tcpdump -i p-dsrv -s 0 -U -n -w "$OUT" >"$tcpdump_log" 2>&1 &
CAP=$!
PIDS+=("$CAP")
for _ in $(seq 1 50); do grep -q 'listening on' "$tcpdump_log" && break; sleep 0.1; done
grep -q 'listening on' "$tcpdump_log" || die "tcpdump did not start"
sleep 0.5

# ws-alice (ISC dhclient: host name, FQDN in wire encoding, no client identifier)
DHCLIENT "$D1" d1 -1
has_addr "$D1" $MOVED_4 || die "d1 did not get $MOVED_4"
# ws-bob (busybox udhcpc: host name, client identifier 01:MAC)
nsx "$D2" busybox udhcpc -i eth0 -f -q -n -t 5 -T 1 -x hostname:ws-bob -s "$WORK/udhcpc-script" >"$WORK/d2.log" 2>&1
has_addr "$D2" $BOB_4 || die "d2 did not get $BOB_4"
# PTR lookups on the wire, both ways
DIG "$D1" -x $BOB_4
DIG "$D2" -x $MOVED_4
# ws-bob sends a file reputation query (Kaspersky Security Network)
DIG "$D2" ksn-file-geo.kaspersky-labs.com A
# ws-alice releases its lease (DHCPRELEASE) and leaves; ws-carol gets the same address
DHCLIENT "$D1" d1 -r
DHCLIENT "$D3" d3 -1
has_addr "$D3" $MOVED_4 || die "d3 did not get $MOVED_4"
DIG "$D2" -x $MOVED_4
# ws-carol also leases an IPv6 address (ISC dhclient -6: DUID-LL, FQDN option 39)
nsx "$D3" dhclient -6 -D LL -1 -v -cf "$WORK/d3.conf" -sf "$WORK/dhclient-script" \
    -lf "$WORK/d3v6.leases" -pf "$WORK/d3v6.pid" eth0 >>"$WORK/d3v6.log" 2>&1
for _ in $(seq 1 30); do has_addr "$D3" $CAROL_6 && break; sleep 0.1; done
has_addr "$D3" $CAROL_6 || die "d3 did not get $CAROL_6: $(ip -n "$D3" -6 -o addr show dev eth0)"
DIG "$D2" -x $CAROL_6
# ws-carol runs a Kaspersky product: its update server lookups, over IPv4 and IPv6
DIG "$D3" dnl-01.geo.kaspersky.com A
nsx "$D3" dig -6 +time=2 +tries=1 @$SRV_6 dnl-01.geo.kaspersky.com AAAA >>"$WORK/dig.log"
# ws-carol's dhclient starts again (INIT-REBOOT: a REQUEST for the address it holds) and stops
DHCLIENT "$D3" d3 -x
sleep 1
kill -TERM "$CAP"
wait "$CAP" || true
grep -q 'ws-alice' "$WORK/dnsmasq.log" || die "dnsmasq never saw ws-alice"
grep -q 'ws-carol' "$WORK/dnsmasq.log" || die "dnsmasq never saw ws-carol"
echo "dhcp-ptr.sh: $(dnsmasq -v | awk 'NR==1 {print $3}') $(dhclient --version 2>&1 | head -1) $(busybox | head -1 | awk '{print $2}')" >&2
