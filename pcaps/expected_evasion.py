#!/usr/bin/env python3
"""Expectations for the captures of pcaps/gen-evasion.sh, from tshark and the servers' own answers
(never from the sensor).

    expected_evasion.py            print the expectations (JSON) on stdout
    expected_evasion.py --write    write them to pcaps/expected-evasion.json
    expected_evasion.py --check    exit 1 (with both texts) when pcaps/expected-evasion.json
                                   is not what this script derives now

For each capture:
  names         [{host, kind, value}] with repetition, sorted: every ClientHello server name
                (kind tls_sni; quic_sni in QUIC Initials) and HTTP Host (kind http_host, without a
                port) the server received;
                host = the client, the source of the ClientHello or request
  alerts        [{host, vendor, category}] deduplicated, sorted: the names of `names` looked up in a
                fixed table of exact vendor names (below)
  not_received  [{host, kind, value}]: a name whose bytes are in the capture but which the server
                did not receive (the other copy of an overlap) or did not take (a request after
                one it refused, a QUIC hello its kernel dropped or that it answered with a Retry
                unread); a sensor must not hide the names received behind it, and must not
                report it over TCP (a QUIC sensor cannot always tell: see tests/evasion_pcaps.rs)
  tshark_reads  (where tshark reads something else than `names`) [{host, kind, value}]: the names
                tshark reads in the whole capture, to record that the capture fools it
  malformed     (evasion-sni-* only) [{host, sport, server_name_extensions, host_names,
                names_with_nul, bytes_past_list}]: the shape of each ClientHello's server_name
                extensions, from their bytes
  server_answers
                (evasion-sni-* only) [{host, sport, level, description, alert}]: the record the
                server answered each ClientHello with (a fatal alert), from its bytes
  source        how `names` was derived
How each is derived:
  evasion-first-last.pcap, evasion-reverse.pcap
                tshark with `-o tcp.reassemble_out_of_order:TRUE` (it reads a ClientHello whose
                segments come out of order, as the server did: the server answered)
  evasion-http-empty-line.pcap
                tshark's http.host (it reads requests after an empty line, as nginx did)
  evasion-overlap-replace.pcap, evasion-overlap-replace-control.pcap
                the server's answer in the capture (tshark reads the record it sent): the
                `openssl s_server` of the scenario accepts only dnl-01.geo.kaspersky.com
                (`-servername_fatal`), so a handshake record means it received that name, and a
                fatal unrecognized_name alert means it received the decoy
                updates.example-corp.com. tshark's own reading of these ClientHellos is not used:
                it keeps the first copy of overlapping out-of-order bytes, while the Linux receiver
                replaces a queued segment with a later, longer one that starts at the same
                sequence number; that tshark reads the other name is checked (so the capture does
                test the difference)
  evasion-fake-ttl.pcap, evasion-fake-noack.pcap, evasion-fake-md5.pcap, evasion-presyn.pcap,
  evasion-fake-ack-unsent.pcap, evasion-fake-ack-old.pcap, evasion-syn-data.pcap,
  evasion-pre-synack.pcap, evasion-pre-synack-late.pcap
                the server's answer, as for the overlaps (the same strict s_server): each has a
                "fake" ClientHello with the decoy name at the real one's sequence number, sent
                first, that Linux may not take (TTL 1 through a router, no ACK flag, an MD5
                signature the SYN lacked, an acknowledgment of bytes never sent or of less than
                the SYN-ACK, data on the SYN that the SYN-ACK does not acknowledge, data sent
                ahead of the SYN-ACK acknowledging a guess, the same with the first SYN expired
                at a router and the real one 9 s later), then the real ClientHello. The name of the other
                hello is `not_received`. tshark keeps the first copy it sees, so it reads the
                fake's decoy: what it reads is recorded under `tshark_reads` (the scenario checks
                below expect the decoy: the capture does test what tshark gets wrong)
  evasion-record-version.pcap
                the server's answer on each connection, read from the raw TCP payload (tshark does
                not read a record of version 0x03ff): the strict s_server answered each ClientHello
                record (0x03ff, then 0x0300) with its handshake, so it received
                dnl-01.geo.kaspersky.com twice; tshark's own reading is `tshark_reads` (the 0x0300
                one only)
  evasion-big-hello.pcap
                tshark (it reassembles the 30,000-byte ClientHello from its two records); that the
                strict s_server answered it with its handshake is checked
  evasion-hrr-decoy-real.pcap, evasion-hrr-real-decoy.pcap
                tshark: both ClientHellos of the connection, the one before the server's
                HelloRetryRequest and the one after it (the server read both: the generator
                checked its log). That the server's first answer is a HelloRetryRequest and its
                second a ServerHello is checked
  evasion-http-te-cl.pcap, evasion-http-te-cl-control.pcap
                tshark's requests on each connection, of which the server received those it
                answered: nginx answers every request it reads, in order, so with N responses
                (tshark's http.response) the first N requests; the others are `not_received`.
                tshark itself reads the request smuggled in the body of the POST nginx refused
                (`tshark_reads`)
  evasion-dup-fake-csum.pcap, evasion-dup-fake-ttl.pcap, evasion-dup-quic-decoy.pcap
                as evasion-fake-*.pcap and evasion-quic-decoy.pcap; besides, `twins` records the
                fake and the real packet, found in the capture's bytes: two packets of the client
                within 5 ms that agree in their first 128 bytes but the TTL and the IPv4 header
                checksum (what a SPAN duplicate filter may take for two copies of one packet) and
                differ further on (`first_difference`: the offset in the IP packet)
  evasion-dnsport-tls.pcap, evasion-dnsport-quic.pcap
                tshark, told that TCP port 53 carries TLS and UDP port 5353 QUIC (it reads
                them as DNS and mDNS otherwise); the generator checked that nginx answered both requests and
                that the QUIC server logged the name
  evasion-quic-decoy.pcap
                tshark on the capture without the datagrams whose UDP checksum is wrong (the
                server's kernel drops them: the generator checked its Udp InCsumErrors counter).
                tshark on the whole capture reads the decoy Initial sent first and takes the real
                one for its retransmission (`tshark_reads`); the decoy is `not_received`
  evasion-sni-two-extensions.pcap, evasion-sni-two-names.pcap, evasion-sni-nul.pcap,
  evasion-sni-trailing.pcap
                a server_name extension no TLS library sends (two extensions, two host_names in
                one list, a NUL inside a name, bytes past the list): `names` is every name the
                ClientHello holds, since a server on another library than OpenSSL may take any:
                the names tshark lists (tls.handshake.extensions_server_name; up to the NUL where a
                name has one), and each name with a NUL whole, from the bytes of tshark's field
                (its PDML `value`), written as the sensor's event format writes such a name (lower
                case, bytes other than printable ASCII and the backslash as `\\xNN`). The
                extension's shape comes from its bytes as tshark gives them (PDML), checked against
                tshark's own fields. The server (a plain `openssl s_server`) refused every one with
                a fatal alert, recorded in `server_answers` (from the raw TCP payload, checked
                against tshark's tls.alert_message); `alerts` is looked up in the exact table and,
                for a name no exact entry has, a suffix table (below)
  evasion-quic-retry.pcap
                tshark on the capture from the server's Retry on: a server that answers with a
                Retry keeps nothing of the Initial it answered (RFC 9000 §8.1.2) and parses no
                hello in it (the generator checked the server's log). tshark on the whole capture
                reads only the hello before the Retry (`tshark_reads`), whose decoy name is
                `not_received` (the server did not take it)
  evasion-quic-big-hello.pcap
                tshark (it reassembles the ~31 KB hello from its Initials; the generator checked
                that the server logged the name); the deriver checks the hello is over 16 KiB
  evasion-rst.pcap, evasion-rst-ttl.pcap, evasion-rst-syn.pcap, evasion-badseq.pcap, evasion-seqovl.pcap,
  evasion-ip-fragments.pcap, evasion-tls-records.pcap, evasion-paws-ack.pcap,
  evasion-ttl-raised-syn.pcap
                (the fourth round) tshark with `-o tcp.reassemble_out_of_order:TRUE`, checked against
                the server's answer on each connection (from the raw TCP payload): the strict
                s_server answered every one with its handshake, so it received
                dnl-01.geo.kaspersky.com once a connection, and tshark reads that name once a
                connection. Where the decoy's bytes are in the capture (a fake far outside the window,
                the part of a segment before the next expected byte, the fragment of a datagram the
                server dropped), the decoy is `not_received`
  evasion-urgent.pcap, evasion-urgent-reverse.pcap
                (the fourth round's second set; one connection each to the strict s_server, whose
                answer is checked against the name derived: its handshake for
                dnl-01.geo.kaspersky.com, the fatal unrecognized_name alert for any other) the
                ClientHello's names parsed from the client's bytes as the server's socket reads
                them: each segment's urgent byte (the byte before seq + urgent pointer, BSD
                semantics, Linux's default) left out, read out of band. tshark keeps the urgent
                byte in the stream (`tshark_reads`); what it reads is `not_received`
  evasion-paws.pcap
                tshark on the capture without the client's segments that PAWS drops (RFC 7323:
                data whose TSval is more than 1 below the last TSval the server took, as Linux
                checks it; the generator checked the server's TcpExt PAWSEstab). tshark on the
                whole capture reads the PAWS-dropped decoy (`tshark_reads`), `not_received`
  evasion-frag-inside-real.pcap, evasion-frag-inside-decoy.pcap
                tshark (it drops a fragment lying wholly inside one already held and keeps the
                first bytes, as Linux does), checked against the server's answer; the other of
                the real name and the decoy, whose bytes are in the capture (the inner fragment;
                the real ClientHello sent again after the decoy's datagram), is `not_received`
  evasion-paws-oneway.pcap, evasion-hrr-decoy-real-oneway.pcap, evasion-hrr-real-decoy-oneway.pcap,
  evasion-pre-synack-oneway.pcap
                (gen-oneway.sh: the client's side of a two-way capture, as a one-direction tap
                records it) the two-way capture's expectations, from its server's answer; tshark
                checks that the capture holds exactly the client's frames of the two-way one
Python 3 standard library only; needs tshark in PATH.
"""
import difflib
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "expected-evasion.json")
# The name openssl s_server accepts in the overlap cases, and the decoy the generator puts in the
# other copy (the same length).
ACCEPTED = "dnl-01.geo.kaspersky.com"
DECOY = "updates.example-corp.com"
# Exact names -> (vendor, category), as rules/kaspersky.toml has them.
VENDOR_NAMES = {
    "dnl-01.geo.kaspersky.com": ("kaspersky", "update"),
    "dnl-02.geo.kaspersky.com": ("kaspersky", "update"),
    "activation-v2.kaspersky.com": ("kaspersky", "activation"),
    "s07.upd.kaspersky.com": ("kaspersky", "update"),
}
# Suffixes -> (vendor, category), as rules/kaspersky.toml has them, for names that no exact name
# above is (a name with a NUL inside it): the broadest kaspersky.com rule.
VENDOR_SUFFIXES = {"kaspersky.com": ("kaspersky", "web-portal")}
# Names in these captures that are no vendor's.
OTHER_NAMES = {"www.example.org", DECOY, ACCEPTED + "\\x00.x", "nl-01.geo.kaspersky.comz"}
UNRECOGNIZED_NAME = "112"
# The captures with a DPI-evasion fake in front of the real ClientHello.
FAKES = ("evasion-fake-ttl.pcap", "evasion-fake-noack.pcap", "evasion-fake-md5.pcap",
         "evasion-dup-fake-csum.pcap", "evasion-dup-fake-ttl.pcap", "evasion-presyn.pcap",
         "evasion-fake-ack-unsent.pcap", "evasion-fake-ack-old.pcap", "evasion-syn-data.pcap",
         "evasion-pre-synack.pcap", "evasion-pre-synack-late.pcap")
