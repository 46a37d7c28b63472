//! Live capture on a real interface: a network namespace and a veth pair made by the test,
//! a DNS server (dnsmasq) and a TLS server (openssl s_server) on the near end, real clients
//! (dig, curl) in the namespace, vendorwatch capturing with libpcap on the near end, then
//! SIGTERM right after the last client: everything captured must be in the alerts and the
//! report. Needs root (CI runs as root); skipped, loudly, otherwise.
//!
//! The same lab shows the sensor riding out faults: its interface going down and coming
//! back (the capture resumes on the same handle, every detection before and after is kept),
//! and its interface being deleted and created again (the sensor under its seccomp filter
//! ends that capture once the interface is back, so a restart can open it; without the
//! filter, as root, it reopens it by itself), and its interface being down when it starts
//! (it says so and waits, then captures). And that every thread of `live` and `replay` runs
//! under the seccomp filter (`/proc/PID/task/*/status`), on by default, and that `-q` never
//! hides a warning.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{root_or_skip, run_ok, VethLab, VethSpec};

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
    if !root_or_skip("live capture") {
        return;
    }
    let mut lab = VethLab::new(VethSpec {
        prefixes: ["vwlive", "vwf", "vwn"],
        tag: "",
        addresses: Some(("10.99.0.1/24".into(), "10.99.0.2/24".into())),
        no_ipv6: false,
        mtu: None,
        loopback: true,
    });
    let (ns, near) = (lab.ns.clone(), lab.outside.clone());

    let tmp = tempfile::tempdir().expect("tmp");
    let (key, cert) = (tmp.path().join("k.pem"), tmp.path().join("c.pem"));
    run_ok(&[
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
    // Its stderr, collected as it comes: the clients start once it says it captures (after
    // its privilege drop), however long start-up takes on a busy machine.
    let (mut sensor, collected, reader) = common::spawn_collecting(
        Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
            .env("VENDORWATCH_STATE", "none")
            .args([
                "live",
                "-i",
                &near,
                "--workers",
                "2",
                // libpcap: fanout capture has its own test (tests/fanout_live.rs).
                "--capture-threads",
                "1",
                "--user",
                "nobody",
                "--alerts",
            ])
            .arg(&alerts)
            .arg("--report")
            .arg(&report)
            .arg("--events")
            .arg(&events),
    );
    let started = Instant::now();
    while !collected
        .lock()
        .map(|s| s.contains("metrics on http://"))
        .unwrap_or(false)
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "vendorwatch did not start capturing: {}",
            collected.lock().map(|s| s.clone()).unwrap_or_default()
        );
        assert!(
            sensor.try_wait().ok().flatten().is_none(),
            "vendorwatch exited: {}",
            collected.lock().map(|s| s.clone()).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

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
    // And under the seccomp filter, every thread of it (the filter is installed with TSYNC
    // after the metrics, inventory and worker threads were already running).
    assert_all_threads_filtered(sensor.id());
    // No pause: what was captured just before the signal must not be lost.
    run_ok(&["kill", "-TERM", &sensor.id().to_string()]);
    let status = wait_for_exit(&mut sensor, Duration::from_secs(15))
        .expect("vendorwatch exits after SIGTERM");
    if let Some(r) = reader {
        let _ = r.join();
    }
    let stderr = collected.lock().map(|s| s.clone()).unwrap_or_default();
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
        stderr.contains(&format!("capture   {near}: libpcap received"))
            && stderr.contains("read      1 interface(s), "),
        "{stderr}"
    );
    assert!(
        stderr.contains("seccomp filter on") && stderr.contains("personality() is refused"),
        "{stderr}"
    );
    drop(lab);
}

