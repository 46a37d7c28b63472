//! Parsers on the traffic taps really carry: frames cut by the snap length, hostile HTTP
//! (70 headers, keep-alive across request bodies) and hostile DNS (a dot inside a label, a
//! compression loop, QDCOUNT 65535).
//!
//! The captures in `pcaps/parsers-*.pcap` were made by real clients and servers
//! (`pcaps/gen-parsers.sh`: dig, kdig, curl, tinyproxy, nginx, openssl, gnutls-cli, Python's
//! http.client and socket) and cut only by `editcap -s 128` / `-s 200`. What vendorwatch must
//! read from each is in `pcaps/expected-parsers/`, derived by tshark
//! (`pcaps/expected_parsers.py`): the names tshark reads whole, and the ones it shows cut.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every expectation in `pcaps/expected-parsers/`, with its capture.
fn expectations() -> Vec<(PathBuf, Value)> {
    let dir = root().join("pcaps/expected-parsers");
    let mut v: Vec<(PathBuf, Value)> = std::fs::read_dir(&dir)
        .expect("pcaps/expected-parsers")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let e: Value =
                serde_json::from_str(&std::fs::read_to_string(&p).expect("read")).expect("json");
            let pcap = root()
                .join("pcaps")
                .join(e["capture"].as_str().expect("capture"));
            (pcap, e)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(v.len(), 5, "expectations missing in {}", dir.display());
    v
}

fn expectation(capture: &str) -> Value {
    expectations()
        .into_iter()
        .find(|(p, _)| p.ends_with(capture))
        .map(|(_, e)| e)
        .unwrap_or_else(|| panic!("no expectation for {capture}"))
}

struct Run {
    out: Output,
    events: Vec<Value>,
    alerts: Vec<Value>,
}

fn replay(pcap: &Path, extra: &[&str]) -> Run {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ev, al) = (tmp.path().join("e.jsonl"), tmp.path().join("a.jsonl"));
    let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .env("VENDORWATCH_STATE", "none")
        .arg("replay")
        .args(extra)
        .arg("--events")
        .arg(&ev)
        .arg("--alerts")
        .arg(&al)
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
        out,
    }
}

type Name = (String, String, String);

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn triples(list: &Value, a: &str, b: &str, c: &str) -> BTreeSet<Name> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|x| (s(&x[a]), s(&x[b]), s(&x[c])))
        .collect()
}

const NAME_KINDS: [&str; 4] = ["dns", "tls_sni", "http_host", "http_connect"];

/// (client, kind, value) of every name event of the kinds tshark names directly.
fn event_names(run: &Run) -> BTreeSet<Name> {
    run.events
        .iter()
        .filter(|e| NAME_KINDS.contains(&e["kind"].as_str().unwrap_or_default()))
        .map(|e| (s(&e["flow"]["src_ip"]), s(&e["kind"]), s(&e["value"])))
        .collect()
}

