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
# The second round, from the client's own sockets (stdlib Python; aioquic for QUIC):
#   evasion-record-version.pcap        curl's ClientHello (SNI dnl-01.geo.kaspersky.com) in a record
#                                      of version 0x03ff, then on a second connection 0x0300, each
#                                      to the strict s_server: it answers both with its handshake
#                                      (tshark does not read the 0x03ff record)
#   evasion-big-hello.pcap             curl's ClientHello with a padding extension that makes it
#                                      30,000 bytes, in two records (16,384 + the rest), to the
#                                      strict s_server: it answers with its handshake
#   evasion-hrr-decoy-real.pcap        TLS 1.3 HelloRetryRequest: curl's ClientHello (a key share
#                                      for X25519 only) with the SNI updates.example-corp.com, to an
#                                      `openssl s_server -groups P-256 -servername
#                                      dnl-01.geo.kaspersky.com` (not fatal: it logs each hello's
#                                      name); it answers with a HelloRetryRequest for P-256; then a
#                                      ChangeCipherSpec and the second hello (same random and
#                                      session ID, a P-256 key share) naming dnl-01.geo.kaspersky.com;
#                                      s_server logs both names, switches to its context for the
#                                      second and answers with its ServerHello
#   evasion-hrr-real-decoy.pcap        the same with the names swapped: dnl-01.geo.kaspersky.com in
#                                      the first hello, the decoy in the second; s_server logs both
#                                      and answers with its ServerHello
#   evasion-http-te-cl.pcap            request smuggling to nginx on port 80: a POST (Host
#                                      www.example.org) with both `Transfer-Encoding: chunked` and
#                                      a Content-Length that covers its whole body, `0` CRLF CRLF
#                                      and a second request `GET / HTTP/1.1` with Host
#                                      activation-v2.kaspersky.com; nginx answers 400 and closes:
#                                      its access log has the POST only
#   evasion-http-te-cl-control.pcap    the same bytes without the Content-Length header (chunked
#                                      alone frames the body): nginx answers both requests, its
#                                      access log has the GET with Host activation-v2.kaspersky.com
#   evasion-quic-decoy.pcap            QUIC v1, an aioquic client naming dnl-01.geo.kaspersky.com
#                                      to an aioquic server; before its first Initial, the same
#                                      Initial (same DCID, same packet number) with the SNI
#                                      replaced by updates.example-corp.com, re-encrypted, with a
#                                      wrong UDP checksum (from a raw socket): the server's kernel
#                                      drops it (its Udp InCsumErrors goes up); the server logs
#                                      only dnl-01.geo.kaspersky.com and completes the handshake
#                                      (tshark reads the decoy)
#   evasion-quic-retry.pcap            QUIC v1 to an aioquic server with retry=True: the client's
#                                      first Initial names updates.example-corp.com, the server
#                                      answers it with a Retry (it parses no hello before that);
#                                      the client's Initial after the Retry (DCID = the Retry's
#                                      SCID, its token) names dnl-01.geo.kaspersky.com, which the
#                                      server logs (the only name it logs) before completing the
#                                      handshake (tshark reads the decoy only)
#   evasion-quic-big-hello.pcap        QUIC v1, an aioquic client naming dnl-01.geo.kaspersky.com
#                                      with 150 extra ALPN entries of 200 bytes: its ClientHello
#                                      (about 31 KB) spans about 27 Initial packets, far more than
#                                      a sensor that gives up after 16 datagrams or 16 KiB reads;
#                                      the server logs the name and completes the handshake
#
# The third round, `sni-malformed`: curl's ClientHello with a server_name extension no TLS library
# sends, from the client's own sockets, to a plain `openssl s_server` (no -servername: whatever
# it answers comes from its parsing of the extension alone); it refuses each with a fatal alert,
# which the script checks and the expectations record (another server may take any of the names)
#   evasion-sni-two-extensions.pcap    two server_name extensions, one after the other: the first
#                                      naming the decoy www.example.org, the second
#                                      dnl-01.geo.kaspersky.com; s_server answers with a fatal
#                                      alert
#   evasion-sni-two-names.pcap         one server_name extension whose list has two host_name
#                                      entries, www.example.org, then dnl-01.geo.kaspersky.com;
#                                      s_server answers with a fatal alert
#   evasion-sni-nul.pcap               two connections, one host_name each with a NUL inside it:
#                                      `www.example.org\0dnl-01.geo.kaspersky.com` (a server in C
#                                      reads the decoy), then `dnl-01.geo.kaspersky.com\0.x`;
#                                      s_server answers each with a fatal alert (tshark shows each
#                                      name up to its NUL)
#   evasion-sni-trailing.pcap          one host_name dnl-01.geo.kaspersky.com, then 2 zero bytes in
#                                      the extension past its list; s_server answers with a fatal
#                                      alert
#
# The fourth round, `round4`: techniques of DPI-circumvention tools (fakes the server's kernel drops
# without answering them, sequence overlaps, TLS record and IP fragmentation), each to the strict
# s_server, which answers every connection with its handshake (it received dnl-01.geo.kaspersky.com);
# several connections a capture, from the raw sender (10.40.1.12) unless said otherwise
#   evasion-rst.pcap                   two connections, each with a RST from the client after the
#                                      handshake, then the real ClientHello: a RST 1000 bytes past
#                                      the next expected sequence number (in the window, not exact:
#                                      Linux answers with a challenge ACK, RFC 5961, and goes on), and
#                                      a RST at the exact sequence number with a wrong TCP checksum
#                                      (the server's TcpInCsumErrors goes up)
#   evasion-rst-ttl.pcap               a RST at the exact sequence number with TTL 1, through the
#                                      router (ICMP time exceeded), then the real ClientHello; taken
#                                      on the router's client-facing interface from 10.41.1.12
#   evasion-badseq.pcap                two connections, each with a decoy ClientHello (the SNI
#                                      replaced by updates.example-corp.com) far outside the receive
#                                      window, 100,000 bytes before the next expected sequence number
#                                      and 1,000,000 past it (the server answers each with a duplicate
#                                      ACK), then the real ClientHello
#   evasion-seqovl.pcap                two connections, each with the real ClientHello in one segment
#                                      that starts before the next expected byte, overlapping the SYN's
#                                      sequence number (the server trims what it already had): the
#                                      whole decoy ClientHello then the real one, and one byte (0x16)
#                                      then the real one
#   evasion-ip-fragments.pcap          three connections: the ClientHello's IPv4 datagram in 8
#                                      fragments in order, the same in reverse order, and fragments
#                                      of which the second (from the decoy's datagram) partially
#                                      overlaps the first (Linux drops the whole datagram: the
#                                      server's ReasmOverlaps goes up) and the client then sends the
#                                      real ClientHello again unfragmented
#   evasion-tls-records.pcap           from the client's own socket, two connections: the
#                                      ClientHello cut into two TLS records inside the SNI (after
#                                      `dnl-01.geo.k`), and into records of 5 bytes of handshake each
#
# Its second set, `round4b`: cases of the fourth review where Linux reads the segments otherwise
# than a reader of the plain bytes would; one connection each from the raw sender (10.40.1.12) to
# the strict s_server, whose answer says which name it received
#   evasion-urgent.pcap                the real ClientHello with one byte 'X' inserted in the SNI
#                                      (dnl-01.geo.kaspersky.cXom on the wire), flags URG, the
#                                      urgent pointer at that byte (BSD semantics, Linux's default:
#                                      the byte at seq+pointer-1): the server's socket reads it out
#                                      of band, acks all 518 bytes and answers with its handshake
#                                      (it received dnl-01.geo.kaspersky.com; tshark reads
#                                      dnl-01.geo.kaspersky.cXo)
#   evasion-urgent-reverse.pcap        a ClientHello naming nl-01.geo.kaspersky.comz with an urgent
#                                      byte 'd' inserted before the name, so that the bytes on the
#                                      wire read dnl-01.geo.kaspersky.com: the server answers with
#                                      the fatal unrecognized_name alert (it received the name
#                                      without the urgent byte)
#   evasion-paws.pcap                  timestamps on every segment; the decoy ClientHello
#                                      (updates.example-corp.com) at the next expected sequence
#                                      number with a TSval 1000 below the last one, then the real
#                                      ClientHello: the server drops the decoy by PAWS (its TcpExt
#                                      PAWSEstab goes up) and answers with its handshake (tshark
#                                      reads the decoy)
#   evasion-frag-inside-real.pcap      the real ClientHello's IPv4 datagram in fragments [0,200),
#                                      then a fragment lying wholly inside the first, at the SNI,
#                                      carrying the decoy's bytes, then [200,400) [400,end): Linux
#                                      drops only that fragment as a duplicate, keeps the bytes it
#                                      had first and reassembles the datagram (Ip ReasmOKs +1,
#                                      IpExt ReasmOverlaps +0); the server answers with its handshake
#   evasion-frag-inside-decoy.pcap     the same on the decoy's datagram ([0,200) [200,400), then
#                                      [192,216) with the same bytes, [400,end)), then the real
#                                      ClientHello unfragmented at the same sequence number: the
#                                      server reassembled the decoy and answers with the fatal
#                                      unrecognized_name alert (it received updates.example-corp.com;
#                                      the real hello came as a retransmission of bytes it had)
#
# The fifth set, `dup`: a fake that a SPAN-duplicate filter would take for the real segment's
# earlier copy. A mirror's two copies of one packet differ at most in the TTL (a copy from the other
# side of a router) and so the IPv4 header checksum; a sensor that drops the second copy by a hash
# of the IP packet's first bytes (or of anything less than all of it) can be made to drop the real
# segment: the fake is byte for byte the real one up to past the headers (same IP ID, same
# transport checksum field), differs in the name further on, and comes first, just before it
#   evasion-dup-fake-csum.pcap         the decoy ClientHello at the real one's sequence number with
#                                      the real segment's TCP checksum (wrong for the decoy's bytes),
#                                      then the real one, to the strict s_server: its kernel drops
#                                      the fake (Tcp InCsumErrors +1) and answers with its handshake
#   evasion-dup-fake-ttl.pcap          the same through the router with TTL 1, the decoy's key
#                                      share changed in two bytes so that its TCP checksum is right
#                                      and the real segment's: the router drops it (ICMP time
#                                      exceeded, not captured); taken on the router's client-facing
#                                      interface from 10.41.1.12
#   evasion-dup-quic-decoy.pcap        evasion-quic-decoy.pcap's decoy Initial sent as the real
#                                      one's twin: the same IPv4 header (ID, flags, TTL) and the real
#                                      datagram's UDP checksum (wrong for the decoy), both from a raw
#                                      socket, the decoy first; the server's kernel drops the decoy
#                                      (Udp InCsumErrors +1) and the server logs only the real name
#
# The sixth set, `dnsport`: a client that binds a DNS port as its own source port (any process
# may bind 5353 or, as root, 53) and talks TLS or QUIC to port 443, so that a sensor deciding DNS
# by either port reads its hello as a DNS message
#   evasion-dnsport-tls.pcap           curl from local port 53, then from 5353, to nginx on 443
#                                      (SNI dnl-01.geo.kaspersky.com, then s07.upd.kaspersky.com);
#                                      nginx answers both requests
#   evasion-dnsport-quic.pcap          aioquic from local port 5353 naming dnl-01.geo.kaspersky.com;
#                                      the server logs the name and completes the handshake
#
# And `evasion-rst-syn.pcap` (by name): two connections from the raw sender to the strict s_server;
# after the handshake a RST 1000 bytes past the next expected sequence number, and on the second a
# FIN 1000 bytes past it, each followed by a SYN with another ISN (Linux answers the RST and each
# SYN with a challenge ACK, queues the FIN out of order, and goes on), then the real ClientHello:
# s_server answers both with its handshake; and `evasion-presyn.pcap`: the decoy ClientHello at the
# sequence number of the connection's first byte, sent before the SYN with a wrong TCP checksum (the
# server's kernel drops it silently: Tcp InCsumErrors +1), then the handshake and the real
# ClientHello, which s_server answers with its handshake
#
# The seventh set, `ack`: segments whose acknowledgment number the server refuses, before it has
# sent anything but its SYN-ACK (the client can acknowledge exactly the byte after it)
#   evasion-fake-ack-unsent.pcap       the fake (decoy ClientHello at the real one's sequence number,
#                                      TTL 64, PSH ACK) acknowledging 100,000 bytes the server never
#                                      sent (RFC 9293: every TCP discards it), then the real
#                                      ClientHello, to the strict s_server: it answers with its
#                                      handshake
#   evasion-fake-ack-old.pcap          the same fake acknowledging 1,000 bytes before the SYN-ACK's
#                                      (Linux: too old, RFC 5961 §5.2; TcpExt TCPChallengeACK +1):
#                                      s_server answers with its handshake
#   evasion-syn-data.pcap              the decoy ClientHello as data on the SYN (no Fast Open cookie:
#                                      Linux acknowledges the SYN alone and drops the data), then
#                                      the real ClientHello at the first byte: s_server answers with
#                                      its handshake
#   evasion-ttl-raised-syn.pcap        the client's own socket (Python ssl) with IP_TTL 255 for the
#                                      SYN and the handshake's ACK, then 64 for the ClientHello (no
#                                      privilege needed): every later segment arrives 191 below the
#                                      SYN's TTL, as a decoy that expires on the way would, yet
#                                      reaches the strict s_server, which completes the handshake
#   evasion-paws-ack.pcap              timestamps on every segment; after the handshake a bare ACK
#                                      acknowledging 100,000 bytes never sent, with a TSval 1,000,000
#                                      ahead, then the real ClientHello: Linux discards the ACK before
#                                      taking its timestamp, so the real hello is not PAWS-old
#                                      (TcpExt PAWSEstab +0); s_server answers with its handshake
#   evasion-pre-synack.pcap            the fake (decoy ClientHello at the first byte, PSH ACK with an
#                                      acknowledgment number guessed before any answer) sent right
#                                      after the SYN, before the tap shows the SYN-ACK (the server's
#                                      first SYN-ACK is dropped by an nftables rule in its namespace,
#                                      before the tap, as a far server's would be on its way, and
#                                      it sends it again a second later); the server, in SYN-RECV,
#                                      refuses the fake with a RST at its acknowledgment number (RFC
#                                      9293 §3.10.7.3); then the real ClientHello after the
#                                      handshake: s_server answers with its handshake
#   evasion-pre-synack-late.pcap       through the router: a first SYN and the same fake, both with
#                                      TTL 1 (they expire at the router, past the tap: the server
#                                      sees neither and says nothing), 9 s of silence (longer than a
#                                      sensor waits for an answer to data sent ahead of it), then
#                                      the SYN again with TTL 64 (same ISN), the handshake, and the
#                                      real ClientHello at the fake's sequence number: s_server
#                                      answers with its handshake
#
#   sudo bash pcaps/gen-evasion.sh       (then: python3 pcaps/expected_evasion.py --write)
#   sudo bash pcaps/gen-evasion.sh --only fakes
#   sudo bash pcaps/gen-evasion.sh --only evasion-fake-md5,evasion-reverse
#                                        make (and copy into pcaps/) only the captures named, by name
#                                        with or without .pcap, comma-separated; `fakes` stands for
#                                        the three evasion-fake-* captures, `hrr`, `http-te-cl` and
#                                        `quic` for the two evasion-hrr-*, evasion-http-te-cl* and
#                                        evasion-quic-* captures, `round2` for all eight of the
#                                        second round, `sni-malformed` for the four evasion-sni-*
#                                        captures, `round4` for the six of the fourth round, `round4b`
#                                        for the five of its second set, `dup` for the three
#                                        evasion-dup-* captures, `dnsport` for the two
#                                        evasion-dnsport-* captures, `ack` for the six of the
#                                        seventh set. The others stay as they are. If a fake case's server answers with the alert instead
#                                        (Linux took the fake), the script says so and keeps it: the
#                                        expectations follow the server's answer.
#
# The crafted segments are sent by scapy from a raw (packet) socket in the client namespace, from
# 10.40.1.12, an address the client's kernel does not own: the server reaches it through a static
# neighbour entry (the client's MAC), and the client kernel drops the server's answers silently
# instead of resetting a connection it never opened. scapy comes from PyPI, pinned, in a venv of
# its own outside the repository (/var/cache/vwp-pcaps/scapy-2.5.0; VWP_SCAPY_VENV changes it),
# installed the first time. aioquic (the QUIC client and server) likewise, pinned with its
# dependencies, in /var/cache/vwp-pcaps/aioquic-1.2.0 (VWP_AIOQUIC_VENV changes it), installed the
# first time a QUIC capture is made. The script fails loudly when a server does not answer as its
# case says (its answer in the capture, its log, its kernel's counters). Nothing leaves the
# machine: three namespaces (client, router, server), three veth pairs (client-server direct;
# client-router-server for evasion-fake-ttl.pcap), private addresses, no default route.
set -euo pipefail

