#!/usr/bin/env bash
# Captures for the TCP/flow cases of tests/tcpflow.rs, made by real software in network namespaces:
#
#   chromium-ech.pcap         headless Chromium (BoringSSL) visiting a vendor name over TLS (TCP, the
#                             server advertising MSS 536, so the ~2 KB post-quantum ClientHello spans
#                             several segments) and another over QUIC; both hellos carry Chromium's
#                             GREASE Encrypted Client Hello; names resolved by dnsmasq
#   chromium-ech-nodns.pcap   chromium-ech.pcap without DNS (tcpdump 'not port 53'): the alerts come
#                             from the ClientHellos themselves
#   midstream-reordered.pcap  chromium-ech.pcap's TLS connection without its handshake (SYN, SYN-ACK,
#                             ACK dropped), the ClientHello's segments in reverse order, the first
#                             one retransmitted (records re-ordered/repeated, bytes unchanged)
#   span-duplicates.pcap      chromium-ech.pcap with every frame repeated 3 µs later, every other
#                             copy with an 802.1Q tag inserted (VLAN 20), the others untagged
#   port-reuse.pcap           the same client port used twice in a row to the same server: curl
#                             over TLS (benign name, then a vendor name), curl over HTTP (same),
#                             aioquic over QUIC (same UDP 4-tuple, new connection IDs)
#   checksum-insertion.pcap   curl's TLS connection to a vendor name, with a segment inserted just
#                             before the real ClientHello: a benign ClientHello (curl's, to
#                             www.example.org, from the same run) at the same sequence number,
#                             with a wrong TCP checksum (what an evader sends so that the server
#                             drops it and a sensor that does not verify reads it)
#
#   sudo bash pcaps/gen-tcpflow.sh       (then: python3 pcaps/expected_tcpflow.py --write)
#
# Nothing leaves the machine: two namespaces, one veth pair, private addresses, no route.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=/usr/bin/python3
AIOQUIC_PY=${VWP_AIOQUIC_VENV:-/var/cache/vwp-pcaps/aioquic-1.7.2}/bin/python
[[ $EUID -eq 0 ]] || { echo "run as root" >&2; exit 1; }
"$AIOQUIC_PY" -c 'import aioquic' 2>/dev/null || {
    echo "aioquic 1.7.2 is needed in $AIOQUIC_PY (pcaps/generate.sh --only quic installs it)" >&2
    exit 1
}

C=tf$$c S=tf$$s
CLIENT=10.10.1.11 WEB=10.10.2.80 DNS=10.10.2.53
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    ip netns del "$C" 2>/dev/null || true
    ip netns del "$S" 2>/dev/null || true
    rm -rf "/etc/netns/$C" "$WORK"
}
trap cleanup EXIT
trap "exit 1" INT TERM
nsx() { ip netns exec "$@"; }

ip netns add "$C"
ip netns add "$S"
ip link add veth-c netns "$C" type veth peer name veth-s netns "$S"
nsx "$C" ip addr add $CLIENT/16 dev veth-c
nsx "$S" ip addr add $WEB/16 dev veth-s
nsx "$S" ip addr add $DNS/16 dev veth-s
for ns in "$C" "$S"; do
    dev=veth-${ns: -1}
    nsx "$ns" ip link set lo up
    nsx "$ns" ip link set "$dev" up
    nsx "$ns" ethtool -K "$dev" tx off rx off tso off gso off gro off >/dev/null
done
# The server advertises MSS 536: the client's ClientHello spans several segments.
nsx "$S" ip route change 10.10.0.0/16 dev veth-s advmss 536
mkdir -p "/etc/netns/$C"
echo "nameserver $DNS" >"/etc/netns/$C/resolv.conf"

# --- servers: dnsmasq, nginx (TLS and HTTP; the server closes each connection), aioquic (QUIC)
ip netns exec "$S" dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces --listen-address=$DNS \
    --address=/kaspersky.com/$WEB --address=/kaspersky-labs.com/$WEB --address=/example.org/$WEB \
    >"$WORK/dnsmasq.log" 2>&1 &
PIDS+=($!)
mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=vendorwatch-lab \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
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
    keepalive_timeout 0;
    server {
        listen $WEB:80;
        listen $WEB:443 ssl;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        location / { return 200 "vendorwatch lab\n"; }
    }
}
EOF
ip netns exec "$S" nginx -e "$WORK/nginx/logs/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
PIDS+=($!)
cat >"$WORK/quic_server.py" <<'EOF'
"""QUIC server (aioquic): completes handshakes with HTTP/3 ALPN and answers nothing else."""
import asyncio, sys
from aioquic.asyncio import serve
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration

