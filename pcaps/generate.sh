#!/usr/bin/env bash
# Regenerates the captures in pcaps/ and their expectations in pcaps/expected/.
#
#   sudo bash pcaps/generate.sh                      every capture
#   sudo bash pcaps/generate.sh --only quic,tls12-certs   only these capture groups (the rest untouched)
#   bash pcaps/generate.sh --rederive                only the expectations, from the captures there
#
# Builds a small isolated network out of network namespaces (no default route, only 10.10.0.0/16
# and fd00:10::/64 addresses, nothing can leave the machine), runs real clients and servers in it,
# captures on the switch port toward the servers, derives the file-format / link-type variants
# offline, then derives pcaps/expected/<capture>.json from each capture with tshark
# (expected_from_tshark.py), which also checks the result against the scenario and fails loudly.
#
# Topology (all namespaces are prefixed with $VWP_PREFIX, default "vwp-"):
#
#   c1 10.10.1.11 fd00:10::11 --+
#   c2 10.10.1.12 fd00:10::12 --+                       +-- srv: unbound 10.10.2.53 fd00:10::53
#   c3 10.10.1.13 fd00:10::13 --+-- sw (bridge br0) ----+        nginx   10.10.2.80 fd00:10::80
#                                     port p-srv        |        aioquic 10.10.2.80 fd00:10::80 (udp)
#                                                       +-- prx: tinyproxy 10.10.2.30:8888
#                                     = capture point   +-- fwd: dnsmasq   10.10.2.54 (forwarder)
#
# The bridge has MAC learning switched off on every port, so it floods every frame to every port,
# like a hub: the port toward the server namespace (p-srv) sees each frame that crosses the switch
# exactly once, including client->proxy, proxy->web server, client->forwarder and
# forwarder->resolver. That is what a SPAN port of the uplink would see.
#
# dhcp-ptr.pcap has a small network of its own (pcaps/dhcp-ptr.sh: DHCP clients must start
# without an address), namespaces ${VWP_PREFIX}d*, built and removed by that script.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
EXPECTED_DIR="$HERE/expected"
PY=/usr/bin/python3