# The fakes sent as twins of the real packet (a SPAN duplicate filter's blind spot).
TWINS = ("evasion-dup-fake-csum.pcap", "evasion-dup-fake-ttl.pcap", "evasion-dup-quic-decoy.pcap")
# What a mirror's copies of one packet may differ in: the IPv4 TTL and header checksum.
MIRROR_CHANGES = {8, 10, 11}
# The bytes of an IP packet a duplicate filter might hash (the sensor's: 128), and its window.
TWIN_PREFIX, TWIN_WINDOW_US = 128, 5000
HRRS = ("evasion-hrr-decoy-real.pcap", "evasion-hrr-real-decoy.pcap")
SNI_MALFORMED = ("evasion-sni-two-extensions.pcap", "evasion-sni-two-names.pcap",
                 "evasion-sni-nul.pcap", "evasion-sni-trailing.pcap")
# The fourth round: capture -> the number of connections, each answered with the handshake.
ROUND4 = {"evasion-rst.pcap": 2, "evasion-rst-ttl.pcap": 1, "evasion-rst-syn.pcap": 2,
          "evasion-badseq.pcap": 2,
          "evasion-seqovl.pcap": 2, "evasion-ip-fragments.pcap": 3, "evasion-tls-records.pcap": 2,
          "evasion-paws-ack.pcap": 1, "evasion-ttl-raised-syn.pcap": 1}
