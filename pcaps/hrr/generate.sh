#!/usr/bin/env bash
# Makes pcaps/hrr/hrr.pcap: a TLS 1.3 handshake with a HelloRetryRequest, by real OpenSSL on
# loopback (tests/hrr.rs). The server accepts only P-256; the client offers a key share for X25519
# first, so the server answers with a HelloRetryRequest and the client sends a second ClientHello.
#   sudo bash pcaps/hrr/generate.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=$(mktemp -d /tmp/vw-hrr.XXXXXX)
PORT=18443
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=test" \
    -keyout "$WORK/k.pem" -out "$WORK/c.pem" 2>/dev/null
tcpdump -i lo -s 0 -U -w "$WORK/hrr.pcap" "tcp port $PORT" 2>/dev/null &
TD=$!
sleep 1
openssl s_server -accept 127.0.0.1:$PORT -cert "$WORK/c.pem" -key "$WORK/k.pem" -groups P-256 -tls1_3 -quiet >/dev/null 2>&1 &
sleep 1
echo Q | timeout 5 openssl s_client -connect 127.0.0.1:$PORT -servername dnl-01.geo.kaspersky.com \
    -groups X25519:P-256 -tls1_3 >/dev/null 2>&1 || true
sleep 1
kill -INT $TD; wait $TD 2>/dev/null || true
cp "$WORK/hrr.pcap" "$HERE/hrr.pcap"
echo "wrote $HERE/hrr.pcap" >&2
