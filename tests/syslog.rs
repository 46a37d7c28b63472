//! The syslog alert sink against a real rsyslogd that the test starts itself (its own config,
//! ports on 127.0.0.1 and a socket in a temporary folder; the system's rsyslog and /dev/log are
//! never touched): 100 alerts over UDP, TCP and a Unix socket arrive whole, with their
//! severity and app name; a TCP receiver that comes up late, or restarts, gets the backlog in
//! order; a receiver that never comes up costs `send` nothing and the drops are counted exactly.
//! The rsyslog tests are skipped, loudly, when rsyslogd is not installed (Debian: `rsyslog`).

use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vendorwatch::detect::rules::Severity;
use vendorwatch::output::syslog::{
    SinkStats, SyslogConfig, SyslogSink, SyslogTarget, MAX_DATAGRAM_BYTES,
};

const HOSTNAME: &str = "sensor-test";
const SD_ID: &str = "vendorwatch@32473";
/// The severities in turn, with the syslog severity each must arrive as.
const SEVERITIES: [(Severity, u8); 5] = [
    (Severity::Critical, 2),
    (Severity::High, 3),
    (Severity::Medium, 4),
    (Severity::Low, 5),
    (Severity::Info, 6),
];
const WAIT: Duration = Duration::from_secs(30);

fn rsyslogd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join("rsyslogd"))
        .find(|p| p.is_file())
}

fn need_rsyslogd(test: &str) -> Option<PathBuf> {
    let found = rsyslogd();
    if found.is_none() {
        eprintln!(
            "\n*** SKIPPED {test}: rsyslogd is not installed (Debian package `rsyslog`); \
             the syslog sink was NOT tested against a real receiver ***\n"
        );
    }
    found
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free TCP port")
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// Is 127.0.0.1:port bound in /proc/net/{tcp,udp} (TCP: listening)?
fn bound(table: &str, port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string(format!("/proc/net/{table}"))
        .map(|t| {
            t.lines().skip(1).any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1] == local && (table != "tcp" || f[3] == "0A")
            })
        })
        .unwrap_or(false)
}

/// One message as rsyslog stored it.
#[derive(Debug)]
struct Record {
    severity: u8,
    facility: u8,
    app: String,
    hostname: String,
    procid: String,
    msgid: String,
    sd: String,
    msg: Value,
}

/// A private rsyslogd: UDP, TCP and a Unix datagram socket in, one file out.
struct Rsyslog {
    bin: PathBuf,
    dir: tempfile::TempDir,
    udp: u16,
    tcp: u16,
    starts: u32,
    child: Option<Child>,
}

impl Rsyslog {
    /// Written, not started.
    fn new(bin: PathBuf) -> Rsyslog {
        let dir = tempfile::tempdir().expect("temp dir");
        let r = Rsyslog {
            bin,
            dir,
            udp: free_udp_port(),
            tcp: free_tcp_port(),
            starts: 0,
            child: None,
        };
        let d = r.dir.path().display();
        // useSpecialParser="off": imuxsock's default parser knows only the traditional local
        // format; off, the socket gets the RFC 5424 parser like the network inputs.
        let conf = format!(
            r#"global(workDirectory="{d}" maxMessageSize="64k")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{udp}")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{sock}" useSpecialParser="off" parseHostname="on")
template(name="vw" type="string"
  string="%syslogseverity%|%syslogfacility%|%app-name%|%hostname%|%procid%|%msgid%|%structured-data%|%msg%\n")
if $app-name == "vendorwatch" then {{
  action(type="omfile" file="{out}" template="vw")
  stop
}}
"#,
            udp = r.udp,
            tcp = r.tcp,
            sock = r.sock().display(),
            out = r.out().display(),
        );
        std::fs::write(r.dir.path().join("rsyslog.conf"), conf).expect("write config");
        r
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("log.sock")
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("alerts.log")
    }

    fn udp_target(&self) -> SyslogTarget {
        SyslogTarget::Udp(SocketAddr::from(([127, 0, 0, 1], self.udp)))
    }

    fn tcp_target(&self) -> SyslogTarget {
        SyslogTarget::Tcp(SocketAddr::from(([127, 0, 0, 1], self.tcp)))
    }

