//! Hostile and mistaken operator inputs (issue 13 items 7-10, issue 16 items 9-13): what
//! `vendorwatch` is given to read besides traffic — rule packs, configuration files, host
//! reports, inventories, output paths, capture files and directories, FIFOs — and the count
//! options. Each test runs the real binary on inputs the test builds: captures written here
//! byte by byte (pcap and pcapng blocks laid out as the pcapng specification and tshark read
//! them, packets built with etherparse), FIFOs made with mkfifo, devices such as `/dev/zero`
//! and `/dev/full`. Expected packets and names come from the bytes the test wrote (and from
//! tshark when it is installed), never from vendorwatch's own output.
//!
//! Every wait on a child has a generous deadline (`PATIENCE`) that fails the test instead of
//! hanging CI; none asserts a speed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A hang fails the test instead of blocking CI. Not a speed assertion.
const PATIENCE: Duration = Duration::from_secs(60);

fn bin() -> Command {
    common::bin()
}

/// Waits for `child` up to `PATIENCE`; a child still running then is killed and the test fails.
fn finish(mut child: Child, what: &str) -> Output {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match child.try_wait().expect("wait") {
            Some(_) => return child.wait_with_output().expect("output"),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "{what}: still running after {PATIENCE:?} (hung); stderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Runs `cmd` to its end (with the deadline), stdin closed.
fn run(mut cmd: Command, what: &str) -> (Option<i32>, String, String) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vendorwatch");
    let out = finish(child, what);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(ok.success());
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

// ---------------------------------------------------------------------------------------
// Captures, written byte by byte

/// A DNS query for `name` from home-net host `src` to 10.0.0.53, as an Ethernet frame.
fn query_frame(src: [u8; 4], name: &str) -> Vec<u8> {
    common::udp_v4(
        src,
        [10, 0, 0, 53],
        40000,
        53,
        &common::dns_query(0x1234, name),
    )
}

/// A classic pcap (little-endian, microseconds, Ethernet) of `frames`, one second apart.
fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    pcap_with_link(1, frames)
}

fn pcap_with_link(link: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&link.to_le_bytes());
    for (i, frame) in frames.iter().enumerate() {
        f.extend_from_slice(&(1_700_000_000 + i as u32).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        f.extend_from_slice(frame);
    }
    f
}

/// One pcapng block (little-endian): type, total length, body padded to 4, total length.
fn block(block_type: u32, body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    while body.len() % 4 != 0 {
        body.push(0);
    }
    let len = (12 + body.len()) as u32;
    let mut b = block_type.to_le_bytes().to_vec();
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(&body);
    b.extend_from_slice(&len.to_le_bytes());
    b
}

/// Section header (version 1.0, unknown section length) and one Ethernet interface.
fn pcapng_head() -> Vec<u8> {
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    let mut idb = 1u16.to_le_bytes().to_vec();
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&65535u32.to_le_bytes());
    let mut f = block(0x0A0D_0D0A, &shb);
    f.extend(block(1, &idb));
    f
}

/// Microseconds since the epoch of the test packets.
const TS_MICROS: u64 = 1_700_000_000_000_000;

fn enhanced_packet(frame: &[u8]) -> Vec<u8> {
    let mut b = 0u32.to_le_bytes().to_vec();
    b.extend_from_slice(&((TS_MICROS >> 32) as u32).to_le_bytes());
    b.extend_from_slice(&(TS_MICROS as u32).to_le_bytes());
    b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    b.extend_from_slice(frame);
    block(6, &b)
}

/// An Obsolete Packet Block (type 2): interface id and drop count as 16-bit fields, then
/// the enhanced packet's timestamp, lengths and data.
fn obsolete_packet(frame: &[u8]) -> Vec<u8> {
    let mut b = 0u16.to_le_bytes().to_vec();
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&((TS_MICROS >> 32) as u32).to_le_bytes());
    b.extend_from_slice(&(TS_MICROS as u32).to_le_bytes());
    b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    b.extend_from_slice(frame);
    block(2, &b)
}

/// The query names tshark reads from `capture`, when tshark is installed.
fn tshark_names(capture: &Path) -> Option<Vec<String>> {
    if !have("tshark") {
        eprintln!(
            "tshark not installed: the crafted capture is checked against its own bytes only"
        );
        return None;
    }
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(capture)
        .args(["-T", "fields", "-e", "dns.qry.name"])
        .output()
        .expect("tshark");
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

/// The DNS names in an events file, in order.
fn event_names(events: &Path) -> Vec<String> {
    std::fs::read_to_string(events)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["kind"] == "dns")
        .filter_map(|e| e["value"].as_str().map(str::to_string))
        .collect()
}

fn replay_events(dir: &Path, args: &[&Path]) -> (Option<i32>, String, Vec<String>) {
    let events = dir.join("events.jsonl");
    let mut cmd = bin();
    cmd.args(["replay", "--workers", "1", "--events"])
        .arg(&events);
    cmd.args(args);
    let (code, _, stderr) = run(cmd, "replay");
    (code, stderr, event_names(&events))
}

// ---------------------------------------------------------------------------------------
// Issue 13 item 8: pcapng blocks that tshark reads