# Its second set: capture -> how the names the server received are derived (one connection each).
ROUND4B = {"evasion-urgent.pcap": "urgent", "evasion-urgent-reverse.pcap": "urgent",
           "evasion-paws.pcap": "paws", "evasion-frag-inside-real.pcap": "tshark",
           "evasion-frag-inside-decoy.pcap": "tshark"}
# One-direction tap captures (gen-oneway.sh): capture -> (the two-way capture it is the client
# side of, the client).
ONE_WAY = {"evasion-paws-oneway.pcap": ("evasion-paws.pcap", "10.40.1.12"),
           "evasion-hrr-decoy-real-oneway.pcap": ("evasion-hrr-decoy-real.pcap", "10.40.1.11"),
           "evasion-hrr-real-decoy-oneway.pcap": ("evasion-hrr-real-decoy.pcap", "10.40.1.11"),
           "evasion-pre-synack-oneway.pcap": ("evasion-pre-synack.pcap", "10.40.1.12")}
# The name the server of evasion-urgent-reverse.pcap reads (the urgent 'd' before it out of band).
URGENT_REVERSE = "nl-01.geo.kaspersky.comz"
# TLS alert descriptions (RFC 8446 §6.2) the servers of these captures send.
ALERT_NAMES = {"47": "illegal_parameter", "50": "decode_error", "112": "unrecognized_name"}
SMUGGLING = ("evasion-http-te-cl.pcap", "evasion-http-te-cl-control.pcap")
# The random of a ServerHello that is a HelloRetryRequest (RFC 8446 §4.1.3).
HRR_RANDOM = "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"


TSHARK_OPTIONS = ("-o", "tcp.reassemble_out_of_order:TRUE", "-o", "tcp.desegment_tcp_streams:TRUE",
                  "-o", "tls.desegment_ssl_records:TRUE")


def tshark(pcap, *fields, options=()):
    cmd = ["tshark", "-n", "-r", pcap, *TSHARK_OPTIONS, *options, "-T", "fields",
           "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def tshark_filtered(pcap, display_filter, options=()):
    """A copy of PCAP with only the frames that match DISPLAY_FILTER, in a temporary directory
    (the caller's `with`): (directory, path)."""
    tmp = tempfile.TemporaryDirectory()
    out = os.path.join(tmp.name, os.path.basename(pcap))
    subprocess.run(["tshark", "-n", "-r", pcap, *options, "-Y", display_filter, "-w", out],
                   check=True, capture_output=True)
    return tmp, out


def names(pcap, options=()):
    """Every ClientHello server name and HTTP Host tshark reads, with its client."""
    got = []
    for src, htype, sni, hosts in tshark(pcap, "ip.src", "tls.handshake.type",
                                         "tls.handshake.extensions_server_name", "http.host",
                                         options=options):
        if "1" in htype.split(",") and sni:
            got.append({"host": src, "kind": "tls_sni", "value": sni.lower()})
        for h in filter(None, hosts.split(",")):
            got.append({"host": src, "kind": "http_host", "value": h.split(":")[0].lower()})
    return got


def quic_names(pcap, options=()):
    """Every ClientHello server name tshark reads in a QUIC Initial, with its client."""
    return [{"host": src, "kind": "quic_sni", "value": sni.lower()}
            for src, protocols, htype, sni in tshark(pcap, "ip.src", "frame.protocols",
                                                     "tls.handshake.type",
                                                     "tls.handshake.extensions_server_name",
                                                     options=options)
            if "quic" in protocols.split(":") and "1" in htype.split(",") and sni]


def tcp_streams(pcap, port, options=()):
    """{stream: (client, client's bytes, server's bytes)} of the TCP connections to PORT, from
    the raw payloads in sequence order (the captures' own clients send in order)."""
    segments = {}
    for stream, src, sport, seq, payload in tshark(pcap, "tcp.stream", "ip.src", "tcp.srcport",
                                                   "tcp.seq_raw", "tcp.payload", options=options):
        if payload:
            segments.setdefault(int(stream), []).append((sport == str(port), src, int(seq),
                                                         bytes.fromhex(payload)))
    out = {}
    for stream, segs in sorted(segments.items()):
        client = {src for from_server, src, _, _ in segs if not from_server}
        if len(client) != 1:
            sys.exit(f"{pcap}: stream {stream} has {len(client)} clients")
        def data(from_server):
            parts = {}
            for srv, _, seq, payload in segs:
                if srv == from_server:
                    parts.setdefault(seq, payload)
            return b"".join(parts[q] for q in sorted(parts))
        out[stream] = (client.pop(), data(False), data(True))
    return out


def answer_of(server_bytes):
    """The first record the server sent: "handshake", "unrecognized_name" or sys.exit."""
    if server_bytes[:1] == b"\x16":
        return "handshake"
    if server_bytes[:1] == b"\x15" and server_bytes[3:7] == bytes([0, 2, 2, int(UNRECOGNIZED_NAME)]):
        return "unrecognized_name"
    sys.exit(f"the server's first record is neither a handshake nor unrecognized_name: "
             f"{server_bytes[:7].hex()}")


def record_versions(pcap):
    """(names, record versions, tshark's names) of evasion-record-version.pcap: per connection
    to the strict s_server, its answer to the client's ClientHello record."""
    found, versions = [], []
    for stream, (client, sent, answer) in tcp_streams(pcap, 443).items():
        if sent[:1] != b"\x16" or sent[5:6] != b"\x01" or ACCEPTED.encode() not in sent:
            sys.exit(f"{pcap}: stream {stream}: the client's first record is no ClientHello "
                     f"naming {ACCEPTED}")
        versions.append(sent[1:3].hex())
        if answer_of(answer) != "handshake":
            sys.exit(f"{pcap}: stream {stream}: s_server refused {ACCEPTED}")
        found.append({"host": client, "kind": "tls_sni", "value": ACCEPTED})
    return found, versions, names(pcap)


def server_hellos(pcap):
    """The randoms of the ServerHellos the server (port 443) sent, in order."""
    out = []
    for sport, htypes, randoms in tshark(pcap, "tcp.srcport", "tls.handshake.type",
                                         "tls.handshake.random"):
        if sport == "443":
            # a ServerHello's random comes in the order of the handshake types that have one
            rands = iter(randoms.split(","))
            out += [next(rands) for t in htypes.split(",") if t == "2"]
    return out


def answered(pcap):
    """(names, not_received, tshark's names) of an HTTP capture: per connection, the requests
    the server answered (N responses: the first N requests, as nginx answers in order)."""
    requests, responses = {}, {}
    for stream, src, hosts, codes in tshark(pcap, "tcp.stream", "ip.src", "http.host",
                                            "http.response.code"):
        for h in filter(None, hosts.split(",")):
            requests.setdefault(stream, []).append(
                {"host": src, "kind": "http_host", "value": h.split(":")[0].lower()})
        responses[stream] = responses.get(stream, 0) + len(list(filter(None, codes.split(","))))
    found, other, read = [], [], []
    for stream, reqs in requests.items():
        n = responses.get(stream, 0)
        found += reqs[:n]
        other += reqs[n:]
        read += reqs
    return found, other, read


def quic_split(pcap, dropped_filter, options=()):
    """(names, not_received) of a QUIC capture: tshark's names in the capture without the frames
    DROPPED_FILTER matches (which the server never took), and in those frames alone."""
    out = []
    for f in (f"!({dropped_filter})", dropped_filter):
        tmp, part = tshark_filtered(pcap, f, options)
        with tmp:
            out.append(quic_names(part))
    return out[0], out[1]


def quic_decoy(pcap):
    """evasion-quic-decoy.pcap: the datagrams with a wrong UDP checksum are dropped (one, the
    client's)."""
    bad = "udp.checksum.status == 0"  # 0: Bad
    options = ("-o", "udp.check_checksum:TRUE")
    rows = tshark(pcap, "ip.src", "udp.checksum.status", options=options)
    dropped = [src for src, status in rows if status == "0"]
    client = {n["host"] for n in quic_names(pcap)}
    if len(dropped) != 1 or set(dropped) != client:
        sys.exit(f"{pcap}: datagrams with a wrong checksum from {dropped}, want one from {client}")
    return quic_split(pcap, bad, options)


def quic_retry(pcap):
    """evasion-quic-retry.pcap: the frames before the server's (first) Retry, all the client's,
    are dropped."""
    rows = tshark(pcap, "frame.number", "ip.src", "quic.long.packet_type")
    client = {n["host"] for n in quic_names(pcap)}
    retry = next((int(n) for n, src, types in rows
                  if src not in client and "3" in types.split(",")), None)
    if retry is None:
        sys.exit(f"{pcap}: the server sent no Retry")
    before = {src for n, src, _ in rows if int(n) < retry}
    if before != client:
        sys.exit(f"{pcap}: frames before the Retry from {before}, want only the client's {client}")
    return quic_split(pcap, f"frame.number < {retry}")


def ipv4_packets(pcap):
    """(time in microseconds, IPv4 packet) of each Ethernet frame of a classic pcap file."""
    data = open(pcap, "rb").read()
    magic = data[:4]
    order = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">"}.get(magic)
    if order is None:
        sys.exit(f"{pcap}: not a microsecond classic pcap file")
    at, out = 24, []
    while at + 16 <= len(data):
        secs, micros, kept, _ = struct.unpack(order + "IIII", data[at:at + 16])
        frame = data[at + 16:at + 16 + kept]
        at += 16 + kept
        if frame[12:14] == b"\x08\x00":
            out.append((secs * 1_000_000 + micros, frame[14:]))
    return out


