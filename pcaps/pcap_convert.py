#!/usr/bin/env python3
"""Offline conversions of classic pcap files (standard library only).

Used by generate.sh to derive link-layer / file-format variants from real captures:

  pcap_convert.py vlan       IN OUT TPID:VID[,TPID:VID...]  insert 802.1Q / 802.1ad tags (outer first)
  pcap_convert.py bigendian  IN OUT                         rewrite as a big-endian classic pcap
  pcap_convert.py rawip      IN OUT                         Ethernet -> LINKTYPE_RAW (101)
  pcap_convert.py null       IN OUT                         Ethernet -> LINKTYPE_NULL (0), AF_INET=2, AF_INET6=24

The input must be a classic pcap (either byte order, usec or nsec); Ethernet input is
required for vlan/rawip/null. Frames whose EtherType is not IPv4/IPv6 are dropped by rawip
and null (those link types cannot carry ARP).
"""
import struct
import sys

MAGIC_USEC = 0xA1B2C3D4
MAGIC_NSEC = 0xA1B23C4D
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
AF_INET = 2
AF_INET6_BSD = 24  # NetBSD/OpenBSD value; FreeBSD uses 28, macOS 30


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        sys.exit(f"{path}: too short for a pcap file")
    for endian in ("<", ">"):
        magic = struct.unpack(endian + "I", data[:4])[0]
        if magic in (MAGIC_USEC, MAGIC_NSEC):
            break
    else:
        sys.exit(f"{path}: not a classic pcap file (pcapng? convert with editcap -F pcap first)")
    _, vmaj, vmin, thiszone, sigfigs, snaplen, linktype = struct.unpack(endian + "IHHiIII", data[:24])
    header = dict(endian=endian, magic=magic, vmaj=vmaj, vmin=vmin, thiszone=thiszone,
                  sigfigs=sigfigs, snaplen=snaplen, linktype=linktype)
    records = []
    off = 24
    while off < len(data):
        if off + 16 > len(data):
            sys.exit(f"{path}: truncated record header at offset {off}")
        ts_sec, ts_frac, incl, orig = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        if off + incl > len(data):
            sys.exit(f"{path}: truncated record body at offset {off}")
        records.append([ts_sec, ts_frac, orig, data[off:off + incl]])
        off += incl
    return header, records


def write_pcap(path, header, records, endian=None, linktype=None, snaplen_extra=0):
    e = endian or header["endian"]
    lt = header["linktype"] if linktype is None else linktype
    out = [struct.pack(e + "IHHiIII", header["magic"], header["vmaj"], header["vmin"],
                       header["thiszone"], header["sigfigs"], header["snaplen"] + snaplen_extra, lt)]
    for ts_sec, ts_frac, orig, body in records:
        out.append(struct.pack(e + "IIII", ts_sec, ts_frac, len(body), orig))
        out.append(body)
    with open(path, "wb") as f:
        f.write(b"".join(out))


def need_ethernet(header, path):
    if header["linktype"] != LINKTYPE_ETHERNET:
        sys.exit(f"{path}: link type {header['linktype']} is not Ethernet")


def cmd_vlan(src, dst, spec):
    header, records = read_pcap(src)
    need_ethernet(header, src)
    tags = b""
    for item in spec.split(","):
        tpid, vid = item.split(":")
        tpid, vid = int(tpid, 0), int(vid, 0)
        if tpid not in VLAN_TPIDS or not 0 < vid < 4095:
            sys.exit(f"bad tag {item}")
        tags += struct.pack("!HH", tpid, vid & 0x0FFF)  # PCP 0, DEI 0
    out = []
    for ts_sec, ts_frac, orig, body in records:
        if len(body) < 14:
            sys.exit("frame shorter than an Ethernet header")
        # dst MAC + src MAC, then the tags, then the original EtherType and payload
        out.append([ts_sec, ts_frac, orig + len(tags), body[:12] + tags + body[12:]])
    write_pcap(dst, header, out, snaplen_extra=len(tags))


def cmd_bigendian(src, dst):
    header, records = read_pcap(src)
    write_pcap(dst, header, records, endian=">")


def strip_ethernet(header, records, path):
    need_ethernet(header, path)
    out = []
    for ts_sec, ts_frac, orig, body in records:
        ethertype = struct.unpack("!H", body[12:14])[0]
        if ethertype not in (ETH_IPV4, ETH_IPV6):
            continue
        out.append((ts_sec, ts_frac, orig - 14, body[14:], ethertype))
    return out


def cmd_rawip(src, dst):
    header, records = read_pcap(src)
    frames = strip_ethernet(header, records, src)
    write_pcap(dst, header, [[s, f, o, b] for s, f, o, b, _ in frames], linktype=LINKTYPE_RAW)


def cmd_null(src, dst):
    header, records = read_pcap(src)
    frames = strip_ethernet(header, records, src)
    e = header["endian"]  # the AF value is in the byte order of the host that wrote the file
    out = []
    for s, f, o, b, ethertype in frames:
        af = AF_INET if ethertype == ETH_IPV4 else AF_INET6_BSD
        out.append([s, f, o + 4, struct.pack(e + "I", af) + b])
    write_pcap(dst, header, out, linktype=LINKTYPE_NULL)


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    cmd, args = argv[0], argv[1:]
    if cmd == "vlan" and len(args) == 3:
        cmd_vlan(*args)
    elif cmd == "bigendian" and len(args) == 2:
        cmd_bigendian(*args)
    elif cmd == "rawip" and len(args) == 2:
        cmd_rawip(*args)
    elif cmd == "null" and len(args) == 2:
        cmd_null(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
