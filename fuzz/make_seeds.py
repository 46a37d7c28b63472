#!/usr/bin/env python3
"""Builds the seed corpora in fuzz/corpus/<target>/ from the project's captures.

Real bytes only (or real bytes re-cut): DNS messages, ClientHellos, server flights, DER
certificates, HTTP request heads and QUIC Initial datagrams come out of pcaps/ and
../shared/conformance/pcaps/ through tshark; the structured targets (defrag, packet_path,
stream, quic_reassembly, ...) get those bytes in the record formats their headers describe.
Each target keeps at most MAX_FILES seeds and MAX_BYTES bytes.

Needs python3 and tshark. Run from anywhere: python3 fuzz/make_seeds.py
Rerunning replaces the corpora (saved regressions/ are not touched).
"""

import glob
import hashlib
import os
import shutil
import struct
import subprocess
import sys

FUZZ = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(FUZZ)
OWN = os.path.join(REPO, "pcaps")
CONF = os.path.normpath(os.path.join(REPO, "..", "shared", "conformance", "pcaps"))
MAX_FILES = 40
MAX_BYTES = 1_000_000

# Index of each pcap link type in fuzz/src/lib.rs LINK_TYPES.
LINK_INDEX = {1: 0, 113: 1, 276: 2, 101: 3, 12: 3, 14: 3, 228: 4, 229: 5, 0: 6, 108: 7,
              239: 8, 104: 9, 9: 10, 50: 10}


def own(name):
    return os.path.join(OWN, name)


def conf(name):
    return os.path.join(CONF, name)


def existing(paths):
    found = [p for p in paths if os.path.exists(p)]
    for p in paths:
        if p not in found:
            print(f"  (missing, skipped: {p})", file=sys.stderr)
    return found


# ---------------------------------------------------------------- pcap reading