/// Every thread of `pid` is in seccomp filter mode (2) with no_new_privs set, and the
/// process carries the three filters (deny-list, clone3, x32) or two off x86_64.
fn assert_all_threads_filtered(pid: u32) {
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task list")
        .filter_map(|t| t.ok())
        .collect();
    assert!(tasks.len() > 2, "the sensor runs several threads");
    for task in tasks {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let value = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        assert_eq!(value("Seccomp:"), "2", "thread {comm}: {status}");
        assert_eq!(value("NoNewPrivs:"), "1", "thread {comm}");
        let filters: u32 = value("Seccomp_filters:").parse().unwrap_or(0);
        let expected = if cfg!(target_arch = "x86_64") { 3 } else { 2 };
        assert_eq!(filters, expected, "thread {comm}");
    }
}

/// A namespace holding the far end of a veth pair (`inside`), the near end (`outside`) in
/// the root namespace with 10.99.NET.1/24 (each test its own NET: the near ends share the
/// root namespace's routes).
struct Veth {
    lab: VethLab,
    net: u8,
}

impl std::ops::Deref for Veth {
    type Target = VethLab;
    fn deref(&self) -> &VethLab {
        &self.lab
    }
}

impl Veth {
    fn new(tag: &str, net: u8) -> Veth {
        let prefixes = [format!("vw{tag}"), format!("vw{tag}f"), format!("vw{tag}n")];
        let [ns, far, near] = prefixes.each_ref().map(String::as_str);
        let lab = VethLab::new(VethSpec {
            prefixes: [ns, far, near],
            tag: "",
            addresses: Some((format!("10.99.{net}.1/24"), format!("10.99.{net}.2/24"))),
            no_ipv6: false,
            mtu: None,
            loopback: true,
        });
        Veth { lab, net }
    }

    fn near_ip(&self) -> String {
        format!("10.99.{}.1", self.net)
    }

    fn far_ip(&self) -> String {
        format!("10.99.{}.2", self.net)
    }

