//! What an analyst relies on: the resolver role earned only by answering queries (a scan of
//! port 53 silences nobody), replays whose reports describe exactly their inputs and leave no
//! file behind unasked, reports and summaries that agree with the wire (earliest to latest
//! packet, counts independent of the outputs chosen, the resolver role kept in the
//! inventory), an HTML report that shows its legal basis, evidence in order, its source and
//! forward proxies, `rules match` that says when a pack is inactive, a live sensor whose
//! events can be tailed, and a README whose examples are checked against real output.
//!
//! The traffic of the resolver test is real: a namespace holding a workstation network on
//! its loopback, dnsmasq as the home resolver forwarding to a second dnsmasq upstream, dig
//! as the clients, python sockets (and scapy for one forged answer) as the attacker, tcpdump
//! capturing. Needs root (CI runs as root); skipped, loudly, otherwise.

mod common;

use common::{bin, is_root, run_ok};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn pcap(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pcaps")
        .join(name)
}

fn json_of(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
}

fn lines_of(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn host<'a>(report: &'a Value, ip: &str) -> Option<&'a Value> {
    report["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["ip"] == ip)
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A namespace whose loopback holds a small network; removed (with its processes) on drop.
struct Lab {
    ns: String,
    children: Vec<Child>,
}

impl Lab {
    fn new(tag: &str, addrs: &[&str]) -> Lab {
        let ns = format!("vwa{tag}{}", std::process::id() % 100_000);
        let lab = Lab {
            ns: ns.clone(),
            children: Vec::new(),
        };
        run_ok(&["ip", "netns", "add", &ns]);
        run_ok(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        for a in addrs {
            run_ok(&["ip", "-n", &ns, "addr", "add", a, "dev", "lo"]);
        }
        lab
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).args(args);
        c
    }

    fn exec(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("runs in the namespace")
    }

    fn spawn(&mut self, args: &[&str]) {
        let child = self
            .cmd(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawns in the namespace");
        self.children.push(child);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns])
            .stderr(Stdio::null())
            .status();
    }
}

const WS1: &str = "10.77.0.11";
const WS2: &str = "10.77.0.12";
const RESOLVER: &str = "10.77.0.53";
const ATTACKER: &str = "10.77.0.66";
/// Outside the home net (10.77.0.0/24): the resolver's upstream.
const UPSTREAM: &str = "10.77.1.1";

/// The attacker's scan of port 53 on both workstations: TCP SYNs (connect to a closed
/// port), empty UDP datagrams, nmap's DNS probe (a version.bind query), and one forged DNS
/// answer with a workstation's address and port 53 as its source.
const SCAN: &str = r#"
import socket, struct
for ws in ["10.77.0.11", "10.77.0.12"]:
    for i in range(4):
        t = socket.socket(); t.bind(("10.77.0.66", 0)); t.settimeout(1)
        try:
            t.connect((ws, 53))
        except OSError:
            pass
        t.close()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("10.77.0.66", 0))
        u.sendto(b"", (ws, 53))
        q = struct.pack(">HHHHHH", 0x1200 + i, 0, 1, 0, 0, 0) + b"\x07version\x04bind\x00" + struct.pack(">HH", 16, 3)
        u.sendto(q, (ws, 53))
        u.close()
from scapy.all import IP, UDP, DNS, DNSQR, DNSRR, send
send(IP(src="10.77.0.11", dst="10.77.0.12")/UDP(sport=53, dport=40000)/DNS(id=7, qr=1, qd=DNSQR(qname="x.example"), an=DNSRR(rrname="x.example", rdata="10.77.0.99")), verbose=0)
"#;