#[test]
fn a_pcapng_block_of_a_local_type_is_skipped_by_its_length_not_the_end_of_the_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let cap = dir.path().join("local.pcapng");
    let mut f = pcapng_head();
    // 12 bytes, no body: a valid block of a local type (0x80000000 and up are for local use).
    f.extend(block(0x8000_0001, &[]));
    f.extend(enhanced_packet(&query_frame(
        [10, 0, 0, 5],
        "dnl-01.geo.kaspersky.com",
    )));
    // The same block last in the file, and one with a body between two packets.
    f.extend(block(0x8000_0002, b"local data"));
    f.extend(enhanced_packet(&query_frame(
        [10, 0, 0, 6],
        "dnl-02.geo.kaspersky.com",
    )));
    f.extend(block(0x8000_0001, &[]));
    std::fs::write(&cap, &f).expect("write");
    let expected = vec![
        "dnl-01.geo.kaspersky.com".to_string(),
        "dnl-02.geo.kaspersky.com".to_string(),
    ];
    if let Some(names) = tshark_names(&cap) {
        assert_eq!(names, expected, "tshark reads both packets");
    }
    let (code, stderr, names) = replay_events(dir.path(), &[&cap]);
    assert_eq!(names, expected, "{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("truncated"), "{stderr}");
}

#[test]
fn an_obsolete_packet_block_is_read_as_tshark_reads_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let cap = dir.path().join("opb.pcapng");
    let mut f = pcapng_head();
    f.extend(obsolete_packet(&query_frame(
        [10, 0, 0, 7],
        "dnl-03.geo.kaspersky.com",
    )));
    std::fs::write(&cap, &f).expect("write");
    let expected = vec!["dnl-03.geo.kaspersky.com".to_string()];
    if let Some(names) = tshark_names(&cap) {
        assert_eq!(names, expected, "tshark reads the obsolete packet block");
    }
    let (code, stderr, names) = replay_events(dir.path(), &[&cap]);
    assert_eq!(names, expected, "{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("1 packets"), "{stderr}");
}

