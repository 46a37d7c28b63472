//! Live capture on a real interface: a network namespace and a veth pair made by the test,
//! a DNS server (dnsmasq) and a TLS server (openssl s_server) on the near end, real clients
//! (dig, curl) in the namespace, vendorwatch capturing with libpcap on the near end, then
//! SIGTERM right after the last client: everything captured must be in the alerts and the
//! report. Needs root (CI runs as root); skipped, loudly, otherwise.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Lab {
    ns: String,
    near: String,
    children: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for args in [
            vec!["netns", "del", &self.ns],
            vec!["link", "del", &self.near],
        ] {
            let _ = Command::new("ip")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn run(cmd: &[&str]) {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn live_capture_on_a_veth_pair_reports_everything_after_sigterm() {
    if !root() {
        eprintln!("SKIPPED: live capture needs root (CI runs as root)");
        return;
    }
    let id = std::process::id() % 100_000;
    let ns = format!("vwlive{id}");
    let (near, far) = (format!("vwn{id}"), format!("vwf{id}"));
    let mut lab = Lab {
        ns: ns.clone(),
        near: near.clone(),
        children: Vec::new(),
    };
    run(&["ip", "netns", "add", &ns]);
    run(&[
        "ip", "link", "add", &near, "type", "veth", "peer", "name", &far,
    ]);
    run(&["ip", "link", "set", &far, "netns", &ns]);
    run(&["ip", "addr", "add", "10.99.0.1/24", "dev", &near]);
    run(&["ip", "link", "set", &near, "up"]);
    run(&[
        "ip",
        "netns",
        "exec",
        &ns,
        "ip",
        "addr",
        "add",
        "10.99.0.2/24",
        "dev",
        &far,
    ]);
    run(&["ip", "netns", "exec", &ns, "ip", "link", "set", &far, "up"]);
    run(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
    for (dev, inside) in [(&near, false), (&far, true)] {
        let mut c = if inside {
            vec!["ip", "netns", "exec", &ns]
        } else {
            vec![]
        };
        c.extend([
            "ethtool", "-K", dev, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro",
            "off",
        ]);
        let _ = Command::new(c[0])
            .args(&c[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    let tmp = tempfile::tempdir().expect("tmp");
    let (key, cert) = (tmp.path().join("k.pem"), tmp.path().join("c.pem"));
    run(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=s05.upd.kaspersky.com",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    let spawn = |args: &[&str]| {
        Command::new(args[0])
            .args(&args[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn")
    };
    lab.children.push(spawn(&[
        "dnsmasq",
        "--no-daemon",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=10.99.0.1",
        "--address=/kaspersky.com/10.99.0.1",
        "--address=/example.org/10.99.0.1",
        "--pid-file=",
    ]));
    lab.children.push(spawn(&[
        "openssl",
        "s_server",
        "-accept",
        "10.99.0.1:443",
        "-cert",
        cert.to_str().unwrap(),
        "-key",
        key.to_str().unwrap(),
        "-www",
        "-quiet",
    ]));

    let (alerts, report, events) = (
        tmp.path().join("a.jsonl"),
        tmp.path().join("r.json"),
        tmp.path().join("e.jsonl"),
    );
    let mut sensor = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .env("VENDORWATCH_STATE", "none")
        .args([
            "live",
            "-i",
            &near,
            "--workers",
            "2",
            "--user",
            "nobody",
            "--alerts",
        ])
        .arg(&alerts)
        .arg("--report")
        .arg(&report)
        .arg("--events")
        .arg(&events)
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts vendorwatch live");
    std::thread::sleep(Duration::from_millis(800));

    let client = |args: &[&str]| {
        let mut c = vec!["ip", "netns", "exec", &ns];
        c.extend_from_slice(args);
        let _ = Command::new(c[0])
            .args(&c[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    client(&[
        "dig",
        "@10.99.0.1",
        "+tries=1",
        "+time=2",
        "dnl-01.geo.kaspersky.com",
    ]);
    client(&[
        "dig",
        "@10.99.0.1",
        "+tries=1",
        "+time=2",
        "www.example.org",
    ]);
    client(&[
        "curl",
        "-sk",
        "--max-time",
        "3",
        "--resolve",
        "s05.upd.kaspersky.com:443:10.99.0.1",
        "https://s05.upd.kaspersky.com/",
    ]);
    client(&[
        "curl",
        "-sk",
        "--max-time",
        "3",
        "--resolve",
        "www.example.org:443:10.99.0.1",
        "https://www.example.org/",
    ]);

    // Least privilege: capturing as nobody, with no capability left.
    let status_file =
        std::fs::read_to_string(format!("/proc/{}/status", sensor.id())).expect("process status");
    let field = |name: &str| {
        status_file
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        field("Uid:")
            .split_whitespace()
            .skip(1)
            .all(|u| u == "65534"),
        "{}",
        field("Uid:")
    );
    for caps in ["CapEff:", "CapPrm:"] {
        assert!(field(caps).ends_with("0000000000000000"), "{}", field(caps));
    }
    // No pause: what was captured just before the signal must not be lost.
    run(&["kill", "-TERM", &sensor.id().to_string()]);
    let status = wait_for_exit(&mut sensor, Duration::from_secs(15))
        .expect("vendorwatch exits after SIGTERM");
    let mut stderr = String::new();
    if let Some(mut e) = sensor.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert_eq!(status.code(), Some(0), "{stderr}");

    let read_lines = |p: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect()
    };
    let alerts = read_lines(&alerts);
    let events = read_lines(&events);
    let has_event = |kind: &str, value: &str| {
        events
            .iter()
            .any(|e| e["kind"] == kind && e["value"] == value && e["flow"]["src_ip"] == "10.99.0.2")
    };
    assert!(
        has_event("dns", "dnl-01.geo.kaspersky.com"),
        "events: {events:?}\n{stderr}"
    );
    assert!(
        has_event("tls_sni", "s05.upd.kaspersky.com"),
        "events: {events:?}\n{stderr}"
    );
    assert!(
        has_event("tls_sni", "www.example.org"),
        "events: {events:?}\n{stderr}"
    );
    assert_eq!(
        alerts.len(),
        1,
        "one alert for (10.99.0.2, kaspersky, update): {alerts:?}"
    );
    assert_eq!(alerts[0]["host"]["ip"], "10.99.0.2");
    assert_eq!(alerts[0]["category"], "update");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report written"))
            .expect("json");
    let host = report["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["ip"] == "10.99.0.2"))
        .expect("host in report");
    let kinds: Vec<&str> = host["detections"][0]["indicators"]
        .as_array()
        .expect("indicators")
        .iter()
        .filter_map(|i| i["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"dns") && kinds.contains(&"tls_sni"),
        "{host}"
    );
    assert!(
        stderr.contains(&format!("capture   {near}: libpcap received")),
        "{stderr}"
    );
    drop(lab);
}

#[test]
fn live_errors_say_what_to_do() {
    let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .env("VENDORWATCH_STATE", "none")
        .args(["live", "-i", "vw-no-such0"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist (interfaces here:"));
    if root() {
        let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
            .env("VENDORWATCH_STATE", "none")
            .args(["live", "-i", "lo", "--bpf", "port and"])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("does not compile"));
    }
}
