#!/usr/bin/env bash
# Regenerates the parser captures (snap-length cuts, hostile HTTP and DNS) and their
# expectations in pcaps/expected-parsers/.
#
#   sudo bash pcaps/gen-parsers.sh              capture everything again, then derive
#   bash pcaps/gen-parsers.sh --rederive        only the expectations, from the captures here
#
# Two namespaces joined by one veth pair (10.30.0.11 and .12 clients, 10.30.0.1 server; no default route,
# nothing can leave the machine), offloads off so frames are wire-sized. The server runs dnsmasq
# (answers every name with 10.30.0.1, names under example.net with 10.30.0.2), nginx-light (HTTP 80, HTTPS 443, self-signed), tinyproxy
# (8888, forward proxy) and a small Python HTTP/1.1 server (8080) that reads request bodies
# (Content-Length and chunked) and keeps connections alive. tcpdump (-s 0) captures on the
# server's veth. The clients are dig, kdig, curl, openssl s_client, gnutls-cli and Python's
# http.client / socket.
#
# Captures:
#   parsers-full.pcap       dig/kdig lookups (decoys `<label>.upd.kaspersky.com.example.net` whose cut
#                           at 128 or 200 bytes leaves `.upd.kaspersky.com`), curl direct and through
#                           tinyproxy (absolute-form, CONNECT), openssl and gnutls TLS; full snap length
#   parsers-snap128.pcap    the same, `editcap -s 128` (a tap with snap length 128)
#   parsers-snap200.pcap    the same, `editcap -s 200`
#   parsers-http-hostile.pcap  curl with 70 extra headers; python http.client on one keep-alive
#                           connection: a 5,000-byte POST, a chunked PUT, then a GET to a vendor host
#   parsers-dns-hostile.pcap   `dig 'dnl-01\.geo.kaspersky.com'` (a dot inside a label); crafted
#                           queries sent by a Python socket: a compression-pointer loop, and QDCOUNT
#                           65535 with one real question
#
# Expectations come from tshark on each capture (pcaps/expected_parsers.py), never from vendorwatch.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT_DIR="$HERE/expected-parsers"
PY=/usr/bin/python3
CAPTURES=(parsers-full.pcap parsers-snap128.pcap parsers-snap200.pcap parsers-http-hostile.pcap parsers-dns-hostile.pcap)

derive() {
    mkdir -p "$OUT_DIR"
    for c in "${CAPTURES[@]}"; do
        "$PY" "$HERE/expected_parsers.py" "$HERE/$c" >"$OUT_DIR/$c.json.tmp"
        mv "$OUT_DIR/$c.json.tmp" "$OUT_DIR/$c.json"
        echo "derived $OUT_DIR/$c.json"
    done
}

if [[ ${1:-} == --rederive ]]; then
    derive
    exit 0
fi
[[ $(id -u) == 0 ]] || { echo "needs root (network namespaces, tcpdump)" >&2; exit 2; }

