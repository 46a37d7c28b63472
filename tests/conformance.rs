//! The peer-derived conformance corpus (`../shared/conformance/`): for every capture, the
//! names vendorwatch extracts (its `--events` log) against the names Zeek's or Suricata's
//! own test suites expect. Zeek logs are complete lists (sets must be equal); Suricata
//! checks are partial (expected ⊆ ours). Known gaps are listed in `KNOWN_GAPS`, each with
//! the issue that closes it; anything else that differs fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// (capture, kind, why it is not expected to match yet).
const KNOWN_GAPS: &[(&str, &str, &str)] = &[];

/// Where the peer and tshark disagree and we follow one side on purpose, with why.
const DECISIONS: &[(&str, &str, &str)] = &[
    (
        "zeek__quic__vector-max-size-crash.pcap",
        "dns_queries",
        "no peer names DNS here; tshark's heuristic dissector reads this UDP/443 QUIC crash reproducer as DNS with an 'unknown extended label' name; we read DNS only on DNS ports (53, 5353, 5355)",
    ),
    (
        "zeek__dns__dynamic-update.pcap",
        "dns_queries",
        "DNS UPDATE (opcode 5) is zone maintenance, not a lookup: neither the zone (tshark) nor the updated records (Zeek) is logged as a name",
    ),
    (
        "zeek__dns__dns_notify2.pcap",
        "dns_queries",
        "frame 1 is a standard response (DS aei.mpg.de) whose query was not captured; a response still names what was asked (Zeek itself logs response-only transactions, e.g. dns53.pcap), so we follow tshark",
    ),
    (
        "zeek__wikipedia.pcap",
        "dns_queries",
        "'workgroup' is a NetBIOS Name Service (UDP 137) name that Zeek logs as DNS; NBNS is not DNS and names no internet endpoint (tshark agrees)",
    ),
    (
        "zeek__wikipedia.pcap",
        "http_hosts",
        "frame 6 is a complete GET with Host: www.wikipedia.org on a connection whose handshake was not captured; Zeek skips it, tshark and we read it (a span port joins flows mid-way)",
    ),
];

fn corpus() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance");
    dir.join("expected.jsonl").exists().then_some(dir)
}

fn norm(v: &serde_json::Value, strip_port: bool) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str())
        .map(|s| {
            let s = s.to_ascii_lowercase();
            let s = s.strip_suffix('.').unwrap_or(&s).to_string();
            if strip_port {
                String::from_utf8_lossy(vendorwatch::extract::names::strip_port(s.as_bytes()))
                    .into_owned()
            } else {
                s
            }
        })
        .collect()
}

