//! The HTML compliance report end to end: the real binary replays real captures into a host
//! report, `output::html::render` turns it into a page, and a real browser (headless Chromium)
//! parses and draws it. The DOM must hold the hosts, vendors, categories and the timeline
//! chart, and a hostile name from the wire must stay text.
//!
//! Needs the Debian package `chromium` (`/usr/bin/chromium`); without it the browser checks
//! are skipped with a loud message (the rendering checks on the HTML text still run).

use std::path::{Path, PathBuf};
use std::process::Command;
use vendorwatch::output::html;
use vendorwatch::time::Timestamp;

const CHROMIUM: &str = "/usr/bin/chromium";
const HOSTILE: &str = "<script>alert(1)</script>";

fn pcap(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pcaps")
        .join(name)
}

/// The host report of a replay of the bundled captures, made by the real binary.
fn replay_report(dir: &Path) -> serde_json::Value {
    let report = dir.join("hosts.json");
    let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .env("VENDORWATCH_STATE", "none")
        .args(["replay", "-q", "--report"])
        .arg(&report)
        .args(
            [
                "dns.pcap",
                "tls.pcap",
                "http-proxy.pcap",
                "tls12-certs.pcap",
                "quic.pcap",
                "dns-forwarder.pcap",
            ]
            .map(pcap),
        )
        .output()
        .expect("vendorwatch runs");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&report).expect("report written"))
        .expect("report is JSON")
}

/// Puts a hostile value where names from the wire go: an indicator value, and a name hidden
/// behind encrypted DNS.
fn inject_hostile(report: &mut serde_json::Value) {
    let host = report["hosts"]
        .as_array_mut()
        .expect("hosts")
        .iter_mut()
        .find(|h| h["ip"] == "10.10.1.11")
        .expect("10.10.1.11 in the report");
    let det = &mut host["detections"][0];
    det["indicators"]
        .as_array_mut()
        .expect("indicators")
        .push(serde_json::json!({"kind": "dns", "value": HOSTILE, "count": 1, "query": HOSTILE}));
    host["names_hidden"] = serde_json::json!({
        "ech_connections": 2,
        "encrypted_dns_connections": 1,
        "encrypted_dns_via": [HOSTILE],
    });
}

fn chromium(profile: &Path, extra: &[String], page: &Path) -> std::process::Output {
    Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs")
}

#[test]
fn report_of_real_captures_renders_in_a_browser_with_hosts_chart_and_no_script() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut report = replay_report(tmp.path());
    inject_hostile(&mut report);
    let last = report["last_packet"].as_str().expect("last_packet");
    let last = time::OffsetDateTime::parse(last, &time::format_description::well_known::Rfc3339)
        .expect("rfc3339");
    // Two days after the capture: every host was seen within a week, none within a day.
    let now = Timestamp(
        i64::try_from(last.unix_timestamp_nanos()).expect("fits") + 2 * 86_400_000_000_000,
    );

    let page = html::render(&report, now, 7);
    let path = tmp.path().join("report.html");
    std::fs::write(&path, &page).expect("write page");
    if let Ok(dir) = std::env::var("VENDORWATCH_KEEP_HTML") {
        let _ = std::fs::copy(&path, Path::new(&dir).join("report.html"));
    }

    // The text of the page, browser or not.
    assert!(!page.contains("<script"), "the page holds a script tag");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    for forbidden in ["<link", "<img", "@import", "url(", "<iframe"] {
        assert!(!page.contains(forbidden), "external resource: {forbidden}");
    }
    assert!(
        page.contains("Hosts still active (7)"),
        "all 7 hosts within 7 days"
    );
    assert!(page.contains("Hosts gone quiet (0)"));
    let quiet = html::render(&report, now, 1);
    assert!(quiet.contains("Hosts still active (0)") && quiet.contains("Hosts gone quiet (7)"));

    if !Path::new(CHROMIUM).exists() {
        eprintln!(
            "\n\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !!! SKIPPED: {CHROMIUM} is missing, the HTML report was NOT checked in a browser.\n\
             !!! Install the Debian package `chromium` (apt-get install chromium).\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        );
        return;
    }

    let profile = tmp.path().join("profile");
    let out = chromium(&profile, &["--dump-dom".into()], &path);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium --dump-dom failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for host in [
        "10.10.1.11",
        "10.10.1.12",
        "10.10.1.13",
        "10.10.2.30",
        "fd00:10::11",
        "fd00:10::12",
        "fd00:10::13",
        "10.10.2.54",
    ] {
        assert!(dom.contains(host), "host {host} missing from the DOM");
    }
    for word in [
        "kaspersky",
        "update",
        "ksn",
        "activation",
        "certificate",
        "web-portal",
        "kaspersky.update.upd-servers",
        "s07.upd.kaspersky.com",
        "forwarded resolver lookups",
        "Encrypted Client Hello",
        "Day (UTC)",
        "Hosts with detections",
        "2026-11-27",
        "2026-11-28",
    ] {
        assert!(dom.contains(word), "{word:?} missing from the DOM");
    }
    assert!(dom.contains("<svg class=\"timeline\""), "no timeline chart");
    // Two days in the capture, a bar for each (all hosts on the 27th, some on the 28th).
    assert_eq!(
        dom.matches("<rect class=\"day-bar\"").count(),
        2,
        "one bar per day"
    );
    assert!(dom.contains("2026-11-27: 7 hosts"));
    // The hostile value is text: no script element anywhere, and the text is there.
    assert!(
        !dom.to_lowercase().contains("<script"),
        "a script element in the DOM"
    );
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

    let png = tmp.path().join("r.png");
    let out = chromium(
        &profile,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,2000".into(),
        ],
        &path,
    );
    assert!(
        out.status.success(),
        "chromium --screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 20_000,
        "screenshot too small: {} bytes",
        bytes.len()
    );
    if let Ok(dir) = std::env::var("VENDORWATCH_KEEP_HTML") {
        let _ = std::fs::copy(&png, Path::new(&dir).join("r.png"));
    }
}