P=vwpp-
C=${P}c
S=${P}s
WORK=$(mktemp -d /tmp/gen-parsers.XXXXXX)
chmod 755 "$WORK" # nginx's worker reads the web root
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    ip netns del "$C" 2>/dev/null || true
    ip netns del "$S" 2>/dev/null || true
    [[ -n ${VWP_KEEP_WORK:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT
ip netns del "$C" 2>/dev/null || true
ip netns del "$S" 2>/dev/null || true

ip netns add "$C"
ip netns add "$S"
ip link add "${P}vc" type veth peer name "${P}vs"
ip link set "${P}vc" netns "$C"
ip link set "${P}vs" netns "$S"
ip -n "$C" link set "${P}vc" name eth0
ip -n "$S" link set "${P}vs" name eth0
for ns in "$C" "$S"; do
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip netns exec "$ns" ethtool -K eth0 tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
done
ip -n "$C" addr add 10.30.0.11/24 dev eth0
# A second, clean client: only the decoys come from it, so any detection of it is a false one.
ip -n "$C" addr add 10.30.0.12/24 dev eth0
ip -n "$S" addr add 10.30.0.1/24 dev eth0
# A second server address, for the decoys only: no vendor name resolves to it, so a connection
# to it is never tied to a vendor by an earlier DNS answer.
ip -n "$S" addr add 10.30.0.2/24 dev eth0
SRV=10.30.0.1
SRV2=10.30.0.2

# --- servers ---
cat >"$WORK/dnsmasq.conf" <<EOF
no-resolv
no-hosts
listen-address=$SRV
bind-interfaces
address=/#/$SRV
address=/example.net/$SRV2
EOF
ip netns exec "$S" dnsmasq --keep-in-foreground --conf-file="$WORK/dnsmasq.conf" --pid-file="$WORK/dnsmasq.pid" 2>"$WORK/dnsmasq.log" &
PIDS+=($!)

openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=server.test" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1
mkdir -p "$WORK/www"
echo ok >"$WORK/www/index.html"
mkdir -p "$WORK/www/index"
echo ok >"$WORK/www/index/u0607g.xml"
cat >"$WORK/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $WORK/body;
    server {
        listen $SRV:80;
        listen $SRV2:80;
        listen $SRV:443 ssl;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        root $WORK/www;
    }
}
EOF
ip netns exec "$S" nginx -c "$WORK/nginx.conf" &
PIDS+=($!)

cat >"$WORK/tinyproxy.conf" <<EOF
Port 8888
Listen $SRV
Timeout 5
MaxClients 10
Allow 10.30.0.0/24
ConnectPort 443
EOF
ip netns exec "$S" tinyproxy -d -c "$WORK/tinyproxy.conf" >"$WORK/tinyproxy.log" 2>&1 &
PIDS+=($!)

cat >"$WORK/server.py" <<'EOF'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                self.rfile.read(size + 2) if size else None
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
        else:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
    def _ok(self):
        self._body()
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")
    do_GET = do_POST = do_PUT = _ok
    def log_message(self, *a):
        pass
http.server.HTTPServer((sys.argv[1], 8080), H).serve_forever()
EOF
ip netns exec "$S" "$PY" "$WORK/server.py" "$SRV" &
PIDS+=($!)

wait_port() { # proto port
    for _ in $(seq 100); do
        if ip netns exec "$S" ss -Hln"$1" | grep -q ":$2 "; then return 0; fi
        sleep 0.1
    done
    echo "server on $1 port $2 did not start" >&2
    exit 1
}
wait_port u 53
wait_port t 80
wait_port t 443
wait_port t 8888
wait_port t 8080

capture() { # file
    ip netns exec "$S" tcpdump -i eth0 -s 0 -U --immediate-mode -w "$WORK/$1" 2>"$WORK/$1.log" &
    TCPDUMP=$!
    for _ in $(seq 100); do grep -q "listening on" "$WORK/$1.log" && break; sleep 0.1; done
}
stop_capture() {
    sleep 1
    kill -INT "$TCPDUMP"
    wait "$TCPDUMP" || true
}
in_c() { ip netns exec "$C" "$@"; }

# --- parsers-full.pcap: the base of the snap-length cuts ---
# Decoys: on Ethernet/IPv4/UDP the DNS message starts at byte 42. A query for
# `<55 x>.upd.kaspersky.com.example.net` cut at 128 bytes keeps 86 bytes of DNS: the header (12),
# the first label (56), `upd` (4), `kaspersky` (10) and `com` (4), so the cut name reads
# `<55 x>.upd.kaspersky.com`, which a high-severity rule (`*.upd.kaspersky.com`) would match. At
# 200 bytes (158 of DNS): two 63-byte labels (128), then `upd`, `kaspersky` and `com`.
X55=$(printf 'x%.0s' $(seq 55))
X63=$(printf 'x%.0s' $(seq 63))
Y63=$(printf 'y%.0s' $(seq 63))
DECOY128="$X55.upd.kaspersky.com.example.net"
DECOY200="$X63.$Y63.upd.kaspersky.com.example.net"
capture parsers-full.pcap
in_c dig +tries=1 +time=2 @"$SRV" dnl-01.geo.kaspersky.com A >/dev/null
in_c dig +tries=1 +time=2 @"$SRV" www.example.org A >/dev/null
in_c dig -b 10.30.0.12 +tries=1 +time=2 @"$SRV" "$DECOY128" A >/dev/null
in_c dig -b 10.30.0.12 +tries=1 +time=2 @"$SRV" "$DECOY200" A >/dev/null
in_c kdig -b 10.30.0.12 +retry=0 +time=2 @"$SRV" "$DECOY128" AAAA >/dev/null
in_c kdig +retry=0 +time=2 @"$SRV" s05.upd.kaspersky.com AAAA >/dev/null
in_c dig +tcp +tries=1 +time=2 @"$SRV" ksn-file-geo.kaspersky-labs.com A >/dev/null
R="--resolve dnl-01.geo.kaspersky.com:80:$SRV --resolve dnl-03.geo.kaspersky.com:80:$SRV --resolve www.example.org:80:$SRV"
# Short and long request lines: at 128 bytes the Host line of the first is whole, of the
# second cut (its request line is 31 bytes).
in_c curl -s -o /dev/null $R http://dnl-03.geo.kaspersky.com/
in_c curl -s -o /dev/null $R http://dnl-01.geo.kaspersky.com/index/u0607g.xml
in_c curl -s -o /dev/null $R http://www.example.org/
# Host decoys `dnl-02.geo.kaspersky.com.example.net` cut right after `.com`: curl sends the Host
# line right after the request line (15 bytes plus the path), the TCP payload starts at byte 66,
# so the value (from byte 87 + path) ends `.com` at 128 with a 17-byte path, at 200 with 89.
P17=/$(printf 'a%.0s' $(seq 16))
P89=/$(printf 'b%.0s' $(seq 88))
in_c curl -s -o /dev/null --interface 10.30.0.12 -H "Host: dnl-02.geo.kaspersky.com.example.net" "http://$SRV2$P17"
in_c curl -s -o /dev/null --interface 10.30.0.12 -H "Host: dnl-02.geo.kaspersky.com.example.net" "http://$SRV2$P89"
# Through the proxy: absolute-form and CONNECT (tinyproxy cannot resolve the names: the
# requests are on the wire all the same).
in_c curl -s -o /dev/null -x "http://$SRV:8888" http://dnl-03.geo.kaspersky.com/ || true
in_c curl -s -o /dev/null -p -x "http://$SRV:8888" https://activation-v2.kaspersky.com/ || true
in_c sh -c "echo | openssl s_client -connect $SRV:443 -servername dnl-01.geo.kaspersky.com >/dev/null 2>&1" || true
in_c sh -c "echo | timeout 5 gnutls-cli --insecure --sni-hostname=s07.upd.kaspersky.com $SRV >/dev/null 2>&1" || true
stop_capture

# --- parsers-http-hostile.pcap ---
capture parsers-http-hostile.pcap
HDRS=()
for i in $(seq 70); do HDRS+=(-H "X-Pad-$i: $i"); done
in_c curl -s -o /dev/null --resolve "dnl-01.geo.kaspersky.com:80:$SRV" "${HDRS[@]}" http://dnl-01.geo.kaspersky.com/
cat >"$WORK/client.py" <<'EOF'
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], 8080, timeout=5)
def go(method, url, host, body=None, chunked=False):
    c.request(method, url, body=body, headers={"Host": host}, encode_chunked=chunked)
    r = c.getresponse()
    r.read()
