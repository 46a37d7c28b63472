//! Faults, with real parts: the alerts file on a small tmpfs the test mounts and fills (a real
//! ENOSPC from the kernel), rotation under many alerts, the fsync policy seen by strace, and the
//! inventory locked by another process (Python's sqlite3 holding `BEGIN EXCLUSIVE`, or a second
//! vendorwatch), read-only (a read-only bind mount of the file, a read-only tmpfs for the
//! directory) or locked in the middle of a run. Each test shows that nothing already detected
//! is lost and that the sensor says what happened.
//!
//! Expected hosts come from tshark reading the captures (the golden expectations in
//! `pcaps/expected/`, or tshark run on the capture the test builds), never from vendorwatch.
//! The captures with many hosts are built here from one real query in `pcaps/dns.pcap` (dig
//! asking unbound for dnl-01.geo.kaspersky.com), its source address rewritten per host.
//!
//! Mounting needs root (CI runs as root); those tests are skipped, loudly, otherwise. The tests
//! that stream a capture through stdin use `--workers 1`: the reader hands a worker a batch
//! every 256 packets, so each part the test writes is padded to 256 packets with a query for a
//! decoy name (notkaspersky.com, which must match no rule) to make it reach the worker while
//! the test waits.

mod common;

use common::{is_root, run_ok};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Safety net for waits on a child process: a hang fails the test instead of blocking CI.
/// Not a speed assertion.
const PATIENCE: Duration = Duration::from_secs(60);
/// Packets per batch handed to a worker (pipeline::BATCH_PACKETS).
const BATCH: usize = 256;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vendorwatch"));
    c.env("VENDORWATCH_STATE", "none");
    c
}

fn pcaps() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps")
}

fn need_root(test: &str) -> bool {
    let ok = is_root();
    if !ok {
        eprintln!("\n*** SKIPPED {test}: mounting a tmpfs needs root (CI runs as root) ***\n");
    }
    ok
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A tmpfs mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("mount point");
        let at = dir.path().to_str().expect("utf-8 path").to_string();
        run_ok(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            &at,
        ]);
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system until the kernel says ENOSPC, then gives `free` bytes back.
    fn fill(&self, free: u64) -> PathBuf {
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 4096];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(28), "filling: {e}");
                    break;
                }
            }
        }
        let len = f.metadata().expect("len").len();
        f.set_len(len.saturating_sub(free))
            .expect("give space back");
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

// ---------------------------------------------------------------------------------------
// Captures built from one real query