#[test]
fn a_corrupt_capture_length_is_said_to_be_corrupt_not_a_truncated_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let cap = dir.path().join("corrupt.pcap");
    let frames: Vec<Vec<u8>> = ["dnl-01.geo.kaspersky.com", "dnl-02.geo.kaspersky.com"]
        .iter()
        .enumerate()
        .map(|(i, name)| query_frame([10, 0, 0, 5 + i as u8], name))
        .chain(std::iter::once(query_frame([10, 0, 0, 9], "never.example")))
        .collect();
    let mut f = pcap(&frames);
    // The third record's capture length says 300,000 bytes; the file goes on for its 60-odd.
    let third = 24 + 2 * 16 + frames[0].len() + frames[1].len();
    f[third + 8..third + 12].copy_from_slice(&300_000u32.to_le_bytes());
    std::fs::write(&cap, &f).expect("write");
    let expected = vec![
        "dnl-01.geo.kaspersky.com".to_string(),
        "dnl-02.geo.kaspersky.com".to_string(),
    ];
    // tcpdump (libpcap) reads the packets before the record and refuses its length; tshark
    // prints nothing of a file it finds damaged. Not `have("tcpdump")`: `tcpdump -v` alone
    // starts a capture.
    if let Ok(out) = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(&cap)
        .output()
    {
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("invalid packet capture length 300000"),
            "tcpdump calls it an invalid length: {said}"
        );
        // "10.0.0.5.40000 > 10.0.0.53.53: 4660+ A? dnl-01.geo.kaspersky.com. (42)"
        let read: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                l.split_once("A? ")?
                    .1
                    .split_once(". (")
                    .map(|(name, _)| name.to_string())
            })
            .collect();
        assert_eq!(read, expected, "tcpdump reads the two packets before it");
    }
    let (code, stderr, names) = replay_events(dir.path(), &[&cap]);
    assert_eq!(names, expected, "{stderr}");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("byte offset {third}"))
            && stderr.contains("corrupt record: capture length 300000"),
        "{stderr}"
    );
    assert!(!stderr.contains("truncated"), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// Issue 13 item 10 and issue 16 item 13: how captures are named and refused

#[test]
fn link_type_0xffffffff_is_printed_unsigned() {
    let dir = tempfile::tempdir().expect("tmp");
    let cap = dir.path().join("link.pcap");
    std::fs::write(&cap, pcap_with_link(0xffff_ffff, &[])).expect("write");
    let mut cmd = bin();
    cmd.arg("replay").arg(&cap);
    let (code, _, stderr) = run(cmd, "replay");
    assert!(
        stderr.contains("unsupported link type 4294967295"),
        "{stderr}"
    );
    assert!(!stderr.contains("-1"), "{stderr}");
    assert_eq!(code, Some(2), "{stderr}");
}

#[test]
fn a_text_file_named_pcap_is_said_to_be_text_not_sent_to_editcap() {
    let dir = tempfile::tempdir().expect("tmp");
    let cap = dir.path().join("notes.pcap");
    std::fs::write(&cap, "10.0.0.5 looked up dnl-01.geo.kaspersky.com\n").expect("write");
    let mut cmd = bin();
    cmd.arg("replay").arg(&cap);
    let (code, _, stderr) = run(cmd, "replay");
    assert!(stderr.contains("a text file, not a capture"), "{stderr}");
    assert!(!stderr.contains("editcap"), "{stderr}");
    assert_eq!(code, Some(2), "{stderr}");
}

#[test]
fn file_names_with_terminal_escapes_are_escaped_on_stderr() {
    let dir = tempfile::tempdir().expect("tmp");
    // ESC ] 0 ; … BEL sets a terminal's title; ESC [ 2 J clears the screen.
    let hostile = dir.path().join("a\u{1b}]0;owned\u{7}\u{1b}[2J.pcap");
    std::fs::write(&hostile, "not a capture\n").expect("write");
    let missing = dir.path().join("b\u{1b}[2J.pcap");
    let mut cmd = bin();
    cmd.arg("replay").arg(&hostile).arg(&missing);
    let (_, _, stderr) = run(cmd, "replay");
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\u{7}'),
        "{stderr:?}"
    );
    assert!(stderr.contains("a\\u{1b}]0;owned\\u{7}"), "{stderr}");
    assert!(stderr.contains("b\\u{1b}[2J.pcap"), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// Issue 13 item 7: operator inputs are bounded and never block a signal

#[test]
fn devices_and_fifos_are_refused_as_rules_config_and_host_reports() {
    let dir = tempfile::tempdir().expect("tmp");
    let fifo_dir = dir.path().join("packs");
    std::fs::create_dir(&fifo_dir).expect("mkdir");
    let fifo = fifo_dir.join("evil.toml");
    mkfifo(&fifo);
    let html = dir.path().join("r.html");
    let cases: Vec<(Vec<&std::ffi::OsStr>, &str)> = vec![
        (
            vec!["rules".as_ref(), "check".as_ref(), "/dev/zero".as_ref()],
            "character device",
        ),
        (
            vec!["rules".as_ref(), "check".as_ref(), fifo.as_os_str()],
            "named pipe (FIFO)",
        ),
        (
            vec!["rules".as_ref(), "check".as_ref(), fifo_dir.as_os_str()],
            "named pipe (FIFO)",
        ),
        (
            vec!["config".as_ref(), "check".as_ref(), "/dev/zero".as_ref()],
            "character device",
        ),
        (
            vec![
                "replay".as_ref(),
                "--config".as_ref(),
                "/dev/zero".as_ref(),
                "-".as_ref(),
            ],
            "character device",
        ),
        (
            vec![
                "replay".as_ref(),
                "--rules".as_ref(),
                "/dev/zero".as_ref(),
                "-".as_ref(),
            ],
            "character device",
        ),
        (
            vec![
                "report".as_ref(),
                "--html".as_ref(),
                html.as_os_str(),
                "--from".as_ref(),
                "/dev/zero".as_ref(),
            ],
            "character device",
        ),
    ];
    for (args, said) in cases {
        let mut cmd = bin();
        cmd.args(&args);
        let (code, _, stderr) = run(cmd, &format!("{args:?}"));
        assert!(stderr.contains(said), "{args:?}: {stderr}");
        assert!(matches!(code, Some(1 | 2)), "{args:?}: {code:?} {stderr}");
    }
}

#[test]
fn files_past_the_size_cap_are_refused_with_the_cap() {
    let dir = tempfile::tempdir().expect("tmp");
    // Sparse: 17 MiB of nothing, past the 16 MiB a configuration file may have.
    let big = dir.path().join("big.toml");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(17 << 20))
        .expect("sparse file");
    let mut cmd = bin();
    cmd.args(["config", "check"]).arg(&big);
    let (code, _, stderr) = run(cmd, "config check");
    assert!(stderr.contains("larger than 16 MiB"), "{stderr}");
    assert_eq!(code, Some(1), "{stderr}");
}

#[test]
fn a_rules_file_with_invalid_utf8_is_reported_at_its_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let pack = dir.path().join("bad.toml");
    std::fs::write(&pack, b"[pack]\nvendor = \"x\"\nname = \"caf\xe9\"\n").expect("write");
    let mut cmd = bin();
    cmd.args(["rules", "check"]).arg(&pack);
    let (code, _, stderr) = run(cmd, "rules check");
    assert!(
        stderr.contains(&format!("{}:3: is not UTF-8 text", pack.display())),
        "{stderr}"
    );
    assert_eq!(code, Some(1), "{stderr}");
}

#[test]
fn replay_of_a_fifo_ends_on_sigterm_without_a_writer_and_reads_a_late_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let fifo = dir.path().join("capture.pcap");
    mkfifo(&fifo);
    let child = bin()
        .arg("replay")
        .arg(&fifo)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Give it time to reach the FIFO (a fixed wait is fine here: whether it got there or not,
    // SIGTERM must end it).
    std::thread::sleep(Duration::from_millis(500));
    sigterm(&child);
    let out = finish(child, "replay FIFO after SIGTERM");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted by a signal"), "{stderr}");
    // Ended by its own hand (nothing was read: 2), not killed by the signal.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // Opened without waiting, but not taken for an empty stream: a writer that comes later
    // is read.
    fifo_with_a_late_writer();
}

