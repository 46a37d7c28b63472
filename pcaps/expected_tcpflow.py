#!/usr/bin/env python3
"""Expectations for the captures of pcaps/gen-tcpflow.sh, from tshark (never from the sensor).

    expected_tcpflow.py            print the expectations (JSON) on stdout
    expected_tcpflow.py --write    write them to pcaps/expected-tcpflow.json

For each capture:
  names      [{host, kind, value}] with repetition, sorted: every ClientHello server name
             (kind tls_sni over TCP, quic_sni from the QUIC Initials tshark decrypts), HTTP
             Host and DNS question (one per DNS message, query or response) tshark reads,
             with ech: true when the ClientHello carries the ECH extension (0xfe0d)
How each is derived:
  chromium-ech.pcap, chromium-ech-nodns.pcap, port-reuse.pcap
                                       tshark on the capture itself
  span-duplicates.pcap                 tshark on chromium-ech.pcap, the untransformed original:
                                       each packet once
  midstream-reordered.pcap             tshark on chromium-ech.pcap's first TLS connection (tshark
                                       cannot read a ClientHello whose first segment comes last),
                                       checked by a byte search: the name is in the capture
  checksum-insertion.pcap              tshark on the capture without the frames whose TCP
                                       checksum tshark finds wrong (what the server dropped)
Python 3 standard library only; needs tshark and editcap in PATH.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ECH = "65037"


def fields(pcap, *extra):
    cmd = ["tshark", "-r", pcap, "-o", "tcp.check_checksum:TRUE", "-T", "fields", "-E",
           "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,",
           "-e", "frame.number", "-e", "ip.src", "-e", "ipv6.src", "-e", "frame.protocols",
           "-e", "tls.handshake.type", "-e", "tls.handshake.extensions_server_name",
           "-e", "tls.handshake.extension.type", "-e", "http.host", "-e", "dns.qry.name",
           "-e", "tcp.checksum.status", "-e", "tcp.srcport", *extra]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def names(pcap):
    got = []
    for row in fields(pcap):
        _, src4, src6, protos, htype, sni, exts, host, qname, _, _ = row[:11]
        host_ip = src4 or src6
        plist = protos.split(":")
        if "1" in htype.split(",") and sni:
            kind = "quic_sni" if "quic" in plist else "tls_sni"
            got.append({"host": host_ip, "kind": kind, "value": sni.lower(),
                        "ech": ECH in exts.split(",")})
        if host:
            got.append({"host": host_ip, "kind": "http_host", "value": host.split(":")[0].lower()})
        if qname and "dns" in plist:
            # The querier is the host: the destination of a response.
            got.append({"kind": "dns", "value": qname.split(",")[0].lower().rstrip(".")})
    return sorted(got, key=lambda n: json.dumps(n, sort_keys=True))


def bad_checksum_frames(pcap):
    return [r[0] for r in fields(pcap) if r[9] == "0"]


def without(pcap, frames, tmp):
    out = os.path.join(tmp, "kept.pcap")
    subprocess.run(["editcap", pcap, out, *frames], check=True, capture_output=True)
    return out


def main():
    p = lambda f: os.path.join(HERE, f)  # noqa: E731
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        chromium = names(p("chromium-ech.pcap"))
        result["chromium-ech.pcap"] = chromium
        result["chromium-ech-nodns.pcap"] = names(p("chromium-ech-nodns.pcap"))
        result["port-reuse.pcap"] = names(p("port-reuse.pcap"))
        result["span-duplicates.pcap"] = chromium
        first_tls = [n for n in chromium if n["kind"] == "tls_sni"][:1]
        raw = open(p("midstream-reordered.pcap"), "rb").read()
        for n in first_tls:
            if n["value"].encode() not in raw:
                sys.exit(f"midstream-reordered.pcap does not hold {n['value']}")
        result["midstream-reordered.pcap"] = first_tls
        bad = bad_checksum_frames(p("checksum-insertion.pcap"))
        if not bad:
            sys.exit("checksum-insertion.pcap has no segment with a wrong checksum")
        result["checksum-insertion.pcap"] = names(without(p("checksum-insertion.pcap"), bad, tmp))
    # Scenario checks: a broken generator fails here, loudly.
    def sni(cap, kind):
        return sorted(n["value"] for n in result[cap] if n["kind"] == kind)
    assert "s05.upd.kaspersky.com" in sni("chromium-ech.pcap", "tls_sni"), result
    assert "dnl-01.geo.kaspersky.com" in sni("chromium-ech.pcap", "quic_sni"), result
    assert all(n["ech"] for n in chromium if n["kind"] in ("tls_sni", "quic_sni")), chromium
    assert sni("port-reuse.pcap", "tls_sni") == ["ksn-file-geo.kaspersky-labs.com", "www.example.org"]
    assert sni("port-reuse.pcap", "quic_sni") == ["s07.upd.kaspersky.com", "www.example.org"]
    assert sorted(n["value"] for n in result["port-reuse.pcap"] if n["kind"] == "http_host") == [
        "dnl-02.geo.kaspersky.com", "www.example.org"]
    assert sni("checksum-insertion.pcap", "tls_sni") == [
        "activation-v2.kaspersky.com", "www.example.org"], result["checksum-insertion.pcap"]
    # One name a line: small diffs when a capture is regenerated.
    text = "{\n" + ",\n".join(
        f" {json.dumps(cap)}: [\n" + ",\n".join("  " + json.dumps(n, sort_keys=True) for n in result[cap]) + "\n ]"
        for cap in sorted(result)) + "\n}\n"
    if sys.argv[1:] == ["--write"]:
        with open(os.path.join(HERE, "expected-tcpflow.json"), "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
