//! Alerts to a syslog receiver (a SIEM's collector, rsyslog, syslog-ng): one RFC 5424 message
//! per alert over UDP, TCP or a local Unix socket, sent by one thread that owns the connection,
//! behind a bounded queue, so that capture never waits on the network.
//!
//! What goes on the wire, and why:
//!
//! - `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG` (RFC 5424 §6).
//!   PRI is `facility * 8 + severity`, the severity mapped from the rule's (see
//!   [`syslog_severity`]);
//!   the facility defaults to 13, "log audit" (see [`DEFAULT_FACILITY`]).
//! - TIMESTAMP is RFC 3339 in UTC with microseconds. [`SyslogSink::send`] stamps the wall clock
//!   when the alert is queued, not when it is delivered, so a backlog sent after an outage keeps
//!   its times; [`SyslogSink::send_at`] takes the time from the caller (the packet's, say).
//! - PROCID is the process id, MSGID is `alert`.
//! - STRUCTURED-DATA is `-`, unless [`SyslogConfig::sd_id`] names an SD-ID of the form
//!   `name@PEN` (the operator's own IANA private enterprise number: names without `@` are
//!   reserved to IANA, and vendorwatch has no number of its own). Then the sender adds
//!   `[name@PEN vendor="…" category="…" rule="…" host="…"]` from the alert's JSON, escaping
//!   `"`, `\` and `]` in the values as RFC 5424 §6.3.3 requires.
//! - MSG is the alert's JSON line, as it is: UTF-8 without a BOM. RFC 5424 §6.4 wants a BOM
//!   before UTF-8 text, but JSON must not start with one (RFC 8259 §8.1), and rsyslog keeps the
//!   BOM in `%msg%`, where it breaks every JSON parser downstream. Without the BOM the MSG is
//!   RFC 5424's MSG-ANY: octets the receiver passes on untouched.
//!
//! Framing per transport:
//!
//! - UDP: one message per datagram (RFC 5426). A message longer than
//!   [`MAX_DATAGRAM_BYTES`] (the largest IPv4 UDP payload) is cut at a character boundary and
//!   counted in `truncated`. Datagrams lost on the way are not seen: UDP is best effort.
//! - TCP: octet counting, `LEN SP MSG` (RFC 6587 §3.4.1), as rsyslog's imtcp and syslog-ng's
//!   `syslog()` source read it; it needs no escaping whatever the message holds.
//! - Unix: a datagram socket like `/dev/log`, one message per datagram, cut like UDP's. If the
//!   path is a stream socket, the sink talks stream instead, one message per line (RFC 6587
//!   §3.4.2, as syslog-ng's `unix-stream()` reads it), with any newline in the message turned
//!   into a space (JSON stays valid: a raw newline can only be whitespace between tokens).
//!   rsyslog's imuxsock reads RFC 5424 only with `UseSpecialParser="off"` (its default parser
//!   for local sockets knows the traditional format only).
//!
//! Delivery: the sender thread connects when it has something to send, writes one message at a
//! time, and on a failed connect or write drops the connection and retries the same message
//! after an exponential backoff ([`BACKOFF_START`] doubling to [`BACKOFF_MAX`]), so that the
//! backlog goes out in order once the receiver is back. Before each write on a stream it checks,
//! without blocking, that the receiver has not closed the connection (a restarted rsyslog), so
//! that messages are not written into a dead socket. Plain TCP has no acknowledgement: what the
//! kernel accepted just before the receiver died is lost (RELP would be the cure). A write that
//! times out ([`WRITE_TIMEOUT`], a receiver that stopped reading) counts as a broken link too:
//! the message goes again, whole, on a new connection.
//!
//! The queue holds at most `capacity` accepted, undelivered messages, the one being written
//! included; [`SyslogSink::send`] never blocks and drops (and counts) what does not fit.