/// A FIFO whose writer comes after the sensor opened it is read like a pipe.
fn fifo_with_a_late_writer() {
    let dir = tempfile::tempdir().expect("tmp");
    let fifo = dir.path().join("capture.pcap");
    mkfifo(&fifo);
    let events = dir.path().join("events.jsonl");
    let child = bin()
        .args(["replay", "--workers", "1", "--events"])
        .arg(&events)
        .arg(&fifo)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(300));
    // Opening for writing waits for the reader: the sensor has the FIFO open by then.
    std::fs::write(
        &fifo,
        pcap(&[query_frame([10, 0, 0, 8], "dnl-04.geo.kaspersky.com")]),
    )
    .expect("write the FIFO");
    let out = finish(child, "replay FIFO");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        event_names(&events),
        ["dnl-04.geo.kaspersky.com"],
        "{stderr}"
    );
}

#[test]
fn replay_of_stdin_that_never_writes_ends_on_sigterm() {
    let child = bin()
        .args(["replay", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(500));
    sigterm(&child);
    // stdin stays open (the child's handle is held until `finish` drops it after the wait).
    let out = finish(child, "replay - after SIGTERM");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted by a signal"), "{stderr}");
}

#[test]
fn every_count_option_has_an_upper_bound_with_a_clear_error() {
    let cap = common::pcap_path("dns.pcap");
    for (flag, value, said) in [
        ("--workers", "100000", "--workers must be at most 1024"),
        (
            "--max-flows",
            "1000000000000",
            "--max-flows must be at most",
        ),
        (
            "--max-hosts",
            "1000000000000",
            "--max-hosts must be at most",
        ),
        ("--pdns-max", "1000000000000", "--pdns-max must be at most"),
        (
            "--reassembly-mb",
            "100000000",
            "--reassembly-mb must be at most",
        ),
        (
            "--alerts-keep",
            "100000000",
            "--alerts-keep must be at most 1000",
        ),
        (
            "--alerts-backlog",
            "1000000000000",
            "--alerts-backlog must be at most",
        ),
        (
            "--pdns-ttl-cap",
            "100000000000",
            "--pdns-ttl-cap must be at most",
        ),
        (
            "--realert-hours",
            "100000000000",
            "--realert-hours must be at most",
        ),
    ] {
        let mut cmd = bin();
        cmd.args(["replay", "--alerts-max-mb", "0.0001", flag, value])
            .arg(&cap);
        let (code, _, stderr) = run(cmd, flag);
        assert!(stderr.contains(said), "{flag}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flag}: {stderr}");
        assert_eq!(code, Some(2), "{flag}: {stderr}");
    }
    let mut cmd = bin();
    cmd.args([
        "replay",
        "--syslog",
        "udp://127.0.0.1:9",
        "--syslog-queue",
        "1000000000000",
    ])
    .arg(&cap);
    let (code, _, stderr) = run(cmd, "--syslog-queue");
    assert!(
        stderr.contains("--syslog-queue must be at most"),
        "{stderr}"
    );
    assert_eq!(code, Some(2), "{stderr}");
    for (flag, value) in [
        ("--buffer-mb", "99999"),
        ("--status-every", "1000000000000"),
    ] {
        let mut cmd = bin();
        cmd.args(["live", "-i", "lo", "--metrics-addr", "off", flag, value]);
        let (code, _, stderr) = run(cmd, flag);
        assert!(stderr.contains(&format!("{flag} must")), "{flag}: {stderr}");
        assert_eq!(code, Some(2), "{flag}: {stderr}");
    }
}

// ---------------------------------------------------------------------------------------
// Issue 13 item 10: the inventory's path and the outputs

#[test]
fn outputs_to_dev_null_and_a_fifo_are_written_without_sync_errors() {
    // fdatasync fails with EINVAL on a device or FIFO: a replay with every output sent to
    // /dev/null, or its report read from a pipe, exited 1 saying the report could not be
    // written and the alerts might not be on disk.
    let mut cmd = bin();
    cmd.args(["replay", "--quiet", "--state", "none"])
        .args([
            "--alerts",
            "/dev/null",
            "--events",
            "/dev/null",
            "--report",
            "/dev/null",
        ])
        .arg(common::pcap_path("dns.pcap"));
    let (code, _, stderr) = run(cmd, "replay to /dev/null");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");

    let dir = tempfile::tempdir().expect("tmp");
    let fifo = dir.path().join("report.json");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(&fifo).expect("read the FIFO"))
    };
    let mut cmd = bin();
    cmd.args([
        "replay",
        "--quiet",
        "--state",
        "none",
        "--alerts",
        "/dev/null",
    ])
    .arg("--report")
    .arg(&fifo)
    .arg(common::pcap_path("dns.pcap"));
    let (code, _, stderr) = run(cmd, "replay with its report into a FIFO");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&reader.join().expect("reader")).expect("the report is JSON");
    assert!(
        report["hosts"].as_array().is_some_and(|h| !h.is_empty()),
        "{report}"
    );
}

