//! The command line as a user meets it: bad and partial input, exit codes, stdin,
//! directories of rotated captures, usage errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
mod common;

/// The binary, kept away from any shared inventory (tests that want one pass --state).
fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vendorwatch"));
    c.env("VENDORWATCH_STATE", "none");
    c
}

fn pcap(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pcaps")
        .join(name)
}

fn alerts_of(out_dir: &Path, args: &[&std::ffi::OsStr]) -> (Output, Vec<serde_json::Value>) {
    let alerts = out_dir.join("alerts.jsonl");
    let out = bin()
        .arg("replay")
        .arg("--alerts")
        .arg(&alerts)
        .args(args)
        .output()
        .expect("runs");
    let list = std::fs::read_to_string(&alerts)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    (out, list)
}

fn keys(alerts: &[serde_json::Value]) -> std::collections::BTreeSet<String> {
    alerts
        .iter()
        .map(|a| format!("{} {} {}", a["host"]["ip"], a["vendor"], a["category"]))
        .collect()
}

/// Packets tshark can read from a (possibly truncated) capture.
fn tshark_frames(path: &Path) -> usize {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .expect("tshark");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn truncated_capture_names_where_it_broke_keeps_what_came_before_and_the_next_file_goes_on() {
    let tmp = tempfile::tempdir().expect("tmp");
    let full = std::fs::read(pcap("dns.pcap")).expect("dns.pcap");
    let cut = tmp.path().join("cut.pcap");
    std::fs::write(&cut, &full[..full.len() * 2 / 3]).expect("write");
    let (out, alerts) = alerts_of(tmp.path(), &[cut.as_os_str(), pcap("tls.pcap").as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cut.pcap: record")
            && stderr.contains("byte offset")
            && stderr.contains("truncated"),
        "{stderr}"
    );
    // Everything before the break was read: as many packets as tshark reads from the cut file.
    let frames = tshark_frames(&cut);
    let tls_frames = tshark_frames(&pcap("tls.pcap"));
    assert!(
        stderr.contains(&format!(" {} packets", frames + tls_frames)),
        "tshark reads {frames}+{tls_frames}:\n{stderr}"
    );
    // The cut file's alerts plus the next file's.
    let (_, only_tls) = alerts_of(tmp.path(), &[pcap("tls.pcap").as_os_str()]);
    assert!(keys(&alerts).is_superset(&keys(&only_tls)));
    assert!(
        keys(&alerts).len() > keys(&only_tls).len(),
        "nothing from before the break: {alerts:?}"
    );
}

#[test]
fn stdin_gives_the_same_alerts_as_the_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_, from_file) = alerts_of(tmp.path(), &[pcap("http-proxy.pcap").as_os_str()]);
    let alerts = tmp.path().join("stdin.jsonl");
    let mut child = bin()
        .args(["replay", "--quiet", "--alerts"])
        .arg(&alerts)
        .arg("-")
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(&std::fs::read(pcap("http-proxy.pcap")).expect("read"))
            .expect("write");
    }
    assert!(child.wait().expect("wait").success());
    let from_stdin: Vec<serde_json::Value> = std::fs::read_to_string(&alerts)
        .expect("alerts")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert!(!from_file.is_empty());
    assert_eq!(keys(&from_stdin), keys(&from_file));
}

#[test]
fn directory_is_read_in_natural_order_and_non_captures_are_skipped() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("rotated");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::copy(pcap("dns.pcap"), dir.join("cap.pcap10")).expect("copy");
    std::fs::copy(pcap("tls.pcap"), dir.join("cap.pcap9")).expect("copy");
    std::fs::write(dir.join("README.txt"), "not a capture").expect("write");
    let first_event = |input: &Path| -> (Output, String) {
        let events = tmp.path().join("events.jsonl");
        let out = bin()
            .args(["replay", "--workers", "1", "--events"])
            .arg(&events)
            .arg(input)
            .output()
            .expect("runs");
        let text = std::fs::read_to_string(&events).expect("events");
        (out, text.lines().next().unwrap_or_default().to_string())
    };
    let (out, first_in_dir) = first_event(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("2 input(s)") && stderr.contains("skipped   1 file"),
        "{stderr}"
    );
    // cap.pcap9 comes before cap.pcap10: the directory's first event is tls.pcap's first event.
    let (_, first_in_tls) = first_event(&pcap("tls.pcap"));
    assert_eq!(first_in_dir, first_in_tls);
}

