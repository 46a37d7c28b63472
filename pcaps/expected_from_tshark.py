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
  quic_names: [{host, kind, value}]   kind: quic_sni (SNI of ClientHellos that tshark decrypted
                                      from QUIC Initial packets)
  certificates: [{host, server, subject_cn, issuer_cn, sans}]
                                      leaf (first) certificate of every cleartext TLS Certificate
                                      message (TLS 1.2 and earlier); host = the client it was sent
                                      to, server = its sender, sans = the dNSName entries
  identities: [{ip, mac, hostname, client_id, source}]   (only in captures that have any)
                                      what DHCPv4 and DNS PTR answers tie to home-net addresses:
                                      REQUEST (source dhcp_request): ciaddr, else the requested
                                      address (option 50); INFORM (dhcp_inform): ciaddr; ACK
                                      (dhcp_ack): yiaddr, else ciaddr; mac = chaddr (Ethernet),
                                      hostname = option 12, else the option 81 name, client_id =
                                      option 61 as colon hex; DHCPv6 REQUEST / RENEW / REBIND /
                                      CONFIRM (dhcpv6_request) and REPLY (dhcpv6_reply, valid
                                      lifetime > 0): each IA address, client_id = the client DUID,
                                      mac = its link-layer address (Ethernet DUID-LL / DUID-LLT),
                                      hostname = option 39; PTR answers (ptr): the address of the
                                      owner name, hostname = the PTR target; null where absent
  hostnames: [{ip, hostname}]         the current name of each address with identities: the
                                      latest DHCP host name (a PTR name only where DHCP gave none)
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
# Names that appear only in certificates (subject CN / SAN) of the captures; looked up like the others.
VENDOR_NAMES["ksn.kaspersky-labs.com"] = ("kaspersky", "ksn")
DECOYS = ("notkaspersky.com", "kaspersky.com.evil.example", "www.example.org")
assert not set(DECOYS) & set(VENDOR_NAMES)

# Certificate rules of rules/kaspersky.toml (category "certificate"): case-insensitive substrings of
# the issuer DN / subject DN of a server certificate.
CERT_ISSUERS = {
    "Kaspersky Lab Public Services": ("kaspersky", "certificate"),       # kaspersky.certificate.public-services-ca
    "Kaspersky Anti-Virus Personal Root": ("kaspersky", "certificate"),  # kaspersky.certificate.personal-root
}
CERT_SUBJECTS = {
    "ksn.kaspersky-labs.com": ("kaspersky", "certificate"),              # kaspersky.certificate.ksn-server
}

DISPLAY_FILTER = ("dns or dhcp or dhcpv6 or tls.handshake.type == 1 or tls.handshake.type == 11 or http.request"
                  " or (tcp.flags.syn == 1 and tcp.flags.ack == 0)")

# X.520 attribute OIDs -> RFC 4514 short names (others are written as the dotted OID)
DN_ATTRS = {"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O",
            "2.5.4.11": "OU", "2.5.4.5": "serialNumber", "1.2.840.113549.1.9.1": "emailAddress"}


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


def children(elem, name):
    return [f for f in elem.iter("field") if f.get("name") == name]


def dn_of(name_elem):
    """x509af.issuer / x509af.subject element -> [(attribute, value)] in DER order."""
    out = []
    for rdn in children(name_elem, "x509if.RelativeDistinguishedName_item_element"):
        oid = first(rdn, "x509if.oid") or first(rdn, "x509if.id")
        # the value is the innermost field that is not the OID (DirectoryString wraps the string)
        leaves = [f for f in rdn.iter("field") if f is not rdn and len(f) == 0
                  and f.get("name") not in ("x509if.oid", "x509if.id")]
        if oid and leaves:
            out.append((DN_ATTRS.get(oid, oid), leaves[0].get("show", "")))
    return out


