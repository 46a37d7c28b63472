//! A TLS 1.3 handshake with a HelloRetryRequest (`pcaps/hrr/hrr.pcap`, real OpenSSL client and
//! server, `pcaps/hrr/generate.sh`): the client sends two ClientHellos on one connection. The
//! expectation is what tshark reads in the capture: the server names of the ClientHellos and
//! that one server hello is a HelloRetryRequest (its random is the RFC 8446 constant).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

/// RFC 8446 section 4.1.3: the random of a HelloRetryRequest.
const HRR_RANDOM: &str = "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c";

fn capture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pcaps/hrr/hrr.pcap")
}

#[test]
fn a_hello_retry_request_handshake_names_its_server_once_with_no_anomaly() {
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(capture())
        .args([
            "-Y",
            "tls.handshake",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "tls.handshake.type",
            "-e",
            "tls.handshake.extensions_server_name",
            "-e",
            "tls.handshake.random",
        ])
        .output()
        .expect("tshark (bash scripts/deps.sh test installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('|').collect()).collect();
    let hellos: Vec<&Vec<&str>> = rows.iter().filter(|r| r[0] == "1").collect();
    assert_eq!(hellos.len(), 2, "tshark: {text}");
    assert!(
        rows.iter().any(|r| r[0] == "2" && r[2] == HRR_RANDOM),
        "no HelloRetryRequest: {text}"
    );
    let names: BTreeSet<String> = hellos.iter().map(|r| r[1].to_string()).collect();

    let tmp = tempfile::tempdir().expect("tmp");
    let events = tmp.path().join("e.jsonl");
    let run = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .args([
            "replay",
            "--state",
            "none",
            "--home-net",
            "127.0.0.0/8",
            "--events",
        ])
        .arg(&events)
        .arg(capture())
        .output()
        .expect("runs vendorwatch");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let seen: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .expect("events")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .filter(|e: &serde_json::Value| e["kind"] == "tls_sni")
        .collect();
    // One connection, one name: the second ClientHello repeats the first's.
    assert_eq!(seen.len(), 1, "{seen:?}");
    let got: BTreeSet<String> = seen
        .iter()
        .map(|e| e["value"].as_str().expect("value").to_string())
        .collect();
    assert_eq!(got, names);
    assert!(
        !stderr.contains("anomalies"),
        "a HelloRetryRequest is normal TLS 1.3, not an anomaly: {stderr}"
    );
    assert!(
        stderr.contains("update"),
        "the update server is reported: {stderr}"
    );
}