async def main(cert, key, addr):
    cfg = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    cfg.load_cert_chain(cert, key)
    await serve(addr, 443, configuration=cfg)
    await asyncio.Future()

asyncio.run(main(*sys.argv[1:4]))
EOF
cat >"$WORK/quic_client.py" <<'EOF'
"""QUIC client (aioquic): one handshake with SNI NAME to ADDRESS:443 from UDP port PORT."""
import asyncio, ssl, sys
from aioquic.asyncio import connect
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration

async def main(name, addr, port):
    cfg = QuicConfiguration(is_client=True, server_name=name, verify_mode=ssl.CERT_NONE,
                            alpn_protocols=H3_ALPN)
    async with connect(addr, 443, configuration=cfg, local_port=int(port)) as c:
        await c.ping()

asyncio.run(main(*sys.argv[1:4]))
EOF
ip netns exec "$S" "$AIOQUIC_PY" "$WORK/quic_server.py" "$WORK/cert.pem" "$WORK/key.pem" $WEB >"$WORK/quic.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do
    nsx "$S" ss -Hnl | grep -q "$WEB:443" && nsx "$S" ss -Hnlu | grep -q "$WEB:443" && break
    sleep 0.2
done

cap_start() { # FILE
    ip netns exec "$C" tcpdump -i veth-c -U -s 0 -w "$1" 'not arp and not icmp6' >/dev/null 2>&1 &
    CAP=$!
    PIDS+=($CAP)
    sleep 1
}
cap_stop() { sleep 1; kill "$CAP"; wait "$CAP" 2>/dev/null || true; }

chromium_visit() { # URL [flags...]
    local profile
    profile=$(mktemp -d)
    nsx "$C" timeout 30 chromium --headless --no-sandbox --disable-gpu --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --ignore-certificate-errors --user-data-dir="$profile" "${@:2}" --dump-dom "$1" \
        >>"$WORK/chromium.log" 2>&1 || true
    rm -rf "$profile"
}

# --- chromium-ech.pcap
cap_start "$WORK/chromium-ech.pcap"
chromium_visit https://s05.upd.kaspersky.com/
chromium_visit https://dnl-01.geo.kaspersky.com/ --enable-quic \
    --origin-to-force-quic-on=dnl-01.geo.kaspersky.com:443
cap_stop

# --- port-reuse.pcap: the same client port twice in a row, each time to the same server
cap_start "$WORK/port-reuse.pcap"
nsx "$C" timeout 20 curl -sk --local-port 41001 https://www.example.org/ >/dev/null
sleep 0.5
nsx "$C" timeout 20 curl -sk --local-port 41001 https://ksn-file-geo.kaspersky-labs.com/ >/dev/null
nsx "$C" timeout 20 curl -s --local-port 41002 http://www.example.org/ >/dev/null
sleep 0.5
nsx "$C" timeout 20 curl -s --local-port 41002 http://dnl-02.geo.kaspersky.com/ >/dev/null
nsx "$C" timeout 20 "$AIOQUIC_PY" "$WORK/quic_client.py" www.example.org $WEB 41003
sleep 0.5
nsx "$C" timeout 20 "$AIOQUIC_PY" "$WORK/quic_client.py" s07.upd.kaspersky.com $WEB 41003
cap_stop

# --- checksum-insertion base: a benign and a vendor TLS connection
cap_start "$WORK/insertion-base.pcap"
nsx "$C" timeout 20 curl -sk --local-port 41011 https://www.example.org/ >/dev/null
nsx "$C" timeout 20 curl -sk --local-port 41012 https://activation-v2.kaspersky.com/ >/dev/null
cap_stop

# --- offline transformations (records re-ordered, repeated, dropped; the insertion crafted)
tcpdump -r "$WORK/chromium-ech.pcap" -w "$WORK/chromium-ech-nodns.pcap" 'not port 53' 2>/dev/null
"$PY" "$HERE/tcpflow_transform.py" midstream "$WORK/chromium-ech.pcap" "$WORK/midstream-reordered.pcap"
"$PY" "$HERE/tcpflow_transform.py" duplicate "$WORK/chromium-ech.pcap" "$WORK/span-duplicates.pcap"
"$PY" "$HERE/tcpflow_transform.py" insert "$WORK/insertion-base.pcap" "$WORK/checksum-insertion.pcap"

for f in chromium-ech chromium-ech-nodns midstream-reordered span-duplicates port-reuse checksum-insertion; do
    cp "$WORK/$f.pcap" "$HERE/$f.pcap"
done
echo "made: chromium-ech chromium-ech-nodns midstream-reordered span-duplicates port-reuse checksum-insertion" >&2
