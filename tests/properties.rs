//! Property tests: no decoder panics on any bytes, and the indexed matcher agrees with a
//! naive scan over the rules on random names.

use proptest::prelude::*;
use vendorwatch::decode::{decode, LinkType};
use vendorwatch::detect::matcher::{label_glob, Matcher};
use vendorwatch::detect::rules::{load_sources, Rule};
use vendorwatch::extract::{dhcp, dns, http, tls, Extractor, ExtractorLimits};
use vendorwatch::time::Timestamp;

const LINKS: [LinkType; 11] = [
    LinkType::Ppp,
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
    LinkType::Ipv4,
    LinkType::Ipv6,
    LinkType::Null,
    LinkType::Loop,
    LinkType::Nflog,
    LinkType::CiscoHdlc,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1600)) {
        let _ = dns::parse(&data);
        let _ = dhcp::parse(&data);
        let _ = dhcp::parse_v6(&data).map(|m| (m.bindings().count(), m.hostname(), m.client_mac()));
        let _ = dns::reverse_name_address(&String::from_utf8_lossy(&data));
        let _ = tls::parse_client_hello(&data);
        let _ = http::parse_request(&data);
        for link in LINKS {
            let _ = decode(link, &data);
        }
    }

    /// Random bytes behind a valid IPv4/TCP or UDP header reach the flow engine and every
    /// parser behind it.
    #[test]
    fn packet_path_never_panics(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..900), 1..12),
        ports in (prop_oneof![Just(68u16), Just(546), any::<u16>()], prop_oneof![Just(53u16), Just(67), Just(547), Just(80), Just(443), Just(5353), any::<u16>()]),
        udp in any::<bool>(),
        seqs in proptest::collection::vec(any::<u32>(), 12),
        flags in proptest::collection::vec(any::<u8>(), 12),
    ) {
        let mut ex = Extractor::new(ExtractorLimits { max_flows: 4, ..ExtractorLimits::default() });
        for (i, p) in payloads.iter().enumerate() {
            let frame = ipv4(udp, ports.0, ports.1, seqs[i], flags[i], p, i % 2 == 1);
            if let Ok(pkt) = decode(LinkType::RawIp, &frame) {
                ex.process(Timestamp::from_parts(i as i64, 0), &pkt, &mut |_| {});
            }
        }
        ex.finish(&mut |_| {});
    }

    /// DHCP messages that get past the header check (random BOOTP fields, the magic cookie,
    /// random options and option-overload fields): never a panic, and what the view promises
    /// holds.
    #[test]
    fn dhcp_parser_never_panics_and_keeps_its_promises(
        header in proptest::collection::vec(any::<u8>(), 236),
        op in prop_oneof![Just(1u8), Just(2), any::<u8>()],
        options in proptest::collection::vec(prop_oneof![
            // (code, claimed length, bytes): lengths that lie, the codes we read, pads and ends
            (prop_oneof![Just(12u8), Just(50), Just(52), Just(53), Just(61), Just(81), Just(0), Just(255), any::<u8>()],
             any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)),
        ], 0..24),
    ) {
        let mut d = header;
        d[0] = op;
        d.extend_from_slice(&[99, 130, 83, 99]);
        for (code, len, bytes) in &options {
            d.push(*code);
            d.push(*len);
            d.extend_from_slice(bytes);
        }
        if let Ok(m) = dhcp::parse(&d) {
            prop_assert!(m.chaddr.len() <= 16);
            if m.client_mac().is_some() {
                prop_assert!(m.htype == 1 && m.chaddr.len() == 6);
            }
            if let Some(b) = m.binding() {
                prop_assert!(!b.address.is_unspecified() && !b.address.is_broadcast());
            }
            if let Some(h) = m.hostname() {
                prop_assert!(!h.is_empty() && h.len() <= 4 * 255, "{}", h);
                prop_assert!(h.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{}", h);
            }
            let _ = m.client_id_hex();
        }
    }

    #[test]
    fn matcher_agrees_with_naive_scan(labels in proptest::collection::vec(prop_oneof![
        Just("kaspersky".to_string()), Just("com".to_string()), Just("upd".to_string()), Just("geo".to_string()),
        Just("s05".to_string()), Just("dnl-01".to_string()), Just("dnl-".to_string()), Just("example".to_string()),
        Just("ksn".to_string()), Just("kaspersky-labs".to_string()), "[a-z0-9-]{1,6}".prop_map(|s| s),
    ], 1..6)) {
        let name = labels.join(".");
        let (matcher, rules) = sample();
        let mut got: Vec<u32> = matcher.match_name(&name).iter().map(|h| h.rule).collect();
        got.sort_unstable();
        prop_assert_eq!(got, naive(&rules, &name), "name {}", name);
    }
}

