//! A server that speaks first, on a tap that loses or reorders its first words
//! (`pcaps/gen-taploss.sh`): SMTP STARTTLS from `openssl s_client` to a real server, and two
//! copies of that capture without the banner and with the banner after the client's EHLO. The
//! EHLO then acknowledges bytes the capture has not shown; it is what the server took, and the
//! ClientHello after STARTTLS must still be read. The expected name is tshark's reading of the
//! whole capture (the generator checked that the server received it), never vendorwatch's.

use std::path::PathBuf;
use std::process::Command;

fn pcap(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("pcaps")
        .join(name)
}

/// (client address, server name) of every ClientHello tshark reads in `capture`.
fn tshark_names(capture: &str) -> Vec<(String, String)> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap(capture))
        .args(["-Y", "tls.handshake.type == 1", "-T", "fields"])
        .args(["-e", "ip.src", "-e", "tls.handshake.extensions_server_name"])
        .output()
        .expect("tshark runs (bash scripts/deps.sh installs it)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(ip, name)| (ip.to_string(), name.to_string()))
        .collect()
}

/// (client address, server name) of every `tls_sni` event of a replay, and its summary.
fn sensor_names(capture: &str) -> (Vec<(String, String)>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .args(["replay", "--state", "none", "--events", "-"])
        .arg(pcap(capture))
        .output()
        .expect("runs vendorwatch");
    let summary = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{capture}: {summary}");
    let names = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["kind"] == "tls_sni")
        .map(|e| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            (text(&e["flow"]["src_ip"]), text(&e["value"]))
        })
        .collect();
    (names, summary)
}

#[test]
fn a_starttls_hello_is_read_whatever_the_tap_did_to_the_servers_banner() {
    let expected = tshark_names("starttls-smtp.pcap");
    assert_eq!(
        expected,
        [("10.42.1.11".into(), "dnl-01.geo.kaspersky.com".into())],
        "the capture is not the one gen-taploss.sh makes"
    );
    for capture in [
        "starttls-smtp.pcap",
        "taploss-smtp-banner.pcap",
        "taploss-smtp-reordered.pcap",
    ] {
        let (names, summary) = sensor_names(capture);
        assert_eq!(names, expected, "{capture}: {summary}");
    }
}