/// Builds the capture: scan, then the workstations' lookups through the real resolver, the
/// resolver's forwarding, and the resolver host's own lookup that no client asked for.
fn resolver_lab_capture(dir: &Path) -> Option<PathBuf> {
    if !is_root() {
        eprintln!("SKIPPED: the resolver lab needs root (network namespaces, tcpdump)");
        return None;
    }
    let mut lab = Lab::new(
        "r",
        &[
            "10.77.0.11/32",
            "10.77.0.12/32",
            "10.77.0.53/32",
            "10.77.0.66/32",
            "10.77.1.1/32",
        ],
    );
    let d = dir.display().to_string();
    lab.spawn(&[
        "dnsmasq",
        "-k",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=10.77.1.1",
        "--cache-size=0",
        &format!("--pid-file={d}/up.pid"),
        "--address=/kaspersky.com/10.77.1.80",
        "--address=/kaspersky-labs.com/10.77.1.81",
    ]);
    lab.spawn(&[
        "dnsmasq",
        "-k",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=10.77.0.53",
        "--cache-size=0",
        &format!("--pid-file={d}/fwd.pid"),
        "--server=10.77.1.1@10.77.0.53",
    ]);
    let cap = dir.join("resolver-lab.pcap");
    let cap_s = cap.display().to_string();
    // Last of the lab's children: stopped by SIGINT below (dnsmasq ignores it and is
    // killed with the lab).
    lab.spawn(&[
        "tcpdump",
        "-i",
        "lo",
        // In immediate mode libpcap's ring holds whole-snap-length frames: at loopback's 64 KiB
        // MTU its default 2 MiB held a handful, and a scan burst while tcpdump waited for a
        // core (a loaded CI machine) lost packets. DNS here fits in 2 KiB.
        "-s",
        "2048",
        "-B",
        "16384",
        "--immediate-mode",
        "-U",
        "-n",
        "-w",
        &cap_s,
        "port 53",
    ]);
    wait_for("tcpdump to start", 30, || {
        std::fs::metadata(&cap).is_ok_and(|m| m.len() >= 24)
    });
    // Both servers answer before the scenario starts.
    wait_for("dnsmasq to answer", 30, || {
        [RESOLVER, UPSTREAM].iter().all(|s| {
            let out = lab.exec(&[
                "dig",
                &format!("@{s}"),
                "-b",
                ATTACKER,
                "+tries=1",
                "+time=1",
                "+short",
                "ready.kaspersky.com",
            ]);
            String::from_utf8_lossy(&out.stdout).contains("10.77.1.80")
        })
    });
    let out = lab.exec(&["/usr/bin/python3", "-c", SCAN]);
    assert!(
        out.status.success(),
        "scan: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dig = |from: &str, server: &str, name: &str| {
        let out = lab.exec(&[
            "dig",
            &format!("@{server}"),
            "-b",
            from,
            "+tries=2",
            "+time=2",
            "+short",
            name,
        ]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("10.77.1.8"),
            "dig {name} from {from} via {server}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    };
    dig(WS1, RESOLVER, "dnl-01.geo.kaspersky.com");
    dig(WS2, RESOLVER, "ksn-file-geo.kaspersky-labs.com");
    dig(WS1, UPSTREAM, "s05.upd.kaspersky.com");
    // The resolver host's own lookup: no client asked it for this name.
    dig(RESOLVER, UPSTREAM, "activation-v2.kaspersky.com");
    // tcpdump writes each packet as it comes (--immediate-mode, -U): wait for the last
    // exchange (its query and its answer) to be in the file, then stop it cleanly.
    wait_for("the capture to hold the last lookup", 30, || {
        let bytes = std::fs::read(&cap).unwrap_or_default();
        bytes
            .windows(14)
            .filter(|w| w == b"\x0dactivation-v2")
            .count()
            >= 2
    });
    if let Some(tcpdump) = lab.children.last_mut() {
        let _ = Command::new("kill")
            .args(["-INT", &tcpdump.id().to_string()])
            .status();
        let _ = tcpdump.wait();
    }
    Some(cap)
}

fn replay_lab(dir: &Path, cap: &Path, extra: &[&str], tag: &str) -> (Value, Vec<Value>) {
    let (report, alerts) = (
        dir.join(format!("{tag}.json")),
        dir.join(format!("{tag}.jsonl")),
    );
    let out = bin()
        .args(["replay", "-q", "--home-net", "10.77.0.0/24", "--report"])
        .arg(&report)
        .arg("--alerts")
        .arg(&alerts)
        .args(extra)
        .arg(cap)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (json_of(&report), lines_of(&alerts))
}

#[test]
fn a_port_53_scan_silences_nobody_and_the_real_resolver_still_forwards() {
    let tmp = tempfile::tempdir().expect("tmp");
    let Some(cap) = resolver_lab_capture(tmp.path()) else {
        return;
    };
    // What tshark says happened: the scan reached both workstations, and the resolver
    // answered both of them.
    let t = Command::new("tshark")
        .arg("-r")
        .arg(&cap)
        .args([
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "tcp.flags.syn",
        ])
        .args(["-e", "dns.flags.response"])
        .output()
        .expect("tshark");
    let text = String::from_utf8_lossy(&t.stdout);
    for ws in [WS1, WS2] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{ATTACKER}\t{ws}\t1"))),
            "no SYN to {ws}:53 in the capture"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{RESOLVER}\t{ws}")) && l.ends_with("\t1")),
            "the resolver did not answer {ws}"
        );
    }

    let (report, alerts) = replay_lab(tmp.path(), &cap, &[], "plain");
    assert_eq!(
        strings(&report["resolvers"]),
        BTreeSet::from([RESOLVER.to_string()]),
        "only the host that answered queries is a resolver"
    );
    let alerted = |ip: &str, category: &str| {
        alerts
            .iter()
            .any(|a| a["host"]["ip"] == ip && a["category"] == category)
    };
    assert!(
        alerted(WS1, "update"),
        "the scanned workstation still alerts"
    );
    assert!(alerted(WS2, "ksn"), "the scanned workstation still alerts");
    for ws in [WS1, WS2] {
        let h = host(&report, ws).expect("workstation in the report");
        assert_eq!(h["role"], "client");
        assert!(h["detections"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|d| d["forwarded"] == false));
    }
    // The resolver's lookups for its clients are forwarded; its own is its own.
    let r = host(&report, RESOLVER).expect("resolver in the report");
    assert_eq!(r["role"], "resolver");
    assert_eq!(r["resolver"]["source"], "answered");
    assert!(r["resolver"]["answered"].as_u64().unwrap_or(0) >= 2);
    let det = |category: &str| {
        r["detections"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["category"] == category)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(det("update")["forwarded"], true, "{r}");
    assert_eq!(det("ksn")["forwarded"], true, "{r}");
    assert_eq!(det("activation")["forwarded"], false, "{r}");
    assert!(alerted(RESOLVER, "activation"));
    assert!(!alerted(RESOLVER, "update") && !alerted(RESOLVER, "ksn"));

    // Pinned: the role from the configuration, and the pinned host's own lookups still alert.
    let cfg = tmp.path().join("vw.toml");
    std::fs::write(&cfg, format!("resolvers = [\"{WS1}\"]\n")).expect("config");
    let (report, alerts) = replay_lab(
        tmp.path(),
        &cap,
        &["--config", cfg.to_str().expect("utf-8")],
        "pinned",
    );
    assert_eq!(
        strings(&report["resolvers"]),
        BTreeSet::from([WS1.to_string(), RESOLVER.to_string()])
    );
    let w = host(&report, WS1).expect("ws1");
    assert_eq!(
        (&w["role"], &w["resolver"]["source"]),
        (&"resolver".into(), &"pinned".into())
    );
    assert!(alerts
        .iter()
        .any(|a| a["host"]["ip"] == WS1 && a["category"] == "update"));
    let out = bin()
        .args(["replay", "-q", "--resolvers", "192.0.2.1"])
        .arg(&cap)
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(2),
        "a pinned resolver outside the home net"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the home net"));
}

#[test]
fn replay_keeps_no_inventory_unless_asked() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .env_remove("VENDORWATCH_STATE")
        .current_dir(tmp.path())
        .args(["replay", "-q"])
        .arg(pcap("dns.pcap"))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(
        left.is_empty(),
        "a replay left files nobody asked for: {left:?}"
    );

    // Asked for in the configuration file: kept there.
    let cfg = tmp.path().join("vw.toml");
    std::fs::write(&cfg, "state = \"inv.db\"\n").expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .env_remove("VENDORWATCH_STATE")
        .current_dir(tmp.path())
        .args(["replay", "-q", "--config", "vw.toml"])
        .arg(pcap("dns.pcap"))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tmp.path().join("inv.db").exists());
}