fn ipv4(
    udp: bool,
    sport: u16,
    dport: u16,
    seq: u32,
    flags: u8,
    payload: &[u8],
    reverse: bool,
) -> Vec<u8> {
    let (a, b, sp, dp) = if reverse {
        ([10, 0, 0, 2], [10, 0, 0, 1], dport, sport)
    } else {
        ([10, 0, 0, 1], [10, 0, 0, 2], sport, dport)
    };
    let l4 = if udp { 8 } else { 20 };
    let total = (20 + l4 + payload.len()) as u16;
    let mut f = vec![
        0x45,
        0,
        0,
        0,
        0,
        0,
        0x40,
        0,
        64,
        if udp { 17 } else { 6 },
        0,
        0,
    ];
    f[2..4].copy_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&a);
    f.extend_from_slice(&b);
    f.extend_from_slice(&sp.to_be_bytes());
    f.extend_from_slice(&dp.to_be_bytes());
    if udp {
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    } else {
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    }
    f.extend_from_slice(payload);
    f
}

const SAMPLE: &str = r#"
[pack]
vendor = "kaspersky"
name = "Kaspersky"
enabled_by_default = true
legal_basis = ["test"]
description = "test pack"
[[rule]]
id = "kaspersky.update.a"
category = "update"
severity = "high"
confidence = "high"
description = "d"
sources = [{ document = "x", retrieved = "2026-11-01" }]
names = ["s05.upd.kaspersky.com", "kaspersky.com"]
globs = ["dnl-*.geo.kaspersky.com", "s??.upd.kaspersky.com"]
[[rule]]
id = "kaspersky.update.b"
category = "update"
severity = "high"
confidence = "high"
description = "d"
sources = [{ document = "x", retrieved = "2026-11-01" }]
suffixes = ["upd.kaspersky.com", "ksn.kaspersky-labs.com"]
[[rule]]
id = "kaspersky.web-portal.c"
category = "web-portal"
severity = "low"
confidence = "high"
description = "d"
sources = [{ document = "x", retrieved = "2026-11-01" }]
suffixes = ["kaspersky.com", "kaspersky-labs.com"]
[[exclude]]
id = "kaspersky.exclude.x"
description = "d"
names = ["example.kaspersky.com"]
"#;

fn sample() -> (Matcher, Vec<Rule>) {
    let l =
        load_sources(vec![("k.toml".into(), SAMPLE.to_string())]).expect("sample pack is valid");
    (Matcher::build(&l.rules, &l.excludes), l.rules)
}

/// The reference: try every rule's every form, rank, keep the best per vendor.
fn naive(rules: &[Rule], name: &str) -> Vec<u32> {
    if name == "example.kaspersky.com" {
        return vec![];
    }
    let labels: Vec<&str> = name.split('.').collect();
    let mut scored: Vec<(u32, (u8, u8))> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let mut best: Option<(u8, u8)> = None;
        for n in &r.names {
            if n == name {
                best = best.max(Some((3, 0)));
            }
        }
        for g in &r.globs {
            let gl: Vec<&str> = g.split('.').collect();
            if gl.len() == labels.len()
                && gl
                    .iter()
                    .zip(&labels)
                    .all(|(p, l)| label_glob(p.as_bytes(), l.as_bytes()))
            {
                let literal = gl.iter().filter(|l| !l.contains(['*', '?'])).count() as u8;
                best = best.max(Some((2, literal)));
            }
        }
        for s in &r.suffixes {
            if name == s || name.ends_with(&format!(".{s}")) {
                best = best.max(Some((1, s.split('.').count() as u8)));
            }
        }
        if let Some(b) = best {
            scored.push((i as u32, b));
        }
    }
    let top = scored.iter().map(|s| s.1).max();
    let mut out: Vec<u32> = scored
        .iter()
        .filter(|s| Some(s.1) == top)
        .map(|s| s.0)
        .collect();
    out.sort_unstable();
    out
}