use crate::detect::rules::Severity;
use crate::time::Timestamp;
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// APP-NAME unless configured otherwise.
pub const DEFAULT_APP_NAME: &str = "vendorwatch";
/// Facility 13, "log audit" (RFC 5424 table 1): these are security findings about the network,
/// not logins, so they stay out of `auth`/`authpriv` (4/10), whose readers expect
/// authentication records, and a collector can route them on the facility alone.
pub const DEFAULT_FACILITY: u8 = 13;
/// Messages held before `send` starts dropping (alert lines are about 1 KiB: some 10 MiB).
pub const DEFAULT_CAPACITY: usize = 10_000;
/// MSGID of every message.
pub const MSGID: &str = "alert";
/// The largest UDP payload over IPv4 (65,535 − 8 − 20); also the cut for Unix datagrams.
pub const MAX_DATAGRAM_BYTES: usize = 65_507;
/// First wait after a failure; it doubles up to [`BACKOFF_MAX`] and resets after a delivery.
pub const BACKOFF_START: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// TCP connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A write that the receiver does not take within this time fails (and is retried).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Delivery failures are logged at most once per interval (they are all counted).
const WARN_INTERVAL: Duration = Duration::from_secs(60);
/// RFC 5424 field limits.
const MAX_APP_NAME: usize = 48;
const MAX_HOSTNAME: usize = 255;
const MAX_SD_NAME: usize = 32;
const MAX_FACILITY: u8 = 23;
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`
const TIMESTAMP_LEN: usize = 27;
/// errno for "message too long", the one write error that is about the message, not the link.
#[cfg(any(target_os = "linux", target_os = "android"))]
const EMSGSIZE: i32 = 90;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const EMSGSIZE: i32 = 40;

/// Where the messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTarget {
    Udp(SocketAddr),
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// Why a target string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("syslog target {0:?} has no scheme: write udp://IP:PORT, tcp://IP:PORT or unix:PATH")]
    NoScheme(String),
    #[error("syslog target {0:?}: unknown scheme (udp, tcp or unix)")]
    UnknownScheme(String),
    #[error("syslog target {0:?} has no port: write e.g. udp://127.0.0.1:514 or tcp://[::1]:601")]
    NoPort(String),
    #[error(
        "syslog target {0:?} is not IP:PORT after udp:// or tcp:// (names are not resolved; \
         an IPv6 address goes in brackets: tcp://[::1]:601)"
    )]
    BadAddress(String),
    #[error("syslog target {0:?} has port 0")]
    PortZero(String),
    #[error("syslog target {0:?} has no socket path: write e.g. unix:/dev/log")]
    NoPath(String),
}

impl TargetError {
    /// A short fixed reason, usable as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            TargetError::NoScheme(_) => "no_scheme",
            TargetError::UnknownScheme(_) => "unknown_scheme",
            TargetError::NoPort(_) => "no_port",
            TargetError::BadAddress(_) => "bad_address",
            TargetError::PortZero(_) => "port_zero",
            TargetError::NoPath(_) => "no_path",
        }
    }
}

/// `udp://IP:PORT`, `tcp://IP:PORT` (IPv6 in brackets), `unix:PATH` or `unix://PATH`.
/// The scheme is case-insensitive; names are not resolved (a sensor should not depend on DNS
/// to report), and the port is required (514 or 601 or whatever the collector listens on).
impl FromStr for SyslogTarget {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let input = s.trim();
        let Some((scheme, rest)) = input.split_once(':') else {
            return Err(TargetError::NoScheme(input.into()));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "udp" | "tcp" => {
                let Some(addr) = rest.strip_prefix("//") else {
                    return Err(TargetError::BadAddress(input.into()));
                };
                let addr = match addr.parse::<SocketAddr>() {
                    Ok(a) => a,
                    Err(_) => {
                        let bare = addr.trim_start_matches('[').trim_end_matches(']');
                        return Err(if bare.parse::<IpAddr>().is_ok() {
                            TargetError::NoPort(input.into())
                        } else {
                            TargetError::BadAddress(input.into())
                        });
                    }
                };
                if addr.port() == 0 {
                    return Err(TargetError::PortZero(input.into()));
                }
                Ok(if scheme.eq_ignore_ascii_case("udp") {
                    SyslogTarget::Udp(addr)
                } else {
                    SyslogTarget::Tcp(addr)
                })
            }
            "unix" => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() {
                    return Err(TargetError::NoPath(input.into()));
                }
                Ok(SyslogTarget::Unix(PathBuf::from(path)))
            }
            // "127.0.0.1:514", "/dev/log", "[::1]:514": not a scheme at all.
            _ if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphabetic()) => {
                Err(TargetError::NoScheme(input.into()))
            }
            _ => Err(TargetError::UnknownScheme(input.into())),
        }
    }
}

impl fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogTarget::Udp(a) => write!(f, "udp://{a}"),
            SyslogTarget::Tcp(a) => write!(f, "tcp://{a}"),
            SyslogTarget::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// What the sink runs on; [`SyslogConfig::new`] fills in the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogConfig {
    pub target: SyslogTarget,
    /// APP-NAME: 1–48 printable US-ASCII characters, no spaces.
    pub app_name: String,
    /// HOSTNAME: up to 255 printable US-ASCII characters, no spaces; empty sends `-`.
    pub hostname: String,
    /// 0–23; see [`DEFAULT_FACILITY`].
    pub facility: u8,
    /// Accepted, undelivered messages held at most (≥ 1).
    pub capacity: usize,
    /// SD-ID (`name@PEN`) of an SD element carrying vendor, category, rule and host; `None`
    /// sends `-`.
    pub sd_id: Option<String>,
}

impl SyslogConfig {
    pub fn new(target: SyslogTarget) -> SyslogConfig {
        SyslogConfig {
            target,
            app_name: DEFAULT_APP_NAME.into(),
            hostname: local_hostname(),
            facility: DEFAULT_FACILITY,
            capacity: DEFAULT_CAPACITY,
            sd_id: None,
        }
    }
}

/// The kernel's host name; empty (sent as `-`) if it cannot be read or is not a valid
/// RFC 5424 HOSTNAME.
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|h| h.len() <= MAX_HOSTNAME && printable(h))
        .unwrap_or_default()
}

/// Rule severity → syslog severity (RFC 5424 table 2): critical → 2 (critical),
/// high → 3 (error), medium → 4 (warning), low → 5 (notice), info → 6 (informational).
/// Nothing is sent as emergency or alert (0, 1): those page people for the syslog host itself.
pub fn syslog_severity(s: Severity) -> u8 {
    match s {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low => 5,
        Severity::Info => 6,
    }
}

