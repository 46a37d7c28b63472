#!/usr/bin/env bash
# Captures for the evasion cases of tests/evasion.rs: a real ClientHello (curl's) cut into crafted
# TCP segments and sent to real Linux servers, and real HTTP requests preceded by an empty line.
# Every capture is taken by tcpdump on the server side of the link, so what the server's kernel
# did with the segments is in the capture as the server's own answer.
#
#   evasion-first-last.pcap            the ClientHello (SNI dnl-01.geo.kaspersky.com) in 20
#                                      segments of 26 bytes, the first segment sent last; nginx
#                                      answers with its handshake
#   evasion-reverse.pcap               the same ClientHello in 8-byte segments, all sent in
#                                      reverse order; nginx answers with its handshake
#   evasion-overlap-replace.pcap       to an `openssl s_server` that accepts only the name
#                                      dnl-01.geo.kaspersky.com (`-servername_fatal`): bytes
#                                      [100,300) with the SNI replaced by the same-length decoy
#                                      updates.example-corp.com (out of order: a hole before
#                                      them), then the real bytes [100,end) (same start, longer:
#                                      Linux replaces the queued segment), then [0,100). The
#                                      server answers with its handshake: it received the real
#                                      name
#   evasion-overlap-replace-control.pcap
#                                      the same with real and decoy swapped: the server answers
#                                      with a fatal unrecognized_name alert: it received the decoy
#   evasion-http-empty-line.pcap       Python sockets to nginx on port 80: `\r\nGET / HTTP/1.1`
#                                      with Host activation-v2.kaspersky.com (the first request of
#                                      a connection after an empty line); on a second connection a
#                                      POST to www.example.org with a 2-byte body, then `\r\n`,
#                                      then a GET with Host dnl-02.geo.kaspersky.com (keep-alive);
#                                      nginx answers all three requests
#   evasion-fake-ttl.pcap              a DPI-evasion "fake" in front of the real ClientHello: after
#                                      the handshake, curl's ClientHello with the SNI replaced by
#                                      the decoy updates.example-corp.com, at the sequence number of
#                                      the real one, then the real ClientHello, to the strict
#                                      s_server behind a router namespace; the fake has TTL 1 and
#                                      expires at the router (ICMP time exceeded, not captured).
#                                      Taken on the router's client-facing interface (the tap sees
#                                      the fake arrive); s_server answers with its handshake: it
#                                      received the real name
#   evasion-fake-noack.pcap            the same fake with flags PSH only (no ACK), direct to the
#                                      strict s_server: Linux discards it; s_server answers with
#                                      its handshake
#   evasion-fake-md5.pcap              the same fake with a TCP-MD5 signature option (kind 19, 16
#                                      zero bytes) on a connection whose SYN had none: Linux drops
#                                      it (TCPMD5Unexpected); s_server answers with its handshake
#
#   sudo bash pcaps/gen-evasion.sh       (then: python3 pcaps/expected_evasion.py --write)
#   sudo bash pcaps/gen-evasion.sh --only fakes
#   sudo bash pcaps/gen-evasion.sh --only evasion-fake-md5,evasion-reverse
#                                        make (and copy into pcaps/) only the captures named, by name
#                                        with or without .pcap, comma-separated; `fakes` stands for
#                                        the three evasion-fake-* captures. The others stay as they
#                                        are. If a fake case's server answers with the alert instead
#                                        (Linux took the fake), the script says so and keeps it: the
#                                        expectations follow the server's answer.
#
# The crafted segments are sent by scapy from a raw (packet) socket in the client namespace, from
# 10.40.1.12, an address the client's kernel does not own: the server reaches it through a static
# neighbour entry (the client's MAC), and the client kernel drops the server's answers silently
# instead of resetting a connection it never opened. scapy comes from PyPI, pinned, in a venv of
# its own outside the repository (/var/cache/vwp-pcaps/scapy-2.5.0; VWP_SCAPY_VENV changes it),
# installed the first time. The script fails loudly when a server does not answer as its case
# says. Nothing leaves the machine: three namespaces (client, router, server), three veth pairs
# (client-server direct; client-router-server for evasion-fake-ttl.pcap), private addresses, no
# default route.
set -euo pipefail