/// The pcap global header and the frames of a little-endian microsecond pcap.
fn read_pcap(path: &Path) -> (Vec<u8>, Vec<Vec<u8>>) {
    let data = std::fs::read(path).expect("capture");
    assert_eq!(data[..4], [0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let len = u32::from_le_bytes(data[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
        frames.push(data[at + 16..at + 16 + len].to_vec());
        at += 16 + len;
    }
    (data[..24].to_vec(), frames)
}

/// The frame tshark finds first with `filter` (1-based frame number → our index).
fn tshark_frame(path: &Path, filter: &str) -> usize {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
        .output()
        .expect("tshark (Debian package tshark)");
    let text = String::from_utf8_lossy(&out.stdout);
    let n: usize = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("tshark finds no frame for {filter}"));
    n - 1
}

/// An Ethernet/IPv4/UDP frame with a new source address (IPv4 checksum recomputed; the UDP
/// checksum set to 0, "none", which IPv4 allows).
fn with_source(frame: &[u8], src: Ipv4Addr) -> Vec<u8> {
    assert_eq!(frame[12..14], [0x08, 0x00], "IPv4 in Ethernet");
    let (mut ip, rest) = etherparse::Ipv4Header::from_slice(&frame[14..]).expect("IPv4 header");
    assert_eq!(ip.protocol, etherparse::IpNumber::UDP);
    ip.source = src.octets();
    ip.header_checksum = ip.calc_header_checksum();
    let mut out = frame[..14].to_vec();
    out.extend_from_slice(&ip.to_bytes());
    let mut udp = rest.to_vec();
    udp[6] = 0;
    udp[7] = 0;
    out.extend_from_slice(&udp);
    out
}

/// The two real frames every built capture is made of.
struct Parts {
    header: Vec<u8>,
    vendor_query: Vec<u8>,
    decoy_query: Vec<u8>,
}

impl Parts {
    fn load() -> Parts {
        let dns = pcaps().join("dns.pcap");
        let (header, frames) = read_pcap(&dns);
        let vendor = tshark_frame(
            &dns,
            "ip && udp && dns.flags.response == 0 && dns.qry.name == \"dnl-01.geo.kaspersky.com\"",
        );
        let decoy = tshark_frame(
            &dns,
            "ip && udp && dns.flags.response == 0 && dns.qry.name == \"notkaspersky.com\"",
        );
        Parts {
            header,
            vendor_query: frames[vendor].clone(),
            decoy_query: frames[decoy].clone(),
        }
    }

    /// pcap records: one vendor query from each host, padded with decoy queries to at least
    /// `pad_to` frames; times one millisecond apart from `start_ms`.
    fn records(&self, hosts: &[Ipv4Addr], pad_to: usize, start_ms: u64) -> Vec<u8> {
        let mut frames: Vec<Vec<u8>> = hosts
            .iter()
            .map(|h| with_source(&self.vendor_query, *h))
            .collect();
        while frames.len() < pad_to {
            frames.push(self.decoy_query.clone());
        }
        let mut out = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let ms = 1_795_773_600_000 + start_ms + i as u64;
            out.extend_from_slice(&((ms / 1000) as u32).to_le_bytes());
            out.extend_from_slice(&(((ms % 1000) * 1000) as u32).to_le_bytes());
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    fn capture(&self, path: &Path, hosts: &[Ipv4Addr]) {
        let mut data = self.header.clone();
        data.extend(self.records(hosts, 0, 0));
        std::fs::write(path, data).expect("write capture");
    }
}

/// `n` home-net hosts numbered from `first`.
fn hosts(first: usize, n: usize) -> Vec<Ipv4Addr> {
    (first..first + n)
        .map(|i| Ipv4Addr::new(10, 20, (i / 250) as u8, (i % 250 + 1) as u8))
        .collect()
}

/// The hosts tshark sees asking for the vendor name, in capture order.
fn tshark_vendor_askers(path: &Path) -> Vec<String> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args([
            "-Y",
            "dns.qry.name == \"dnl-01.geo.kaspersky.com\"",
            "-T",
            "fields",
            "-e",
            "ip.src",
        ])
        .output()
        .expect("tshark");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Running vendorwatch

fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}: {l:?}", path.display()))
        })
        .collect()
}