ROUND2=(evasion-record-version evasion-big-hello evasion-hrr-decoy-real evasion-hrr-real-decoy
        evasion-http-te-cl evasion-http-te-cl-control evasion-quic-decoy evasion-quic-retry
        evasion-quic-big-hello)
SNI_MALFORMED=(evasion-sni-two-extensions evasion-sni-two-names evasion-sni-nul evasion-sni-trailing)
ROUND4=(evasion-rst evasion-rst-ttl evasion-badseq evasion-seqovl evasion-ip-fragments evasion-tls-records)
ROUND4B=(evasion-urgent evasion-urgent-reverse evasion-paws evasion-frag-inside-real evasion-frag-inside-decoy)
DUP=(evasion-dup-fake-csum evasion-dup-fake-ttl evasion-dup-quic-decoy)
DNSPORT=(evasion-dnsport-tls evasion-dnsport-quic)
CLOSE=(evasion-rst-syn evasion-presyn)
ACK=(evasion-fake-ack-unsent evasion-fake-ack-old evasion-syn-data evasion-paws-ack
     evasion-ttl-raised-syn evasion-pre-synack evasion-pre-synack-late)
ALL=(evasion-first-last evasion-reverse evasion-overlap-replace evasion-overlap-replace-control
     evasion-http-empty-line evasion-fake-ttl evasion-fake-noack evasion-fake-md5 "${ROUND2[@]}"
     "${SNI_MALFORMED[@]}" "${ROUND4[@]}" "${ROUND4B[@]}" "${DUP[@]}" "${DNSPORT[@]}" "${CLOSE[@]}"
     "${ACK[@]}")
declare -A SETS=(
    [fakes]="evasion-fake-ttl evasion-fake-noack evasion-fake-md5"
    [hrr]="evasion-hrr-decoy-real evasion-hrr-real-decoy"
    [http-te-cl]="evasion-http-te-cl evasion-http-te-cl-control"
    [quic]="evasion-quic-decoy evasion-quic-retry evasion-quic-big-hello"
    [round2]="${ROUND2[*]}"
    [sni-malformed]="${SNI_MALFORMED[*]}"
    [round4]="${ROUND4[*]}"
    [round4b]="${ROUND4B[*]}"
    [dup]="${DUP[*]}"
    [dnsport]="${DNSPORT[*]}"
    [ack]="${ACK[*]}"
)
USAGE="usage: gen-evasion.sh [--only NAME[,NAME...]] (NAME: a capture or ${!SETS[*]})"
ONLY=("${ALL[@]}")
if [[ ${1:-} == --only ]]; then
    [[ -n ${2:-} ]] || { echo "$USAGE" >&2; exit 2; }
    ONLY=()
    IFS=, read -ra names <<<"$2"
    for n in "${names[@]}"; do
        n=${n%.pcap}
        if [[ -n ${SETS[$n]:-} ]]; then
            read -ra group <<<"${SETS[$n]}"
            ONLY+=("${group[@]}")
        elif [[ " ${ALL[*]} " == *" $n "* ]]; then
            ONLY+=("$n")
        else
            echo "gen-evasion: no capture $n (have: ${ALL[*]}; groups: ${!SETS[*]})" >&2
            exit 2
        fi
    done
    shift 2
