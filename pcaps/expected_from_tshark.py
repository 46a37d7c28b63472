#!/usr/bin/env python3
"""Derive the expected sensor results of one capture from tshark's dissection (PDML).

    expected_from_tshark.py [--scenario NAME] [--made-by TEXT] [--name FILE-NAME] CAPTURE

Prints the expectation JSON on stdout. With --scenario, also checks the result against what the
scenario (generate.sh) did on the wire and exits non-zero, loudly, when they differ.
Python 3 standard library only; needs tshark in PATH.

Output shape (all lists sorted, names lower case without trailing dot):
  capture, made_by,
  names:      [{host, kind, value}]   kind: dns | tls_sni | http_host | http_connect
  detections: [{host, vendor, category}]
  resolvers:  [address]               home-net sources of DNS responses
  connections_without_name: [{host, dst_ip, dst_port, transport}]
"""
import argparse
import ipaddress
import json
import subprocess
import sys
import xml.etree.ElementTree as ET

# The fixed scenario table: which names the sensor must attribute to which (vendor, category).
# Exact names only; the decoys (notkaspersky.com, kaspersky.com.evil.example, www.example.org)
# are deliberately absent.
VENDOR_NAMES = {
    "dnl-01.geo.kaspersky.com": ("kaspersky", "update"),
    "dnl-02.geo.kaspersky.com": ("kaspersky", "update"),
    "dnl-03.geo.kaspersky.com": ("kaspersky", "update"),
    "s05.upd.kaspersky.com": ("kaspersky", "update"),
    "s07.upd.kaspersky.com": ("kaspersky", "update"),
    "downloads.upd.kaspersky.com": ("kaspersky", "update"),
    "ksn-file-geo.kaspersky-labs.com": ("kaspersky", "ksn"),
    "ksn-url-geo.kaspersky-labs.com": ("kaspersky", "ksn"),
    "dc1.ksn.kaspersky-labs.com": ("kaspersky", "ksn"),
    "activation-v2.kaspersky.com": ("kaspersky", "activation"),
    "www.kaspersky.com": ("kaspersky", "web-portal"),
}
DECOYS = ("notkaspersky.com", "kaspersky.com.evil.example", "www.example.org")
assert not set(DECOYS) & set(VENDOR_NAMES)

DISPLAY_FILTER = "dns or tls.handshake.type == 1 or http.request or (tcp.flags.syn == 1 and tcp.flags.ack == 0)"


def norm_name(s):
    s = s.strip().lower()
    while s.endswith("."):
        s = s[:-1]
    return s


def host_part(authority):
    """'name:port' / '[v6]:port' / 'name' -> host part, lower case."""
    a = authority.strip()
    if a.startswith("["):
        return norm_name(a[1:a.index("]")] if "]" in a else a[1:])
    if a.count(":") == 1:
        a = a.split(":", 1)[0]
    return norm_name(a)


def is_home(addr):
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return ip.is_private and not ip.is_loopback and not ip.is_unspecified


def truthy(show):
    return show in ("1", "True", "true")


def fields(elem, name):
    return [f.get("show", "") for f in elem.iter("field") if f.get("name") == name]


def first(elem, name):
    v = fields(elem, name)
    return v[0] if v else None


def run_tshark(path, proxy_port):
    cmd = [
        "tshark", "-n", "-r", path, "-T", "pdml",
        "-o", "tcp.desegment_tcp_streams:TRUE",
        "-o", "tcp.reassemble_out_of_order:TRUE",
        "-o", "tls.desegment_ssl_records:TRUE",
        "-o", "tls.desegment_ssl_application_data:TRUE",
        "-o", "http.desegment_headers:TRUE",
        "-o", "dns.desegment_dns_messages:TRUE",
        "-d", f"tcp.port=={proxy_port},http",
        "-Y", DISPLAY_FILTER,
    ]
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if res.returncode != 0:
        sys.exit(f"tshark failed on {path}: {res.stderr.decode(errors='replace')}")
    return ET.fromstring(res.stdout)