#[test]
fn exit_codes_for_missing_garbage_and_usage_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let garbage = tmp.path().join("garbage.pcap");
    std::fs::write(&garbage, b"this is not a capture file at all").expect("write");

    let out = bin()
        .args(["replay", "/nonexistent/x.pcap"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("/nonexistent/x.pcap: no such file or directory"));
    // Beside a capture that reads, the missing one is exit 1 and has its summary line, as a
    // capture that breaks does (it was said on stderr only).
    let out = bin()
        .args(["replay", "--state", "none", "/nonexistent/x.pcap"])
        .arg(pcap("dns.pcap"))
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("  ERROR     /nonexistent/x.pcap: no such file or directory"),
        "{stderr}"
    );

    let out = bin().arg("replay").arg(&garbage).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a pcap or pcapng file"));

    let out = bin()
        .arg("replay")
        .arg(&garbage)
        .arg(pcap("dns.pcap"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));

    let out = bin()
        .args(["replay", "--home-net", "10.0.0.0/33"])
        .arg(pcap("dns.pcap"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--home-net"));

    let out = bin()
        .args(["replay", "--vendors", "nosuchvendor"])
        .arg(pcap("dns.pcap"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no rule pack for vendor"));

    let out = bin().arg("replay").output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unknown_link_type_is_named() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut bytes = std::fs::read(pcap("dns.pcap")).expect("read");
    bytes[20..24].copy_from_slice(&147u32.to_le_bytes());
    let odd = tmp.path().join("odd.pcap");
    std::fs::write(&odd, bytes).expect("write");
    let out = bin().arg("replay").arg(&odd).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unsupported link type 147"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn home_net_decides_who_is_reported_and_vendors_choose_packs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_, none) = alerts_of(
        tmp.path(),
        &[
            "--home-net".as_ref(),
            "192.0.2.0/24".as_ref(),
            pcap("dns.pcap").as_os_str(),
        ],
    );
    assert!(none.is_empty(), "{none:?}");
    let (_, only_hik) = alerts_of(
        tmp.path(),
        &[
            "--vendors".as_ref(),
            "hikvision".as_ref(),
            pcap("dns.pcap").as_os_str(),
        ],
    );
    assert!(only_hik.is_empty(), "{only_hik:?}");
}

#[test]
fn summary_shows_the_host_table() {
    let out = bin()
        .arg("replay")
        .arg(pcap("tls.pcap"))
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success());
    for needle in [
        "packets",
        "names",
        "HOST",
        "VENDOR",
        "CATEGORY",
        "kaspersky",
        "update",
        "web-portal",
    ] {
        assert!(stderr.contains(needle), "summary lacks {needle}:\n{stderr}");
    }
}

#[test]
fn help_documents_every_option() {
    let out = bin().args(["replay", "--help"]).output().expect("runs");
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--rules",
        "--vendors",
        "--alerts",
        "--report",
        "--events",
        "--home-net",
        "--workers",
        "--max-flows",
        "--quiet",
        "--config",
        "--watch",
        "--alerts-max-mb",
        "--alerts-keep",
        "--alerts-fsync",
        "--alerts-backlog",
        "--max-hosts",
        "--reassembly-mb",
        "--no-seccomp",
        "--state",
        "--syslog",
    ] {
        assert!(help.contains(opt), "replay --help lacks {opt}");
    }
    let live = bin().args(["live", "--help"]).output().expect("runs");
    let live = String::from_utf8_lossy(&live.stdout);
    for opt in [
        "--interface",
        "--bpf",
        "--buffer-mb",
        "--no-promisc",
        "--user",
        "--status-every",
        "[live] table",
    ] {
        assert!(live.contains(opt), "live --help lacks {opt}");
    }
    let top =
        String::from_utf8_lossy(&bin().arg("--help").output().expect("runs").stdout).into_owned();
    assert!(top.contains("Exit codes") && top.contains("replay") && top.contains("rules"));
}