def twins(pcap):
    """The fake and the real packet of a `dup` capture: two packets from the client, one after
    the other within TWIN_WINDOW_US, that agree in every byte of their first TWIN_PREFIX but the
    TTL and the header checksum (as a mirror's two copies of one packet do) and differ further
    on. Exactly one such pair, or the capture does not test what it says."""
    packets = ipv4_packets(pcap)
    pairs = []
    for i, (t0, a) in enumerate(packets):
        for t1, b in packets[i + 1:]:
            if t1 - t0 > TWIN_WINDOW_US:
                break
            if len(a) != len(b) or a == b or len(a) <= TWIN_PREFIX:
                continue
            if all(x == y or j in MIRROR_CHANGES for j, (x, y) in enumerate(zip(a[:TWIN_PREFIX], b))):
                first = next(j for j in range(TWIN_PREFIX, len(a)) if a[j] != b[j]) \
                    if a[TWIN_PREFIX:] != b[TWIN_PREFIX:] else None
                if first is not None:
                    pairs.append({"host": socket.inet_ntoa(a[12:16]), "gap_us": t1 - t0,
                                  "first_difference": first})
    if len(pairs) != 1:
        sys.exit(f"{pcap}: {len(pairs)} pairs of twins, want 1: {pairs}")
    return pairs


def server_answer(pcap):
    """The first TLS record the server (port 443) sent: ("handshake", None) or ("alert", (level,
    description))."""
    rows = tshark(pcap, "tcp.srcport", "tls.record.content_type", "tls.alert_message.level",
                  "tls.alert_message.desc")
    for sport, ctype, level, desc in rows:
        if sport == "443" and ctype:
            first = ctype.split(",")[0]
            if first == "22":
                return "handshake", None
            if first == "21":
                return "alert", (level.split(",")[0], desc.split(",")[0])
            sys.exit(f"{pcap}: the server's first record has content type {first}")
    sys.exit(f"{pcap}: the server sent no TLS record")


def by_answer(pcap):
    """(names, not_received, tshark's names) of a capture to the strict s_server, from the
    server's answer: its handshake means it received ACCEPTED, a fatal unrecognized_name alert
    the DECOY."""
    raw = open(pcap, "rb").read()
    for n in (ACCEPTED, DECOY):
        if n.encode() not in raw:
            sys.exit(f"{pcap}: {n} is not in the capture")
    read = names(pcap)
    clients = {n["host"] for n in read}
    if len(clients) != 1:
        sys.exit(f"{pcap}: tshark reads ClientHellos of {len(clients)} clients, want 1")
    client = read[0]["host"]
    kind, alert = server_answer(pcap)
    if kind == "handshake":
        received, other = ACCEPTED, DECOY
    elif alert == ("2", UNRECOGNIZED_NAME):
        received, other = DECOY, ACCEPTED
    else:
        sys.exit(f"{pcap}: the server's alert is {alert}, not a fatal unrecognized_name")
    return ([{"host": client, "kind": "tls_sni", "value": received}],
            [{"host": client, "kind": "tls_sni", "value": other}], read)


def overlap(pcap):
    """(names, not_received) of an overlap capture, from the server's answer."""
    found, other, read = by_answer(pcap)
    if len(read) != 1:
        sys.exit(f"{pcap}: tshark reads {len(read)} ClientHellos, want 1")
    if read[0]["value"] != other[0]["value"]:
        sys.exit(f"{pcap}: tshark reads {read[0]['value']}, the name the server received: "
                 "the capture does not show the overlap that tshark and Linux resolve differently")
    return found, other