def analyse(root):
    dns_records = []      # (host, peer, name, is_response)
    chain_records = []    # (host, peer, set of answer names, set of answer addresses)
    other_names = []      # (host, kind, value)
    responders = set()
    syns = []             # (src, dst, dport, stream)
    named_streams = set()

    for pkt in root.iter("packet"):
        protos = {}
        for p in pkt.findall("proto"):          # top level only
            protos.setdefault(p.get("name"), []).append(p)
        if "icmp" in protos or "icmpv6" in protos:
            continue                             # quoted packets inside ICMP errors are not traffic
        if "ip" in protos:
            src, dst = first(protos["ip"][0], "ip.src"), first(protos["ip"][0], "ip.dst")
        elif "ipv6" in protos:
            src, dst = first(protos["ipv6"][0], "ipv6.src"), first(protos["ipv6"][0], "ipv6.dst")
        else:
            continue
        stream = None
        if "tcp" in protos:
            tcp = protos["tcp"][0]
            stream = first(tcp, "tcp.stream")
            if truthy(first(tcp, "tcp.flags.syn") or "") and not truthy(first(tcp, "tcp.flags.ack") or ""):
                syns.append((src, dst, int(first(tcp, "tcp.dstport")), stream))

        for d in protos.get("dns", []):
            resp = truthy(first(d, "dns.flags.response") or "0")
            host, peer = (dst, src) if resp else (src, dst)
            if resp:
                responders.add(src)
            for q in fields(d, "dns.qry.name"):
                q = norm_name(q)
                if q and q != "<root>":
                    dns_records.append((host, peer, q, resp))
            if resp:
                names, addrs = set(), set()
                for sec in d.findall("field"):
                    if sec.get("name") == "" and sec.get("show") == "Answers":
                        names.update(norm_name(x) for x in fields(sec, "dns.resp.name"))
                        names.update(norm_name(x) for x in fields(sec, "dns.cname"))
                        addrs.update(fields(sec, "dns.a"))
                        addrs.update(fields(sec, "dns.aaaa"))
                names.update(norm_name(q) for q in fields(d, "dns.qry.name"))
                chain_records.append((host, peer, names, addrs))

        for t in protos.get("tls", []):
            for sni in fields(t, "tls.handshake.extensions_server_name"):
                other_names.append((src, "tls_sni", norm_name(sni)))
                if stream is not None:
                    named_streams.add(stream)

        for h in protos.get("http", []):
            for host in fields(h, "http.host"):
                other_names.append((src, "http_host", host_part(host)))
                if stream is not None:
                    named_streams.add(stream)
            if "CONNECT" in fields(h, "http.request.method"):
                for uri in fields(h, "http.request.uri"):
                    other_names.append((src, "http_connect", host_part(uri)))
                    if stream is not None:
                        named_streams.add(stream)

    resolvers = sorted({r for r in responders if is_home(r)})

    def upstream(host, peer):
        # a resolver's own lookups toward another resolver are not detections for it
        return host in resolvers and peer in responders

    names = {(h, "dns", n) for h, _, n, _ in dns_records}
    names |= {(h, k, v) for h, k, v in other_names if v}

    detections = set()
    for h, peer, n, _ in dns_records:
        if n in VENDOR_NAMES and not upstream(h, peer):
            detections.add((h,) + VENDOR_NAMES[n])
    for h, k, v in other_names:
        if v in VENDOR_NAMES:
            detections.add((h,) + VENDOR_NAMES[v])
    vendor_addrs = {}
    for h, peer, chain, addrs in chain_records:
        hits = [VENDOR_NAMES[n] for n in chain if n in VENDOR_NAMES]
        if hits and not upstream(h, peer):
            for vc in hits:                      # e.g. updates.example.net -> ... -> dnl-02.geo
                detections.add((h,) + vc)
            vendor_addrs.setdefault(h, set()).update(addrs)

    conns = set()
    for src, dst, dport, stream in syns:
        if dst in vendor_addrs.get(src, ()) and stream not in named_streams:
            conns.add((src, dst, dport, "tcp"))

    return {
        "names": sorted(names),
        "detections": sorted(detections),
        "resolvers": resolvers,
        "connections_without_name": sorted(conns),
    }