/// What the sink did so far. Every message given to `send` is in exactly one of `sent`,
/// `dropped`, `rejected`, `unsent` or `queued` (a snapshot taken while a message is being
/// delivered may count it twice, in `sent` and in `queued`; after `close` the sum is exact).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Messages the kernel took (a datagram sent, a frame written to the stream).
    pub sent: u64,
    /// Messages refused by `send` because `capacity` messages were already waiting.
    pub dropped: u64,
    /// Connection attempts after the first one (each retry after a failure counts).
    pub reconnects: u64,
    /// Failed connects and writes.
    pub errors: u64,
    /// Messages cut to fit a datagram ([`MAX_DATAGRAM_BYTES`]), sent all the same.
    pub truncated: u64,
    /// Messages the transport refused outright (too long for the socket); not retried.
    pub rejected: u64,
    /// Messages still queued when `close`'s timeout ran out.
    pub unsent: u64,
    /// Messages waiting now (accepted, not yet delivered or given up).
    pub queued: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    dropped: AtomicU64,
    reconnects: AtomicU64,
    errors: AtomicU64,
    truncated: AtomicU64,
    rejected: AtomicU64,
    unsent: AtomicU64,
    /// Accepted and not yet finished with: the bound that `capacity` puts on the queue.
    in_flight: AtomicUsize,
}

impl Counters {
    fn snapshot(&self) -> SinkStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SinkStats {
            sent: get(&self.sent),
            dropped: get(&self.dropped),
            reconnects: get(&self.reconnects),
            errors: get(&self.errors),
            truncated: get(&self.truncated),
            rejected: get(&self.rejected),
            unsent: get(&self.unsent),
            queued: self.in_flight.load(Ordering::Relaxed) as u64,
        }
    }

    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn finished(&self, n: usize) {
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
    }
}

struct Item {
    severity: u8,
    ts: Timestamp,
    msg: String,
}

/// The alert sink. `send` may be called from any number of threads (`&self`).
pub struct SyslogSink {
    tx: Option<Sender<Item>>,
    ctl: Option<Sender<Instant>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    capacity: usize,
}

impl SyslogSink {
    /// Checks the configuration (an invalid one is `InvalidInput`) and spawns the sender
    /// thread. Does not connect: a receiver that is down at start only delays delivery.
    pub fn start(cfg: SyslogConfig) -> io::Result<SyslogSink> {
        let header =
            Header::new(&cfg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        if cfg.capacity == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "syslog queue capacity must be at least 1",
            ));
        }
        let (tx, rx) = unbounded();
        let (ctl_tx, ctl_rx) = crossbeam_channel::bounded(1);
        let counters = Arc::new(Counters::default());
        let worker = Worker {
            target: cfg.target,
            header,
            rx,
            ctl: ctl_rx,
            counters: Arc::clone(&counters),
            conn: None,
            attempts: 0,
            backoff: BACKOFF_START,
            deadline: None,
            failures: 0,
            last_warning: None,
            frame: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("syslog-sender".into())
            .spawn(move || worker.run())?;
        Ok(SyslogSink {
            tx: Some(tx),
            ctl: Some(ctl_tx),
            thread: Some(thread),
            counters,
            capacity: cfg.capacity,
        })
    }

    /// Queues one alert (its JSON line, no newline) stamped with the wall clock now; never
    /// blocks; when `capacity` messages are already waiting the message is dropped and counted.
    pub fn send(&self, severity: Severity, msg: String) {
        self.send_at(severity, wall_clock(), msg);
    }

    /// Like [`send`](Self::send), with the TIMESTAMP given by the caller.
    pub fn send_at(&self, severity: Severity, ts: Timestamp, msg: String) {
        let c = &self.counters;
        if c.in_flight.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            c.finished(1);
            Counters::bump(&c.dropped);
            return;
        }
        let item = Item {
            severity: syslog_severity(severity),
            ts,
            msg,
        };
        // The channel is unbounded (the count above is the bound); it only fails if the
        // sender thread is gone, and then the message is dropped like any that cannot queue.
        let queued = self.tx.as_ref().is_some_and(|tx| tx.send(item).is_ok());
        if !queued {
            c.finished(1);
            Counters::bump(&c.dropped);
        }
    }

    pub fn stats(&self) -> SinkStats {
        self.counters.snapshot()
    }

    /// Delivers what is queued (waits up to `timeout`), then stops the thread. What is still
    /// queued when the time is up is counted in `unsent`. A connect or write already under
    /// way is not interrupted: `close` can return up to [`WRITE_TIMEOUT`] late.
    pub fn close(mut self, timeout: Duration) -> SinkStats {
        let now = Instant::now();
        self.stop(
            now.checked_add(timeout)
                .unwrap_or(now + BACKOFF_MAX * 10_000),
        );
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("syslog sender thread panicked");
            }
        }
        self.counters.snapshot()
    }

    fn stop(&mut self, deadline: Instant) {
        if let Some(ctl) = &self.ctl {
            let _ = ctl.try_send(deadline);
        }
        self.tx = None;
    }
}

/// Dropping without `close` gives up on the queue at once and does not wait for the thread.
impl Drop for SyslogSink {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop(Instant::now());
        }
    }
}

fn wall_clock() -> Timestamp {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp::from_parts(
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => Timestamp(
            i64::try_from(e.duration().as_nanos())
                .map(|n| -n)
                .unwrap_or(i64::MIN),
        ),
    }
}

