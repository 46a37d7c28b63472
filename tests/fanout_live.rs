//! `vendorwatch live` capturing through an `AF_PACKET` fanout group: a veth pair made by the
//! test, its capture end in a network namespace of its own (no addresses, IPv6 off, so
//! nothing there sends), the sensor started in that namespace on that end with
//! `--capture-threads 4 --workers 2`, and `tcpreplay` sending `pcaps/dns.pcap` and
//! `pcaps/tls.pcap` into the other end. Checked against what tshark derived from those
//! captures (`pcaps/expected/*.json`) and what the interface counted (`rx_packets`), never
//! against the sensor itself: every expected name and detection, no drops anywhere, and
//! the four sockets' received counts (one summary line each, `IFACE#i`) adding up to what
//! the interface delivered. The same run with `--capture-threads 1` reads the same through
//! libpcap, and a `--bpf` naming `vlan` keeps exactly the tagged frames. And the group
//! rides out its link going down and up (said and counted once, not once per socket; the
//! same sockets capture again), and ends when its interface is deleted (a group is not
//! reopened: the sensor exits 1 for its supervisor, with everything before reported).
//! By default an interface gets as many capture threads as workers; `capture_threads` in
//! the `[live]` table and `--capture-threads` (which wins) say otherwise.
//! Needs root (CI runs as root); skipped, loudly, otherwise.
#![cfg(target_os = "linux")]

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{root_or_skip, run_ok, VethLab, VethSpec};

/// How long anything in the lab may take on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(90);

/// Four capture threads (a fanout group of four sockets) and two workers.
const FOUR_SOCKETS: [&str; 4] = ["--capture-threads", "4", "--workers", "2"];