# ----------------------------------------------------------------------------------------------
# scenario checks: what generate.sh did on the wire
# ----------------------------------------------------------------------------------------------
C1, C1_6 = "10.10.1.11", "fd00:10::11"
C2, C2_6 = "10.10.1.12", "fd00:10::12"
C3, C3_6 = "10.10.1.13", "fd00:10::13"
PROXY, FWD = "10.10.2.30", "10.10.2.54"
DNS4, DNS6 = "10.10.2.53", "fd00:10::53"
K = "kaspersky"

SCENARIOS = {
    "dns": dict(
        names=[(h, "dns", n) for h in (C1, C1_6) for n in
               ("dnl-01.geo.kaspersky.com", "s05.upd.kaspersky.com", "notkaspersky.com")]
        + [(h, "dns", n) for h in (C2, C2_6) for n in
           ("ksn-file-geo.kaspersky-labs.com", "updates.example.net", "kaspersky.com.evil.example")]
        + [(C3, "dns", "activation-v2.kaspersky.com"), (C3, "dns", "dc1.ksn.kaspersky-labs.com"),
           (C3, "dns", "www.example.org"), (C3_6, "dns", "activation-v2.kaspersky.com"),
           (C3_6, "dns", "dc1.ksn.kaspersky-labs.com"), (C3_6, "dns", "www.example.org")],
        detections=[(C1, K, "update"), (C1_6, K, "update"),
                    (C2, K, "ksn"), (C2, K, "update"), (C2_6, K, "ksn"), (C2_6, K, "update"),
                    (C3, K, "activation"), (C3, K, "ksn"), (C3_6, K, "activation"), (C3_6, K, "ksn")],
        resolvers=[DNS4, DNS6],
        conns=[],
    ),
    "tls": dict(
        names=[(C1, "tls_sni", "s07.upd.kaspersky.com"), (C1_6, "tls_sni", "s07.upd.kaspersky.com"),
               (C1, "tls_sni", "www.kaspersky.com"),
               (C2, "tls_sni", "ksn-url-geo.kaspersky-labs.com"),
               (C2_6, "tls_sni", "ksn-url-geo.kaspersky-labs.com"),
               (C2_6, "tls_sni", "www.example.org"), (C2, "tls_sni", "kaspersky.com.evil.example"),
               (C3, "tls_sni", "downloads.upd.kaspersky.com"),
               (C3_6, "tls_sni", "downloads.upd.kaspersky.com"),
               (C1, "dns", "s07.upd.kaspersky.com"), (C1, "dns", "www.kaspersky.com"),
               (C2, "dns", "ksn-url-geo.kaspersky-labs.com"), (C2, "dns", "www.example.org"),
               (C2, "dns", "kaspersky.com.evil.example"),
               (C3, "dns", "downloads.upd.kaspersky.com")],
        detections=[(C1, K, "update"), (C1, K, "web-portal"), (C1_6, K, "update"),
                    (C2, K, "ksn"), (C2_6, K, "ksn"), (C3, K, "update"), (C3_6, K, "update")],
        resolvers=[DNS4],
        conns=[],
    ),
    "http-proxy": dict(
        names=[(C1, "http_host", "dnl-03.geo.kaspersky.com"),
               (PROXY, "http_host", "dnl-03.geo.kaspersky.com"),
               (PROXY, "dns", "dnl-03.geo.kaspersky.com"),
               (C2, "http_connect", "activation-v2.kaspersky.com"),
               (PROXY, "dns", "activation-v2.kaspersky.com"),
               (PROXY, "tls_sni", "activation-v2.kaspersky.com"),
               (C3, "http_host", "www.example.org"), (C3, "dns", "www.example.org"),
               (C3, "http_host", "dnl-01.geo.kaspersky.com"), (C3, "dns", "dnl-01.geo.kaspersky.com")],
        detections=[(C1, K, "update"), (C2, K, "activation"), (C3, K, "update"),
                    (PROXY, K, "activation"), (PROXY, K, "update")],
        resolvers=[DNS4],
        conns=[],
    ),
    "dns-forwarder": dict(
        names=[(C1, "dns", "s05.upd.kaspersky.com"), (FWD, "dns", "s05.upd.kaspersky.com")],
        detections=[(C1, K, "update")],
        resolvers=[DNS4, FWD],
        conns=[],
    ),
    "passive-dns": dict(
        names=[(C2, "dns", "dnl-02.geo.kaspersky.com")],
        detections=[(C2, K, "update")],
        resolvers=[DNS4],
        conns=[(C2, "10.10.2.80", 443, "tcp")],
    ),
    "dns-public-resolver": dict(
        names=[(C1, "dns", "dnl-01.geo.kaspersky.com")],
        detections=[(C1, K, "update")],
        resolvers=[],
        conns=[],
        exact_names=True,
    ),
    "multi-link": dict(
        names=[(C1, "dns", "dnl-01.geo.kaspersky.com"), (C1_6, "dns", "dnl-01.geo.kaspersky.com"),
               (C2, "dns", "ksn-file-geo.kaspersky-labs.com")],
        detections=[(C1, K, "update"), (C1_6, K, "update"), (C2, K, "ksn")],
        resolvers=[DNS4, DNS6],
        conns=[],
    ),
    "dns-sll2": dict(
        names=[(C1, "dns", "dnl-01.geo.kaspersky.com"), (C1_6, "dns", "s05.upd.kaspersky.com"),
               (C1, "dns", "notkaspersky.com")],
        detections=[(C1, K, "update"), (C1_6, K, "update")],
        resolvers=[DNS4, DNS6],
        conns=[],
    ),
}


