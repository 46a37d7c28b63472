#!/usr/bin/env bash
# Makes pcaps/fingerprints/learn.pcap: real client stacks in network namespaces, for the
# fingerprint-learning test (tests/fingerprints.rs), and its expectation from tshark.
#
#   sudo bash pcaps/fingerprints/generate.sh
#
# Scenario (the plan the expectation checks the capture against):
#   srv 10.20.2.80  nginx (TLS 1.2/1.3, one self-signed certificate for every name), dnsmasq 10.20.2.53
#   h1-h3  the "vendor updater": gnutls-cli with its own priority string, to Kaspersky update and KSN
#          names (visible SNI, looked up through dnsmasq)                 -> learned from
#   h4     the same updater stack BEFORE anything was learned, by address only (no DNS, no SNI)
#   h5     the same updater stack after the learning, by address only    -> both suspected
#   h6     curl (OpenSSL) by address only, and Python ssl without SNI      -> never suspected
#   h7     headless Chromium (BoringSSL) by address only                  -> never suspected
#   every host: curl, Python ssl and (h6-h8) Chromium to vendor names and to other names, so the
#   common stacks are seen on vendor flows and elsewhere.
# Nothing leaves the machine: private addresses only, no default route.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=/usr/bin/python3
[[ $EUID -eq 0 ]] || { echo "run as root" >&2; exit 1; }
for c in nginx dnsmasq gnutls-cli curl chromium tcpdump tshark ethtool openssl; do
    command -v $c >/dev/null || { echo "missing $c (bash scripts/deps.sh test, plus nginx-light gnutls-bin)" >&2; exit 1; }
done
P=vwfp-
SW=${P}sw SRV=${P}srv
HOSTS=(h1 h2 h3 h4 h5 h6 h7 h8)
WORK=$(mktemp -d /tmp/vwfp.XXXXXX); chmod 755 "$WORK"
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
teardown() {
    set +e
    for ns in $SW $SRV "${HOSTS[@]/#/$P}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
        rm -rf "/etc/netns/$ns"
    done
}
trap 'rc=$?; teardown; rm -rf "$WORK"; exit $rc' EXIT
teardown
for ns in $SW $SRV "${HOSTS[@]/#/$P}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n $SW link add br0 type bridge stp_state 0 forward_delay 0
ip -n $SW link set br0 up
attach() { # NS PORT ADDR
    ip link add name eth0 netns "$1" type veth peer name "$2" netns $SW
    nsx "$1" ethtool -K eth0 tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
    nsx $SW ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
    nsx "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip -n $SW link set "$2" master br0; ip -n $SW link set "$2" up
    ip -n "$1" addr add "$3/16" dev eth0; ip -n "$1" link set eth0 up
}
attach $SRV p-srv 10.20.2.80
ip -n $SRV addr add 10.20.2.53/16 dev eth0
i=11
for h in "${HOSTS[@]}"; do
    attach "$P$h" "p-$h" "10.20.1.$i"
    mkdir -p "/etc/netns/$P$h"; echo "nameserver 10.20.2.53" >"/etc/netns/$P$h/resolv.conf"
    i=$((i + 1))
done

NAMES="dnl-01.geo.kaspersky.com dnl-02.geo.kaspersky.com ksn-file-geo.kaspersky-labs.com ds.kaspersky.com www.kaspersky.com www.example.org news.example.net intranet.example.com"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=vendorwatch test server" \
    -addext "subjectAltName=$(for n in $NAMES; do printf 'DNS:%s,' "$n"; done)IP:10.20.2.80" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
mkdir -p "$WORK/www"; echo ok >"$WORK/www/index.html"
cat >"$WORK/nginx.conf" <<NGINX
worker_processes 1; pid $WORK/nginx.pid; error_log $WORK/nginx.log;
events {}
http {
  access_log off;
  server { listen 10.20.2.80:443 ssl; ssl_protocols TLSv1.2 TLSv1.3;
           ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem; root $WORK/www; }
}
NGINX
nsx $SRV nginx -c "$WORK/nginx.conf"
ip netns exec $SRV dnsmasq --no-daemon --no-resolv --no-hosts --listen-address=10.20.2.53 --bind-interfaces \
    --address=/kaspersky.com/10.20.2.80 --address=/kaspersky-labs.com/10.20.2.80 \
    --address=/example.org/10.20.2.80 --address=/example.net/10.20.2.80 --address=/example.com/10.20.2.80 \
    >"$WORK/dnsmasq.log" 2>&1 &
