#!/usr/bin/python3
"""Offline transformations for pcaps/gen-tcpflow.sh (scapy under /usr/bin/python3).

    tcpflow_transform.py midstream IN OUT   the first TLS-over-TCP connection of IN without its
                                            handshake, its ClientHello's segments in reverse order
                                            and the first of them repeated at the end
    tcpflow_transform.py duplicate IN OUT   every record twice, the copy 3 us later; every other
                                            copy carries an 802.1Q tag (VLAN 20), every third
                                            original one too (VLAN 10)
    tcpflow_transform.py insert IN OUT      before the first ClientHello segment of the connection
                                            from port 41012, a segment at the same sequence number
                                            carrying the ClientHello of the connection from port
                                            41011, with a wrong TCP checksum

midstream and duplicate never change a record's bytes except to insert a tag; records keep the
capture's time slots in their new order so the file stays in time order. insert crafts one
segment (the evasion under test) from the capture's own bytes.
"""
import sys

from scapy.all import IP, TCP, Ether, rdpcap, wrpcap  # noqa: E402
from scapy.utils import PcapWriter


def tls_flow(pkts, sport=None):
    """Indexes of the records of one TCP connection to port 443 (the first, or from sport)."""
    for p in pkts:
        if TCP in p and p[TCP].dport == 443 and p[TCP].flags & 0x02 and not p[TCP].flags & 0x10:
            if sport is None or p[TCP].sport == sport:
                key = (p[IP].src, p[TCP].sport)
                break
    else:
        raise SystemExit("no TLS connection found")
    idx = [i for i, p in enumerate(pkts) if TCP in p and
           ((p[IP].src, p[TCP].sport) == key or (p[IP].dst, p[TCP].dport) == key)]
    return key, idx


def hello_segments(pkts, key, idx):
    """The client's payload segments before the server's first payload segment."""
    out = []
    for i in idx:
        p = pkts[i]
        from_client = (p[IP].src, p[TCP].sport) == key
        if not from_client and len(p[TCP].payload) > 0:
            break
        if from_client and len(p[TCP].payload) > 0:
            out.append(i)
    return out


def write(out, records, times):
    w = PcapWriter(out, linktype=1, sync=True)
    for rec, t in zip(records, times):
        rec.time = t
        w.write(rec)
    w.close()


def midstream(src, dst):
    pkts = rdpcap(src)
    key, idx = tls_flow(pkts)
    hello = hello_segments(pkts, key, idx)
    if len(hello) < 3:
        raise SystemExit(f"the ClientHello spans {len(hello)} segments; want at least 3")
    handshake = [i for i in idx if i < hello[0] and len(pkts[i][TCP].payload) == 0]
    keep = [i for i in idx if i not in handshake]
    order = []
    for i in keep:
        if i == hello[0]:
            order.extend(reversed(hello))
            order.append(hello[0])  # a retransmission of the first segment
        elif i not in hello:
            order.append(i)
    times = sorted([pkts[i].time for i in keep] + [pkts[hello[-1]].time])
    write(dst, [pkts[i].copy() for i in order], times)


def tagged(raw, vid):
    return raw[:12] + b"\x81\x00" + vid.to_bytes(2, "big") + raw[12:]


def duplicate(src, dst):
    pkts = rdpcap(src)
    w = PcapWriter(dst, linktype=1, sync=True)
    for n, p in enumerate(pkts):
        raw = bytes(p)
        first = tagged(raw, 10) if n % 3 == 0 else raw
        copy = tagged(raw, 20) if n % 2 == 0 else raw
        for b, t in ((first, p.time), (copy, p.time + 0.000003)):
            e = Ether(b)
            e.time = t
            w.write(e)
    w.close()


def insert(src, dst):
    pkts = rdpcap(src)
    bkey, bidx = tls_flow(pkts, 41011)
    benign = b"".join(bytes(pkts[i][TCP].payload) for i in hello_segments(pkts, bkey, bidx))
    vkey, vidx = tls_flow(pkts, 41012)
    first = hello_segments(pkts, vkey, vidx)[0]
    real = pkts[first]
    fake = real.copy()
    fake[TCP].remove_payload()
    fake[TCP].add_payload(benign)
    del fake[IP].len, fake[IP].chksum, fake[TCP].chksum
    fake = Ether(bytes(fake))
    fake[TCP].chksum ^= 0x5a5a  # what the server drops
    fake = Ether(bytes(fake))
    records = list(pkts[:first]) + [fake] + list(pkts[first:])
    times = [p.time for p in pkts[:first]] + [real.time - 0.000001] + [p.time for p in pkts[first:]]
    write(dst, records, times)


if __name__ == "__main__":
    {"midstream": midstream, "duplicate": duplicate, "insert": insert}[sys.argv[1]](*sys.argv[2:4])