fn extract(pcap: &Path) -> (BTreeMap<String, BTreeSet<String>>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = dir.path().join("events.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .env("VENDORWATCH_STATE", "none")
        .args(["replay", "--quiet", "--workers", "2", "--events"])
        .arg(&events)
        .arg(pcap)
        .output()
        .expect("runs vendorwatch");
    let mut sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let text = std::fs::read_to_string(&events).unwrap_or_default();
    for line in text.lines() {
        let ev: serde_json::Value = serde_json::from_str(line).expect("events are JSON");
        let kind = ev["kind"].as_str().unwrap_or_default().to_string();
        let value = ev["value"].as_str().unwrap_or_default().to_string();
        sets.entry(kind).or_default().insert(value);
    }
    (sets, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn conformance_corpus() {
    let Some(dir) = corpus() else {
        eprintln!("../shared/conformance not present: skipped");
        return;
    };
    let text = std::fs::read_to_string(dir.join("expected.jsonl")).expect("expected.jsonl");
    let kinds = [
        ("dns_queries", "dns", false),
        ("tls_sni", "tls_sni", false),
        ("quic_sni", "quic_sni", false),
        ("http_hosts", "http_host", true),
    ];
    let mut table = String::new();
    let mut failures = Vec::new();
    let mut gaps_used = BTreeSet::new();
    let (mut checked, mut passed) = (0, 0);
    table.push_str(&format!(
        "{:<78} {:<9} {:<8} {:>4} {:>4}  result\n",
        "capture", "kind", "oracle", "exp", "got"
    ));
    for line in text.lines() {
        let e: serde_json::Value = serde_json::from_str(line).expect("expected.jsonl is JSON");
        let pcap = e["pcap"].as_str().expect("pcap");
        let name = pcap.trim_start_matches("pcaps/");
        let (got, stderr) = extract(&dir.join(pcap));
        assert!(
            !stderr.contains("panicked"),
            "{name}: vendorwatch panicked:\n{stderr}"
        );
        for (key, kind, strip) in kinds {
            let coverage = e["peer_coverage"][key].as_str().unwrap_or("none");
            // No peer names this kind here: tshark's set is the (weaker, non-peer) reference.
            let (oracle, expected) = if coverage.starts_with("zeek-log") {
                ("equal", norm(&e[key], strip))
            } else if coverage.starts_with("suricata-verify") {
                ("subset", norm(&e[key], strip))
            } else if e["tshark"][key].as_array().is_some_and(|a| !a.is_empty()) {
                ("tshark", norm(&e["tshark"][key], strip))
            } else {
                continue;
            };
            let mine: BTreeSet<String> = got
                .get(kind)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|s| {
                    if strip {
                        String::from_utf8_lossy(vendorwatch::extract::names::strip_port(
                            s.as_bytes(),
                        ))
                        .into_owned()
                    } else {
                        s
                    }
                })
                .collect();
            let ok = if oracle == "subset" {
                expected.is_subset(&mine)
            } else {
                expected == mine
            };
            checked += 1;
            let gap = KNOWN_GAPS.iter().find(|(p, k, _)| *p == name && *k == key);
            let decision = DECISIONS.iter().find(|(p, k, _)| *p == name && *k == key);
            let result = match (ok, gap, decision) {
                (true, None, _) => {
                    passed += 1;
                    "ok".to_string()
                }
                (true, Some(_), _) => {
                    passed += 1;
                    failures.push(format!("{name} {key}: listed as a known gap but now matches: remove it from KNOWN_GAPS"));
                    "ok (stale gap)".to_string()
                }
                (false, Some((_, _, why)), _) => {
                    gaps_used.insert((name.to_string(), key));
                    format!("KNOWN GAP: {why}")
                }
                (false, None, Some((_, _, why))) => {
                    passed += 1;
                    format!("decided: {why}")
                }
                (false, None, None) => {
                    failures.push(format!(
                        "{name} {key} ({oracle}): expected {expected:?}, got {mine:?}; notes: {}",
                        e["notes"]
                    ));
                    "FAIL".to_string()
                }
            };
            table.push_str(&format!(
                "{name:<78} {kind:<9} {oracle:<8} {:>4} {:>4}  {result}\n",
                expected.len(),
                mine.len()
            ));
        }
    }
    println!("{table}");
    println!(
        "conformance: {passed} of {checked} peer-backed name sets match; {} known gaps",
        gaps_used.len()
    );
    assert!(
        failures.is_empty(),
        "{} conformance failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Encrypted Client Hello: the outer names are logged, flagged, counted per host, and never
/// taken as the destination. The number of ECH hellos comes from tshark.
#[test]
fn ech_hellos_are_counted_per_host_not_taken_as_names() {
    let Some(dir) = corpus() else {
        eprintln!("../shared/conformance not present: skipped");
        return;
    };
    let pcap = dir.join("pcaps/zeek__tls__tls13-ech.pcap");
    let tshark = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args([
            "-Y",
            "tls.handshake.type == 1 && tls.handshake.extension.type == 65037",
            "-T",
            "fields",
            "-e",
            "ip.src",
        ])
        .output()
        .expect("tshark is installed (scripts/deps.sh)");
    let hellos: Vec<String> = String::from_utf8_lossy(&tshark.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(!hellos.is_empty(), "tshark finds ECH hellos");
    let tmp = tempfile::tempdir().expect("tmp");
    let (report, events) = (tmp.path().join("r.json"), tmp.path().join("e.jsonl"));
    let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .env("VENDORWATCH_STATE", "none")
        .args(["replay", "-q", "--report"])
        .arg(&report)
        .arg("--events")
        .arg(&events)
        .arg(&pcap)
        .output()
        .expect("runs");
    assert!(out.status.success());
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let host = r["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["ip"] == hellos[0].as_str()))
        .expect("the ECH client is listed");
    assert_eq!(
        host["names_hidden"]["ech_connections"].as_u64(),
        Some(hellos.len() as u64),
        "{host}"
    );
    let text = std::fs::read_to_string(&events).expect("events");
    let ech_events = text.lines().filter(|l| l.contains("\"ech\":true")).count();
    assert_eq!(
        ech_events,
        hellos.len(),
        "each outer name is logged, flagged as ECH"
    );
}