/// A classic pcap of `n` SYNs from distinct client ports and addresses (a flow flood).
fn syn_flood(n: u32) -> Vec<u8> {
    let mut f = vec![
        0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 101, 0, 0, 0,
    ];
    for i in 0..n {
        let mut p = vec![
            0x45,
            0,
            0,
            40,
            0,
            0,
            0x40,
            0,
            64,
            6,
            0,
            0,
            10,
            1,
            (i >> 8) as u8,
            i as u8,
            203,
            0,
            113,
            9,
        ];
        p.extend_from_slice(&((1024 + (i % 60000)) as u16).to_be_bytes());
        p.extend_from_slice(&[
            0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
        ]);
        f.extend_from_slice(&(1_700_000_000u32 + i / 1000).to_le_bytes());
        f.extend_from_slice(&(i % 1000 * 1000).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(&p);
    }
    f
}

#[test]
fn a_flood_of_distinct_flows_is_bounded_and_counted_as_evictions() {
    let tmp = tempfile::tempdir().expect("tmp");
    let flood = tmp.path().join("flood.pcap");
    std::fs::write(&flood, syn_flood(30_000)).expect("write");
    let out = bin()
        .args(["replay", "--workers", "1", "--max-flows", "1000"])
        .arg(&flood)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let evictions: u64 = stderr
        .lines()
        .find_map(|l| l.split("flow table evictions ").nth(1))
        .and_then(|rest| rest.split(", packets").next())
        .map(|n| n.replace(',', ""))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no eviction count in the summary:\n{stderr}"));
    // 30,000 flows through a table of 1,000: at least 29,000 had to go.
    assert!(evictions >= 29_000, "{evictions} evictions:\n{stderr}");
}

#[test]
fn report_command_writes_a_self_contained_page() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (json, html) = (
        tmp.path().join("hosts.json"),
        tmp.path().join("report.html"),
    );
    let out = bin()
        .args(["replay", "-q", "--report"])
        .arg(&json)
        .arg(pcap("dns.pcap"))
        .output()
        .expect("runs");
    assert!(out.status.success());
    let out = bin()
        .args(["report", "--html"])
        .arg(&html)
        .arg("--from")
        .arg(&json)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&html).expect("page");
    assert!(page.contains("<svg") && page.contains("10.10.1.11") && !page.contains("<script"));
    let out = bin()
        .args(["report", "--html"])
        .arg(&html)
        .arg("--from")
        .arg(pcap("dns.pcap"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a host report"));

    // Without --from the page is made from the inventory, which the same replay filled.
    let db = tmp.path().join("inventory.db");
    let out = bin()
        .args(["replay", "-q", "--state"])
        .arg(&db)
        .arg(pcap("dns.pcap"))
        .output()
        .expect("runs");
    assert!(out.status.success());
    let from_db = tmp.path().join("from-db.html");
    let out = bin()
        .args(["report", "--html"])
        .arg(&from_db)
        .arg("--state")
        .arg(&db)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&from_db).expect("page");
    let from_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("json");
    for host in from_json["hosts"].as_array().expect("hosts") {
        let ip = host["ip"].as_str().expect("ip");
        assert!(page.contains(ip), "{ip} is in the report of the inventory");
    }
    let out = bin()
        .args(["report", "--html"])
        .arg(&from_db)
        .args(["--state", "/nonexistent/inventory.db"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no inventory at /nonexistent/inventory.db")
    );
}

#[test]
fn alerts_also_go_to_syslog() {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    rx.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let target = format!("udp://{}", rx.local_addr().expect("addr"));
    let tmp = tempfile::tempdir().expect("tmp");
    let (out, alerts) = alerts_of(
        tmp.path(),
        &[
            "--syslog".as_ref(),
            target.as_ref(),
            pcap("tls.pcap").as_os_str(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while got.len() < alerts.len() {
        let n = rx.recv(&mut buf).expect("a syslog datagram per alert");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let mut via_syslog: Vec<String> = got
        .iter()
        .map(|line| {
            assert!(
                line.starts_with('<') && line.contains(" vendorwatch "),
                "{line}"
            );
            let json = &line[line.find('{').expect("json body")..];
            serde_json::from_str::<serde_json::Value>(json)
                .expect("alert JSON")
                .to_string()
        })
        .collect();
    let mut in_file: Vec<String> = alerts.iter().map(|a| a.to_string()).collect();
    via_syslog.sort();
    in_file.sort();
    assert_eq!(via_syslog, in_file);
}

#[test]
fn suppressions_record_without_alerting_until_they_expire() {
    let tmp = tempfile::tempdir().expect("tmp");
    let conf = tmp.path().join("vendorwatch.toml");
    std::fs::write(
        &conf,
        "[[suppress]]\nreason = \"malware analysis lab\"\nhosts = [\"10.10.1.11\"]\n\n[[suppress]]\nreason = \"expired\"\nexpires = \"2020-01-01\"\nhosts = [\"10.10.1.12\"]\n",
    )
    .expect("write");
    let check = bin()
        .args(["config", "check"])
        .arg(&conf)
        .output()
        .expect("runs");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let report = tmp.path().join("r.json");
    let (out, alerts) = alerts_of(
        tmp.path(),
        &[
            "--config".as_ref(),
            conf.as_os_str(),
            "--report".as_ref(),
            report.as_os_str(),
            pcap("dns.pcap").as_os_str(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        alerts.iter().all(|a| a["host"]["ip"] != "10.10.1.11"),
        "{alerts:?}"
    );
    assert!(
        alerts.iter().any(|a| a["host"]["ip"] == "10.10.1.12"),
        "an expired suppression still suppresses: {alerts:?}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let host = r["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["ip"] == "10.10.1.11"))
        .expect("still in the inventory");
    assert_eq!(host["detections"][0]["suppressed"], "malware analysis lab");
    // The summary's host table marks what raised no alert, with the reason.
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("SUPPRESSED (NO ALERT)"), "{summary}");
    let rows: Vec<&str> = summary
        .lines()
        .filter(|l| l.starts_with("10.10.1.1"))
        .collect();
    assert!(
        !rows.is_empty()
            && rows
                .iter()
                .all(|l| l.starts_with("10.10.1.11") == l.contains("malware analysis lab")),
        "{summary}"
    );
    // So does `hosts` over the inventory the replay kept.
    let db = tmp.path().join("inv.db");
    let kept = bin()
        .args(["replay", "-q", "--state"])
        .arg(&db)
        .arg("--config")
        .arg(&conf)
        .arg(pcap("dns.pcap"))
        .output()
        .expect("runs");
    assert!(kept.status.success(), "{kept:?}");
    let table = bin()
        .args(["hosts", "--state"])
        .arg(&db)
        .output()
        .expect("runs");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("SUPPRESSED (NO ALERT)")
            && table
                .lines()
                .any(|l| l.starts_with("10.10.1.11") && l.contains("malware analysis lab")),
        "{table}"
    );

    std::fs::write(
        &conf,
        "[[suppress]]\nreason = \"\"\nhosts = [\"not-an-ip\"]\n",
    )
    .expect("write");
    let check = bin()
        .args(["config", "check"])
        .arg(&conf)
        .output()
        .expect("runs");
    assert_eq!(check.status.code(), Some(1));
    let err = String::from_utf8_lossy(&check.stderr);
    // Each problem at the line of its own key.
    assert!(
        err.contains("vendorwatch.toml:2: suppress: reason:")
            && err.contains("vendorwatch.toml:3: suppress: hosts: \"not-an-ip\""),
        "{err}"
    );
}

#[test]
fn the_inventory_survives_restarts_without_alerting_again() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("inv.db");
    let run = |extra: &[&str]| {
        let alerts = tmp.path().join("a.jsonl");
        let report = tmp.path().join("r.json");
        let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
            .args(["replay", "-q", "--state"])
            .arg(&db)
            .args(extra)
            .arg("--alerts")
            .arg(&alerts)
            .arg("--report")
            .arg(&report)
            .arg(pcap("dns.pcap"))
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let n = std::fs::read_to_string(&alerts)
            .expect("alerts")
            .lines()
            .count();
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
        (n, r)
    };
    let count_of = |r: &serde_json::Value| -> u64 {
        r["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .flat_map(|h| h["detections"].as_array().expect("d").iter())
            .map(|d| d["count"].as_u64().unwrap_or(0))
            .sum()
    };
    let (first_alerts, first) = run(&[]);
    assert!(first_alerts > 0);
    let (second_alerts, second) = run(&[]);
    assert_eq!(
        second_alerts, 0,
        "already alerted: no alert after a restart"
    );
    // The replay's report is about its own input; the inventory goes on counting.
    assert_eq!(
        count_of(&second),
        count_of(&first),
        "a replay's report counts its input only"
    );
    assert!(second["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .all(|h| h["already_known"] == true));

    let hosts = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
            .arg("hosts")
            .arg("--state")
            .arg(&db)
            .args(args)
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let json: serde_json::Value =
        serde_json::from_str(&hosts(&["--format", "json", "--category", "ksn"])).expect("json");
    let cats: Vec<&str> = json["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .flat_map(|h| h["detections"].as_array().expect("d").iter())
        .filter_map(|d| d["category"].as_str())
        .collect();
    assert!(
        !cats.is_empty() && cats.iter().all(|c| *c == "ksn"),
        "{cats:?}"
    );
    let inventory: serde_json::Value =
        serde_json::from_str(&hosts(&["--format", "json"])).expect("json");
    assert_eq!(
        count_of(&inventory),
        2 * count_of(&first),
        "counts go on across restarts in the inventory"
    );
    let csv = hosts(&["--format", "csv"]);
    assert!(
        csv.starts_with("ip,mac,vendor,category") && csv.contains("10.10.1.11,"),
        "{csv}"
    );
    assert!(hosts(&["--stale", "30", "--now", "2027-06-01"]).contains("10.10.1.11"));
    assert_eq!(
        hosts(&["--stale", "30", "--now", "2026-12-01"]).trim(),
        "no host matches"
    );
    // `report --now` reads the same forms as `hosts --now` (a plain date included).
    let page = tmp.path().join("page.html");
    let report = |now: &str| {
        Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
            .args(["report", "--state"])
            .arg(&db)
            .arg("--html")
            .arg(&page)
            .args(["--now", now])
            .output()
            .expect("runs")
    };
    for now in ["2027-06-01", "2027-06-01T00:00:00Z"] {
        let out = report(now);
        assert!(
            out.status.success(),
            "--now {now}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            std::fs::read_to_string(&page)
                .expect("page")
                .contains("10.10.1.11"),
            "--now {now}"
        );
    }
    let out = report("June");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not YYYY-MM-DD or an RFC 3339 time"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Readers given a directory for the inventory are told what to give instead, not the
    // advice for a sensor's own inventory (which a replay creates when missing).
    for command in ["hosts", "report", "fingerprints"] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vendorwatch"));
        cmd.arg(command).arg("--state").arg(tmp.path());
        if command == "report" {
            cmd.arg("--html").arg(&page);
        }
        let out = cmd.output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        assert!(
            stderr.contains("is a directory, not an inventory")
                && stderr.contains("an earlier `vendorwatch replay --state PATH`")
                && !stderr.contains("created if missing")
                && !stderr.contains("--state none"),
            "{command}: {stderr}"
        );
    }

    // Faults: a read-only or foreign file is refused with what to do.
    std::fs::write(tmp.path().join("junk.db"), vec![1u8; 4096]).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .args(["replay", "-q", "--state"])
        .arg(tmp.path().join("junk.db"))
        .arg(pcap("dns.pcap"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--state none"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigterm_mid_replay_keeps_everything_already_read() {
    let tmp = tempfile::tempdir().expect("tmp");
    let flood = tmp.path().join("b-flood.pcap");
    std::fs::write(&flood, syn_flood(400_000)).expect("write");
    let (alerts, report) = (tmp.path().join("a.jsonl"), tmp.path().join("r.json"));
    let child = bin()
        .args(["replay", "--workers", "1", "--alerts"])
        .arg(&alerts)
        .arg("--report")
        .arg(&report)
        .arg(pcap("dns.pcap"))
        .arg(&flood)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait until the first file's alerts are out, then stop it in the middle of the second.
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&alerts)
        .unwrap_or_default()
        .lines()
        .count()
        < 5
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "no alerts appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().expect("exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(0) {
        eprintln!("the replay finished before the signal arrived; nothing to check");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("interrupted by a signal in")
            && stderr.contains("b-flood.pcap before record"),
        "{stderr}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report written"))
            .expect("json");
    let detected = r["hosts"].as_array().expect("hosts").len();
    assert!(
        detected >= 5,
        "the first file's hosts are in the report: {r}"
    );
    assert_eq!(
        std::fs::read_to_string(&alerts)
            .expect("alerts")
            .lines()
            .count(),
        10,
        "every alert of dns.pcap"
    );
}

#[test]
fn the_config_file_sets_any_option_and_the_command_line_wins() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (alerts, report, other_report) = (
        tmp.path().join("alerts.jsonl"),
        tmp.path().join("hosts.json"),
        tmp.path().join("other.json"),
    );
    let config = tmp.path().join("vendorwatch.toml");
    std::fs::write(
        &config,
        format!(
            "alerts = {alerts:?}\nreport = {report:?}\nstate = \"none\"\nquiet = true\n\
             home_net = [\"10.10.1.11/32\"]\nworkers = 1\n"
        ),
    )
    .expect("write");
    let out = bin()
        .arg("replay")
        .arg("--config")
        .arg(&config)
        .arg(pcap("dns.pcap"))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "quiet = true: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hosts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report from the file"))
            .expect("json");
    let ips: Vec<&str> = hosts["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter_map(|h| h["ip"].as_str())
        .collect();
    assert_eq!(ips, ["10.10.1.11"], "home_net from the file");
    assert!(
        std::fs::read_to_string(&alerts)
            .expect("alerts")
            .lines()
            .count()
            >= 1
    );

    // The command line wins over the file.
    std::fs::remove_file(&report).expect("rm");
    let out = bin()
        .arg("replay")
        .arg("--config")
        .arg(&config)
        .arg("--report")
        .arg(&other_report)
        .args(["--home-net", "10.0.0.0/8"])
        .arg(pcap("dns.pcap"))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!report.exists(), "--report replaced the file's report");
    let hosts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&other_report).expect("report")).expect("json");
    assert!(
        hosts["hosts"].as_array().expect("hosts").len() > 1,
        "--home-net replaced the file's"
    );

    // `config check` names the line of a bad value, and live without interfaces says where to put them.
    std::fs::write(&config, "workers = 2\nmax_flows = 0\n").expect("write");
    let out = bin()
        .args(["config", "check"])
        .arg(&config)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vendorwatch.toml:2: max_flows: must be at least 1"),
        "{err}"
    );
    std::fs::write(&config, "workers = 1\n").expect("write");
    let out = bin()
        .args(["live", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[live] table"));
}

#[test]
fn the_shipped_example_configuration_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/vendorwatch.toml");
    let check = |path: &Path| {
        bin()
            .args(["config", "check"])
            .arg(path)
            .output()
            .expect("runs")
    };
    let out = check(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let no_user = !Path::new("/etc/passwd").exists()
        || !std::fs::read_to_string("/etc/passwd")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("vendorwatch:"));
    if no_user {
        // The example names the user the packages create (deploy/systemd/vendorwatch.sysusers);
        // where there is none, that is its one problem, said with what to do, and the rest of
        // the file is checked with a user that exists.
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("user: \"vendorwatch\" does not exist on this machine: create it")
                && stderr.contains("1 problem(s)"),
            "{stderr}"
        );
        let tmp = tempfile::tempdir().expect("tmp");
        let copy = tmp.path().join("vendorwatch.toml");
        let text = std::fs::read_to_string(&path).expect("example");
        assert!(text.contains("user = \"vendorwatch\""), "{text}");
        std::fs::write(
            &copy,
            text.replace("user = \"vendorwatch\"", "user = \"root\""),
        )
        .expect("write");
        let out = check(&copy);
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    assert!(out.status.success(), "{stderr}");
}

#[test]
fn a_quiet_pipe_hands_over_what_it_has_read_without_waiting_for_more() {
    use std::io::Write;
    let tmp = tempfile::tempdir().expect("tmp");
    let alerts = tmp.path().join("alerts.jsonl");
    let mut child = bin()
        .args(["replay", "-q", "--alerts"])
        .arg(&alerts)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    // The whole of dns.pcap (far fewer than a batch of packets), and then the pipe stays
    // open, as `tcpdump -w -` on a quiet link keeps it.
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(&std::fs::read(pcap("dns.pcap")).expect("dns.pcap"))
        .expect("write");
    stdin.flush().expect("flush");
    let start = std::time::Instant::now();
    let mut seen = 0;
    while start.elapsed() < std::time::Duration::from_secs(30) {
        seen = std::fs::read_to_string(&alerts)
            .unwrap_or_default()
            .lines()
            .count();
        if seen > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(seen > 0, "no alert while the pipe stayed open");
    drop(stdin);
    let out = child
        .wait_with_output()
        .expect("ends at the end of the pipe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hosts_reads_an_inventory_its_user_cannot_write() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("ro");
    std::fs::create_dir(&dir).expect("mkdir");
    let db = dir.join("inventory.db");
    let out = bin()
        .args(["replay", "-q", "--state"])
        .arg(&db)
        .arg(pcap("dns.pcap"))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).expect("chmod");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // Root may write anywhere: read as `nobody` then, as an analyst's account would.
    let out = common::as_unprivileged(env!("CARGO_BIN_EXE_vendorwatch"))
        .args(["hosts", "--format", "csv", "--state"])
        .arg(&db)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.lines().any(|l| l.starts_with("10.10.1.11,")), "{csv}");
    assert!(
        std::fs::read_dir(&dir).expect("ls").count() == 1,
        "nothing was written beside the database"
    );
}

#[test]
fn linger_from_the_replay_table_keeps_the_metrics_up_and_the_command_line_wins() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().expect("tmp");
    let config = tmp.path().join("vendorwatch.toml");
    std::fs::write(&config, "[replay]\nlinger = 600\n").expect("write");
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = bin()
        .args([
            "replay",
            "-q",
            "--workers",
            "1",
            "--metrics-addr",
            &addr,
            "--config",
        ])
        .arg(&config)
        .arg(pcap("dns.pcap"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    // The replay is over once it says it goes on serving (no wall-clock bound: the line comes
    // or the stream ends).
    let said = std::io::BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("serving metrics on"));
    let scraped = common::http_get(port, "/metrics");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("exits");
    let said = said.expect("the file's linger keeps the endpoint up");
    assert!(said.contains("for 600 s more"), "{said}");
    let (code, body) = scraped.expect("metrics served after the replay");
    assert_eq!(code, 200);
    assert!(
        body.contains("vendorwatch_packets_received_total"),
        "{body}"
    );
    assert_eq!(
        status.code(),
        Some(0),
        "a signal ends the lingering, not the run"
    );
    // --linger 0 on the command line wins over the file: the replay ends at once.
    let out = bin()
        .args([
            "replay",
            "-q",
            "--linger",
            "0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&config)
        .arg(pcap("dns.pcap"))
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("serving metrics on"), "{stderr}");
    // Without an endpoint there is nothing to keep up: said, not waited out.
    let out = bin()
        .args(["replay", "-q", "--config"])
        .arg(&config)
        .arg(pcap("dns.pcap"))
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("metrics are off"), "{stderr}");
}
