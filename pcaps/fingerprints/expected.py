#!/usr/bin/env python3
"""Derives learn.expected.json from learn.pcap with tshark, and checks it against the plan of
generate.sh: every ClientHello's JA4 computed here from tshark's fields (an implementation of
FoxIO's JA4 of its own, independent of the sensor's), which hosts showed the updater stack with
visible vendor names, and which used it with no name at all."""
import hashlib
import json
import subprocess
import sys

PLAN = {
    "learned_from": ["10.20.1.11", "10.20.1.12", "10.20.1.13"],
    "suspected": ["10.20.1.14", "10.20.1.15"],
    "hosts": [f"10.20.1.{i}" for i in range(11, 19)],
}
FIELDS = [
    "frame.number", "ip.src", "tcp.srcport", "tls.handshake.extensions_server_name",
    "tls.handshake.version", "tls.handshake.ciphersuite", "tls.handshake.extension.type",
    "tls.handshake.sig_hash_alg", "tls.handshake.extensions_alpn_str",
    "tls.handshake.extensions.supported_version",
]


def grease(v):
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


def ja4(row):
    ciphers = [int(c, 16) for c in row["tls.handshake.ciphersuite"].split(",") if c]
    ciphers = [c for c in ciphers if not grease(c)]
    exts = [int(e) for e in row["tls.handshake.extension.type"].split(",") if e]
    exts = [e for e in exts if not grease(e)]
    versions = [int(v, 16) for v in row["tls.handshake.extensions.supported_version"].split(",") if v]
    versions = [v for v in versions if not grease(v)]
    version = max(versions) if versions else int(row["tls.handshake.version"], 16)
    vname = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3"}.get(version, "00")
    sni = "d" if 0 in exts else "i"
    alpn = row["tls.handshake.extensions_alpn_str"].split(",")[0]
    alpn = (alpn[0] + alpn[-1]) if alpn else "00"
    a = f"t{vname}{sni}{min(len(ciphers), 99):02d}{min(len(exts), 99):02d}{alpn}"
    h = lambda s: hashlib.sha256(s.encode()).hexdigest()[:12]
    b = h(",".join(sorted(f"{c:04x}" for c in ciphers))) if ciphers else "000000000000"
    ext_list = ",".join(sorted(f"{e:04x}" for e in exts if e not in (0x0000, 0x0010)))
    sigs = ",".join(s[2:] for s in row["tls.handshake.sig_hash_alg"].split(",") if s)
    c = h(f"{ext_list}_{sigs}" if sigs else ext_list) if ext_list else "000000000000"
    return f"{a}_{b}_{c}"


def canonical(fp):
    """The JA4 the same stack has with a server name (JA4 marks SNI in its first part only)."""
    if fp[3] == "i":
        return f"{fp[:3]}d{fp[4:6]}{int(fp[6:8]) + 1:02d}{fp[8:]}"
    return fp


def main(pcap):
    out = subprocess.run(
        ["tshark", "-r", pcap, "-Y", "tls.handshake.type == 1", "-T", "fields", "-E", "separator=|"]
        + [x for f in FIELDS for x in ("-e", f)],
        check=True, capture_output=True, text=True).stdout
    hellos = []
    for line in out.splitlines():
        row = dict(zip(FIELDS, line.split("|")))
        hellos.append({"frame": int(row["frame.number"]), "src": row["ip.src"],
                       "sni": row["tls.handshake.extensions_server_name"] or None,
                       "ja4": canonical(ja4(row))})
    vendor = lambda n: n and (n.endswith(".kaspersky.com") or n.endswith(".kaspersky-labs.com"))
    learned = {h["ja4"] for h in hellos if h["src"] in PLAN["learned_from"] and vendor(h["sni"])
               and h["ja4"].startswith("t12")}
    if len(learned) != 1:
        sys.exit(f"the updater hosts show {len(learned)} TLS 1.2 fingerprints on vendor names, not one: {learned}")
    updater = learned.pop()
    hidden = [h for h in hellos if h["sni"] is None]
    suspected = sorted({h["src"] for h in hidden if h["ja4"] == updater})
    if suspected != PLAN["suspected"]:
        sys.exit(f"hosts using the updater stack with no name: {suspected}, plan {PLAN['suspected']}")
    users = sorted({h["src"] for h in hellos if h["ja4"] == updater})
    if users != sorted(PLAN["learned_from"] + PLAN["suspected"]):
        sys.exit(f"the updater fingerprint is used by {users}: another stack shares it")
    hidden_other = sorted({h["src"] for h in hidden if h["ja4"] != updater})
    if not {"10.20.1.16", "10.20.1.17"} <= set(hidden_other):
        sys.exit(f"the common stacks' hidden flows are missing: {hidden_other}")
    named_vendor = sorted({h["src"] for h in hellos if vendor(h["sni"])})
    if set(PLAN["suspected"]) & set(named_vendor):
        sys.exit(f"a suspected host also named a vendor server: {named_vendor}")
    json.dump({
        "capture": "learn.pcap",
        "made_by": "pcaps/fingerprints/generate.sh (gnutls-cli, curl, Python ssl, Chromium, nginx, dnsmasq)",
        "updater_ja4": updater,
        "learned_from": PLAN["learned_from"],
        "suspected": suspected,
        "hidden_common_stack_hosts": hidden_other,
        "client_hellos": len(hellos),
        "fingerprints": sorted({h["ja4"] for h in hellos}),
    }, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main(sys.argv[1])