#[test]
fn a_replay_report_holds_only_its_inputs_hosts_and_says_which_were_known() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("inv.db");
    let replay = |capture: &str, tag: &str| -> (Value, String) {
        let report = tmp.path().join(format!("{tag}.json"));
        let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
            .args(["replay", "--state"])
            .arg(&db)
            .arg("--report")
            .arg(&report)
            .arg(pcap(capture))
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            json_of(&report),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ips = |r: &Value| -> BTreeSet<String> {
        r["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h["ip"].as_str().map(str::to_string))
            .collect()
    };
    let (a, _) = replay("passive-dns.pcap", "a");
    let (b, b_summary) = replay("dns-forwarder.pcap", "b");
    assert!(!ips(&a).is_empty() && !ips(&b).is_empty());
    assert!(
        ips(&a).is_disjoint(&ips(&b)),
        "the captures have different hosts"
    );
    assert_eq!(
        ips(&b),
        BTreeSet::from(["10.10.1.11".to_string(), "10.10.2.54".to_string()]),
        "B's report holds B's hosts only"
    );
    for ip in ips(&a) {
        assert!(!b_summary.contains(&format!("\n{ip} ")), "{b_summary}");
    }
    assert!(b["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|h| h["already_known"] == false));
    // The inventory holds both; replaying A again marks its hosts as already known.
    let out = bin()
        .args(["hosts", "--format", "json", "--state"])
        .arg(&db)
        .output()
        .expect("runs");
    let inv: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(ips(&inv), ips(&a).union(&ips(&b)).cloned().collect());
    let (again, summary) = replay("passive-dns.pcap", "a2");
    assert_eq!(ips(&again), ips(&a));
    assert!(again["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|h| h["already_known"] == true));
    assert!(summary.contains("were already in it"), "{summary}");
}

/// Packet times of a capture, from tshark: (earliest, latest), in seconds.
fn tshark_span(capture: &Path) -> (f64, f64) {
    let out = run_ok(&[
        "tshark",
        "-r",
        capture.to_str().expect("utf-8"),
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
    ]);
    let times: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let max = times.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

fn rfc3339_secs(text: &str) -> f64 {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    t.unix_timestamp_nanos() as f64 / 1e9
}

#[test]
fn the_span_runs_from_the_earliest_to_the_latest_packet_whatever_the_input_order() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (late, early) = (pcap("passive-dns.pcap"), pcap("dns.pcap"));
    let (e0, e1) = tshark_span(&early);
    let (l0, l1) = tshark_span(&late);
    assert!(l0 > e0, "the first input is the later capture");
    let report = tmp.path().join("r.json");
    let out = bin()
        .args(["replay", "--report"])
        .arg(&report)
        .arg(&late)
        .arg(&early)
        .output()
        .expect("runs");
    assert!(out.status.success());
    let r = json_of(&report);
    let first = rfc3339_secs(r["first_packet"].as_str().expect("first_packet"));
    let last = rfc3339_secs(r["last_packet"].as_str().expect("last_packet"));
    assert!(
        (first - e0.min(l0)).abs() < 1e-5,
        "{first} vs {}",
        e0.min(l0)
    );
    assert!((last - e1.max(l1)).abs() < 1e-5, "{last} vs {}", e1.max(l1));
    let summary = String::from_utf8_lossy(&out.stderr);
    let span = summary
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("span"))
        .expect("span line");
    assert!(
        span.trim()
            .starts_with(r["first_packet"].as_str().unwrap_or("?")),
        "{span}"
    );
}

fn names_line(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("names"))
        .map(|l| l.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn the_names_line_is_the_same_with_or_without_events() {
    let tmp = tempfile::tempdir().expect("tmp");
    // tls12-certs.pcap has a leaf certificate and a ClientHello that names no server (ja4).
    let capture = pcap("tls12-certs.pcap");
    let plain = bin().args(["replay"]).arg(&capture).output().expect("runs");
    let events = tmp.path().join("e.jsonl");
    let with = bin()
        .args(["replay", "--events"])
        .arg(&events)
        .arg(&capture)
        .output()
        .expect("runs");
    let (a, b) = (
        names_line(&String::from_utf8_lossy(&plain.stderr)),
        names_line(&String::from_utf8_lossy(&with.stderr)),
    );
    let kinds: BTreeSet<String> = lines_of(&events)
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_string))
        .collect();
    assert!(
        kinds.contains("ja4"),
        "the capture has a ja4 event: {kinds:?}"
    );
    assert!(b.contains("ja4"), "{b}");
    assert_eq!(a, b, "counts must not depend on the outputs chosen");
}

#[test]
fn the_resolver_role_survives_in_the_inventory_and_its_html() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("inv.db");
    let out = bin()
        .args(["replay", "-q", "--state"])
        .arg(&db)
        .arg(pcap("dns-forwarder.pcap"))
        .output()
        .expect("runs");
    assert!(out.status.success());
    let out = bin()
        .args(["hosts", "--format", "json", "--state"])
        .arg(&db)
        .output()
        .expect("runs");
    let inv: Value = serde_json::from_slice(&out.stdout).expect("json");
    let fwd = host(&inv, "10.10.2.54").expect("forwarder");
    assert_eq!(fwd["role"], "resolver", "{inv}");
    assert_eq!(host(&inv, "10.10.1.11").expect("client")["role"], "client");
    let html = tmp.path().join("r.html");
    let out = bin()
        .args(["report", "--html"])
        .arg(&html)
        .arg("--state")
        .arg(&db)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&html).expect("page");
    assert!(page.contains("<span class=\"tag resolver\">resolver</span>"));
    assert!(
        page.contains(&format!("from the inventory {}", db.display())),
        "the footer names the inventory"
    );
    // The legal basis comes from the packs, though the inventory keeps no rules.
    assert!(page.contains("DHS BOD 17-01"), "legal basis shown");
}

/// The evidence rows of each sample table: (time, flow) in document order, per table.
fn evidence_tables(page: &str) -> Vec<Vec<(String, String)>> {
    page.split("<table class=\"data evidence-sample\">")
        .skip(1)
        .map(|t| {
            let body = t.split("</table>").next().unwrap_or_default();
            body.split("<tr><td class=\"t\">")
                .skip(1)
                .map(|row| {
                    let cells: Vec<&str> = row.split("</td>").collect();
                    let time = cells.first().copied().unwrap_or_default().to_string();
                    let flow = cells
                        .get(3)
                        .and_then(|c| c.rsplit('>').next())
                        .unwrap_or_default()
                        .to_string();
                    (time, flow)
                })
                .collect()
        })
        .collect()
}

#[test]
fn the_html_report_shows_legal_basis_ordered_evidence_its_source_and_proxies() {
    let tmp = tempfile::tempdir().expect("tmp");
    let report = tmp.path().join("hosts.json");
    let out = bin()
        .args(["replay", "-q", "--report"])
        .arg(&report)
        .args([pcap("http-proxy.pcap"), pcap("dns.pcap"), pcap("tls.pcap")])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let html = tmp.path().join("r.html");
    let out = bin()
        .args(["report", "--html"])
        .arg(&html)
        .arg("--from")
        .arg(&report)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&html).expect("page");
    assert!(page.contains("DHS BOD 17-01"), "legal basis from the packs");
    assert!(!page.contains("legal basis not recorded"));
    assert!(page.contains(&format!("from the host report {}", report.display())));
    // tinyproxy at 10.10.2.30 made the requests 10.10.1.11 and 10.10.1.12 sent it.
    let proxy = page
        .split("<article class=\"host\"")
        .find(|a| a.contains("<h3>10.10.2.30</h3>"))
        .expect("proxy host");
    assert!(proxy.contains("forward proxy"), "{proxy}");
    let head = proxy.split("</header>").next().unwrap_or_default();
    assert!(
        head.contains("10.10.1.11") && head.contains("10.10.1.12"),
        "{head}"
    );
    let tables = evidence_tables(&page);
    assert!(!tables.is_empty());
    for rows in tables {
        let times: Vec<&String> = rows.iter().map(|(t, _)| t).collect();
        let mut sorted = times.clone();
        sorted.sort();
        assert_eq!(times, sorted, "evidence in time order");
        let distinct: BTreeSet<&(String, String)> = rows.iter().collect();
        assert_eq!(
            distinct.len(),
            rows.len(),
            "a packet listed twice: {rows:?}"
        );
    }
}