    /// A DNS server on the near end answering every kaspersky name.
    fn start_dnsmasq(&mut self) {
        let child = Command::new("dnsmasq")
            .args([
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--bind-dynamic",
                &format!("--listen-address={}", self.near_ip()),
                &format!("--address=/kaspersky.com/{}", self.near_ip()),
                &format!("--address=/kaspersky-labs.com/{}", self.near_ip()),
                "--pid-file=",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq");
        self.lab.children.push(child);
    }

    /// `dig NAME` from the far end (whether it is answered does not matter: the sensor sees
    /// the query).
    fn lookup(&self, name: &str) {
        let server = format!("@{}", self.near_ip());
        let _ = Command::new("ip")
            .args([
                "netns", "exec", &self.ns, "dig", &server, "+tries=1", "+time=1", name,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A running `vendorwatch live` whose stderr is collected as it comes.
struct Sensor {
    child: Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Sensor {
    fn start(args: &[&str]) -> Sensor {
        Sensor::start_under(&[], args)
    }

    /// Starts it through `wrapper` (a command line that runs the rest, e.g. `setpriv ... --`).
    fn start_under(wrapper: &[&str], args: &[&str]) -> Sensor {
        let program = env!("CARGO_BIN_EXE_vendorwatch");
        let (first, rest) = match wrapper.split_first() {
            Some((w, rest)) => (*w, [rest, &[program]].concat()),
            None => (program, Vec::new()),
        };
        let mut child = Command::new(first)
            .args(rest)
            .env("VENDORWATCH_STATE", "none")
            .arg("live")
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts vendorwatch live");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr piped");
        let sink = std::sync::Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        Sensor {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    fn log(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits (up to `limit`) until stderr holds `needle`.
    fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The metrics address it printed.
    fn metrics_addr(&self) -> String {
        assert!(
            self.wait_for("metrics on http://", Duration::from_secs(10)),
            "{}",
            self.log()
        );
        let log = self.log();
        let rest = log.split("metrics on http://").nth(1).unwrap_or_default();
        rest.split('/').next().unwrap_or_default().to_string()
    }

    /// Waits for the exit (after a signal, or by itself); returns the code and all of stderr.
    fn wait(mut self, limit: Duration) -> (Option<i32>, String) {
        let status = wait_for_exit(&mut self.child, limit);
        if status.is_none() {
            let _ = self.child.kill();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status.and_then(|s| s.code()), self.log())
    }

    fn terminate(self) -> (Option<i32>, String) {
        run_ok(&["kill", "-TERM", &self.child.id().to_string()]);
        self.wait(Duration::from_secs(15))
    }
}

/// GET `path` from the sensor's HTTP endpoint: (status code, body).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (code, body)
}

/// Polls `path` until its status is `code` (the health endpoint follows the capture
/// threads within a tenth of a second); returns the last answer.
fn http_until(addr: &str, path: &str, code: u16) -> (u16, String) {
    let start = Instant::now();
    loop {
        let got = http_get(addr, path);
        if got.0 == code || start.elapsed() > Duration::from_secs(5) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of one Prometheus sample, by its full series text.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

fn alerts_in(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("alert json"))
        .collect()
}

fn has_alert(alerts: &[serde_json::Value], host: &str, category: &str, value: &str) -> bool {
    alerts.iter().any(|a| {
        a["host"]["ip"] == host && a["category"] == category && a["indicator"]["value"] == value
    })
}

/// Waits until the alerts file holds a line for `value` (the sensor writes alerts as they
/// happen), so a fault injected next cannot be blamed for a detection that never was.
fn wait_for_alert(path: &Path, value: &str) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if alerts_in(path)
            .iter()
            .any(|a| a["indicator"]["value"] == value)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn live_capture_survives_its_interface_going_down_and_up() {
    if !root_or_skip("live capture") {
        return;
    }
    let mut lab = Veth::new("ud", 101);
    lab.start_dnsmasq();
    let tmp = tempfile::tempdir().expect("tmp");
    let (alerts, report) = (tmp.path().join("a.jsonl"), tmp.path().join("r.json"));
    let (a, r) = (alerts.to_str().unwrap(), report.to_str().unwrap());
    let near = lab.outside.clone();
    let sensor = Sensor::start(&[
        "-i",
        &near,
        "--user",
        "nobody",
        "--workers",
        "1",
        "--metrics-addr",
        "127.0.0.1:0",
        "--alerts",
        a,
        "--report",
        r,
    ]);
    let addr = sensor.metrics_addr();
    assert_eq!(
        http_until(&addr, "/healthz", 200).0,
        200,
        "{}",
        sensor.log()
    );

    lab.lookup("dnl-01.geo.kaspersky.com");
    assert!(
        wait_for_alert(&alerts, "dnl-01.geo.kaspersky.com"),
        "{}",
        sensor.log()
    );

    run_ok(&["ip", "link", "set", &near, "down"]);
    assert!(
        sensor.wait_for(
            &format!("{near}: the interface went down"),
            Duration::from_secs(5)
        ),
        "{}",
        sensor.log()
    );
    let (code, why) = http_until(&addr, "/healthz", 503);
    assert_eq!(code, 503, "{why}");
    assert!(why.contains(&near) && why.contains("down"), "{why}");
    let metrics = http_get(&addr, "/metrics").1;
    let up = format!("vendorwatch_capture_up{{interface=\"{near}\"}}");
    let downs = format!(
        "vendorwatch_capture_interruptions_total{{interface=\"{near}\",reason=\"link_down\"}}"
    );
    assert_eq!(sample(&metrics, &up), Some(0.0), "{metrics}");
    assert_eq!(sample(&metrics, &downs), Some(1.0), "{metrics}");

    run_ok(&["ip", "link", "set", &near, "up"]);
    assert!(
        sensor.wait_for(
            &format!("{near}: the interface is up again"),
            Duration::from_secs(5)
        ),
        "{}",
        sensor.log()
    );
    assert_eq!(
        http_until(&addr, "/healthz", 200).0,
        200,
        "{}",
        sensor.log()
    );
    let metrics = http_get(&addr, "/metrics").1;
    assert_eq!(sample(&metrics, &up), Some(1.0), "{metrics}");
    // New traffic on the same handle is seen again: another category, so another alert.
    lab.lookup("ksn-a-stat-geo.kaspersky-labs.com");
    assert!(
        wait_for_alert(&alerts, "ksn-a-stat-geo.kaspersky-labs.com"),
        "{}",
        sensor.log()
    );

    let (code, stderr) = sensor.terminate();
    assert_eq!(
        code,
        Some(0),
        "a link that came back is no failure: {stderr}"
    );
    let alerts = alerts_in(&alerts);
    let host = lab.far_ip();
    assert!(
        has_alert(&alerts, &host, "update", "dnl-01.geo.kaspersky.com"),
        "{alerts:?}"
    );
    assert!(
        has_alert(&alerts, &host, "ksn", "ksn-a-stat-geo.kaspersky-labs.com"),
        "{alerts:?}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let categories: Vec<&str> = report["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["ip"] == host.as_str()))
        .and_then(|h| h["detections"].as_array())
        .map(|d| d.iter().filter_map(|d| d["category"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        categories.contains(&"update") && categories.contains(&"ksn"),
        "{report}"
    );
}

#[test]
fn a_removed_interface_ends_its_capture_once_back_and_nothing_is_lost() {
    if !root_or_skip("live capture") {
        return;
    }
    let mut lab = Veth::new("rm", 102);
    lab.start_dnsmasq();
    let tmp = tempfile::tempdir().expect("tmp");
    let (alerts, report) = (tmp.path().join("a.jsonl"), tmp.path().join("r.json"));
    let (a, r) = (alerts.to_str().unwrap(), report.to_str().unwrap());
    let near = lab.outside.clone();
    let sensor = Sensor::start(&[
        "-i",
        &near,
        "--user",
        "root",
        "--workers",
        "1",
        "--metrics-addr",
        "127.0.0.1:0",
        "--alerts",
        a,
        "--report",
        r,
    ]);
    let addr = sensor.metrics_addr();
    // Root, with CAP_NET_RAW still in force: whatever stops it from opening a packet socket
    // later is its seccomp filter, not a missing privilege.
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", sensor.child.id())).unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_NET_RAW: u32 = 13;
    assert!(cap_eff & (1 << CAP_NET_RAW) != 0, "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    lab.lookup("dnl-01.geo.kaspersky.com");
    // No wait for the alert: the lookup is still in the kernel ring when the interface goes.
    run_ok(&["ip", "link", "del", &near]);
    assert!(
        sensor.wait_for(
            &format!("{near}: the interface was removed"),
            Duration::from_secs(5)
        ),
        "{}",
        sensor.log()
    );
    let (code, why) = http_until(&addr, "/healthz", 503);
    assert_eq!(code, 503, "{why}");
    assert!(why.contains("removed"), "{why}");
    let metrics = http_get(&addr, "/metrics").1;
    let removed = format!(
        "vendorwatch_capture_interruptions_total{{interface=\"{near}\",reason=\"interface_removed\"}}"
    );
    assert_eq!(sample(&metrics, &removed), Some(1.0), "{metrics}");
    // Back: the sensor tries a new handle, its seccomp filter refuses the packet socket
    // (EPERM, said by libpcap), and it ends the capture (its only one), and with it the
    // run, for a restart to take over.
    lab.create_pair();
    let (code, stderr) = sensor.wait(Duration::from_secs(15));
    assert_eq!(
        code,
        Some(1),
        "a capture that ended is a partial run: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{near}: the interface is back, but a new capture cannot be opened ("
        )) && stderr.contains("Operation not permitted"),
        "{stderr}"
    );
    assert!(stderr.contains("restart vendorwatch"), "{stderr}");
    let alerts = alerts_in(&alerts);
    assert!(
        has_alert(&alerts, &lab.far_ip(), "update", "dnl-01.geo.kaspersky.com"),
        "{alerts:?}\n{stderr}"
    );
    let report = std::fs::read_to_string(&report).expect("report written");
    assert!(report.contains("dnl-01.geo.kaspersky.com"), "{report}");
}

#[test]
fn without_seccomp_a_root_sensor_reopens_a_recreated_interface() {
    if !root_or_skip("live capture") {
        return;
    }
    let mut lab = Veth::new("ro", 103);
    lab.start_dnsmasq();
    let tmp = tempfile::tempdir().expect("tmp");
    let alerts = tmp.path().join("a.jsonl");
    let a = alerts.to_str().unwrap();
    let near = lab.outside.clone();
    let sensor = Sensor::start(&[
        "-i",
        &near,
        "--user",
        "root",
        "--no-seccomp",
        "--workers",
        "1",
        "--metrics-addr",
        "off",
        "--alerts",
        a,
    ]);
    assert!(
        sensor.wait_for("seccomp filter off", Duration::from_secs(10)),
        "{}",
        sensor.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    lab.lookup("dnl-01.geo.kaspersky.com");
    assert!(
        wait_for_alert(&alerts, "dnl-01.geo.kaspersky.com"),
        "{}",
        sensor.log()
    );
    run_ok(&["ip", "link", "del", &near]);
    assert!(
        sensor.wait_for(
            &format!("{near}: the interface was removed"),
            Duration::from_secs(5)
        ),
        "{}",
        sensor.log()
    );
    lab.create_pair();
    assert!(
        sensor.wait_for(
            &format!("{near}: the interface is back; capture reopened"),
            Duration::from_secs(15)
        ),
        "{}",
        sensor.log()
    );
    lab.lookup("ksn-a-stat-geo.kaspersky-labs.com");
    assert!(
        wait_for_alert(&alerts, "ksn-a-stat-geo.kaspersky-labs.com"),
        "{}",
        sensor.log()
    );
    let (code, stderr) = sensor.terminate();
    assert_eq!(code, Some(0), "{stderr}");
}

/// `replay` installs the filter too, on by default: hold its standard input open so the
/// process can be looked at, then feed it a capture.
#[test]
fn replay_runs_under_the_seccomp_filter_and_still_detects() {
    let capture = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/dns-vlan.pcap"))
        .expect("golden capture");
    let tmp = tempfile::tempdir().expect("tmp");
    let alerts = tmp.path().join("a.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .env("VENDORWATCH_STATE", "none")
        .env("VENDORWATCH_LOG", "info")
        .args([
            "replay",
            "--workers",
            "2",
            "--metrics-addr",
            "127.0.0.1:0",
            "--alerts",
        ])
        .arg(&alerts)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts vendorwatch replay");
    // The filter is installed before the workers start; wait for them (and it) to be there.
    let pid = child.id();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if threads > 3 && status.contains("Seccomp:\t2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_all_threads_filtered(pid);
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&capture).expect("feed the capture");
    }
    let out = child.wait_with_output().expect("replay ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("seccomp filter on"), "{stderr}");
    assert!(!alerts_in(&alerts).is_empty(), "{stderr}");

    // --no-seccomp: no filter at all.
    let mut child = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .env("VENDORWATCH_STATE", "none")
        .args(["replay", "--no-seccomp", "-q", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts vendorwatch replay");
    std::thread::sleep(Duration::from_millis(500));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    drop(child.stdin.take());
    let _ = child.wait();
    assert!(status.contains("Seccomp:\t0"), "{status}");
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
    if common::is_root() {
        let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
            .env("VENDORWATCH_STATE", "none")
            .args(["live", "-i", "lo", "--bpf", "port and"])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("does not compile"));
    }
}

/// An interface that is down when `live` starts: every capture path refuses it in the same
/// words, and the sensor says at once that it is down, that it waits, and how to bring it
/// up (under `-q` too: it is a warning); once it is up, capture starts on the path it would
/// have had anyway (with two capture threads, libpcap's rings, not the plain-socket
/// fallback) and detects. A stop while it waits exits 2: nothing was captured.
#[test]
fn live_on_a_down_interface_says_so_waits_for_it_and_then_captures() {
    if !root_or_skip("live capture") {
        return;
    }
    use vendorwatch::capture::{fanout, live, ring_fanout};
    let lab = Veth::new("dn", 105);
    let near = lab.outside.clone();
    run_ok(&["ip", "link", "set", &near, "down"]);

    let opts = live::LiveOptions {
        interface: near.clone(),
        bpf: None,
        buffer_mb: 8,
        promiscuous: true,
    };
    let said = |e: Option<live::OpenError>| e.map(|e| e.to_string()).unwrap_or_default();
    let pcap = live::LiveCapture::open(&opts).err();
    assert!(
        matches!(pcap, Some(live::OpenError::InterfaceDown { .. })),
        "libpcap: {}",
        said(pcap)
    );
    let rings = ring_fanout::open(&opts, 2).err();
    assert!(
        matches!(rings, Some(live::OpenError::InterfaceDown { .. })),
        "libpcap rings: {}",
        said(rings)
    );
    let sockets = fanout::open(&fanout::FanoutOptions {
        interface: near.clone(),
        sockets: 2,
        group: None,
        bpf: None,
        snaplen: 262_144,
        buffer_bytes: 1 << 20,
        promiscuous: true,
        kernel_defrag: false,
    })
    .err();
    assert_eq!(
        sockets.as_ref().map(fanout::OpenError::reason),
        Some("interface_down"),
        "fanout sockets: {sockets:?}"
    );

    let down_said = format!("warning: {near}: the interface is administratively down");
    let advice = format!("`ip link set {near} up`");
    // A typo in the filter is no reason to wait: said at once.
    let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .env("VENDORWATCH_STATE", "none")
        .args([
            "live",
            "-i",
            &near,
            "--bpf",
            "port and",
            "--metrics-addr",
            "off",
        ])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("does not compile"), "{stderr}");
    // Nor is what would fail once the link is up and can be told now: a missing user, an
    // output whose directory does not exist (`timeout`: a sensor that waits instead is
    // killed, 124).
    let missing_dir = tempfile::tempdir()
        .expect("tmp")
        .path()
        .join("gone/a.jsonl");
    let cases = [
        (
            vec!["--user", "vw-no-such-user"],
            "user \"vw-no-such-user\" does not exist".to_string(),
        ),
        (
            vec!["--alerts", missing_dir.to_str().unwrap()],
            format!(
                "cannot create the alerts file {}: its directory does not exist",
                missing_dir.display()
            ),
        ),
    ];
    let missing_state = missing_dir.with_file_name("inventory.db");
    let cases = cases.into_iter().chain([(
        vec!["--state", missing_state.to_str().unwrap()],
        "does not exist: create it for the sensor's user".to_string(),
    )]);
    for (args, said) in cases {
        let out = Command::new("timeout")
            .arg("20")
            .arg(env!("CARGO_BIN_EXE_vendorwatch"))
            .env("VENDORWATCH_STATE", "none")
            .args(["live", "-i", &near, "--metrics-addr", "off"])
            .args(&args)
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&said) && !stderr.contains("waits for it"),
            "{args:?}: {stderr}"
        );
    }
    for threads in ["1", "2"] {
        let tmp = tempfile::tempdir().expect("tmp");
        let alerts = tmp.path().join("a.jsonl");
        let sensor = Sensor::start(&[
            "-i",
            &near,
            "--capture-threads",
            threads,
            "--workers",
            "2",
            "--user",
            "nobody",
            "--metrics-addr",
            "off",
            "--alerts",
            alerts.to_str().unwrap(),
        ]);
        assert!(
            sensor.wait_for(&down_said, Duration::from_secs(10)),
            "{}",
            sensor.log()
        );
        let log = sensor.log();
        assert!(
            log.contains(&advice) && log.contains("waits for it to come up"),
            "{log}"
        );
        // It waits: still running, nothing opened yet.
        std::thread::sleep(Duration::from_millis(500));
        assert!(!sensor.log().contains("seccomp filter"), "{}", sensor.log());

        run_ok(&["ip", "link", "set", &near, "up"]);
        assert!(
            sensor.wait_for("seccomp filter on", Duration::from_secs(10)),
            "{}",
            sensor.log()
        );
        let log = sensor.log();
        assert!(
            log.contains(&format!("{near}: the interface is up; capturing")),
            "{log}"
        );
        if threads == "2" {
            assert!(log.contains("capture threads (libpcap rings)"), "{log}");
        }
        assert!(!log.contains("fanout sockets"), "{log}");
        // The far end learns the near end's address only now: give ARP its moment.
        std::thread::sleep(Duration::from_millis(300));
        lab.lookup("dnl-01.geo.kaspersky.com");
        assert!(
            wait_for_alert(&alerts, "dnl-01.geo.kaspersky.com"),
            "{threads} capture thread(s): {}",
            sensor.log()
        );
        let (code, stderr) = sensor.terminate();
        assert_eq!(code, Some(0), "{stderr}");
        run_ok(&["ip", "link", "set", &near, "down"]);
    }

    // Stopped while it waits, under -q: still said, and no failure (systemctl stop); a
    // SIGHUP meanwhile (a reload before the reloader is up) does not end it.
    let mut sensor = Sensor::start(&["-i", &near, "-q", "--metrics-addr", "off"]);
    assert!(
        sensor.wait_for(&down_said, Duration::from_secs(10)),
        "{}",
        sensor.log()
    );
    let _ = Command::new("kill")
        .args(["-HUP", &sensor.child.id().to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        sensor.child.try_wait().is_ok_and(|s| s.is_none()),
        "SIGHUP ended a sensor waiting for its interface: {}",
        sensor.log()
    );
    let (code, stderr) = sensor.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "stopped while waiting for {near} to come up; nothing was captured"
        )),
        "{stderr}"
    );
}

/// `-q` hides the notices (the seccomp line, who it runs as, the summary), never the
/// warnings: running as root, running without the seccomp filter.
#[test]
fn quiet_hides_notices_but_never_warnings() {
    if !root_or_skip("live capture") {
        return;
    }
    // Without --user, a root sensor stays root only where the default user does not exist.
    let default_user = Command::new("id")
        .arg("vendorwatch")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let quiet = ["-i", "lo", "-q", "--workers", "1", "--metrics-addr", "off"];
    let sensor = Sensor::start(&[&quiet[..], &["--no-seccomp"]].concat());
    assert!(
        sensor.wait_for(
            "warning: seccomp filter off (--no-seccomp)",
            Duration::from_secs(10)
        ),
        "{}",
        sensor.log()
    );
    let (code, stderr) = sensor.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    if !default_user {
        assert!(
            stderr.contains("warning: still running as root"),
            "{stderr}"
        );
    }
    assert!(!stderr.contains("vendorwatch summary"), "{stderr}");

    // With the filter and a user: only notices, so nothing at all.
    let sensor = Sensor::start(&[&quiet[..], &["--user", "nobody"]].concat());
    let pid = sensor.child.id();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if status.contains("Seccomp:\t2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, stderr) = sensor.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

/// Started the way systemd's unit starts it — an ordinary user holding CAP_NET_RAW and
/// CAP_NET_ADMIN as ambient capabilities — the sensor opens its interface, then clears
/// every capability and installs its filter, and still detects.
#[test]
fn an_unprivileged_sensor_with_ambient_capabilities_clears_them_after_start_up() {
    if !root_or_skip("live capture") {
        return;
    }
    let has_setpriv = Command::new("setpriv")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(has_setpriv, "setpriv (util-linux) is needed");
    let mut lab = Veth::new("cp", 104);
    lab.start_dnsmasq();
    let tmp = tempfile::tempdir().expect("tmp");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
    }
    let alerts = tmp.path().join("a.jsonl");
    let near = lab.outside.clone();
    let sensor = Sensor::start_under(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=+net_raw,+net_admin",
            "--ambient-caps=+net_raw,+net_admin",
            "--",
        ],
        &[
            "-i",
            &near,
            "--workers",
            "1",
            "--metrics-addr",
            "off",
            "--alerts",
            alerts.to_str().unwrap(),
        ],
    );
    assert!(
        sensor.wait_for("seccomp filter on", Duration::from_secs(10)),
        "{}",
        sensor.log()
    );
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", sensor.child.id())).unwrap_or_default();
    for set in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
        let line = status
            .lines()
            .find(|l| l.starts_with(set))
            .unwrap_or_default();
        assert!(line.ends_with("0000000000000000"), "{line}\n{status}");
    }
    assert_all_threads_filtered(sensor.child.id());
    lab.lookup("dnl-01.geo.kaspersky.com");
    assert!(
        wait_for_alert(&alerts, "dnl-01.geo.kaspersky.com"),
        "{}",
        sensor.log()
    );
    let (code, stderr) = sensor.terminate();
    assert_eq!(code, Some(0), "{stderr}");
}

/// A DNS query for `name` (A, recursion desired), as a stub resolver sends it.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// libpcap's `any` device is no network interface (nothing in /sys/class/net): it must be
/// captured, alone and as a fanout group, not taken for an interface that was removed.
#[test]
fn the_any_device_is_captured_and_never_taken_for_a_removed_interface() {
    if !root_or_skip("capturing on the any device") {
        return;
    }
    for threads in ["1", "2"] {
        let tmp = tempfile::tempdir().expect("tmp");
        let events = tmp.path().join("e.jsonl");
        let (mut sensor, collected, reader) = common::spawn_collecting(
            Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
                .env("VENDORWATCH_STATE", "none")
                .args([
                    "live",
                    "-i",
                    "any",
                    "--metrics-addr",
                    "off",
                    "--workers",
                    "2",
                ])
                .args(["--capture-threads", threads, "--user", "nobody", "--events"])
                .arg(&events),
        );
        let said = |what: &str| collected.lock().map(|s| s.contains(what)).unwrap_or(false);
        let started = Instant::now();
        while !said("seccomp filter on") && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(50));
        }
        // DNS queries on loopback (answered or not: only the questions are counted).
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
        let names: Vec<String> = (0..5)
            .map(|i| format!("any{threads}probe{i}.kaspersky.com"))
            .collect();
        for (i, name) in names.iter().enumerate() {
            let _ = socket.send_to(&dns_query(0x4100 + i as u16, name), "127.0.0.1:53");
        }
        // Long enough for several link checks (every 250 ms) and the ring's read timeout.
        std::thread::sleep(Duration::from_millis(1500));
        run_ok(&["kill", "-TERM", &sensor.id().to_string()]);
        let status = wait_for_exit(&mut sensor, Duration::from_secs(60));
        if let Some(r) = reader {
            let _ = r.join();
        }
        let stderr = collected.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{stderr}");
        assert!(!stderr.contains("removed"), "{stderr}");
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        for name in &names {
            let lines = text
                .lines()
                .filter(|l| {
                    l.contains(&format!("\"value\":\"{name}\"")) && l.contains("\"type\":\"query\"")
                })
                .count();
            assert_eq!(
                lines, 1,
                "{name} once with {threads} capture thread(s)\n{stderr}"
            );
        }
    }
}