#[test]
fn an_output_that_is_an_input_or_another_output_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("tmp");
    let capture = dir.path().join("a.pcap");
    std::fs::copy(common::pcap_path("dns.pcap"), &capture).expect("copy");
    let original = std::fs::read(&capture).expect("read");
    // `--alerts *.pcap` with the alerts file's name forgotten: the first capture became the
    // alerts file, with exit 0.
    let mut cmd = bin();
    cmd.args(["replay", "--quiet", "--state", "none", "--alerts"])
        .arg(&capture)
        .arg(common::pcap_path("dns.pcap"));
    let (code, _, stderr) = run(cmd, "replay --alerts CAPTURE INPUT");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("which holds a packet capture"), "{stderr}");
    // An output that is an input, by another name.
    std::fs::write(dir.path().join("empty.pcap"), b"").expect("write");
    let mut cmd = bin();
    cmd.args(["replay", "--quiet", "--state", "none", "--events"])
        .arg(dir.path().join(".").join("empty.pcap"))
        .arg(dir.path().join("empty.pcap"));
    let (code, _, stderr) = run(cmd, "replay --events INPUT INPUT");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--events names the input"), "{stderr}");
    let mut cmd = bin();
    cmd.args(["replay", "--quiet", "--state", "none", "--report"])
        .arg(dir.path().join(".").join("a.pcap"))
        .arg(&capture);
    let (code, _, stderr) = run(cmd, "replay --report CAPTURE CAPTURE");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("which holds a packet capture"), "{stderr}");
    assert_eq!(
        std::fs::read(&capture).expect("read"),
        original,
        "the capture is untouched"
    );

    // Two outputs in one file interleaved and lost lines, with exit 0.
    let shared = dir.path().join("out.jsonl");
    let mut cmd = bin();
    cmd.args(["replay", "--quiet", "--state", "none", "--alerts"])
        .arg(&shared)
        .arg("--events")
        .arg(&shared)
        .arg(common::pcap_path("dns.pcap"));
    let (code, _, stderr) = run(cmd, "replay --alerts X --events X");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--alerts and --events name the same file"),
        "{stderr}"
    );
    assert!(!shared.exists(), "nothing is written");

    // Devices may be shared: every output to /dev/null is fine (see the test above).
}

#[test]
fn outputs_to_dev_stdout_append_to_what_the_shell_opened() {
    // `--report /dev/stdout >> log` opened the log through /proc/self/fd/1 with O_TRUNC and
    // cut what it held; `-` did not. Each output, and `--report -`, keeps the log's lines.
    let dir = tempfile::tempdir().expect("tmp");
    for flag in ["--report", "--events", "--alerts"] {
        for path in ["/dev/stdout", "-"] {
            let log = dir.path().join("log.txt");
            std::fs::write(&log, "old line\n").expect("write");
            let appended = std::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .expect("open");
            let mut cmd = bin();
            cmd.current_dir(dir.path())
                .args(["replay", "--quiet", "--state", "none", flag, path])
                .arg(common::pcap_path("dns.pcap"))
                .stdin(Stdio::null())
                .stdout(Stdio::from(appended))
                .stderr(Stdio::piped());
            let out = finish(cmd.spawn().expect("spawn"), "replay to stdout");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{flag} {path}: {stderr}");
            let text = std::fs::read_to_string(&log).expect("read");
            let rest = text
                .strip_prefix("old line\n")
                .unwrap_or_else(|| panic!("{flag} {path} cut the log: {text:.200}"));
            let parsed = if flag == "--report" {
                serde_json::from_str::<serde_json::Value>(rest).is_ok()
            } else {
                rest.lines()
                    .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            };
            assert!(parsed && !rest.is_empty(), "{flag} {path}: {rest:.200}");
            assert!(
                !dir.path().join("-").exists(),
                "{flag} {path} made a file named -"
            );
        }
    }
}

#[test]
fn hosts_and_report_refuse_an_empty_file_as_the_inventory_and_leave_it_empty() {
    // An empty file was filled with an empty inventory and read as a fleet with no hosts:
    // "no host matches" and an empty compliance report, exit 0.
    let dir = tempfile::tempdir().expect("tmp");
    let empty = dir.path().join("inventory.db");
    std::fs::write(&empty, b"").expect("write");
    let html = dir.path().join("r.html");
    let commands: [Vec<&std::ffi::OsStr>; 2] = [
        vec!["hosts".as_ref(), "--state".as_ref(), empty.as_os_str()],
        vec![
            "report".as_ref(),
            "--html".as_ref(),
            html.as_os_str(),
            "--state".as_ref(),
            empty.as_os_str(),
        ],
    ];
    for args in commands {
        let mut cmd = bin();
        cmd.args(&args);
        let (code, _, stderr) = run(cmd, "hosts/report on an empty file");
        assert_ne!(code, Some(0), "{args:?}: {stderr}");
        assert!(
            stderr.contains("holds no vendorwatch inventory"),
            "{args:?}: {stderr}"
        );
        assert_eq!(
            std::fs::metadata(&empty).expect("stat").len(),
            0,
            "{args:?}"
        );
    }
    assert!(
        !html.exists(),
        "no report of an inventory that is not there"
    );
}

#[test]
fn a_gzip_compressed_capture_on_stdin_is_read_as_the_file_is() {
    // `gzip -c x.pcap | vendorwatch replay -` was refused as "not a pcap or pcapng file",
    // though gzip files given by name are read and the help says stdin takes them too.
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tmp");
    let capture = common::pcap_path("dns.pcap");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&std::fs::read(&capture).expect("read"))
        .expect("gzip");
    let compressed = gz.finish().expect("gzip");
    let events = dir.path().join("stdin.jsonl");
    let mut cmd = bin();
    cmd.args([
        "replay",
        "--quiet",
        "--state",
        "none",
        "--workers",
        "1",
        "--events",
    ])
    .arg(&events)
    .arg("-")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&compressed));
    let out = finish(child, "replay - (gzip)");
    writer.join().expect("writer").expect("write stdin");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let from_stdin = event_names(&events);
    let (code, stderr, from_file) = replay_events(dir.path(), &[&capture]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!from_stdin.is_empty());
    assert_eq!(from_stdin, from_file);
    if let Some(tshark) = tshark_names(&capture) {
        let set = |v: &[String]| v.iter().cloned().collect::<std::collections::BTreeSet<_>>();
        assert_eq!(set(&from_stdin), set(&tshark));
    }
}