def each_answered(pcap, options=()):
    """(names, not_received) of a fourth-round capture: tshark's names, one a connection, each
    connection's first server record a handshake (the strict s_server received ACCEPTED); the
    decoy is not_received where its bytes are in the capture."""
    read = names(pcap, options)
    streams = tcp_streams(pcap, 443, options)
    ports = [sport for _, sport, htype in tshark(pcap, "ip.src", "tcp.srcport", "tls.handshake.type",
                                                 options=options)
             if "1" in htype.split(",")]
    if len(read) != len(streams) or len(set(ports)) != len(streams):
        sys.exit(f"{pcap}: tshark reads {len(read)} ClientHellos on {len(set(ports))} connections, "
                 f"want one on each of {len(streams)}")
    for stream, (client, _, answer) in sorted(streams.items()):
        if answer_of(answer) != "handshake":
            sys.exit(f"{pcap}: stream {stream}: the server did not answer with its handshake")
    if any(n["value"] != ACCEPTED for n in read):
        sys.exit(f"{pcap}: tshark reads {read}, want only {ACCEPTED}")
    clients = {n["host"] for n in read}
    other = []
    if DECOY.encode() in open(pcap, "rb").read():
        other = [{"host": c, "kind": "tls_sni", "value": DECOY} for c in sorted(clients)]
    return read, other


def hello_names(data):
    """The host_names of the ClientHello that DATA (a client's bytes) starts with: its first
    record's handshake message, parsed (RFC 8446 §4.1.2)."""
    if data[:1] != b"\x16" or data[5:6] != b"\x01":
        sys.exit(f"no ClientHello record: {data[:6].hex()}")
    msg = data[9:9 + int.from_bytes(data[6:9], "big")]
    i = 2 + 32
    i += 1 + msg[i]                                    # session id
    i += 2 + int.from_bytes(msg[i:i + 2], "big")       # cipher suites
    i += 1 + msg[i]                                    # compression methods
    end = i + 2 + int.from_bytes(msg[i:i + 2], "big")
    i += 2
    found = []
    while i + 4 <= end:
        kind, n = int.from_bytes(msg[i:i + 2], "big"), int.from_bytes(msg[i + 2:i + 4], "big")
        if kind == 0:
            found += server_name_extension(msg[i + 4:i + 4 + n])[0]
        i += 4 + n
    if i != end or end != len(msg):
        sys.exit(f"the ClientHello's extensions do not parse: {msg.hex()}")
    return [n.decode().lower() for n in found]


def urgent_read(pcap):
    """The names of the ClientHello in the client's bytes as the server's socket reads them: each
    segment (in sequence order, the first copy of a sequence number) without the byte its urgent
    pointer points at (the byte before seq + pointer: BSD semantics, Linux's default,
    tcp_stdurg=0), which a socket without SO_OOBINLINE reads out of band."""
    parts, urgent = {}, 0
    for sport, seq, flags, pointer, payload in tshark(pcap, "tcp.srcport", "tcp.seq_raw", "tcp.flags",
                                                     "tcp.urgent_pointer", "tcp.payload"):
        if sport == "443" or not payload:
            continue
        data = bytes.fromhex(payload)
        if int(flags, 16) & 0x20:
            at = int(pointer) - 1
            if not 0 <= at < len(data):
                sys.exit(f"{pcap}: an urgent pointer ({pointer}) outside its segment ({len(data)} bytes)")
            data = data[:at] + data[at + 1:]
            urgent += 1
        parts.setdefault(int(seq), data)
    if urgent != 1:
        sys.exit(f"{pcap}: {urgent} segments with urgent data, want 1")
    return hello_names(b"".join(parts[q] for q in sorted(parts)))


def paws_dropped(pcap):
    """The frames of the client's data segments that PAWS drops (RFC 7323 §5; Linux:
    (s32)(ts_recent - TSval) > 1): ts_recent is the TSval of the last segment the server took."""
    dropped, recent = [], None
    for frame, sport, length, tsval in tshark(pcap, "frame.number", "tcp.srcport", "tcp.len",
                                              "tcp.options.timestamp.tsval"):
        if sport == "443":
            continue
        if not tsval:
            sys.exit(f"{pcap}: frame {frame}: a client segment without a timestamp")
        tsval = int(tsval)
        older = (recent - tsval + 2**31) % 2**32 - 2**31 if recent is not None else 0  # (s32)
        if int(length) and older > 1:
            dropped.append(frame)
        else:
            recent = tsval
    if len(dropped) != 1:
        sys.exit(f"{pcap}: PAWS drops frames {dropped}, want 1")
    return dropped


def inside_out(pcap, how):
    """(names, not_received, tshark's names) of a capture of the fourth round's second set: the
    names derived as HOW says, checked against the server's answer (its handshake if and only if
    it received ACCEPTED); not_received: what tshark reads that the server did not receive, and
    the other of ACCEPTED and DECOY where its bytes are in the capture."""
    streams = tcp_streams(pcap, 443)
    if len(streams) != 1:
        sys.exit(f"{pcap}: {len(streams)} connections, want 1")
    ((client, _, answer),) = streams.values()
    read = names(pcap)
    tls = lambda v: {"host": client, "kind": "tls_sni", "value": v}  # noqa: E731
    if how == "urgent":
        found = [tls(n) for n in urgent_read(pcap)]
    elif how == "paws":
        tmp, part = tshark_filtered(pcap, "!(frame.number in {%s})" % " ".join(paws_dropped(pcap)))
        with tmp:
            found = names(part)
    else:
        found = read
    got = [n["value"] for n in found]
    if len(got) != 1 or (answer_of(answer) == "handshake") != (got == [ACCEPTED]):
        sys.exit(f"{pcap}: the server answered with its {answer_of(answer)}, but the name derived "
                 f"is {got}")
    raw = open(pcap, "rb").read()
    other = [n for n in read if n not in found]
    other += [tls(v) for v in (ACCEPTED, DECOY)
              if v not in got and v.encode() in raw and tls(v) not in other]
    return found, other, read


def escaped(raw):
    """A name's bytes as the sensor's events write them (sensor/extract/names.rs, README): lower
    case, every byte other than printable ASCII and the backslash as \\xNN."""
    return "".join(chr(b).lower() if 0x21 <= b <= 0x7E and b != 0x5C else f"\\x{b:02x}" for b in raw)


def server_name_extension(data):
    """(host_name bytes, bytes past the list) of a server_name extension's data (RFC 6066 §3),
    or sys.exit when its list does not parse."""
    listed = int.from_bytes(data[:2], "big")
    lst, past, found = data[2:2 + listed], len(data) - 2 - listed, []
    if len(data) < 2 or past < 0:
        sys.exit(f"a server_name list longer than its extension: {data.hex()}")
    while lst:
        n = int.from_bytes(lst[1:3], "big")
        if len(lst) < 3 + n:
            sys.exit(f"a server_name entry longer than its list: {data.hex()}")
        if lst[0] == 0:
            found.append(lst[3:3 + n])
        lst = lst[3 + n:]
    return found, past


