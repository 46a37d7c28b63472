#!/usr/bin/env bash
# A server that speaks first, on a tap that loses or reorders its first words: SMTP STARTTLS from
# real software, and two copies of it as a lossy tap records it.
#
#   starttls-smtp.pcap             `openssl s_client -starttls smtp -servername
#                                  dnl-01.geo.kaspersky.com` to a small SMTP server (Python's ssl,
#                                  stdlib) on port 587: the banner, EHLO, STARTTLS, then the TLS
#                                  handshake; the server logs the name it received
#   taploss-smtp-banner.pcap       the same without the server's banner (the tap lost it): the
#                                  client's EHLO acknowledges bytes the capture never shows
#   taploss-smtp-reordered.pcap    the same with the banner after the EHLO (a tap that merges two
#                                  ports out of order): the EHLO acknowledges bytes not yet shown
#
#   sudo bash pcaps/gen-taploss.sh     (needs openssl, tcpdump, tshark, ip, ethtool)
#
# tests/tap_loss.rs reads the name from starttls-smtp.pcap with tshark and expects it from all
# three. Nothing leaves the machine: two namespaces, one veth pair, private addresses.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ $EUID -eq 0 ]] || { echo "run as root" >&2; exit 1; }
die() { echo "gen-taploss: $*" >&2; exit 1; }
for tool in openssl tcpdump tshark ip ethtool; do
    command -v "$tool" >/dev/null || die "$tool is needed (bash scripts/deps.sh installs it)"
done
C=tl$$c S=tl$$s CLIENT=10.42.1.11 SERVER=10.42.2.25 NAME=dnl-01.geo.kaspersky.com
WORK=$(mktemp -d /tmp/vwp-taploss.XXXXXX)
PIDS=()
cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    ip netns del "$C" 2>/dev/null
    ip netns del "$S" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
nsx() { ip netns exec "$@"; }
ip netns add "$C"
ip netns add "$S"
ip link add veth-c netns "$C" type veth peer name veth-s netns "$S"
nsx "$C" ip addr add $CLIENT/16 dev veth-c
nsx "$S" ip addr add $SERVER/16 dev veth-s
for ns in "$C" "$S"; do
    nsx "$ns" ip link set lo up
    nsx "$ns" ip link set "veth-${ns: -1}" up
    nsx "$ns" ethtool -K "veth-${ns: -1}" tx off rx off tso off gso off gro off >/dev/null
done
openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=vendorwatch-lab \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat >"$WORK/smtp.py" <<'EOF'
"""One SMTP session with STARTTLS on ADDRESS:587: banner, EHLO, STARTTLS, the TLS handshake;
prints "SNI name" for the name the client's hello carried."""
import socket
import ssl
import sys

address, cert, key = sys.argv[1:4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.sni_callback = lambda sock, name, _ctx: print("SNI", name, flush=True)
listener = socket.create_server((address, 587))
print("listening", flush=True)
conn, _ = listener.accept()
files = conn.makefile("rb")
conn.sendall(b"220 mail.lab ESMTP\r\n")
while True:
    line = files.readline()
    if not line:
        sys.exit("the client left before STARTTLS")
    verb = line.split()[0].upper() if line.split() else b""
    if verb in (b"EHLO", b"HELO"):
        conn.sendall(b"250-mail.lab\r\n250 STARTTLS\r\n")
    elif verb == b"STARTTLS":
        conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")
        break
    else:
        conn.sendall(b"502 5.5.2 not here\r\n")
tls = ctx.wrap_socket(conn, server_side=True)
tls.sendall(b"221 2.0.0 Bye\r\n")
tls.close()
EOF
nsx "$S" python3 "$WORK/smtp.py" $SERVER "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/smtp.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do nsx "$S" ss -Hnlt | grep -q "$SERVER:587 " && break; sleep 0.2; done
nsx "$S" tcpdump -i veth-s -U -s 0 -w "$WORK/starttls-smtp.pcap" "tcp port 587" >/dev/null 2>&1 &
CAP=$!
PIDS+=($CAP)
sleep 1
nsx "$C" timeout 20 openssl s_client -starttls smtp -connect $SERVER:587 -servername $NAME \
    </dev/null >"$WORK/client.log" 2>&1 || true
sleep 1
kill "$CAP"
wait "$CAP" 2>/dev/null || true
grep -q "^SNI $NAME$" "$WORK/smtp.log" || die "the server did not receive $NAME: $(cat "$WORK/smtp.log")"
echo "gen-taploss: the server received the name: $(grep '^SNI' "$WORK/smtp.log")" >&2

# The banner: the server's first segment with data; the EHLO: the client's first.
frame_of() { tshark -r "$WORK/starttls-smtp.pcap" -Y "$1" -T fields -e frame.number 2>/dev/null | head -1; }
banner=$(frame_of "tcp.srcport == 587 && tcp.len > 0")
ehlo=$(frame_of "tcp.dstport == 587 && tcp.len > 0")
[[ -n $banner && -n $ehlo && $banner -lt $ehlo ]] || die "no banner before the EHLO ($banner, $ehlo)"
editcap "$WORK/starttls-smtp.pcap" "$WORK/taploss-smtp-banner.pcap" "$banner"
# The banner's record moved after the EHLO's (classic pcap: 24-byte header, 16-byte record heads),
# each record keeping its own timestamp.
python3 - "$WORK/starttls-smtp.pcap" "$WORK/taploss-smtp-reordered.pcap" "$banner" "$ehlo" <<'EOF'
import struct
import sys

src, dst, banner, ehlo = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = open(src, "rb").read()
assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"), "not a little-endian classic pcap"
records, at = [], 24
while at < len(data):
    incl = struct.unpack_from("<I", data, at + 8)[0]
    records.append(data[at:at + 16 + incl])
    at += 16 + incl
moved = records.pop(banner - 1)
records.insert(ehlo - 1, moved)  # after the EHLO, which moved up by one
open(dst, "wb").write(data[:24] + b"".join(records))
EOF
for f in starttls-smtp taploss-smtp-banner taploss-smtp-reordered; do
    cp "$WORK/$f.pcap" "$HERE/$f.pcap"
    chmod 644 "$HERE/$f.pcap"
    echo "gen-taploss: $f.pcap: $(tshark -r "$HERE/$f.pcap" 2>/dev/null | wc -l) packets" >&2
done