# capture groups, in the order they are captured; a group makes its base capture and every file
# derived from it offline
ALL_GROUPS=(dns tls http-proxy dns-forwarder passive-dns multi-link dns-sll2 quic dns-fragmented tls12-certs dhcp-ptr)
usage() {
    cat >&2 <<EOF
usage: sudo bash pcaps/generate.sh                  regenerate every capture and expectation
       sudo bash pcaps/generate.sh --only G[,G...]  regenerate only these capture groups (the other
                                                    captures and expectations stay byte-identical)
       bash pcaps/generate.sh --rederive            re-derive every expectation from the captures that
                                                    are there (no network, no root; made_by is kept)
groups: ${ALL_GROUPS[*]}
  dns: dns.pcap and its offline variants (dns-nsec, dns-bigendian, dns-vlan, dns-rawip, dns-null,
       dns-public-resolver); tls: tls.pcap, tls.pcapng, tls-qinq.pcap; every other group: GROUP.pcap
       (multi-link: multi-link.pcapng)
EOF
    exit 2
}
ONLY=()
REDERIVE=
while (($#)); do
    case $1 in
        --only) [[ $# -ge 2 ]] || usage; IFS=, read -r -a _g <<<"$2"; ONLY+=("${_g[@]}"); shift 2 ;;
        --only=*) IFS=, read -r -a _g <<<"${1#--only=}"; ONLY+=("${_g[@]}"); shift ;;
        --rederive) REDERIVE=1; shift ;;
        -h | --help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
for g in "${ONLY[@]}"; do
    [[ " ${ALL_GROUPS[*]} " == *" $g "* ]] || { echo "unknown capture group: $g" >&2; usage; }
done
[[ -n $REDERIVE && ${#ONLY[@]} -gt 0 ]] && { echo "--rederive and --only exclude each other" >&2; usage; }
want() { # GROUP: is this group captured in this run?
    ((${#ONLY[@]} == 0)) && return 0
    [[ " ${ONLY[*]} " == *" $1 "* ]]
}

# the scenario of every capture file (expected_from_tshark.py --scenario)
declare -A SCENARIO=(
    [dns.pcap]=dns [tls.pcap]=tls [http-proxy.pcap]=http-proxy [dns-forwarder.pcap]=dns-forwarder
    [passive-dns.pcap]=passive-dns [dns-public-resolver.pcap]=dns-public-resolver
    [tls.pcapng]=tls [dns-nsec.pcap]=dns [dns-bigendian.pcap]=dns [dns-vlan.pcap]=dns
    [tls-qinq.pcap]=tls [multi-link.pcapng]=multi-link [dns-sll2.pcap]=dns-sll2
    [dns-rawip.pcap]=dns [dns-null.pcap]=dns
    [quic.pcap]=quic [dns-fragmented.pcap]=dns-fragmented [tls12-certs.pcap]=tls12-certs
    [dhcp-ptr.pcap]=dhcp-ptr
)

if [[ -n $REDERIVE ]]; then
    # The captures did not change, so neither did what made them: made_by is carried over from
    # each expectation file. Fails when a capture has no expectation or its scenario check fails.
    shopt -s nullglob
    status=0
    for path in "$HERE"/*.pcap "$HERE"/*.pcapng; do
        f=$(basename "$path")
        # gen-tcpflow.sh's captures have their own expectations (expected_tcpflow.py)
        grep -qF "\"$f\"" "$HERE/expected-tcpflow.json" 2>/dev/null && continue
        [[ -n ${SCENARIO[$f]:-} ]] || { echo "$f: no scenario known" >&2; status=1; continue; }
        [[ -f $EXPECTED_DIR/$f.json ]] || { echo "$f: no expectation to take made_by from" >&2; status=1; continue; }
        made_by=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["made_by"])' "$EXPECTED_DIR/$f.json")
        if "$PY" "$HERE/expected_from_tshark.py" --scenario "${SCENARIO[$f]}" --made-by "$made_by" \
            --name "$f" "$path" >"$EXPECTED_DIR/.$f.json.new"; then
            mv "$EXPECTED_DIR/.$f.json.new" "$EXPECTED_DIR/$f.json"
            echo "re-derived expected/$f.json" >&2
        else
            rm -f "$EXPECTED_DIR/.$f.json.new"
            status=1
        fi
    done
    exit $status
fi

if [[ ${EUID} -ne 0 ]]; then
    echo "generate.sh must run as root (sudo bash pcaps/generate.sh)" >&2
    exit 1
fi
P=${VWP_PREFIX-vwp-}
SW=${P}sw
C1=${P}c1
C2=${P}c2
C3=${P}c3
SRV=${P}srv
PRX=${P}prx
FWD=${P}fwd
ALL_NS=("$C1" "$C2" "$C3" "$SRV" "$PRX" "$FWD" "$SW")
CAP_PORT=p-srv

C1_4=10.10.1.11 C1_6=fd00:10::11
C2_4=10.10.1.12 C2_6=fd00:10::12
C3_4=10.10.1.13 C3_6=fd00:10::13
DNS_4=10.10.2.53 DNS_6=fd00:10::53
WEB_4=10.10.2.80 WEB_6=fd00:10::80
PROXY_4=10.10.2.30 PROXY_PORT=8888
FWD_4=10.10.2.54

log() { printf '\n=== %s\n' "$*" >&2; }
die() { printf '\nFATAL: %s\n' "$*" >&2; exit 1; }

# ----------------------------------------------------------------------------------------------
# packages
# ----------------------------------------------------------------------------------------------
# command -> Debian package. dnsmasq comes from dnsmasq-base: the same binary without the
# "dnsmasq" package's system service, which would try to grab port 53 in the root namespace.
declare -A NEED=(
    [unbound]=unbound [unbound-checkconf]=unbound [dnsmasq]=dnsmasq-base [nginx]=nginx-light
    [curl]=curl [gnutls-cli]=gnutls-bin [openssl]=openssl [dig]=bind9-dnsutils
    [kdig]=knot-dnsutils [tinyproxy]=tinyproxy [tcpdump]=tcpdump [tshark]=tshark
    [editcap]=wireshark-common [mergecap]=wireshark-common [capinfos]=wireshark-common
    [tcprewrite]=tcpreplay [ethtool]=ethtool [ip]=iproute2 [bridge]=iproute2
    [dhclient]=isc-dhcp-client [busybox]=busybox
)
missing=()
for cmd in "${!NEED[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
[[ -x $PY ]] || missing+=(python3)
if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_install() { apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "$@"; }
    apt_install "${missing[@]}" || { apt-get -o DPkg::Lock::Timeout=600 update && apt_install "${missing[@]}"; }
fi
# the Debian packages start their own services where systemd runs; we never use them
# (our daemons run inside the namespaces with their own configs)

# quic.pcap: aioquic from PyPI (client and server), pinned, in a venv of its own outside the repository
AIOQUIC_VERSION=1.7.2
AIOQUIC_VENV=${VWP_AIOQUIC_VENV:-/var/cache/vwp-pcaps/aioquic-$AIOQUIC_VERSION}
AIOQUIC_PY=$AIOQUIC_VENV/bin/python
if want quic && ! "$AIOQUIC_PY" -c "import aioquic, sys; sys.exit(aioquic.__version__ != '$AIOQUIC_VERSION')" 2>/dev/null; then
    log "installing aioquic $AIOQUIC_VERSION into $AIOQUIC_VENV"
    if ! "$PY" -c 'import ensurepip' 2>/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends python3-venv
    fi
    rm -rf "$AIOQUIC_VENV"
    "$PY" -m venv "$AIOQUIC_VENV"
    "$AIOQUIC_VENV/bin/pip" install --quiet --disable-pip-version-check "aioquic==$AIOQUIC_VERSION"
fi

# ----------------------------------------------------------------------------------------------
# cleanup
# ----------------------------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/vwp-generate.XXXXXX)
chmod 755 "$WORK"
PIDS=()

teardown_ns() {
    local ns pid
    for ns in "${ALL_NS[@]}"; do
        if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
            # only processes living in the namespaces this script created
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
            sleep 0.2
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
            ip netns del "$ns" 2>/dev/null || true
        fi
        rm -rf "/etc/netns/$ns"
    done
    rmdir /etc/netns 2>/dev/null || true
}

cleanup() {
    local rc=$? pid
    set +e
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    teardown_ns
    if [[ $rc -ne 0 && -d $WORK ]]; then
        echo "generate.sh failed (rc=$rc); daemon logs:" >&2
        tail -n 20 "$WORK"/*.log "$WORK"/*/*.log 2>/dev/null >&2
    fi
    if [[ -n ${VWP_KEEP_WORK:-} ]]; then
        echo "work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "generate.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT TERM

teardown_ns   # leftovers of an interrupted earlier run (same names only)

# ----------------------------------------------------------------------------------------------
# network
# ----------------------------------------------------------------------------------------------
log "building namespaces"
# (background jobs use "ip netns exec" directly, not this function, so that $! is the daemon itself:
#  ip netns exec execs the command, a function would leave a subshell in between)
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

for ns in "${ALL_NS[@]}"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done

ip -n "$SW" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
nsx "$SW" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
nsx "$SW" sysctl -qw net.ipv6.conf.br0.disable_ipv6=1
ip -n "$SW" link set br0 up

offloads_off() { nsx "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1 \
    || nsx "$1" ethtool -K "$2" tx off rx off tso off gso off >/dev/null; }

# attach NS PORT [v6: yes/no]: veth eth0 in NS <-> PORT in the switch namespace
attach() {
    local ns=$1 port=$2 v6=$3
    ip link add name eth0 netns "$ns" type veth peer name "$port" netns "$SW"
    offloads_off "$ns" eth0
    offloads_off "$SW" "$port"
    ip -n "$SW" link set "$port" master br0
    nsx "$SW" bridge link set dev "$port" learning off flood on
    ip -n "$SW" link set "$port" up
    if [[ $v6 == yes ]]; then
        nsx "$ns" sysctl -qw net.ipv6.conf.eth0.accept_ra=0 net.ipv6.conf.eth0.router_solicitations=0 \
            net.ipv6.conf.eth0.accept_dad=0
    else
        nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
            net.ipv6.conf.eth0.disable_ipv6=1
    fi
}
addr4() { ip -n "$1" addr add "$2/16" dev eth0; }
addr6() { ip -n "$1" addr add "$2/64" dev eth0 nodad; }

attach "$C1" p-c1 yes; addr4 "$C1" $C1_4; addr6 "$C1" $C1_6
attach "$C2" p-c2 yes; addr4 "$C2" $C2_4; addr6 "$C2" $C2_6
attach "$C3" p-c3 yes; addr4 "$C3" $C3_4; addr6 "$C3" $C3_6
attach "$SRV" $CAP_PORT yes
addr4 "$SRV" $DNS_4; addr4 "$SRV" $WEB_4; addr6 "$SRV" $DNS_6; addr6 "$SRV" $WEB_6
attach "$PRX" p-prx no; addr4 "$PRX" $PROXY_4
attach "$FWD" p-fwd no; addr4 "$FWD" $FWD_4
for ns in "$C1" "$C2" "$C3" "$SRV" "$PRX" "$FWD"; do ip -n "$ns" link set eth0 up; done

for ns in "${ALL_NS[@]}"; do
    if [[ -n $(ip -n "$ns" route show default) || -n $(ip -n "$ns" -6 route show default) ]]; then
        die "namespace $ns has a default route"
    fi
done

# per-namespace resolver and hosts file (bind-mounted over /etc/* by ip netns exec)
for ns in "$C1" "$C2" "$C3" "$PRX" "$SRV" "$FWD"; do
    mkdir -p "/etc/netns/$ns"
    printf '127.0.0.1 localhost\n::1 localhost ip6-localhost\n' >"/etc/netns/$ns/hosts"
    printf 'nameserver %s\n' "$DNS_4" >"/etc/netns/$ns/resolv.conf"
done
for ns in "$C1" "$C2" "$C3"; do
    printf 'nameserver %s\nnameserver %s\n' "$DNS_4" "$DNS_6" >"/etc/netns/$ns/resolv.conf"
    # glibc's built-in address order written out (IPv6, ULA included, before IPv4), so that clients
    # connecting by name (gnutls-cli) pick the same family on every machine, whatever /etc/gai.conf says
    if [[ -f /etc/gai.conf ]]; then
        printf 'precedence ::1/128 50\nprecedence ::/0 40\nprecedence 2002::/16 30\nprecedence ::/96 20\nprecedence ::ffff:0:0/96 10\n' \
            >"/etc/netns/$ns/gai.conf"
    fi
done

# ----------------------------------------------------------------------------------------------
# servers
# ----------------------------------------------------------------------------------------------
log "starting unbound (auth-zone for .)"
mkdir -p "$WORK/unbound"
VENDOR_NAMES=(
    dnl-01.geo.kaspersky.com dnl-02.geo.kaspersky.com dnl-03.geo.kaspersky.com
    s05.upd.kaspersky.com s07.upd.kaspersky.com downloads.upd.kaspersky.com
    ksn-file-geo.kaspersky-labs.com ksn-url-geo.kaspersky-labs.com dc1.ksn.kaspersky-labs.com
    activation-v2.kaspersky.com www.kaspersky.com
)
DECOY_NAMES=(notkaspersky.com kaspersky.com.evil.example www.example.org)
BIG_TXT_COUNT=15
{
    echo '$TTL 60'
    echo '.                       86400 IN SOA ns.lab. hostmaster.lab. 1 3600 600 86400 60'
    echo '.                       86400 IN NS  ns.lab.'
    echo "ns.lab.                 86400 IN A   $DNS_4"
    echo "ns.lab.                 86400 IN AAAA $DNS_6"
    for n in "${VENDOR_NAMES[@]}" "${DECOY_NAMES[@]}"; do
        echo "$n. 60 IN A    $WEB_4"
        echo "$n. 60 IN AAAA $WEB_6"
    done
    echo "updates.example.net. 60 IN CNAME cdn.example.net."
    echo "cdn.example.net.     60 IN CNAME dnl-02.geo.kaspersky.com."
    # dns-fragmented.pcap: a TXT RRset of about 3.7 KB (answered over UDP to dig +bufsize=4096,
    # so the server's IP stack fragments it); nothing else asks for TXT, the A/AAAA answers are as above
    for i in $(seq -w 1 $BIG_TXT_COUNT); do
        printf 'dnl-01.geo.kaspersky.com. 60 IN TXT "vendorwatch-lab-fragmentation-test-%s-%s"\n' "$i" \
            "$(printf '%0200d' 0 | tr 0 "$((10#$i % 10))")"
    done
} >"$WORK/unbound/root.zone"
cat >"$WORK/unbound/unbound.conf" <<EOF
server:
    interface: $DNS_4
    interface: $DNS_6
    port: 53
    do-ip4: yes
    do-ip6: yes
    do-udp: yes
    do-tcp: yes
    access-control: 10.0.0.0/8 allow
    access-control: fd00::/8 allow
    chroot: ""
    username: ""
    directory: "$WORK/unbound"
    pidfile: "$WORK/unbound/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    num-threads: 1
    so-reuseport: no
    module-config: "iterator"
    hide-identity: yes
    hide-version: yes
    qname-minimisation: no
    tcp-idle-timeout: 10000
    # answers up to 4096 bytes over UDP (default 1232) for dns-fragmented.pcap; every other query
    # is dig's or glibc's with a small answer, so nothing else changes
    max-udp-size: 4096
auth-zone:
    name: "."
    zonefile: "$WORK/unbound/root.zone"
    for-downstream: yes
    for-upstream: yes
    fallback-enabled: no
remote-control:
    control-enable: no
EOF
unbound-checkconf "$WORK/unbound/unbound.conf" >/dev/null
ip netns exec "$SRV" unbound -d -c "$WORK/unbound/unbound.conf" >"$WORK/unbound.log" 2>&1 &
PIDS+=($!)

log "starting nginx"
mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=vendorwatch-lab \
    -keyout "$WORK/nginx/key.pem" -out "$WORK/nginx/cert.pem" 2>/dev/null
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
user root;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log info;
events { worker_connections 64; }
http {
    access_log $WORK/nginx/logs/access.log;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    default_type text/plain;
    server {
        listen $WEB_4:80 default_server;
        listen [$WEB_6]:80 default_server;
        listen $WEB_4:443 ssl default_server;
        listen [$WEB_6]:443 ssl default_server;
        server_name _;
        ssl_certificate $WORK/nginx/cert.pem;
        ssl_certificate_key $WORK/nginx/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / { return 200 "vendorwatch lab: \$host \$request_uri\n"; }
    }
}
EOF
nsx "$SRV" nginx -e "$WORK/nginx/logs/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -t \
    >"$WORK/nginx-t.log" 2>&1 || { cat "$WORK/nginx-t.log" >&2; die "nginx config test failed"; }
ip netns exec "$SRV" nginx -e "$WORK/nginx/logs/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" \
    >"$WORK/nginx.log" 2>&1 &
NGINX_PID=$!
PIDS+=($!)

log "starting tinyproxy"
mkdir -p "$WORK/tinyproxy"
chmod 777 "$WORK/tinyproxy"
cat >"$WORK/tinyproxy/tinyproxy.conf" <<EOF
User nobody
Group nogroup
Port $PROXY_PORT
Listen $PROXY_4
Timeout 30
LogFile "$WORK/tinyproxy/tinyproxy.log"
LogLevel Info
PidFile "$WORK/tinyproxy/tinyproxy.pid"
MaxClients 20
Allow 10.0.0.0/8
ConnectPort 443
EOF
ip netns exec "$PRX" tinyproxy -d -c "$WORK/tinyproxy/tinyproxy.conf" >"$WORK/tinyproxy.log" 2>&1 &
PIDS+=($!)

log "starting dnsmasq (forwarder, no cache)"
ip netns exec "$FWD" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
    --server="$DNS_4" --cache-size=0 --listen-address="$FWD_4" --bind-interfaces --pid-file \
    --log-queries --log-facility=- >"$WORK/dnsmasq.log" 2>&1 &
PIDS+=($!)

# readiness (not captured)
wait_for() { # description command...
    local what=$1 i
    shift
    for i in $(seq 1 50); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    die "$what did not come up"
}
wait_for "unbound v4" nsx "$C1" dig +time=1 +tries=1 +short @$DNS_4 ns.lab. A
wait_for "unbound v6" nsx "$C1" dig +time=1 +tries=1 +short @$DNS_6 ns.lab. A
wait_for "nginx" nsx "$C1" curl -sk -o /dev/null --max-time 2 "https://$WEB_4/"
wait_for "nginx v6" nsx "$C1" curl -sk -o /dev/null --max-time 2 "https://[$WEB_6]/"
wait_for "tinyproxy" nsx "$C1" curl -s -o /dev/null --max-time 2 -x "http://$PROXY_4:$PROXY_PORT" "http://ns.lab/"
wait_for "dnsmasq" nsx "$C1" dig +time=1 +tries=1 +short @$FWD_4 ns.lab. A
chain=$(nsx "$C2" dig +short @$DNS_4 updates.example.net A | tr '\n' ' ')
[[ $chain == "cdn.example.net. dnl-02.geo.kaspersky.com. $WEB_4 " ]] \
    || die "CNAME chain not answered in one response: '$chain'"

# ----------------------------------------------------------------------------------------------
# capture helpers
# ----------------------------------------------------------------------------------------------
CAP_PID=
cap_start() { # NS IFACE FILE [tcpdump args...]  -- full snaplen, written unbuffered
    local ns=$1 ifc=$2 file=$3 i
    shift 3
    ip netns exec "$ns" tcpdump -i "$ifc" -s 0 -U -n -Z root -w "$file" "$@" >"$file.log" 2>&1 &
    CAP_PID=$!
    PIDS+=("$CAP_PID")
    for i in $(seq 1 50); do
        grep -q 'listening on' "$file.log" 2>/dev/null && break
        sleep 0.1
    done
    grep -q 'listening on' "$file.log" || die "tcpdump on $ns/$ifc did not start: $(cat "$file.log")"
    sleep 0.5
}
running() { # PID: alive and not yet a zombie waiting to be reaped
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $st != Z* ]]
}
cap_stop() { # PID
    local i
    sleep 1
    kill -TERM "$1"   # background jobs of a script ignore SIGINT; tcpdump flushes on TERM too
    for i in $(seq 1 50); do running "$1" || break; sleep 0.1; done
    if running "$1"; then kill -KILL "$1"; die "tcpdump $1 did not stop on SIGTERM"; fi
    wait "$1" || true
}
span_start() { cap_start "$SW" "$CAP_PORT" "$@"; SPAN_PID=$CAP_PID; }
span_stop() { cap_stop "$SPAN_PID"; }

CLIENT_LOG=$WORK/clients.log
DIG4() { nsx "$1" dig -4 +time=2 +tries=1 "${@:2}" >>"$CLIENT_LOG"; }
DIG6() { nsx "$1" dig -6 +time=2 +tries=1 "${@:2}" >>"$CLIENT_LOG"; }
RAW=$WORK/raw
mkdir -p "$RAW"

# ----------------------------------------------------------------------------------------------
# dns.pcap
# ----------------------------------------------------------------------------------------------
if want dns; then
    log "capture dns.pcap"
    span_start "$RAW/dns.pcap"
    DIG4 "$C1" dnl-01.geo.kaspersky.com A
    DIG6 "$C1" dnl-01.geo.kaspersky.com AAAA
    DIG4 "$C1" s05.upd.kaspersky.com A
    DIG6 "$C1" s05.upd.kaspersky.com A
    DIG4 "$C1" notkaspersky.com A
    DIG6 "$C1" notkaspersky.com AAAA
    DIG4 "$C2" ksn-file-geo.kaspersky-labs.com A
    DIG6 "$C2" ksn-file-geo.kaspersky-labs.com AAAA
    DIG4 "$C2" updates.example.net A
    DIG6 "$C2" updates.example.net AAAA
    DIG4 "$C2" kaspersky.com.evil.example A
    DIG6 "$C2" kaspersky.com.evil.example AAAA
    # c3: several queries on one TCP connection (dig +keepopen), plus kdig over TCP
    DIG4 "$C3" +tcp +keepopen activation-v2.kaspersky.com A activation-v2.kaspersky.com AAAA \
        dc1.ksn.kaspersky-labs.com A
    DIG6 "$C3" +tcp +keepopen activation-v2.kaspersky.com AAAA www.example.org AAAA
    nsx "$C3" kdig -4 +tcp +timeout=2 www.example.org A >>"$CLIENT_LOG"
    nsx "$C3" kdig -6 +tcp +timeout=2 dc1.ksn.kaspersky-labs.com AAAA >>"$CLIENT_LOG"
    span_stop
fi

# ----------------------------------------------------------------------------------------------
# tls.pcap
# ----------------------------------------------------------------------------------------------
cat >"$WORK/tls_client.py" <<'EOF'
"""Python ssl client whose ClientHello carries a long ALPN list (spans several TCP segments)."""
import socket, ssl, sys
host, family = sys.argv[1], {"4": socket.AF_INET, "6": socket.AF_INET6}[sys.argv[2]]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols([f"x-vendorwatch-lab-protocol-{i:03d}" for i in range(90)] + ["http/1.1"])
addr = socket.getaddrinfo(host, 443, family, socket.SOCK_STREAM)[0][4]
with socket.create_connection(addr[:2], timeout=5) as raw:
    with ctx.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        body = b""
        while chunk := tls.recv(4096):
            body += chunk
        print(tls.version(), tls.selected_alpn_protocol(), body.split(b"\r\n", 1)[0].decode())
EOF
CURL() { nsx "$1" curl -sS -k --max-time 5 -o /dev/null -w '%{http_code} %{remote_ip} %{ssl_verify_result}\n' "${@:2}"; }
GNUTLS() { # NS TARGET HOST-HEADER [gnutls-cli args...]
    printf 'GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$3" \
        | nsx "$1" timeout 10 gnutls-cli --insecure --port 443 "${@:4}" "$2" >"$WORK/gnutls.out" 2>&1 \
        || { cat "$WORK/gnutls.out" >&2; die "gnutls-cli $2 failed"; }
    grep -q 'HTTP/1.1 200' "$WORK/gnutls.out" || { cat "$WORK/gnutls.out" >&2; die "gnutls-cli $2: no answer"; }
}

if want tls; then
    log "capture tls.pcap"
    span_start "$RAW/tls.pcap"
    CURL "$C1" -4 --tls-max 1.2 https://s07.upd.kaspersky.com/
    CURL "$C1" -6 --tlsv1.3 https://s07.upd.kaspersky.com/
    CURL "$C1" -4 https://www.kaspersky.com/
    GNUTLS "$C2" ksn-url-geo.kaspersky-labs.com ksn-url-geo.kaspersky-labs.com
    GNUTLS "$C2" "$WEB_4" ksn-url-geo.kaspersky-labs.com --sni-hostname ksn-url-geo.kaspersky-labs.com
    GNUTLS "$C2" www.example.org www.example.org
    CURL "$C2" -4 https://kaspersky.com.evil.example/
    nsx "$C3" "$PY" "$WORK/tls_client.py" downloads.upd.kaspersky.com 4
    nsx "$C3" "$PY" "$WORK/tls_client.py" downloads.upd.kaspersky.com 6
    span_stop
fi

# ----------------------------------------------------------------------------------------------
# http-proxy.pcap
# ----------------------------------------------------------------------------------------------
if want http-proxy; then
    log "capture http-proxy.pcap"
    span_start "$RAW/http-proxy.pcap"
    CURL "$C1" -x "http://$PROXY_4:$PROXY_PORT" http://dnl-03.geo.kaspersky.com/index/u0607g.xml
    CURL "$C2" -x "http://$PROXY_4:$PROXY_PORT" https://activation-v2.kaspersky.com/
    CURL "$C3" -4 -A 'vendorwatch-lab-agent/1.0 (capture test)' http://www.example.org/
    CURL "$C3" -4 http://dnl-01.geo.kaspersky.com/
    span_stop
fi

# ----------------------------------------------------------------------------------------------
# dns-forwarder.pcap
# ----------------------------------------------------------------------------------------------
if want dns-forwarder; then
    log "capture dns-forwarder.pcap"
    span_start "$RAW/dns-forwarder.pcap"
    DIG4 "$C1" @$FWD_4 s05.upd.kaspersky.com A
    span_stop
fi

# ----------------------------------------------------------------------------------------------
# passive-dns.pcap: name only in DNS, then a connection by address with no SNI
# ----------------------------------------------------------------------------------------------
if want passive-dns; then
    log "capture passive-dns.pcap"
    span_start "$RAW/passive-dns.pcap"
    DIG4 "$C2" dnl-02.geo.kaspersky.com A
    nsx "$C2" timeout 10 openssl s_client -connect "$WEB_4:443" -noservername </dev/null >"$WORK/s_client.out" 2>&1 \
        || { cat "$WORK/s_client.out" >&2; die "openssl s_client failed"; }
    span_stop
fi

# ----------------------------------------------------------------------------------------------
# multi-link.pcapng: Ethernet (bridge, without c1) + Linux cooked v1 (tcpdump -i any inside c1)
# ----------------------------------------------------------------------------------------------
if want multi-link; then
    log "capture multi-link parts"
    span_start "$RAW/multi-eth.pcap" not host $C1_4 and not host $C1_6
    cap_start "$C1" any "$RAW/multi-sll.pcap" -y LINUX_SLL
    SLL_PID=$CAP_PID
    DIG4 "$C1" dnl-01.geo.kaspersky.com A
    DIG6 "$C1" dnl-01.geo.kaspersky.com AAAA
    DIG4 "$C2" ksn-file-geo.kaspersky-labs.com A
    cap_stop "$SLL_PID"
    span_stop
fi

# ----------------------------------------------------------------------------------------------
# dns-sll2.pcap: tcpdump -i any -y LINUX_SLL2 inside c1
# ----------------------------------------------------------------------------------------------
if want dns-sll2; then
    log "capture dns-sll2.pcap"
    cap_start "$C1" any "$RAW/dns-sll2.pcap" -y LINUX_SLL2
    SLL2_PID=$CAP_PID
    DIG4 "$C1" dnl-01.geo.kaspersky.com A
    DIG6 "$C1" s05.upd.kaspersky.com AAAA
    DIG4 "$C1" notkaspersky.com A
    cap_stop "$SLL2_PID"
fi

# ----------------------------------------------------------------------------------------------
# quic.pcap: HTTP/3 over QUIC, aioquic client and server (v1; one connection in v2)
# ----------------------------------------------------------------------------------------------
if want quic; then
    cat >"$WORK/quic_server.py" <<'EOF'
"""HTTP/3 server (aioquic): one UDP socket per address given (a wildcard socket answered from the
wrong source address), self-signed certificate, answers every request with a short text."""
import asyncio, sys
from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated

class H3Server(QuicConnectionProtocol):
    h3 = None
    def quic_event_received(self, event):
        if isinstance(event, ProtocolNegotiated):
            self.h3 = H3Connection(self._quic)
        if self.h3 is None:
            return
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                h = dict(ev.headers)
                body = b"vendorwatch lab: " + h.get(b":authority", b"") + h.get(b":path", b"") + b"\n"
                self.h3.send_headers(ev.stream_id, [(b":status", b"200"), (b"content-type", b"text/plain"),
                                                    (b"content-length", str(len(body)).encode())])
                self.h3.send_data(ev.stream_id, body, end_stream=True)
                self.transmit()

async def main(cert, key, addrs):
    cfg = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)   # QUIC v1 and v2
    cfg.load_cert_chain(cert, key)
    for a in addrs:
        await serve(a, 443, configuration=cfg, create_protocol=H3Server)
    print("listening on", *addrs, flush=True)
    await asyncio.Future()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
EOF
    cat >"$WORK/quic_client.py" <<'EOF'
"""HTTP/3 client (aioquic): GET https://NAME/ from the server at ADDRESS (no DNS lookup, like
curl --resolve), SNI = NAME; --version 2 speaks QUIC v2 from the first packet; --alpn-extra N
adds N long ALPN entries so that the ClientHello no longer fits in one Initial packet."""
import argparse, asyncio, ssl
from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import QuicProtocolVersion

class H3Client(QuicConnectionProtocol):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.h3 = H3Connection(self._quic)
        self.done = asyncio.get_running_loop().create_future()
        self.status, self.body = b"", b""
    def quic_event_received(self, event):
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                self.status = dict(ev.headers).get(b":status", b"")
            elif isinstance(ev, DataReceived):
                self.body += ev.data
            if getattr(ev, "stream_ended", False) and not self.done.done():
                self.done.set_result(None)

async def main(a):
    version = {1: QuicProtocolVersion.VERSION_1, 2: QuicProtocolVersion.VERSION_2}[a.version]
    cfg = QuicConfiguration(is_client=True, server_name=a.name, verify_mode=ssl.CERT_NONE,
                            alpn_protocols=H3_ALPN + [f"x-vendorwatch-lab-protocol-{i:03d}" for i in range(a.alpn_extra)],
                            supported_versions=[version])
    async with connect(a.address, 443, configuration=cfg, create_protocol=H3Client) as c:
        sid = c._quic.get_next_available_stream_id()
        c.h3.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", a.name.encode()),
                                (b":path", b"/"), (b"user-agent", b"vendorwatch-lab-aioquic")], end_stream=True)
        c.transmit()
        await asyncio.wait_for(c.done, 5)
        print(f"{a.name} {a.address} QUIC version 0x{c._quic._version:08x} {c.status.decode()} {c.body.decode().strip()}")
        if c.status != b"200":
            raise SystemExit(f"{a.name}: HTTP/3 status {c.status!r}")

ap = argparse.ArgumentParser()
ap.add_argument("name"); ap.add_argument("address")
ap.add_argument("--version", type=int, choices=(1, 2), default=1)
ap.add_argument("--alpn-extra", type=int, default=0)
asyncio.run(main(ap.parse_args()))
EOF
    QUIC() { # NS NAME ADDRESS [client args...]
        nsx "$1" "$AIOQUIC_PY" "$WORK/quic_client.py" "${@:2}" >>"$WORK/quic-clients.log" 2>&1 \
            || { tail -n 20 "$WORK/quic-clients.log" >&2; die "aioquic client $2 failed"; }
    }
    quic_listening() {
        local s
        s=$(nsx "$SRV" ss -Hnlu 'sport = :443')
        grep -qF "$WEB_4:443" <<<"$s" && grep -qF "[$WEB_6]:443" <<<"$s"
    }
    log "starting the aioquic HTTP/3 server"
    ip netns exec "$SRV" "$AIOQUIC_PY" "$WORK/quic_server.py" "$WORK/nginx/cert.pem" "$WORK/nginx/key.pem" \
        "$WEB_4" "$WEB_6" >"$WORK/quic-server.log" 2>&1 &
    PIDS+=($!)
    wait_for "aioquic server" quic_listening

    log "capture quic.pcap"
    span_start "$RAW/quic.pcap"
    QUIC "$C1" s07.upd.kaspersky.com "$WEB_4"
    QUIC "$C2" www.example.org "$WEB_4"
    QUIC "$C3" ksn-file-geo.kaspersky-labs.com "$WEB_6" --alpn-extra 45
    QUIC "$C2" activation-v2.kaspersky.com "$WEB_4" --version 2
    span_stop
    cat "$WORK/quic-clients.log" >&2
    [[ $(grep -c 'QUIC version 0x00000001 200' "$WORK/quic-clients.log") -eq 3 ]] \
        || die "expected three QUIC v1 connections"
    grep -q 'activation-v2.kaspersky.com .* QUIC version 0x6b3343cf 200' "$WORK/quic-clients.log" \
        || die "the QUIC v2 connection did not use v2"
fi

# ----------------------------------------------------------------------------------------------
# dns-fragmented.pcap: DNS answers over UDP that the server's IP stack fragments (IPv4 and IPv6)
# ----------------------------------------------------------------------------------------------
if want dns-fragmented; then
    mtu=$(ip -n "$SRV" -o link show eth0 | sed -n 's/.* mtu \([0-9]*\) .*/\1/p')
    [[ $mtu == 1500 ]] || die "server veth MTU is $mtu, expected 1500"
    log "capture dns-fragmented.pcap"
    span_start "$RAW/dns-fragmented.pcap"
    # +ignore: a truncated answer is not retried over TCP (the checks below would then fail)
    DIG4 "$C1" +bufsize=4096 +notcp +ignore dnl-01.geo.kaspersky.com TXT
    DIG6 "$C2" +bufsize=4096 +notcp +ignore dnl-01.geo.kaspersky.com TXT
    span_stop
fi

# ----------------------------------------------------------------------------------------------
# tls12-certs.pcap: TLS 1.2 (certificates in clear) from Kaspersky-named private CAs, served by nginx
# ----------------------------------------------------------------------------------------------
if want tls12-certs; then
    log "making the private CAs and leaf certificates"
    CERTS=$WORK/certs
    mkdir -p "$CERTS"
    mkca() { # NAME SUBJECT
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -sha256 -subj "$2" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
            -keyout "$CERTS/$1.key" -out "$CERTS/$1.pem" 2>/dev/null
    }
    mkleaf() { # NAME CA SUBJECT SAN
        openssl req -new -newkey rsa:2048 -nodes -subj "$3" -keyout "$CERTS/$1.key" -out "$CERTS/$1.csr" 2>/dev/null
        printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' \
            "$4" >"$CERTS/$1.ext"
        openssl x509 -req -in "$CERTS/$1.csr" -CA "$CERTS/$2.pem" -CAkey "$CERTS/$2.key" \
            -set_serial "0x$(openssl rand -hex 8)" -days 30 -sha256 -extfile "$CERTS/$1.ext" \
            -out "$CERTS/$1.pem" 2>/dev/null
        openssl verify -CAfile "$CERTS/$2.pem" "$CERTS/$1.pem" >/dev/null || die "leaf $1 does not verify against $2"
    }
    # the CA behind Kaspersky's service endpoints (subject as in the real 2019-2021 KSN certificate)
    mkca public-services-ca "/C=RU/O=Kaspersky Lab/CN=Kaspersky Lab Public Services TLS CA"
    mkleaf ksn public-services-ca "/C=RU/ST=Moscow/L=Moscow/O=Kaspersky/OU=IT/CN=ksn.kaspersky-labs.com" \
        "DNS:ksn.kaspersky-labs.com,DNS:*.ksn.kaspersky-labs.com"
    cat "$CERTS/ksn.pem" "$CERTS/public-services-ca.pem" >"$CERTS/ksn-chain.pem"   # leaf + CA
    # the local root a Kaspersky product creates to re-sign the HTTPS it scans
    mkca personal-root "/C=RU/O=AO Kaspersky Lab/CN=Kaspersky Anti-Virus Personal Root Certificate"
    mkleaf example personal-root "/CN=www.example.org" "DNS:www.example.org"   # leaf only

    # this nginx replaces the lab's (same address and port); nothing captured after this needs that one
    kill -TERM "$NGINX_PID"
    wait "$NGINX_PID" 2>/dev/null || true
    keep=()
    for pid in "${PIDS[@]}"; do [[ $pid == "$NGINX_PID" ]] || keep+=("$pid"); done
    PIDS=("${keep[@]}")
    mkdir -p "$WORK/nginx-certs/logs" "$WORK/nginx-certs/tmp"
    cat >"$WORK/nginx-certs/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
user root;
pid $WORK/nginx-certs/nginx.pid;
error_log $WORK/nginx-certs/logs/error.log info;
events { worker_connections 64; }
http {
    access_log $WORK/nginx-certs/logs/access.log;
    client_body_temp_path $WORK/nginx-certs/tmp/body;
    proxy_temp_path $WORK/nginx-certs/tmp/proxy;
    fastcgi_temp_path $WORK/nginx-certs/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx-certs/tmp/uwsgi;
    scgi_temp_path $WORK/nginx-certs/tmp/scgi;
    default_type text/plain;
    ssl_protocols TLSv1.2 TLSv1.3;
    # no SNI -> the default server: the KSN certificate
    server {
        listen $WEB_4:443 ssl default_server;
        listen [$WEB_6]:443 ssl default_server;
        server_name ksn.kaspersky-labs.com;
        ssl_certificate $CERTS/ksn-chain.pem;
        ssl_certificate_key $CERTS/ksn.key;
        location / { return 200 "vendorwatch lab (ksn): \$host \$request_uri\n"; }
    }
    server {
        listen $WEB_4:443 ssl;
        listen [$WEB_6]:443 ssl;
        server_name www.example.org;
        ssl_certificate $CERTS/example.pem;
        ssl_certificate_key $CERTS/example.key;
        location / { return 200 "vendorwatch lab (re-signed): \$host \$request_uri\n"; }
    }
}
EOF
    nsx "$SRV" nginx -e "$WORK/nginx-certs/logs/error.log" -p "$WORK/nginx-certs" -c "$WORK/nginx-certs/nginx.conf" -t \
        >"$WORK/nginx-certs-t.log" 2>&1 || { cat "$WORK/nginx-certs-t.log" >&2; die "nginx (certificates) config test failed"; }
    ip netns exec "$SRV" nginx -e "$WORK/nginx-certs/logs/error.log" -p "$WORK/nginx-certs" \
        -c "$WORK/nginx-certs/nginx.conf" >"$WORK/nginx-certs.log" 2>&1 &
    PIDS+=($!)
    wait_for "nginx (certificates)" nsx "$C3" curl -sk -o /dev/null --max-time 2 "https://$WEB_4/"

    log "capture tls12-certs.pcap"
    span_start "$RAW/tls12-certs.pcap"
    # c1: no SNI, no DNS, no HTTP: the certificate is the only name on the wire
    nsx "$C1" timeout 10 openssl s_client -tls1_2 -noservername -connect "$WEB_4:443" </dev/null \
        >"$WORK/s_client-certs.out" 2>&1 || { cat "$WORK/s_client-certs.out" >&2; die "openssl s_client -tls1_2 failed"; }
    # c2: SNI www.example.org, TLS 1.2, address given (curl --resolve, no DNS)
    CURL "$C2" --tlsv1.2 --tls-max 1.2 --resolve "www.example.org:443:$WEB_4" https://www.example.org/ \
        >>"$CLIENT_LOG"
    span_stop
    grep -q 'subject=C = RU, ST = Moscow, L = Moscow, O = Kaspersky, OU = IT, CN = ksn.kaspersky-labs.com' \
        "$WORK/s_client-certs.out" || { cat "$WORK/s_client-certs.out" >&2; die "s_client did not get the KSN certificate"; }
    grep -q 'Protocol *: TLSv1.2' "$WORK/s_client-certs.out" || die "s_client did not speak TLS 1.2"
fi

# ----------------------------------------------------------------------------------------------
# dhcp-ptr.pcap: DHCP clients (ISC dhclient v4 and v6, busybox udhcpc) leasing from dnsmasq, PTR
# lookups, an address that moves between machines; its own namespaces (clients start without one)
# ----------------------------------------------------------------------------------------------
if want dhcp-ptr; then
    log "capture dhcp-ptr.pcap"
    VWP_PREFIX=$P bash "$HERE/dhcp-ptr.sh" "$RAW/dhcp-ptr.pcap"
fi

# the network is no longer needed
log "stopping daemons and removing namespaces"
for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
PIDS=()
teardown_ns

# ----------------------------------------------------------------------------------------------
# offline variants
# ----------------------------------------------------------------------------------------------
log "deriving offline variants"
OUT=$WORK/out
mkdir -p "$OUT"
for f in dns tls http-proxy dns-forwarder passive-dns dns-sll2 quic dns-fragmented tls12-certs dhcp-ptr; do
    want "$f" || continue
    # editcap rewrites each file as a plain little-endian usec pcap with the same frames
    editcap -F pcap "$RAW/$f.pcap" "$OUT/$f.pcap"
done

if want dns; then
    # one dig query + answer (c1, IPv4, dnl-01.geo) with the resolver moved to 8.8.8.8, offline
    mapfile -t PUB < <(tshark -r "$OUT/dns.pcap" -Y "ip.addr==$C1_4 && ip.addr==$DNS_4 && udp && dns.qry.name==\"dnl-01.geo.kaspersky.com\" && dns.qry.type==1" \
        -T fields -e frame.number 2>/dev/null)
    [[ ${#PUB[@]} -eq 2 ]] || die "expected one query and one answer for the public-resolver capture, got ${PUB[*]:-none}"
    editcap -F pcap -r "$OUT/dns.pcap" "$WORK/pub-in.pcap" "${PUB[0]}" "${PUB[1]}"
    tcprewrite --infile="$WORK/pub-in.pcap" --outfile="$OUT/dns-public-resolver.pcap" \
        --pnat="$DNS_4/32:8.8.8.8/32" --fixcsum

    editcap -F nsecpcap "$OUT/dns.pcap" "$OUT/dns-nsec.pcap"
    "$PY" "$HERE/pcap_convert.py" bigendian "$OUT/dns.pcap" "$OUT/dns-bigendian.pcap"
    "$PY" "$HERE/pcap_convert.py" vlan "$OUT/dns.pcap" "$OUT/dns-vlan.pcap" 0x8100:100
    "$PY" "$HERE/pcap_convert.py" rawip "$OUT/dns.pcap" "$OUT/dns-rawip.pcap"
    "$PY" "$HERE/pcap_convert.py" null "$OUT/dns.pcap" "$OUT/dns-null.pcap"
fi
if want tls; then
    editcap -F pcapng "$OUT/tls.pcap" "$OUT/tls.pcapng"
    "$PY" "$HERE/pcap_convert.py" vlan "$OUT/tls.pcap" "$OUT/tls-qinq.pcap" 0x88a8:200,0x8100:100
fi
if want multi-link; then
    mergecap -F pcapng -w "$OUT/multi-link.pcapng" "$RAW/multi-eth.pcap" "$RAW/multi-sll.pcap"
fi
have() { [[ -f $OUT/$1 ]]; }

# ----------------------------------------------------------------------------------------------
# checks that need a look at the packets themselves
# ----------------------------------------------------------------------------------------------
log "checking captures"
TS=(tshark -n -o tcp.desegment_tcp_streams:TRUE -o tls.desegment_ssl_records:TRUE -d "tcp.port==$PROXY_PORT,http")
if have tls.pcap; then
    # multi-segment ClientHello from the Python client, over IPv4 and IPv6
    segs=$("${TS[@]}" -r "$OUT/tls.pcap" -Y 'tls.handshake.extensions_server_name == "downloads.upd.kaspersky.com"' \
        -T fields -e ip.src -e ipv6.src -e tcp.segment.count 2>/dev/null)
    echo "$segs" >&2
    [[ $(awk -F'\t' '$3 >= 2' <<<"$segs" | wc -l) -ge 2 ]] \
        || die "the Python ClientHello was not reassembled from several TCP segments: $segs"
    # both TLS versions and three stacks (OpenSSL curl, GnuTLS, Python ssl)
    vers=$("${TS[@]}" -r "$OUT/tls.pcap" -Y 'tls.handshake.type == 2' -T fields \
        -e tls.handshake.extensions.supported_version -e tls.handshake.version 2>/dev/null | sort | uniq -c)
    echo "$vers" >&2
    grep -q '0x0304' <<<"$vers" || die "no TLS 1.3 ServerHello in tls.pcap"
    grep -q '0x0303[[:space:]]*$' <<<"$vers" || die "no TLS 1.2 ServerHello in tls.pcap"
fi
if have dns.pcap; then
    # dig +keepopen: several queries from c3 on one TCP connection
    keep=$("${TS[@]}" -r "$OUT/dns.pcap" -Y "tcp && dns.flags.response==0 && (ip.src==$C3_4 || ipv6.src==$C3_6)" \
        -T fields -e tcp.stream -e dns.qry.name -E occurrence=a -E aggregator=' ' 2>/dev/null)
    echo "$keep" >&2
    [[ $(awk -F'\t' '{n[$1] += split($2, a, " ")} END {for (s in n) if (n[s] >= 2) c++; print c+0}' <<<"$keep") -ge 2 ]] \
        || die "no TCP connection carried several DNS queries (dig +keepopen)"
fi
if have quic.pcap; then
    # tshark decrypts the Initials itself: four ClientHellos with SNI, one of them QUIC v2, and the
    # one with the long ALPN list spread over two Initial packets (two datagrams)
    q=$(tshark -n -r "$OUT/quic.pcap" -Y 'quic && tls.handshake.type == 1' -T fields -e ip.src -e ipv6.src \
        -e quic.version -e tls.handshake.extensions_server_name -e frame.number \
        -E occurrence=f 2>/dev/null)
    echo "$q" >&2
    [[ $(wc -l <<<"$q") -eq 4 ]] || die "expected 4 QUIC ClientHellos in quic.pcap"
    grep -qP '\t0x6b3343cf\tactivation-v2.kaspersky.com\t' <<<"$q" || die "no QUIC v2 ClientHello (activation-v2) in quic.pcap"
    [[ $(grep -cP '\t0x00000001\t' <<<"$q") -eq 3 ]] || die "expected 3 QUIC v1 ClientHellos in quic.pcap"
    split=$(tshark -n -r "$OUT/quic.pcap" -Y "quic.long.packet_type == 0 && ipv6.src == $C3_6 && quic.frame_type == 6" \
        -T fields -e frame.number 2>/dev/null | sort -u | wc -l)
    [[ $split -ge 2 ]] || die "the long ClientHello (ksn-file-geo) did not span two Initial packets ($split)"
fi
if have dns-fragmented.pcap; then
    # answers fragmented by the server's IP stack, reassembled by tshark, over IPv4 and IPv6
    frag=$(tshark -n -r "$OUT/dns-fragmented.pcap" -Y 'dns.flags.response == 1' -T fields -e ip.src -e ipv6.src \
        -e ip.fragment.count -e ipv6.fragment.count -e dns.count.answers -e dns.flags.truncated -e udp.length 2>/dev/null)
    echo "$frag" >&2
    [[ $(awk -F'\t' -v n=$BIG_TXT_COUNT '$1 != "" && $3 >= 2 && $5 == n && ($6 == "0" || $6 == "False")' <<<"$frag" | wc -l) -eq 1 ]] \
        || die "no reassembled IPv4-fragmented DNS answer with $BIG_TXT_COUNT TXT records"
    [[ $(awk -F'\t' -v n=$BIG_TXT_COUNT '$2 != "" && $4 >= 2 && $5 == n && ($6 == "0" || $6 == "False")' <<<"$frag" | wc -l) -eq 1 ]] \
        || die "no reassembled IPv6-fragmented DNS answer with $BIG_TXT_COUNT TXT records"
    n4=$(tshark -n -r "$OUT/dns-fragmented.pcap" -o ip.defragment:FALSE -Y 'ip.flags.mf == 1 || ip.frag_offset > 0' 2>/dev/null | wc -l)
    n6=$(tshark -n -r "$OUT/dns-fragmented.pcap" -o ipv6.defragment:FALSE -Y 'ipv6.fraghdr' 2>/dev/null | wc -l)
    echo "IPv4 fragments: $n4, IPv6 fragments: $n6" >&2
    [[ $n4 -ge 2 && $n6 -ge 2 ]] || die "dns-fragmented.pcap: too few fragments on the wire (v4 $n4, v6 $n6)"
fi
if have tls12-certs.pcap; then
    # TLS 1.2 only, the leaf certificates as tshark sees them agree with openssl's reading of the same DER
    vers=$("${TS[@]}" -r "$OUT/tls12-certs.pcap" -Y 'tls.handshake.type == 2' -T fields \
        -e tls.handshake.extensions.supported_version -e tls.handshake.version 2>/dev/null | sort -u)
    [[ $vers == $'\t0x0303' ]] || die "tls12-certs.pcap: ServerHellos are not all TLS 1.2: $vers"
    mapfile -t ders < <(tshark -n -r "$OUT/tls12-certs.pcap" -Y 'tls.handshake.type == 11' -T fields \
        -e tls.handshake.certificate -E occurrence=f 2>/dev/null)
    [[ ${#ders[@]} -eq 2 ]] || die "tls12-certs.pcap: expected 2 Certificate messages, got ${#ders[@]}"
    for der in "${ders[@]}"; do
        "$PY" -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.argv[1].replace(":", "")))' "$der" \
            | openssl x509 -inform der -noout -subject -issuer -ext subjectAltName -nameopt RFC2253 >&2 \
            || die "openssl cannot read a certificate from tls12-certs.pcap"
    done
fi
# valid IP/UDP/TCP checksums everywhere (offloads off; tcprewrite --fixcsum)
for f in "$OUT"/*; do
    n=$(tshark -r "$f" -o ip.check_checksum:TRUE -o udp.check_checksum:TRUE -o tcp.check_checksum:TRUE \
        -Y 'ip.checksum.status==0 || udp.checksum.status==0 || tcp.checksum.status==0' 2>/dev/null | wc -l)
    [[ $n -eq 0 ]] || die "$f has $n packets with bad checksums"
done
# no packet in any capture touches 8.8.8.8 except the rewritten one
for f in "$OUT"/*; do
    [[ $(basename "$f") == dns-public-resolver.pcap ]] && continue
    n=$(tshark -r "$f" -Y 'ip.addr==8.8.8.8' 2>/dev/null | wc -l)
    [[ $n -eq 0 ]] || die "$f has packets with 8.8.8.8"
done
# nothing outside the lab ranges was ever on the wire
for f in "$RAW"/*.pcap; do
    # (DHCP before a client has its address: from 0.0.0.0, to 255.255.255.255)
    n=$(tshark -r "$f" -Y '(ip && !(ip.src==10.10.0.0/16 && ip.dst==10.10.0.0/16) && !(dhcp && (ip.src==0.0.0.0 || ip.dst==255.255.255.255))) || (ipv6 && !((ipv6.src==fd00:10::/64 || ipv6.src==fe80::/10 || ipv6.src==::) && (ipv6.dst==fd00:10::/64 || ipv6.dst==fe80::/10 || ipv6.dst==ff00::/8)))' 2>/dev/null | wc -l)
    [[ $n -eq 0 ]] || die "$f has packets outside the lab address ranges"
done

# ----------------------------------------------------------------------------------------------
# install captures and expectations
# ----------------------------------------------------------------------------------------------
log "deriving expectations"
V_DIG=$(dig -v 2>&1 | awk '{print $2}' | cut -d- -f1)
V_KDIG=$(kdig --version | awk '{print $NF}')
V_UNBOUND=$(unbound -V | awk 'NR==1 {print $2}')
V_NGINX=$(nginx -v 2>&1 | sed 's|.*nginx/||')
V_CURL=$(curl -V | awk 'NR==1 {print $2}')
V_OPENSSL=$(openssl version | awk '{print $2}')
V_GNUTLS=$(gnutls-cli --version | awk 'NR==1 {print $2}')
V_PY=$("$PY" -c 'import ssl, sys; print(sys.version.split()[0], "ssl (OpenSSL", ssl.OPENSSL_VERSION.split()[1] + ")")')
V_TINYPROXY=$(tinyproxy -v | awk '{print $2}')
V_DNSMASQ=$(dnsmasq -v | awk 'NR==1 {print $3}')
V_TCPDUMP=$(tcpdump --version 2>&1 | awk 'NR==1 {print $3}')
V_EDITCAP=$(editcap -v | awk 'NR==1 {print $3}')
V_TCPREWRITE=$(tcprewrite -V 2>&1 | awk 'NR==1 {print $3}')
V_AIOQUIC=
want quic && V_AIOQUIC=$("$AIOQUIC_PY" -c 'import aioquic, sys, ssl; print(aioquic.__version__, "(Python", sys.version.split()[0] + ")")')
V_LINUX=$(uname -r | cut -d- -f1)
V_DHCLIENT=$(dhclient --version 2>&1 | sed 's/^isc-dhclient-//')
V_BUSYBOX=$(busybox | awk 'NR==1 {print $2}')
BRIDGE="over veth, captured by tcpdump $V_TCPDUMP on the switch port toward the servers (bridge floods, full snaplen)"
DNS_BY="dig $V_DIG and kdig $V_KDIG against unbound $V_UNBOUND (auth-zone for .) $BRIDGE"
TLS_BY="curl $V_CURL (OpenSSL $V_OPENSSL, TLS 1.2 and 1.3), gnutls-cli $V_GNUTLS, Python $V_PY with a long ALPN list against nginx $V_NGINX; lookups by glibc against unbound $V_UNBOUND; $BRIDGE"

declare -A MADE_BY=(
    [dns.pcap]="$DNS_BY"
    [tls.pcap]="$TLS_BY"
    [http-proxy.pcap]="curl $V_CURL direct and through tinyproxy $V_TINYPROXY (absolute-form and CONNECT) to nginx $V_NGINX, unbound $V_UNBOUND $BRIDGE"
    [dns-forwarder.pcap]="dig $V_DIG to dnsmasq $V_DNSMASQ (forwarder, cache-size 0) forwarding to unbound $V_UNBOUND $BRIDGE"
    [passive-dns.pcap]="dig $V_DIG + unbound $V_UNBOUND, then openssl s_client $V_OPENSSL -noservername to nginx $V_NGINX by address $BRIDGE"
    [dns-public-resolver.pcap]="one dig $V_DIG query/answer from dns.pcap, resolver 10.10.2.53 rewritten to 8.8.8.8 offline by tcprewrite $V_TCPREWRITE --pnat --fixcsum (never sent)"
    [tls.pcapng]="tls.pcap converted by editcap $V_EDITCAP -F pcapng; $TLS_BY"
    [dns-nsec.pcap]="dns.pcap converted by editcap $V_EDITCAP -F nsecpcap; $DNS_BY"
    [dns-bigendian.pcap]="dns.pcap rewritten big-endian by pcap_convert.py bigendian; $DNS_BY"
    [dns-vlan.pcap]="dns.pcap with an 802.1Q tag (VID 100) inserted by pcap_convert.py vlan; $DNS_BY"
    [tls-qinq.pcap]="tls.pcap with 802.1ad 0x88a8 VID 200 + 802.1Q VID 100 inserted by pcap_convert.py vlan; $TLS_BY"
    [multi-link.pcapng]="mergecap $V_EDITCAP of two real captures: Ethernet from the switch port (tcpdump $V_TCPDUMP, c1 filtered out) and LINUX_SLL from tcpdump -i any inside c1; dig $V_DIG + unbound $V_UNBOUND"
    [dns-sll2.pcap]="dig $V_DIG + unbound $V_UNBOUND, captured by tcpdump $V_TCPDUMP -i any -y LINUX_SLL2 inside c1"
    [dns-rawip.pcap]="dns.pcap with Ethernet headers stripped, link type RAW (101), by pcap_convert.py rawip; $DNS_BY"
    [dns-null.pcap]="dns.pcap as BSD null/loopback link type 0 (AF_INET 2, AF_INET6 24, file byte order) by pcap_convert.py null; $DNS_BY"
    [quic.pcap]="aioquic $V_AIOQUIC HTTP/3 client and server (PyPI), QUIC v1 and one QUIC v2 connection, self-signed certificate, server bound to 10.10.2.80:443 and [fd00:10::80]:443, clients given the address (no DNS) $BRIDGE"
    [dns-fragmented.pcap]="dig $V_DIG +bufsize=4096 +notcp TXT queries against unbound $V_UNBOUND (max-udp-size 4096); the answers fragmented by the server's Linux $V_LINUX IP stack (veth MTU 1500) $BRIDGE"
    [dhcp-ptr.pcap]="ISC dhclient $V_DHCLIENT (send host-name, fqdn; and -6 with DUID-LL) and busybox $V_BUSYBOX udhcpc (-x hostname, client identifier) leasing fixed addresses from dnsmasq $V_DNSMASQ (DHCPv4, DHCPv6 and DNS for .lab, one IPv4 address shared by two MACs: released by one, then leased to the other), dig $V_DIG -x PTR lookups (in-addr.arpa, ip6.arpa) and Kaspersky lookups over IPv4 and IPv6; its own bridge, captured by tcpdump $V_TCPDUMP on the port toward dnsmasq"
    [tls12-certs.pcap]="openssl s_client $V_OPENSSL -tls1_2 -noservername and curl $V_CURL --tls-max 1.2 --resolve against nginx $V_NGINX serving leaves signed by two private CAs made with openssl $V_OPENSSL (CN=Kaspersky Lab Public Services TLS CA; CN=Kaspersky Anti-Virus Personal Root Certificate) $BRIDGE"
)
for f in "${!SCENARIO[@]}"; do
    [[ -n ${MADE_BY[$f]:-} ]] || die "no MADE_BY entry for $f"
done
[[ ${#MADE_BY[@]} -eq ${#SCENARIO[@]} ]] || die "MADE_BY and SCENARIO tables differ"

# every file made in this run must be known (and nothing else is installed)
for path in "$OUT"/*; do
    [[ -n ${SCENARIO[$(basename "$path")]:-} ]] || die "$(basename "$path") has no scenario"
done

# link types must be what the file names promise
declare -A LINKTYPE=(
    [dns-vlan.pcap]=1 [tls-qinq.pcap]=1 [dns-sll2.pcap]=276 [dns-rawip.pcap]=101 [dns-null.pcap]=0
    [quic.pcap]=1 [dns-fragmented.pcap]=1 [tls12-certs.pcap]=1 [dhcp-ptr.pcap]=1
)
for f in "${!LINKTYPE[@]}"; do
    have "$f" || continue
    got=$(tshark -r "$OUT/$f" -T fields -e frame.protocols -c 1 2>/dev/null)
    lt=$("$PY" -c 'import struct,sys; d=open(sys.argv[1],"rb").read(24); e="<" if d[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"; print(struct.unpack(e+"I", d[20:24])[0])' "$OUT/$f")
    [[ $lt == "${LINKTYPE[$f]}" ]] || die "$f has link type $lt, expected ${LINKTYPE[$f]} ($got)"
done
if have multi-link.pcapng; then
    capinfos -t -E "$OUT/multi-link.pcapng" >&2
    ifaces=$(tshark -r "$OUT/multi-link.pcapng" -T fields -e frame.interface_id -e frame.encap_type 2>/dev/null | sort -u)
    [[ $(cut -f1 <<<"$ifaces" | sort -u | wc -l) -eq 2 && $(cut -f2 <<<"$ifaces" | sort -u | wc -l) -eq 2 ]] \
        || die "multi-link.pcapng should have two interfaces of two link types: $ifaces"
fi

mkdir -p "$EXPECTED_DIR"
MADE=()
for path in "$OUT"/*; do
    f=$(basename "$path")
    MADE+=("$f")
    "$PY" "$HERE/expected_from_tshark.py" --scenario "${SCENARIO[$f]}" --made-by "${MADE_BY[$f]}" \
        --name "$f" --proxy-port "$PROXY_PORT" "$path" >"$WORK/$f.json"
done
((${#MADE[@]})) || die "no capture was made"

# all good: install (only what this run made; with --only the other files are not touched)
for f in "${MADE[@]}"; do
    install -m 0644 "$OUT/$f" "$HERE/$f"
    install -m 0644 "$WORK/$f.json" "$EXPECTED_DIR/$f.json"
done
total=$(du -cb "$HERE"/*.pcap "$HERE"/*.pcapng | awk 'END {print $1}')
[[ $total -lt 5000000 ]] || die "captures total $total bytes (limit 5 MB)"
log "done: ${MADE[*]}"
ls -l "$HERE"/*.pcap "$HERE"/*.pcapng "$EXPECTED_DIR" >&2