#[test]
fn rules_match_says_when_a_hit_is_in_an_inactive_pack() {
    let out = bin()
        .args(["rules", "match", "hikvision.com"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("[pack hikvision inactive"), "{text}");
    let out = bin()
        .args(["rules", "match", "--vendors", "hikvision", "hikvision.com"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("inactive"));
    let out = bin()
        .args(["rules", "match", "dnl-01.geo.kaspersky.com"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn rules_match_refuses_a_mistyped_port_or_address_rather_than_calling_it_a_miss() {
    for bad in ["99999", "300.1.1.1", "13000/xyz", "70000/tcp"] {
        let out = bin().args(["rules", "match", bad]).output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("not a"), "{bad}: {stderr}");
    }
    // Nothing, or words, are no value to look up either.
    for (bad, said) in [
        ("", "is empty"),
        (" ", "is empty"),
        ("dnl 01", "holds a space"),
    ] {
        let out = bin().args(["rules", "match", bad]).output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains(said), "{bad:?}: {stderr}");
    }
    // Real values still look up as before: a miss is 1, a hit 0.
    for (value, code) in [
        ("443", 1),
        ("10.1.2.3", 1),
        ("example.com", 1),
        ("s05.upd.kaspersky.com", 0),
    ] {
        let out = bin()
            .args(["rules", "match", value])
            .output()
            .expect("runs");
        assert_eq!(
            out.status.code(),
            Some(code),
            "{value}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn rules_list_refuses_a_vendor_no_pack_has_as_replay_does() {
    // A misspelt vendor was listed as every pack inactive, exit 0.
    let out = bin()
        .args(["rules", "list", "--vendors", "kasperksy"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("kasperksy"), "{stderr}");
    let out = bin()
        .args(["rules", "list", "--vendors", "kaspersky,huawei"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("huawei") && l.contains(" yes ")),
        "{text}"
    );
}

#[test]
fn report_and_export_never_write_over_their_inventory_a_host_report_or_a_capture() {
    // `report --html inv.db --state inv.db` turned the inventory into HTML with exit 0, and
    // `fingerprints export -o inv.db` did the same to the inventory it read.
    let tmp = tempfile::tempdir().expect("tmp");
    let (inv, hosts, cap) = (
        tmp.path().join("inv.db"),
        tmp.path().join("hosts.json"),
        tmp.path().join("copy.pcap"),
    );
    std::fs::copy(pcap("dns.pcap"), &cap).expect("copy");
    let out = bin()
        .args(["replay", "-q", "--state"])
        .arg(&inv)
        .arg("--report")
        .arg(&hosts)
        .arg(&cap)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before: Vec<Vec<u8>> = [&inv, &hosts, &cap]
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    let s = |p: &Path| p.to_str().expect("utf-8").to_string();
    let attempts: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "report".into(),
                "--html".into(),
                s(&inv),
                "--state".into(),
                s(&inv),
            ],
            "the inventory",
        ),
        (
            vec![
                "report".into(),
                "--html".into(),
                s(&hosts),
                "--from".into(),
                s(&hosts),
            ],
            "the host report",
        ),
        (
            vec![
                "report".into(),
                "--html".into(),
                s(&cap),
                "--state".into(),
                s(&inv),
            ],
            "a packet capture",
        ),
        (
            vec![
                "fingerprints".into(),
                "--state".into(),
                s(&inv),
                "export".into(),
                "-o".into(),
                s(&inv),
            ],
            "the inventory",
        ),
        (
            vec![
                "fingerprints".into(),
                "--state".into(),
                s(&inv),
                "export".into(),
                "-o".into(),
                s(&cap),
            ],
            "a packet capture",
        ),
        (
            vec![
                "replay".into(),
                "-q".into(),
                "--alerts".into(),
                s(&inv),
                s(&cap),
            ],
            "an inventory",
        ),
    ];
    for (args, said) in &attempts {
        let out = bin().args(args).output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(said) && stderr.contains("its own file"),
            "{args:?}: {stderr}"
        );
    }
    let after: Vec<Vec<u8>> = [&inv, &hosts, &cap]
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    assert!(before == after, "an input was written over");
    // `--html -` is stdout, as `-` is for every other output: no file named `-`.
    let out = bin()
        .current_dir(tmp.path())
        .args(["report", "--html", "-", "--state"])
        .arg(&inv)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("<!DOCTYPE html>"));
    assert!(!tmp.path().join("-").exists());
    // `--state none` is no inventory to read, for fingerprints as for hosts (it was taken for
    // a file named "none", and the advice was `replay --state none`, which keeps nothing).
    let out = bin()
        .args(["fingerprints", "--state", "none", "list"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--state none names no inventory to read")
            && !stderr.contains("replay --state none"),
        "{stderr}"
    );
}

/// The README's examples, checked against the output of the command `scripts/demo.sh` runs.
#[test]
fn the_readme_examples_are_what_the_demo_prints() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let demo = std::fs::read_to_string(root.join("scripts/demo.sh")).expect("demo.sh");
    let inputs: Vec<PathBuf> = demo
        .split_whitespace()
        .filter(|w| w.starts_with("pcaps/"))
        .map(|w| root.join(w))
        .collect();
    assert!(inputs.len() >= 6, "{inputs:?}");
    let tmp = tempfile::tempdir().expect("tmp");
    let (alerts, report, events) = (
        tmp.path().join("a.jsonl"),
        tmp.path().join("h.json"),
        tmp.path().join("e.jsonl"),
    );
    let out = bin()
        .arg("replay")
        .arg("--alerts")
        .arg(&alerts)
        .arg("--report")
        .arg(&report)
        .arg("--events")
        .arg(&events)
        .args(&inputs)
        .output()
        .expect("runs");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);

    // The summary: every line shown, verbatim (the timing of the read line aside).
    let block = readme
        .split("Summary (stderr), from `bash scripts/demo.sh`:\n\n```\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("summary example");
    for line in block
        .lines()
        .filter(|l| !l.trim().is_empty() && l.trim() != "…")
    {
        let want = line.split(" in ").next().unwrap_or(line);
        let want = if line.trim_start().starts_with("read") {
            want
        } else {
            line
        };
        assert!(
            stderr.lines().any(|l| l.starts_with(want)),
            "README summary line not in the output: {line:?}\n{stderr}"
        );
    }

    // The alert example: the same keys, and the same values (description shortened).
    let alert_text = readme
        .split("Alert (`--alerts`)")
        .nth(1)
        .and_then(|b| b.split("```json\n").nth(1))
        .and_then(|b| b.split("```").next())
        .expect("alert example");
    let shown: Value = serde_json::from_str(&alert_text.replace('\n', "")).expect("alert JSON");
    let first = lines_of(&alerts).into_iter().next().expect("an alert");
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(keys(&shown), keys(&first));
    for (k, v) in shown.as_object().expect("object") {
        if k == "description" {
            let prefix = v
                .as_str()
                .unwrap_or_default()
                .trim_end_matches('…')
                .trim_end();
            assert!(first[k].as_str().unwrap_or_default().starts_with(prefix));
        } else {
            assert_eq!(&first[k], v, "{k}");
        }
    }

    // The host report's field names, as the README lists them.
    let r = json_of(&report);
    let listed = readme
        .split("Host report (`--report`): `")
        .nth(1)
        .and_then(|b| b.split('`').next())
        .expect("report fields");
    let named: BTreeSet<String> = listed
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_string)
        .collect();
    let mut emitted = BTreeSet::new();
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    out.insert(k.clone());
                    walk(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&r, &mut emitted);
    for n in &named {
        assert!(
            emitted.contains(n),
            "README names {n:?}, the report has no such field"
        );
    }
    for n in ["time", "first_packet", "packs", "role"] {
        assert!(named.contains(n), "README does not name {n:?}");
    }

    // Event kinds: every kind emitted is documented.
    let kinds_doc = readme
        .split("Events (`--events`): `{\"timestamp\",\"kind\":\"")
        .nth(1)
        .and_then(|b| b.split('"').next())
        .expect("event kinds");
    let documented: BTreeSet<&str> = kinds_doc.split('|').collect();
    for e in lines_of(&events) {
        let kind = e["kind"].as_str().unwrap_or_default().to_string();
        assert!(
            documented.contains(kind.as_str()),
            "event kind {kind:?} undocumented"
        );
    }
    for k in ["ja4", "tls_cert"] {
        assert!(documented.contains(k), "{k} undocumented");
    }
}

