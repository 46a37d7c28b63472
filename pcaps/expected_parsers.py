#!/usr/bin/env python3
"""Derive what vendorwatch must read from one parser capture (pcaps/gen-parsers.sh), from tshark.

    expected_parsers.py CAPTURE > expected-parsers/CAPTURE.json

Python 3 standard library only; needs tshark in PATH. Never uses vendorwatch's own output.

A name is expected only when tshark reads it WHOLE in this capture:
  dns         a question name (dns.qry.name) tshark decoded, whose wire bytes end inside the captured
              bytes (tshark shows no name it could not finish); names tshark marks as broken
              (`<Name contains a pointer that loops>`) are not names. The value is made from the
              name's wire bytes as tshark locates them: labels joined by dots, lower case, a dot
              inside a label (which tshark prints like a separator) and any byte outside printable
              ASCII written \\xNN, as vendorwatch writes them. host: the asker (source of a query,
              destination of a response).
  http_host   the Host header, when tshark's header line ends with its CR (LF) inside the captured
              bytes (tshark also shows lines the snap length cut short: `Host: dnl-03.ge`), and the
              host of an absolute-form target, when the request line ends inside the captured bytes
  http_connect  the host of a CONNECT target, likewise
  tls_sni     the server_name of a ClientHello whose whole TLS record was captured
Every name is listed once per (host, kind, value).

Output: {capture, names: [{host, kind, value}], detections: [{host, vendor, category}],
         cut: [{host, kind, value}]}
  detections: the (vendor, category) of each expected name that the scenario table of
              expected_from_tshark.py (VENDOR_NAMES) lists
  cut:        names tshark shows but not whole (cut by the snap length): never to be read as names
"""
import ipaddress
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from expected_from_tshark import VENDOR_NAMES, host_part, norm_name  # noqa: E402

FILTER = "dns or http.request or tls.handshake.type == 1"


def is_home(addr):
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return ip.is_private and not ip.is_loopback


def flds(elem, name):
    return [f for f in elem.iter("field") if f.get("name") == name]


def show(elem, name):
    f = flds(elem, name)
    return f[0].get("show") if f else None


def end_of(f):
    return int(f.get("pos", "0")) + int(f.get("size", "0"))


def escape(label_bytes):
    out = []
    for b in label_bytes:
        if b == ord("."):
            out.append("\\x2e")
        elif 0x41 <= b <= 0x5A:
            out.append(chr(b + 32))
        elif 0x21 <= b <= 0x7E and b != ord("\\"):
            out.append(chr(b))
        else:
            out.append("\\x%02x" % b)
    return "".join(out)


def wire_name(hexvalue):
    """Uncompressed wire name -> vendorwatch's text form; None if it holds a pointer."""
    b = bytes.fromhex(hexvalue)
    labels, i = [], 0
    while i < len(b):
        n = b[i]
        if n == 0:
            return ".".join(labels)
        if n & 0xC0:
            return None
        labels.append(escape(b[i + 1:i + 1 + n]))
        i += 1 + n
    return None


def main():
    path = sys.argv[1]
    pdml = subprocess.run(["tshark", "-r", path, "-T", "pdml", "-Y", FILTER],
                          check=True, capture_output=True).stdout
    names, cut = set(), set()
    for pkt in ET.fromstring(pdml).iter("packet"):
        cap_len = int(show(pkt, "frame.cap_len") or 0)
        frame_len = int(show(pkt, "frame.len") or 0)
        was_cut = cap_len < frame_len
        src, dst = show(pkt, "ip.src") or show(pkt, "ipv6.src"), show(pkt, "ip.dst") or show(pkt, "ipv6.dst")
        for proto in pkt.iter("proto"):
            kind = proto.get("name")
            if kind == "dns":
                host = dst if show(proto, "dns.flags.response") == "1" else src
                for q in flds(proto, "dns.qry.name"):
                    text = q.get("show", "")
                    if text.startswith("<"):
                        continue  # tshark could not read a name (a pointer loop, …)
                    value = wire_name(q.get("value", "")) or norm_name(text)
                    if end_of(q) <= cap_len and is_home(host):
                        names.add((host, "dns", value))
            elif kind == "http":
                if not is_home(src) or show(proto, "http.request.method") is None:
                    continue
                method = show(proto, "http.request.method")
                uri = show(proto, "http.request.uri") or ""
                version = flds(proto, "http.request.version")
                # The request line is whole when its terminator (at least the CR) was captured.
                line_whole = bool(version) and (not was_cut or end_of(version[0]) < cap_len)
                for line in flds(proto, "http.request.line"):
                    raw = bytes.fromhex(line.get("value", ""))
                    if not raw.lower().startswith(b"host:"):
                        continue
                    value = host_part(raw[5:].decode("latin-1").strip())
                    whole = not was_cut or raw.endswith(b"\n") or raw.endswith(b"\r")
                    (names if whole else cut).add((src, "http_host", value))
                if method == "CONNECT":
                    (names if line_whole else cut).add((src, "http_connect", host_part(uri)))
                elif uri.lower().startswith(("http://", "https://")):
                    authority = uri.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
                    (names if line_whole else cut).add((src, "http_host", host_part(authority)))
            elif kind == "tls":
                for sni in flds(proto, "tls.handshake.extensions_server_name"):
                    records = [r for r in flds(proto, "tls.record.length")]
                    whole = not was_cut or all(end_of(r) + int(r.get("show", "0")) <= cap_len for r in records)
                    if is_home(src):
                        (names if whole else cut).add((src, "tls_sni", norm_name(sni.get("show", ""))))
    cut -= names
    detections = sorted({(h, *VENDOR_NAMES[v]) for h, _, v in names if v in VENDOR_NAMES})
    out = {
        "capture": os.path.basename(path),
        "names": [{"host": h, "kind": k, "value": v} for h, k, v in sorted(names)],
        "detections": [{"host": h, "vendor": v, "category": c} for h, v, c in detections],
        "cut": [{"host": h, "kind": k, "value": v} for h, k, v in sorted(cut)],
    }
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