/// The captures sent, in this order.
const CAPTURES: [&str; 2] = ["dns.pcap", "tls.pcap"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A network namespace holding the capture end (`inside`) of a veth pair; the sending
/// end (`outside`) stays here.
type Lab = VethLab;

/// This file's lab for the test tagged `tag`, its ends quiet (no addresses, IPv6 off), the
/// namespace's loopback up: the metrics endpoint listens there.
fn new_lab(tag: char) -> Lab {
    VethLab::new(VethSpec {
        loopback: true,
        ..VethSpec::quiet(["vwfl", "vlc", "vls"], &tag.to_string())
    })
}

/// The lab for the test tagged `tag`, and a directory for the sensor's output; none, said
/// loudly, when not root (`what` needs root).
fn lab_and_dir(tag: char, what: &str) -> Option<(Lab, tempfile::TempDir)> {
    root_or_skip(what).then(|| (new_lab(tag), tempfile::tempdir().expect("tmp")))
}

impl VethLab {
    /// Sends `captures` (names in `pcaps/`) into the lab.
    fn replay_some(&self, captures: &[&str]) {
        let files: Vec<String> = captures
            .iter()
            .map(|c| repo().join("pcaps").join(c).display().to_string())
            .collect();
        self.replay(&files.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

/// The sensor, started in the lab's namespace on its capture end, its stderr collected.
struct Sensor {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Sensor {
    fn start(lab: &Lab, dir: &Path, args: &[&str]) -> Sensor {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &lab.ns])
            .arg(env!("CARGO_BIN_EXE_vendorwatch"))
            .env("VENDORWATCH_STATE", "none")
            .args(["live", "-i", &lab.inside, "--user", "nobody"])
            // No metrics unless asked for.
            .args(
                ["--metrics-addr", "off"]
                    .iter()
                    .filter(|_| !args.contains(&"--metrics-addr")),
            )
            .arg("--alerts")
            .arg(dir.join("alerts.jsonl"))
            .arg("--events")
            .arg(dir.join("events.jsonl"))
            .arg("--report")
            .arg(dir.join("report.json"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts vendorwatch live");
        let stderr = Arc::new(Mutex::new(String::new()));
        let reader = child
            .stderr
            .take()
            .map(|pipe| common::collect_output(pipe, Arc::clone(&stderr)));
        let mut sensor = Sensor {
            child,
            stderr,
            reader,
        };
        // The capture is open (its sockets queue what comes) before the sandbox goes on.
        let started = Instant::now();
        while !sensor.said("seccomp filter on") {
            assert!(
                started.elapsed() < PATIENCE,
                "vendorwatch did not start capturing: {}",
                sensor.text()
            );
            assert!(
                sensor.child.try_wait().ok().flatten().is_none(),
                "vendorwatch exited: {}",
                sensor.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sensor
    }

    fn text(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn said(&self, what: &str) -> bool {
        self.stderr
            .lock()
            .map(|s| s.contains(what))
            .unwrap_or(false)
    }

    /// Waits until stderr says `what`.
    fn wait_for(&self, what: &str) -> bool {
        let started = Instant::now();
        while !self.said(what) {
            if started.elapsed() > PATIENCE {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// Waits for the sensor to exit by itself.
    fn exited(&mut self) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < PATIENCE {
            if let Ok(Some(st)) = self.child.try_wait() {
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGTERM, then its exit status and everything it wrote on stderr.
    fn stop(mut self) -> (Option<i32>, String) {
        run_ok(&["kill", "-TERM", &self.child.id().to_string()]);
        let started = Instant::now();
        let status = loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                break st.code();
            }
            if started.elapsed() > PATIENCE {
                let _ = self.child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status, self.text())
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

type Triples = BTreeSet<(String, String, String)>;

/// What tshark derived from the captures sent: names (host, kind, value) and detections
/// (host, vendor, category).
fn expected() -> (Triples, Triples) {
    let detections = CAPTURES.iter().flat_map(|c| detections_of(c)).collect();
    (names_of(&CAPTURES), detections)
}

/// What tshark derived from one capture: its detections.
fn detections_of(capture: &str) -> Triples {
    let path = repo()
        .join("pcaps/expected")
        .join(format!("{capture}.json"));
    let exp: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("expectations")).expect("json");
    exp["detections"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| (s(&d["host"]), s(&d["vendor"]), s(&d["category"])))
        .collect()
}

/// Waits until every one of `want` is alerted.
fn wait_for_alerts(dir: &Path, want: &Triples) -> bool {
    let started = Instant::now();
    while started.elapsed() < PATIENCE {
        let got: Triples = alerted(dir).into_iter().collect();
        if want.is_subset(&got) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The sensor's metrics, read inside the lab's namespace.
fn metrics(lab: &Lab) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns, "curl", "-s", "--max-time", "5"])
        .arg("http://127.0.0.1:9717/metrics")
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls the metrics until `series` reads `value`; returns the last metrics.
fn metric_until(lab: &Lab, series: &str, value: f64) -> (Option<f64>, String) {
    let started = Instant::now();
    loop {
        let text = metrics(lab);
        let got = text
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok());
        if got == Some(value) || started.elapsed() > PATIENCE {
            return (got, text);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn alerted(dir: &Path) -> Vec<(String, String, String)> {
    lines(&dir.join("alerts.jsonl"))
        .iter()
        .map(|a| (s(&a["host"]["ip"]), s(&a["vendor"]), s(&a["category"])))
        .collect()
}

/// The summary's capture lines: source name, received, dropped by the kernel, by the
/// interface.
fn capture_lines(stderr: &str) -> Vec<(String, u64, u64, u64)> {
    let number = |t: &str| -> u64 {
        t.chars()
            .filter(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or(u64::MAX)
    };
    stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("capture   "))
        .filter_map(|l| {
            let (name, rest) = l
                .split_once(": fanout socket received ")
                .or_else(|| l.split_once(": libpcap received "))?;
            let (received, rest) = rest.split_once(", dropped by the kernel ")?;
            let (kernel, iface) = rest.split_once(", by the interface ")?;
            Some((
                name.to_string(),
                number(received),
                number(kernel),
                number(iface),
            ))
        })
        .collect()
}

/// Sends the captures through a sensor with `threads` capture threads and checks what it
/// found (skipped, loudly, when not root: `what` needs root).
fn send_and_check(tag: char, threads: &str, what: &str) {
    let Some((lab, dir)) = lab_and_dir(tag, what) else {
        return;
    };
    let (want_names, want_detections) = expected();
    let before = lab.rx_packets();
    let sensor = Sensor::start(
        &lab,
        dir.path(),
        &["--capture-threads", threads, "--workers", "2"],
    );
    lab.replay_some(&CAPTURES);
    // Until every expected detection is alerted (alerts are written as they happen).
    let started = Instant::now();
    while !want_detections
        .iter()
        .all(|d| alerted(dir.path()).contains(d))
        && started.elapsed() < PATIENCE
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let delivered = lab.rx_packets() - before;
    let (status, stderr) = sensor.stop();
    assert_eq!(status, Some(0), "{stderr}");

    let alerts = alerted(dir.path());
    let alert_set: BTreeSet<_> = alerts.iter().cloned().collect();
    assert_eq!(alert_set.len(), alerts.len(), "duplicate alerts {alerts:?}");
    let missing: Vec<_> = want_detections.difference(&alert_set).collect();
    assert!(
        missing.is_empty(),
        "missing detections {missing:?}\n{stderr}"
    );
    let got_names = common::name_triples(&lines(&dir.path().join("events.jsonl")));
    assert_eq!(
        got_names,
        want_names,
        "names: missing {:?}, extra {:?}\n{stderr}",
        want_names.difference(&got_names).collect::<Vec<_>>(),
        got_names.difference(&want_names).collect::<Vec<_>>()
    );

    let sent: u64 = CAPTURES.iter().map(|c| frames_in(c)).sum();
    assert_eq!(delivered, sent, "the interface received every frame sent");
    let captures = capture_lines(&stderr);
    assert!(!captures.is_empty(), "{stderr}");
    for (name, _, kernel, iface) in &captures {
        assert_eq!((*kernel, *iface), (0, 0), "{name} dropped\n{stderr}");
    }
    let received: u64 = captures.iter().map(|c| c.1).sum();
    assert_eq!(
        received, delivered,
        "the sources' received counts add up to what the interface delivered\n{stderr}"
    );
    assert!(
        stderr.contains("queue     0 packets dropped"),
        "no queue drops\n{stderr}"
    );
    let names: Vec<&str> = captures.iter().map(|c| c.0.as_str()).collect();
    if threads == "1" {
        assert_eq!(names, [lab.inside.as_str()], "{stderr}");
    } else {
        let n: usize = threads.parse().expect("a count");
        let want: Vec<String> = (0..n).map(|i| format!("{}#{i}", lab.inside)).collect();
        assert_eq!(names, want, "one source per socket\n{stderr}");
        // Each member says who counted it: libpcap for a group of libpcap rings (the
        // default), the kernel for the plain sockets of the fallback.
        let counter = if stderr.contains("capture threads (libpcap rings) in fanout group") {
            "libpcap"
        } else {
            "fanout socket"
        };
        assert!(
            stderr.contains(&format!("{}#0: {counter} received", lab.inside)),
            "the counts are said to be {counter}'s\n{stderr}"
        );
        // The kernel spread the traffic: more than one socket read some of it.
        assert!(
            captures.iter().filter(|c| c.1 > 0).count() > 1,
            "{captures:?}"
        );
    }
}

#[test]
fn four_fanout_threads_find_every_detection_without_drops_and_count_every_frame() {
    send_and_check('a', "4", "fanout capture");
}

#[test]
fn one_capture_thread_is_libpcap_and_finds_the_same() {
    send_and_check('b', "1", "live capture");
}

/// What tshark derived from `captures`: the names (host, kind, value).
fn names_of(captures: &[&str]) -> Triples {
    let mut names = BTreeSet::new();
    for c in captures {
        let path = repo().join("pcaps/expected").join(format!("{c}.json"));
        let exp: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("expectations"))
                .expect("json");
        for n in exp["names"].as_array().into_iter().flatten() {
            names.insert((s(&n["host"]), s(&n["kind"]), s(&n["value"])));
        }
    }
    names
}

fn frames_in(capture: &str) -> u64 {
    let path = repo().join("pcaps").join(capture);
    let mut cap = pcap::Capture::from_file(&path).expect("capture");
    std::iter::from_fn(|| cap.next_packet().ok().map(|_| ())).count() as u64
}

/// libpcap compiles `vlan` for a live Linux socket (the kernel has taken the outer tag out
/// of the frame; the filter reads it from the socket's metadata), so a filter naming it
/// works in a fanout group of libpcap handles: the tagged captures pass, whole, and the
/// untagged one is filtered out by every handle.
#[test]
fn a_filter_naming_vlan_keeps_the_tagged_frames_on_every_fanout_handle() {
    let Some((lab, dir)) = lab_and_dir('c', "fanout capture") else {
        return;
    };
    const TAGGED: [&str; 2] = ["dns-vlan.pcap", "tls-qinq.pcap"];
    let args = [&FOUR_SOCKETS[..], &["--bpf", "vlan"]].concat();
    let sensor = Sensor::start(&lab, dir.path(), &args);
    lab.replay_some(&["dns.pcap", TAGGED[0], TAGGED[1]]);
    let want = names_of(&TAGGED);
    let started = Instant::now();
    while common::name_triples(&lines(&dir.path().join("events.jsonl"))) != want
        && started.elapsed() < PATIENCE
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, stderr) = sensor.stop();
    assert_eq!(status, Some(0), "{stderr}");
    assert!(
        stderr.contains("(libpcap rings) in fanout group"),
        "{stderr}"
    );
    let got = common::name_triples(&lines(&dir.path().join("events.jsonl")));
    assert_eq!(
        got,
        want,
        "names: missing {:?}, extra {:?}\n{stderr}",
        want.difference(&got).collect::<Vec<_>>(),
        got.difference(&want).collect::<Vec<_>>()
    );
    // The kernel counts what a socket's filter kept: the tagged frames, every one, once.
    let captures = capture_lines(&stderr);
    assert_eq!(captures.len(), 4, "{stderr}");
    let received: u64 = captures.iter().map(|c| c.1).sum();
    let tagged: u64 = TAGGED.iter().map(|c| frames_in(c)).sum();
    assert_eq!(received, tagged, "{stderr}");
}

#[test]
fn more_capture_threads_than_a_group_may_have_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .env("VENDORWATCH_STATE", "none")
        .args(["live", "-i", "lo", "--metrics-addr", "off"])
        .args(["--capture-threads", "65"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--capture-threads must be at most 64"),
        "{stderr}"
    );
}

#[test]
fn a_fanout_capture_rides_out_its_link_and_ends_when_its_interface_is_deleted() {
    let Some((lab, dir)) = lab_and_dir('d', "fanout capture") else {
        return;
    };
    let args = [&FOUR_SOCKETS[..], &["--metrics-addr", "127.0.0.1:9717"]].concat();
    let mut sensor = Sensor::start(&lab, dir.path(), &args);
    lab.replay_some(&["dns.pcap"]);
    assert!(
        wait_for_alerts(dir.path(), &detections_of("dns.pcap")),
        "{}",
        sensor.text()
    );

    // Down: the four sockets see it; it is said and counted once.
    let cap = lab.inside.as_str();
    lab.set_inside_link(false);
    assert!(
        sensor.wait_for("the interface went down"),
        "{}",
        sensor.text()
    );
    let up = format!("vendorwatch_capture_up{{interface=\"{cap}\"}}");
    let downs = format!(
        "vendorwatch_capture_interruptions_total{{interface=\"{cap}\",reason=\"link_down\"}}"
    );
    let (got, text) = metric_until(&lab, &up, 0.0);
    assert_eq!(got, Some(0.0), "{text}");
    let (got, text) = metric_until(&lab, &downs, 1.0);
    assert_eq!(got, Some(1.0), "{text}");
    // Back: the same sockets capture again.
    lab.set_inside_link(true);
    assert!(
        sensor.wait_for("the interface is up again"),
        "{}",
        sensor.text()
    );
    let (got, text) = metric_until(&lab, &up, 1.0);
    assert_eq!(got, Some(1.0), "{text}");
    lab.replay_some(&["tls.pcap"]);
    assert!(
        wait_for_alerts(dir.path(), &detections_of("tls.pcap")),
        "{}",
        sensor.text()
    );
    let text = sensor.text();
    assert_eq!(text.matches("the interface went down").count(), 1, "{text}");
    assert_eq!(
        text.matches("the interface is up again").count(),
        1,
        "{text}"
    );

    // Deleted: every socket's capture ends (a group is not reopened), the sensor exits 1 so
    // that a supervisor restarts it, and everything captured before is reported.
    lab.in_ns(&["ip", "link", "del", cap]);
    let status = sensor.exited();
    let stderr = sensor.text();
    assert_eq!(status, Some(1), "{stderr}");
    assert_eq!(
        stderr.matches("its fanout capture ends").count(),
        1,
        "{stderr}"
    );
    let alerts: Triples = alerted(dir.path()).into_iter().collect();
    let (_, want) = expected();
    assert!(want.is_subset(&alerts), "{alerts:?}\n{stderr}");
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("report.json")).expect("report written"),
    )
    .expect("json");
    assert!(
        report["hosts"].as_array().is_some_and(|h| !h.is_empty()),
        "{report}"
    );
}

#[test]
fn by_default_an_interface_gets_as_many_capture_threads_as_workers_and_the_file_can_say_one() {
    let Some((lab, dir)) = lab_and_dir('e', "live capture") else {
        return;
    };
    let sources = |args: &[&str]| -> Vec<String> {
        let (status, stderr) = Sensor::start(&lab, dir.path(), args).stop();
        assert_eq!(status, Some(0), "{stderr}");
        capture_lines(&stderr).into_iter().map(|c| c.0).collect()
    };
    let cap = &lab.inside;
    assert_eq!(
        sources(&["--workers", "2"]),
        [format!("{cap}#0"), format!("{cap}#1")]
    );
    let config = dir.path().join("vendorwatch.toml");
    std::fs::write(&config, "[live]\ncapture_threads = 1\n").expect("config");
    let config = config.to_str().expect("utf-8");
    assert_eq!(
        sources(&["--workers", "2", "--config", config]),
        std::slice::from_ref(cap)
    );
    // The command line wins over the file.
    assert_eq!(
        sources(&[
            "--workers",
            "2",
            "--config",
            config,
            "--capture-threads",
            "3"
        ]),
        [format!("{cap}#0"), format!("{cap}#1"), format!("{cap}#2")]
    );
}

/// Without the right to capture, fanout is not tried three ways with three warnings: the one
/// message is libpcap's, with what to do.
#[test]
fn without_permission_one_message_says_what_to_do() {
    let out = common::as_unprivileged(env!("CARGO_BIN_EXE_vendorwatch"))
        .env("VENDORWATCH_STATE", "none")
        .current_dir(std::env::temp_dir())
        .args(["live", "-i", "lo", "--metrics-addr", "off"])
        .args(["--capture-threads", "2", "--workers", "2"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.matches("no permission to capture on \"lo\"").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("CAP_NET_RAW"), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}