def check(scenario, result):
    spec = SCENARIOS[scenario]
    errors = []
    names = set(result["names"])
    for n in spec["names"]:
        if n not in names:
            errors.append(f"missing name {n}")
    if spec.get("exact_names") and names != set(spec["names"]):
        errors.append(f"names differ: {sorted(names)} != {sorted(spec['names'])}")
    got, want = set(result["detections"]), set(spec["detections"])
    for d in sorted(want - got):
        errors.append(f"missing detection {d}")
    for d in sorted(got - want):
        errors.append(f"unexpected detection {d}")
    if result["resolvers"] != sorted(spec["resolvers"]):
        errors.append(f"resolvers {result['resolvers']} != {sorted(spec['resolvers'])}")
    if set(result["connections_without_name"]) != set(spec["conns"]):
        errors.append(f"connections_without_name {result['connections_without_name']} != {spec['conns']}")
    return errors


def dump(capture, made_by, r):
    def line(obj):
        return json.dumps(obj, ensure_ascii=False)

    def block(key, items, last=False):
        end = "" if last else ","
        if not items:
            return f'  "{key}": []{end}'
        body = ",\n".join("    " + line(i) for i in items)
        return f'  "{key}": [\n{body}\n  ]{end}'

    parts = [
        "{",
        f'  "capture": {line(capture)},',
        f'  "made_by": {line(made_by)},',
        block("names", [{"host": h, "kind": k, "value": v} for h, k, v in r["names"]]),
        block("detections", [{"host": h, "vendor": v, "category": c} for h, v, c in r["detections"]]),
        block("resolvers", r["resolvers"]),
        block("connections_without_name",
              [{"host": h, "dst_ip": d, "dst_port": p, "transport": t}
               for h, d, p, t in r["connections_without_name"]], last=True),
        "}",
    ]
    return "\n".join(parts) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture")
    ap.add_argument("--name", help="capture file name to record (default: basename of CAPTURE)")
    ap.add_argument("--made-by", default="", help="what real software made the capture")
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), help="check against this scenario")
    ap.add_argument("--proxy-port", type=int, default=8888)
    args = ap.parse_args()

    result = analyse(run_tshark(args.capture, args.proxy_port))
    name = args.name or args.capture.rsplit("/", 1)[-1]
    if args.scenario:
        errors = check(args.scenario, result)
        if errors:
            print(dump(name, args.made_by, result), file=sys.stderr)
            print(f"\nSCENARIO CHECK FAILED for {name} (scenario {args.scenario}):", file=sys.stderr)
            for e in errors:
                print("  - " + e, file=sys.stderr)
            sys.exit(1)
    sys.stdout.write(dump(name, args.made_by, result))


if __name__ == "__main__":
    main()