    fn start(&mut self) {
        self.starts += 1;
        let d = self.dir.path();
        let log = std::fs::File::create(d.join(format!("rsyslogd.{}.log", self.starts)))
            .expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new(&self.bin)
            .arg("-n")
            .arg("-f")
            .arg(d.join("rsyslog.conf"))
            .arg("-i")
            .arg(d.join(format!("rsyslogd.{}.pid", self.starts)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start rsyslogd");
        self.child = Some(child);
        let started = Instant::now();
        while !(bound("udp", self.udp) && bound("tcp", self.tcp) && self.sock().exists()) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("rsyslogd exited ({status}): {}", self.log());
            }
            assert!(
                started.elapsed() < WAIT,
                "rsyslogd did not open its inputs: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, so rsyslogd writes out what it has, then waits for it to exit.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn log(&self) -> String {
        (1..=self.starts)
            .filter_map(|n| {
                std::fs::read_to_string(self.dir.path().join(format!("rsyslogd.{n}.log"))).ok()
            })
            .collect()
    }

    fn records(&self) -> Vec<Record> {
        let text = std::fs::read_to_string(self.out()).unwrap_or_default();
        // Only whole lines: rsyslogd may be half-way through writing the last one.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        whole
            .lines()
            .map(|line| {
                let f: Vec<&str> = line.splitn(8, '|').collect();
                assert_eq!(f.len(), 8, "unexpected line {line:?}");
                Record {
                    severity: f[0].parse().expect("severity"),
                    facility: f[1].parse().expect("facility"),
                    app: f[2].into(),
                    hostname: f[3].into(),
                    procid: f[4].into(),
                    msgid: f[5].into(),
                    sd: f[6].into(),
                    msg: serde_json::from_str(f[7])
                        .unwrap_or_else(|e| panic!("MSG is not JSON ({e}): {line:?}")),
                }
            })
            .collect()
    }

    /// Waits until `n` records are in the file, and a moment more to catch any extra.
    fn wait_for(&self, n: usize) -> Vec<Record> {
        let started = Instant::now();
        loop {
            let got = self.records();
            if got.len() >= n {
                std::thread::sleep(Duration::from_millis(300));
                return self.records();
            }
            assert!(
                started.elapsed() < WAIT,
                "{} of {n} messages arrived; rsyslogd said: {}",
                got.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An alert line like `output::alert_line`'s, numbered, with characters that need care.
fn alert(seq: usize) -> String {
    let (severity, _) = SEVERITIES[seq % SEVERITIES.len()];
    json!({
        "timestamp": "2026-11-27T10:00:00.123456Z",
        "event_type": "alert",
        "host": {"ip": "10.0.0.5", "mac": "02:00:00:00:00:05"},
        "vendor": "kaspersky",
        "category": "update]\"cdn\"",
        "rule": "kaspersky-update",
        "severity": severity.as_str(),
        "confidence": "high",
        "description": "Kaspersky update servers \u{2014} \"dnl-01\" [é] \\ | end",
        "indicator": {"kind": "sni", "value": "dnl-01.geo.kaspersky.com"},
        "flow": {"src_ip": "10.0.0.5", "src_port": 49152 + seq, "dst_ip": "93.159.228.1", "dst_port": 443, "transport": "tcp"},
        "count": 1,
        "seq": seq,
    })
    .to_string()
}

/// Every message given to `send` is counted in exactly one place.
fn accounted(s: &SinkStats) -> u64 {
    s.sent + s.dropped + s.rejected + s.unsent + s.queued
}

fn config(target: SyslogTarget, sd: bool) -> SyslogConfig {
    SyslogConfig {
        hostname: HOSTNAME.into(),
        sd_id: sd.then(|| SD_ID.into()),
        ..SyslogConfig::new(target)
    }
}

fn send_range(sink: &SyslogSink, seqs: std::ops::Range<usize>) {
    for seq in seqs {
        sink.send(SEVERITIES[seq % SEVERITIES.len()].0, alert(seq));
    }
}

/// Every record is a whole alert with the right header; returns the sequence numbers in
/// the order they arrived.
fn check(records: &[Record], sd: bool) -> Vec<usize> {
    let pid = std::process::id().to_string();
    records
        .iter()
        .map(|r| {
            let seq = r.msg["seq"].as_u64().expect("seq") as usize;
            assert_eq!(r.msg, serde_json::from_str::<Value>(&alert(seq)).expect("json"));
            assert_eq!(r.severity, SEVERITIES[seq % SEVERITIES.len()].1, "{r:?}");
            assert_eq!(r.facility, 13, "{r:?}");
            assert_eq!(r.app, "vendorwatch", "{r:?}");
            assert_eq!(r.hostname, HOSTNAME, "{r:?}");
            assert_eq!(r.procid, pid, "{r:?}");
            assert_eq!(r.msgid, "alert", "{r:?}");
            let want_sd = if sd {
                format!(
                    r#"[{SD_ID} vendor="kaspersky" category="update\]\"cdn\"" rule="kaspersky-update" host="10.0.0.5"]"#
                )
            } else {
                "-".into()
            };
            assert_eq!(r.sd, want_sd, "{r:?}");
            seq
        })
        .collect()
}

fn one_transport(test: &str, pick: fn(&Rsyslog) -> SyslogTarget, sd: bool, ordered: bool) {
    let Some(bin) = need_rsyslogd(test) else {
        return;
    };
    let mut r = Rsyslog::new(bin);
    r.start();
    let sink = SyslogSink::start(config(pick(&r), sd)).expect("start sink");
    send_range(&sink, 0..100);
    let stats = sink.close(WAIT);
    assert_eq!(
        (stats.sent, stats.dropped, stats.unsent, stats.queued),
        (100, 0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(accounted(&stats), 100, "{stats:?}");
    let seqs = check(&r.wait_for(100), sd);
    if ordered {
        assert_eq!(seqs, (0..100).collect::<Vec<_>>());
    } else {
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>(), "arrived: {seqs:?}");
    }
}

#[test]
fn udp_delivers_every_alert_whole() {
    // Loopback keeps UDP's order in practice, but nothing promises it: only completeness.
    one_transport("udp", Rsyslog::udp_target, false, false);
}

#[test]
fn tcp_delivers_every_alert_in_order() {
    one_transport("tcp", Rsyslog::tcp_target, true, true);
}

#[test]
fn unix_datagram_socket_delivers_every_alert_in_order() {
    one_transport("unix", |r| SyslogTarget::Unix(r.sock()), true, true);
}

/// Polls the sink's stats until `ready` holds.
fn wait_stats(sink: &SyslogSink, what: &str, ready: impl Fn(&SinkStats) -> bool) {
    let started = Instant::now();
    while !ready(&sink.stats()) {
        assert!(started.elapsed() < WAIT, "{what}: {:?}", sink.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tcp_backlog_from_an_outage_is_delivered_in_order() {
    let Some(bin) = need_rsyslogd("tcp outage") else {
        return;
    };
    let mut r = Rsyslog::new(bin);
    let sink = SyslogSink::start(config(r.tcp_target(), false)).expect("start sink");

    // Down at start: everything queues, the sender retries.
    send_range(&sink, 0..100);
    wait_stats(&sink, "no retry", |s| s.reconnects >= 2);
    let s = sink.stats();
    assert_eq!((s.sent, s.dropped, s.queued), (0, 0, 100), "{s:?}");
    assert!(s.errors >= 2, "{s:?}");

    r.start();
    wait_stats(&sink, "backlog not sent", |s| s.sent == 100);
    assert_eq!(check(&r.wait_for(100), false), (0..100).collect::<Vec<_>>());

    // The receiver goes away while the sink holds an idle connection to it: the sink sees the
    // connection closed before writing into it, queues, and delivers on the receiver's return.
    r.stop();
    let before = sink.stats();
    send_range(&sink, 100..150);
    wait_stats(&sink, "closed connection not noticed", |s| {
        s.reconnects >= before.reconnects + 2
    });
    assert_eq!(sink.stats().sent, 100);
    r.start();
    let stats = sink.close(WAIT);
    assert_eq!(
        (stats.sent, stats.dropped, stats.unsent, stats.queued),
        (150, 0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(accounted(&stats), 150, "{stats:?}");
    assert!(stats.reconnects > before.reconnects, "{stats:?}");
    assert_eq!(check(&r.wait_for(150), false), (0..150).collect::<Vec<_>>());
}

/// Nothing listens: `send` returns at once every time, and exactly `capacity` messages are
/// held (the one the sender is retrying included); the rest are dropped and counted.
fn never_up(target: SyslogTarget) {
    let capacity = 50;
    let sink = SyslogSink::start(SyslogConfig {
        capacity,
        ..config(target.clone(), false)
    })
    .expect("start sink");
    send_range(&sink, 0..1_000);
    let s = sink.stats();
    assert_eq!(
        (s.dropped, s.queued, s.sent),
        (950, 50, 0),
        "{target}: {s:?}"
    );

    // From several threads at once the bound is just as exact.
    std::thread::scope(|scope| {
        for t in 0..4 {
            let sink = &sink;
            scope.spawn(move || send_range(sink, 1_000 + t * 250..1_000 + (t + 1) * 250));
        }
    });
    let s = sink.stats();
    assert_eq!((s.dropped, s.queued), (1_950, 50), "{target}: {s:?}");
    assert_eq!(accounted(&s), 2_000, "{target}: {s:?}");

    let stats = sink.close(Duration::from_millis(300));
    assert_eq!(
        (stats.sent, stats.dropped, stats.unsent, stats.queued),
        (0, 1_950, 50, 0),
        "{target}: {stats:?}"
    );
    assert_eq!(accounted(&stats), 2_000, "{target}: {stats:?}");
    assert!(stats.errors >= 1, "{target}: {stats:?}");
}

#[test]
fn a_receiver_that_never_comes_up_costs_send_nothing_and_drops_are_counted() {
    never_up(SyslogTarget::Tcp(SocketAddr::from((
        [127, 0, 0, 1],
        free_tcp_port(),
    ))));
    let dir = tempfile::tempdir().expect("temp dir");
    never_up(SyslogTarget::Unix(dir.path().join("nobody.sock")));
}

#[test]
fn a_stream_unix_socket_gets_one_message_per_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("stream.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let (mut conn, _) = listener.accept().expect("accept");
        let mut text = String::new();
        conn.read_to_string(&mut text).expect("read");
        text
    });
    let sink = SyslogSink::start(config(SyslogTarget::Unix(path), false)).expect("start");
    send_range(&sink, 0..10);
    sink.send(Severity::Info, "{\"multi\":\n\"line\"}".into());
    let stats = sink.close(WAIT);
    assert_eq!(stats.sent, 11, "{stats:?}");
    let text = reader.join().expect("reader");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 11, "{text}");
    for (seq, line) in lines.iter().take(10).enumerate() {
        let (header, msg) = line
            .split_once(" alert - ")
            .unwrap_or_else(|| panic!("{line}"));
        assert!(header.starts_with(&format!("<{}>1 ", 13 * 8 + SEVERITIES[seq % 5].1)));
        assert_eq!(msg, alert(seq));
    }
    assert!(
        lines[10].ends_with(" alert - {\"multi\": \"line\"}"),
        "{}",
        lines[10]
    );
}

#[test]
fn an_oversized_udp_alert_is_cut_to_one_datagram_and_counted() {
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    rx.set_read_timeout(Some(WAIT)).expect("timeout");
    let addr = rx.local_addr().expect("addr");
    let sink = SyslogSink::start(config(SyslogTarget::Udp(addr), false)).expect("start");
    let big = format!("{{\"pad\":\"{}\"}}", "é".repeat(40_000));
    sink.send(Severity::High, big.clone());
    sink.send(Severity::High, "{}".into());
    let stats = sink.close(WAIT);
    assert_eq!((stats.sent, stats.truncated), (2, 1), "{stats:?}");
    let mut buf = vec![0u8; 100_000];
    let n = rx.recv(&mut buf).expect("first datagram");
    assert!(n <= MAX_DATAGRAM_BYTES && n > MAX_DATAGRAM_BYTES - 4, "{n}");
    let text = std::str::from_utf8(&buf[..n]).expect("cut on a character boundary");
    let msg = text.split_once(" alert - ").map(|(_, m)| m).unwrap_or("");
    assert!(big.starts_with(msg) && msg.len() > 60_000, "{}", msg.len());
    let n = rx.recv(&mut buf).expect("second datagram");
    assert!(std::str::from_utf8(&buf[..n]).is_ok_and(|t| t.ends_with(" alert - {}")));
}