/// The identity history and evidence sample of `pcaps/dhcp-ptr.pcap` (DHCP leases, PTR
/// answers, an address two machines held in turn) as a browser draws them; the names to find
/// come from tshark's reading of the capture (`pcaps/expected/dhcp-ptr.pcap.json`).
#[test]
fn identity_history_and_evidence_sample_render_and_flag_the_moved_address() {
    let tmp = tempfile::tempdir().expect("tmp");
    let report_path = tmp.path().join("hosts.json");
    let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .env("VENDORWATCH_STATE", "none")
        .args(["replay", "-q", "--report"])
        .arg(&report_path)
        .arg(pcap("dhcp-ptr.pcap"))
        .output()
        .expect("vendorwatch runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).expect("report"))
            .expect("json");
    let exp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(pcap("expected/dhcp-ptr.pcap.json")).expect("expectation"),
    )
    .expect("json");
    // tshark: the address that had two MACs, and every DHCP host name it had.
    let ids = exp["identities"].as_array().expect("identities");
    let macs_of = |ip: &serde_json::Value| -> std::collections::BTreeSet<String> {
        ids.iter()
            .filter(|i| &i["ip"] == ip && i["mac"].is_string())
            .map(|i| i["mac"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let moved = ids
        .iter()
        .map(|i| &i["ip"])
        .find(|ip| macs_of(ip).len() > 1)
        .expect("an address with two MACs")
        .clone();
    let names: Vec<String> = ids
        .iter()
        .filter(|i| i["ip"] == moved)
        .filter_map(|i| i["hostname"].as_str().map(str::to_string))
        .collect();
    // A hostile host name from the wire stays text.
    let host = report["hosts"]
        .as_array_mut()
        .expect("hosts")
        .iter_mut()
        .find(|h| h["ip"] == moved)
        .expect("moved address in the report");
    let current_mac = host["mac"].as_str().expect("mac").to_string();
    host["identities"].as_array_mut().expect("identities").push(
        serde_json::json!({"mac": null, "hostname": HOSTILE, "client_id": HOSTILE,
            "source": "ptr", "first_seen": null, "last_seen": null, "count": 1}),
    );
    let other_rows = ids
        .iter()
        .filter(|i| i["ip"] == moved && i["mac"].is_string() && i["mac"] != current_mac.as_str())
        .count();
    assert!(other_rows > 0);

    let page = html::render(&report, Timestamp::from_parts(1_900_000_000, 0), 7);
    assert!(!page.contains("<script"));
    let path = tmp.path().join("report.html");
    std::fs::write(&path, &page).expect("write page");
    if !Path::new(CHROMIUM).exists() {
        eprintln!("\n!!! SKIPPED: {CHROMIUM} is missing, the identity history was NOT checked in a browser.\n");
        return;
    }
    let out = chromium(&tmp.path().join("profile"), &["--dump-dom".into()], &path);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && dom.contains("</html>"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dom.contains("Identity history"));
    assert!(dom.contains("address used by more than one machine"));
    for n in &names {
        assert!(
            dom.contains(&format!(">{n}<")),
            "host name {n} missing from the DOM"
        );
    }
    for mac in macs_of(&moved) {
        assert!(dom.contains(&mac), "MAC {mac} missing");
    }
    // The rows of the other machine are marked, and only those.
    assert_eq!(
        dom.matches("<tr class=\"other-mac\">").count(),
        other_rows,
        "{dom}"
    );
    assert!(dom.contains("Evidence sample"));
    assert!(dom.contains("dnl-01.geo.kaspersky.com"));
    assert!(!dom.to_lowercase().contains("<script"));
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}
