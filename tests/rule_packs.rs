//! Every rule in the shipped packs is exercised: names generated from its own match forms
//! must hit it, decoys built from the same forms must not. A new rule cannot go untested.

use std::net::IpAddr;
use std::process::Command;
use vendorwatch::decode::Proto;
use vendorwatch::detect::rules::{load_path, Rule};
use vendorwatch::detect::RuleSet;

fn shipped() -> RuleSet {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let loaded = load_path(&dir).unwrap_or_else(|e| panic!("shipped packs invalid: {e:?}"));
    let all: Vec<String> = loaded.packs.iter().map(|p| p.vendor.clone()).collect();
    RuleSet::compile(loaded, Some(&all)).expect("compiles")
}

/// Names that must hit `r`.
fn positives(r: &Rule) -> Vec<String> {
    let mut v: Vec<String> = r.names.clone();
    for s in &r.suffixes {
        v.push(s.clone());
        v.push(format!("vwtest-1.{s}"));
    }
    for g in &r.globs {
        v.push(g.replace('*', "x1").replace('?', "7"));
        v.push(g.replace('*', "").replace('?', "a"));
    }
    v.extend(r.test_names.iter().cloned());
    v
}

/// Names that must not hit `r` (and, for the `.evil.example` ones, no rule at all).
fn decoys(r: &Rule) -> Vec<(String, bool)> {
    let mut v = Vec::new();
    // A prefixed decoy is fair only where none of the rule's own suffixes covers it.
    let covered = |d: &str| {
        r.suffixes
            .iter()
            .any(|s| d == s || d.ends_with(&format!(".{s}")))
    };
    for n in r.names.iter().chain(&r.suffixes) {
        let prefixed = format!("not{n}");
        if !covered(&prefixed) {
            v.push((prefixed, false));
        }
        v.push((format!("{n}.evil.example"), true));
    }
    for g in &r.globs {
        let concrete = g.replace('*', "x1").replace('?', "7");
        v.push((format!("{concrete}.evil.example"), true));
        v.push((format!("extra.{concrete}"), false));
    }
    v
}

