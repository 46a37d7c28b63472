#!/usr/bin/env python3
"""Writes a classic pcap that fills ONE bounded table of vendorwatch with N entries, for
bench/table-costs.sh (which replays it at N and 2N and divides the growth of peak RSS by N).

Kinds (each packet is a well-formed Ethernet/IPv4 frame with correct checksums):
  tcp-flows   N TCP SYNs from distinct (client address, port): N flow-table entries
  udp-flows   N UDP datagrams to port 9 from distinct sources: N flow-table entries
  dns-queries N DNS queries for a benign name from distinct sources: N flows, each with one
              pending DNS transaction (minus udp-flows: the transaction's own cost)
  asked       dns-queries, each for a distinct name (minus dns-queries: the resolver-role
              table's entry for a (resolver, name) asked)
  pdns        N DNS answers (one client, one resolver, one flow) tying a vendor name to N
              distinct addresses: N passive-DNS entries
  hosts       N DNS queries for a vendor name from N distinct home addresses: N detected hosts
              (minus dns-queries: the host's own cost)
  tls-held    N TCP flows (SYN, SYN-ACK, then the first 1,000 bytes of a 3,000-byte TLS
              record): N flows each holding a partial ClientHello in reassembly
These are synthetic packets for a memory measurement only; they are never committed.
"""
import struct
import sys

VENDOR = b"dnl-01.geo.kaspersky.com"
BENIGN = b"www.example.org"
RESOLVER = (10, 250, 0, 53)
SERVER = (10, 250, 0, 80)


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ipv4(src, dst, proto, payload):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0,
                      bytes(src), bytes(dst))
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + payload


def udp(src, dst, sport, dport, payload):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    pseudo = bytes(src) + bytes(dst) + struct.pack("!BBH", 0, 17, len(seg))
    c = csum(pseudo + seg) or 0xFFFF
    seg = seg[:6] + struct.pack("!H", c) + seg[8:]
    return ipv4(src, dst, 17, seg)


def tcp(src, dst, sport, dport, seq, ack, flags, payload=b""):
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload
    pseudo = bytes(src) + bytes(dst) + struct.pack("!BBH", 0, 6, len(seg))
    c = csum(pseudo + seg)
    seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    return ipv4(src, dst, 6, seg)


def eth(ip_packet):
    return b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip_packet


def qname(name):
    return b"".join(bytes([len(l)]) + l for l in name.split(b".")) + b"\0"


def dns_query(txid, name):
    return struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + qname(name) + struct.pack("!HH", 1, 1)


def dns_answer(txid, name, addr):
    return (struct.pack("!HHHHHH", txid, 0x8180, 1, 1, 0, 0) + qname(name) + struct.pack("!HH", 1, 1)
            + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 3600, 4) + bytes(addr))


def client(i):
    # 10.64.0.0/10 inside the default home net (10.0.0.0/8); i < 4M.
    return (10, 64 + (i >> 16), (i >> 8) & 0xFF, i & 0xFF)


def frames(kind, n):
    if kind == "tcp-flows":
        for i in range(n):
            yield tcp(client(i // 1000), SERVER, 20000 + i % 1000, 443, 1000, 0, 0x02)
    elif kind == "udp-flows":
        for i in range(n):
            yield udp(client(i // 1000), SERVER, 20000 + i % 1000, 9, b"x" * 16)
    elif kind == "dns-queries":
        for i in range(n):
            yield udp(client(i // 1000), RESOLVER, 20000 + i % 1000, 53, dns_query(i & 0xFFFF, BENIGN))
    elif kind == "asked":
        for i in range(n):
            name = b"q%d.example.org" % i
            yield udp(client(i // 1000), RESOLVER, 20000 + i % 1000, 53, dns_query(i & 0xFFFF, name))
    elif kind == "pdns":
        c = client(1)
        for i in range(n):
            addr = (198, 18 + (i >> 16), (i >> 8) & 0xFF, i & 0xFF)
            yield udp(RESOLVER, c, 53, 40000, dns_answer(i & 0xFFFF, VENDOR, addr))
    elif kind == "hosts":
        for i in range(n):
            yield udp(client(i), RESOLVER, 20000, 53, dns_query(i & 0xFFFF, VENDOR))
    elif kind == "tls-held":
        record = b"\x16\x03\x01" + struct.pack("!H", 3000) + b"\x01" + b"\0" * 994
        for i in range(n):
            c, port = client(i // 1000), 20000 + i % 1000
            yield tcp(c, SERVER, port, 443, 1000, 0, 0x02)
            yield tcp(SERVER, c, 443, port, 5000, 1001, 0x12)
            yield tcp(c, SERVER, port, 443, 1001, 5001, 0x18, record)
    else:
        raise SystemExit("unknown kind " + kind)


def main():
    kind, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for k, ip in enumerate(frames(kind, n)):
            frame = eth(ip)
            # One packet per 100 µs: nothing times out within a run.
            t = 1_700_000_000_000_000 + k * 100
            f.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), len(frame)))
            f.write(frame)


if __name__ == "__main__":
    main()
