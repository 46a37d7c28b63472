#!/usr/bin/env bash
# Makes the whole-binary benchmark capture: a single classic pcap (Ethernet) of real traffic,
# multiplied to the target size with thousands of distinct client hosts, plus its ground truth.
#
#   sudo bash bench/make-capture.sh [OUT] [SIZE_MB] [MIX]
#
#   OUT      default bench-data/bench.pcap (relative to the repository root; bench-data/ is ignored by git)
#   SIZE_MB  default 600 (the result is at least this large: whole copies of the base capture)
#   MIX      bulk (default): mostly bulk transfer, few flows per host (the original benchmark)
#            enterprise: what an office tap carries: 128 base hosts per namespace (512), each making
#            ~40 DNS lookups (one dig process, one socket per query; two over TCP) of names from a
#            pool of 400 names behind one shared resolver, ~10 short TLS and HTTP connections (one
#            request each, Connection: close), QUIC (aioquic HTTP/3, one host in three), and the
#            same vendor, decoy and bulk traffic as the bulk mix on fewer hosts (bulk on one in 96).
#            About 80 KB per base host, so 1,000 MB is ~25 copies, ~12,800 hosts and ~600k flows.
#            bench-data/enterprise.pcap is the conventional OUT for it.
#
# Writes OUT and OUT.expected.json. See bench/README.md.
#
# How:
#  1. Base capture. An isolated network of namespaces (prefix $VWB_PREFIX, default "vwb-"; only
#     10.x and fd00:: addresses, no default route, nothing can leave the machine):
#
#       c1 10.10.1.1-96  fd00:10:1::1-24 --+
#       c2 10.10.2.1-96  fd00:10:2::1-24 --+-- sw (bridge) -- p-srv --- srv: unbound 10.250.0.53 fd00:ffff::53
#       c3 10.10.3.1-96  fd00:10:3::1-24 --+         = capture point      nginx-light on one address per
#       c4 10.10.4.1-96  fd00:10:4::1-24 --+                              web name group (10.250.x.y)
#
#     Every client address is one "host". Each host runs its own small script (real dig and curl
#     bound to its address): DNS lookups of benign names (A/AAAA, a few over TCP, some NXDOMAIN),
#     HTTP and HTTPS page fetches, bulk downloads (2-6 MB, 1500-byte MTU, offloads off, so the
#     capture holds wire-sized segments), and on about one host in eight, traffic naming one of the
#     vendor names (dnl-01.geo.kaspersky.com, s05.upd.kaspersky.com, ksn-file-geo.kaspersky-labs.com,
#     activation-v2.kaspersky.com) by DNS, TLS SNI and/or HTTP Host, in eight different patterns.
#     tcpdump (full snaplen) captures on the switch port toward the servers.
#  2. Ground truth. tshark reads the BASE capture: which client address sent a DNS query, a TLS
#     ClientHello SNI or an HTTP Host naming which vendor name; checked against the scenario plan
#     the host scripts wrote (a broken generator fails here, loudly).
#  3. Multiplication. Copy i (i = 0..K-1) = tcprewrite --pnat 10.10.0.0/16 -> 10.(20+i).0.0/16 and
#     fd00:10::/32 -> fd00:(20+i)::/32 (the servers keep their addresses), --tcp-sequence=i+1,
#     editcap -t (a time shift of i * base-duration / K), then mergecap (by time) into one classic
#     pcap. K = ceil(SIZE_MB / base size).
set -euo pipefail

if [[ ${EUID} -ne 0 ]]; then
    echo "make-capture.sh must run as root (network namespaces, tcpdump)" >&2
    exit 1
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/bench-data/bench.pcap}
SIZE_MB=${2:-600}
MIX=${3:-bulk}
[[ $SIZE_MB =~ ^[0-9]+$ && $SIZE_MB -ge 1 ]] || { echo "SIZE_MB must be a positive integer" >&2; exit 2; }
[[ $MIX == bulk || $MIX == enterprise ]] || { echo "MIX must be bulk or enterprise" >&2; exit 2; }
mkdir -p "$(dirname "$OUT")"
OUT=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")
EXPECTED=$OUT.expected.json
PY=/usr/bin/python3

P=${VWB_PREFIX:-vwb-}
SW=${P}sw
SRV=${P}srv
NCLIENT_NS=4          # client namespaces c1..c4
DEFAULT_HOSTS=96; [[ $MIX == enterprise ]] && DEFAULT_HOSTS=128
HOSTS_PER_NS=${VWB_HOSTS_PER_NS:-$DEFAULT_HOSTS}  # IPv4 hosts per client namespace: 10.10.K.1 .. 10.10.K.H
V6_PER_NS=$((HOSTS_PER_NS / 4))  # of which hosts 1..24 also have fd00:10:K::H
PARALLEL=${VWB_PARALLEL:-24}
MAX_COPIES=200        # 10.20 .. 10.219; the servers live in 10.250.0.0/16 and fd00:ffff::/32

CLIENT_NET4=10.10.0.0/16
CLIENT_NET6=fd00:10::/32
DNS_4=10.250.0.53
DNS_6=fd00:ffff::53

log() { printf '=== %s\n' "$*" >&2; }
die() { printf 'FATAL: %s\n' "$*" >&2; exit 1; }

# ----------------------------------------------------------------------------------------------
# packages
# ----------------------------------------------------------------------------------------------
declare -A NEED=(
    [unbound]=unbound [unbound-checkconf]=unbound [nginx]=nginx-light [curl]=curl
    [dig]=bind9-dnsutils [openssl]=openssl [tcpdump]=tcpdump [tshark]=tshark
    [editcap]=wireshark-common [mergecap]=wireshark-common [capinfos]=wireshark-common
    [tcprewrite]=tcpreplay [ethtool]=ethtool [ip]=iproute2 [bridge]=iproute2 [jq]=jq
)
missing=()
for cmd in "${!NEED[@]}"; do command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}"); done
[[ -x $PY ]] || missing+=(python3)
if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_install() { apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "$@"; }
    apt_install "${missing[@]}" || { apt-get -o DPkg::Lock::Timeout=900 update && apt_install "${missing[@]}"; }