def dn_string(dn):
    """RFC 4514 order (most specific first), the way openssl -nameopt RFC2253 prints it."""
    return ",".join(f"{k}={v}" for k, v in reversed(dn))


def leaf_certificates(tls):
    """First certificate of every Certificate handshake message in a tls proto element."""
    for hs in children(tls, "tls.handshake"):
        if first(hs, "tls.handshake.type") != "11":
            continue
        certs = children(hs, "tls.handshake.certificate")
        if not certs:
            continue
        cert = certs[0]
        subject = issuer = None
        for f in cert.iter("field"):
            if f.get("name") == "x509af.subject" and subject is None:
                subject = dn_of(f)
            elif f.get("name") == "x509af.issuer" and issuer is None:
                issuer = dn_of(f)
        sans = []
        for ext in children(cert, "x509af.Extension_element"):
            if first(ext, "x509af.extension.id") == "2.5.29.17":
                sans += [norm_name(n) for n in fields(ext, "x509ce.dNSName")]
        cn = lambda dn: next((v for k, v in reversed(dn or []) if k == "CN"), None)
        yield dict(subject=dn_string(subject or []), issuer=dn_string(issuer or []),
                   subject_cn=cn(subject), issuer_cn=cn(issuer), sans=tuple(sans))


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


DHCP_SOURCES = {"3": "dhcp_request", "8": "dhcp_inform", "5": "dhcp_ack"}


def reverse_address(name):
    """'d.c.b.a.in-addr.arpa' / 32 nibbles '.ip6.arpa' -> address text, else None."""
    labels = name.split(".")
    try:
        if name.endswith(".in-addr.arpa") and len(labels) == 6:
            if any(len(x) > 1 and x.startswith("0") for x in labels[:4]):
                return None
            return str(ipaddress.IPv4Address(".".join(reversed(labels[:4]))))
        if name.endswith(".ip6.arpa") and len(labels) == 34 and all(len(x) == 1 for x in labels[:32]):
            return str(ipaddress.IPv6Address(int("".join(reversed(labels[:32])), 16)))
    except ValueError:
        return None
    return None


def dhcp_identity(d):
    """(ip, mac, hostname, client_id, source) of one tshark dhcp element, or None."""
    op, mtype = first(d, "dhcp.type"), first(d, "dhcp.option.dhcp")
    source = DHCP_SOURCES.get(mtype)
    if source is None or (op == "1") != (source != "dhcp_ack"):
        return None
    usable = lambda a: a if a and a not in ("0.0.0.0", "255.255.255.255") else None
    ciaddr, yiaddr = first(d, "dhcp.ip.client"), first(d, "dhcp.ip.your")
    if source == "dhcp_request":
        ip = usable(ciaddr) or usable(first(d, "dhcp.option.requested_ip_address"))
    elif source == "dhcp_inform":
        ip = usable(ciaddr)
    else:
        ip = usable(yiaddr) or usable(ciaddr)
    if ip is None:
        return None
    # the header's fields come first; option 61 repeats dhcp.hw.type / dhcp.hw.mac_addr inside it
    mac = first(d, "dhcp.hw.mac_addr") if first(d, "dhcp.hw.type") == "0x01" else None
    name = first(d, "dhcp.option.hostname") or first(d, "dhcp.fqdn.name")
    client_id = None
    for opt in children(d, "dhcp.option.type"):
        if opt.get("show") == "61":
            client_id = first(opt, "dhcp.option.value")
            break
    return (ip, mac, norm_name(name) if name else None, client_id, source)


DHCPV6_SOURCES = {"3": "dhcpv6_request", "4": "dhcpv6_request", "5": "dhcpv6_request",
                  "6": "dhcpv6_request", "7": "dhcpv6_reply"}