ALL=(evasion-first-last evasion-reverse evasion-overlap-replace evasion-overlap-replace-control
     evasion-http-empty-line evasion-fake-ttl evasion-fake-noack evasion-fake-md5)
ONLY=("${ALL[@]}")
if [[ ${1:-} == --only ]]; then
    [[ -n ${2:-} ]] || { echo "usage: gen-evasion.sh [--only NAME[,NAME...]|fakes]" >&2; exit 2; }
    ONLY=()
    IFS=, read -ra names <<<"$2"
    for n in "${names[@]}"; do
        n=${n%.pcap}
        if [[ $n == fakes ]]; then
            ONLY+=(evasion-fake-ttl evasion-fake-noack evasion-fake-md5)
        elif [[ " ${ALL[*]} " == *" $n "* ]]; then
            ONLY+=("$n")
        else
            echo "gen-evasion: no capture $n (have: ${ALL[*]}, fakes)" >&2
            exit 2
        fi
    done
    shift 2
fi
(($# == 0)) || { echo "usage: gen-evasion.sh [--only NAME[,NAME...]|fakes]" >&2; exit 2; }
want() { [[ " ${ONLY[*]} " == *" $1 "* ]]; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=/usr/bin/python3
SCAPY_VERSION=2.5.0
SCAPY_VENV=${VWP_SCAPY_VENV:-/var/cache/vwp-pcaps/scapy-$SCAPY_VERSION}
SCAPY_PY=$SCAPY_VENV/bin/python
[[ $EUID -eq 0 ]] || { echo "run as root" >&2; exit 1; }
die() { echo "gen-evasion: $*" >&2; exit 1; }

missing=()
for tool in nginx:nginx-light openssl:openssl curl:curl tcpdump:tcpdump ethtool:ethtool ip:iproute2; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
"$PY" -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
    echo "gen-evasion: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
fi
if ! "$SCAPY_PY" -c "import scapy, sys; sys.exit(scapy.__version__ != '$SCAPY_VERSION')" 2>/dev/null; then
    echo "gen-evasion: installing scapy $SCAPY_VERSION into $SCAPY_VENV" >&2
    rm -rf "$SCAPY_VENV"
    "$PY" -m venv "$SCAPY_VENV"
    "$SCAPY_VENV/bin/pip" install --quiet --disable-pip-version-check "scapy==$SCAPY_VERSION"
fi

C=ev$$c S=ev$$s R=ev$$r
CLIENT=10.40.1.11 CRAFTED=10.40.1.12 WEB=10.40.2.80 STRICT=10.40.2.81
# the routed path of evasion-fake-ttl.pcap: client 10.41.1.0/24 - router - 10.41.2.0/24 server
ROUTER_C=10.41.1.1 ROUTER_S=10.41.2.1 CRAFTED_R=10.41.1.12 STRICT_R=10.41.2.81
REAL=dnl-01.geo.kaspersky.com DECOY=updates.example-corp.com
WORK=$(mktemp -d /tmp/vwp-evasion.XXXXXX)
PIDS=()
cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.5
    ip netns del "$C" 2>/dev/null
    ip netns del "$S" 2>/dev/null
    ip netns del "$R" 2>/dev/null
    if [[ -n ${VWP_KEEP_WORK:-} ]]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap "exit 1" INT TERM
nsx() { ip netns exec "$@"; }

# --- the lab: client namespace (10.40.1.11; 10.40.1.12 is used only by the raw sender) and
# server namespace (nginx on 10.40.2.80, openssl s_server on 10.40.2.81)
ip netns add "$C"
ip netns add "$S"
ip link add veth-c netns "$C" type veth peer name veth-s netns "$S"
nsx "$C" ip addr add $CLIENT/16 dev veth-c
nsx "$S" ip addr add $WEB/16 dev veth-s
nsx "$S" ip addr add $STRICT/16 dev veth-s
for ns in "$C" "$S"; do
    dev=veth-${ns: -1}
    nsx "$ns" ip link set lo up
    nsx "$ns" ip link set "$dev" up
    nsx "$ns" ethtool -K "$dev" tx off rx off tso off gso off gro off >/dev/null
done
CMAC=$(nsx "$C" cat /sys/class/net/veth-c/address)
SMAC=$(nsx "$S" cat /sys/class/net/veth-s/address)
nsx "$S" ip neigh replace $CRAFTED lladdr "$CMAC" dev veth-s nud permanent

# --- the routed path (evasion-fake-ttl.pcap): client veth-cr = router veth-rc (10.41.1.1),
# router veth-rs (10.41.2.1) = server veth-sr (10.41.2.81, a second strict s_server); the router
# forwards (and sends ICMP time exceeded for what expires there); 10.41.1.12 is the raw sender's,
# reached through a static neighbour entry on the router
ip netns add "$R"
ip link add veth-cr netns "$C" type veth peer name veth-rc netns "$R"
ip link add veth-rs netns "$R" type veth peer name veth-sr netns "$S"
nsx "$R" ip addr add $ROUTER_C/24 dev veth-rc
nsx "$R" ip addr add $ROUTER_S/24 dev veth-rs
nsx "$S" ip addr add $STRICT_R/24 dev veth-sr
nsx "$R" ip link set lo up
for nd in "$C veth-cr" "$R veth-rc" "$R veth-rs" "$S veth-sr"; do
    read -r ns dev <<<"$nd"
    nsx "$ns" ip link set "$dev" up
    nsx "$ns" ethtool -K "$dev" tx off rx off tso off gso off gro off >/dev/null
done
nsx "$R" sysctl -qw net.ipv4.ip_forward=1
nsx "$S" ip route add 10.41.1.0/24 via $ROUTER_S dev veth-sr
CRMAC=$(nsx "$C" cat /sys/class/net/veth-cr/address)
RCMAC=$(nsx "$R" cat /sys/class/net/veth-rc/address)
nsx "$R" ip neigh replace $CRAFTED_R lladdr "$CRMAC" dev veth-rc nud permanent

# --- servers
openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=vendorwatch-lab \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
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
    keepalive_timeout 10;
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
# Accepts only REAL as server name; any other name gets a fatal unrecognized_name alert. -www:
# it answers an HTTP request after the handshake and never reads its own stdin.
ip netns exec "$S" openssl s_server -accept $STRICT:443 -www -cert "$WORK/cert.pem" -key "$WORK/key.pem" \
    -cert2 "$WORK/cert.pem" -key2 "$WORK/key.pem" -servername $REAL -servername_fatal \
    >"$WORK/s_server.log" 2>&1 &
PIDS+=($!)
# the same behind the router
ip netns exec "$S" openssl s_server -accept $STRICT_R:443 -www -cert "$WORK/cert.pem" -key "$WORK/key.pem" \
    -cert2 "$WORK/cert.pem" -key2 "$WORK/key.pem" -servername $REAL -servername_fatal \
    >"$WORK/s_server-routed.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do
    nsx "$S" ss -Hnlt | grep -q "$WEB:443" && nsx "$S" ss -Hnlt | grep -q "$WEB:80" \
        && nsx "$S" ss -Hnlt | grep -q "$STRICT:443" && nsx "$S" ss -Hnlt | grep -q "$STRICT_R:443" && break
    sleep 0.2
done
nsx "$S" ss -Hnlt | grep -q "$STRICT:443" || die "servers did not start: $(cat "$WORK/s_server.log")"
nsx "$S" ss -Hnlt | grep -q "$STRICT_R:443" || die "servers did not start: $(cat "$WORK/s_server-routed.log")"

cap_start() { # FILE FILTER [NAMESPACE INTERFACE] (default: the server's side of the direct link)
    ip netns exec "${3:-$S}" tcpdump -i "${4:-veth-s}" -U -s 0 -w "$1" "$2" >/dev/null 2>&1 &
    CAP=$!
    PIDS+=($CAP)
    sleep 1
}
cap_stop() { sleep 1; kill "$CAP"; wait "$CAP" 2>/dev/null || true; }

# --- a real ClientHello: curl to REAL (not committed; its bytes are what the raw sender cuts)
cap_start "$WORK/hello-base.pcap" "tcp port 443"
nsx "$C" timeout 20 curl -sk --resolve $REAL:443:$WEB https://$REAL/ >/dev/null || die "curl failed"
cap_stop

cat >"$WORK/hello.py" <<'EOF'
"""Write the client's first TLS record (the ClientHello) of the capture IN to OUT, checked whole."""
import sys
from scapy.all import IP, TCP, rdpcap

pkts = rdpcap(sys.argv[1])
client = next(p for p in pkts if TCP in p and p[TCP].flags & 0x02 and not p[TCP].flags & 0x10)
key = (client[IP].src, client[TCP].sport)
hello = b""
for p in pkts:
    if TCP not in p or not len(p[TCP].payload):
        continue
    if (p[IP].src, p[TCP].sport) != key:
        break  # the server's first answer
    hello += bytes(p[TCP].payload)
assert hello[:1] == b"\x16" and hello[5:6] == b"\x01", "not a ClientHello"
assert len(hello) == 5 + int.from_bytes(hello[3:5], "big"), "more or less than one record"
assert sys.argv[3].encode() in hello, "the name is not in the ClientHello"
open(sys.argv[2], "wb").write(hello)
print(len(hello))
EOF
HELLO_LEN=$("$SCAPY_PY" "$WORK/hello.py" "$WORK/hello-base.pcap" "$WORK/hello.bin" $REAL)
echo "gen-evasion: curl's ClientHello is $HELLO_LEN bytes" >&2
# 20 segments of 26 bytes (more than the 17 a sensor once kept) need 495..520 bytes.
((HELLO_LEN > 19 * 26 && HELLO_LEN <= 20 * 26)) \
    || die "the ClientHello is $HELLO_LEN bytes: not 20 segments of 26 bytes"

cat >"$WORK/send.py" <<'EOF'
"""Raw TCP client (scapy): one connection from SRC:SPORT to DST:443 that sends the ClientHello in
HELLO as crafted segments, then reports the server's first answer as JSON on stdout.

    send.py MODE HELLO SRC DST SPORT CLIENT_MAC SERVER_MAC [DECOY_FROM DECOY_TO [IFACE]]

MODE first-last:N   N-byte segments in order, except the first, which is sent last
MODE reverse:N      N-byte segments, all in reverse order
MODE overlap        [100,300) with DECOY_FROM replaced by DECOY_TO (same length; a hole before
                    it), then the real [100,end), then [0,100)
MODE overlap-control
                    the same with real and decoy swapped: real [100,300), decoy [100,end), [0,100)
MODE fake-ttl:N     a "fake": the whole hello with DECOY_FROM replaced by DECOY_TO (same length),
                    flags PSH ACK and TTL N, at the sequence number of the real hello; then the
                    real hello in one segment
MODE fake-noack     the same fake with TTL 64 and flags PSH only (no ACK)
MODE fake-md5       the same fake with TTL 64, flags PSH ACK and a TCP-MD5 signature option (NOP,
                    NOP, kind 19 length 18, 16 zero bytes); the SYN has none

IFACE is the interface the raw socket sends on (veth-c unless given); SERVER_MAC is the next hop's.

After the segments the client waits for the server's answer. If none comes (the server acked
less than the whole hello), it sends what the server has not acked in order, as a TCP sender does
after a timeout, and says so ("retransmitted"). It then acks the answer and resets the connection.
"""
import json
import select
import sys
import time

from scapy.all import IP, TCP, Ether, Raw, conf

conf.verb = 0
mode, hello_file, src, dst, sport, cmac, smac = sys.argv[1:8]
sport = int(sport)
hello = open(hello_file, "rb").read()
ISN = 1000
STEP = int(mode.split(":")[1]) if ":" in mode else 100  # segment size of a retransmission

fake = None
if mode.startswith(("first-last:", "reverse:")):
    n = int(mode.split(":")[1])
    plan = [(i, hello[i:i + n]) for i in range(0, len(hello), n)]
    plan = plan[1:] + plan[:1] if mode.startswith("first-last") else plan[::-1]
elif mode.startswith("fake-"):
    frm, to = sys.argv[8].encode(), sys.argv[9].encode()
    decoy = hello.replace(frm, to)
    assert len(decoy) == len(hello) and decoy != hello
    STEP = len(hello)
    if mode.startswith("fake-ttl:"):
        fake = {"flags": "PA", "ttl": int(mode.split(":")[1]), "data": decoy}
    elif mode == "fake-noack":
        fake = {"flags": "P", "data": decoy}
    elif mode == "fake-md5":
        fake = {"flags": "PA", "data": decoy,
                "options": [("NOP", None), ("NOP", None), ("MD5", bytes(16))]}
    else:
        sys.exit(f"no mode {mode}")
    plan = [(0, hello)]
else:
    frm, to = sys.argv[8].encode(), sys.argv[9].encode()
    decoy = hello.replace(frm, to)
    assert len(decoy) == len(hello) and decoy != hello and 100 <= hello.index(frm) <= 300 - len(frm)
    first, second = (decoy, hello) if mode == "overlap" else (hello, decoy)
    plan = [(100, first[100:300]), (100, second[100:]), (0, hello[:100])]

sock = conf.L2socket(iface=sys.argv[10] if len(sys.argv) > 10 else "veth-c")
eth = Ether(src=cmac, dst=smac)


def segment(flags, seq, ack=0, data=b"", ttl=64, options=None):
    tcp = TCP(sport=sport, dport=443, flags=flags, seq=seq, ack=ack, window=64240)
    if flags == "S":
        tcp.options = [("MSS", 1460)]
    if options:
        tcp.options = options
    pkt = eth / IP(src=src, dst=dst, ttl=ttl) / tcp
    sock.send(pkt / Raw(data) if data else pkt)


def receive(timeout):
    """The server's segments to us until TIMEOUT passes without one."""
    got, end = [], time.time() + timeout
    while time.time() < end:
        if not select.select([sock], [], [], max(0.0, end - time.time()))[0]:
            break
        p = sock.recv()
        if p is not None and TCP in p and p[IP].src == dst and p[TCP].dport == sport:
            got.append(p)
            end = time.time() + timeout
    return got


segment("S", ISN)
synack = next((p for p in receive(2) if p[TCP].flags & 0x12 == 0x12), None)
if synack is None:
    sys.exit("no SYN-ACK")
sack = synack[TCP].seq + 1
segment("A", ISN + 1, sack)
if fake:
    segment(fake["flags"], ISN + 1, sack, fake["data"], fake.get("ttl", 64), fake.get("options"))
    time.sleep(0.005)
for off, data in plan:
    segment("PA", ISN + 1 + off, sack, data)
    time.sleep(0.005)
answer = receive(1.5)
retransmitted = False
if not any(len(p[TCP].payload) for p in answer):
    acked = max([p[TCP].ack for p in answer] or [ISN + 1]) - ISN - 1
    for off in range(acked, len(hello), STEP):
        segment("PA", ISN + 1 + off, sack, hello[off:off + STEP])
        time.sleep(0.005)
    retransmitted = {"acked_before": acked}
    answer = receive(1.5)
payload = sorted(((p[TCP].seq, bytes(p[TCP].payload)) for p in answer if len(p[TCP].payload)))
first = payload[0][1] if payload else b""
end = max((s + len(d) for s, d in payload), default=sack)
segment("A", ISN + 1 + len(hello), end)
segment("R", ISN + 1 + len(hello))
print(json.dumps({"answer_bytes": sum(len(d) for _, d in payload), "record_type": first[:1].hex(),
                  "record": first[:7].hex(), "retransmitted": retransmitted}))
EOF

crafted() { # OUT MODE DST SPORT [DECOY_FROM DECOY_TO] -> the sender's JSON report
    cap_start "$WORK/$1" "tcp and host $CRAFTED"
    nsx "$C" "$SCAPY_PY" "$WORK/send.py" "$2" "$WORK/hello.bin" $CRAFTED "$3" "$4" "$CMAC" "$SMAC" \
        "${@:5}" >"$WORK/$1.json"
    cap_stop
    echo "gen-evasion: $1: $(cat "$WORK/$1.json")" >&2
}
crafted_routed() { # OUT MODE SPORT DECOY_FROM DECOY_TO: the same to the s_server behind the
    # router, from 10.41.1.12; the tap is the router's client-facing interface
    cap_start "$WORK/$1" "tcp and host $CRAFTED_R" "$R" veth-rc
    nsx "$C" "$SCAPY_PY" "$WORK/send.py" "$2" "$WORK/hello.bin" $CRAFTED_R $STRICT_R "$3" "$CRMAC" "$RCMAC" \
        "$4" "$5" veth-cr >"$WORK/$1.json"
    cap_stop
    echo "gen-evasion: $1: $(cat "$WORK/$1.json")" >&2
}
field() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/$1.json" "$2"; }
# A kernel counter of a namespace (/proc/net/snmp, /proc/net/netstat): NS GROUP NAME
counter() {
    nsx "$1" cat /proc/net/snmp /proc/net/netstat | awk -v g="$2:" -v n="$3" '
        $1 == g && !h { for (i = 2; i <= NF; i++) if ($i == n) c = i; h = 1; next }
        $1 == g && h { print (c ? $c : 0); exit }'
}
# A fake case's outcome from the server's first answer: its handshake (Linux did not take the
# fake), or the fatal unrecognized_name alert (Linux took it: said loudly, the capture is kept and
# its expectations follow the answer)
fake_outcome() { # CAPTURE WHAT
    local rec
    rec=$(field "$1" record)
    if [[ $(field "$1" record_type) == 16 ]]; then
        echo "gen-evasion: $1: s_server answered with its handshake: Linux did not take the fake ($2)" >&2
    elif [[ $rec =~ ^15030[1-3]00020270$ ]]; then
        echo "gen-evasion: WARNING: $1: s_server answered with unrecognized_name: Linux TOOK the" \
            "fake ($2); the capture is kept, its expectations follow the answer" >&2
    else
        die "$1: s_server answered neither a handshake nor unrecognized_name (first record $rec)"
    fi
}

if want evasion-first-last; then
    crafted evasion-first-last.pcap first-last:26 $WEB 42001
    [[ $(field evasion-first-last.pcap record_type) == 16 ]] || die "first-last: nginx did not answer with a handshake"
    [[ $(field evasion-first-last.pcap retransmitted) == False ]] || die "first-last: Linux did not take the segments in one go"
fi

if want evasion-reverse; then
    crafted evasion-reverse.pcap reverse:8 $WEB 42002
    [[ $(field evasion-reverse.pcap record_type) == 16 ]] || die "reverse: nginx did not answer with a handshake"
    if [[ $(field evasion-reverse.pcap retransmitted) != False ]]; then
        echo "gen-evasion: reverse: Linux did not take the reversed segments in one go (kept as it is)" >&2
    fi
fi

if want evasion-overlap-replace; then
    crafted evasion-overlap-replace.pcap overlap $STRICT 42003 $REAL $DECOY
    [[ $(field evasion-overlap-replace.pcap record_type) == 16 ]] \
        || die "overlap: s_server did not answer with a handshake (it did not receive $REAL)"
fi
if want evasion-overlap-replace-control; then
    crafted evasion-overlap-replace-control.pcap overlap-control $STRICT 42004 $REAL $DECOY
    # an alert record (0x15) of 2 bytes: fatal (2), unrecognized_name (112)
    [[ $(field evasion-overlap-replace-control.pcap record) =~ ^15030[1-3]00020270$ ]] \
        || die "overlap control: s_server did not answer with a fatal unrecognized_name alert"
fi

# --- DPI-evasion fakes: after the handshake, the decoy ClientHello at the real one's sequence
# number, then the real ClientHello; the server's answer says which it took
if want evasion-fake-ttl; then
    before=$(counter "$R" Icmp OutTimeExcds)
    crafted_routed evasion-fake-ttl.pcap fake-ttl:1 42021 $REAL $DECOY
    echo "gen-evasion: evasion-fake-ttl.pcap: the router sent" \
        "$(($(counter "$R" Icmp OutTimeExcds) - before)) ICMP time exceeded" >&2
    fake_outcome evasion-fake-ttl.pcap "TTL 1 through a router"
fi
if want evasion-fake-noack; then
    crafted evasion-fake-noack.pcap fake-noack $STRICT 42022 $REAL $DECOY
    fake_outcome evasion-fake-noack.pcap "flags PSH only"
fi
if want evasion-fake-md5; then
    before=$(counter "$S" TcpExt TCPMD5Unexpected)
    crafted evasion-fake-md5.pcap fake-md5 $STRICT 42023 $REAL $DECOY
    echo "gen-evasion: evasion-fake-md5.pcap: the server's TCPMD5Unexpected went up by" \
        "$(($(counter "$S" TcpExt TCPMD5Unexpected) - before))" >&2
    fake_outcome evasion-fake-md5.pcap "an MD5 signature the SYN had not"
fi

# --- HTTP requests after an empty line, from real sockets, to nginx on port 80
cat >"$WORK/http.py" <<'EOF'
"""Two HTTP connections to ADDRESS:80; prints how many responses nginx sent on each."""
import socket
import sys

CONNECTIONS = [
    # the first request of the connection, after an empty line
    b"\r\nGET / HTTP/1.1\r\nHost: activation-v2.kaspersky.com\r\nConnection: close\r\n\r\n",
    # keep-alive: a POST with a body, an empty line, then the next request
    b"POST /a HTTP/1.1\r\nHost: www.example.org\r\nContent-Length: 2\r\n\r\nhi"
    b"\r\nGET /b HTTP/1.1\r\nHost: dnl-02.geo.kaspersky.com\r\nConnection: close\r\n\r\n",
]
counts = []
for port, request in zip((42011, 42012), CONNECTIONS):
    s = socket.create_connection((sys.argv[1], 80), source_address=("", port), timeout=5)
    s.sendall(request)
    answer = b""
    while chunk := s.recv(4096):
        answer += chunk
    s.close()
    counts.append(answer.count(b"HTTP/1.1 200 "))
print(" ".join(map(str, counts)))
EOF
if want evasion-http-empty-line; then
    cap_start "$WORK/evasion-http-empty-line.pcap" "tcp port 80"
    HTTP_COUNTS=$(nsx "$C" timeout 20 "$PY" "$WORK/http.py" $WEB)
    cap_stop
    echo "gen-evasion: evasion-http-empty-line.pcap: 200 responses per connection: $HTTP_COUNTS" >&2
    [[ $HTTP_COUNTS == "1 2" ]] || die "nginx did not answer every request (want 1 2, got $HTTP_COUNTS)"
fi

for f in "${ONLY[@]}"; do
    cp "$WORK/$f.pcap" "$HERE/$f.pcap"
    chmod 644 "$HERE/$f.pcap"
done
echo "made: ${ONLY[*]}" >&2