fi

# ----------------------------------------------------------------------------------------------
# cleanup: only the namespaces and processes this script made
# ----------------------------------------------------------------------------------------------
WORK=$(mktemp -d "$(dirname "$OUT")/.make-capture.XXXXXX")
chmod 755 "$WORK"
PIDS=()
ALL_NS=("$SW" "$SRV")
for k in $(seq 1 $NCLIENT_NS); do ALL_NS+=("${P}c$k"); done

teardown_ns() {
    local ns pid
    for ns in "${ALL_NS[@]}"; do
        if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
            sleep 0.3
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
    teardown_ns
    if [[ $rc -ne 0 ]]; then
        echo "make-capture.sh failed (rc=$rc); logs:" >&2
        tail -n 15 "$WORK"/*.log "$WORK"/nginx/logs/error.log 2>/dev/null >&2
    fi
    if [[ -n ${VWB_KEEP_WORK:-} ]]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "make-capture.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT TERM

teardown_ns   # leftovers of an interrupted earlier run (same names only)

# ----------------------------------------------------------------------------------------------
# names and server addresses
# ----------------------------------------------------------------------------------------------
# Each vendor name gets an address of its own (so passive-DNS attribution of a vendor address can
# never spill onto benign traffic); benign names share eight addresses.
VENDOR_NAMES=(dnl-01.geo.kaspersky.com s05.upd.kaspersky.com ksn-file-geo.kaspersky-labs.com
    activation-v2.kaspersky.com)
BENIGN_NAMES=(
    www.example.org www.example.com deb.debian.org security.debian.org mirror.debian.lab
    archive.ubuntu.com ntp.ubuntu.com github.com api.github.com codeload.github.com
    www.wikipedia.org en.wikipedia.org www.google.com fonts.googleapis.com www.microsoft.com
    update.microsoft.com login.microsoftonline.com outlook.office365.com teams.microsoft.com
    ocsp.digicert.com cdn.jsdelivr.net registry.npmjs.org pypi.org files.pythonhosted.org
    crates.io static.crates.io www.bbc.co.uk news.ycombinator.com slack.com zoom.us
    www.apple.com swscan.apple.com updates.mozilla.org download.mozilla.org www.eset.com
    update.eset.com intranet.corp.lab wiki.corp.lab mail.corp.lab
)
# look like the vendor, are not it: must not be detected
DECOY_NAMES=(notkaspersky.com kaspersky.com.evil.example kaspersky-labs.example.net)
BULK_NAMES=(mirror.debian.lab deb.debian.org download.mozilla.org codeload.github.com files.pythonhosted.org
    archive.ubuntu.com)

{
    echo "# name v4 v6 kind"
    i=1
    for n in "${VENDOR_NAMES[@]}"; do echo "$n 10.250.1.$i fd00:ffff::1:$i vendor"; i=$((i + 1)); done
    i=0
    for n in "${BENIGN_NAMES[@]}" "${DECOY_NAMES[@]}"; do
        echo "$n 10.250.2.$((i % 8 + 1)) fd00:ffff::2:$((i % 8 + 1)) benign"
        i=$((i + 1))
    done
    # enterprise: a pool of 400 more internal and SaaS-like names (the shared resolver knows them all)
    if [[ $MIX == enterprise ]]; then
        for j in $(seq 1 400); do
            case $((j % 4)) in
                0) n=app$j.corp.lab ;; 1) n=cdn$j.static.example.net ;;
                2) n=api$j.saas.example.com ;; 3) n=tile$j.maps.example.org ;;
            esac
            echo "$n 10.250.2.$((j % 8 + 1)) fd00:ffff::2:$((j % 8 + 1)) pool"
        done
    fi
} >"$WORK/names.txt"

# ----------------------------------------------------------------------------------------------
# network
# ----------------------------------------------------------------------------------------------
log "building namespaces (${ALL_NS[*]})"
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
attach() { # NS PORT
    local ns=$1 port=$2
    ip link add name eth0 netns "$ns" type veth peer name "$port" netns "$SW"
    ip -n "$ns" link set eth0 mtu 1500
    ip -n "$SW" link set "$port" mtu 1500
    offloads_off "$ns" eth0
    offloads_off "$SW" "$port"
    ip -n "$SW" link set "$port" master br0
    ip -n "$SW" link set "$port" up
    nsx "$ns" sysctl -qw net.ipv6.conf.eth0.accept_ra=0 net.ipv6.conf.eth0.router_solicitations=0 \
        net.ipv6.conf.eth0.accept_dad=0
}

attach "$SRV" p-srv
{
    echo "addr add $DNS_4/8 dev eth0"
    echo "addr add $DNS_6/16 dev eth0 nodad"
    awk '!/^#/ {print $2, $3}' "$WORK/names.txt" | sort -u | while read -r a4 a6; do
        echo "addr add $a4/8 dev eth0"
        echo "addr add $a6/16 dev eth0 nodad"
    done
} | sort -u >"$WORK/srv.ip"
ip -n "$SRV" -batch "$WORK/srv.ip"
ip -n "$SRV" link set eth0 up
# the server answers thousands of connections from few client sockets: no SYN cookies, big backlog
nsx "$SRV" sysctl -qw net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=4096

for k in $(seq 1 $NCLIENT_NS); do
    ns=${P}c$k
    attach "$ns" "p-c$k"
    {
        for h in $(seq 1 $HOSTS_PER_NS); do echo "addr add 10.10.$k.$h/8 dev eth0"; done
        for h in $(seq 1 $V6_PER_NS); do echo "addr add fd00:10:$k::$h/16 dev eth0 nodad"; done
    } >"$WORK/c$k.ip"
    ip -n "$ns" -batch "$WORK/c$k.ip"
    ip -n "$ns" link set eth0 up
    # no port rule of any pack may be hit by a client port by chance
    nsx "$ns" sysctl -qw net.ipv4.ip_local_port_range="32768 60999"
done
for ns in "${ALL_NS[@]}"; do
    if [[ -n $(ip -n "$ns" route show default) || -n $(ip -n "$ns" -6 route show default) ]]; then
        die "namespace $ns has a default route"
    fi
done

# ----------------------------------------------------------------------------------------------
# servers
# ----------------------------------------------------------------------------------------------
log "starting unbound"
mkdir -p "$WORK/unbound"
{
    cat <<EOF
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
    verbosity: 0
    num-threads: 1
    so-reuseport: no
    module-config: "iterator"
    hide-identity: yes
    hide-version: yes
    qname-minimisation: no
    tcp-idle-timeout: 10000
    local-zone: "." static
EOF
    awk '!/^#/ {printf "    local-data: \"%s. 300 IN A %s\"\n    local-data: \"%s. 300 IN AAAA %s\"\n", $1, $2, $1, $3}' \
        "$WORK/names.txt"
    echo "remote-control:"
    echo "    control-enable: no"
} >"$WORK/unbound/unbound.conf"
unbound-checkconf "$WORK/unbound/unbound.conf" >/dev/null
ip netns exec "$SRV" unbound -d -c "$WORK/unbound/unbound.conf" >"$WORK/unbound.log" 2>&1 &
PIDS+=($!)

log "starting nginx"
mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp" "$WORK/www/files" "$WORK/www/updates" "$WORK/www/static"
openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=bench-lab.example \
    -keyout "$WORK/nginx/key.pem" -out "$WORK/nginx/cert.pem" 2>/dev/null
for m in 2 3 4 6; do head -c $((m * 1024 * 1024)) /dev/urandom >"$WORK/www/files/pkg-${m}M.bin"; done
head -c $((512 * 1024)) /dev/urandom >"$WORK/www/updates/kdb-512k.bin"
head -c $((1024 * 1024)) /dev/urandom >"$WORK/www/updates/kdb-1M.bin"
for kb in 16 64 192; do head -c $((kb * 1024)) /dev/urandom | base64 >"$WORK/www/static/asset-${kb}k.js"; done
head -c 3000 /dev/urandom | base64 >"$WORK/www/index.html"
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 2;
user root;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 2048; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 15;
    server {
        listen 80 default_server backlog=4096;
        listen [::]:80 default_server backlog=4096;
        listen 443 ssl default_server backlog=4096;
        listen [::]:443 ssl default_server backlog=4096;
        server_name _;
        ssl_certificate $WORK/nginx/cert.pem;
        ssl_certificate_key $WORK/nginx/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $WORK/www;
        location /api/ { return 200 "{\"ok\":true}\n"; }
    }
}
EOF
nsx "$SRV" nginx -e "$WORK/nginx/logs/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -t \
    >"$WORK/nginx-t.log" 2>&1 || { cat "$WORK/nginx-t.log" >&2; die "nginx config test failed"; }
ip netns exec "$SRV" nginx -e "$WORK/nginx/logs/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" \
    >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)

wait_for() { # description command...
    local what=$1 i
    shift
    for i in $(seq 1 50); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    die "$what did not come up"
}
C1=${P}c1
wait_for "unbound v4" nsx "$C1" dig +time=1 +tries=1 +short -b 10.10.1.1 @$DNS_4 www.example.org A
wait_for "unbound v6" nsx "$C1" dig +time=1 +tries=1 +short -b fd00:10:1::1 @$DNS_6 www.example.org AAAA
wait_for "nginx v4" nsx "$C1" curl -skf -o /dev/null --max-time 2 --interface 10.10.1.1 "https://10.250.2.1/index.html"
wait_for "nginx v6" nsx "$C1" curl -skf -o /dev/null --max-time 2 --interface fd00:10:1::1 "https://[fd00:ffff::2:1]/index.html"
[[ $(nsx "$C1" dig +short -b 10.10.1.1 @$DNS_4 dnl-01.geo.kaspersky.com A) == 10.250.1.1 ]] \
    || die "unbound does not answer the vendor names"

# enterprise: QUIC (HTTP/3) from aioquic, client and server, pinned, in a venv of its own outside the
# repository (PyPI; the base Debian has no QUIC client)
AIOQUIC_VERSION=1.7.2
AIOQUIC_PY=
if [[ $MIX == enterprise ]]; then
    AIOQUIC_VENV=${VWB_AIOQUIC_VENV:-/var/cache/vwb-bench/aioquic-$AIOQUIC_VERSION}
    AIOQUIC_PY=$AIOQUIC_VENV/bin/python
    if ! "$AIOQUIC_PY" -c "import aioquic, sys; sys.exit(aioquic.__version__ != '$AIOQUIC_VERSION')" 2>/dev/null; then
        log "installing aioquic $AIOQUIC_VERSION into $AIOQUIC_VENV"
        rm -rf "$AIOQUIC_VENV"
        "$PY" -m venv "$AIOQUIC_VENV"
        "$AIOQUIC_VENV/bin/pip" install --quiet --disable-pip-version-check "aioquic==$AIOQUIC_VERSION"
    fi
    cat >"$WORK/quic_server.py" <<'QEOF'
"""HTTP/3 server (aioquic): one UDP socket per address given, answers every request with a short text."""
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
                body = b"bench-lab " + dict(ev.headers).get(b":authority", b"") + b"\n"
                self.h3.send_headers(ev.stream_id, [(b":status", b"200"), (b"content-length", str(len(body)).encode())])
                self.h3.send_data(ev.stream_id, body, end_stream=True)
                self.transmit()

async def main(cert, key, addrs):
    cfg = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    cfg.load_cert_chain(cert, key)
    for a in addrs:
        await serve(a, 443, configuration=cfg, create_protocol=H3Server)
    print("listening on", *addrs, flush=True)
    await asyncio.Future()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
QEOF
    cat >"$WORK/quic_client.py" <<'QEOF'
"""HTTP/3 client (aioquic): from source address SRC, one QUIC connection per NAME=ADDRESS given,
GET https://NAME/ (SNI = NAME) on each."""
import asyncio, ssl, sys
from aioquic.asyncio import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

class H3Client(QuicConnectionProtocol):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.h3 = H3Connection(self._quic)
        self.done = asyncio.get_running_loop().create_future()
    def quic_event_received(self, event):
        for ev in self.h3.handle_event(event):
            if getattr(ev, "stream_ended", False) and not self.done.done():
                self.done.set_result(None)

async def one(src, name, addr):
    cfg = QuicConfiguration(is_client=True, server_name=name, verify_mode=ssl.CERT_NONE, alpn_protocols=H3_ALPN)
    loop = asyncio.get_running_loop()
    transport, c = await loop.create_datagram_endpoint(lambda: H3Client(QuicConnection(configuration=cfg)),
                                                       local_addr=(src, 0))
    try:
        c.connect((addr, 443))
        await asyncio.wait_for(c.wait_connected(), 20)
        sid = c._quic.get_next_available_stream_id()
        c.h3.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", name.encode()),
                                (b":path", b"/"), (b"user-agent", b"bench-lab-aioquic")], end_stream=True)
        c.transmit()
        await asyncio.wait_for(c.done, 20)
        c.close()
        await asyncio.wait_for(c.wait_closed(), 5)
    finally:
        transport.close()

async def main(src, pairs):
    for p in pairs:
        name, addr = p.split("=")
        await one(src, name, addr)

asyncio.run(main(sys.argv[1], sys.argv[2:]))
QEOF
    quic_listening() { nsx "$SRV" ss -Hnlu 'sport = :443' | grep -qF "10.250.2.8:443"; }
    log "starting the aioquic HTTP/3 server"
    ip netns exec "$SRV" "$AIOQUIC_PY" "$WORK/quic_server.py" "$WORK/nginx/cert.pem" "$WORK/nginx/key.pem" \
        $(seq -f '10.250.2.%g' 1 8) >"$WORK/quic-server.log" 2>&1 &
    PIDS+=($!)
    wait_for "aioquic server" quic_listening
    nsx "$C1" "$AIOQUIC_PY" "$WORK/quic_client.py" 10.10.1.1 www.example.org=10.250.2.1 >"$WORK/quic-check.log" 2>&1 \
        || { cat "$WORK/quic-check.log" >&2; die "aioquic client failed"; }
fi

# ----------------------------------------------------------------------------------------------
# the host script: one real host's traffic, chosen from its number N (0-based)
# ----------------------------------------------------------------------------------------------
cat >"$WORK/host.sh" <<'HOST'
#!/usr/bin/env bash
# host.sh WORK K H : runs inside client namespace K as host 10.10.K.H (and fd00:10:K::H when H <= V6)
set -u
WORK=$1 K=$2 H=$3 HOSTS_PER_NS=$4 V6_PER_NS=$5 MIX=$6 AIOQUIC_PY=${7:-}
N=$(( (K - 1) * HOSTS_PER_NS + H - 1 ))
RANDOM=$((N * 7919 + 17))
SRC4=10.10.$K.$H
SRC6=
(( H <= V6_PER_NS )) && SRC6=fd00:10:$K::$H
DNS_4=10.250.0.53 DNS_6=fd00:ffff::53
declare -A A4 A6
while read -r n a4 a6 _; do [[ $n == \#* ]] && continue; A4[$n]=$a4; A6[$n]=$a6; done <"$WORK/names.txt"
mapfile -t BENIGN < <(awk '$4 == "benign" && $1 !~ /kaspersky/ {print $1}' "$WORK/names.txt")
BULK=(mirror.debian.lab deb.debian.org download.mozilla.org codeload.github.com files.pythonhosted.org archive.ubuntu.com)
LOG=$WORK/hosts/$SRC4.log
plan() { # what this host must be seen naming: ADDRESS NAME
    echo "$1 $2" >>"$WORK/plan.txt"
}
pause() { sleep "0.$((RANDOM % 10))$((RANDOM % 10))"; }
pick() { echo "${BENIGN[RANDOM % ${#BENIGN[@]}]}"; }
q4() { dig -b "$SRC4" +time=3 +tries=2 @$DNS_4 "$@" >>"$LOG" 2>&1; }
q6() { dig -b "$SRC6" +time=3 +tries=2 @$DNS_6 "$@" >>"$LOG" 2>&1; }
# get FAMILY SCHEME NAME PATH [curl args...]: a real curl, bound to this host's address
get() {
    local fam=$1 scheme=$2 name=$3 path=$4 port=80 src addr
    shift 4
    [[ $scheme == https ]] && port=443
    if [[ $fam == 6 ]]; then src=$SRC6 addr="[${A6[$name]}]"; else src=$SRC4 addr=${A4[$name]}; fi
    curl -sk -o /dev/null --max-time 120 --interface "$src" --resolve "$name:$port:$addr" \
        -A "Mozilla/5.0 (X11; Linux x86_64) bench-lab/1.0" "$@" "$scheme://$name$path" >>"$LOG" 2>&1 \
        || echo "curl $scheme://$name$path failed: $?" >>"$LOG"
}

# --- enterprise: many lookups and short connections per host, some QUIC
BULK_EVERY=48 MEDIUM_EVERY=16
if [[ $MIX == enterprise ]]; then
BULK_EVERY=96 MEDIUM_EVERY=32
mapfile -t POOL < <(awk '$4 == "pool" {print $1}' "$WORK/names.txt")
pool() { echo "${POOL[RANDOM % ${#POOL[@]}]}"; }
# one dig process, one socket (source port) per query: a flow per lookup
args=()
for _ in $(seq 1 $((30 + RANDOM % 12))); do
    case $((RANDOM % 8)) in
        0) args+=("$(pool)" AAAA) ;;
        1) args+=("$(pick)" A) ;;
        2) args+=("nx$RANDOM.corp.lab" A) ;;
        *) args+=("$(pool)" A) ;;
    esac
done
q4 "${args[@]}"
(( RANDOM % 2 )) && q4 +tcp "$(pool)" A "$(pool)" A
[[ -n $SRC6 ]] && q6 "$(pool)" AAAA "$(pool)" AAAA "$(pool)" AAAA "$(pool)" AAAA
pause
# short TLS and HTTP connections, one request each (Connection: close)
cargs=()
for _ in $(seq 1 $((7 + RANDOM % 6))); do
    n=$(pool)
    if (( RANDOM % 3 == 0 )); then scheme=http port=80; else scheme=https port=443; fi
    path=/api/v1/ping; (( RANDOM % 3 == 0 )) && path=/index.html
    cargs+=(--resolve "$n:$port:${A4[$n]}" -o /dev/null "$scheme://$n$path")
done
curl -sk --max-time 60 --interface "$SRC4" -H 'Connection: close' \
    -A "Mozilla/5.0 (Windows NT 10.0; Win64; x64) bench-lab/1.0" "${cargs[@]}" >>"$LOG" 2>&1 \
    || echo "curl short connections failed: $?" >>"$LOG"
# QUIC: one host in three, two connections
if (( N % 3 == 0 )); then
    a=$(pool) b=$(pool)
    "$AIOQUIC_PY" "$WORK/quic_client.py" "$SRC4" "$a=${A4[$a]}" "$b=${A4[$b]}" >>"$LOG" 2>&1 \
        || echo "quic incomplete (a timeout on a loaded machine; benign names only): $?" >>"$LOG"
fi
else
# --- everybody: DNS lookups and page fetches of benign names
for _ in $(seq 1 $((2 + RANDOM % 4))); do
    n=$(pick)
    case $((RANDOM % 6)) in
        0) q4 "$n" AAAA ;;
        1) q4 +tcp "$n" A ;;
        *) q4 "$n" A ;;
    esac
    [[ -n $SRC6 ]] && q6 "$n" AAAA
    pause
done
(( N % 5 == 2 )) && q4 "wwww.exmaple-typo$N.org" A     # NXDOMAIN
for _ in $(seq 1 $((1 + RANDOM % 3))); do
    n=$(pick)
    fam=4; [[ -n $SRC6 ]] && (( RANDOM % 2 )) && fam=6
    if (( RANDOM % 4 == 0 )); then scheme=http; else scheme=https; fi
    # one connection, several requests (keep-alive), like a page and its assets
    if (( RANDOM % 4 )); then
        get $fam $scheme "$n" /index.html -o /dev/null "$scheme://$n/static/asset-16k.js"
    else
        get $fam $scheme "$n" /index.html -o /dev/null "$scheme://$n/static/asset-64k.js"
    fi
    pause
done
fi
# decoys: look like the vendor but are not
if (( N % 10 == 7 )); then
    for n in notkaspersky.com kaspersky.com.evil.example kaspersky-labs.example.net; do
        q4 "$n" A
        get 4 https "$n" /index.html
    done
fi
# medium downloads
(( N % MEDIUM_EVERY == 1 )) && get 4 https "$(pick)" /static/asset-192k.js --limit-rate 2M
# bulk downloads (2-6 MB over HTTP or HTTPS)
if (( N % BULK_EVERY == 0 )); then
    SIZES=(2 4 3 6)
    n=${BULK[(N / BULK_EVERY) % ${#BULK[@]}]}
    size=${SIZES[(N / BULK_EVERY) % 4]}
    if (( (N / BULK_EVERY) % 2 )); then scheme=https; else scheme=http; fi
    q4 "$n" A
    get 4 $scheme "$n" "/files/pkg-${size}M.bin" --limit-rate 4M
fi

# --- vendor traffic: one host in eight, eight patterns
if (( N % 8 == 3 )); then
    role=$(( (N / 8) % 8 ))
    fam=4; src=$SRC4
    if [[ -n $SRC6 ]]; then fam=6; src=$SRC6; fi
    qv() { if [[ $fam == 6 ]]; then q6 "$1" AAAA; else q4 "$1" A; fi; plan "$src" "$1"; }
    gv() { local scheme=$1 n=$2; shift 2; get $fam $scheme "$n" "$@"; plan "$src" "$n"; }
    case $role in
        0) # update over plain HTTP, after resolving: a 1 MB "database" download
            qv dnl-01.geo.kaspersky.com
            gv http dnl-01.geo.kaspersky.com /updates/kdb-1M.bin --limit-rate 4M ;;
        1) # update over HTTPS
            qv s05.upd.kaspersky.com
            gv https s05.upd.kaspersky.com /updates/kdb-1M.bin --limit-rate 4M ;;
        2) # KSN lookups: small POSTs on one TLS connection
            qv ksn-file-geo.kaspersky-labs.com
            gv https ksn-file-geo.kaspersky-labs.com /api/lookup -d "h=$RANDOM$RANDOM" \
                -o /dev/null https://ksn-file-geo.kaspersky-labs.com/api/lookup -d "h=$RANDOM" ;;
        3) # licence activation over TLS 1.2
            qv activation-v2.kaspersky.com
            gv https activation-v2.kaspersky.com /api/activate --tls-max 1.2 -d "key=$RANDOM" ;;
        4) # DNS only (blocked or shut-down service): all three categories
            qv dnl-01.geo.kaspersky.com; pause
            qv ksn-file-geo.kaspersky-labs.com; pause
            qv activation-v2.kaspersky.com ;;
        5) # TLS only, no lookup on the wire (cached name)
            gv https s05.upd.kaspersky.com /index.html
            gv https activation-v2.kaspersky.com /api/activate -d "key=$RANDOM" ;;
        6) # HTTP Host only
            gv http dnl-01.geo.kaspersky.com /index.html ;;
        7) # a full product: update, KSN and activation
            qv s05.upd.kaspersky.com
            gv https s05.upd.kaspersky.com /updates/kdb-512k.bin --limit-rate 4M
            qv ksn-file-geo.kaspersky-labs.com
            gv https ksn-file-geo.kaspersky-labs.com /api/lookup -d "h=$RANDOM"
            qv activation-v2.kaspersky.com
            gv https activation-v2.kaspersky.com /api/activate -d "key=$RANDOM" ;;
    esac
fi
exit 0
HOST
mkdir -p "$WORK/hosts"
: >"$WORK/plan.txt"

# ----------------------------------------------------------------------------------------------
# base capture
# ----------------------------------------------------------------------------------------------
BASE=$WORK/base.pcap
log "capturing the base traffic ($((NCLIENT_NS * HOSTS_PER_NS)) hosts, $PARALLEL at a time)"
ip netns exec "$SW" tcpdump -i p-srv -s 0 -B 262144 -n -Z root -w "$BASE" >"$WORK/tcpdump.log" 2>&1 &
CAP_PID=$!
PIDS+=("$CAP_PID")
for _ in $(seq 1 50); do grep -q 'listening on' "$WORK/tcpdump.log" 2>/dev/null && break; sleep 0.1; done
grep -q 'listening on' "$WORK/tcpdump.log" || die "tcpdump did not start: $(cat "$WORK/tcpdump.log")"
sleep 0.5
t0=$(date +%s)
cat >"$WORK/run-host.sh" <<EOF
#!/bin/sh
exec ip netns exec "${P}c\$1" bash "$WORK/host.sh" "$WORK" "\$1" "\$2" $HOSTS_PER_NS $V6_PER_NS $MIX "$AIOQUIC_PY"
EOF
# hosts in an interleaved order (c1 h1, c2 h1, ..., c1 h2, ...)
for h in $(seq 1 $HOSTS_PER_NS); do for k in $(seq 1 $NCLIENT_NS); do echo "$k $h"; done; done |
    xargs -P "$PARALLEL" -L 1 sh "$WORK/run-host.sh"
sleep 1
kill -TERM "$CAP_PID"
for _ in $(seq 1 100); do kill -0 "$CAP_PID" 2>/dev/null || break; sleep 0.1; done
wait "$CAP_PID" || true
log "base traffic took $(($(date +%s) - t0)) s: $(grep -E 'captured|dropped' "$WORK/tcpdump.log" | tr '\n' ' ')"
dropped=$(awk '/dropped by kernel/ {print $1}' "$WORK/tcpdump.log")
[[ ${dropped:-0} == 0 ]] || die "tcpdump dropped $dropped packets"
if grep -h 'failed' "$WORK"/hosts/*.log 2>/dev/null | head -5 | grep -q .; then
    grep -h 'failed' "$WORK"/hosts/*.log | head -20 >&2
    die "some client transfers failed"
fi
BASE_PKTS=$(capinfos -c -M "$BASE" | awk -F': *' '/Number of packets/ {print $2}')
BASE_BYTES=$(stat -c %s "$BASE")
BASE_DUR=$(capinfos -u -M "$BASE" | awk -F': *' '/Capture duration/ {print $2+0}')
log "base capture: $BASE_PKTS packets, $BASE_BYTES bytes, ${BASE_DUR}s"
# wire-sized packets only (offloads off): nothing above 1514 bytes
big=$(tshark -r "$BASE" -n -Y 'frame.len > 1514' -T fields -e frame.number 2>/dev/null | wc -l)
[[ $big == 0 ]] || die "$big frames larger than 1514 bytes: offloads not off?"

# ----------------------------------------------------------------------------------------------
# ground truth from the base capture (tshark), checked against the scenario plan
# ----------------------------------------------------------------------------------------------
log "ground truth (tshark over the base capture)"
tshark -r "$BASE" -n -Y '(dns && dns.flags.response == 0) || tls.handshake.type == 1 || http.request' \
    -T fields -E separator='|' -e ip.src -e ipv6.src -e dns.qry.name \
    -e tls.handshake.extensions_server_name -e http.host >"$WORK/names.tsv" 2>"$WORK/tshark.log"
tshark -r "$BASE" -n -Y 'udp || tcp.flags.syn == 1' -T fields -e ip.src -e ipv6.src 2>>"$WORK/tshark.log" |
    tr '\t' '\n' | sed '/^$/d' | sort -u >"$WORK/sources.txt"

K=$($PY -c "import math,sys; print(max(1, math.ceil($SIZE_MB * 1e6 / ($BASE_BYTES - 24))))")
((K <= MAX_COPIES)) || die "SIZE_MB=$SIZE_MB needs $K copies of the ${BASE_BYTES}-byte base capture; at most $MAX_COPIES"
log "multiplying: $K copies"

$PY - "$WORK" "$K" "$BASE_DUR" "$CLIENT_NET4" "$CLIENT_NET6" "$BASE_PKTS" "$BASE_BYTES" \
    "${VENDOR_NAMES[*]}" "${DECOY_NAMES[*]}" >"$WORK/expected.partial.json" <<'PYEOF'
import ipaddress, json, re, sys
work, k, dur, net4, net6, base_pkts, base_bytes, vendor_names, decoys = sys.argv[1:]
k, dur = int(k), float(dur)
vendor_names, decoys = vendor_names.split(), set(decoys.split())
# the categories of the benchmark (brief): dnl-* and *.upd -> update, ksn-* -> ksn, activation-v2 -> activation
CATS = [
    (re.compile(r"^dnl-\d\d\.geo\.kaspersky\.com$"), "update"),
    (re.compile(r"^([a-z0-9-]+\.)*upd\.kaspersky\.com$"), "update"),
    (re.compile(r"^ksn-[a-z0-9-]+-geo\.kaspersky-labs\.com$"), "ksn"),
    (re.compile(r"^([a-z0-9-]+\.)*activation-v2\.kaspersky\.com$"), "activation"),
]
def category(name):
    for rx, cat in CATS:
        if rx.match(name):
            return cat
    return None

nets = [ipaddress.ip_network(net4), ipaddress.ip_network(net6)]
def in_clients(a):
    a = ipaddress.ip_address(a)
    return any(a.version == n.version and a in n for n in nets)

seen = {}   # (addr, name) -> set of kinds
all_names = set()
for line in open(f"{work}/names.tsv"):
    f = line.rstrip("\n").split("|")
    if len(f) < 5:
        continue
    addr = f[0] or f[1]
    for kind, val in (("dns", f[2]), ("tls_sni", f[3]), ("http_host", f[4])):
        for name in filter(None, val.split(",")):
            name = name.lower().rstrip(".")
            if kind == "http_host":
                name = re.sub(r":\d+$", "", name)
            all_names.add(name)
            seen.setdefault((str(ipaddress.ip_address(addr)), name), set()).add(kind)

problems = []
for n in sorted(all_names):
    if ("kaspersky" in n) and category(n) is None and n not in decoys:
        problems.append(f"unexpected vendor-looking name in the capture: {n}")
for d in decoys:
    if category(d):
        problems.append(f"decoy {d} falls into a category")

vendor_seen = {(a, n) for (a, n) in seen if category(n)}
plan = set()
for line in open(f"{work}/plan.txt"):
    a, n = line.split()
    plan.add((str(ipaddress.ip_address(a)), n))
for a, n in sorted(plan - vendor_seen):
    problems.append(f"scenario: {a} should name {n} but tshark does not see it")
for a, n in sorted(vendor_seen - plan):
    problems.append(f"scenario: tshark sees {a} naming {n}, not in the plan")
for a, n in vendor_seen:
    if not in_clients(a):
        problems.append(f"{a} names {n} but is outside the multiplied client ranges")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)

dets = {}
for a, n in vendor_seen:
    kinds = seen[(a, n)]
    key = (a, "kaspersky", category(n))
    d = dets.setdefault(key, {"host": a, "vendor": "kaspersky", "category": category(n), "names": {}})
    d["names"].setdefault(n, set()).update(kinds)
base_detections = []
for key in sorted(dets, key=lambda t: (ipaddress.ip_address(t[0]).version, ipaddress.ip_address(t[0]), t[2])):
    d = dets[key]
    d["names"] = {n: sorted(v) for n, v in sorted(d["names"].items())}
    base_detections.append(d)

sources = [l.strip() for l in open(f"{work}/sources.txt") if l.strip()]
base_hosts = sorted({str(ipaddress.ip_address(s)) for s in sources if in_clients(s)},
                    key=lambda s: (ipaddress.ip_address(s).version, ipaddress.ip_address(s)))
copies = []
for i in range(k):
    copies.append({
        "index": i,
        "pnat": [f"{net4}:10.{20 + i}.0.0/16", f"[{net6}]:[fd00:{20 + i}::/32]"],
        "map": {net4: f"10.{20 + i}.0.0/16", net6: f"fd00:{20 + i}::/32"},
        "tcp_sequence_seed": i + 1,
        "time_shift_s": round(i * dur / k, 6),
    })

def mapped(addr, m):
    a = ipaddress.ip_address(addr)
    for src, dst in m.items():
        s, d = ipaddress.ip_network(src), ipaddress.ip_network(dst)
        if a.version == s.version and a in s:
            host_bits = int(a) & int(s.hostmask)
            return str(ipaddress.ip_address(int(d.network_address) | host_bits))
    return str(a)

expected = {(mapped(d["host"], c["map"]), d["vendor"], d["category"]) for d in base_detections for c in copies}
hosts = {mapped(h, c["map"]) for h in base_hosts for c in copies}
cats = {}
for _, _, c in expected:
    cats[c] = cats.get(c, 0) + 1
print(json.dumps({
    "generated_by": "bench/make-capture.sh",
    "categories": {"update": ["dnl-NN.geo.kaspersky.com", "*.upd.kaspersky.com"],
                   "ksn": ["ksn-*-geo.kaspersky-labs.com"],
                   "activation": ["activation-v2.kaspersky.com and below"]},
    "vendor_names": vendor_names,
    "decoy_names": sorted(decoys),
    "base": {"packets": int(base_pkts), "bytes": int(base_bytes), "duration_s": dur,
             "client_hosts": len(base_hosts), "client_ranges": [net4, net6],
             "detections": base_detections},
    "copies": copies,
    "expected": {"detections": len(expected), "by_category": dict(sorted(cats.items())),
                 "hosts_with_detections": len({h for h, _, _ in expected}),
                 "client_hosts": len(hosts)},
}, indent=1))
PYEOF

# ----------------------------------------------------------------------------------------------
# multiplication: tcprewrite --pnat + --tcp-sequence, editcap time shift, mergecap by time
# ----------------------------------------------------------------------------------------------
mkdir -p "$WORK/copies"
jq -r '.copies[] | "\(.index) \(.pnat | join(",")) \(.tcp_sequence_seed) \(.time_shift_s)"' \
    "$WORK/expected.partial.json" >"$WORK/copies.txt"
# tcprewrite 4.4.3 replaces the MAC addresses of every IPv6 frame whose addresses it rewrites with
# bogus multicast ones (33:33:...); copy the Ethernet addresses back from the base capture, frame by
# frame (tcprewrite keeps the order and the lengths; this is checked).
cat >"$WORK/restore_macs.py" <<'PYEOF2'
import struct, sys
base, rewritten, out = sys.argv[1:]
b, r = open(base, "rb").read(), open(rewritten, "rb").read()
if b[:4] != r[:4] or b[:4] not in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
    sys.exit("restore_macs: not little-endian classic pcap files of the same kind")
o = bytearray(r)
i = j = 24
n = 0
while i < len(b):
    bl = struct.unpack_from("<I", b, i + 8)[0]
    rl = struct.unpack_from("<I", r, j + 8)[0]
    if bl != rl:
        sys.exit(f"restore_macs: frame {n + 1} changed length ({bl} -> {rl})")
    o[j + 16:j + 28] = b[i + 16:i + 28]
    i += 16 + bl
    j += 16 + rl
    n += 1
if j != len(r):
    sys.exit("restore_macs: the rewritten file has more frames than the base")
open(out, "wb").write(o)
PYEOF2
cat >"$WORK/copy.sh" <<EOF
#!/bin/sh
set -e
i=\$1 pnat=\$2 seed=\$3 shift=\$4
tcprewrite --pnat="\$pnat" --tcp-sequence="\$seed" -i "$BASE" -o "$WORK/copies/rw-\$i.pcap"
$PY "$WORK/restore_macs.py" "$BASE" "$WORK/copies/rw-\$i.pcap" "$WORK/copies/mac-\$i.pcap"
editcap -F pcap -t "\$shift" "$WORK/copies/mac-\$i.pcap" "$WORK/copies/copy-\$i.pcap"
rm -f "$WORK/copies/rw-\$i.pcap" "$WORK/copies/mac-\$i.pcap"
EOF
t0=$(date +%s)
xargs -P 2 -L 1 sh "$WORK/copy.sh" <"$WORK/copies.txt" || die "tcprewrite/editcap failed"
mapfile -t COPY_FILES < <(for i in $(seq 0 $((K - 1))); do echo "$WORK/copies/copy-$i.pcap"; done)
mergecap -F pcap -w "$WORK/merged.pcap" "${COPY_FILES[@]}"
rm -f "${COPY_FILES[@]}"
log "multiplied in $(($(date +%s) - t0)) s"

PKTS=$(capinfos -c -M "$WORK/merged.pcap" | awk -F': *' '/Number of packets/ {print $2}')
[[ $PKTS == $((BASE_PKTS * K)) ]] || die "merged capture has $PKTS packets, expected $((BASE_PKTS * K))"
capinfos -t "$WORK/merged.pcap" | grep -q 'Wireshark/tcpdump/... - pcap' || die "merged file is not a classic pcap"
capinfos -E "$WORK/merged.pcap" | grep -q 'Ethernet' || die "merged file is not Ethernet"
mcast=$(tshark -r "$WORK/merged.pcap" -c 200000 -n -Y 'eth.src.ig == 1' -T fields -e frame.number 2>/dev/null | wc -l)
[[ $mcast == 0 ]] || die "$mcast frames with a multicast source MAC in the merged capture"
# spot check: the rewritten copies keep valid checksums
bad=$(tshark -r "$WORK/merged.pcap" -c 200000 -n -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE \
    -o udp.check_checksum:TRUE -Y 'ip.checksum.status == 0 || tcp.checksum.status == 0 || udp.checksum.status == 0' \
    -T fields -e frame.number 2>/dev/null | wc -l)
[[ $bad == 0 ]] || die "$bad packets with bad checksums in the first 200000 of the merged capture"

mv "$WORK/merged.pcap" "$OUT"
BYTES=$(stat -c %s "$OUT")
jq --arg file "$(basename "$OUT")" --argjson packets "$PKTS" --argjson bytes "$BYTES" \
    --arg created "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --arg tools "$(tcpdump --version 2>&1 | head -1); $(tcprewrite --version 2>&1 | head -1); $(mergecap -v | head -1); curl $(curl --version | head -1 | cut -d' ' -f2); nginx $(nginx -v 2>&1 | cut -d/ -f2); unbound $(unbound -V | head -1 | awk '{print $2}'); $(dig -v 2>&1)" \
    --arg how "per copy: tcprewrite --pnat=copies[].pnat --tcp-sequence=copies[].tcp_sequence_seed; Ethernet addresses copied back from the base capture (tcprewrite 4.4.3 rewrites those of IPv6 frames to multicast ones); editcap -F pcap -t copies[].time_shift_s; then mergecap -F pcap (merged by time)" \
    --arg mix "$MIX" \
    '{capture: {file: $file, mix: $mix, packets: $packets, bytes: $bytes, created: $created, tools: $tools, multiplication: $how}} + .' \
    "$WORK/expected.partial.json" >"$EXPECTED"
log "wrote $OUT ($BYTES bytes, $PKTS packets, $K copies) and $EXPECTED"
jq -c '.expected' "$EXPECTED" >&2
