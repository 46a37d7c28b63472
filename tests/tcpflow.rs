//! Flow-level cases on captures of real software (`pcaps/gen-tcpflow.sh`): Chromium's GREASE
//! Encrypted Client Hello over TLS and QUIC, a ClientHello seen mid-stream and re-ordered,
//! SPAN duplicates, client ports reused for new connections (TLS, HTTP, QUIC) and a
//! bad-checksum insertion. Expectations are `pcaps/expected-tcpflow.json`, derived with tshark
//! by `pcaps/expected_tcpflow.py` (one test re-derives them), never from vendorwatch.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn expected(capture: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("pcaps/expected-tcpflow.json"))
        .expect("pcaps/expected-tcpflow.json");
    let all: Value = serde_json::from_str(&text).expect("JSON");
    all[capture].as_array().expect("capture listed").clone()
}

struct Run {
    summary: String,
    events: Vec<Value>,
    alerts: Vec<Value>,
    report: Value,
}

fn replay(capture: &str) -> Run {
    replay_with(capture, &[])
}

fn replay_with(capture: &str, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let (events, alerts, report) = (
        dir.path().join("events.jsonl"),
        dir.path().join("alerts.jsonl"),
        dir.path().join("report.json"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .env("VENDORWATCH_STATE", "none")
        .args(["replay", "--workers", "2", "--events"])
        .arg(&events)
        .arg("--alerts")
        .arg(&alerts)
        .arg("--report")
        .arg(&report)
        .args(extra)
        .arg(root().join("pcaps").join(capture))
        .output()
        .expect("runs vendorwatch");
    assert!(out.status.success(), "{capture}: {out:?}");
    let lines = |p: &Path| -> Vec<Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    };
    Run {
        summary: String::from_utf8_lossy(&out.stderr).into_owned(),
        events: lines(&events),
        alerts: lines(&alerts),
        report: serde_json::from_str(&std::fs::read_to_string(&report).expect("report"))
            .expect("report JSON"),
    }
}

/// (host, kind, value, ech) of every server name (TLS, QUIC, HTTP), with repetition.
type Named = (String, String, String, bool);

fn server_names_expected(capture: &str) -> Vec<Named> {
    let mut v: Vec<Named> = expected(capture)
        .iter()
        .filter(|n| n["kind"] != "dns")
        .map(|n| {
            (
                n["host"].as_str().unwrap_or_default().to_string(),
                n["kind"].as_str().unwrap_or_default().to_string(),
                n["value"].as_str().unwrap_or_default().to_string(),
                n["ech"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    v.sort();
    v
}

fn server_names(run: &Run) -> Vec<Named> {
    let mut v: Vec<Named> = run
        .events
        .iter()
        .filter(|e| {
            matches!(
                e["kind"].as_str(),
                Some("tls_sni" | "quic_sni" | "http_host")
            )
        })
        .map(|e| {
            (
                e["flow"]["src_ip"].as_str().unwrap_or_default().to_string(),
                e["kind"].as_str().unwrap_or_default().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
                e["tls"]["ech"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    v.sort();
    v
}

/// DNS question names, one per message, counted.
fn dns_counts(names: impl Iterator<Item = String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in names {
        *m.entry(n).or_default() += 1;
    }
    m
}

fn anomaly(summary: &str, reason: &str) -> u64 {
    summary
        .lines()
        .find(|l| l.trim_start().starts_with("anomalies"))
        .and_then(|l| {
            l.split(", ")
                .find_map(|part| {
                    part.trim()
                        .rsplit_once(' ')
                        .filter(|(k, _)| k.ends_with(reason))
                })
                .and_then(|(_, n)| n.replace(',', "").parse().ok())
        })
        .unwrap_or(0)
}

fn indicators(run: &Run) -> Vec<Value> {
    run.report["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|h| h["detections"].as_array().into_iter().flatten())
        .flat_map(|d| d["indicators"].as_array().into_iter().flatten())
        .cloned()
        .collect()
}

#[test]
fn chromium_hellos_with_grease_ech_are_matched_over_tls_and_quic() {
    let run = replay("chromium-ech-nodns.pcap");
    let want = server_names_expected("chromium-ech-nodns.pcap");
    assert!(want.iter().any(|n| n.1 == "tls_sni") && want.iter().any(|n| n.1 == "quic_sni"));
    assert_eq!(server_names(&run), want);
    // Without DNS in the capture, the ClientHellos alone raise the alert, which says ECH was
    // used with that name and that it was GREASE.
    let alert = run
        .alerts
        .iter()
        .find(|a| a["indicator"]["kind"] == "tls_sni" || a["indicator"]["kind"] == "quic_sni")
        .unwrap_or_else(|| panic!("no alert from a ClientHello: {:?}", run.alerts));
    assert_eq!(alert["indicator"]["ech"], true, "{alert}");
    let why = alert["explanation"].as_str().unwrap_or_default();
    let name = alert["indicator"]["value"].as_str().unwrap_or_default();
    assert!(
        why.contains("Encrypted Client Hello") && why.contains(name) && why.contains("GREASE"),
        "{alert}"
    );
    let inds = indicators(&run);
    for (_, kind, value, _) in &want {
        assert!(
            inds.iter().any(|i| i["kind"] == kind.as_str()
                && i["value"] == value.as_str()
                && i["ech"] == true),
            "{kind} {value} is not an ECH indicator in the report: {inds:?}"
        );
    }
    // GREASE hides nothing: no host is listed as hiding names behind ECH.
    for h in run.report["hosts"].as_array().into_iter().flatten() {
        assert_eq!(h["names_hidden"]["ech_connections"], 0, "{h}");
    }
    assert!(!run.summary.contains("used ECH"), "{}", run.summary);
}

#[test]
fn a_client_hello_seen_mid_stream_in_reverse_order_is_read() {
    let run = replay("midstream-reordered.pcap");
    let want = server_names_expected("midstream-reordered.pcap");
    assert_eq!(want.len(), 1);
    assert_eq!(server_names(&run), want, "{}", run.summary);
}

#[test]
fn span_duplicates_are_counted_once() {
    let run = replay("span-duplicates.pcap");
    assert_eq!(
        server_names(&run),
        server_names_expected("span-duplicates.pcap")
    );
    let want = dns_counts(
        expected("span-duplicates.pcap")
            .iter()
            .filter(|n| n["kind"] == "dns")
            .map(|n| n["value"].as_str().unwrap_or_default().to_string()),
    );
    let got = dns_counts(
        run.events
            .iter()
            .filter(|e| e["kind"] == "dns")
            .map(|e| e["value"].as_str().unwrap_or_default().to_string()),
    );
    assert!(!want.is_empty());
    assert_eq!(got, want);
    // Every frame of the original is there twice: each second copy is counted.
    assert!(anomaly(&run.summary, "duplicates") > 100, "{}", run.summary);
}

#[test]
fn a_reused_client_port_starts_a_fresh_flow_for_tls_http_and_quic() {
    let run = replay("port-reuse.pcap");
    let want = server_names_expected("port-reuse.pcap");
    assert_eq!(server_names(&run), want);
    // Three 4-tuples used twice: TLS, HTTP and QUIC.
    assert_eq!(
        anomaly(&run.summary, "transport_tuple_reused"),
        3,
        "{}",
        run.summary
    );
    let inds = indicators(&run);
    for vendor_name in [
        "ksn-file-geo.kaspersky-labs.com",
        "dnl-02.geo.kaspersky.com",
        "s07.upd.kaspersky.com",
    ] {
        assert!(
            inds.iter()
                .any(|i| i["value"] == vendor_name && i["kind"] != "dns"),
            "{vendor_name}: {inds:?}"
        );
    }
}

#[test]
fn a_bad_checksum_insertion_does_not_hide_the_real_client_hello() {
    let run = replay("checksum-insertion.pcap");
    assert_eq!(
        server_names(&run),
        server_names_expected("checksum-insertion.pcap"),
        "{}",
        run.summary
    );
    assert_eq!(
        anomaly(&run.summary, "transport_checksum_bad"),
        1,
        "{}",
        run.summary
    );
    assert!(indicators(&run)
        .iter()
        .any(|i| i["kind"] == "tls_sni" && i["value"] == "activation-v2.kaspersky.com"));
}

#[test]
fn ignore_checksums_reads_every_segment_as_it_is() {
    // The option is for captures whose checksums mean nothing; on this one it lets the
    // inserted hello be read first, which is what the default protects against.
    let run = replay_with("checksum-insertion.pcap", &["--ignore-checksums"]);
    let on_vendor_port: Vec<String> = run
        .events
        .iter()
        .filter(|e| e["kind"] == "tls_sni" && e["flow"]["src_port"] == 41012)
        .map(|e| e["value"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(on_vendor_port, ["www.example.org"]);
    assert_eq!(anomaly(&run.summary, "transport_checksum_bad"), 0);
}

#[test]
fn committed_expectations_are_what_tshark_says() {
    if Command::new("tshark").arg("--version").output().is_err() {
        panic!("tshark is not installed: run `bash scripts/deps.sh test`");
    }
    let out = Command::new("python3")
        .arg(root().join("pcaps/expected_tcpflow.py"))
        .output()
        .expect("runs the tshark deriver");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("pcaps/expected-tcpflow.json")).expect("read"),
    )
    .expect("JSON");
    assert_eq!(fresh, committed);
}