/// A header field the configuration got wrong (the sink refuses to start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("syslog facility {0} is not 0–{MAX_FACILITY}")]
    Facility(u8),
    #[error(
        "syslog app name {0:?} must be 1–{MAX_APP_NAME} printable ASCII characters without spaces"
    )]
    AppName(String),
    #[error("syslog hostname {0:?} must be at most {MAX_HOSTNAME} printable ASCII characters without spaces")]
    Hostname(String),
    #[error(
        "syslog SD-ID {0:?} must be name@PEN (your IANA private enterprise number), \
         at most {MAX_SD_NAME} printable ASCII characters without = ] \" or spaces"
    )]
    SdId(String),
}

impl HeaderError {
    /// A short label (for a metric or a log field).
    pub fn reason(&self) -> &'static str {
        match self {
            HeaderError::Facility(_) => "facility",
            HeaderError::AppName(_) => "app_name",
            HeaderError::Hostname(_) => "hostname",
            HeaderError::SdId(_) => "sd_id",
        }
    }
}

/// The fixed part of every message, checked once.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    facility: u8,
    hostname: String,
    app_name: String,
    procid: String,
    sd_id: Option<String>,
}

fn printable(s: &str) -> bool {
    s.bytes().all(|b| (33..=126).contains(&b))
}

impl Header {
    fn new(cfg: &SyslogConfig) -> Result<Header, HeaderError> {
        if cfg.facility > MAX_FACILITY {
            return Err(HeaderError::Facility(cfg.facility));
        }
        if cfg.app_name.is_empty() || cfg.app_name.len() > MAX_APP_NAME || !printable(&cfg.app_name)
        {
            return Err(HeaderError::AppName(cfg.app_name.clone()));
        }
        if cfg.hostname.len() > MAX_HOSTNAME || !printable(&cfg.hostname) {
            return Err(HeaderError::Hostname(cfg.hostname.clone()));
        }
        if let Some(id) = cfg.sd_id.as_ref().filter(|id| !valid_sd_id(id)) {
            return Err(HeaderError::SdId(id.clone()));
        }
        Ok(Header {
            facility: cfg.facility,
            hostname: if cfg.hostname.is_empty() {
                "-".into()
            } else {
                cfg.hostname.clone()
            },
            app_name: cfg.app_name.clone(),
            procid: std::process::id().to_string(),
            sd_id: cfg.sd_id.clone(),
        })
    }

    /// One message, unframed.
    fn format(&self, severity: u8, ts: Timestamp, msg: &str) -> String {
        let mut line = String::with_capacity(msg.len() + 128);
        let pri = u16::from(self.facility) * 8 + u16::from(severity);
        let sd = self
            .sd_id
            .as_deref()
            .and_then(|id| structured_data(id, msg));
        line.push('<');
        line.push_str(&pri.to_string());
        line.push_str(">1 ");
        push_timestamp(&mut line, ts);
        for field in [
            &self.hostname,
            &self.app_name,
            &self.procid,
            MSGID,
            sd.as_deref().unwrap_or("-"),
        ] {
            line.push(' ');
            line.push_str(field);
        }
        if !msg.is_empty() {
            line.push(' ');
            line.push_str(msg);
        }
        line
    }
}

/// RFC 3339, UTC, microseconds: `Timestamp`'s own format. Its nanoseconds in an i64 span the
/// years 1677–2262, all four digits long as RFC 5424 wants; anything it cannot render is sent
/// as the NILVALUE `-`.
fn push_timestamp(out: &mut String, ts: Timestamp) {
    let text = ts.to_string();
    if text.len() == TIMESTAMP_LEN && text.ends_with('Z') {
        out.push_str(&text);
    } else {
        out.push('-');
    }
}

/// SD-ID `name@PEN`: RFC 5424 §6.3.2 and §7.2.2.
fn valid_sd_id(id: &str) -> bool {
    let Some((name, pen)) = id.split_once('@') else {
        return false;
    };
    id.len() <= MAX_SD_NAME
        && !name.is_empty()
        && printable(id)
        && !id.contains(['=', ']', '"'])
        && !pen.is_empty()
        && pen.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !pen.starts_with('.')
        && !pen.ends_with('.')
}