#[test]
fn every_rule_matches_its_own_forms_and_not_their_decoys() {
    let set = shipped();
    let m = &set.matcher;
    let mut failures = Vec::new();
    let mut checked = 0;
    for (i, r) in set.rules.iter().enumerate() {
        let idx = i as u32;
        for name in positives(r) {
            checked += 1;
            if !m.match_name(&name).iter().any(|h| h.rule == idx) {
                failures.push(format!(
                    "{} ({}:{}) does not match its own name {name:?}",
                    r.id, r.file, r.line
                ));
            }
        }
        for (name, nothing_at_all) in decoys(r) {
            checked += 1;
            let hits = m.match_name(&name);
            if hits.iter().any(|h| h.rule == idx) || (nothing_at_all && !hits.is_empty()) {
                failures.push(format!(
                    "{}: decoy {name:?} matches {:?}",
                    r.id,
                    hits.iter()
                        .map(|h| &set.rule(h.rule).id)
                        .collect::<Vec<_>>()
                ));
            }
        }
        for net in &r.cidrs {
            checked += 2;
            if !m.match_ip(net.network()).contains(&idx)
                || !m.match_ip(net.broadcast()).contains(&idx)
            {
                failures.push(format!("{}: {net} does not match its own ends", r.id));
            }
            let outside: Option<IpAddr> = match net {
                ipnet::IpNet::V4(n) => u32::from(n.broadcast())
                    .checked_add(1)
                    .map(|a| IpAddr::V4(a.into())),
                ipnet::IpNet::V6(n) => u128::from(n.broadcast())
                    .checked_add(1)
                    .map(|a| IpAddr::V6(a.into())),
            };
            // Adjacent ranges of the same rule are fine: the decoy is outside all of them.
            if let Some(o) = outside.filter(|o| !r.cidrs.iter().any(|n| n.contains(o))) {
                if m.match_ip(o).contains(&idx) {
                    failures.push(format!("{}: {o} just outside {net} matches", r.id));
                }
            }
        }
        for (proto, ranges) in [(Proto::Tcp, &r.tcp_ports), (Proto::Udp, &r.udp_ports)] {
            for &(lo, hi) in ranges {
                checked += 2;
                if !m.match_port(proto, lo).contains(&idx)
                    || !m.match_port(proto, hi).contains(&idx)
                {
                    failures.push(format!(
                        "{}: port range {lo}-{hi} does not match its ends",
                        r.id
                    ));
                }
            }
        }
        for p in &r.http_paths {
            checked += 2;
            if !m.match_http_path(&format!("{p}?x=1")).contains(&idx)
                || m.match_http_path(&format!("/vwtest{p}")).contains(&idx)
            {
                failures.push(format!("{}: path {p} misbehaves", r.id));
            }
        }
    }
    assert!(checked > 100, "only {checked} checks: are the packs empty?");
    assert!(
        failures.is_empty(),
        "{} rule failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn browsing_the_vendor_site_is_low_severity_and_product_names_are_high() {
    let set = shipped();
    let sev = |name: &str| {
        let hits = set.matcher.match_name(name);
        assert_eq!(hits.len(), 1, "{name}: {hits:?}");
        let r = set.rule(hits[0].rule);
        (r.category.clone(), r.severity.as_str())
    };
    assert_eq!(sev("www.kaspersky.com"), ("web-portal".into(), "low"));
    assert_eq!(sev("s05.upd.kaspersky.com"), ("update".into(), "high"));
    assert_eq!(sev("dnl-01.geo.kaspersky.com"), ("update".into(), "high"));
    assert_eq!(
        sev("ksn-file-geo.kaspersky-labs.com"),
        ("ksn".into(), "high")
    );
    assert_eq!(
        sev("activation-v2.kaspersky.com"),
        ("activation".into(), "high")
    );
    for decoy in [
        "notkaspersky.com",
        "kaspersky.com.evil.example",
        "www.example.org",
        "securelist.com",
    ] {
        assert!(set.matcher.match_name(decoy).is_empty(), "{decoy}");
    }
}

#[test]
fn port_only_rules_are_never_high_and_need_two_ports() {
    let set = shipped();
    for r in &set.rules {
        let port_only = (!r.tcp_ports.is_empty() || !r.udp_ports.is_empty())
            && r.names.is_empty()
            && r.suffixes.is_empty()
            && r.globs.is_empty();
        if port_only && r.severity >= vendorwatch::detect::rules::Severity::High {
            panic!(
                "{}: port-only rule with severity {}",
                r.id,
                r.severity.as_str()
            );
        }
        if port_only && r.vendor == "kaspersky" {
            assert!(
                r.min_distinct_ports >= 2,
                "{}: Kaspersky port rules need min_distinct_ports >= 2",
                r.id
            );
        }
    }
}

#[test]
fn rules_check_accepts_every_shipped_pack_and_names_problems_in_a_broken_one() {
    let bin = env!("CARGO_BIN_EXE_vendorwatch");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    for entry in std::fs::read_dir(&dir).expect("rules/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = Command::new(bin)
                .args(["rules", "check"])
                .arg(&path)
                .output()
                .expect("runs");
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let out = Command::new(bin)
        .args(["rules", "check"])
        .output()
        .expect("runs");
    assert!(out.status.success());

    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("bad.toml");
    let text = std::fs::read_to_string(dir.join("kaspersky.toml")).expect("pack");
    let broken = text.replacen("severity = \"high\"", "severity = \"hgih\"", 1);
    std::fs::write(&bad, &broken).expect("write");
    let out = Command::new(bin)
        .args(["rules", "check"])
        .arg(&bad)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = broken
        .lines()
        .position(|l| l.contains("hgih"))
        .expect("line")
        + 1;
    assert!(err.contains(&format!("bad.toml:{line}:")), "{err}");
    assert!(err.contains("hgih"), "{err}");
}

#[test]
fn rules_match_exit_codes() {
    let bin = env!("CARGO_BIN_EXE_vendorwatch");
    let hit = Command::new(bin)
        .args(["rules", "match", "DNL-01.geo.kaspersky.com."])
        .output()
        .expect("runs");
    assert_eq!(hit.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&hit.stdout).contains("kaspersky/update"));
    let miss = Command::new(bin)
        .args(["rules", "match", "notkaspersky.com"])
        .output()
        .expect("runs");
    assert_eq!(miss.status.code(), Some(1));
    let port = Command::new(bin)
        .args(["rules", "match", "13000/tcp"])
        .output()
        .expect("runs");
    assert_eq!(port.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&port.stdout).contains("distinct"));
}