def malformed_hellos(pcap):
    """Each ClientHello of PCAP from tshark's PDML: (stream, client, client port, tshark's names,
    the raw bytes of its name fields, [server_name extension data])."""
    xml = subprocess.run(["tshark", "-n", "-r", pcap, *TSHARK_OPTIONS, "-Y", "tls.handshake.type == 1",
                          "-T", "pdml"], check=True, capture_output=True).stdout
    out = []
    for packet in ET.fromstring(xml).iter("packet"):
        fields = list(packet.iter("field"))
        def first(name):
            return next(f.get("show") for f in fields if f.get("name") == name)
        if [f.get("show") for f in fields if f.get("name") == "tls.handshake.type"] != ["1"]:
            sys.exit(f"{pcap}: a packet with other than one ClientHello")
        exts = []
        for f in fields:
            kind = f.find("field[@name='tls.handshake.extension.type']")
            if kind is not None and kind.get("show") == "0":
                raw = bytes.fromhex(f.get("value"))
                if raw[:2] != b"\0\0" or int.from_bytes(raw[2:4], "big") != len(raw) - 4:
                    sys.exit(f"{pcap}: tshark's server_name extension bytes are not one extension")
                exts.append(raw[4:])
        sni = [f for f in fields if f.get("name") == "tls.handshake.extensions_server_name"]
        out.append((int(first("tcp.stream")), first("ip.src"), int(first("tcp.srcport")),
                    [f.get("show") for f in sni], [bytes.fromhex(f.get("value")) for f in sni], exts))
    return out


def server_records(data):
    """The TLS records of a server's bytes: [(content type, body)]."""
    out = []
    while len(data) >= 5:
        n = 5 + int.from_bytes(data[3:5], "big")
        out.append((data[0], data[5:n]))
        data = data[n:]
    return out


def sni_malformed(pcap):
    """(names, tshark's names, shapes, server answers) of an evasion-sni-* capture."""
    streams = tcp_streams(pcap, 443)
    tshark_alerts = {int(stream): (level, desc) for stream, sport, level, desc in
                     tshark(pcap, "tcp.stream", "tcp.srcport", "tls.alert_message.level",
                            "tls.alert_message.desc") if sport == "443" and level}
    found, read, shapes, answers = [], [], [], []
    hellos = malformed_hellos(pcap)
    if sorted(h[0] for h in hellos) != sorted(streams):
        sys.exit(f"{pcap}: not one ClientHello on each connection")
    for stream, client, sport, listed, raw, exts in hellos:
        entries, past = [], 0
        for data in exts:
            names_, extra = server_name_extension(data)
            entries += names_
            past += extra
        if entries != raw:
            sys.exit(f"{pcap}: the names in the extension bytes are not tshark's fields: {entries} {raw}")
        if [n.split(b"\0")[0].decode() for n in raw] != listed:
            sys.exit(f"{pcap}: tshark's names {listed} are not its fields' bytes up to a NUL: {raw}")
        tls = lambda v: {"host": client, "kind": "tls_sni", "value": v}  # noqa: E731
        read += [tls(n.lower()) for n in listed]
        found += [tls(n.lower()) for n in listed] + [tls(escaped(n)) for n in raw if b"\0" in n]
        shapes.append({"host": client, "sport": sport, "server_name_extensions": len(exts),
                       "host_names": len(raw), "names_with_nul": sum(b"\0" in n for n in raw),
                       "bytes_past_list": past})
        records = server_records(streams[stream][2])
        if len(records) != 1 or records[0][0] != 21 or len(records[0][1]) != 2:
            sys.exit(f"{pcap}: stream {stream}: the server's answer is not one alert: {records}")
        level, desc = (str(b) for b in records[0][1])
        if tshark_alerts.get(stream) != (level, desc):
            sys.exit(f"{pcap}: stream {stream}: tshark reads the alert {tshark_alerts.get(stream)}")
        answers.append({"host": client, "sport": sport, "level": int(level),
                        "description": int(desc), "alert": ALERT_NAMES.get(desc, "?")})
    return found, read, shapes, answers


def vendor_of(name):
    if name in VENDOR_NAMES:
        return VENDOR_NAMES[name]
    if name in OTHER_NAMES:
        return None
    for suffix, vendor in VENDOR_SUFFIXES.items():
        if name.endswith("." + suffix):
            return vendor
    sys.exit(f"{name} is in no table of expected_evasion.py")


def alerts(found):
    out = set()
    for n in found:
        vendor = vendor_of(n["value"])
        if vendor:
            out.add((n["host"],) + vendor)
    return [{"host": h, "vendor": v, "category": c} for h, v, c in sorted(out)]


def key(n):
    return json.dumps(n, sort_keys=True)