#[test]
fn demo_script_says_it_is_building_before_it_builds() {
    let demo =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo.sh"))
            .expect("demo.sh");
    let say = demo.find("first run takes a few minutes").expect("says so");
    let build = demo.find("cargo build").expect("builds");
    assert!(say < build);
    assert!(!demo.contains("--quiet"), "the build's progress is shown");
}

#[test]
fn live_shows_its_packet_span_and_flushes_events_while_running() {
    if !is_root() {
        eprintln!("SKIPPED: live capture in a namespace needs root");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let lab = Lab::new("l", &["10.78.0.11/32", "10.78.0.53/32"]);
    let events = tmp.path().join("events.jsonl");
    let port = 9800 + (std::process::id() % 100) as u16;
    let mut sensor = lab
        .cmd(&[
            env!("CARGO_BIN_EXE_vendorwatch"),
            "live",
            "-i",
            "lo",
            "--state",
            "none",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--events",
            events.to_str().expect("utf-8"),
            "--status-every",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let api = || -> Value {
        let out = lab.exec(&[
            "curl",
            "-s",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}/api/hosts"),
        ]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    wait_for("the metrics endpoint", 60, || api().is_object());
    // A lookup nobody answers is still a name on the wire. Asked once, it must reach the
    // file while the sensor runs (within a second, plus slack for a loaded machine), not
    // when the buffer fills or the sensor stops.
    let _ = lab.exec(&[
        "dig",
        "@10.78.0.53",
        "-b",
        "10.78.0.11",
        "+tries=1",
        "+time=1",
        "tail-me.example.org",
    ]);
    wait_for("the lookup in the events file", 15, || {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .contains("tail-me.example.org")
    });
    let r = api();
    assert!(r["first_packet"].is_string(), "{r}");
    assert!(r["last_packet"].is_string(), "{r}");
    assert!(
        sensor.try_wait().expect("status").is_none(),
        "still running"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &sensor.id().to_string()])
        .status();
    let _ = sensor.wait();
}