def dhcpv6_identities(d):
    """[(ip, mac, hostname, client_id, source)] of one tshark dhcpv6 element."""
    types = fields(d, "dhcpv6.msgtype")
    source = DHCPV6_SOURCES.get(types[-1] if types else "")     # the innermost message
    if source is None:
        return []
    client_id = mac = None
    for opt in children(d, "dhcpv6.option.type_str"):
        if first(opt, "dhcpv6.option.type") != "1":
            continue
        duid = next((f.get("value", "") for f in children(opt, "dhcpv6.duid.bytes")), "")   # raw hex
        client_id = ":".join(duid[i:i + 2] for i in range(0, len(duid), 2)) or None
        for kind in ("duidll", "duidllt"):
            if first(opt, f"dhcpv6.{kind}.hwtype") == "1":
                mac = first(opt, f"dhcpv6.{kind}.link_layer_addr")
        break
    name = first(d, "dhcpv6.client_domain")
    out = []
    for opt in children(d, "dhcpv6.option.type_str"):
        if first(opt, "dhcpv6.option.type") != "5":
            continue
        ip, valid = first(opt, "dhcpv6.iaaddr.ip"), first(opt, "dhcpv6.iaaddr.valid_lifetime")
        if ip and (source != "dhcpv6_reply" or (valid and int(valid) > 0)):
            out.append((str(ipaddress.IPv6Address(ip)), mac, norm_name(name) if name else None,
                        client_id, source))
    return out


def analyse(root):
    dns_records = []      # (host, peer, name, is_response)
    chain_records = []    # (host, peer, set of answer names, set of answer addresses)
    other_names = []      # (host, kind, value)
    responders = set()
    syns = []             # (src, dst, dport, stream)
    named_streams = set()
    quic_names = set()    # (host, "quic_sni", value)
    certificates = set()  # (client, server, subject_cn, issuer_cn, sans)
    cert_detections = set()
    identities = []       # (ip, mac, hostname, client_id, source), in frame order

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

        for d in protos.get("dhcp", []):
            ident = dhcp_identity(d)
            if ident and is_home(ident[0]):
                identities.append(ident)
        for d in protos.get("dhcpv6", []):
            identities += [i for i in dhcpv6_identities(d) if is_home(i[0])]

        for d in protos.get("dns", []):
            resp = truthy(first(d, "dns.flags.response") or "0")
            if resp and first(d, "dns.flags.rcode") == "0":
                for sec in d.findall("field"):
                    if sec.get("name") == "" and sec.get("show") == "Answers":
                        for rr in sec.findall("field"):
                            owner, target = first(rr, "dns.resp.name"), first(rr, "dns.ptr.domain_name")
                            ip = reverse_address(norm_name(owner or ""))
                            if target and ip and is_home(ip):
                                identities.append((ip, None, norm_name(target), None, "ptr"))
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
            for c in leaf_certificates(t):
                client, server = dst, src
                certificates.add((client, server, c["subject_cn"], c["issuer_cn"], c["sans"]))
                for needle, vc in CERT_ISSUERS.items():
                    if needle.lower() in c["issuer"].lower():
                        cert_detections.add((client,) + vc)
                for needle, vc in CERT_SUBJECTS.items():
                    if needle.lower() in c["subject"].lower():
                        cert_detections.add((client,) + vc)
                for n in {norm_name(c["subject_cn"] or "")} | set(c["sans"]):
                    if n in VENDOR_NAMES:
                        cert_detections.add((client,) + VENDOR_NAMES[n])

        # QUIC: tshark decrypts the Initial packets and dissects the ClientHello inside the quic
        # element (not as a top-level tls element, so it is not a tls_sni above)
        for q in protos.get("quic", []):
            for sni in fields(q, "tls.handshake.extensions_server_name"):
                if norm_name(sni):
                    quic_names.add((src, "quic_sni", norm_name(sni)))

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
    for h, k, v in quic_names:
        if v in VENDOR_NAMES:
            detections.add((h,) + VENDOR_NAMES[v])
    detections |= cert_detections
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

    hostnames = {}
    for ip, _, name, _, source in identities:
        if name and (source != "ptr" or hostnames.get(ip, (None, "ptr"))[1] == "ptr"):
            hostnames[ip] = (name, source)

    key = lambda t: tuple("" if x is None else x for x in t)
    return {
        "identities": sorted(set(identities), key=key),
        "hostnames": sorted((ip, n) for ip, (n, _) in hostnames.items()),
        "names": sorted(names),
        "detections": sorted(detections),
        "resolvers": resolvers,
        "connections_without_name": sorted(conns),
        "quic_names": sorted(quic_names),
        "certificates": sorted(certificates, key=lambda c: tuple("" if x is None else x for x in c)),
    }


