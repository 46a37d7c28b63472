//! Golden tests on the captures in `pcaps/`, made by real clients and servers (see
//! `pcaps/README.md`). Expected values were derived from each capture by tshark
//! (`pcaps/expected_from_tshark.py`), never from vendorwatch; one test re-derives them with
//! tshark now to prove the committed files still say what tshark says.

mod common;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn expectations() -> Vec<(PathBuf, Value)> {
    let dir = root().join("pcaps/expected");
    let mut v: Vec<(PathBuf, Value)> = std::fs::read_dir(&dir)
        .expect("pcaps/expected")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let e: Value =
                serde_json::from_str(&std::fs::read_to_string(&p).expect("read")).expect("json");
            (
                root()
                    .join("pcaps")
                    .join(e["capture"].as_str().expect("capture")),
                e,
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(v.len() >= 10, "expected files missing");
    v
}

struct Run {
    out: Output,
    events: Vec<Value>,
    alerts: Vec<Value>,
    report: Value,
}

fn replay(pcap: &Path, extra: &[&str]) -> Run {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ev, al, rep) = (
        tmp.path().join("e.jsonl"),
        tmp.path().join("a.jsonl"),
        tmp.path().join("r.json"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .env("VENDORWATCH_STATE", "none")
        .arg("replay")
        .args(extra)
        .arg("--events")
        .arg(&ev)
        .arg("--alerts")
        .arg(&al)
        .arg("--report")
        .arg(&rep)
        .arg(pcap)
        .output()
        .expect("runs vendorwatch");
    let lines = |p: &Path| -> Vec<Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    };
    Run {
        events: lines(&ev),
        alerts: lines(&al),
        report: std::fs::read_to_string(&rep)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null),
        out,
    }
}

fn s(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

fn triples(list: &Value, a: &str, b: &str, c: &str) -> BTreeSet<(String, String, String)> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|x| (s(&x[a]), s(&x[b]), s(&x[c])))
        .collect()
}

type IdentityRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

/// (ip, mac, hostname, client id, source) of a list of identities; `ip` when the list is a
/// host's own (the report does not repeat the address in each).
fn identities(list: &Value, ip: Option<&str>) -> BTreeSet<IdentityRow> {
    let opt = |v: &Value| v.as_str().map(str::to_string);
    list.as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            (
                ip.map_or_else(|| s(&x["ip"]), str::to_string),
                opt(&x["mac"]),
                opt(&x["hostname"]),
                opt(&x["client_id"]),
                s(&x["source"]),
            )
        })
        .collect()
}

