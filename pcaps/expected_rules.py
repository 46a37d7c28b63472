#!/usr/bin/env python3
"""Derive the expectation of pcaps/vendor-domains.pcap from tshark and its scenario.

    expected_rules.py [--made-by TEXT] [--scenario FILE] CAPTURE

Prints the expectation JSON on stdout and exits non-zero, loudly, when the capture does not hold
what the scenario (pcaps/gen-rules.sh) did: every scenario name asked by exactly one client
address, every client address asking exactly one scenario name, and nothing else asked.

Which host asked which name comes from tshark (DNS queries: ip.src / ipv6.src, dns.qry.name),
never from vendorwatch. What the sensor must make of each name (vendor, category and severity,
or nothing at all for exclusions and look-alikes) is the scenario's, written in
pcaps/vendor-domains.scenario from the packs' documented semantics (rules/README.md).

Output shape (hosts sorted by address):
  capture, made_by,
  hosts: [{host, name, kind, vendor, category, severity}]
         kind: vendor | excluded | decoy; vendor/category/severity null unless kind is vendor
  answered: [name]   names that got a DNS response in the capture (sorted)
Python 3 standard library only; needs tshark in PATH.
"""
import argparse
import ipaddress
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def read_scenario(path):
    rows = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2:
                sys.exit(f"{path}:{n}: expected NAME EXPECT, got {line!r}")
            name, expect = parts[0].lower().rstrip("."), parts[1]
            if name in rows:
                sys.exit(f"{path}:{n}: {name} listed twice")
            if expect in ("excluded", "decoy"):
                rows[name] = {"kind": expect, "vendor": None, "category": None, "severity": None}
            else:
                fields = expect.split("/")
                if len(fields) != 3:
                    sys.exit(f"{path}:{n}: EXPECT must be VENDOR/CATEGORY/SEVERITY, excluded or decoy")
                rows[name] = {
                    "kind": "vendor",
                    "vendor": fields[0],
                    "category": fields[1],
                    "severity": fields[2],
                }
    return rows


def tshark_dns(capture):
    out = subprocess.run(
        [
            "tshark", "-n", "-r", capture, "-Y", "dns", "-T", "fields",
            "-e", "ip.src", "-e", "ipv6.src", "-e", "dns.flags.response", "-e", "dns.qry.name",
            "-E", "separator=\t", "-E", "occurrence=f",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    queries, answered = [], set()
    for line in out.splitlines():
        src4, src6, response, name = (line.split("\t") + [""] * 4)[:4]
        name = name.lower().rstrip(".")
        if response in ("1", "True"):
            answered.add(name)
        else:
            queries.append((src4 or src6, name))
    return queries, answered


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--made-by", default=None)
    ap.add_argument("--scenario", default=os.path.join(HERE, "vendor-domains.scenario"))
    ap.add_argument("capture")
    args = ap.parse_args()

    scenario = read_scenario(args.scenario)
    queries, answered = tshark_dns(args.capture)

    by_host, by_name, problems = {}, {}, []
    for host, name in queries:
        by_host.setdefault(host, set()).add(name)
        by_name.setdefault(name, set()).add(host)
    for name in sorted(by_name):
        if name not in scenario:
            problems.append(f"{name} asked by {sorted(by_name[name])} but not in the scenario")
    for name in sorted(scenario):
        hosts = by_name.get(name, set())
        if len(hosts) != 1:
            problems.append(f"{name}: asked by {sorted(hosts) or 'nobody'}, want exactly one host")
        if name not in answered:
            problems.append(f"{name}: no DNS response in the capture")
    for host, names in sorted(by_host.items()):
        if len(names) != 1:
            problems.append(f"{host} asked {sorted(names)}, want exactly one name")
    if problems:
        sys.exit("capture does not match the scenario:\n  " + "\n  ".join(problems))

    hosts = []
    for host, names in by_host.items():
        name = next(iter(names))
        hosts.append({"host": host, "name": name, **scenario[name]})
    hosts.sort(key=lambda h: ipaddress.ip_address(h["host"]))
    print(
        json.dumps(
            {
                "capture": os.path.basename(args.capture),
                "made_by": args.made_by,
                "hosts": hosts,
                "answered": sorted(answered & set(scenario)),
            },
            indent=1,
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()