/// PARAM-VALUE escaping (RFC 5424 §6.3.3): `"`, `\` and `]` take a backslash.
fn escape_param_value(value: &str, out: &mut String) {
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// `[SD-ID vendor=".." category=".." rule=".." host=".."]` from an alert's JSON; `None` when
/// the message is not a JSON object.
fn structured_data(sd_id: &str, msg: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(msg).ok()?;
    let obj = v.as_object()?;
    let mut out = String::with_capacity(128);
    out.push('[');
    out.push_str(sd_id);
    let host = obj.get("host").and_then(|h| h.get("ip"));
    let params = [
        ("vendor", obj.get("vendor")),
        ("category", obj.get("category")),
        ("rule", obj.get("rule")),
        ("host", host),
    ];
    for (name, value) in params {
        let text = match value {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => v.to_string(),
            _ => continue,
        };
        out.push(' ');
        out.push_str(name);
        out.push_str("=\"");
        escape_param_value(&text, &mut out);
        out.push('"');
    }
    out.push(']');
    Some(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// One message per datagram, cut at [`MAX_DATAGRAM_BYTES`].
    Datagram,
    /// `LEN SP MSG` (RFC 6587 §3.4.1).
    OctetCounting,
    /// `MSG LF`, newlines in MSG made spaces (RFC 6587 §3.4.2).
    LineFeed,
}

/// Frames `line` into `out`; true if the message had to be cut.
fn frame(framing: Framing, line: &str, out: &mut Vec<u8>) -> bool {
    out.clear();
    match framing {
        Framing::Datagram => {
            let (text, cut) = cut_to(line, MAX_DATAGRAM_BYTES);
            out.extend_from_slice(text.as_bytes());
            cut
        }
        Framing::OctetCounting => {
            out.extend_from_slice(line.len().to_string().as_bytes());
            out.push(b' ');
            out.extend_from_slice(line.as_bytes());
            false
        }
        Framing::LineFeed => {
            out.extend(line.bytes().map(|b| if b == b'\n' { b' ' } else { b }));
            out.push(b'\n');
            false
        }
    }
}

/// The longest prefix of `s` of at most `limit` bytes that ends on a character boundary.
fn cut_to(s: &str, limit: usize) -> (&str, bool) {
    if s.len() <= limit {
        return (s, false);
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

/// One open connection to the receiver.
enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    UnixDgram(UnixDatagram),
    UnixStream(UnixStream),
}

impl Conn {
    fn open(target: &SyslogTarget, timeout: Duration) -> io::Result<Conn> {
        let conn = match target {
            SyslogTarget::Udp(addr) => {
                let local: SocketAddr = if addr.is_ipv4() {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = UdpSocket::bind(local)?;
                s.connect(addr)?;
                Conn::Udp(s)
            }
            SyslogTarget::Tcp(addr) => Conn::Tcp(TcpStream::connect_timeout(addr, timeout)?),
            SyslogTarget::Unix(path) => {
                let d = UnixDatagram::unbound()?;
                match d.connect(path) {
                    Ok(()) => Conn::UnixDgram(d),
                    // A stream socket refuses a datagram connect (EPROTOTYPE); anything else
                    // (missing, refused) fails the same way for a stream, with the first error.
                    Err(e) => match UnixStream::connect(path) {
                        Ok(s) => Conn::UnixStream(s),
                        Err(_) => return Err(e),
                    },
                }
            }
        };
        conn.set_write_timeout(WRITE_TIMEOUT)?;
        Ok(conn)
    }

    fn framing(&self) -> Framing {
        match self {
            Conn::Udp(_) | Conn::UnixDgram(_) => Framing::Datagram,
            Conn::Tcp(_) => Framing::OctetCounting,
            Conn::UnixStream(_) => Framing::LineFeed,
        }
    }

    fn set_write_timeout(&self, t: Duration) -> io::Result<()> {
        let t = Some(t.max(Duration::from_millis(1)));
        match self {
            Conn::Udp(s) => s.set_write_timeout(t),
            Conn::Tcp(s) => s.set_write_timeout(t),
            Conn::UnixDgram(s) => s.set_write_timeout(t),
            Conn::UnixStream(s) => s.set_write_timeout(t),
        }
    }

    /// For a stream: fails if the receiver closed or reset the connection. Receivers send
    /// nothing on a syslog stream, so anything readable is either the end or noise to discard.
    fn check_alive(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => probe(s),
            Conn::UnixStream(s) => probe(s),
            Conn::Udp(_) | Conn::UnixDgram(_) => Ok(()),
        }
    }

    fn write(&mut self, frame: &[u8]) -> io::Result<()> {
        let whole = |n: usize| {
            if n == frame.len() {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "datagram sent in part",
                ))
            }
        };
        match self {
            Conn::Udp(s) => whole(s.send(frame)?),
            Conn::UnixDgram(s) => whole(s.send(frame)?),
            Conn::Tcp(s) => s.write_all(frame),
            Conn::UnixStream(s) => s.write_all(frame),
        }
    }
}

trait StreamSocket: Read {
    fn nonblocking(&self, on: bool) -> io::Result<()>;
}

impl StreamSocket for TcpStream {
    fn nonblocking(&self, on: bool) -> io::Result<()> {
        self.set_nonblocking(on)
    }
}

impl StreamSocket for UnixStream {
    fn nonblocking(&self, on: bool) -> io::Result<()> {
        self.set_nonblocking(on)
    }
}

fn probe<S: StreamSocket>(s: &mut S) -> io::Result<()> {
    s.nonblocking(true)?;
    let mut buf = [0u8; 512];
    let mut outcome = Ok(());
    for _ in 0..16 {
        match s.read(&mut buf) {
            Ok(0) => {
                outcome = Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the receiver closed the connection",
                ));
                break;
            }
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    outcome.and_then(|()| s.nonblocking(false))
}

enum Failure {
    /// The link failed: reconnect and retry the same message.
    Link(io::Error),
    /// This message can never go (too long for the socket): count it and go on.
    Message(io::Error),
}

/// The sender thread.
struct Worker {
    target: SyslogTarget,
    header: Header,
    rx: Receiver<Item>,
    ctl: Receiver<Instant>,
    counters: Arc<Counters>,
    conn: Option<Conn>,
    attempts: u64,
    backoff: Duration,
    deadline: Option<Instant>,
    /// Failures since the last delivery.
    failures: u64,
    last_warning: Option<Instant>,
    frame: Vec<u8>,
}

impl Worker {
    fn run(mut self) {
        let mut head: Option<String> = None;
        loop {
            self.poll_control();
            let m = match head.take() {
                Some(m) => m,
                // Blocks while idle; ends when the sink is closed and the queue is empty.
                None => match self.rx.recv() {
                    Ok(item) => self.header.format(item.severity, item.ts, &item.msg),
                    Err(_) => break,
                },
            };
            if self.expired() {
                head = Some(m);
                break;
            }
            match self.deliver(&m) {
                Ok(cut) => {
                    Counters::bump(&self.counters.sent);
                    if cut {
                        Counters::bump(&self.counters.truncated);
                    }
                    self.counters.finished(1);
                    if self.failures > 0 {
                        tracing::info!(
                            receiver = %self.target,
                            failures = self.failures,
                            "syslog: delivering again"
                        );
                        self.failures = 0;
                    }
                    self.backoff = BACKOFF_START;
                }
                Err(Failure::Message(e)) => {
                    Counters::bump(&self.counters.errors);
                    Counters::bump(&self.counters.rejected);
                    self.counters.finished(1);
                    self.warn(&e, "syslog: message refused by the socket, not retried");
                }
                Err(Failure::Link(e)) => {
                    Counters::bump(&self.counters.errors);
                    self.conn = None;
                    self.failures += 1;
                    self.warn(
                        &e,
                        "syslog: delivery failing; alerts are queued and retried",
                    );
                    head = Some(m);
                    self.wait_backoff();
                }
            }
        }
        let mut left = usize::from(head.is_some());
        while self.rx.try_recv().is_ok() {
            left += 1;
        }
        if left > 0 {
            self.counters
                .unsent
                .fetch_add(left as u64, Ordering::Relaxed);
            self.counters.finished(left);
            tracing::warn!(
                receiver = %self.target,
                unsent = left,
                "syslog: closed with alerts undelivered"
            );
        }
    }

    fn deliver(&mut self, m: &str) -> Result<bool, Failure> {
        if self.conn.is_none() {
            if self.attempts > 0 {
                Counters::bump(&self.counters.reconnects);
            }
            self.attempts += 1;
            let timeout = self.bounded(CONNECT_TIMEOUT);
            self.conn = Some(Conn::open(&self.target, timeout).map_err(Failure::Link)?);
        }
        let closing = self.deadline.is_some();
        let write_timeout = self.bounded(WRITE_TIMEOUT);
        let Some(conn) = self.conn.as_mut() else {
            return Err(Failure::Link(io::Error::from(io::ErrorKind::NotConnected)));
        };
        conn.check_alive().map_err(Failure::Link)?;
        if closing {
            conn.set_write_timeout(write_timeout)
                .map_err(Failure::Link)?;
        }
        let cut = frame(conn.framing(), m, &mut self.frame);
        match conn.write(&self.frame) {
            Ok(()) => Ok(cut),
            Err(e) if e.raw_os_error() == Some(EMSGSIZE) => Err(Failure::Message(e)),
            Err(e) => Err(Failure::Link(e)),
        }
    }

    fn poll_control(&mut self) {
        match self.ctl.try_recv() {
            Ok(d) => self.deadline = Some(d),
            Err(TryRecvError::Disconnected) => {
                self.deadline.get_or_insert_with(Instant::now);
            }
            Err(TryRecvError::Empty) => {}
        }
    }

    fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// `limit`, or less if `close`'s deadline comes first.
    fn bounded(&self, limit: Duration) -> Duration {
        match self.deadline {
            Some(d) => limit.min(d.saturating_duration_since(Instant::now())),
            None => limit,
        }
        .max(Duration::from_millis(1))
    }

    /// Sleeps the backoff (doubling it for next time), woken early by `close`'s deadline.
    fn wait_backoff(&mut self) {
        let mut until = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        loop {
            if let Some(d) = self.deadline {
                until = until.min(d);
            }
            let now = Instant::now();
            if now >= until {
                return;
            }
            match self.ctl.recv_timeout(until - now) {
                Ok(d) => self.deadline = Some(d),
                Err(RecvTimeoutError::Timeout) => return,
                Err(RecvTimeoutError::Disconnected) => {
                    self.deadline.get_or_insert(now);
                    return;
                }
            }
        }
    }

    fn warn(&mut self, e: &io::Error, what: &str) {
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|t| now.duration_since(t) < WARN_INTERVAL)
        {
            return;
        }
        self.last_warning = Some(now);
        tracing::warn!(
            receiver = %self.target,
            error = %e,
            queued = self.counters.in_flight.load(Ordering::Relaxed),
            "{what}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn header(facility: u8, hostname: &str, sd_id: Option<&str>) -> Header {
        Header {
            facility,
            hostname: hostname.into(),
            app_name: "vendorwatch".into(),
            procid: "4242".into(),
            sd_id: sd_id.map(String::from),
        }
    }

    /// 2026-11-27T10:00:00.123456789Z
    const TS: Timestamp = Timestamp(1_795_773_600_123_456_789);

    #[test]
    fn severities_map_to_rfc5424_and_pri_is_facility_times_8_plus_severity() {
        let expected = [
            (Severity::Critical, 2, "<106>"),
            (Severity::High, 3, "<107>"),
            (Severity::Medium, 4, "<108>"),
            (Severity::Low, 5, "<109>"),
            (Severity::Info, 6, "<110>"),
        ];
        let h = header(13, "sensor-1", None);
        for (sev, code, pri) in expected {
            assert_eq!(syslog_severity(sev), code, "{sev:?}");
            assert!(h.format(code, TS, "x").starts_with(pri), "{sev:?}");
        }
        // The extremes: kern.critical is <2>, local7.info is <190>.
        assert!(header(0, "h", None).format(2, TS, "x").starts_with("<2>1 "));
        assert!(header(23, "h", None)
            .format(6, TS, "x")
            .starts_with("<190>1 "));
    }

    #[test]
    fn formats_a_whole_rfc5424_line() {
        let msg = r#"{"event_type":"alert","vendor":"kaspersky","description":"é ] \"x\""}"#;
        let m = header(13, "sensor-1", None).format(3, TS, msg);
        assert_eq!(
            m,
            format!("<107>1 2026-11-27T10:00:00.123456Z sensor-1 vendorwatch 4242 alert - {msg}")
        );
    }

    #[test]
    fn nil_hostname_is_a_dash_extreme_times_render_and_empty_msg_has_no_trailing_space() {
        let cfg = SyslogConfig {
            hostname: String::new(),
            ..SyslogConfig::new(SyslogTarget::Unix("/dev/log".into()))
        };
        let h = Header::new(&cfg).expect("valid config");
        assert_eq!(h.hostname, "-");
        let h = header(13, "-", None);
        assert_eq!(
            h.format(6, Timestamp(i64::MAX), "m"),
            "<110>1 2262-04-11T23:47:16.854775Z - vendorwatch 4242 alert - m"
        );
        assert_eq!(
            h.format(6, Timestamp(i64::MIN), ""),
            "<110>1 1677-09-21T00:12:43.145224Z - vendorwatch 4242 alert -"
        );
    }

    #[test]
    fn structured_data_escapes_quote_backslash_and_bracket() {
        let mut out = String::new();
        escape_param_value(r#"a"b\c]d[e=f é"#, &mut out);
        assert_eq!(out, r#"a\"b\\c\]d[e=f é"#);

        let msg = r#"{"vendor":"kas\"per]sky","category":"av\\update","rule":"kl-1","host":{"ip":"10.0.0.5"},"count":3}"#;
        let m = header(13, "s", Some("vw@32473")).format(4, TS, msg);
        assert_eq!(
            m,
            format!(
                "<108>1 2026-11-27T10:00:00.123456Z s vendorwatch 4242 alert \
                 [vw@32473 vendor=\"kas\\\"per\\]sky\" category=\"av\\\\update\" rule=\"kl-1\" host=\"10.0.0.5\"] {msg}"
            )
        );
        // Fields that are missing are left out; a message that is not JSON gets no element.
        assert_eq!(
            structured_data("vw@32473", r#"{"rule":7}"#).as_deref(),
            Some(r#"[vw@32473 rule="7"]"#)
        );
        assert_eq!(structured_data("vw@32473", "not json"), None);
        assert_eq!(structured_data("vw@32473", "[1,2]"), None);
        assert!(header(13, "s", Some("vw@32473"))
            .format(4, TS, "plain")
            .ends_with(" alert - plain"));
    }

    #[test]
    fn sd_ids_must_be_name_at_enterprise_number() {
        for ok in ["vw@32473", "vendorwatch@1.3.6", "a@1"] {
            assert!(valid_sd_id(ok), "{ok}");
        }
        for bad in [
            "vendorwatch",
            "@32473",
            "vw@",
            "vw@abc",
            "vw@1@2",
            "v w@1",
            "v=w@1",
            "v]w@1",
            "v\"w@1",
            "vw@.1",
            "a-very-long-structured-data-name@32473",
        ] {
            assert!(!valid_sd_id(bad), "{bad}");
        }
    }

    #[test]
    fn octet_counting_counts_bytes_not_characters() {
        let m = header(13, "h", None).format(3, TS, "é");
        let mut out = Vec::new();
        assert!(!frame(Framing::OctetCounting, &m, &mut out));
        let expected = format!("{} {}", m.len(), m);
        assert_eq!(out, expected.as_bytes());
        assert!(expected.starts_with("64 <107>1 "), "{expected}");
        assert_eq!(m.chars().count(), 63);

        frame(Framing::OctetCounting, "<13>1 - - a - - - x", &mut out);
        assert_eq!(out, b"19 <13>1 - - a - - - x");
    }

    #[test]
    fn datagrams_are_cut_on_a_character_boundary_and_line_framing_has_no_inner_newline() {
        let h = header(13, "h", None);
        let mut msg = "a".repeat(MAX_DATAGRAM_BYTES);
        msg.push_str("ééé");
        let m = h.format(3, TS, &msg);
        let mut out = Vec::new();
        assert!(frame(Framing::Datagram, &m, &mut out));
        assert_eq!(out.len(), MAX_DATAGRAM_BYTES);
        assert_eq!(out, m.as_bytes()[..MAX_DATAGRAM_BYTES]);
        // A two-byte character straddling the limit is left out whole.
        let odd = format!("{}é", "a".repeat(MAX_DATAGRAM_BYTES - 1));
        assert_eq!(
            cut_to(&odd, MAX_DATAGRAM_BYTES),
            (&odd[..MAX_DATAGRAM_BYTES - 1], true)
        );
        let short = h.format(3, TS, "{}");
        assert!(!frame(Framing::Datagram, &short, &mut out));
        assert_eq!(out, short.as_bytes());

        let m = h.format(3, TS, "{\"a\":\n1}");
        frame(Framing::LineFeed, &m, &mut out);
        assert_eq!(out, format!("{}\n", m.replace('\n', " ")).as_bytes());
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    }

    #[test]
    fn targets_parse() {
        let cases: [(&str, SyslogTarget); 6] = [
            (
                "udp://127.0.0.1:514",
                SyslogTarget::Udp(SocketAddr::from(([127, 0, 0, 1], 514))),
            ),
            (
                "tcp://[::1]:601",
                SyslogTarget::Tcp("[::1]:601".parse().expect("addr")),
            ),
            ("unix:/dev/log", SyslogTarget::Unix("/dev/log".into())),
            (
                "unix:///run/x.sock",
                SyslogTarget::Unix("/run/x.sock".into()),
            ),
            ("unix:rel.sock", SyslogTarget::Unix("rel.sock".into())),
            (
                " UDP://10.1.2.3:5514 ",
                SyslogTarget::Udp(SocketAddr::from(([10, 1, 2, 3], 5514))),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<SyslogTarget>(), Ok(want.clone()), "{text}");
            assert_eq!(want.to_string().parse::<SyslogTarget>(), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_targets_say_why() {
        let cases = [
            ("127.0.0.1:514", "no_scheme"),
            ("[::1]:514", "no_scheme"),
            ("/dev/log", "no_scheme"),
            (":514", "no_scheme"),
            ("http://127.0.0.1:514", "unknown_scheme"),
            ("udp://127.0.0.1", "no_port"),
            ("tcp://[::1]", "no_port"),
            ("tcp://::1:601", "no_port"),
            ("tcp://localhost:601", "bad_address"),
            ("udp:127.0.0.1:514", "bad_address"),
            ("udp://127.0.0.1:514/", "bad_address"),
            ("udp://127.0.0.1:70000", "bad_address"),
            ("tcp://127.0.0.1:0", "port_zero"),
            ("unix:", "no_path"),
            ("unix://", "no_path"),
        ];
        for (text, reason) in cases {
            match text.parse::<SyslogTarget>() {
                Ok(t) => panic!("{text} parsed as {t:?}"),
                Err(e) => {
                    assert_eq!(e.reason(), reason, "{text}: {e}");
                    assert!(e.to_string().contains(text.trim()), "{e}");
                }
            }
        }
        let e = "udp://127.0.0.1"
            .parse::<SyslogTarget>()
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("syslog target \"udp://127.0.0.1\" has no port: write e.g. udp://127.0.0.1:514 or tcp://[::1]:601")
        );
    }

    #[test]
    fn bad_configs_are_refused_at_start() {
        let base = SyslogConfig::new(SyslogTarget::Unix("/nonexistent/log".into()));
        let bad = [
            SyslogConfig {
                facility: 24,
                ..base.clone()
            },
            SyslogConfig {
                app_name: String::new(),
                ..base.clone()
            },
            SyslogConfig {
                app_name: "vendor watch".into(),
                ..base.clone()
            },
            SyslogConfig {
                app_name: "a".repeat(49),
                ..base.clone()
            },
            SyslogConfig {
                hostname: "host\u{e9}".into(),
                ..base.clone()
            },
            SyslogConfig {
                capacity: 0,
                ..base.clone()
            },
            SyslogConfig {
                sd_id: Some("vendorwatch".into()),
                ..base.clone()
            },
        ];
        for cfg in bad {
            match SyslogSink::start(cfg.clone()) {
                Ok(_) => panic!("accepted {cfg:?}"),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{cfg:?}: {e}"),
            }
        }
        assert_eq!(base.app_name, "vendorwatch");
        assert_eq!(base.facility, 13);
        assert_eq!(base.capacity, 10_000);
        let sink = SyslogSink::start(base).expect("valid config starts");
        assert_eq!(sink.close(Duration::ZERO), SinkStats::default());
    }

    #[test]
    fn the_sink_can_be_shared_between_workers() {
        fn shared<T: Send + Sync>() {}
        shared::<SyslogSink>();
    }

    #[test]
    fn udp_datagrams_arrive_one_per_message() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let addr = rx.local_addr().expect("addr");
        let cfg = SyslogConfig {
            hostname: "h".into(),
            ..SyslogConfig::new(SyslogTarget::Udp(addr))
        };
        let sink = SyslogSink::start(cfg).expect("start");
        sink.send_at(Severity::High, TS, "{\"n\":1}".into());
        sink.send_at(Severity::Info, TS, "{\"n\":2}".into());
        let stats = sink.close(Duration::from_secs(10));
        assert_eq!((stats.sent, stats.queued, stats.unsent), (2, 0, 0));
        let mut buf = [0u8; 2048];
        let pid = std::process::id();
        for (pri, n) in [(107, 1), (110, 2)] {
            let len = rx.recv(&mut buf).expect("datagram");
            assert_eq!(
                std::str::from_utf8(&buf[..len]).expect("utf-8"),
                format!("<{pri}>1 2026-11-27T10:00:00.123456Z h vendorwatch {pid} alert - {{\"n\":{n}}}")
            );
        }
    }
}