#[test]
fn a_read_only_output_file_is_said_to_be_the_files_permissions_not_the_directorys() {
    use std::os::unix::fs::PermissionsExt;
    // The advice named the directory ("check the directory exists and is writable") though
    // the directory was writable and the file was not.
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let capture = dir.path().join("dns.pcap");
    std::fs::copy(common::pcap_path("dns.pcap"), &capture).expect("copy");
    std::fs::set_permissions(&capture, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    for flag in ["--report", "--events", "--alerts"] {
        let out_path = dir.path().join(format!("out{flag}.json"));
        std::fs::write(&out_path, b"kept\n").expect("write");
        std::fs::set_permissions(&out_path, std::fs::Permissions::from_mode(0o444)).expect("chmod");
        // Root may write anywhere: run as `nobody` then, as an analyst's account would.
        let mut cmd = common::as_unprivileged(env!("CARGO_BIN_EXE_vendorwatch"));
        cmd.args(["replay", "--quiet", "--state", "none", flag])
            .arg(&out_path)
            .arg(&capture);
        let (code, _, stderr) = run(cmd, "replay into a read-only file");
        assert_eq!(code, Some(2), "{flag}: {stderr}");
        assert!(stderr.contains("check its permissions"), "{flag}: {stderr}");
        assert_eq!(std::fs::read(&out_path).expect("read"), b"kept\n", "{flag}");
    }
}

#[test]
fn rotating_alerts_into_a_device_is_refused() {
    // Rotation renames the path away and creates a file there: as root, /dev/null itself.
    let mut cmd = bin();
    cmd.args([
        "replay",
        "--quiet",
        "--state",
        "none",
        "--alerts",
        "/dev/null",
    ])
    .args(["--alerts-max-mb", "1"])
    .arg(common::pcap_path("dns.pcap"));
    let (code, _, stderr) = run(cmd, "replay --alerts /dev/null --alerts-max-mb 1");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("is not a regular file"), "{stderr}");
    let meta = std::fs::metadata("/dev/null").expect("/dev/null");
    assert!(!meta.is_file(), "/dev/null is still a device");
}

#[test]
fn a_state_path_in_a_missing_directory_is_refused_not_created() {
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("nonexistent").join("dir");
    let mut cmd = bin();
    cmd.arg("replay")
        .arg("--state")
        .arg(missing.join("x.db"))
        .arg(common::pcap_path("dns.pcap"));
    let (code, _, stderr) = run(cmd, "replay --state");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(stderr.contains("mkdir -p"), "{stderr}");
    assert!(
        !dir.path().join("nonexistent").exists(),
        "no directory is created"
    );
    assert_eq!(code, Some(2), "{stderr}");
}

#[test]
fn a_state_path_that_is_a_device_is_refused_and_nothing_lands_in_dev() {
    // /dev/null-journal and -wal are what SQLite would leave; one left by someone else
    // would hide the check, so the test looks only for what this run created.
    let before: Vec<bool> = ["/dev/null-journal", "/dev/null-wal", "/dev/null-shm"]
        .iter()
        .map(|p| Path::new(p).exists())
        .collect();
    let mut cmd = bin();
    cmd.args(["replay", "--state", "/dev/null"])
        .arg(common::pcap_path("dns.pcap"));
    let (code, _, stderr) = run(cmd, "replay --state /dev/null");
    assert!(
        stderr.contains("character device, not a regular file"),
        "{stderr}"
    );
    assert_eq!(code, Some(2), "{stderr}");
    for (p, existed) in ["/dev/null-journal", "/dev/null-wal", "/dev/null-shm"]
        .iter()
        .zip(before)
    {
        if !existed {
            assert!(!Path::new(p).exists(), "{p} was created");
        }
    }
}

#[test]
fn an_events_output_that_fails_is_named() {
    if !Path::new("/dev/full").exists() {
        eprintln!("no /dev/full: skipped");
        return;
    }
    let mut cmd = bin();
    cmd.args(["replay", "--events", "/dev/full"])
        .arg(common::pcap_path("dns.pcap"));
    let (code, _, stderr) = run(cmd, "replay --events /dev/full");
    assert!(
        stderr.contains("the events file /dev/full could not be written"),
        "{stderr}"
    );
    assert_eq!(code, Some(1), "{stderr}");
}