#[test]
fn every_capture_yields_exactly_the_names_tshark_reads_whole() {
    let mut failures = Vec::new();
    for workers in ["1", "2"] {
        for (pcap, exp) in expectations() {
            let name = pcap
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let run = replay(&pcap, &["--workers", workers]);
            if run.out.status.code() != Some(0) {
                failures.push(format!(
                    "{name}: exit {:?}: {}",
                    run.out.status.code(),
                    String::from_utf8_lossy(&run.out.stderr)
                ));
                continue;
            }
            let want = triples(&exp["names"], "host", "kind", "value");
            let got = event_names(&run);
            if got != want {
                failures.push(format!(
                    "{name} (workers {workers}): names\n  missing {:?}\n  extra   {:?}",
                    want.difference(&got).collect::<Vec<_>>(),
                    got.difference(&want).collect::<Vec<_>>()
                ));
            }
            // A name tshark shows cut short is never a name (the decoys cut after `.com`).
            let cut = triples(&exp["cut"], "host", "kind", "value");
            let leaked: Vec<_> = cut.intersection(&got).collect();
            if !leaked.is_empty() {
                failures.push(format!("{name}: cut names read as names: {leaked:?}"));
            }
            // Every expected detection is raised, and every alert comes from a whole name.
            let detections: BTreeSet<Name> = run
                .alerts
                .iter()
                .map(|a| (s(&a["host"]["ip"]), s(&a["vendor"]), s(&a["category"])))
                .collect();
            let want_detections = triples(&exp["detections"], "host", "vendor", "category");
            if !want_detections.is_subset(&detections) {
                failures.push(format!(
                    "{name}: detections {detections:?} lack {want_detections:?}"
                ));
            }
            for a in &run.alerts {
                let ind = &a["indicator"];
                let (kind, value) = match s(&ind["kind"]).as_str() {
                    "ip" => ("dns".to_string(), s(&ind["name"])),
                    k => (k.to_string(), s(&ind["value"])),
                };
                let whole = want
                    .iter()
                    .any(|(h, k, v)| *h == s(&a["host"]["ip"]) && *k == kind && *v == value)
                    || (kind == "dns" && want.iter().any(|(_, k, v)| k == "dns" && *v == value));
                if !whole {
                    failures.push(format!("{name}: alert from a name not read whole: {a}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_decoy_cut_after_the_vendor_suffix_never_raises_an_alert() {
    // 10.30.0.12 only asked for `<label>.upd.kaspersky.com.example.net` (dig, kdig) and sent
    // `Host: dnl-02.geo.kaspersky.com.example.net` (curl); the cuts leave `….upd.kaspersky.com`
    // and `dnl-02.geo.kaspersky.com`, which rules of high severity would match.
    for capture in ["parsers-snap128.pcap", "parsers-snap200.pcap"] {
        let exp = expectation(capture);
        let cut = triples(&exp["cut"], "host", "kind", "value");
        assert!(
            cut.iter()
                .any(|(h, _, v)| h == "10.30.0.12" && v == "dnl-02.geo.kaspersky.com"),
            "{capture}: the scenario's HTTP decoy is not cut where it should be: {cut:?}"
        );
        let run = replay(&root().join("pcaps").join(capture), &[]);
        let clean: Vec<&Value> = run
            .alerts
            .iter()
            .filter(|a| a["host"]["ip"] == "10.30.0.12")
            .collect();
        assert!(clean.is_empty(), "{capture}: {clean:?}");
        let stderr = String::from_utf8_lossy(&run.out.stderr);
        assert!(run.out.status.success(), "{stderr}");
        // What it does name is whole: the decoys themselves, where the cut spared them.
        for (h, _, v) in event_names(&run) {
            assert!(
                h != "10.30.0.12" || v.ends_with(".kaspersky.com.example.net"),
                "{capture}: the clean host named {v}"
            );
        }
    }
}

#[test]
fn a_dot_inside_a_label_never_passes_for_the_vendor_name() {
    let run = replay(&root().join("pcaps/parsers-dns-hostile.pcap"), &[]);
    let names = event_names(&run);
    // `dig 'dnl-01\.geo.kaspersky.com'`: three labels, read with the dot escaped.
    assert!(names.contains(&(
        "10.30.0.11".into(),
        "dns".into(),
        "dnl-01\\x2egeo.kaspersky.com".into()
    )));
    assert!(!names
        .iter()
        .any(|(_, _, v)| v == "dnl-01.geo.kaspersky.com"));
    for a in &run.alerts {
        let value = s(&a["indicator"]["value"]);
        assert_ne!(value, "dnl-01.geo.kaspersky.com", "{a}");
        if value.contains("\\x2e") {
            // At most the vendor's catch-all (a name under kaspersky.com), never the update rule.
            assert_ne!(a["severity"], "high", "{a}");
        }
    }
    // The compression loop names nothing; QDCOUNT 65535 keeps its one real question.
    assert!(
        !names.iter().any(|(_, _, v)| v.starts_with("a.a")),
        "{names:?}"
    );
    assert!(names.contains(&(
        "10.30.0.11".into(),
        "dns".into(),
        "dnl-02.geo.kaspersky.com".into()
    )));
}

#[test]
fn keep_alive_and_many_headers_still_reach_the_vendor_request() {
    // curl with 70 extra headers; http.client: POST 5,000 bytes, chunked PUT, then the GET.
    let run = replay(
        &root().join("pcaps/parsers-http-hostile.pcap"),
        &["--workers", "1"],
    );
    let hosts: Vec<String> = run
        .events
        .iter()
        .filter(|e| e["kind"] == "http_host")
        .map(|e| format!("{} {}", e["flow"]["dst_port"], s(&e["value"])))
        .collect();
    assert_eq!(
        hosts,
        [
            "80 dnl-01.geo.kaspersky.com",
            "8080 www.example.org",
            "8080 www.example.org",
            "8080 dnl-01.geo.kaspersky.com",
        ],
        "{}",
        String::from_utf8_lossy(&run.out.stderr)
    );
    // A limit of two requests per connection stops before the third (configurable).
    let run = replay(
        &root().join("pcaps/parsers-http-hostile.pcap"),
        &["--http-max-requests", "2"],
    );
    let on_8080 = run
        .events
        .iter()
        .filter(|e| e["kind"] == "http_host" && e["flow"]["dst_port"] == 8080)
        .count();
    assert_eq!(on_8080, 2);
}

#[test]
fn committed_parser_expectations_are_what_tshark_says() {
    if Command::new("tshark").arg("--version").output().is_err() {
        panic!("tshark is not installed: run `bash scripts/deps.sh test` (the README's test command does)");
    }
    for (pcap, exp) in expectations() {
        let out = Command::new("python3")
            .arg(root().join("pcaps/expected_parsers.py"))
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
        assert_eq!(
            fresh,
            exp,
            "{}: differs from what tshark derives now",
            pcap.display()
        );
    }
}

#[test]
fn http_max_requests_is_an_option_and_a_checked_config_key() {
    let bin = env!("CARGO_BIN_EXE_vendorwatch");
    let help = Command::new(bin)
        .args(["replay", "--help"])
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&help.stdout).contains("--http-max-requests"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let conf = tmp.path().join("vendorwatch.toml");
    let check = |text: &str| {
        std::fs::write(&conf, text).expect("write");
        Command::new(bin)
            .args(["config", "check"])
            .arg(&conf)
            .output()
            .expect("runs")
    };
    let ok = check("http_max_requests = 2\n");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for bad in ["http_max_requests = 0\n", "http_max_requests = 2000000\n"] {
        let out = check(bad);
        assert!(!out.status.success(), "{bad} accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("http_max_requests"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The key from the file is in force: two requests per connection, as on the command line.
    check("http_max_requests = 2\n");
    let run = replay(
        &root().join("pcaps/parsers-http-hostile.pcap"),
        &["--config", conf.to_str().expect("utf-8 path")],
    );
    let on_8080 = run
        .events
        .iter()
        .filter(|e| e["kind"] == "http_host" && e["flow"]["dst_port"] == 8080)
        .count();
    assert_eq!(on_8080, 2, "{}", String::from_utf8_lossy(&run.out.stderr));
}