def derive():
    p = lambda f: os.path.join(HERE, f)  # noqa: E731
    result = {}
    for cap in ("evasion-first-last.pcap", "evasion-reverse.pcap", "evasion-http-empty-line.pcap"):
        source = ("tshark -o tcp.reassemble_out_of_order:TRUE" if "http" not in cap
                  else "tshark http.host")
        result[cap] = {"names": names(p(cap)), "not_received": [], "source": source}
    for cap in ("evasion-overlap-replace.pcap", "evasion-overlap-replace-control.pcap"):
        found, other = overlap(p(cap))
        result[cap] = {"names": found, "not_received": other,
                       "source": "the server's answer (openssl s_server -servername_fatal)"}
    for cap in FAKES:
        found, other, read = by_answer(p(cap))
        result[cap] = {"names": found, "not_received": other,
                       "tshark_reads": sorted(read, key=key),
                       "source": "the server's answer (openssl s_server -servername_fatal)"}
    # The second round
    found, versions, read = record_versions(p("evasion-record-version.pcap"))
    result["evasion-record-version.pcap"] = {
        "names": found, "not_received": [], "tshark_reads": sorted(read, key=key),
        "source": "the server's answer on each connection (openssl s_server -servername_fatal)"}
    big = tcp_streams(p("evasion-big-hello.pcap"), 443)
    result["evasion-big-hello.pcap"] = {"names": names(p("evasion-big-hello.pcap")),
                                        "not_received": [], "source": "tshark"}
    for cap in HRRS:
        result[cap] = {"names": names(p(cap)), "not_received": [],
                       "source": "tshark (the ClientHellos before and after the HelloRetryRequest)"}
    for cap in SMUGGLING:
        found, other, read = answered(p(cap))
        result[cap] = {"names": found, "not_received": other,
                       "source": "tshark's requests that the server answered (in order)"}
        if other:
            result[cap]["tshark_reads"] = sorted(read, key=key)
    for cap, split, source in (
            ("evasion-quic-decoy.pcap", quic_decoy,
             "tshark without the datagrams whose UDP checksum is wrong"),
            ("evasion-dup-quic-decoy.pcap", quic_decoy,
             "tshark without the datagrams whose UDP checksum is wrong"),
            ("evasion-quic-retry.pcap", quic_retry, "tshark from the server's Retry on")):
        found, other = split(p(cap))
        result[cap] = {"names": found, "not_received": other,
                       "tshark_reads": sorted(quic_names(p(cap)), key=key), "source": source}
    # The sixth set: tshark, told that TCP port 53 carries TLS and UDP port 5353 QUIC (it
    # would read them as DNS and mDNS); nginx served both
    # requests, the QUIC server logged the name.
    dns_as_tls = ("-d", "tcp.port==53,tls")
    result["evasion-dnsport-tls.pcap"] = {
        "names": names(p("evasion-dnsport-tls.pcap"), dns_as_tls), "not_received": [],
        "source": "tshark (-d tcp.port==53,tls); nginx answered both requests with 200"}
    result["evasion-dnsport-quic.pcap"] = {
        "names": quic_names(p("evasion-dnsport-quic.pcap"), ("-d", "udp.port==5353,quic")),
        "not_received": [], "source": "tshark (-d udp.port==5353,quic); the server logged the name"}
    big_quic = quic_names(p("evasion-quic-big-hello.pcap"))
    result["evasion-quic-big-hello.pcap"] = {
        "names": big_quic, "not_received": [],
        "source": "tshark (it reassembles the hello from its Initials); the server logged the name"}
    sni_read = {}
    for cap in SNI_MALFORMED:
        found, read, shapes, answers = sni_malformed(p(cap))
        sni_read[cap] = read
        result[cap] = {"names": found, "not_received": [], "malformed": shapes,
                       "server_answers": answers,
                       "source": "tshark's names of each ClientHello and, for a name with a NUL, the "
                                 "whole name from its bytes (PDML); the server's alert"}
        if sorted(read, key=key) != sorted(found, key=key):
            result[cap]["tshark_reads"] = sorted(read, key=key)
    for cap in ROUND4:
        # tshark takes the SYN with another ISN for a new connection, as a fooled sensor does,
        # and then reads no hello after it; without sequence analysis it reads them as the
        # server did (its answers are checked).
        no_seq = ("-o", "tcp.analyze_sequence_numbers:FALSE") if cap == "evasion-rst-syn.pcap" else ()
        found, other = each_answered(p(cap), no_seq)
        result[cap] = {"names": found, "not_received": other,
                       "source": "tshark, one name a connection, each answered with the handshake "
                                 "(openssl s_server -servername_fatal)"}
    for cap, how in ROUND4B.items():
        found, other, read = inside_out(p(cap), how)
        source = {"urgent": "the ClientHello in the client's bytes without the urgent byte (read out "
                            "of band), checked against the server's answer",
                  "paws": "tshark without the segment PAWS drops, checked against the server's answer",
                  "tshark": "tshark, checked against the server's answer"}[how]
        result[cap] = {"names": found, "not_received": other,
                       "source": source + " (openssl s_server -servername_fatal)"}
        if sorted(read, key=key) != sorted(found, key=key):
            result[cap]["tshark_reads"] = sorted(read, key=key)
    for cap, (two_way, client) in ONE_WAY.items():
        # Exactly the client's frames of the two-way capture, by tshark's reading of both.
        sources = [src for (src,) in tshark(p(cap), "ip.src")]
        client_side = [src for (src,) in tshark(p(two_way), "ip.src") if src == client]
        assert sources == client_side, (cap, sources, client_side)
        r = result[two_way]
        result[cap] = {"names": list(r["names"]), "not_received": list(r["not_received"]),
                       "source": f"the server's answer in {two_way}, of which this is the "
                                 "client's side (" + r["source"] + ")"}
        read = names(p(cap))
        if sorted(read, key=key) != sorted(r["names"], key=key):
            result[cap]["tshark_reads"] = sorted(read, key=key)
    for r in result.values():
        r["names"].sort(key=key)
        r["not_received"].sort(key=key)
        r["alerts"] = alerts(r["names"])
    # Scenario checks: a broken generator fails here, loudly.
    def values(cap):
        return [(n["kind"], n["value"]) for n in result[cap]["names"]]
    # Each hello from a DNS port reached its server.
    assert values("evasion-dnsport-tls.pcap") == [("tls_sni", ACCEPTED),
                                                  ("tls_sni", "s07.upd.kaspersky.com")], result
    assert values("evasion-dnsport-quic.pcap") == [("quic_sni", ACCEPTED)], result
    for cap in ("evasion-first-last.pcap", "evasion-reverse.pcap", "evasion-overlap-replace.pcap"):
        assert values(cap) == [("tls_sni", ACCEPTED)], (cap, result[cap])
    assert values("evasion-overlap-replace-control.pcap") == [("tls_sni", DECOY)], result
    assert values("evasion-http-empty-line.pcap") == [
        ("http_host", "activation-v2.kaspersky.com"), ("http_host", "dnl-02.geo.kaspersky.com"),
        ("http_host", "www.example.org")], result["evasion-http-empty-line.pcap"]
    assert result["evasion-overlap-replace-control.pcap"]["alerts"] == [], result
    # Linux took none of the fakes (each server answered with its handshake) and tshark, which
    # keeps the first copy, read each fake's decoy. If a regenerated capture says otherwise, look
    # at the generator's log and change these two lines with the README, not the expectations.
    for cap in FAKES:
        assert values(cap) == [("tls_sni", ACCEPTED)], (cap, result[cap])
        assert [n["value"] for n in result[cap]["tshark_reads"]] == [DECOY], (cap, result[cap])
    # The second round: what each server said it received or served (the generator checked its
    # answer and log); where tshark reads something else, that it does.
    real, decoy = ("tls_sni", ACCEPTED), ("tls_sni", DECOY)
    assert values("evasion-record-version.pcap") == [real, real], result
    assert versions == ["03ff", "0300"], versions
    assert [n["value"] for n in result["evasion-record-version.pcap"]["tshark_reads"]] == [ACCEPTED]
    assert values("evasion-big-hello.pcap") == [real], result["evasion-big-hello.pcap"]
    ((_, (_, hello, answer)),) = big.items()
    assert len(hello) > 16384 + 5 and answer_of(answer) == "handshake", (len(hello), answer[:7])
    for cap, first in zip(HRRS, (DECOY, ACCEPTED)):
        assert values(cap) == [real, decoy], (cap, result[cap])
        assert names(p(cap))[0]["value"] == first, (cap, names(p(cap)))
        hellos = server_hellos(p(cap))
        assert len(hellos) == 2 and hellos[0] == HRR_RANDOM != hellos[1], (cap, hellos)
    activation = ("http_host", "activation-v2.kaspersky.com")
    assert values("evasion-http-te-cl.pcap") == [("http_host", "www.example.org")], result
    assert [(n["kind"], n["value"]) for n in result["evasion-http-te-cl.pcap"]["not_received"]] \
        == [activation], result["evasion-http-te-cl.pcap"]
    assert result["evasion-http-te-cl.pcap"]["alerts"] == [], result["evasion-http-te-cl.pcap"]
    assert values("evasion-http-te-cl-control.pcap") == [activation, ("http_host", "www.example.org")]
    assert values("evasion-quic-big-hello.pcap") == [("quic_sni", ACCEPTED)], result
    big_len = [int(n) for (n,) in tshark(p("evasion-quic-big-hello.pcap"), "tls.handshake.length")
               if n]
    assert big_len and big_len[0] > 16 * 1024, big_len
    for cap in ("evasion-quic-decoy.pcap", "evasion-quic-retry.pcap", "evasion-dup-quic-decoy.pcap"):
        r = result[cap]
        assert values(cap) == [("quic_sni", ACCEPTED)], (cap, r)
        assert [(n["kind"], n["value"]) for n in r["not_received"]] == [("quic_sni", DECOY)], (cap, r)
        assert [n["value"] for n in r["tshark_reads"]] == [DECOY], (cap, r)
    # The third round: each hello's extension has the shape its case says and holds the decoy
    # and the real name; the plain s_server refused every one with a fatal alert.
    www, whole = ("tls_sni", "www.example.org"), "\\x00".join
    shape = lambda e, h, n, b: {"server_name_extensions": e, "host_names": h,  # noqa: E731
                                "names_with_nul": n, "bytes_past_list": b}
    for cap, want_names, want_read, want_shapes in (
            ("evasion-sni-two-extensions.pcap", [real, www], ["www.example.org", ACCEPTED],
             [shape(2, 2, 0, 0)]),
            ("evasion-sni-two-names.pcap", [real, www], ["www.example.org", ACCEPTED],
             [shape(1, 2, 0, 0)]),
            ("evasion-sni-nul.pcap",
             [real, ("tls_sni", whole((ACCEPTED, ".x"))), www,
              ("tls_sni", whole(("www.example.org", ACCEPTED)))],
             ["www.example.org", ACCEPTED], [shape(1, 1, 1, 0)] * 2),
            ("evasion-sni-trailing.pcap", [real], [ACCEPTED], [shape(1, 1, 0, 2)])):
        r = result[cap]
        assert values(cap) == want_names, (cap, r)
        assert [n["value"] for n in sni_read[cap]] == want_read, (cap, sni_read[cap])
        assert [{k: v for k, v in s.items() if k not in ("host", "sport")} for s in r["malformed"]] \
            == want_shapes, (cap, r)
        assert all(a["level"] == 2 for a in r["server_answers"]), (cap, r)
        assert any(a["vendor"] == "kaspersky" for a in r["alerts"]), (cap, r)
    # The fourth round: the server received the real name on every connection; the decoy's bytes
    # are in the captures with a fake (and only there).
    for cap, n in ROUND4.items():
        r = result[cap]
        assert values(cap) == [real] * n, (cap, r)
        with_decoy = cap in ("evasion-badseq.pcap", "evasion-seqovl.pcap", "evasion-ip-fragments.pcap")
        assert [n["value"] for n in r["not_received"]] == ([DECOY] if with_decoy else []), (cap, r)
        assert r["alerts"] and all(a["vendor"] == "kaspersky" for a in r["alerts"]), (cap, r)
    # Its second set: the server received the real name where it answered with its handshake (an
    # urgent byte in the name, a PAWS-dropped decoy, a decoy fragment inside the real datagram's
    # first), the name without the urgent byte and the decoy of the reassembled datagram where it
    # answered with the alert; tshark, fooled by the first three, reads the other name.
    other = lambda cap: [n["value"] for n in result[cap]["not_received"]]  # noqa: E731
    tshark_read = lambda cap: [n["value"] for n in result[cap].get("tshark_reads", [])]  # noqa: E731
    for cap, want, not_received, tshark_wants in (
            ("evasion-urgent.pcap", ACCEPTED, ["dnl-01.geo.kaspersky.cxo"], ["dnl-01.geo.kaspersky.cxo"]),
            ("evasion-urgent-reverse.pcap", URGENT_REVERSE, [ACCEPTED], [ACCEPTED]),
            ("evasion-paws.pcap", ACCEPTED, [DECOY], [DECOY]),
            ("evasion-frag-inside-real.pcap", ACCEPTED, [DECOY], []),
            ("evasion-frag-inside-decoy.pcap", DECOY, [ACCEPTED], [])):
        r = result[cap]
        assert values(cap) == [("tls_sni", want)], (cap, r)
        assert other(cap) == not_received and tshark_read(cap) == tshark_wants, (cap, r)
        assert bool(r["alerts"]) == (want == ACCEPTED), (cap, r)
    # A one-direction tap: the same names as the two-way capture (the server's answer is not in
    # it); tshark still reads the PAWS-dropped decoy, and both hellos around a retry.
    for cap, (two_way, _) in ONE_WAY.items():
        assert values(cap) == values(two_way), (cap, result[cap])
    assert tshark_read("evasion-paws-oneway.pcap") == [DECOY], result["evasion-paws-oneway.pcap"]
    # The fifth set: each fake is the real packet's twin up to past its headers.
    for cap in TWINS:
        pairs = twins(p(cap))
        assert {t["host"] for t in pairs} == {n["host"] for n in result[cap]["names"]}, (cap, pairs)
        result[cap]["twins"] = pairs
    # One name a line: small diffs when a capture is regenerated.
    def entry(cap):
        r = result[cap]
        lists = ",\n".join(
            f"  {json.dumps(k)}: [" + ",".join("\n   " + key(n) for n in r[k]) + ("\n  ]" if r[k] else "]")
            for k in ("alerts", "names", "not_received", "tshark_reads", "malformed", "server_answers",
                      "twins")
            if k in r)
        return f" {json.dumps(cap)}: {{\n{lists},\n  \"source\": {json.dumps(r['source'])}\n }}"
    return "{\n" + ",\n".join(entry(cap) for cap in sorted(result)) + "\n}\n"


def main():
    text = derive()
    json.loads(text)  # the writer above makes valid JSON
    args = sys.argv[1:]
    if args == ["--write"]:
        with open(OUT, "w") as f:
            f.write(text)
    elif args == ["--check"]:
        committed = open(OUT).read() if os.path.exists(OUT) else ""
        if committed != text:
            sys.stderr.writelines(difflib.unified_diff(
                committed.splitlines(True), text.splitlines(True), "expected-evasion.json (committed)",
                "expected-evasion.json (derived now)"))
            sys.exit(1)
    elif not args:
        sys.stdout.write(text)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
