#!/usr/bin/env python3
"""Expectations for the captures of pcaps/gen-evasion.sh, from tshark and the servers' own answers
(never from the sensor).

    expected_evasion.py            print the expectations (JSON) on stdout
    expected_evasion.py --write    write them to pcaps/expected-evasion.json
    expected_evasion.py --check    exit 1 (with both texts) when pcaps/expected-evasion.json
                                   is not what this script derives now

For each capture:
  names         [{host, kind, value}] with repetition, sorted: every ClientHello server name
                (kind tls_sni) and HTTP Host (kind http_host, without a port) the server received;
                host = the client, the source of the ClientHello or request
  alerts        [{host, vendor, category}] deduplicated, sorted: the names of `names` looked up in a
                fixed table of exact vendor names (below)
  not_received  [{host, kind, value}]: a name whose bytes are in the capture but which the server
                did not receive (the other copy of an overlap); a sensor must not report it
  tshark_reads  (the fake captures only) [{host, kind, value}]: the ClientHello server names tshark
                reads, to record whether the fake fools it
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
  evasion-fake-ttl.pcap, evasion-fake-noack.pcap, evasion-fake-md5.pcap
                the server's answer, as for the overlaps (the same strict s_server): each has a
                "fake" ClientHello with the decoy name at the real one's sequence number, sent
                first, that Linux may not take (TTL 1 through a router, no ACK flag, an MD5
                signature the SYN lacked), then the real ClientHello. The name of the other
                hello is `not_received`. tshark keeps the first copy it sees, so it reads the
                fake's decoy: what it reads is recorded under `tshark_reads` (the scenario checks
                below expect the decoy: the capture does test what tshark gets wrong)
Python 3 standard library only; needs tshark in PATH.
"""
import difflib
import json
import os
import subprocess
import sys

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
}
# Names in these captures that are no vendor's.
OTHER_NAMES = {"www.example.org", DECOY}
UNRECOGNIZED_NAME = "112"
# The captures with a DPI-evasion fake in front of the real ClientHello.
FAKES = ("evasion-fake-ttl.pcap", "evasion-fake-noack.pcap", "evasion-fake-md5.pcap")


def tshark(pcap, *fields):
    cmd = ["tshark", "-n", "-r", pcap, "-o", "tcp.reassemble_out_of_order:TRUE",
           "-o", "tcp.desegment_tcp_streams:TRUE", "-o", "tls.desegment_ssl_records:TRUE",
           "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def names(pcap):
    """Every ClientHello server name and HTTP Host tshark reads, with its client."""
    got = []
    for src, htype, sni, hosts in tshark(pcap, "ip.src", "tls.handshake.type",
                                         "tls.handshake.extensions_server_name", "http.host"):
        if "1" in htype.split(",") and sni:
            got.append({"host": src, "kind": "tls_sni", "value": sni.lower()})
        for h in filter(None, hosts.split(",")):
            got.append({"host": src, "kind": "http_host", "value": h.split(":")[0].lower()})
    return got


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


def alerts(found):
    out = set()
    for n in found:
        if n["value"] in VENDOR_NAMES:
            out.add((n["host"],) + VENDOR_NAMES[n["value"]])
        elif n["value"] not in OTHER_NAMES:
            sys.exit(f"{n['value']} is in neither table of expected_evasion.py")
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
    for r in result.values():
        r["names"].sort(key=key)
        r["alerts"] = alerts(r["names"])
    # Scenario checks: a broken generator fails here, loudly.
    def values(cap):
        return [(n["kind"], n["value"]) for n in result[cap]["names"]]
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
    # One name a line: small diffs when a capture is regenerated.
    def entry(cap):
        r = result[cap]
        lists = ",\n".join(
            f"  {json.dumps(k)}: [" + ",".join("\n   " + key(n) for n in r[k]) + ("\n  ]" if r[k] else "]")
            for k in ("alerts", "names", "not_received", "tshark_reads") if k in r)
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