#[test]
fn every_capture_gives_exactly_its_expected_names_and_detections() {
    let mut failures = Vec::new();
    for workers in ["1", "2"] {
        for (pcap, exp) in expectations() {
            let name = pcap
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let run = replay(&pcap, &["--workers", workers]);
            let stderr = String::from_utf8_lossy(&run.out.stderr);
            if run.out.status.code() != Some(0) {
                failures.push(format!(
                    "{name}: exit {:?}: {stderr}",
                    run.out.status.code()
                ));
                continue;
            }
            let want_names = triples(&exp["names"], "host", "kind", "value");
            // The expectations hold the kinds tshark names directly; certificates and JA4
            // fingerprints are checked elsewhere.
            let got_names = common::name_triples(&run.events);
            if want_names != got_names {
                failures.push(format!(
                    "{name} (workers {workers}): names differ\n  missing: {:?}\n  extra: {:?}",
                    want_names.difference(&got_names).collect::<Vec<_>>(),
                    got_names.difference(&want_names).collect::<Vec<_>>()
                ));
            }
            let want_quic = triples(&exp["quic_names"], "host", "kind", "value");
            let got_quic: BTreeSet<_> = run
                .events
                .iter()
                .filter(|e| e["kind"] == "quic_sni")
                .map(|e| (s(&e["flow"]["src_ip"]), s(&e["kind"]), s(&e["value"])))
                .collect();
            if want_quic != got_quic {
                failures.push(format!(
                    "{name} (workers {workers}): QUIC names {got_quic:?} != expected {want_quic:?}"
                ));
            }
            // Certificates: (client, server, subject CN, issuer CN, SANs) as tshark read them.
            let want_certs: BTreeSet<(String, String, String, String, Vec<String>)> = exp
                ["certificates"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    let sans = c["sans"].as_array().into_iter().flatten().map(s).collect();
                    (
                        s(&c["host"]),
                        s(&c["server"]),
                        s(&c["subject_cn"]),
                        s(&c["issuer_cn"]),
                        sans,
                    )
                })
                .collect();
            let got_certs: BTreeSet<(String, String, String, String, Vec<String>)> = run
                .events
                .iter()
                .filter(|e| e["kind"] == "tls_cert")
                .map(|e| {
                    let c = &e["cert"];
                    let issuer = s(&c["issuer"]);
                    let issuer_cn = issuer
                        .rsplit("CN=")
                        .next()
                        .unwrap_or_default()
                        .split(',')
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let sans = c["sans"].as_array().into_iter().flatten().map(s).collect();
                    (
                        s(&e["flow"]["src_ip"]),
                        s(&e["flow"]["dst_ip"]),
                        s(&c["common_name"]),
                        issuer_cn,
                        sans,
                    )
                })
                .collect();
            if want_certs != got_certs {
                failures.push(format!("{name} (workers {workers}): certificates {got_certs:?} != expected {want_certs:?}"));
            }
            let want_det = triples(&exp["detections"], "host", "vendor", "category");
            let alerts: Vec<(String, String, String)> = run
                .alerts
                .iter()
                .map(|a| (s(&a["host"]["ip"]), s(&a["vendor"]), s(&a["category"])))
                .collect();
            let alert_set: BTreeSet<_> = alerts.iter().cloned().collect();
            if alert_set.len() != alerts.len() {
                failures.push(format!("{name}: duplicate alerts {alerts:?}"));
            }
            if want_det != alert_set {
                failures.push(format!(
                    "{name} (workers {workers}): alerts differ\n  missing: {:?}\n  extra: {:?}",
                    want_det.difference(&alert_set).collect::<Vec<_>>(),
                    alert_set.difference(&want_det).collect::<Vec<_>>()
                ));
            }
            let reported: BTreeSet<(String, String, String)> = run.report["hosts"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|h| {
                    h["detections"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|d| d["forwarded"] != Value::Bool(true))
                        .map(move |d| (s(&h["ip"]), s(&d["vendor"]), s(&d["category"])))
                })
                .collect();
            if want_det != reported {
                failures.push(format!(
                    "{name}: report detections {reported:?} != expected {want_det:?}"
                ));
            }
            // Identities (captures with DHCP / PTR): every reported host's history holds
            // exactly the distinct identities tshark read for its address, and its current
            // host name is the one tshark's reading gives.
            let want_ids = identities(&exp["identities"], None);
            for h in run.report["hosts"].as_array().into_iter().flatten() {
                let ip = s(&h["ip"]);
                let want: BTreeSet<_> = want_ids.iter().filter(|i| i.0 == ip).cloned().collect();
                let got = identities(&h["identities"], Some(&ip));
                if want != got {
                    failures.push(format!(
                        "{name} (workers {workers}): identities of {ip}\n  missing: {:?}\n  extra: {:?}",
                        want.difference(&got).collect::<Vec<_>>(),
                        got.difference(&want).collect::<Vec<_>>()
                    ));
                }
                let want_name = exp["hostnames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|n| n["ip"] == h["ip"])
                    .map_or(Value::Null, |n| n["hostname"].clone());
                if h["hostname"] != want_name {
                    failures.push(format!(
                        "{name} (workers {workers}): hostname of {ip} {} != expected {want_name}",
                        h["hostname"]
                    ));
                }
                let macs: BTreeSet<_> = want.iter().filter_map(|i| i.1.clone()).collect();
                if h["multiple_macs"] != Value::Bool(macs.len() > 1) {
                    failures.push(format!(
                        "{name} (workers {workers}): {ip} multiple_macs {} but tshark saw MACs {macs:?}",
                        h["multiple_macs"]
                    ));
                }
            }
            let want_resolvers: BTreeSet<String> = exp["resolvers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(s)
                .collect();
            let got_resolvers: BTreeSet<String> = run.report["resolvers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(s)
                .collect();
            if want_resolvers != got_resolvers {
                failures.push(format!(
                    "{name}: resolvers {got_resolvers:?} != expected {want_resolvers:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Where a pretty-printed JSON text has an object whose keys are not in sorted order:
/// `None` when every object's are. (The report was once written through `serde_json::Value`,
/// whose maps sort their keys; it is now written from its types, whose fields are declared in
/// that order, so a field added out of order would change the report's bytes.)
fn unsorted_keys(text: &str) -> Option<String> {
    // For each open container: whether it is an object, and the last key seen in it.
    let mut open: Vec<(bool, Option<String>)> = vec![(false, None)];
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with('}') || t.starts_with(']') {
            open.pop();
        }
        if let (Some(rest), Some((true, last))) = (t.strip_prefix('"'), open.last_mut()) {
            if let Some(end) = rest.find("\": ") {
                let key = &rest[..end];
                if last.as_deref().is_some_and(|prev| prev >= key) {
                    return Some(format!("line {}: {key:?} after {last:?}", n + 1));
                }
                *last = Some(key.to_string());
            }
        }
        if t.ends_with('{') || t.ends_with('[') {
            open.push((t.ends_with('{'), None));
        }
    }
    None
}

#[test]
fn the_report_keeps_its_keys_in_sorted_order() {
    assert!(unsorted_keys("{\n  \"b\": 1,\n  \"a\": 2\n}").is_some());
    assert!(unsorted_keys(
        "{\n  \"a\": {\n    \"z\": 1\n  },\n  \"b\": [\n    \"y\",\n    \"x\"\n  ]\n}"
    )
    .is_none());
    let tmp = tempfile::tempdir().expect("tempdir");
    for (pcap, _) in expectations() {
        let report = tmp.path().join("r.json");
        let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
            .env("VENDORWATCH_STATE", "none")
            .args(["replay", "--quiet", "--report"])
            .arg(&report)
            .arg(&pcap)
            .output()
            .expect("runs vendorwatch");
        assert!(out.status.success(), "{}: {out:?}", pcap.display());
        let text = std::fs::read_to_string(&report).expect("report");
        assert_eq!(unsorted_keys(&text), None, "{}", pcap.display());
    }
}

#[test]
fn alert_carries_the_contract_fields() {
    let run = replay(&root().join("pcaps/dns.pcap"), &[]);
    let a = run
        .alerts
        .iter()
        .find(|a| a["indicator"]["value"] == "dnl-01.geo.kaspersky.com")
        .expect("an alert for dnl-01");
    assert_eq!(a["event_type"], "alert");
    assert_eq!(a["vendor"], "kaspersky");
    assert_eq!(a["category"], "update");
    assert_eq!(a["severity"], "high");
    assert_eq!(a["indicator"]["kind"], "dns");
    assert_eq!(a["flow"]["transport"], "udp");
    assert_eq!(a["flow"]["dst_port"], 53);
    assert!(
        a["host"]["mac"].as_str().is_some_and(|m| m.len() == 17),
        "{a}"
    );
    let ts = a["timestamp"].as_str().expect("timestamp");
    assert!(
        ts.len() == 27 && ts.ends_with('Z') && ts.starts_with("20"),
        "{ts}"
    );
    assert!(
        a["count"].as_u64().is_some() && a["first_seen"].is_string() && a["last_seen"].is_string()
    );
}

#[test]
fn cname_chain_is_reported_with_the_name_that_was_asked() {
    let run = replay(&root().join("pcaps/dns.pcap"), &[]);
    let chained = run
        .alerts
        .iter()
        .chain(
            run.report["hosts"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|h| h["detections"].as_array().into_iter().flatten())
                .flat_map(|d| d["indicators"].as_array().into_iter().flatten()),
        )
        .any(|v| {
            let ind = if v.get("indicator").is_some() {
                &v["indicator"]
            } else {
                v
            };
            ind["value"] == "dnl-02.geo.kaspersky.com" && ind["query"] == "updates.example.net"
        });
    assert!(chained, "no CNAME-chain indicator: {}", run.report);
}

#[test]
fn resolver_upstream_lookups_are_forwarded_not_blamed() {
    let run = replay(&root().join("pcaps/dns-forwarder.pcap"), &[]);
    check_forwarder_not_blamed(&run);
}

/// The client's question and the forwarder's upstream lookup are different flows, which
/// several workers read each at its own pace: the lookup is judged only once the question
/// is on record, however the flows fall. (Judged at once, a run with several workers
/// blamed the forwarder about one time in three here.)
#[test]
fn resolver_upstream_lookups_are_forwarded_whatever_the_worker_count() {
    for workers in ["2", "4", "8"] {
        for _ in 0..6 {
            let run = replay(
                &root().join("pcaps/dns-forwarder.pcap"),
                &["--workers", workers],
            );
            check_forwarder_not_blamed(&run);
        }
    }
}

fn check_forwarder_not_blamed(run: &Run) {
    assert!(
        run.alerts.iter().all(|a| a["host"]["ip"] != "10.10.2.54"),
        "{:?}",
        run.alerts
    );
    let fwd = run.report["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["ip"] == "10.10.2.54")
        .expect("forwarder in the report");
    assert_eq!(fwd["role"], "resolver");
    assert!(fwd["detections"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|d| d["forwarded"] == true));
}

#[test]
fn lookup_sent_to_a_public_resolver_is_marked() {
    let run = replay(&root().join("pcaps/dns-public-resolver.pcap"), &[]);
    assert_eq!(run.alerts.len(), 1, "{:?}", run.alerts);
    assert_eq!(
        run.alerts[0]["dns_server"],
        serde_json::json!({"ip": "8.8.8.8", "public": true})
    );
}

#[test]
fn connection_by_address_is_tied_to_the_name_dns_gave_it() {
    let exp: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("pcaps/expected/passive-dns.pcap.json"))
            .expect("read"),
    )
    .expect("json");
    let conn = &exp["connections_without_name"][0];
    let run = replay(&root().join("pcaps/passive-dns.pcap"), &[]);
    let host = run.report["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["ip"] == conn["host"])
        .expect("host");
    let ip_indicator = host["detections"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d["indicators"].as_array().into_iter().flatten())
        .find(|i| i["kind"] == "ip")
        .unwrap_or_else(|| panic!("no ip indicator: {host}"));
    assert_eq!(ip_indicator["value"], conn["dst_ip"]);
    assert_eq!(ip_indicator["name"], "dnl-02.geo.kaspersky.com");
}

/// A tap that carries only the server's side of each connection (cut from the golden
/// capture by tshark, bytes unchanged): the clients never send a byte, yet the servers'
/// TLS 1.2 certificates still name them, and every detection of the two-way capture stands.
#[test]
fn a_tap_with_only_the_servers_side_still_reads_the_certificates() {
    let pcap = root().join("pcaps/tls12-certs.pcap");
    let tmp = tempfile::tempdir().expect("tempdir");
    let one_way = tmp.path().join("server-side.pcap");
    let cut = Command::new("tshark")
        .args(["-r"])
        .arg(&pcap)
        .args(["-F", "pcap", "-Y", "tcp.srcport == 443", "-w"])
        .arg(&one_way)
        .output()
        .expect("tshark runs");
    assert!(
        cut.status.success(),
        "{}",
        String::from_utf8_lossy(&cut.stderr)
    );
    let exp: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("pcaps/expected/tls12-certs.pcap.json"))
            .expect("expectations"),
    )
    .expect("json");
    let run = replay(&one_way, &[]);
    assert!(
        run.out.status.success(),
        "{}",
        String::from_utf8_lossy(&run.out.stderr)
    );
    let detected: BTreeSet<_> = run.report["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|h| {
            let ip = s(&h["ip"]);
            h["detections"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |d| (ip.clone(), s(&d["vendor"]), s(&d["category"])))
        })
        .collect();
    assert_eq!(
        detected,
        triples(&exp["detections"], "host", "vendor", "category")
    );
    let certs: BTreeSet<(String, String)> = run
        .events
        .iter()
        .filter(|e| e["kind"] == "tls_cert")
        .map(|e| (s(&e["flow"]["src_ip"]), s(&e["value"])))
        .collect();
    let want: BTreeSet<(String, String)> = exp["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (s(&c["host"]), s(&c["subject_cn"])))
        .collect();
    assert_eq!(certs, want);
}

#[test]
fn committed_expectations_are_what_tshark_says() {
    if Command::new("tshark").arg("--version").output().is_err() {
        panic!("tshark is not installed: run `bash scripts/deps.sh test` (the README's test command does)");
    }
    for (pcap, exp) in expectations() {
        let out = Command::new("python3")
            .arg(root().join("pcaps/expected_from_tshark.py"))
            .arg(&pcap)
            .output()
            .expect("runs the tshark deriver");
        assert!(
            out.status.success(),
            "{}: {}",
            pcap.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let fresh: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        for key in [
            "names",
            "detections",
            "resolvers",
            "connections_without_name",
            "identities",
            "hostnames",
        ] {
            assert_eq!(
                fresh[key],
                exp[key],
                "{}: {key} differs from what tshark derives now",
                pcap.display()
            );
        }
    }
}

#[test]
fn dhcp_and_ptr_name_the_detected_hosts_and_show_the_moved_address() {
    let exp: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("pcaps/expected/dhcp-ptr.pcap.json")).expect("read"),
    )
    .expect("json");
    let run = replay(&root().join("pcaps/dhcp-ptr.pcap"), &[]);
    let hosts = run.report["hosts"].as_array().cloned().unwrap_or_default();
    // Every detected host of this capture has a host name, from DHCP leases seen before its
    // first vendor lookup.
    for det in exp["detections"].as_array().into_iter().flatten() {
        let h = hosts
            .iter()
            .find(|h| h["ip"] == det["host"])
            .unwrap_or_else(|| panic!("{} not in the report", det["host"]));
        let want = exp["hostnames"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["ip"] == det["host"])
            .map(|n| n["hostname"].clone())
            .expect("tshark named it");
        assert_eq!(h["hostname"], want, "{h}");
        // The alert names the host too: its lease came before its first lookup (one
        // worker, so the capture's order is the order things are learned in).
        let one = replay(&root().join("pcaps/dhcp-ptr.pcap"), &["--workers", "1"]);
        let alerts: Vec<&Value> = one
            .alerts
            .iter()
            .filter(|a| a["host"]["ip"] == det["host"])
            .collect();
        assert!(!alerts.is_empty(), "no alert for {}", det["host"]);
        for a in alerts {
            assert_eq!(a["host"]["hostname"], want, "{a}");
        }
        // The evidence sample holds the finding, with its flow.
        let ev = &h["detections"][0]["evidence"][0];
        assert_eq!(ev["flow"]["src_ip"], det["host"], "{h}");
        assert_eq!(ev["indicator"]["kind"], "dns", "{h}");
    }
    // The address that two machines held in turn, by tshark's reading.
    let want = identities(&exp["identities"], None);
    let moved: BTreeSet<&String> = want
        .iter()
        .filter(|i| {
            want.iter()
                .any(|j| j.0 == i.0 && j.1.is_some() && i.1.is_some() && j.1 != i.1)
        })
        .map(|i| &i.0)
        .collect();
    assert_eq!(moved.len(), 1, "{want:?}");
    let h = hosts
        .iter()
        .find(|h| moved.contains(&s(&h["ip"])))
        .expect("moved address detected");
    assert_eq!(h["multiple_macs"], true, "{h}");
}

/// `GET /metrics` over plain HTTP/1.0; `None` until the server answers.
fn scrape(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

#[test]
fn a_full_host_table_sheds_new_hosts_counted_and_keeps_known_ones() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let tmp = tempfile::tempdir().expect("tempdir");
    let report = tmp.path().join("r.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .env("VENDORWATCH_STATE", "none")
        .args(["replay", "-q", "--max-hosts", "1", "--linger", "60"])
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--report")
        .arg(&report)
        .arg(root().join("pcaps/dhcp-ptr.pcap"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs vendorwatch");
    // The report is written when the replay is done (the file is created at the start,
    // empty); the metrics stay up while it lingers.
    let written = || {
        std::fs::read_to_string(&report)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some()
    };
    let mut shed_line = None;
    for _ in 0..300 {
        if written() {
            if let Some(text) = scrape(port) {
                shed_line = text
                    .lines()
                    .find(|l| {
                        l.starts_with("vendorwatch_dropped_total{")
                            && l.contains("stage=\"hosts\"")
                            && l.contains("reason=\"table_full\"")
                    })
                    .map(str::to_string);
                if shed_line.is_some() {
                    break;
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    // Several detected hosts in the capture (tshark's expectation), room for one.
    let exp: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("pcaps/expected/dhcp-ptr.pcap.json")).expect("read"),
    )
    .expect("json");
    let detected: BTreeSet<String> = exp["detections"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| s(&d["host"]))
        .collect();
    assert!(detected.len() >= 2, "{detected:?}");
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let hosts = r["hosts"].as_array().cloned().unwrap_or_default();
    assert_eq!(hosts.len(), 1, "{r}");
    let kept = s(&hosts[0]["ip"]);
    assert!(detected.contains(&kept), "{r}");
    // Every finding of the other hosts was shed and counted: as many as an unbounded run
    // records for them.
    let full = replay(&root().join("pcaps/dhcp-ptr.pcap"), &[]);
    let others: u64 = full.report["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| s(&h["ip"]) != kept)
        .flat_map(|h| h["detections"].as_array().cloned().unwrap_or_default())
        .map(|d| d["count"].as_u64().unwrap_or(0))
        .sum();
    assert!(others >= 1);
    let line = shed_line
        .expect("vendorwatch_dropped_total{stage=\"hosts\",reason=\"table_full\"} exposed");
    assert!(
        line.ends_with(&format!(" {others}")),
        "{line} (expected {others})"
    );
}

/// Identities and evidence survive a restart: a second replay of the same capture on the same
/// inventory keeps one history entry per distinct identity (counts go on), and
/// `vendorwatch hosts` shows the host names in JSON, CSV and the table.
#[test]
fn identities_and_evidence_survive_restarts_and_show_in_hosts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("inv.db");
    let pcap = root().join("pcaps/dhcp-ptr.pcap");
    let exp: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("pcaps/expected/dhcp-ptr.pcap.json")).expect("read"),
    )
    .expect("json");
    let run = |args: &[&str]| -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
            .args(args)
            .arg("--state")
            .arg(&db)
            .output()
            .expect("runs vendorwatch");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let pcap_arg = pcap.to_str().expect("utf-8 path");
    run(&["replay", "-q", pcap_arg]);
    run(&["replay", "-q", pcap_arg]);
    let json: Value =
        serde_json::from_slice(&run(&["hosts", "--format", "json"]).stdout).expect("hosts JSON");
    let want = identities(&exp["identities"], None);
    for h in json["hosts"].as_array().expect("hosts") {
        let ip = s(&h["ip"]);
        let mine: BTreeSet<_> = want.iter().filter(|i| i.0 == ip).cloned().collect();
        assert_eq!(identities(&h["identities"], Some(&ip)), mine, "{h}");
        // Every identity was seen twice (once per replay) or more: counted, not duplicated.
        assert!(
            h["identities"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|i| i["count"].as_u64().unwrap_or(0) >= 2),
            "{h}"
        );
        let det = &h["detections"][0];
        assert_eq!(det["count"], 2, "{h}");
        assert_eq!(det["evidence"].as_array().map(Vec::len), Some(2), "{h}");
    }
    let names: BTreeSet<String> = exp["hostnames"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| s(&n["hostname"]))
        .collect();
    let from_json: BTreeSet<String> = json["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| s(&h["hostname"]))
        .collect();
    assert_eq!(from_json, names);
    let csv = String::from_utf8(run(&["hosts", "--format", "csv"]).stdout).expect("utf-8");
    let mut lines = csv.lines();
    assert!(lines.next().expect("header").ends_with(",hostname"));
    let from_csv: BTreeSet<String> = lines
        .map(|l| l.rsplit(',').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(from_csv, names);
    let table = String::from_utf8(run(&["hosts"]).stdout).expect("utf-8");
    assert!(table.contains("HOSTNAME"), "{table}");
    for n in &names {
        assert!(table.contains(n.as_str()), "{table}");
    }
}

/// The identity of an address with no detection yet survives a restart: the capture is cut
/// (by tshark and editcap) just before its first vendor lookup; the first part (DHCP leases,
/// PTR answers, no detection) is replayed, the sensor stops, and a second run on the same
/// inventory replays the rest: the hosts detected then carry the names DHCP gave them before.
#[test]
fn identities_seen_before_a_restart_name_hosts_detected_after_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pcap = root().join("pcaps/dhcp-ptr.pcap");
    let first_lookup = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args([
            "-Y",
            "dns.qry.name contains \"kaspersky\"",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ])
        .output()
        .expect("tshark runs (bash scripts/deps.sh test)");
    let first: u32 = String::from_utf8_lossy(&first_lookup.stdout)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("a vendor lookup in the capture");
    let (before, after) = (
        tmp.path().join("before.pcap"),
        tmp.path().join("after.pcap"),
    );
    for (out, range) in [
        (&before, format!("1-{}", first - 1)),
        (&after, format!("{first}-{}", u32::MAX)),
    ] {
        let st = Command::new("editcap")
            .arg("-r")
            .arg(&pcap)
            .arg(out)
            .arg(&range)
            .status()
            .expect("editcap runs (wireshark-common, installed with tshark)");
        assert!(st.success(), "editcap {range}");
    }
    let db = tmp.path().join("inv.db");
    let report = tmp.path().join("r.json");
    for part in [&before, &after] {
        let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
            .args(["replay", "-q", "--state"])
            .arg(&db)
            .arg("--report")
            .arg(&report)
            .arg(part)
            .output()
            .expect("runs vendorwatch");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: Value =
            serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
        if part == &before {
            // No detection yet: identities are not hosts.
            assert_eq!(r["hosts"].as_array().map(Vec::len), Some(0), "{r}");
        }
    }
    let exp: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("pcaps/expected/dhcp-ptr.pcap.json")).expect("read"),
    )
    .expect("json");
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let hosts = r["hosts"].as_array().cloned().unwrap_or_default();
    // Every detected address that DHCP named in the first part is named now.
    let named_before: BTreeSet<String> = Command::new("tshark")
        .arg("-r")
        .arg(&before)
        .args([
            "-Y",
            "dhcp.option.hostname",
            "-T",
            "fields",
            "-e",
            "dhcp.ip.your",
        ])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty() && l != "0.0.0.0")
                .collect()
        })
        .expect("tshark");
    let mut checked = 0;
    for h in &hosts {
        let ip = s(&h["ip"]);
        if !named_before.contains(&ip) {
            continue;
        }
        let want = exp["hostnames"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["ip"] == h["ip"])
            .map(|n| n["hostname"].clone())
            .expect("tshark named it");
        assert_eq!(h["hostname"], want, "{h}");
        checked += 1;
    }
    assert!(
        checked >= 1,
        "no host named before the restart was detected after it: {r}"
    );
}