sleep 1

ip netns exec $SW tcpdump -i p-srv -s 0 -U -w "$WORK/learn.pcap" 'not ether proto 0x86dd and not arp' >"$WORK/tcpdump.log" 2>&1 &
TCPDUMP=$!
sleep 1.5

# The updater: GnuTLS with a priority string of its own (TLS 1.2 only, a short cipher list).
UPDATER_PRIORITY='NONE:+VERS-TLS1.2:+AES-256-GCM:+AES-128-CBC:+ECDHE-RSA:+RSA:+SHA256:+SHA1:+AEAD:+COMP-NULL:+SIGN-ALL:+GROUP-SECP256R1:+GROUP-X25519:+CTYPE-X509'
updater() { # HOST TARGET [extra gnutls-cli flags]
    local h=$1 target=$2; shift 2
    printf 'GET / HTTP/1.0\r\n\r\n' | nsx "$P$h" timeout 10 gnutls-cli --insecure --logfile=/dev/null \
        --priority "$UPDATER_PRIORITY" "$@" -p 443 "$target" >/dev/null 2>&1 || true
}
curl_get() { nsx "$P$1" timeout 10 curl -sk -o /dev/null "https://$2/" || true; }
py_get() { # HOST HOST_OR_IP SNI(or "")
    nsx "$P$1" timeout 10 "$PY" - "$2" "$3" <<'PYEOF' || true
import socket, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection((sys.argv[1], 443), timeout=5) as s:
    with ctx.wrap_socket(s, server_hostname=sys.argv[2] or None) as t:
        t.sendall(b"GET / HTTP/1.0\r\n\r\n"); t.recv(100)
PYEOF
}
chrome_get() {
    local d; d=$(mktemp -d "$WORK/chrome.XXXX")
    nsx "$P$1" timeout 30 chromium --headless --no-sandbox --disable-gpu --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync --disable-quic \
        --ignore-certificate-errors --user-data-dir="$d" --dump-dom "https://$2/" >/dev/null 2>&1 || true
}

# h4: the updater by address only, before any host showed what the stack is.
updater h4 10.20.2.80 --disable-sni
sleep 0.5
# h1-h3: the updater with visible names (two check-ins each).
for h in h1 h2 h3; do
    updater $h dnl-01.geo.kaspersky.com
    updater $h ksn-file-geo.kaspersky-labs.com
done
# Common stacks everywhere: to vendor names (not from h4 and h5, whose only vendor software is
# the hidden updater) and to others.
for h in "${HOSTS[@]}"; do
    if [[ $h != h4 && $h != h5 ]]; then
        curl_get $h dnl-02.geo.kaspersky.com
        py_get $h ds.kaspersky.com ds.kaspersky.com
    fi
    curl_get $h www.example.org
    py_get $h news.example.net news.example.net
done
for h in h6 h7 h8; do
    chrome_get $h dnl-01.geo.kaspersky.com
    chrome_get $h intranet.example.com
done
# Hidden names: the updater by address (h5), common stacks by address (h6, h7).
updater h5 10.20.2.80 --disable-sni
curl_get h6 10.20.2.80
py_get h6 10.20.2.80 ""
chrome_get h7 10.20.2.80
sleep 1
kill -INT $TCPDUMP; wait $TCPDUMP 2>/dev/null || true
cp "$WORK/learn.pcap" "$HERE/learn.pcap"
"$PY" "$HERE/expected.py" "$HERE/learn.pcap" >"$HERE/learn.expected.json"
echo "wrote $HERE/learn.pcap and learn.expected.json" >&2