#[test]
fn a_closed_stdout_for_alerts_stops_at_once_says_so_once_and_exits_1() {
    let mut child = bin()
        .args(["replay", "--workers", "1", "--alerts", "-"])
        .arg(common::pcap_path("dns.pcap"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // The reader of the pipe goes away before anything is written.
    drop(child.stdout.take());
    let out = finish(child, "replay --alerts - into a closed pipe");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("stdout was closed by its reader").count(),
        2,
        "once when it happens, once in the final accounting: {stderr}"
    );
    assert!(!stderr.contains("retried"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// Issue 13 item 9 and issue 16 item 9: the inventory's exports and filters

/// A DHCPREQUEST from `ciaddr` with host name option 12 = `hostname` (RFC 2131/2132).
fn dhcp_request(ciaddr: [u8; 4], mac: [u8; 6], hostname: &str) -> Vec<u8> {
    let mut m = vec![1, 1, 6, 0];
    m.extend_from_slice(&0x3903_f326u32.to_be_bytes());
    m.extend_from_slice(&[0; 4]);
    m.extend_from_slice(&ciaddr);
    m.extend_from_slice(&[0; 12]);
    m.extend_from_slice(&mac);
    m.extend_from_slice(&[0; 10 + 64 + 128]);
    m.extend_from_slice(&[99, 130, 83, 99]);
    m.extend_from_slice(&[53, 1, 3]);
    m.push(12);
    m.push(hostname.len() as u8);
    m.extend_from_slice(hostname.as_bytes());
    m.push(255);
    common::udp_v4(ciaddr, [10, 0, 0, 1], 68, 67, &m)
}

fn inventory_with(dir: &Path, frames: &[Vec<u8>]) -> PathBuf {
    let cap = dir.join("inv.pcap");
    std::fs::write(&cap, pcap(frames)).expect("write");
    let db = dir.join("inv.db");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vendorwatch"));
    cmd.args(["replay", "-q", "--state"]).arg(&db).arg(&cap);
    let (code, _, stderr) = run(cmd, "replay into an inventory");
    assert_eq!(code, Some(0), "{stderr}");
    db
}

#[test]
fn csv_cells_that_a_spreadsheet_would_run_are_neutralised() {
    let dir = tempfile::tempdir().expect("tmp");
    let formula = "=HYPERLINK(\"http://x.example/\",\"open\")";
    let db = inventory_with(
        dir.path(),
        &[
            dhcp_request([10, 0, 0, 9], [2, 0, 0, 0, 0, 9], formula),
            query_frame([10, 0, 0, 9], "dnl-01.geo.kaspersky.com"),
        ],
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vendorwatch"));
    cmd.args(["hosts", "--format", "csv", "--state"]).arg(&db);
    let (code, stdout, stderr) = run(cmd, "hosts --format csv");
    assert_eq!(code, Some(0), "{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("10.0.0.9,"))
        .unwrap_or_else(|| panic!("no row for 10.0.0.9: {stdout}"));
    // The last cell (host names are kept in lower case), quoted, with a leading ' so that
    // no spreadsheet evaluates it.
    assert!(
        row.ends_with("\"'=hyperlink(\"\"http://x.example/\"\",\"\"open\"\")\""),
        "{row}"
    );
    // No cell starts with a formula character.
    for cell in row.split(',') {
        assert!(!cell.starts_with(['=', '+', '-', '@']), "{row}");
    }
}

#[test]
fn hosts_rejects_unknown_vendors_and_categories() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = inventory_with(
        dir.path(),
        &[query_frame([10, 0, 0, 10], "dnl-01.geo.kaspersky.com")],
    );
    for (args, said) in [
        (["--vendor", "nosuchvendor"], "--vendor \"nosuchvendor\""),
        (["--category", "nosuch"], "--category \"nosuch\""),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vendorwatch"));
        cmd.arg("hosts").args(args).arg("--state").arg(&db);
        let (code, stdout, stderr) = run(cmd, "hosts");
        assert!(stderr.contains(said), "{stderr}");
        assert!(
            stderr.contains("kaspersky") || stderr.contains("update"),
            "{stderr}"
        );
        assert!(!stdout.contains("no host matches"), "{stdout}");
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
    }
    // A known vendor that matches nothing is still a clean, empty result.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vendorwatch"));
    cmd.args(["hosts", "--vendor", "huawei", "--state"])
        .arg(&db);
    let (code, stdout, stderr) = run(cmd, "hosts --vendor huawei");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("no host matches"), "{stdout}");
}

#[test]
fn report_with_state_none_does_not_suggest_replaying_with_state_none() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cmd = bin();
    cmd.args(["report", "--state", "none", "--html"])
        .arg(dir.path().join("r.html"));
    let (code, _, stderr) = run(cmd, "report --state none");
    assert!(!stderr.contains("--state none first"), "{stderr}");
    assert!(stderr.contains("--state PATH"), "{stderr}");
    assert_eq!(code, Some(2), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// Issue 16 item 10: directories of captures

#[test]
fn a_directory_tree_is_read_depth_first_in_natural_order_and_counted() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("captures");
    for sub in ["2026-11/2", "2026-11/10", "2026-11/9/.hidden"] {
        std::fs::create_dir_all(root.join(sub)).expect("mkdir");
    }
    let write = |rel: &str, name: &str| {
        std::fs::write(root.join(rel), pcap(&[query_frame([10, 0, 0, 11], name)])).expect("write")
    };
    // Natural order: 2/ before 9.pcap before 10/; depth first.
    write("2026-11/10/a.pcap", "ten.example.com");
    write("2026-11/2/b.pcap", "two-b.example.com");
    write("2026-11/2/a.pcap", "two-a.example.com");
    write("2026-11/9.pcap", "nine.example.com");
    write("2026-11/9/.hidden/x.pcap", "hidden.example.com");
    std::fs::write(root.join("2026-11/2/README.txt"), "rotated hourly\n").expect("write");
    std::fs::write(root.join("2026-11/10/sums.sha256"), "0000  a.pcap\n").expect("write");
    let (code, stderr, names) = replay_events(dir.path(), &[&root]);
    assert_eq!(
        names,
        [
            "two-a.example.com",
            "two-b.example.com",
            "nine.example.com",
            "ten.example.com"
        ],
        "{stderr}"
    );
    assert!(
        stderr.contains("4 capture file(s) in 3 folder(s); 2 other file(s) skipped"),
        "{stderr}"
    );
    assert!(stderr.contains("skipped   2 file(s)"), "{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// Issue 16 item 12: config check

#[test]
fn config_check_reports_every_problem_in_line_order_in_the_files_terms() {
    let dir = tempfile::tempdir().expect("tmp");
    let conf = dir.path().join("vendorwatch.toml");
    std::fs::write(
        &conf,
        "home_net = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\n\
         vendorz = [\"kaspersky\"]\n\
         workers = 100000\n\
         vendors = [\"kaspersky\", \"nosuchvendor\"]\n\
         \n\
         [[suppress]]\n\
         reason = \"lab\"\n\
         hosts = [\"10.9.0.0/16\"]\n\
         expires = \"next tuesday\"\n",
    )
    .expect("write");
    let mut cmd = bin();
    cmd.args(["config", "check"]).arg(&conf);
    let (code, _, stderr) = run(cmd, "config check");
    let name = conf.display().to_string();
    let problems: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&name)).collect();
    let lines: Vec<&str> = problems
        .iter()
        .map(|l| l[name.len() + 1..].split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(lines, ["1", "2", "3", "4", "9"], "{stderr}");
    assert!(
        problems[0].contains("home_net: \"10.0.0.0/40\""),
        "{stderr}"
    );
    assert!(problems[1].contains("unknown key `vendorz`"), "{stderr}");
    assert!(
        problems[2].contains("workers: must be at most 1024"),
        "{stderr}"
    );
    assert!(
        problems[3].contains("vendors: no rule pack for vendor \"nosuchvendor\""),
        "{stderr}"
    );
    assert!(
        problems[4].contains("expires: \"next tuesday\""),
        "{stderr}"
    );
    assert!(!stderr.contains("--home-net"), "{stderr}");
    assert!(stderr.contains("5 problem(s)"), "{stderr}");
    assert_eq!(code, Some(1), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// Captures kept gzip-compressed (`tcpdump -z gzip`, archives)

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("pcaps")
        .join(name)
}

/// `gzip` (the real tool) of `src` into `dst`, cut to `keep` bytes when given.
fn gzip_to(src: &Path, dst: &Path, keep: Option<usize>) {
    let out = Command::new("gzip")
        .args(["-c", "-9"])
        .arg(src)
        .output()
        .expect("gzip runs");
    assert!(out.status.success());
    let bytes = &out.stdout[..keep.unwrap_or(out.stdout.len()).min(out.stdout.len())];
    std::fs::write(dst, bytes).expect("write");
}

#[test]
fn a_gzip_capture_reads_as_the_capture_inside_also_in_a_directory() {
    let Some(want) = tshark_names(&golden("dns.pcap")) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("archive");
    std::fs::create_dir(&dir).expect("mkdir");
    let gz = dir.join("dns.pcap.gz");
    gzip_to(&golden("dns.pcap"), &gz, None);
    let (code, stderr, names) = replay_events(tmp.path(), &[&gz]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        names, want,
        "the names tshark reads in the capture, in order"
    );
    // A folder of compressed captures is a folder of captures.
    let (code, stderr, names) = replay_events(tmp.path(), &[&dir]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("1 capture file(s)"), "{stderr}");
    assert_eq!(names, want);
}

/// A gzip file cut short keeps every packet before the cut and says where the capture inside
/// broke: the same record and offset as the plain bytes `zcat` gets out of it.
#[test]
fn a_gzip_capture_cut_short_keeps_what_came_before_and_says_where() {
    if !have("tshark") {
        eprintln!("tshark not installed: skipped");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let gz = tmp.path().join("cut.pcap.gz");
    gzip_to(&golden("dns.pcap"), &gz, Some(1500));
    let zcat = Command::new("zcat").arg(&gz).output().expect("zcat runs");
    let plain = tmp.path().join("cut.pcap");
    std::fs::write(&plain, &zcat.stdout).expect("write");
    let whole_records = tshark_names(&plain).map(|n| n.len()).unwrap_or(0);
    assert!(whole_records > 0, "the cut keeps some packets");
    let (code, stderr, names) = replay_events(tmp.path(), &[&gz]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(names.len(), whole_records, "{stderr}");
    let (_, plain_stderr, _) = replay_events(tmp.path(), &[&plain]);
    let place = |text: &str| {
        text.lines()
            .find(|l| l.contains("truncated"))
            .and_then(|l| l.split_once("record "))
            .map(|(_, rest)| rest.split(':').next().unwrap_or_default().to_string())
    };
    assert!(place(&stderr).is_some(), "{stderr}");
    assert_eq!(place(&stderr), place(&plain_stderr), "{stderr}");
}