fn alert_hosts(alerts: &[Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| a["host"]["ip"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// The value of one series (`name{labels}` exactly as exposed), or `None`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A vendorwatch replay reading a capture the test writes to its stdin, part by part.
///
/// While the test waits, it keeps writing one decoy record at a time (`nudge`): the capture
/// reader (pcap-parser) reads a second time from the stream before it parses the first
/// packet, so a stream that has gone quiet is not read until more bytes come.
struct Streaming {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
    nudge: Vec<u8>,
    fed: bool,
}

impl Streaming {
    fn start(args: &[&std::ffi::OsStr], state: Option<&Path>) -> Streaming {
        let port = free_port();
        let mut cmd = bin();
        if let Some(s) = state {
            cmd.arg("replay").arg("--state").arg(s);
        } else {
            cmd.arg("replay");
        }
        let mut child = cmd
            .args(["--workers", "1", "-q", "--metrics-addr"])
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vendorwatch");
        let stdin = child.stdin.take();
        let mut s = Streaming {
            child,
            stdin,
            port,
            nudge: Parts::load().records(&[], 1, 0),
            fed: false,
        };
        s.wait_for("the metrics endpoint", |_| true);
        s
    }

    fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to vendorwatch");
        stdin.flush().expect("flush");
        self.fed = true;
    }

    /// Polls /metrics until `ok` holds, nudging the stream; panics after `PATIENCE`.
    fn wait_for(&mut self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < PATIENCE {
            if let Some(text) = scrape(self.port) {
                if ok(&text) {
                    return text;
                }
                last = text;
            }
            if let (true, Some(stdin)) = (self.fed, self.stdin.as_mut()) {
                let _ = stdin.write_all(&self.nudge).and_then(|_| stdin.flush());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let series: Vec<&str> = last
            .lines()
            .filter(|l| {
                l.starts_with("vendorwatch_output") || l.starts_with("vendorwatch_inventory")
            })
            .collect();
        panic!("waited {PATIENCE:?} for {what}; last scrape: {series:#?}");
    }

    fn finish(mut self) -> Output {
        drop(self.stdin.take());
        let start = Instant::now();
        while start.elapsed() < PATIENCE {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.child.wait_with_output().expect("output")
    }
}

const ALERTS_WRITTEN: &str = "vendorwatch_output_written_total{output=\"alerts\"}";
const ALERTS_BACKLOG: &str = "vendorwatch_output_backlog{output=\"alerts\"}";
const ALERTS_ERRORS: &str = "vendorwatch_output_errors_total{output=\"alerts\"}";
const SAVES_OK: &str = "vendorwatch_inventory_saves_total{result=\"success\"}";
const SAVES_FAILED: &str = "vendorwatch_inventory_saves_total{result=\"failure\"}";

// ---------------------------------------------------------------------------------------
// (a) The alerts file's disk fills up

/// (host, vendor, category) of every detection tshark's expectations name, over all captures.
/// The captures whose detections `pcaps/expected/` holds (pcaps/ has others, with
/// expectations of their own, whose hosts may share these addresses).
fn golden_captures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(pcaps().join("expected"))
        .expect("pcaps/expected")
        .filter_map(|e| {
            let path = e.expect("entry").path();
            let e: Value = serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
            Some(pcaps().join(e["capture"].as_str()?))
        })
        .collect();
    v.sort();
    v
}

fn expected_detections() -> BTreeSet<(String, String, String)> {
    let mut all = BTreeSet::new();
    for entry in std::fs::read_dir(pcaps().join("expected")).expect("pcaps/expected") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let e: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        for d in e["detections"].as_array().into_iter().flatten() {
            all.insert((
                d["host"].as_str().unwrap_or_default().to_string(),
                d["vendor"].as_str().unwrap_or_default().to_string(),
                d["category"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    assert!(all.len() >= 10, "expectations missing");
    all
}

#[test]
fn a_full_disk_under_the_alerts_file_is_reported_and_the_report_has_every_host() {
    if !need_root("a_full_disk_under_the_alerts_file_is_reported_and_the_report_has_every_host") {
        return;
    }
    let disk = Tmpfs::mount("64k");
    // One page left: a few alerts fit, then the kernel says ENOSPC, mid-line.
    disk.fill(4096);
    let elsewhere = tempfile::tempdir().expect("tmp");
    let alerts = disk.path().join("alerts.jsonl");
    let report = elsewhere.path().join("hosts.json");
    let out = bin()
        .args(["replay", "--workers", "1", "--alerts"])
        .arg(&alerts)
        .arg("--report")
        .arg(&report)
        .args(golden_captures())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");

    // Said at the time, and at the end with the numbers and where the detections are.
    assert!(
        stderr.contains(&format!(
            "cannot write to the alerts file {}",
            alerts.display()
        )) && stderr.contains("No space left on device"),
        "{stderr}"
    );
    let end = stderr
        .lines()
        .find(|l| l.contains("alert(s) could not be written to"))
        .unwrap_or_else(|| panic!("no end-of-run message: {stderr}"));
    assert!(
        end.contains(&format!("the report {}", report.display()))
            && end.contains("nothing detected is lost"),
        "{end}"
    );
    let numbers: Vec<u64> = end
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let (lost, total) = (numbers[0], numbers[1]);

    // The file holds whole lines only (the torn one was cut back), no duplicates, and with
    // the lines it could not take they add up to every alert raised.
    let written = json_lines(&alerts);
    assert!(!written.is_empty(), "one page should hold a few alerts");
    assert!(lost > 0);
    assert_eq!(written.len() as u64 + lost, total, "{end}");
    let summary_alerts = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("alerts"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.replace(',', "").parse::<u64>().ok());
    assert_eq!(summary_alerts, Some(total), "{stderr}");
    let expected = expected_detections();
    let mut seen = BTreeSet::new();
    for a in &written {
        let key = (
            a["host"]["ip"].as_str().unwrap_or_default().to_string(),
            a["vendor"].as_str().unwrap_or_default().to_string(),
            a["category"].as_str().unwrap_or_default().to_string(),
        );
        assert!(seen.insert(key.clone()), "written twice: {key:?}");
        assert!(expected.contains(&key), "not expected by tshark: {key:?}");
    }

    // The report, on another disk, has every detection tshark expects.
    let rep: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let mut reported = BTreeSet::new();
    for h in rep["hosts"].as_array().into_iter().flatten() {
        for d in h["detections"].as_array().into_iter().flatten() {
            reported.insert((
                h["ip"].as_str().unwrap_or_default().to_string(),
                d["vendor"].as_str().unwrap_or_default().to_string(),
                d["category"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    let missing: Vec<_> = expected.difference(&reported).collect();
    assert!(missing.is_empty(), "report misses {missing:?}");
}

#[test]
fn space_freed_mid_run_lands_the_backlog_in_order_with_no_duplicate() {
    if !need_root("space_freed_mid_run_lands_the_backlog_in_order_with_no_duplicate") {
        return;
    }
    let parts = Parts::load();
    let disk = Tmpfs::mount("256k");
    let filler = disk.fill(0);
    let alerts = disk.path().join("alerts.jsonl");
    let (first, second) = (hosts(0, 40), hosts(100, 40));
    let mut run = Streaming::start(&["--alerts".as_ref(), alerts.as_os_str()], None);
    let mut head = parts.header.clone();
    head.extend(parts.records(&first, BATCH, 0));
    run.write(&head);
    // Every alert of the first part is held: nothing could be written.
    let text = run.wait_for("40 alerts held", |t| {
        metric(t, ALERTS_BACKLOG) == Some(40.0) && metric(t, ALERTS_WRITTEN) == Some(0.0)
    });
    assert!(
        metric(&text, ALERTS_ERRORS).is_some_and(|e| e >= 1.0),
        "{text}"
    );
    assert_eq!(std::fs::metadata(&alerts).expect("alerts file").len(), 0);

    // Room again: the backlog lands without another alert to prompt it.
    std::fs::remove_file(&filler).expect("free the disk");
    run.wait_for("the backlog written", |t| {
        metric(t, ALERTS_WRITTEN) == Some(40.0) && metric(t, ALERTS_BACKLOG) == Some(0.0)
    });
    run.write(&parts.records(&second, BATCH, 10_000));
    let out = run.finish();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "nothing was lost: {stderr}");

    // In capture order, each once, as tshark reads the capture.
    let built = tempfile::tempdir().expect("tmp");
    let cap = built.path().join("both.pcap");
    let mut all_hosts = first.clone();
    all_hosts.extend(&second);
    parts.capture(&cap, &all_hosts);
    let want = tshark_vendor_askers(&cap);
    assert_eq!(want.len(), 80);
    assert_eq!(alert_hosts(&json_lines(&alerts)), want);
    assert!(
        stderr.contains("No space left on device")
            && stderr.contains("is writable again: 40 held alert(s) written, in order")
            && stderr
                .contains("the 40 alert(s) held meanwhile were written later, in order, none lost"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// (b) Rotation

#[test]
fn rotation_keeps_every_alert_once_in_whole_lines_and_at_most_k_plus_one_files() {
    let parts = Parts::load();
    let tmp = tempfile::tempdir().expect("tmp");
    let cap = tmp.path().join("many.pcap");
    parts.capture(&cap, &hosts(0, 300));
    let want = tshark_vendor_askers(&cap);
    assert_eq!(want.len(), 300);
    // --alerts-max-mb 0.02, in bytes (rounded up).
    const MAX: u64 = 20_972;

    for keep in [50usize, 2] {
        let dir = tmp.path().join(format!("keep{keep}"));
        std::fs::create_dir(&dir).expect("mkdir");
        let path = dir.join("alerts.jsonl");
        let out = bin()
            .args(["replay", "-q", "--workers", "1", "--alerts-fsync", "never"])
            .args([
                "--alerts-max-mb",
                "0.02",
                "--alerts-keep",
                &keep.to_string(),
            ])
            .arg("--alerts")
            .arg(&path)
            .arg(&cap)
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let files = std::fs::read_dir(&dir).expect("dir").count();
        assert!(files <= keep + 1, "{files} files for keep {keep}");
        // Oldest first: PATH.n … PATH.1, PATH.
        let mut ordered: Vec<PathBuf> = (1..=keep)
            .rev()
            .map(|i| dir.join(format!("alerts.jsonl.{i}")))
            .filter(|p| p.exists())
            .collect();
        ordered.push(path.clone());
        assert_eq!(ordered.len(), files, "only PATH and PATH.1 … PATH.{keep}");
        let mut got = Vec::new();
        for (i, f) in ordered.iter().enumerate() {
            let text = std::fs::read_to_string(f).expect("read");
            assert!(text.ends_with('\n'), "{} ends mid-line", f.display());
            let size = text.len() as u64;
            assert!(size <= MAX, "{} is {size} bytes", f.display());
            let lines = json_lines(f);
            // A rotated file was cut just before the line that would not fit.
            if i + 1 < ordered.len() {
                let next = std::fs::read_to_string(&ordered[i + 1]).expect("read");
                let next_line = next.lines().next().expect("a line").len() as u64 + 1;
                assert!(size + next_line > MAX, "{} rotated early", f.display());
            }
            got.extend(alert_hosts(&lines));
        }
        if keep == 50 {
            assert!(files > 3, "the test should rotate several times");
            assert_eq!(got, want, "every alert exactly once, in order");
        } else {
            assert_eq!(files, 3, "PATH, PATH.1 and PATH.2");
            assert_eq!(
                got,
                want[want.len() - got.len()..],
                "the newest alerts, in order"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// (c) fsync policy

/// fdatasync/fsync calls on the alerts file's descriptor, and whether one came after the
/// last write to it, from an strace log.
fn syncs_in_trace(trace: &str, file: &Path) -> (usize, bool) {
    let name = format!("\"{}\"", file.display());
    let fd = trace
        .lines()
        .filter(|l| l.contains("openat(") && l.contains(&name))
        .find_map(|l| l.rsplit("= ").next()?.trim().parse::<i64>().ok())
        .unwrap_or_else(|| panic!("the alerts file is never opened in the trace"));
    let (mut syncs, mut synced_after_write) = (0, false);
    for l in trace.lines() {
        // `PID fdatasync(3) = 0`, or `PID fdatasync(3 <unfinished ...>` when another thread
        // interleaves (its `resumed` line is not counted again).
        let call = l.split_whitespace().nth(1).unwrap_or_default();
        let call = call.trim_end_matches(')');
        if call == format!("fdatasync({fd}") || call == format!("fsync({fd}") {
            syncs += 1;
            synced_after_write = true;
        } else if call.starts_with(&format!("write({fd},")) {
            synced_after_write = false;
        }
    }
    (syncs, synced_after_write)
}

#[test]
fn each_fsync_policy_writes_complete_files_and_strace_sees_its_syncs() {
    let strace = is_root() && have("strace");
    if !strace {
        eprintln!(
            "\n*** each_fsync_policy: strace (Debian package strace) or root missing: only \
             checking that each policy writes complete files; the syncs themselves are NOT \
             observed ***\n"
        );
    }
    let parts = Parts::load();
    for policy in ["always", "interval", "never"] {
        let tmp = tempfile::tempdir().expect("tmp");
        let alerts = tmp.path().join("alerts.jsonl");
        let trace = tmp.path().join("trace");
        let port = free_port();
        let mut cmd = if strace {
            let mut c = Command::new("strace");
            c.args([
                "-f",
                "-qq",
                "-e",
                "trace=openat,write,fdatasync,fsync",
                "-o",
            ])
            .arg(&trace)
            .arg(env!("CARGO_BIN_EXE_vendorwatch"));
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        };
        let child = cmd
            .env("VENDORWATCH_STATE", "none")
            .args(["replay", "--workers", "1", "-q", "--alerts-fsync", policy])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}"), "--alerts"])
            .arg(&alerts)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut run = Streaming {
            stdin: None,
            child,
            port,
            nudge: parts.records(&[], 1, 0),
            fed: false,
        };
        run.stdin = run.child.stdin.take();
        run.wait_for("the metrics endpoint", |_| true);
        // Three alerts, each written before the next is raised: three separate writes.
        let three = hosts(0, 3);
        for (i, h) in three.iter().enumerate() {
            let mut bytes = if i == 0 {
                parts.header.clone()
            } else {
                Vec::new()
            };
            bytes.extend(parts.records(&[*h], BATCH, i as u64 * 1000));
            run.write(&bytes);
            let n = (i + 1) as f64;
            run.wait_for("the alert written", |t| {
                metric(t, ALERTS_WRITTEN) == Some(n)
            });
        }
        let out = run.finish();
        assert!(
            out.status.success(),
            "{policy}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = alert_hosts(&json_lines(&alerts));
        let want: Vec<String> = three.iter().map(|h| h.to_string()).collect();
        assert_eq!(got, want, "{policy}");
        if !strace {
            continue;
        }
        let (syncs, last_synced) =
            syncs_in_trace(&std::fs::read_to_string(&trace).expect("trace"), &alerts);
        match policy {
            // After every write: three writes apart, three syncs at least.
            "always" => assert!(
                syncs >= 3 && last_synced,
                "always: {syncs} syncs in\n{}",
                std::fs::read_to_string(&trace).unwrap_or_default()
            ),
            // At most once a second, and once at the end.
            "interval" => assert!(syncs >= 1 && last_synced, "interval: {syncs} syncs"),
            _ => assert_eq!(syncs, 0, "never: {syncs} syncs"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// (d) The inventory

/// Python's sqlite3 holding `BEGIN EXCLUSIVE` on a database until dropped.
struct Locker {
    child: Child,
}

impl Locker {
    fn lock(db: &Path) -> Locker {
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import sqlite3, sys\n\
                 c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
                 c.execute('BEGIN EXCLUSIVE')\n\
                 print('locked', flush=True)\n\
                 sys.stdin.read()\n",
            ])
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = [0u8; 7];
        child
            .stdout
            .as_mut()
            .expect("stdout")
            .read_exact(&mut line)
            .expect("python says locked");
        assert_eq!(&line, b"locked\n");
        Locker { child }
    }

    fn release(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Locker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replay_with_state(state: &Path, extra: &[&std::ffi::OsStr], capture: &Path) -> Output {
    bin()
        .arg("replay")
        .arg("--state")
        .arg(state)
        .args(extra)
        .arg(capture)
        .output()
        .expect("runs")
}

fn says_what_to_do(stderr: &str) {
    assert!(
        stderr.contains("--state PATH") && stderr.contains("--state none"),
        "{stderr}"
    );
}

#[test]
fn an_inventory_locked_at_start_or_used_by_another_vendorwatch_is_refused_clearly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("inv.db");
    let dns = pcaps().join("dns.pcap");
    let first = replay_with_state(&db, &["-q".as_ref()], &dns);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );

    let lock = Locker::lock(&db);
    let out = replay_with_state(&db, &["-q".as_ref()], &dns);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("inventory {}", db.display()))
            && stderr.contains("the database is locked")
            && stderr.contains("another vendorwatch"),
        "{stderr}"
    );
    says_what_to_do(&stderr);
    lock.release();

    // A sensor running on it: a second one is refused at once.
    let mut running = Streaming::start(&[], Some(&db));
    let out = replay_with_state(&db, &["-q".as_ref()], &dns);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("another vendorwatch is using it"),
        "{stderr}"
    );
    says_what_to_do(&stderr);
    running.write(&std::fs::read(&dns).expect("dns.pcap"));
    let out = running.finish();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_read_only_inventory_file_or_directory_is_refused_clearly() {
    if !need_root("a_read_only_inventory_file_or_directory_is_refused_clearly") {
        return;
    }
    let dns = pcaps().join("dns.pcap");
    // The file: a read-only bind mount of it (root ignores permission bits, a mount does not).
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("inv.db");
    assert!(replay_with_state(&db, &["-q".as_ref()], &dns)
        .status
        .success());
    let at = db.to_str().expect("utf-8").to_string();
    run_ok(&["mount", "--bind", &at, &at]);
    run_ok(&["mount", "-o", "remount,bind,ro", &at]);
    let out = replay_with_state(&db, &["-q".as_ref()], &dns);
    let _ = Command::new("umount").arg(&at).status();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "inventory {}: the file is not writable",
            db.display()
        )) && stderr.contains("Read-only file system"),
        "{stderr}"
    );
    says_what_to_do(&stderr);

    // The directory: a tmpfs remounted read-only, database inside.
    let disk = Tmpfs::mount("1m");
    let db = disk.path().join("inv.db");
    assert!(replay_with_state(&db, &["-q".as_ref()], &dns)
        .status
        .success());
    run_ok(&[
        "mount",
        "-o",
        "remount,ro",
        disk.path().to_str().expect("utf-8"),
    ]);
    let out = replay_with_state(&db, &["-q".as_ref()], &dns);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the directory {} is not writable",
            disk.path().display()
        )) && stderr.contains("-wal, -shm"),
        "{stderr}"
    );
    says_what_to_do(&stderr);
}

fn inventory_hosts(db: &Path) -> BTreeSet<String> {
    let conn = rusqlite::Connection::open(db).expect("open inventory");
    let mut stmt = conn
        .prepare("SELECT ip FROM detections WHERE vendor = 'kaspersky'")
        .expect("query");
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).expect("rows");
    rows.map(|r| r.expect("row")).collect()
}

fn report_hosts(path: &Path) -> BTreeSet<String> {
    let rep: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("report")).expect("json");
    rep["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| h["ip"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn an_inventory_locked_mid_run_is_retried_counted_and_saved_once_released() {
    let parts = Parts::load();
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("inv.db");
    let alerts = tmp.path().join("alerts.jsonl");
    let (first, second) = (hosts(0, 20), hosts(50, 20));
    let mut run = Streaming::start(&["--alerts".as_ref(), alerts.as_os_str()], Some(&db));
    // Locked after the start, with hosts to save.
    let lock = Locker::lock(&db);
    let mut head = parts.header.clone();
    head.extend(parts.records(&first, BATCH, 0));
    run.write(&head);
    run.wait_for("a failed save", |t| {
        metric(t, SAVES_FAILED).is_some_and(|f| f >= 1.0) && metric(t, ALERTS_WRITTEN) == Some(20.0)
    });
    lock.release();
    run.wait_for("a save after the release", |t| {
        metric(t, SAVES_OK).is_some_and(|f| f >= 1.0)
    });
    run.write(&parts.records(&second, BATCH, 10_000));
    let out = run.finish();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "inventory {}: cannot save: the database is locked",
            db.display()
        )) && stderr.contains("kept in memory and saved again")
            && stderr.contains("saved again (")
            && stderr.contains("failed during the run and were retried; everything is saved"),
        "{stderr}"
    );
    let cap = tmp.path().join("both.pcap");
    let mut all = first.clone();
    all.extend(&second);
    parts.capture(&cap, &all);
    let want: BTreeSet<String> = tshark_vendor_askers(&cap).into_iter().collect();
    assert_eq!(want.len(), 40);
    assert_eq!(inventory_hosts(&db), want);
    let alerted: BTreeSet<String> = alert_hosts(&json_lines(&alerts)).into_iter().collect();
    assert_eq!(alerted, want);
}

#[test]
fn an_inventory_locked_until_the_end_fails_the_run_with_the_report_and_alerts_complete() {
    let parts = Parts::load();
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("inv.db");
    let alerts = tmp.path().join("alerts.jsonl");
    let report = tmp.path().join("hosts.json");
    let some = hosts(0, 25);
    let mut run = Streaming::start(
        &[
            "--alerts".as_ref(),
            alerts.as_os_str(),
            "--report".as_ref(),
            report.as_os_str(),
        ],
        Some(&db),
    );
    let lock = Locker::lock(&db);
    let mut bytes = parts.header.clone();
    bytes.extend(parts.records(&some, BATCH, 0));
    run.write(&bytes);
    let out = run.finish();
    lock.release();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the inventory could not be saved at the end")
            && stderr.contains("the database is locked")
            && stderr.contains(&format!("the report {}", report.display())),
        "{stderr}"
    );
    let cap = tmp.path().join("some.pcap");
    parts.capture(&cap, &some);
    let want: BTreeSet<String> = tshark_vendor_askers(&cap).into_iter().collect();
    assert_eq!(want.len(), 25);
    assert_eq!(report_hosts(&report), want);
    let alerted: BTreeSet<String> = alert_hosts(&json_lines(&alerts)).into_iter().collect();
    assert_eq!(alerted, want);
    assert!(inventory_hosts(&db).is_empty(), "nothing could be saved");
}