go("POST", "/upload", "www.example.org", body=b"G" * 5000)
go("PUT", "/c", "www.example.org", body=iter([b"G" * 1500] * 4), chunked=True)
go("GET", "/index/u0607g.xml", "dnl-01.geo.kaspersky.com")
c.close()
EOF
in_c "$PY" "$WORK/client.py" "$SRV"
stop_capture

# --- parsers-dns-hostile.pcap ---
capture parsers-dns-hostile.pcap
in_c dig +tries=1 +time=2 @"$SRV" 'dnl-01\.geo.kaspersky.com' A >/dev/null
cat >"$WORK/crafted.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
# A query whose name is `a` then a pointer back to itself (offset 12): a compression loop.
loop = bytes([0x4c, 0x4f, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, ord("a"), 0xc0, 12, 0, 1, 0, 1])
# QDCOUNT 65535 with one real question.
q = b"\x06dnl-02\x03geo\x09kaspersky\x03com\x00\x00\x01\x00\x01"
many = bytes([0x51, 0x44, 0x01, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0]) + q
for m in (loop, many):
    s.sendto(m, (sys.argv[1], 53))
    try:
        s.recv(4096)
    except OSError:
        pass
EOF
in_c "$PY" "$WORK/crafted.py" "$SRV"
stop_capture

# --- install, cut, derive ---
for c in parsers-full.pcap parsers-http-hostile.pcap parsers-dns-hostile.pcap; do
    cp "$WORK/$c" "$HERE/$c"
done
editcap -s 128 "$HERE/parsers-full.pcap" "$HERE/parsers-snap128.pcap"
editcap -s 200 "$HERE/parsers-full.pcap" "$HERE/parsers-snap200.pcap"
derive