def read_pcap(path):
    """(link type, [(ts seconds as float, frame bytes)]) of a legacy pcap file, or None."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return None
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        return None
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    link = struct.unpack(e + "I", data[20:24])[0] & 0x0FFFFFFF
    at, frames = 24, []
    while at + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack(e + "IIII", data[at:at + 16])
        frame = data[at + 16:at + 16 + caplen]
        frames.append((sec + frac / (1e9 if nano else 1e6), frame))
        at += 16 + caplen
    return link, frames


def l3_of(link, frame):
    """(ethertype, bytes after the link header, VLAN/MPLS/PPPoE not stripped) or None."""
    if link == 1:
        at, et = 12, None
        while at + 2 <= len(frame):
            et = struct.unpack(">H", frame[at:at + 2])[0]
            if et in (0x8100, 0x88A8, 0x9100):
                at += 4
                continue
            return et, frame[at + 2:]
        return None
    if link in (101, 12, 14, 228, 229):
        if not frame:
            return None
        return (0x0800 if frame[0] >> 4 == 4 else 0x86DD), frame
    if link in (0, 108):
        return (0x0800 if frame[4:5] and frame[4] >> 4 == 4 else 0x86DD), frame[4:]
    if link == 113:
        return struct.unpack(">H", frame[14:16])[0], frame[16:]
    if link == 276:
        return struct.unpack(">H", frame[0:2])[0], frame[20:]
    return None


def ip_payload(ip):
    """(protocol, payload, fragmented) of an IPv4 / IPv6 packet (no extension headers)."""
    if len(ip) >= 20 and ip[0] >> 4 == 4:
        ihl = (ip[0] & 15) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        frag = struct.unpack(">H", ip[6:8])[0]
        return ip[9], ip[ihl:total], (frag & 0x3FFF) != 0
    if len(ip) >= 40 and ip[0] >> 4 == 6:
        plen = struct.unpack(">H", ip[4:6])[0]
        return ip[6], ip[40:40 + plen], ip[6] == 44
    return None


# ---------------------------------------------------------------- tshark

def tshark_fields(path, fields, display_filter, occurrence="l", desegment=False):
    """Fields per matching frame; of a repeated field, the last (innermost) by default."""
    cmd = ["tshark", "-r", path, "-Y", display_filter, "-T", "fields", "-E", "separator=\t",
           "-E", f"occurrence={occurrence}", "-E", "aggregator=,",
           "-o", f"tcp.desegment_tcp_streams:{'TRUE' if desegment else 'FALSE'}"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    return [line.split("\t") for line in out.splitlines()]


def unhex(h):
    return bytes.fromhex(h.replace(":", "")) if h else b""


def udp_payloads(path, display_filter):
    rows = tshark_fields(path, ["udp.payload"], display_filter)
    return [unhex(r[0]) for r in rows if r and r[0]]


def tcp_streams(path, limit=16384):
    """{stream: (client bytes, server bytes, client segments)}, each side in sequence order."""
    rows = tshark_fields(
        path,
        ["tcp.stream", "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.flags.syn",
         "tcp.flags.ack", "tcp.payload", "ip.src", "ipv6.src"],
        "tcp")
    streams = {}
    for r in rows:
        if len(r) < 9 or not r[0]:
            continue
        s = streams.setdefault(r[0], {"client": None, "segs": {}})
        src = (r[7] or r[8], r[1])
        if r[4] == "1" and r[5] == "0" and s["client"] is None:
            s["client"] = src
        payload = unhex(r[6])
        if payload:
            if s["client"] is None:
                s["client"] = src
            s["segs"].setdefault(src, []).append((int(r[3]), payload))
    result = {}
    for sid, s in streams.items():
        sides = {"client": b"", "server": b""}
        client_segs = []
        for src, segs in s["segs"].items():
            side = "client" if src == s["client"] else "server"
            if side == "client":
                client_segs = segs
            base = min(seq for seq, _ in segs)
            buf, have = bytearray(), 0
            for seq, p in sorted(segs, key=lambda x: (x[0] - base) % 2**32):
                off = (seq - base) % 2**32
                if off > have:
                    break
                buf += p[have - off:]
                have = len(buf)
                if have >= limit:
                    break
            sides[side] = bytes(buf[:limit])
        result[sid] = (sides["client"], sides["server"], client_segs)
    return result


# ---------------------------------------------------------------- corpora

class Corpus:
    def __init__(self, target):
        self.target = target
        self.dir = os.path.join(FUZZ, "corpus", target)
        self.seen = set()
        self.files = []
        self.bytes = 0

    def add(self, name, data):
        if not data or len(self.files) >= MAX_FILES or self.bytes + len(data) > MAX_BYTES:
            return
        digest = hashlib.sha1(data).hexdigest()
        if digest in self.seen:
            return
        self.seen.add(digest)
        base = os.path.splitext(os.path.basename(name))[0][:60]
        self.files.append((f"{base}-{digest[:8]}", data))
        self.bytes += len(data)

    def write(self):
        if os.path.isdir(self.dir):
            shutil.rmtree(self.dir)
        os.makedirs(self.dir)
        for name, data in self.files:
            with open(os.path.join(self.dir, name), "wb") as f:
                f.write(data)
        print(f"{self.target:26} {len(self.files):3} files {self.bytes:8} bytes")


def frames_of(paths, per_file):
    for p in paths:
        parsed = read_pcap(p)
        if not parsed:
            continue
        link, frames = parsed
        for _, frame in frames[:per_file]:
            yield p, link, frame


def packet_path_records(link, frames):
    out, last = bytearray(), None
    for ts, frame in frames:
        delta = 0.0 if last is None else ts - last
        last = ts
        if delta < 0:
            step = 0xFF
        elif delta < 0.128:
            step = int(delta * 1000)
        else:
            step = 0x80 | min(0x7E, int(delta / 10))
        frame = frame[:0xFFFF]
        out += struct.pack(">HBB", len(frame), LINK_INDEX[link], step) + frame
    return bytes(out)


def pcapng_block_seeds():
    """pcapng files whose blocks the parser crate does not read for us: a 12-byte block of a
    local type (0x80000001, no body) before and after a packet, and an Obsolete Packet Block
    (type 2), each around one Ethernet frame of zeros."""
    def block(block_type, body):
        body += b"\0" * (-len(body) % 4)
        length = 12 + len(body)
        return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)
    head = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    head += block(1, struct.pack("<HHI", 1, 0, 65535))
    frame = bytes(60)
    epb = block(6, struct.pack("<IIIII", 0, 0, 1, len(frame), len(frame)) + frame)
    opb = block(2, struct.pack("<HHIIII", 0, 0, 0, 1, len(frame), len(frame)) + frame)
    local = block(0x80000001, b"")
    return [
        ("pcapng-local-block.pcapng", head + local + epb + local),
        ("pcapng-obsolete-packet.pcapng", head + opb),
    ]


def main():
    small_captures = existing([
        own("dns-sll2.pcap"), own("dns-forwarder.pcap"), own("dns-public-resolver.pcap"),
        own("multi-link.pcapng"), own("passive-dns.pcap"), own("dns-null.pcap"),
        own("dns-rawip.pcap"), own("dns-bigendian.pcap"), own("dns-vlan.pcap"),
        conf("suricata__dns__bug-990__input.pcap"), conf("zeek__nflog-http.pcap"),
        conf("zeek__erspanIII.pcap"), conf("zeek__erspanII.pcap"),
        conf("zeek__tunnels__gre-pptp.pcap"), conf("zeek__snap-tcp.pcap"),
        conf("suricata__decode-chdlc-01__hdlc-http_1tx.pcap"), conf("zeek__mpls-in-vlan.pcap"),
        conf("zeek__tunnels__vxlan-triple-v2.pcap"),
        conf("zeek__tunnels__geneve-vxlan-dns-truncated.pcap"),
        conf("zeek__ipv6-fragmented-dns.pcap"), conf("suricata__llmnr__llmnr-udp__input.pcap"),
        conf("zeek__tunnels__gre-over-udp-4754.pcap"), conf("zeek__ipv6-http-atomic-frag.pcap"),
        conf("zeek__quic__quicv2-http3-443.pcap"), conf("zeek__http__get.pcap"),
        conf("zeek__tls__tls1.2.pcap"), conf("zeek__tls__ecdsa-cert.pcap"),
        conf("zeek__vlan-qinqinq.pcap"), conf("zeek__tunnels__ayiya3.pcap"),
        conf("suricata__ipv6-evasion__ipv6-malformed-fragments-9__frag-9.pcap"),
        conf("zeek__tls__tls13-ech.pcap"), conf("suricata__quic-v2__input.pcap"),
    ])

    # capture: whole files (pcap, pcapng, both byte orders, nanosecond and every link type).
    c = Corpus("capture")
    for p in small_captures:
        with open(p, "rb") as f:
            c.add(p, f.read())
    # Regression seeds (issue 13 item 8): blocks framed by length only, built field by field.
    for name, data in pcapng_block_seeds():
        c.add(name, data)
    c.write()

    # packet_path: the same captures re-cut into records (length, link, clock step, frame).
    c = Corpus("packet_path")
    for p in small_captures + existing([
            conf("zeek__tunnels__Teredo.pcap"), conf("zeek__pppoe-over-qinq.pcap"),
            own("tls.pcap"), own("http-proxy.pcap"),
            conf("zeek__quic__quic-multiple-initial-fragmented-crypto.pcap")]):
        parsed = read_pcap(p)
        if parsed and parsed[0] in LINK_INDEX:
            c.add(p, packet_path_records(*parsed))
    c.write()

    # decode_link: single frames, link-type byte first, from every link type and tunnel.
    c = Corpus("decode_link")
    for p, link, frame in frames_of(small_captures + existing([
            conf("zeek__tunnels__Teredo.pcap"), conf("zeek__pppoe-over-qinq.pcap")]), 1):
        if link in LINK_INDEX:
            c.add(p, bytes([LINK_INDEX[link]]) + frame)
    c.write()

    # tunnel: selector byte, then the tunnel header and what it carries.
    c = Corpus("tunnel")
    by_port = [(4789, 1, "zeek__tunnels__vxlan-triple-v2.pcap"),
               (6081, 2, "zeek__tunnels__geneve-vxlan-dns-truncated.pcap"),
               (3544, 3, "zeek__tunnels__Teredo.pcap"),
               (5072, 5, "zeek__tunnels__ayiya3.pcap"),
               (2152, 6, "zeek__tunnels__gtp__gtp1_gn_normal_incl_fragmentation.pcap"),
               (4754, 0, "zeek__tunnels__gre-over-udp-4754.pcap")]
    for port, sel, name in by_port:
        for payload in udp_payloads(conf(name), f"udp.port == {port}")[:4]:
            c.add(name, bytes([sel]) + payload)
    for name in ["zeek__tunnels__Teredo.pcap"]:
        for payload in udp_payloads(conf(name), "udp.port != 3544 && ipv6")[:2]:
            c.add(name, bytes([4]) + payload)
    for p, link, frame in frames_of(existing([
            conf("zeek__erspanIII.pcap"), conf("zeek__erspanII.pcap"),
            conf("zeek__tunnels__gre-pptp.pcap"), conf("zeek__tunnels__gre-sample.pcap"),
            conf("zeek__mpls-in-vlan.pcap"), conf("zeek__pppoe-over-qinq.pcap")]), 6):
        l3 = l3_of(link, frame)
        if not l3:
            continue
        et, rest = l3
        if et == 0x8847:
            c.add(p, bytes([7]) + rest)
        elif et == 0x8864:
            c.add(p, bytes([8]) + rest)
            c.add(p, bytes([9]) + rest[6:])
        elif et == 0x0800:
            ip = ip_payload(rest)
            if ip and ip[0] == 47:
                c.add(p, bytes([0]) + ip[1])
    c.write()

    # defrag: fragmented captures as raw-IP records, and fragments built field by field.
    c = Corpus("defrag")
    for p in existing([conf("zeek__ipv6-fragmented-dns.pcap"),
                       conf("suricata__ipv6-evasion__ipv6-malformed-fragments-9__frag-9.pcap"),
                       conf("zeek__ipv6-http-atomic-frag.pcap"),
                       conf("zeek__tunnels__gtp__gtp1_gn_normal_incl_fragmentation.pcap"),
                       conf("suricata__quic-frag-unordered__input.pcap")]):
        parsed = read_pcap(p)
        if not parsed:
            continue
        link, frames = parsed
        records = bytearray([0])
        for _, frame in frames:
            l3 = l3_of(link, frame)
            if l3 and l3[0] in (0x0800, 0x86DD):
                ip = l3[1][:0xFFFF]
                records += bytes([0x80]) + struct.pack(">H", len(ip)) + ip
        c.add(p, bytes(records))
    hdr = bytes([0x45, 0, 0, 0, 0, 7, 0x20, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
    udp = struct.pack(">HHHH", 40000, 53, 40, 0) + b"\xab\xcd\x01\x00" + bytes(28)
    for order, name in [((0, 1, 2), "built-v4-in-order"), ((2, 0, 1), "built-v4-reordered"),
                        ((0, 0, 1, 2), "built-v4-duplicate"), ((0, 1, 1, 2), "built-v4-dup2")]:
        rec = bytearray([0])
        for i in order:
            more = 1 if i < 2 else 0
            piece = udp[i * 16:(i + 1) * 16] if i < 2 else udp[32:]
            rec += bytes([more, 0, 7, 0]) + struct.pack(">HH", i * 2, len(piece)) + hdr + piece
        c.add(name, bytes(rec))
    rec = bytearray([0])
    for i in range(3):
        piece = udp[i * 16:(i + 1) * 16] if i < 2 else udp[32:]
        rec += bytes([1 if i < 2 else 0, 2, 9, 0]) + struct.pack(">HH", i * 2, len(piece)) + piece
    c.add("built-v6", bytes(rec))
    c.write()

    # dns: DNS messages over UDP and TCP (length prefix stripped).
    c = Corpus("dns")
    dns_caps = existing([own("dns.pcap"), own("dns-nsec.pcap"), own("passive-dns.pcap")]) + \
        sorted(glob.glob(conf("*dns*"))) + existing([conf("suricata__llmnr__llmnr-udp__input.pcap")])
    for p in dns_caps:
        msgs = udp_payloads(p, "dns && udp")[:3]
        for client, server, _ in list(tcp_streams(p).values())[:1]:
            msgs += [client[2:], server[2:]]
        for m in msgs:
            c.add(p, m)
    c.write()

    # TLS and HTTP: the first bytes of each side of TCP streams.
    hello, flight, message, http = (Corpus("tls_client_hello"), Corpus("tls_server_flight"),
                                    Corpus("tls_client_hello_message"), Corpus("http"))
    tls_caps = existing([own("tls.pcap")]) + sorted(glob.glob(conf("*tls*"))) + existing([
        conf("zeek__rdp__rdp-to-ssl.pcap"), conf("zeek__mysql__encrypted.pcap")])
    for p in tls_caps:
        for client, server, _ in list(tcp_streams(p).values())[:2]:
            if client[:1] == b"\x16":
                hello.add(p, client)
                n = struct.unpack(">H", client[3:5])[0] if len(client) >= 5 else 0
                message.add(p, client[5:5 + n])
            if server[:1] == b"\x16":
                flight.add(p, server)
    http_caps = existing([own("http-proxy.pcap")]) + sorted(glob.glob(conf("*http*")))
    for p in http_caps:
        for client, _, _ in list(tcp_streams(p).values())[:2]:
            if client[:1].isalpha():
                http.add(p, client[:4096])
    for corpus in (hello, flight, message, http):
        corpus.write()

    # cert: DER certificates from server flights in clear (TLS 1.2 and earlier).
    c = Corpus("cert")
    for p in tls_caps:
        rows = tshark_fields(p, ["tls.handshake.certificate"], "tls.handshake.certificate", "a",
                            desegment=True)
        for r in rows:
            for der in r[0].split(",")[:3] if r and r[0] else []:
                c.add(p, unhex(der))
    c.write()

    # QUIC: client Initial datagrams; the keyed target gets a first DCID in front.
    initials, keyed, crypto = Corpus("quic_initials"), Corpus("quic_initials_keyed"), \
        Corpus("quic_reassembly")
    for p in sorted(glob.glob(conf("*quic*"))):
        dgrams = [d for d in udp_payloads(p, "quic && udp.dstport == 443")
                  if d[:1] and d[0] & 0x80][:3]
        for d in dgrams:
            initials.add(p, d)
        if len(dgrams) >= 1 and len(dgrams[0]) > 6:
            n = dgrams[0][5]
            dcid = dgrams[0][6:6 + n]
            for d in dgrams[1:] or dgrams:
                keyed.add(p, bytes([n]) + dcid + d)
    # quic_reassembly: a ClientHello message as CRYPTO frames, in order, reversed and
    # overlapping (records: kind, length, offset, data).
    for i, m in enumerate(message.files[:3]):
        data = m[1]
        chunks = [(o, data[o:o + 300]) for o in range(0, len(data), 300)]
        for order_name, order in [("in-order", chunks), ("reversed", chunks[::-1]),
                                  ("overlap", [(max(0, o - 50), data[max(0, o - 50):o + 300])
                                               for o, _ in chunks])]:
            rec = bytearray()
            for o, d in order:
                rec += struct.pack(">BHH", 0, len(d), o) + d
            crypto.add(f"hello{i}-{order_name}", bytes(rec))
    for corpus in (initials, keyed, crypto):
        corpus.write()

    # stream: client TCP segments as pushes (cap, then op 0, seq, length, payload).
    c = Corpus("stream")
    for p in tls_caps[:8] + http_caps[:4]:
        for _, _, segs in list(tcp_streams(p).values())[:1]:
            rec = bytearray(struct.pack(">H", 16384))
            for seq, payload in segs[:24]:
                rec += struct.pack(">BIH", 0, seq, len(payload)) + payload
            c.add(p, bytes(rec))
    c.write()

    # rules: the shipped rule packs.
    c = Corpus("rules")
    for p in sorted(glob.glob(os.path.join(REPO, "rules", "**", "*.toml"), recursive=True)):
        with open(p, "rb") as f:
            c.add(p, f.read())
    c.write()

    dhcp_corpus()


def dhcp_corpus():
    """dhcp: DHCPv4 and DHCPv6 messages (UDP payloads on ports 67/68 and 546/547): every
    message of dhcp-ptr.pcap (dhclient, udhcpc and dnsmasq: DISCOVER, OFFER, REQUEST, ACK,
    RELEASE; SOLICIT, ADVERTISE, REQUEST, REPLY) and of any DHCP capture in the conformance set."""
    c = Corpus("dhcp")
    for p in existing([own("dhcp-ptr.pcap")]) + sorted(glob.glob(conf("*dhcp*"))):
        for m in udp_payloads(p, "dhcp or dhcpv6"):
            c.add(p, m)
    c.write()


if __name__ == "__main__":
    main()