fi
(($# == 0)) || { echo "$USAGE" >&2; exit 2; }
want() { [[ " ${ONLY[*]} " == *" $1 "* ]]; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=/usr/bin/python3
SCAPY_VERSION=2.5.0
SCAPY_VENV=${VWP_SCAPY_VENV:-/var/cache/vwp-pcaps/scapy-$SCAPY_VERSION}
SCAPY_PY=$SCAPY_VENV/bin/python
[[ $EUID -eq 0 ]] || { echo "run as root" >&2; exit 1; }
die() { echo "gen-evasion: $*" >&2; exit 1; }

missing=()
for tool in nginx:nginx-light openssl:openssl curl:curl tcpdump:tcpdump ethtool:ethtool ip:iproute2 nft:nftables; do
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
AIOQUIC_VERSION=1.2.0
AIOQUIC_VENV=${VWP_AIOQUIC_VENV:-/var/cache/vwp-pcaps/aioquic-$AIOQUIC_VERSION}
AIOQUIC_PY=$AIOQUIC_VENV/bin/python
# aioquic and everything it pulls in, pinned
AIOQUIC_PINS=(aioquic==$AIOQUIC_VERSION attrs==26.1.0 certifi==2026.10.19.post1 cffi==2.1.1
              cryptography==50.0.2 pycparser==3.12 pylsqpack==0.3.24 pyOpenSSL==26.4.0
              service-identity==26.1.0 typing_extensions==4.16.0)
QUIC_WANTED=$(want evasion-quic-decoy || want evasion-quic-retry || want evasion-quic-big-hello \
    || want evasion-dup-quic-decoy || want evasion-dnsport-quic \
    && echo yes || true)
if [[ -n $QUIC_WANTED ]] &&
    ! "$AIOQUIC_PY" -c "import aioquic, sys; sys.exit(aioquic.__version__ != '$AIOQUIC_VERSION')" 2>/dev/null; then
    echo "gen-evasion: installing aioquic $AIOQUIC_VERSION into $AIOQUIC_VENV" >&2
    rm -rf "$AIOQUIC_VENV"
    "$PY" -m venv "$AIOQUIC_VENV"
    "$AIOQUIC_VENV/bin/pip" install --quiet --disable-pip-version-check "${AIOQUIC_PINS[@]}"
fi

C=ev$$c S=ev$$s R=ev$$r
CLIENT=10.40.1.11 CRAFTED=10.40.1.12 WEB=10.40.2.80 STRICT=10.40.2.81
# the second round's servers: s_server for P-256 only (HelloRetryRequest), aioquic, aioquic with
# retry
HRR_S=10.40.2.82 QUIC_S=10.40.2.83 QUIC_RETRY_S=10.40.2.84
# the third round's: a plain s_server (no -servername)
PLAIN_S=10.40.2.85
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
for a in $HRR_S $QUIC_S $QUIC_RETRY_S $PLAIN_S; do nsx "$S" ip addr add $a/16 dev veth-s; done
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
    log_format vwp '\$remote_addr:\$remote_port \$status "\$request" host=\$host';
    access_log $WORK/nginx/logs/access.log vwp;
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
# Only P-256 for key exchange: a hello with a key share for X25519 only gets a HelloRetryRequest.
# Not fatal on other names: with -debug it logs the name of each hello it reads ("Hostname in TLS
# extension") and "Switching server context." after each that names REAL.
ip netns exec "$S" openssl s_server -accept $HRR_S:443 -www -cert "$WORK/cert.pem" -key "$WORK/key.pem" \
    -cert2 "$WORK/cert.pem" -key2 "$WORK/key.pem" -servername $REAL -groups P-256 -debug \
    >"$WORK/s_server-hrr.log" 2>&1 &
PIDS+=($!)
# No -servername (no server name callback): a hello it refuses is refused for its own bytes. It
# logs the reason of each failed handshake (OpenSSL's error queue).
ip netns exec "$S" openssl s_server -accept $PLAIN_S:443 -www -cert "$WORK/cert.pem" -key "$WORK/key.pem" \
    >"$WORK/s_server-plain.log" 2>&1 &
PIDS+=($!)
# QUIC: aioquic servers that print the server name of each ClientHello they parse
cat >"$WORK/qserver.py" <<'EOF'
"""aioquic server on ADDRESS:443 (UDP) that prints "SNI name" for each ClientHello it parses.

    qserver.py ADDRESS CERT KEY [retry]      retry: answer Initials without a token with a Retry
"""
import asyncio
import sys

import aioquic.tls
from aioquic.asyncio import serve
from aioquic.quic.configuration import QuicConfiguration

pull_client_hello = aioquic.tls.pull_client_hello


def logged(buf):
    hello = pull_client_hello(buf)
    print("SNI", hello.server_name, flush=True)
    return hello


aioquic.tls.pull_client_hello = logged


async def main(address, cert, key, retry=""):
    config = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
    config.load_cert_chain(cert, key)
    await serve(address, 443, configuration=config, retry=retry == "retry")
    print("listening", flush=True)
    await asyncio.Future()


asyncio.run(main(*sys.argv[1:]))
EOF
if [[ -n $QUIC_WANTED ]]; then
    ip netns exec "$S" "$AIOQUIC_PY" "$WORK/qserver.py" $QUIC_S "$WORK/cert.pem" "$WORK/key.pem" \
        >"$WORK/qserver.log" 2>&1 &
    PIDS+=($!)
    ip netns exec "$S" "$AIOQUIC_PY" "$WORK/qserver.py" $QUIC_RETRY_S "$WORK/cert.pem" "$WORK/key.pem" retry \
        >"$WORK/qserver-retry.log" 2>&1 &
    PIDS+=($!)
fi
listening() { # tcp|udp ADDRESS:PORT
    nsx "$S" ss -Hnl --"$1" | grep -q "$2 "
}
for _ in $(seq 50); do
    listening tcp "$WEB:443" && listening tcp "$WEB:80" && listening tcp "$STRICT:443" \
        && listening tcp "$STRICT_R:443" && listening tcp "$HRR_S:443" && listening tcp "$PLAIN_S:443" \
        && { [[ -z $QUIC_WANTED ]] || { listening udp "$QUIC_S:443" && listening udp "$QUIC_RETRY_S:443"; }; } \
        && break
    sleep 0.2
done
listening tcp "$WEB:443" || die "nginx did not start: $(cat "$WORK/nginx/logs/error.log")"
listening tcp "$STRICT:443" || die "servers did not start: $(cat "$WORK/s_server.log")"
listening tcp "$STRICT_R:443" || die "servers did not start: $(cat "$WORK/s_server-routed.log")"
listening tcp "$HRR_S:443" || die "servers did not start: $(cat "$WORK/s_server-hrr.log")"
listening tcp "$PLAIN_S:443" || die "servers did not start: $(cat "$WORK/s_server-plain.log")"
if [[ -n $QUIC_WANTED ]]; then
    listening udp "$QUIC_S:443" || die "aioquic did not start: $(cat "$WORK/qserver.log")"
    listening udp "$QUIC_RETRY_S:443" || die "aioquic did not start: $(cat "$WORK/qserver-retry.log")"
fi

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
MODE fake-dup-csum  the fake as the real segment's twin: TTL 64, the real segment's TCP checksum
                    (wrong for the fake's bytes), sent right before the real one (no pause)
MODE fake-dup-ttl:N the fake with TTL N, two bytes of its key share changed so that its TCP
                    checksum is right and the real segment's, sent right before the real one
MODE fake-ack-unsent
                    the fake with TTL 64, flags PSH ACK, acknowledging 100,000 bytes past the
                    SYN-ACK (bytes the server never sent)
MODE fake-ack-old   the same acknowledging 1,000 bytes before the SYN-ACK's sequence number

IFACE is the interface the raw socket sends on (veth-c unless given); SERVER_MAC is the next hop's.

After the segments the client waits for the server's answer. If none comes (the server acked
less than the whole hello), it sends what the server has not acked in order, as a TCP sender does
after a timeout, and says so ("retransmitted"). It then acks the answer and resets the connection.
"""
import json
import select
import struct
import sys
import time

from scapy.all import IP, TCP, Ether, Raw, conf

conf.verb = 0
mode, hello_file, src, dst, sport, cmac, smac = sys.argv[1:8]
sport = int(sport)
hello = open(hello_file, "rb").read()
ISN = 1000
STEP = int(mode.split(":")[1]) if ":" in mode else 100  # segment size of a retransmission



def ones_sum(data):
    """The 16-bit one's-complement sum of DATA (RFC 1071), folded."""
    data += b"\0" * (len(data) % 2)
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def key_share(h):
    """The offset in ClientHello record H of its first key share's key exchange bytes."""
    at = 5 + 4 + 2 + 32
    at += 1 + h[at]
    at += 2 + int.from_bytes(h[at:at + 2], "big")
    at += 1 + h[at]
    end = at + 2 + int.from_bytes(h[at:at + 2], "big")
    at += 2
    while at + 4 <= end:
        kind, size = int.from_bytes(h[at:at + 2], "big"), int.from_bytes(h[at + 2:at + 4], "big")
        if kind == 0x33:
            return at + 4 + 2 + 4
        at += 4 + size
    sys.exit("no key_share in the hello")


def balanced(decoy, real):
    """DECOY with one 16-bit word of its first key share changed so that its one's-complement
    sum is REAL's: a segment carrying it has the real segment's TCP checksum, and a right one."""
    start = key_share(decoy)
    start += start % 2  # a word of the TCP payload
    want = ones_sum(real)
    for at in range(start, start + 30, 2):
        b = bytearray(decoy)
        word = int.from_bytes(b[at:at + 2], "big")
        diff = (want - ones_sum(decoy)) % 0xFFFF
        new = word + diff
        new = (new & 0xFFFF) + (new >> 16)
        b[at:at + 2] = new.to_bytes(2, "big")
        if ones_sum(bytes(b)) == want:
            return bytes(b)
    sys.exit("could not balance the decoy's checksum")


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
    elif mode == "fake-dup-csum":
        fake = {"flags": "PA", "data": decoy, "twin": True}
    elif mode in ("fake-ack-unsent", "fake-ack-old"):
        fake = {"flags": "PA", "data": decoy, "ack": 100000 if mode == "fake-ack-unsent" else -1000}
    elif mode.startswith("fake-dup-ttl:"):
        fake = {"flags": "PA", "ttl": int(mode.split(":")[1]), "data": balanced(decoy, hello),
                "twin": True}
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


def frame(flags, seq, ack=0, data=b"", ttl=64, options=None, chksum=None):
    tcp = TCP(sport=sport, dport=443, flags=flags, seq=seq, ack=ack, window=64240, chksum=chksum)
    if flags == "S":
        tcp.options = [("MSS", 1460)]
    if options:
        tcp.options = options
    pkt = eth / IP(src=src, dst=dst, ttl=ttl) / tcp  # IP ID 1, scapy's default, on every one
    return pkt / Raw(data) if data else pkt


def segment(*args, **kwargs):
    sock.send(frame(*args, **kwargs))


def tcp_checksum(pkt):
    """The TCP checksum scapy fills in for PKT."""
    return Ether(bytes(pkt))[TCP].chksum


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
if fake and fake.get("twin"):
    # The real segment's checksum on the fake: right for the fake's bytes only when `balanced`
    # made them sum alike. No pause: the fake is the real segment's copy of a moment before.
    real_sum = tcp_checksum(frame("PA", ISN + 1, sack, hello))
    fake_frame = frame("PA", ISN + 1, sack, fake["data"], fake.get("ttl", 64), chksum=real_sum)
    right = tcp_checksum(frame("PA", ISN + 1, sack, fake["data"], fake.get("ttl", 64))) == real_sum
    print(f"fake: TCP checksum {real_sum:#06x}, {'right' if right else 'wrong'} for its bytes",
          file=sys.stderr)
    sock.send(fake_frame)
elif fake:
    segment(fake["flags"], ISN + 1, (sack + fake.get("ack", 0)) % 2**32, fake["data"],
            fake.get("ttl", 64), fake.get("options"))
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
# --- acknowledgment numbers the server refuses (the `ack` set)
if want evasion-fake-ack-unsent; then
    crafted evasion-fake-ack-unsent.pcap fake-ack-unsent $STRICT 42027 $REAL $DECOY
    fake_outcome evasion-fake-ack-unsent.pcap "an acknowledgment of bytes never sent"
fi
if want evasion-fake-ack-old; then
    before=$(counter "$S" TcpExt TCPChallengeACK)
    crafted evasion-fake-ack-old.pcap fake-ack-old $STRICT 42028 $REAL $DECOY
    echo "gen-evasion: evasion-fake-ack-old.pcap: the server's TcpExt TCPChallengeACK went up by" \
        "$(($(counter "$S" TcpExt TCPChallengeACK) - before))" >&2
    fake_outcome evasion-fake-ack-old.pcap "an acknowledgment older than the SYN-ACK"
fi
# --- TLS from a DNS port (the `dnsport` set): curl binds the port; nginx serves any name
if want evasion-dnsport-tls; then
    cap_start "$WORK/evasion-dnsport-tls.pcap" "tcp and host $CLIENT"
    for pair in 53:$REAL 5353:s07.upd.kaspersky.com; do
        code=$(nsx "$C" timeout 20 curl -sk -o /dev/null -w '%{http_code}' --local-port "${pair%%:*}" \
            --resolve "${pair#*:}:443:$WEB" "https://${pair#*:}/") || die "curl from port ${pair%%:*} failed"
        echo "gen-evasion: evasion-dnsport-tls.pcap: from port ${pair%%:*}, nginx answered $code" >&2
        [[ $code == 200 ]] || die "evasion-dnsport-tls.pcap: nginx answered $code, not 200"
    done
    cap_stop
fi

# --- the fakes as twins of the real segment (the `dup` set)
if want evasion-dup-fake-csum; then
    csum=$(counter "$S" Tcp InCsumErrors)
    crafted evasion-dup-fake-csum.pcap fake-dup-csum $STRICT 42024 $REAL $DECOY
    csum=$(($(counter "$S" Tcp InCsumErrors) - csum))
    echo "gen-evasion: evasion-dup-fake-csum.pcap: the server's Tcp InCsumErrors went up by $csum" >&2
    ((csum == 1)) || die "evasion-dup-fake-csum.pcap: the server's kernel did not drop the fake for its checksum"
    fake_outcome evasion-dup-fake-csum.pcap "the real segment's checksum on the fake's bytes"
fi
if want evasion-dup-fake-ttl; then
    before=$(counter "$R" Icmp OutTimeExcds)
    crafted_routed evasion-dup-fake-ttl.pcap fake-dup-ttl:1 42025 $REAL $DECOY
    sent=$(($(counter "$R" Icmp OutTimeExcds) - before))
    echo "gen-evasion: evasion-dup-fake-ttl.pcap: the router sent $sent ICMP time exceeded" >&2
    ((sent == 1)) || die "evasion-dup-fake-ttl.pcap: the router did not drop the fake for its TTL"
    fake_outcome evasion-dup-fake-ttl.pcap "TTL 1 through a router"
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

# --- the second round: the client's own sockets (its kernel's TCP), real servers
cat >"$WORK/tls.py" <<'EOF'
"""A TLS client from curl's ClientHello (the file HELLO, one record): one connection to DST:443
from SPORT whose hello is changed as MODE says; prints the server's records as JSON.

    tls.py MODE HELLO DST SPORT [ARG...]

MODE record-version VER    the hello in one record of version VER (hex: 03ff)
MODE big SIZE              a padding extension (21, zeros) that makes the handshake message SIZE
                           bytes, in records of at most 16,384 bytes of it
MODE hrr NAME1 NAME2       the hello (a key share for X25519 only) naming NAME1; after the server's
                           HelloRetryRequest, a ChangeCipherSpec and the second hello: the same
                           random, session ID and extensions but a P-256 key share and NAME2
MODE sni SHAPE NAME ARG     the hello with a server_name extension no TLS library sends:
                           SHAPE two-extensions: one naming NAME, a second right after it naming
                           ARG; two-names: one extension, its list with the host_names NAME and
                           ARG; nul: one host_name, NAME, a NUL byte, ARG; trailing: one host_name
                           NAME, then the bytes ARG (hex) in the extension past the list

Each record the server sent is reported as "handshake:TYPE" (":hrr" added for a ServerHello
with the HelloRetryRequest random), "alert:LEVEL:DESCRIPTION", "change_cipher_spec" or
"application_data"; the JSON has the answer to the first flight ("first") and, for hrr, to the
second ("second").
"""
import json
import socket
import sys
import time

mode, hello_file, dst, sport = sys.argv[1:5]
args = sys.argv[5:]
record = open(hello_file, "rb").read()
HRR = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
# The P-256 base point (uncompressed): a valid public key
P256_G = bytes.fromhex(
    "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
    "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")


def u16(n):
    return n.to_bytes(2, "big")


def parse_hello(rec):
    """(the hello's body up to its extensions, [(type, data)]) of a one-record ClientHello."""
    assert rec[0] == 0x16 and rec[5] == 1 and len(rec) == 5 + int.from_bytes(rec[3:5], "big")
    body = rec[9:]
    assert len(body) == int.from_bytes(rec[6:9], "big")
    p = 34
    p += 1 + body[p]  # session ID
    p += 2 + int.from_bytes(body[p:p + 2], "big")  # cipher suites
    p += 1 + body[p]  # compression methods
    head, end = body[:p], p + 2 + int.from_bytes(body[p:p + 2], "big")
    assert end == len(body), "bytes after the extensions"
    exts, p = [], p + 2
    while p < end:
        t, n = int.from_bytes(body[p:p + 2], "big"), int.from_bytes(body[p + 2:p + 4], "big")
        exts.append((t, body[p + 4:p + 4 + n]))
        p += 4 + n
    return head, exts


def message(head, exts):
    e = b"".join(u16(t) + u16(len(d)) + d for t, d in exts)
    body = head + u16(len(e)) + e
    return b"\x01" + len(body).to_bytes(3, "big") + body


def records(msg, version=b"\x03\x01", size=16384):
    return b"".join(b"\x16" + version + u16(len(msg[i:i + size])) + msg[i:i + size]
                    for i in range(0, len(msg), size))


def with_ext(exts, t, data):
    assert any(x == t for x, _ in exts), f"no extension {t}"
    return [(x, data if x == t else d) for x, d in exts]


def sni(name):
    n = name.encode()
    return u16(len(n) + 3) + b"\x00" + u16(len(n)) + n


def summary(rec_type, body):
    if rec_type == 22:
        s = f"handshake:{body[0]}"
        return s + ":hrr" if body[0] == 2 and body[6:38] == HRR else s
    if rec_type == 21:
        return f"alert:{body[0]}:{body[1]}"
    return {20: "change_cipher_spec", 23: "application_data"}.get(rec_type, f"type:{rec_type}")


class Server:
    def __init__(self):
        self.sock = socket.create_connection((dst, 443), source_address=("", int(sport)), timeout=5)
        self.buf = b""

    def records(self, until=None, idle=1.0):
        """The server's records until one whose summary starts with UNTIL, or IDLE seconds
        without any, or the end of the connection."""
        got = []
        self.sock.settimeout(idle)
        while True:
            while len(self.buf) >= 5 and len(self.buf) >= 5 + int.from_bytes(self.buf[3:5], "big"):
                n = 5 + int.from_bytes(self.buf[3:5], "big")
                got.append(summary(self.buf[0], self.buf[5:n]))
                self.buf = self.buf[n:]
                if until and got[-1].startswith(until):
                    return got
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return got
            if not data:
                return got
            self.buf += data


head, exts = parse_hello(record)
server = Server()
report = {}
if mode == "record-version":
    version = bytes.fromhex(args[0])
    server.sock.sendall(record[:1] + version + record[3:])
    report["first"] = server.records()
elif mode == "big":
    size = int(args[0])
    exts = [(t, d) for t, d in exts if t != 21]
    assert all(t != 41 for t, _ in exts), "pre_shared_key must stay last"
    pad = size - len(message(head, exts)) - 4
    msg = message(head, exts + [(21, bytes(pad))])
    assert len(msg) == size
    server.sock.sendall(records(msg))
    report["first"] = server.records()
elif mode == "hrr":
    key_share = dict(exts)[51]
    assert key_share[2:4] == u16(0x1d) and len(key_share) == 2 + 4 + 32, "not an X25519 key share alone"
    server.sock.sendall(records(message(head, with_ext(exts, 0, sni(args[0])))))
    report["first"] = server.records(until="handshake:2")
    time.sleep(0.2)
    report["first"] += server.records(idle=0.2)
    second = with_ext(with_ext(exts, 0, sni(args[1])), 51, u16(4 + 65) + u16(0x17) + u16(65) + P256_G)
    server.sock.sendall(b"\x14\x03\x03\x00\x01\x01" + records(message(head, second), b"\x03\x03"))
    report["second"] = server.records()
elif mode == "sni":
    shape, name, arg = args[0], args[1].encode(), args[2]
    def entry(n):
        return b"\x00" + u16(len(n)) + n
    def listed(*entries):
        return u16(sum(map(len, entries))) + b"".join(entries)
    if shape == "two-extensions":
        i = next(i for i, (t, _) in enumerate(exts) if t == 0)
        exts = exts[:i] + [(0, listed(entry(name))), (0, listed(entry(arg.encode())))] + exts[i + 1:]
    elif shape == "two-names":
        exts = with_ext(exts, 0, listed(entry(name), entry(arg.encode())))
    elif shape == "nul":
        exts = with_ext(exts, 0, listed(entry(name + b"\x00" + arg.encode())))
    elif shape == "trailing":
        exts = with_ext(exts, 0, listed(entry(name)) + bytes.fromhex(arg))
    else:
        sys.exit(f"no shape {shape}")
    server.sock.sendall(records(message(head, exts)))
    report["first"] = server.records()
else:
    sys.exit(f"no mode {mode}")
server.sock.close()
print(json.dumps(report))
EOF
tls_case() { # OUT DST SPORT MODE ARG... -> the client's JSON report in $WORK/OUT.json
    local out=$1 dst=$2 sport=$3
    shift 3
    cap_start "$WORK/$out" "tcp and host $dst"
    nsx "$C" timeout 20 "$PY" "$WORK/tls.py" "$1" "$WORK/hello.bin" "$dst" "$sport" "${@:2}" >>"$WORK/$out.json" \
        || die "$out: the TLS client failed"
    cap_stop
    echo "gen-evasion: $out: $(cat "$WORK/$out.json")" >&2
}
# The records of one JSON report line: N KEY
answer() { "$PY" -c 'import json,sys; print(" ".join(json.loads(open(sys.argv[1]).readlines()[int(sys.argv[2])])[sys.argv[3]]))' "$WORK/$1.json" "$2" "$3"; }

if want evasion-record-version; then
    # both connections in one capture: 0x03ff, then 0x0300
    out=evasion-record-version.pcap
    cap_start "$WORK/$out" "tcp and host $STRICT"
    for vs in 03ff:42031 0300:42032; do
        nsx "$C" timeout 20 "$PY" "$WORK/tls.py" record-version "$WORK/hello.bin" $STRICT "${vs#*:}" "${vs%:*}" \
            >>"$WORK/$out.json" || die "$out: the TLS client failed"
    done
    cap_stop
    echo "gen-evasion: $out: $(tr '\n' ' ' <"$WORK/$out.json")" >&2
    for i in 0 1; do
        [[ $(answer $out $i first) == handshake:2* ]] \
            || die "$out: s_server did not answer record $((i + 1)) with its handshake: $(answer $out $i first)"
    done
fi

if want evasion-big-hello; then
    tls_case evasion-big-hello.pcap $STRICT 42033 big 30000
    [[ $(answer evasion-big-hello.pcap 0 first) == handshake:2* ]] \
        || die "big hello: s_server did not answer with its handshake: $(answer evasion-big-hello.pcap 0 first)"
fi

# HelloRetryRequest: the server's log has each hello's name; the answer to the first hello must
# be a HelloRetryRequest, to the second a ServerHello
hrr_case() { # OUT SPORT NAME1 NAME2
    local before want_log got
    before=$(wc -l <"$WORK/s_server-hrr.log")
    tls_case "$1" $HRR_S "$2" hrr "$3" "$4"
    [[ $(answer "$1" 0 first) == handshake:2:hrr* ]] \
        || die "$1: s_server did not answer the first hello with a HelloRetryRequest: $(answer "$1" 0 first)"
    [[ $(answer "$1" 0 second) == handshake:2* && $(answer "$1" 0 second) != *hrr* ]] \
        || die "$1: s_server did not answer the second hello with its ServerHello: $(answer "$1" 0 second)"
    sleep 0.5
    want_log=""
    for n in "$3" "$4"; do
        want_log+="Hostname in TLS extension: \"$n\";"
        [[ $n == "$REAL" ]] && want_log+="Switching server context.;"
    done
    got=$(tail -n +$((before + 1)) "$WORK/s_server-hrr.log" \
        | grep -E '^(Hostname in TLS extension|Switching server context)' | tr '\n' ';')
    echo "gen-evasion: $1: s_server's log: $got" >&2
    [[ $got == "$want_log" ]] || die "$1: s_server's log is not $want_log"
}
if want evasion-hrr-decoy-real; then
    hrr_case evasion-hrr-decoy-real.pcap 42034 $DECOY $REAL
fi
if want evasion-hrr-real-decoy; then
    hrr_case evasion-hrr-real-decoy.pcap 42035 $REAL $DECOY
fi

# --- the third round: malformed server_name extensions to the plain s_server, each of which it
# must refuse with a fatal alert (its log has OpenSSL's reason)
sni_case() { # OUT [SPORT SHAPE NAME ARG]... (one connection each, all in one capture)
    local out=$1 before i=0 got
    shift
    before=$(wc -l <"$WORK/s_server-plain.log")
    cap_start "$WORK/$out" "tcp and host $PLAIN_S"
    while (($#)); do
        nsx "$C" timeout 20 "$PY" "$WORK/tls.py" sni "$WORK/hello.bin" $PLAIN_S "$1" "$2" "$3" "$4" \
            >>"$WORK/$out.json" || die "$out: the TLS client failed"
        shift 4
    done
    cap_stop
    echo "gen-evasion: $out: $(tr '\n' ' ' <"$WORK/$out.json")" >&2
    while read -r _; do
        got=$(answer "$out" $i first)
        [[ $got =~ ^alert:2:[0-9]+$ ]] || die "$out: connection $((i + 1)): s_server did not answer with a fatal alert alone: $got"
        i=$((i + 1))
    done <"$WORK/$out.json"
    sleep 0.5
    got=$(tail -n +$((before + 1)) "$WORK/s_server-plain.log" | grep -o 'SSL routines:[^:]*:[^:]*' | tr '\n' ';')
    echo "gen-evasion: $out: s_server's log: $got" >&2
    [[ $(grep -o ';' <<<"$got" | wc -l) == "$i" ]] || die "$out: s_server did not log one OpenSSL error per connection"
}
if want evasion-sni-two-extensions; then
    sni_case evasion-sni-two-extensions.pcap 42051 two-extensions www.example.org $REAL
fi
if want evasion-sni-two-names; then
    sni_case evasion-sni-two-names.pcap 42052 two-names www.example.org $REAL
fi
if want evasion-sni-nul; then
    sni_case evasion-sni-nul.pcap 42053 nul www.example.org $REAL 42054 nul $REAL .x
fi
if want evasion-sni-trailing; then
    sni_case evasion-sni-trailing.pcap 42055 trailing $REAL 0000
fi

# --- request smuggling: a POST with Transfer-Encoding and Content-Length whose body holds a
# second request; nginx's access log says which requests it served
cat >"$WORK/smuggle.py" <<'EOF'
"""One HTTP connection to ADDRESS:80 from SPORT: a chunked POST whose chunked body ends at once
and is followed by a GET with Host activation-v2.kaspersky.com; with MODE te-cl the POST also
has a Content-Length that covers the GET (a body to a server that goes by it). Prints the
status codes of nginx's answers."""
import re
import socket
import sys

mode, address, sport = sys.argv[1:4]
inner = b"GET / HTTP/1.1\r\nHost: activation-v2.kaspersky.com\r\nConnection: close\r\n\r\n"
body = b"0\r\n\r\n" + inner
head = b"POST / HTTP/1.1\r\nHost: www.example.org\r\n"
if mode == "te-cl":
    head += b"Content-Length: %d\r\n" % len(body)
head += b"Transfer-Encoding: chunked\r\n\r\n"
s = socket.create_connection((address, 80), source_address=("", int(sport)), timeout=5)
s.sendall(head + body)
answer = b""
while chunk := s.recv(4096):
    answer += chunk
s.close()
print(" ".join(m.decode() for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)))
EOF
smuggle_case() { # OUT MODE SPORT WANT_STATUSES WANT_LOG
    local before got log
    before=$(wc -l <"$WORK/nginx/logs/access.log")
    cap_start "$WORK/$1" "tcp port 80"
    got=$(nsx "$C" timeout 20 "$PY" "$WORK/smuggle.py" "$2" $WEB "$3") || die "$1: the HTTP client failed"
    cap_stop
    sleep 0.5
    log=$(tail -n +$((before + 1)) "$WORK/nginx/logs/access.log" | cut -d' ' -f2- | tr '\n' ';')
    echo "gen-evasion: $1: nginx answered: $got; its access log: $log" >&2
    [[ $got == "$4" ]] || die "$1: nginx's answers are not $4"
    [[ $log == "$5" ]] || die "$1: nginx's access log is not $5"
}
if want evasion-http-te-cl; then
    smuggle_case evasion-http-te-cl.pcap te-cl 42036 "400" \
        '400 "POST / HTTP/1.1" host=www.example.org;'
fi
if want evasion-http-te-cl-control; then
    smuggle_case evasion-http-te-cl-control.pcap te 42037 "200 200" \
        '200 "POST / HTTP/1.1" host=www.example.org;200 "GET / HTTP/1.1" host=activation-v2.kaspersky.com;'
fi

# --- QUIC: aioquic clients; the servers' logs have the names they parsed
cat >"$WORK/qclient.py" <<'EOF'
"""aioquic client to ADDRESS:443 from SPORT naming NAME; completes the handshake, pings, closes.

    qclient.py MODE ADDRESS SPORT NAME DECOY

MODE decoy   before the first datagram, the same datagram with the ClientHello's NAME replaced
             by DECOY (the same length; same DCID and packet number, re-encrypted), sent from a
             raw socket with a wrong UDP checksum
MODE retry   the first hello names DECOY; the one after the server's Retry names NAME
MODE big     the hello names NAME and offers 150 more ALPN protocols of 200 bytes each after h3
             (about 31 KB: some 27 Initial packets); DECOY is not sent
"""
import asyncio
import socket
import ssl
import struct
import sys

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.buffer import Buffer
from aioquic.quic import connection
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.crypto import CryptoPair

mode, address, sport, name, decoy = sys.argv[1:6]
sport = int(sport)
assert len(name) == len(decoy)


def checksum(data):
    data += b"\0" * (len(data) % 2)
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def decoy_datagram(datagram):
    """The datagram's first packet (a client Initial) with NAME replaced by DECOY."""
    b = Buffer(data=datagram)
    b.pull_uint8()
    version = b.pull_uint32()
    dcid = b.pull_bytes(b.pull_uint8())
    b.pull_bytes(b.pull_uint8())
    b.pull_bytes(b.pull_uint_var())
    length = b.pull_uint_var()
    start, end = b.tell(), b.tell() + length
    server = CryptoPair()
    server.setup_initial(cid=dcid, is_client=False, version=version)
    header, payload, pn, _ = server.recv.decrypt_packet(datagram[:end], start, 0)
    assert payload.count(name.encode()) == 1, "the name is not in the first Initial once"
    client = CryptoPair()
    client.setup_initial(cid=dcid, is_client=True, version=version)
    fake = client.send.encrypt_packet(header, payload.replace(name.encode(), decoy.encode()), pn)
    return fake + datagram[end:]


def send_bad_checksum(payload, src):
    """PAYLOAD in a UDP datagram from SRC:SPORT to ADDRESS:443 whose checksum is wrong."""
    length = 8 + len(payload)
    pseudo = socket.inet_aton(src) + socket.inet_aton(address) + struct.pack("!BBH", 0, 17, length)
    good = checksum(pseudo + struct.pack("!HHHH", sport, 443, length, 0) + payload) or 0xFFFF
    bad = (good ^ 0x1234) or 1
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    raw.sendto(struct.pack("!HHHH", sport, 443, length, bad) + payload, (address, 0))
    raw.close()
    print(f"decoy sent: checksum {bad:#06x} instead of {good:#06x}", file=sys.stderr)


def send_twins(real, decoy, src):
    """DECOY, then REAL, from SRC:SPORT to ADDRESS:443, from a raw socket with one IPv4 header
    (ID 0x4242, DF, TTL 64) and REAL's UDP checksum on both: wrong for the decoy's bytes."""
    assert len(real) == len(decoy)
    length = 8 + len(real)
    pseudo = socket.inet_aton(src) + socket.inet_aton(address) + struct.pack("!BBH", 0, 17, length)
    head = struct.pack("!HHHH", sport, 443, length, 0)
    good = checksum(pseudo + head + real) or 0xFFFF
    assert (checksum(pseudo + head + decoy) or 0xFFFF) != good, "the decoy's checksum is right"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0x4242, 0x4000, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(address))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    for payload in (decoy, real):
        raw.sendto(ip + struct.pack("!HHHH", sport, 443, length, good) + payload, (address, 0))
    raw.close()
    print(f"decoy and real sent as twins: checksum {good:#06x} on both", file=sys.stderr)


class DecoyFirst:
    """A transport that sends the decoy of the first datagram before it (mode dup-decoy: both
    from a raw socket, as twins)."""

    def __init__(self, transport):
        self.transport, self.first = transport, True

    def sendto(self, data, addr=None):
        if self.first:
            self.first = False
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.connect((address, 443))
            src = probe.getsockname()[0]
            probe.close()
            if mode == "dup-decoy":
                send_twins(data, decoy_datagram(data), src)
                return
            send_bad_checksum(decoy_datagram(data), src)
        self.transport.sendto(data, addr)

    def __getattr__(self, attr):
        return getattr(self.transport, attr)


class Protocol(QuicConnectionProtocol):
    def connection_made(self, transport):
        super().connection_made(DecoyFirst(transport) if mode in ("decoy", "dup-decoy")
                                else transport)


if mode == "big":
    connection.CRYPTO_BUFFER_SIZE = 1 << 16  # room for the hello (aioquic's is 16 KiB)

if mode == "retry":
    receive_retry = connection.QuicConnection._receive_retry_packet

    def retried(self, *args, **kwargs):
        self._configuration.server_name = name  # the hello after the Retry
        return receive_retry(self, *args, **kwargs)

    connection.QuicConnection._receive_retry_packet = retried


async def main():
    alpn = ["h3"] + ([f"{i:03d}" + "x" * 197 for i in range(150)] if mode == "big" else [])
    config = QuicConfiguration(is_client=True, alpn_protocols=alpn, verify_mode=ssl.CERT_NONE,
                               server_name=decoy if mode == "retry" else name)
    async with connect(address, 443, configuration=config, create_protocol=Protocol,
                       local_port=sport) as client:
        await client.ping()
    print("handshake done, ping answered")


asyncio.run(asyncio.wait_for(main(), 15))
EOF
quic_case() { # OUT MODE ADDRESS SPORT LOG
    local before got
    before=$(wc -l <"$5")
    cap_start "$WORK/$1" "udp and host $3"
    nsx "$C" timeout 30 "$AIOQUIC_PY" "$WORK/qclient.py" "$2" "$3" "$4" $REAL $DECOY >"$WORK/$1.out" 2>&1 \
        || die "$1: the QUIC client failed: $(cat "$WORK/$1.out")"
    cap_stop
    got=$(tail -n +$((before + 1)) "$5" | grep '^SNI ' | tr '\n' ';')
    echo "gen-evasion: $1: $(tr '\n' ' ' <"$WORK/$1.out"); the server parsed: $got" >&2
    [[ $got == "SNI $REAL;" ]] || die "$1: the server did not parse one hello naming $REAL only: $got"
}
if want evasion-quic-decoy; then
    before=$(counter "$S" Udp InCsumErrors)
    quic_case evasion-quic-decoy.pcap decoy $QUIC_S 42041 "$WORK/qserver.log"
    errors=$(($(counter "$S" Udp InCsumErrors) - before))
    echo "gen-evasion: evasion-quic-decoy.pcap: the server's Udp InCsumErrors went up by $errors" >&2
    ((errors == 1)) || die "evasion-quic-decoy.pcap: the server's kernel did not drop the decoy for its checksum"
fi
if want evasion-dup-quic-decoy; then
    before=$(counter "$S" Udp InCsumErrors)
    quic_case evasion-dup-quic-decoy.pcap dup-decoy $QUIC_S 42044 "$WORK/qserver.log"
    errors=$(($(counter "$S" Udp InCsumErrors) - before))
    echo "gen-evasion: evasion-dup-quic-decoy.pcap: the server's Udp InCsumErrors went up by $errors" >&2
    ((errors == 1)) || die "evasion-dup-quic-decoy.pcap: the server's kernel did not drop the decoy for its checksum"
fi
if want evasion-dnsport-quic; then
    quic_case evasion-dnsport-quic.pcap plain $QUIC_S 5353 "$WORK/qserver.log"
fi
if want evasion-quic-retry; then
    quic_case evasion-quic-retry.pcap retry $QUIC_RETRY_S 42042 "$WORK/qserver-retry.log"
fi
if want evasion-quic-big-hello; then
    quic_case evasion-quic-big-hello.pcap big $QUIC_S 42043 "$WORK/qserver.log"
fi

# --- the fourth round: DPI-circumvention techniques; the strict s_server's answer on each
# connection says it received the real name
cat >"$WORK/send4.py" <<'EOF'
"""Round-4 raw TCP client (scapy): one connection SRC:SPORT -> DST:443; after the handshake the
evasion MODE, then the real ClientHello (HELLO); reports the server's answer as JSON.

    r4send.py MODE HELLO SRC DST SPORT CLIENT_MAC NEXT_HOP_MAC IFACE

MODE rst-inwindow    RST at rcv_nxt+1000 (in the window, not exact: RFC 5961 challenge ACK)
MODE rst-exact       control: RST at rcv_nxt exactly (the server resets), then the hello
MODE rst-ttl         RST at rcv_nxt, TTL 1 (expires at the router in front of the server)
MODE rst-badsum      RST at rcv_nxt with a wrong TCP checksum
MODE presyn          the decoy ClientHello at ISN+1 before the SYN, with a wrong TCP checksum (the
                     server drops it silently), then the handshake and the real hello
MODE rst-inwindow-syn
                     rst-inwindow, then a SYN with another ISN (a challenge ACK again), then the hello
MODE fin-ahead-syn   a FIN 1000 bytes past rcv_nxt (Linux queues it out of order), then the same SYN
MODE badseq-minus    decoy ClientHello at rcv_nxt-100000, then the real one
MODE badseq-plus     decoy ClientHello at rcv_nxt+1000000, then the real one
MODE paws            timestamps on every segment (SYN too); decoy ClientHello at rcv_nxt with a
                     TSval 1000 below the last one sent, then the real one
MODE syn-data        the decoy ClientHello as data on the SYN (no Fast Open option), then the
                     real hello at ISN+1
MODE paws-ack        timestamps on every segment (SYN too); a bare ACK at rcv_nxt acknowledging
                     100,000 bytes never sent, with a TSval 1,000,000 ahead, then the real hello
MODE pre-synack      the decoy ClientHello at ISN+1, PSH ACK acknowledging PRE_SYNACK_ACK (a guess:
                     the server's ISN is not known yet), sent right after the SYN; the server's
                     answers before its SYN-ACK are logged; then the handshake and the real hello
MODE pre-synack-late a first SYN and the decoy as in pre-synack, both with TTL 1 (they expire at the
                     router, past the tap), then PRE_SYNACK_LATE_SECS of silence, then the SYN again
                     (same ISN, TTL 64), the handshake and the real hello at ISN+1
MODE urg             the real hello with one byte X inserted before the last 'o' of the SNI
                     (dnl-01.geo.kaspersky.cXom), URG flag, urgent pointer at X (BSD: ptr = X+1)
MODE urg-reverse     the decoy-named hello (server must refuse) where the name sent, with the
                     urgent byte 'd' inserted at its start, reads dnl-01.geo.kaspersky.com
                     (the server's name is "nl-01.geo.kaspersky.comz")
MODE frag-inorder    the hello's IP datagram in 8 fragments of 72 bytes of payload, in order
MODE frag-reverse    the same fragments in reverse order
MODE frag-dup-decoy  the decoy hello's datagram in fragments [0,200) [200,400) [192,216) [400,end):
                     the third lies wholly inside the first two, identical bytes (Linux: a
                     duplicate, ignored; the datagram is reassembled); then the real hello
                     unfragmented at the same sequence number
MODE frag-dup-real   the real hello's datagram: [0,200), then a fragment wholly inside it at the
                     SNI carrying the decoy's bytes, then [200,400) [400,end) (Linux keeps the first)
MODE frag-overlap-real
                     the real hello's datagram: [0,200), then [a,400) from the decoy datagram with a
                     < 200 (partial overlap: Linux drops the whole datagram), [200,400) [400,end);
                     no answer comes, and the client retransmits the real hello in one segment
MODE seqovl-decoy    one segment at rcv_nxt-len(hello): the whole decoy hello then the real one
MODE seqovl-1        one segment at rcv_nxt-1 (the SYN's sequence number): 0x16 then the real hello
"""
import json, select, sys, time
from scapy.all import IP, TCP, Ether, Raw, conf, fragment

conf.verb = 0
mode, hello_file, src, dst, sport, cmac, smac, iface = sys.argv[1:9]
sport = int(sport)
hello = open(hello_file, "rb").read()
REAL, DECOY = b"dnl-01.geo.kaspersky.com", b"updates.example-corp.com"
decoy = hello.replace(REAL, DECOY)
assert len(decoy) == len(hello) and decoy != hello
ISN = 1000
TS = mode in ("paws", "paws-ack")
sock = conf.L2socket(iface=iface)
eth = Ether(src=cmac, dst=smac)
state = {"tsval": 100000, "tsecr": 0}
log = []


def tcp_pkt(flags, seq, ack=0, data=b"", ttl=64, urg=0, tsval=None):
    opts = []
    if flags == "S":
        opts.append(("MSS", 1460))
    if TS:
        if tsval is None:
            state["tsval"] += 1
            tsval = state["tsval"]
        opts += [("NOP", None), ("NOP", None), ("Timestamp", (tsval, state["tsecr"]))]
    tcp = TCP(sport=sport, dport=443, flags=flags, seq=seq, ack=ack, window=64240, urgptr=urg, options=opts)
    pkt = IP(src=src, dst=dst, ttl=ttl) / tcp
    return pkt / Raw(data) if data else pkt


def send(pkt):
    sock.send(eth / pkt)


def receive(timeout, until=None):
    got, end = [], time.time() + timeout
    while time.time() < end:
        if not select.select([sock], [], [], max(0.0, end - time.time()))[0]:
            break
        p = sock.recv()
        if p is not None and TCP in p and p[IP].src == dst and p[TCP].dport == sport:
            got.append(p)
            if until and until(p):
                break
            end = time.time() + timeout
    return got


def describe(ps):
    return [f"{p[TCP].flags} seq={p[TCP].seq} ack={p[TCP].ack} len={len(p[TCP].payload)}" for p in ps]


if mode == "presyn":
    # The decoy hello where the connection's first byte will be, before the SYN, with a
    # wrong TCP checksum: the server's kernel drops it without a word (to no connection, it
    # would answer a right one with a RST, which tells a sensor that nothing was taken).
    p = IP(bytes(tcp_pkt("PA", ISN + 1, 12345, decoy)))
    p[TCP].chksum ^= 0x5555
    send(p)
    time.sleep(0.05)
    presyn_answer = describe(receive(0.3))
PRE_SYNACK_ACK = 0x5EED1E55
# Longer than a sensor waits for a server's answer to data sent ahead of it, plus its sweep.
PRE_SYNACK_LATE_SECS = 9
if mode == "pre-synack-late":
    send(tcp_pkt("S", ISN, ttl=1))
    time.sleep(0.02)
    send(tcp_pkt("PA", ISN + 1, PRE_SYNACK_ACK, decoy, ttl=1))
    time.sleep(PRE_SYNACK_LATE_SECS)
send(tcp_pkt("S", ISN, data=decoy if mode == "syn-data" else b""))
if mode == "pre-synack":
    time.sleep(0.02)
    send(tcp_pkt("PA", ISN + 1, PRE_SYNACK_ACK, decoy))
before_synack = receive(2, lambda p: p[TCP].flags & 0x12 == 0x12)
synack = next((p for p in before_synack if p[TCP].flags & 0x12 == 0x12), None)
if synack is None:
    sys.exit("no SYN-ACK")
if mode == "pre-synack":
    log.append({"before_synack": describe(p for p in before_synack if not p[TCP].flags & 0x02)})
if TS:
    ts = dict(synack[TCP].options).get("Timestamp")
    assert ts, "the server did not agree to timestamps"
    state["tsecr"] = ts[0]
sack = synack[TCP].seq + 1
nxt = ISN + 1
send(tcp_pkt("A", nxt, sack))
time.sleep(0.05)

real = hello
wire_len = None  # bytes the client put in the stream, when not len(real)
if mode in ("rst-inwindow", "rst-inwindow-syn"):
    send(tcp_pkt("R", nxt + 1000))
elif mode == "fin-ahead-syn":
    send(tcp_pkt("FA", nxt + 1000, sack))
elif mode in ("rst-exact", "rst-ttl", "rst-badsum"):
    p = tcp_pkt("R", nxt, ttl=1 if mode == "rst-ttl" else 64)
    if mode == "rst-badsum":
        p = IP(bytes(p))
        p[TCP].chksum ^= 0x5555
    send(p)
elif mode == "badseq-minus":
    send(tcp_pkt("PA", (nxt - 100000) % 2**32, sack, decoy))
elif mode == "badseq-plus":
    send(tcp_pkt("PA", nxt + 1000000, sack, decoy))
elif mode == "paws":
    send(tcp_pkt("PA", nxt, sack, decoy, tsval=state["tsval"] - 1000))
elif mode == "paws-ack":
    send(tcp_pkt("A", nxt, (sack + 100000) % 2**32, tsval=state["tsval"] + 1000000))
elif mode.startswith("frag-"):
    pass
if mode.endswith("-syn"):
    # A SYN with another ISN after the stray RST or FIN: the live connection answers it with
    # a challenge ACK (RFC 5961 §4) and goes on.
    time.sleep(0.05)
    send(tcp_pkt("S", (ISN + 500000) % 2**32))
time.sleep(0.05)
early = receive(0.3)

if mode == "urg":
    i = hello.index(REAL) + len(REAL) - 1  # before the last 'm'? make it cXom: insert before 'om'
    i = hello.index(REAL) + len(REAL) - 2
    data = hello[:i] + b"X" + hello[i:]
    send(tcp_pkt("PAU", nxt, sack, data, urg=i + 1))
    wire_len = len(data)
    log.append(f"sent {len(data)} bytes, urgent byte at offset {i}")
elif mode == "urg-reverse":
    name = REAL[1:] + b"z"
    served = hello.replace(REAL, name)
    i = hello.index(REAL)
    data = served[:i] + b"d" + served[i:]
    real = served
    send(tcp_pkt("PAU", nxt, sack, data, urg=i + 1))
    wire_len = len(data)
    log.append(f"server name {name.decode()}, urgent 'd' at offset {i}")
elif mode in ("frag-inorder", "frag-reverse"):
    p = IP(bytes(tcp_pkt("PA", nxt, sack, hello)))
    p.id = 4343
    frags = fragment(p, fragsize=72)
    if mode == "frag-reverse":
        frags = frags[::-1]
    for f in frags:
        send(f)
    log.append(f"{len(frags)} fragments")
elif mode in ("frag-dup-decoy", "frag-dup-real", "frag-overlap-real"):
    # fragments by offset in the IP payload (the TCP segment); each a multiple of 8
    def tcp_bytes_of(data):
        return bytes(IP(bytes(tcp_pkt("PA", nxt, sack, data)))[TCP])
    tb_real, tb_decoy = tcp_bytes_of(hello), tcp_bytes_of(decoy)
    n = len(tb_real)
    sni = tb_real.index(REAL)
    def frag(tb, off, end, more, ident):
        f = IP(src=src, dst=dst, ttl=64, id=ident, proto=6, flags="MF" if more else 0, frag=off // 8)
        return f / Raw(tb[off:end])
    if mode == "frag-dup-decoy":
        # the decoy datagram; a third fragment lies wholly inside the first two (identical bytes)
        plan = [(tb_decoy, 0, 200), (tb_decoy, 200, 400), (tb_decoy, 192, 216), (tb_decoy, 400, n)]
        ident = 4242
    elif mode == "frag-dup-real":
        # the real datagram; after the first fragment, a fragment wholly inside it with the decoy's
        # bytes at the SNI: [a, b) with a <= sni, b >= sni+24, inside [0, 200)
        a = sni // 8 * 8
        b = a + 32
        assert b <= 200 and sni + len(REAL) <= b
        plan = [(tb_real, 0, 200), (tb_decoy, a, b), (tb_real, 200, 400), (tb_real, 400, n)]
        ident = 4444
    else:
        # the real datagram; the second fragment (decoy bytes) overlaps the first partially
        a = sni // 8 * 8
        assert a < 200
        plan = [(tb_real, 0, 200), (tb_decoy, a, 400), (tb_real, 200, 400), (tb_real, 400, n)]
        ident = 4545
    for tb, off, end in plan:
        send(frag(tb, off, end, end < n, ident))
    log.append(f"sni at {sni} of the TCP segment; fragments " + " ".join(
        f"[{o},{e}){'decoy' if tb is tb_decoy else 'real'}" for tb, o, e in plan))
    if mode == "frag-dup-decoy":  # then the real hello, unfragmented, at the same sequence number
        time.sleep(0.005)
        send(tcp_pkt("PA", nxt, sack, hello))
elif mode == "seqovl-decoy":
    send(tcp_pkt("PA", (nxt - len(decoy)) % 2**32, sack, decoy + hello))
elif mode == "seqovl-1":
    send(tcp_pkt("PA", nxt - 1, sack, b"\x16" + hello))
else:
    send(tcp_pkt("PA", nxt, sack, hello))

answer = receive(1.5, lambda p: len(p[TCP].payload) > 0 or p[TCP].flags & 0x04)
answer += receive(0.3)
retransmitted = False
if not any(len(p[TCP].payload) for p in answer) and not any(p[TCP].flags & 0x04 for p in answer):
    acked = max([p[TCP].ack for p in answer] or [nxt]) - nxt
    if acked < len(real) and not wire_len:
        send(tcp_pkt("PA", nxt + acked, sack, real[acked:]))
        retransmitted = {"acked_before": acked}
        answer += receive(1.5, lambda p: len(p[TCP].payload) > 0)
        answer += receive(0.3)
payload = sorted(((p[TCP].seq, bytes(p[TCP].payload)) for p in answer if len(p[TCP].payload)))
first = payload[0][1] if payload else b""
end = max((s + len(d) for s, d in payload), default=sack)
fin = nxt + (wire_len or len(real))
send(tcp_pkt("A", fin, end))
send(tcp_pkt("R", fin))
acked = (max([p[TCP].ack for p in answer if p[TCP].flags & 0x10] or [nxt]) - nxt) % 2**32
if mode == "presyn":
    log.append({"before_syn": presyn_answer})
if mode == "syn-data":
    log.append({"syn_ack_acks": synack[TCP].ack - ISN - 1})
print(json.dumps({"mode": mode, "early": describe(early), "answer": describe(answer)[:6],
                  "answer_bytes": sum(len(d) for _, d in payload), "record": first[:7].hex(),
                  "retransmitted": retransmitted, "sent": fin - nxt, "acked": acked, "log": log}))
EOF
cat >"$WORK/tlsrec.py" <<'EOF'
"""TLS record fragmentation: curl's ClientHello (HELLO, one record) re-cut into several records, sent
from the client's own socket to DST:443 from SPORT; prints the server's answer records as JSON.

    tlsrec.py HELLO DST SPORT MODE        MODE sni-split: two records, the cut in the middle of the
                                          SNI host_name; MODE N (a number): records of N bytes of
                                          handshake each
"""
import json, socket, sys
hello_file, dst, sport, mode = sys.argv[1:5]
rec = open(hello_file, "rb").read()
msg = rec[5:]
name = b"dnl-01.geo.kaspersky.com"
if mode == "sni-split":
    cuts = [msg.index(name) + 12]  # dnl-01.geo.k | aspersky.com
else:
    n = int(mode)
    cuts = list(range(n, len(msg), n))
parts = [msg[a:b] for a, b in zip([0] + cuts, cuts + [len(msg)])]
data = b"".join(b"\x16" + rec[1:3] + len(p).to_bytes(2, "big") + p for p in parts)
s = socket.create_connection((dst, 443), source_address=("", int(sport)), timeout=5)
s.sendall(data)
buf = b""
s.settimeout(1.5)
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        buf += d
except socket.timeout:
    pass
s.close()
out = []
while len(buf) >= 5:
    n = 5 + int.from_bytes(buf[3:5], "big")
    t, body = buf[0], buf[5:n]
    out.append({22: f"handshake:{body[:1].hex()}", 21: f"alert:{body[:2].hex()}", 20: "ccs", 23: "appdata"}.get(t, str(t)))
    buf = buf[n:]
print(json.dumps({"records_sent": len(parts), "bytes": len(data), "answer": out}))
EOF
# Several crafted connections in one capture, each answered by the strict s_server with its
# handshake (a record that starts 16; ANSWER=HEX in the environment: another record, as the fatal
# unrecognized_name alert 15030300020270): OUT ROUTED(yes|no) MODE:SPORT...
crafted4() {
    local out=$1 routed=$2 m src dst mac iface
    shift 2
    if [[ $routed == yes ]]; then
        src=$CRAFTED_R dst=$STRICT_R mac=$RCMAC iface=veth-cr
        cap_start "$WORK/$out" "host $src" "$R" veth-rc
    else
        src=$CRAFTED dst=$STRICT mac=$SMAC iface=veth-c
        cap_start "$WORK/$out" "host $src"
    fi
    for m in "$@"; do
        nsx "$C" "$SCAPY_PY" "$WORK/send4.py" "${m%:*}" "$WORK/hello.bin" $src $dst "${m#*:}" "$CMAC" "$mac" $iface \
            >>"$WORK/$out.json" || die "$out: the sender failed in mode ${m%:*}"
    done
    cap_stop
    echo "gen-evasion: $out: $(tr '\n' ' ' <"$WORK/$out.json")" >&2
    "$PY" -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if not r["record"].startswith(sys.argv[3]):
        sys.exit(sys.argv[2] + ": " + r["mode"] + ": s_server did not answer with " + sys.argv[3] + ": " + r["record"])
' "$WORK/$out.json" "$out" "${ANSWER:-16}" || die "$out: see above"
}
if want evasion-rst; then
    before=$(counter "$S" TcpExt TCPChallengeACK) csum=$(counter "$S" Tcp InCsumErrors)
    crafted4 evasion-rst.pcap no rst-inwindow:42061 rst-badsum:42062
    echo "gen-evasion: evasion-rst.pcap: the server's TCPChallengeACK went up by" \
        "$(($(counter "$S" TcpExt TCPChallengeACK) - before)), its Tcp InCsumErrors by" \
        "$(($(counter "$S" Tcp InCsumErrors) - csum))" >&2
    (($(counter "$S" Tcp InCsumErrors) - csum == 1)) || die "evasion-rst.pcap: the server did not drop the RST for its checksum"
fi
if want evasion-rst-syn; then
    before=$(counter "$S" TcpExt TCPChallengeACK)
    crafted4 evasion-rst-syn.pcap no rst-inwindow-syn:42066 fin-ahead-syn:42067
    challenges=$(($(counter "$S" TcpExt TCPChallengeACK) - before))
    echo "gen-evasion: evasion-rst-syn.pcap: the server's TCPChallengeACK went up by $challenges" >&2
    ((challenges >= 2)) || die "evasion-rst-syn.pcap: the server did not answer the RST and the SYNs with challenge ACKs"
fi
if want evasion-presyn; then
    csum=$(counter "$S" Tcp InCsumErrors)
    crafted4 evasion-presyn.pcap no presyn:42068
    (($(counter "$S" Tcp InCsumErrors) - csum == 1)) \
        || die "evasion-presyn.pcap: the server did not drop the segment before the SYN for its checksum"
    grep -q '"before_syn": \[\]' "$WORK/evasion-presyn.pcap.json" \
        || die "evasion-presyn.pcap: the server answered the segment before the SYN"
fi
if want evasion-rst-ttl; then
    before=$(counter "$R" Icmp OutTimeExcds)
    crafted4 evasion-rst-ttl.pcap yes rst-ttl:42063
    (($(counter "$R" Icmp OutTimeExcds) - before == 1)) || die "evasion-rst-ttl.pcap: the RST did not expire at the router"
fi
if want evasion-badseq; then
    crafted4 evasion-badseq.pcap no badseq-minus:42064 badseq-plus:42065
fi
if want evasion-seqovl; then
    crafted4 evasion-seqovl.pcap no seqovl-decoy:42066 seqovl-1:42067
fi
if want evasion-ip-fragments; then
    before=$(counter "$S" IpExt ReasmOverlaps)
    crafted4 evasion-ip-fragments.pcap no frag-inorder:42068 frag-reverse:42069 frag-overlap-real:42070
    (($(counter "$S" IpExt ReasmOverlaps) - before == 1)) \
        || die "evasion-ip-fragments.pcap: the server did not drop the overlapping datagram (ReasmOverlaps)"
fi
if want evasion-tls-records; then
    out=evasion-tls-records.pcap
    cap_start "$WORK/$out" "tcp and host $STRICT"
    for ms in sni-split:42071 5:42072; do
        nsx "$C" timeout 20 "$PY" "$WORK/tlsrec.py" "$WORK/hello.bin" $STRICT "${ms#*:}" "${ms%:*}" \
            >>"$WORK/$out.json" || die "$out: the TLS client failed"
    done
    cap_stop
    echo "gen-evasion: $out: $(tr '\n' ' ' <"$WORK/$out.json")" >&2
    [[ $(grep -c '"answer": \["handshake:02"' "$WORK/$out.json") == 2 ]] \
        || die "$out: s_server did not answer both with its handshake"
fi

# --- the fourth round's second set: Linux reads an urgent byte, a PAWS-old segment, a fragment
# wholly inside an earlier one otherwise than the bytes on the wire say; one connection a capture
# The server's socket took the urgent byte out of band: it acked every byte sent (the byte
# included) and answered as its case says. OUT MODE:SPORT
urgent4() {
    crafted4 "$1" no "$2"
    local sent acked
    sent=$(field "$1" sent) acked=$(field "$1" acked)
    echo "gen-evasion: $1: $sent bytes sent with the urgent byte, the server acked $acked" >&2
    [[ $sent == 518 && $acked == "$sent" ]] || die "$1: the server did not ack the $sent bytes sent (urgent byte included)"
}
if want evasion-urgent; then
    urgent4 evasion-urgent.pcap urg:42073
fi
if want evasion-urgent-reverse; then
    ANSWER=15030300020270 urgent4 evasion-urgent-reverse.pcap urg-reverse:42074
fi
if want evasion-paws; then
    before=$(counter "$S" TcpExt PAWSEstab)
    crafted4 evasion-paws.pcap no paws:42075
    paws=$(($(counter "$S" TcpExt PAWSEstab) - before))
    echo "gen-evasion: evasion-paws.pcap: the server's TcpExt PAWSEstab went up by $paws" >&2
    ((paws == 1)) || die "evasion-paws.pcap: the server did not drop the decoy by PAWS"
fi
if want evasion-syn-data; then
    crafted4 evasion-syn-data.pcap no syn-data:42079
    grep -q '"syn_ack_acks": 0' "$WORK/evasion-syn-data.pcap.json" \
        || die "evasion-syn-data.pcap: the server's SYN-ACK acknowledged the SYN's data"
fi
if want evasion-ttl-raised-syn; then
    cat >"$WORK/ttlsyn.py" <<'EOF'
"""A TLS client whose SYN leaves with TTL 255 and its data with 64: SRC DST SPORT NAME."""
import json
import socket
import ssl
import sys

src, dst, sport, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sock = socket.socket()
sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
sock.bind((src, sport))
sock.connect((dst, 443))
sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 64)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
tls = ctx.wrap_socket(sock, server_hostname=name)
print(json.dumps({"handshake": tls.version()}))
tls.close()
EOF
    cap_start "$WORK/evasion-ttl-raised-syn.pcap" "tcp and host $CLIENT and port 42080"
    nsx "$C" timeout 20 "$PY" "$WORK/ttlsyn.py" $CLIENT $STRICT 42080 $REAL >"$WORK/ttlsyn.json" \
        || die "evasion-ttl-raised-syn.pcap: the handshake with the strict s_server failed"
    cap_stop
    echo "gen-evasion: evasion-ttl-raised-syn.pcap: $(cat "$WORK/ttlsyn.json")" >&2
fi
if want evasion-pre-synack; then
    # The server's first SYN-ACK to port 42090 is dropped before the tap (the output hook runs
    # before the capture point of veth-s): the quota matches the first 60 bytes of SYN-ACKs,
    # one segment of 44.
    nsx "$S" nft -f - <<'NFT'
table inet vwp_pre_synack {
    chain out {
        type filter hook output priority 0;
        tcp sport 443 tcp dport 42090 tcp flags & (syn | ack) == syn | ack quota until 60 bytes drop
    }
}
NFT
    crafted4 evasion-pre-synack.pcap no pre-synack:42090
    nsx "$S" nft delete table inet vwp_pre_synack
    grep -q "\"before_synack\": \[\"R seq=$((0x5EED1E55)) " "$WORK/evasion-pre-synack.pcap.json" \
        || die "evasion-pre-synack.pcap: the server did not refuse the fake with a RST at its acknowledgment number"
    [[ $(tcpdump -r "$WORK/evasion-pre-synack.pcap" 'tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)' 2>/dev/null | wc -l) == 1 ]] \
        || die "evasion-pre-synack.pcap: the tap should show one SYN-ACK, after the fake"
fi
if want evasion-pre-synack-late; then
    crafted4 evasion-pre-synack-late.pcap yes pre-synack-late:42091
    [[ $(tcpdump -r "$WORK/evasion-pre-synack-late.pcap" 'tcp[tcpflags] & tcp-syn != 0 and ip[8] == 1' 2>/dev/null | wc -l) == 1 ]] \
        || die "evasion-pre-synack-late.pcap: the tap should show the first SYN with TTL 1"
fi
if want evasion-paws-ack; then
    before=$(counter "$S" TcpExt PAWSEstab)
    crafted4 evasion-paws-ack.pcap no paws-ack:42078
    paws=$(($(counter "$S" TcpExt PAWSEstab) - before))
    echo "gen-evasion: evasion-paws-ack.pcap: the server's TcpExt PAWSEstab went up by $paws" >&2
    ((paws == 0)) || die "evasion-paws-ack.pcap: the server dropped a segment by PAWS (it took the ACK's timestamp)"
fi
# A datagram with a fragment wholly inside an earlier one: reassembled (ReasmOKs +1), the
# fragment dropped as a duplicate, not as an overlap (ReasmOverlaps and ReasmFails +0). OUT MODE:SPORT
frag_inside4() {
    local oks overlaps fails
    oks=$(counter "$S" Ip ReasmOKs) overlaps=$(counter "$S" IpExt ReasmOverlaps) fails=$(counter "$S" Ip ReasmFails)
    crafted4 "$1" no "$2"
    oks=$(($(counter "$S" Ip ReasmOKs) - oks)) overlaps=$(($(counter "$S" IpExt ReasmOverlaps) - overlaps))
    fails=$(($(counter "$S" Ip ReasmFails) - fails))
    echo "gen-evasion: $1: the server's Ip ReasmOKs went up by $oks, IpExt ReasmOverlaps by $overlaps," \
        "Ip ReasmFails by $fails" >&2
    ((oks == 1 && overlaps == 0 && fails == 0)) \
        || die "$1: the server did not reassemble the datagram with the inner fragment dropped as a duplicate"
}
if want evasion-frag-inside-real; then
    frag_inside4 evasion-frag-inside-real.pcap frag-dup-real:42076
fi
if want evasion-frag-inside-decoy; then
    ANSWER=15030300020270 frag_inside4 evasion-frag-inside-decoy.pcap frag-dup-decoy:42077
fi

for f in "${ONLY[@]}"; do
    cp "$WORK/$f.pcap" "$HERE/$f.pcap"
    chmod 644 "$HERE/$f.pcap"
done
echo "made: ${ONLY[*]}" >&2