# ----------------------------------------------------------------------------------------------
# scenario checks: what generate.sh did on the wire
# ----------------------------------------------------------------------------------------------
C1, C1_6 = "10.10.1.11", "fd00:10::11"
C2, C2_6 = "10.10.1.12", "fd00:10::12"
C3, C3_6 = "10.10.1.13", "fd00:10::13"
PROXY, FWD = "10.10.2.30", "10.10.2.54"
DNS4, DNS6 = "10.10.2.53", "fd00:10::53"
WEB4, WEB6 = "10.10.2.80", "fd00:10::80"
K = "kaspersky"
D1_MAC, D2_MAC, D3_MAC = "02:00:5e:10:03:11", "02:00:5e:10:03:12", "02:00:5e:10:03:13"
MOVED, BOB, DHCP_SRV = "10.10.3.101", "10.10.3.102", "10.10.3.1"
CAROL6, DHCP_SRV6 = "fd00:10::3:103", "fd00:10::3:1"
CAROL6_PTR = "3.0.1.0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.d.f.ip6.arpa"

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
        # only c1's curl --tls-max 1.2 shows the lab's self-signed certificate; the rest is TLS 1.3
        certificates=[(C1, WEB4, "vendorwatch-lab", "vendorwatch-lab", ())],
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
    "quic": dict(
        # aioquic clients given the server address (no DNS): the QUIC SNI is the only name
        names=[],
        exact_names=True,
        quic_names=[(C1, "quic_sni", "s07.upd.kaspersky.com"), (C2, "quic_sni", "www.example.org"),
                    (C3_6, "quic_sni", "ksn-file-geo.kaspersky-labs.com"),
                    (C2, "quic_sni", "activation-v2.kaspersky.com")],      # the QUIC v2 connection
        detections=[(C1, K, "update"), (C2, K, "activation"), (C3_6, K, "ksn")],
        resolvers=[],
        conns=[],
    ),
    "dns-fragmented": dict(
        names=[(C1, "dns", "dnl-01.geo.kaspersky.com"), (C2_6, "dns", "dnl-01.geo.kaspersky.com")],
        exact_names=True,
        detections=[(C1, K, "update"), (C2_6, K, "update")],
        resolvers=[DNS4, DNS6],
        conns=[],
    ),
    "tls12-certs": dict(
        # c1: no SNI, no DNS, no Host: the certificate is the only name; c2: SNI www.example.org (decoy)
        names=[(C2, "tls_sni", "www.example.org")],
        exact_names=True,
        certificates=[
            (C1, WEB4, "ksn.kaspersky-labs.com", "Kaspersky Lab Public Services TLS CA",
             ("ksn.kaspersky-labs.com", "*.ksn.kaspersky-labs.com")),
            (C2, WEB4, "www.example.org", "Kaspersky Anti-Virus Personal Root Certificate", ("www.example.org",)),
        ],
        # c1: issuer rule kaspersky.certificate.public-services-ca and subject rule
        # kaspersky.certificate.ksn-server (certificate), leaf CN/SAN ksn.kaspersky-labs.com in the
        # ksn zone (kaspersky.ksn.ksn-zone); c2: issuer rule kaspersky.certificate.personal-root
        detections=[(C1, K, "certificate"), (C1, K, "ksn"), (C2, K, "certificate")],
        resolvers=[],
        conns=[],
    ),
    "dhcp-ptr": dict(
        names=[(MOVED, "dns", "102.3.10.10.in-addr.arpa"), (BOB, "dns", "101.3.10.10.in-addr.arpa"),
               (BOB, "dns", "ksn-file-geo.kaspersky-labs.com"), (MOVED, "dns", "dnl-01.geo.kaspersky.com"),
               (BOB, "dns", CAROL6_PTR), (CAROL6, "dns", "dnl-01.geo.kaspersky.com")],
        exact_names=True,
        detections=[(MOVED, K, "update"), (BOB, K, "ksn"), (CAROL6, K, "update")],
        resolvers=[DHCP_SRV, DHCP_SRV6],
        conns=[],
        # at least these (the ACKs may echo more); 10.10.3.101 moved from ws-alice to ws-carol
        identities=[
            (MOVED, D1_MAC, "ws-alice", None, "dhcp_request"), (MOVED, D1_MAC, "ws-alice", None, "dhcp_ack"),
            (MOVED, D3_MAC, "ws-carol", None, "dhcp_request"), (MOVED, D3_MAC, "ws-carol", None, "dhcp_ack"),
            (MOVED, None, "ws-alice.lab", None, "ptr"), (MOVED, None, "ws-carol.lab", None, "ptr"),
            (BOB, D2_MAC, "ws-bob", "01:" + D2_MAC, "dhcp_request"), (BOB, None, "ws-bob.lab", None, "ptr"),
            # DHCPv6 (dhclient -6, DUID-LL 00:03:00:01:MAC) and the ip6.arpa PTR answer
            (CAROL6, D3_MAC, "ws-carol.lab", "00:03:00:01:" + D3_MAC, "dhcpv6_request"),
            (CAROL6, D3_MAC, "ws-carol.lab", "00:03:00:01:" + D3_MAC, "dhcpv6_reply"),
            (CAROL6, None, "ws-carol.lab", None, "ptr"),
        ],
        hostnames=[(MOVED, "ws-carol"), (BOB, "ws-bob"), (CAROL6, "ws-carol.lab")],
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
    # QUIC names and leaf certificates: exactly the scenario's (none where it names none)
    got, want = set(result["quic_names"]), set(spec.get("quic_names", []))
    for n in sorted(want - got):
        errors.append(f"missing quic name {n}")
    for n in sorted(got - want):
        errors.append(f"unexpected quic name {n}")
    got, want = set(result["certificates"]), set(spec.get("certificates", []))
    for c in sorted(want - got, key=str):
        errors.append(f"missing certificate {c}")
    for c in sorted(got - want, key=str):
        errors.append(f"unexpected certificate {c}")
    got = set(result["identities"])
    for i in spec.get("identities", []):
        if i not in got:
            errors.append(f"missing identity {i}")
    if not spec.get("identities") and got:
        errors.append(f"unexpected identities {sorted(got, key=str)}")
    if result["hostnames"] != sorted(spec.get("hostnames", [])):
        errors.append(f"hostnames {result['hostnames']} != {spec.get('hostnames', [])}")
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
               for h, d, p, t in r["connections_without_name"]]),
        block("quic_names", [{"host": h, "kind": k, "value": v} for h, k, v in r["quic_names"]]),
        block("certificates",
              [{"host": h, "server": sv, "subject_cn": s, "issuer_cn": i, "sans": list(sans)}
               for h, sv, s, i, sans in r["certificates"]], last=not r["identities"]),
    ]
    # only captures with identities carry these keys (the others' expectations stay as they were)
    if r["identities"]:
        parts += [
            block("identities", [{"ip": ip, "mac": m, "hostname": n, "client_id": c, "source": s}
                                 for ip, m, n, c, s in r["identities"]]),
            block("hostnames", [{"ip": ip, "hostname": n} for ip, n in r["hostnames"]], last=True),
        ]
    parts.append("}")
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
