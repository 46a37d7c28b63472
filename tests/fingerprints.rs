//! Fingerprint learning on real client stacks (`pcaps/fingerprints/learn.pcap`, made by
//! `pcaps/fingerprints/generate.sh`): GnuTLS playing a vendor's updater on three hosts with
//! visible names and on two hosts with none; curl, Python `ssl` and Chromium everywhere, to
//! vendor names, other names and bare addresses. Expectations come from the scenario plan
//! checked with tshark (`pcaps/fingerprints/expected.py`, which computes JA4 from tshark's
//! fields on its own), never from the sensor.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn capture() -> PathBuf {
    root().join("pcaps/fingerprints/learn.pcap")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(root().join("pcaps/fingerprints/learn.expected.json"))
        .expect("pcaps/fingerprints/learn.expected.json");
    serde_json::from_str(&text).expect("JSON")
}

/// The settings the scenario is sized for: three learned hosts in a few seconds of traffic.
const QUICK: [&str; 6] = [
    "--learn-min-hosts",
    "3",
    "--learn-min-specificity",
    "0.9",
    "--learn-min-seconds",
    "0",
];

fn vendorwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .env_remove("VENDORWATCH_STATE")
        .args(args)
        .output()
        .expect("runs vendorwatch")
}

/// Replays `pcap` and returns the host report.
fn replay(dir: &Path, pcap: &Path, extra: &[&str]) -> Value {
    let report = dir.join("report.json");
    let mut args = vec!["replay", "-q", "--report", report.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    args.push(pcap.to_str().expect("utf-8"));
    let out = vendorwatch(&args);
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(report).expect("report")).expect("JSON")
}

/// Hosts with a `suspected` detection, and the indicators of those detections.
fn suspected(report: &Value) -> (BTreeSet<String>, Vec<Value>) {
    let mut hosts = BTreeSet::new();
    let mut indicators = Vec::new();
    for h in report["hosts"].as_array().expect("hosts") {
        for d in h["detections"].as_array().expect("detections") {
            if d["category"] == "suspected" {
                hosts.insert(h["ip"].as_str().expect("ip").to_string());
                assert_eq!(
                    d["severity"], "medium",
                    "a learned fingerprint is never high"
                );
                indicators.extend(d["indicators"].as_array().expect("indicators").clone());
            }
        }
    }
    (hosts, indicators)
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_str().expect("string").to_string())
        .collect()
}

#[test]
fn the_updater_stack_is_suspected_on_hidden_name_hosts_and_no_other() {
    let exp = expected();
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("inv.db");
    let mut args = vec!["--state", db.to_str().expect("utf-8")];
    args.extend_from_slice(&QUICK);
    let report = replay(tmp.path(), &capture(), &args);
    let (hosts, indicators) = suspected(&report);
    assert_eq!(hosts, strings(&exp["suspected"]), "{report:#}");
    for ind in &indicators {
        assert_eq!(ind["kind"], "fingerprint");
        assert_eq!(ind["value"], exp["updater_ja4"]);
        let learned = ind["name"].as_str().expect("what it was learned from");
        for h in strings(&exp["learned_from"]) {
            assert!(learned.contains(&h), "{learned} does not name {h}");
        }
    }
    // The learned hosts are reported by their names, as before.
    for h in strings(&exp["learned_from"]) {
        let host = report["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .find(|x| x["ip"] == h.as_str())
            .unwrap_or_else(|| panic!("{h} not reported"));
        assert!(host["detections"]
            .as_array()
            .expect("detections")
            .iter()
            .any(|d| d["category"] == "update"));
    }

    // The inventory keeps what was learned: the one candidate and its evidence.
    let out = vendorwatch(
        &[
            &["fingerprints", "list", "--format", "json", "--state"][..],
            &[db.to_str().expect("utf-8")],
            &QUICK,
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["fingerprint"], exp["updater_ja4"]);
    assert_eq!(list[0]["vendor"], "kaspersky");
    assert_eq!(strings(&list[0]["hosts"]), strings(&exp["learned_from"]));
}

#[test]
fn common_stacks_are_never_candidates_and_defaults_suspect_nothing_here() {
    let exp = expected();
    let tmp = tempfile::tempdir().expect("tmp");
    // Chromium, curl and Python visit vendor names from three hosts and more, yet they are
    // used for everything else too: not candidates, so their address-only flows stay clean.
    let report = replay(
        tmp.path(),
        &capture(),
        &[&["--state", "none"][..], &QUICK].concat(),
    );
    let (hosts, _) = suspected(&report);
    for h in strings(&exp["hidden_common_stack_hosts"]) {
        assert!(!hosts.contains(&h), "{h} suspected for a common stack");
    }
    // The defaults want five hosts and an hour: this small scenario is not enough.
    let report = replay(tmp.path(), &capture(), &["--state", "none"]);
    assert!(suspected(&report).0.is_empty(), "{report:#}");
}

#[test]
fn no_fingerprint_finding_on_any_golden_capture_with_the_defaults() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pcaps = root().join("pcaps");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&pcaps)
        .expect("pcaps/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    files.sort();
    assert!(files.len() >= 10);
    for f in files {
        let report = replay(
            tmp.path(),
            &f,
            &["--state", "none", "--vendors", "kaspersky"],
        );
        assert!(
            suspected(&report).0.is_empty(),
            "{}: fingerprint findings on a capture with no hidden vendor stack",
            f.display()
        );
    }
}

#[test]
fn exported_candidates_are_a_pack_that_finds_the_stack_without_learning() {
    let exp = expected();
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("inv.db");
    replay(
        tmp.path(),
        &capture(),
        &[&["--state", db.to_str().expect("utf-8")][..], &QUICK].concat(),
    );
    let rules = tmp.path().join("rules");
    std::fs::create_dir(&rules).expect("mkdir");
    for e in std::fs::read_dir(root().join("rules")).expect("rules/") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "toml") {
            std::fs::copy(&p, rules.join(p.file_name().expect("name"))).expect("copy");
        }
    }
    let learned = rules.join("kaspersky-learned.toml");
    let out = vendorwatch(
        &[
            &["fingerprints", "export", "--vendor", "kaspersky", "-o"][..],
            &[
                learned.to_str().expect("utf-8"),
                "--state",
                db.to_str().expect("utf-8"),
            ],
            &QUICK,
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&learned).expect("the pack");
    assert!(
        text.contains(exp["updater_ja4"].as_str().expect("ja4")),
        "{text}"
    );
    let out = vendorwatch(&["rules", "check", rules.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Only the hidden updater host's traffic, no learning possible (nothing named in it):
    // the deployed pack alone finds it.
    let hidden_host = "10.20.1.15";
    let hidden = tmp.path().join("hidden.pcap");
    let st = Command::new("tcpdump")
        .args(["-r", capture().to_str().expect("utf-8"), "-w"])
        .arg(&hidden)
        .args(["host", hidden_host])
        .output()
        .expect("tcpdump (bash scripts/deps.sh test installs it)");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let report = replay(
        tmp.path(),
        &hidden,
        &["--state", "none", "--rules", rules.to_str().expect("utf-8")],
    );
    let (hosts, indicators) = suspected(&report);
    assert_eq!(
        hosts,
        BTreeSet::from([hidden_host.to_string()]),
        "{report:#}"
    );
    assert!(
        indicators.iter().all(|i| i["kind"] == "ja4"),
        "{indicators:?}"
    );
}
