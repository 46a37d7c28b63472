//! The metrics endpoint under abuse (`sensor/metrics/endpoint.rs`).
//!
//! 1. A replay of a flood of vendor lookups from many hosts leaves a host report of many MB;
//!    the sensor lingers serving it. Then, all at once: a client that asks for `/api/hosts`
//!    and never reads, 1,100 that do the same with `/metrics`, a client that sends a 400 MB
//!    request header (again and again), and 8,000 slow clients holding connections with
//!    half-sent headers. While they are at
//!    it, `/healthz` and `/metrics` still answer (each within a generous liveness bound: the
//!    socket timeouts below, not a measured speed), the sensor's thread count does not move
//!    and its peak memory (VmHWM) stays bounded; what was shed is counted, the slow heads
//!    and the stalled reader end on their timeouts. Once they are gone, every endpoint serves, and `/api/hosts`, whole or page by page, gives exactly the
//!    hosts of the report file.
//! 2. `/api/hosts?limit=N&after=IP` pages through the hosts of the golden captures, and a
//!    bad query is refused with its reason.
//! 3. The listening socket is destroyed under a live sensor (`ss -K`, as a kernel or an
//!    operator mistake would): the sensor says so on stderr and stops with exit status 1
//!    instead of capturing on without `/healthz`; a replay lingering for metrics does the same.
//!    Both run under the seccomp filter (on by default).

mod common;

use common::{bin, flood_names, free_port, is_root, pcap_path, Legit, Mixer, Rng};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Slow clients holding half-sent request heads.
const SLOW_CLIENTS: usize = 8_000;
/// Clients that ask for `/metrics` and never read it: nearly as many as the endpoint has
/// slots (1,024), so that the slow clients must fight over the few left, and the stalled
/// `/api/hosts` reader keeps its own (with more, the oldest stalled answer gives way).
const STALLED_SCRAPES: usize = 1_000;
/// The endpoint's write timeout (`WRITE_TIMEOUT`): the stalled reader holds its slot until then.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The oversized header, in bytes.
const HUGE_HEADER: u64 = 400 * 1024 * 1024;
/// Hosts in the flood, each looking up `NAMES_PER_HOST` vendor names: a report of well
/// over what the socket buffers of a non-reading client hold (about 4 MB on loopback).
const HOSTS: u32 = 2_000;
const NAMES_PER_HOST: u32 = 40;
/// Liveness bound for one request to the endpoint under abuse: generous, so that a loaded
/// 2-core machine passes; the endpoint that this replaces never answered at all.
const LIVENESS: Duration = Duration::from_secs(5);
/// What the abuse may add to the sensor's resident memory at its peak (MiB). The endpoint's
/// share: 1,024 connections of at most 8 KiB read and 8 KiB write buffer plus their state
/// (about 20 MiB), two report streams (an address list and a 64 KiB chunk each), and the
/// `/metrics` texts stalled readers hold (one per 100 ms at most, 80 KiB each, for the
/// 30 s write timeout: 24 MiB); the rest is allocator slack. Measured here: about 40 MiB.
/// The endpoint it replaces took the whole 400 MB header, and a thread per connection.
const MAX_ABUSE_MIB: u64 = 96;
/// Threads the abuse may add to the sensor: none (the endpoint is one thread from the start);
/// slack of one for a thread of the sensor's own that comes and goes.
const THREAD_SLACK: u64 = 1;

/// Kills the sensor when the test ends, however it ends.
struct Sensor(Child);

impl Drop for Sensor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET with every step bounded by `LIVENESS`: status and body.
fn get(port: u16, target: &str) -> Result<(u16, Vec<u8>), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, LIVENESS).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(LIVENESS))
        .and_then(|()| s.set_write_timeout(Some(LIVENESS)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read ({} bytes so far): {e}", raw.len()))?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of head")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let mut body = raw[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body)?;
    }
    Ok((status, body))
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line")?;
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16)
            .map_err(|e| format!("chunk size: {e}"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).ok_or("short chunk")?);
        b = b.get(size + 2..).ok_or("chunk end")?;
    }
}

fn json(port: u16, target: &str) -> serde_json::Value {
    let (status, body) = get(port, target).unwrap_or_else(|e| panic!("GET {target}: {e}"));
    assert_eq!(
        status,
        200,
        "GET {target}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {target}: not JSON: {e}"))
}

/// A field of /proc/PID/status, as a number (kB for memory fields).
fn proc_status(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the sensor runs");
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

fn raise_nofile(at_least: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    // Root may raise the hard limit too (CI runs as root); anyone may raise the soft one.
    let want = hard.max(at_least);
    if soft < want && setrlimit(Resource::RLIMIT_NOFILE, want, want).is_err() {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(
        soft >= at_least,
        "RLIMIT_NOFILE is {soft}, below the {at_least} this test needs (run as root, or raise it)"
    );
}

/// Whether the sensor still has an established connection from `client` to `port` (`ss`).
fn server_holds(port: u16, client: u16) -> bool {
    let out = Command::new("ss")
        .args(["-tnH", "state", "established"])
        .arg(format!("( sport = :{port} and dport = :{client} )"))
        .output()
        .expect("ss (iproute2)");
    !out.stdout.is_empty()
}

fn wait_for(what: &str, limit: Duration, sensor: &mut Sensor, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        if let Ok(Some(status)) = sensor.0.try_wait() {
            panic!("the sensor ended ({status}) while waiting for {what}");
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(-1.0)
}

/// Replays `capture` serving metrics and lingering; returns once the replay is done.
fn lingering_replay(capture: &std::path::Path, report: &std::path::Path) -> (Sensor, u16) {
    let port = free_port();
    let mut sensor = Sensor(
        bin()
            .args(["replay", "-q", "--workers", "1", "--linger", "900"])
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--report")
            .arg(report)
            .arg(capture)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts vendorwatch replay"),
    );
    wait_for(
        "the replay to finish",
        Duration::from_secs(600),
        &mut sensor,
        || get(port, "/healthz").is_ok_and(|(_, b)| b.starts_with(b"unhealthy: replay finished")),
    );
    (sensor, port)
}

fn ips(report: &serde_json::Value) -> Vec<String> {
    report["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| h["ip"].as_str().expect("ip").to_string())
        .collect()
}

/// Walks `/api/hosts?limit=N` by `next_after`: every host, in order.
fn walk_pages(port: u16, limit: usize) -> Vec<serde_json::Value> {
    let mut hosts = Vec::new();
    let mut target = format!("/api/hosts?limit={limit}");
    loop {
        let page = json(port, &target);
        let got = page["hosts"].as_array().expect("hosts");
        assert!(got.len() <= limit, "{target}: {} hosts", got.len());
        hosts.extend(got.iter().cloned());
        match page["next_after"].as_str() {
            Some(next) => {
                assert_eq!(got.len(), limit, "{target}: a short page before the last");
                target = format!("/api/hosts?limit={limit}&after={next}");
            }
            None => return hosts,
        }
    }
}

/// A client that asks for the host report and never reads it (after its first byte, which
/// proves the answer has started), with a small receive buffer.
fn non_reading_report_client(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    // Set after connecting, it still caps the buffer (and stops its autotuning).
    nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBuf, &4096).expect("SO_RCVBUF");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    s.write_all(b"GET /api/hosts HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("send");
    let mut first = [0u8; 1];
    s.read_exact(&mut first).expect("the answer starts");
    s
}

/// `STALLED_SCRAPES` clients that ask for `/metrics` (larger than their receive buffers,
/// with 500 per-host series) and never read.
fn stalled_scrapes(port: u16) -> Vec<TcpStream> {
    (0..STALLED_SCRAPES)
        .filter_map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBuf, &1024).ok()?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .ok()?;
            Some(s)
        })
        .collect()
}

/// Sends a request whose one header is `HUGE_HEADER` bytes, over and over, until `stop`.
/// Returns the most bytes any one connection took.
fn header_bomber(port: u16, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) -> u64 {
    let block = vec![b'a'; 64 * 1024];
    let mut most = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, LIVENESS) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let _ = s.set_write_timeout(Some(LIVENESS));
        let mut this = 0u64;
        if s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Fill: ")
            .is_ok()
        {
            while this < HUGE_HEADER && !stop.load(Ordering::Relaxed) {
                match s.write(&block) {
                    Ok(n) if n > 0 => {
                        this += n as u64;
                        sent.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
        }
        most = most.max(this);
        std::thread::sleep(Duration::from_millis(50));
    }
    most
}

/// Opens `SLOW_CLIENTS` connections, each sending half a request head, and keeps adding
/// one byte to each every two seconds until `stop`.
fn slow_clients(port: u16, stop: Arc<AtomicBool>, opened: Arc<AtomicU64>) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut held: Vec<TcpStream> = Vec::with_capacity(SLOW_CLIENTS);
    for _ in 0..SLOW_CLIENTS {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, LIVENESS) {
            let _ = s.set_nonblocking(true);
            let _ = s.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
            held.push(s);
        }
        opened.fetch_add(1, Ordering::Relaxed);
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_secs(2));
        held.retain_mut(|s| s.write(b"a").is_ok());
    }
}

#[test]
fn endpoint_keeps_answering_under_slow_clients_a_huge_header_and_a_stalled_report() {
    raise_nofile((SLOW_CLIENTS + STALLED_SCRAPES) as u64 + 1_024);
    let tmp = tempfile::tempdir().expect("tmp");
    let capture = tmp.path().join("names.pcap");
    let mut m = Mixer::create(
        &capture,
        &Legit::load(&[]),
        u64::from(HOSTS * NAMES_PER_HOST * 2),
    );
    flood_names(&mut m, &mut Rng::new(13), HOSTS, NAMES_PER_HOST);
    m.finish();
    let report_path = tmp.path().join("report.json");
    let (mut sensor, port) = lingering_replay(&capture, &report_path);
    let pid = sensor.0.id();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).expect("report")).expect("JSON");
    assert_eq!(
        ips(&report).len(),
        HOSTS as usize,
        "every flood host is detected"
    );

    // Before: the whole report once, to know its size; the sensor's threads and peak memory.
    let (status, whole) = get(port, "/api/hosts").expect("/api/hosts");
    assert_eq!(status, 200);
    eprintln!("/api/hosts: {} bytes", whole.len());
    assert!(
        whole.len() > 8 << 20,
        "the report ({} bytes) is larger than what socket buffers hold",
        whole.len()
    );
    drop(whole);
    let threads_before = proc_status(pid, "Threads");
    // The replay's own peak (the report written at its end) is not the endpoint's: the
    // high-water mark starts again from the memory in use now (proc(5), clear_refs).
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
    let rss_before = proc_status(pid, "VmRSS");
    eprintln!("before the abuse: {threads_before} threads, VmRSS {rss_before} kB");

    // The abuse, all at once.
    let stalled = non_reading_report_client(port);
    let stalled_since = Instant::now();
    let stalled_port = stalled.local_addr().expect("local address").port();
    let scrapes = stalled_scrapes(port);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let bomber = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        std::thread::spawn(move || header_bomber(port, stop, sent))
    };
    let opened = Arc::new(AtomicU64::new(0));
    let slow = {
        let (stop, opened) = (Arc::clone(&stop), Arc::clone(&opened));
        std::thread::spawn(move || slow_clients(port, stop, opened))
    };
    wait_for(
        "the header sender to get going",
        Duration::from_secs(60),
        &mut sensor,
        || sent.load(Ordering::Relaxed) >= 1 << 20,
    );
    // While the slow clients connect, and once they all hold their connections.
    let mut probes = 0;
    let mut threads_most = 0;
    let mut all_open_probes = 0;
    while all_open_probes < 3 {
        let all_open = opened.load(Ordering::Relaxed) >= SLOW_CLIENTS as u64;
        let (status, body) = get(port, "/healthz").unwrap_or_else(|e| {
            panic!(
                "/healthz under abuse (probe {probes}, {} slow clients so far): {e}",
                opened.load(Ordering::Relaxed)
            )
        });
        assert_eq!(
            (status, String::from_utf8_lossy(&body).trim()),
            (503, "unhealthy: replay finished"),
            "/healthz says how the sensor is"
        );
        let (status, _) = get(port, "/metrics").unwrap_or_else(|e| panic!("/metrics: {e}"));
        assert_eq!(status, 200);
        threads_most = threads_most.max(proc_status(pid, "Threads"));
        // Answered while the report reader still stalls in its slot (once it has run past
        // the write timeout, it is gone, as it should be).
        assert!(
            server_holds(port, stalled_port) || stalled_since.elapsed() >= WRITE_TIMEOUT,
            "the stalled /api/hosts reader lost its slot before its write timeout"
        );
        probes += 1;
        if all_open {
            all_open_probes += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let metrics = String::from_utf8(get(port, "/metrics").expect("/metrics").1).expect("UTF-8");
    let hwm_during = proc_status(pid, "VmHWM");
    eprintln!(
        "under abuse: {probes} probes answered, at most {threads_most} threads, VmHWM {hwm_during} kB, \
         {} MB of header sent",
        sent.load(Ordering::Relaxed) >> 20
    );
    // The slow clients still holding slots run out of time for their heads, and the stalled
    // report reader is cut off once it has taken nothing for the write timeout.
    let shed = |m: &str, reason: &str| {
        sample(
            m,
            &format!("vendorwatch_http_shed_total{{reason=\"{reason}\"}}"),
        )
    };
    wait_for(
        "the header and write timeouts",
        Duration::from_secs(120),
        &mut sensor,
        || {
            let m = get(port, "/metrics").map(|r| r.1).unwrap_or_default();
            let m = String::from_utf8_lossy(&m);
            shed(&m, "header_timeout") >= 1.0 && shed(&m, "write_timeout") >= 1.0
        },
    );
    stop.store(true, Ordering::Relaxed);
    let most_per_connection = bomber.join().expect("bomber");
    slow.join().expect("slow clients");
    drop(stalled);
    drop(scrapes);

    assert!(
        threads_most <= threads_before + THREAD_SLACK,
        "threads grew from {threads_before} to {threads_most}"
    );
    assert!(
        hwm_during < rss_before + MAX_ABUSE_MIB * 1024,
        "peak memory under abuse {hwm_during} kB, from {rss_before} kB before"
    );
    assert!(
        most_per_connection < HUGE_HEADER,
        "a connection took the whole {HUGE_HEADER}-byte header ({most_per_connection})"
    );
    for reason in ["evicted", "head_too_large"] {
        let n = shed(&metrics, reason);
        assert!(n >= 1.0, "shed {reason}: {n}\n{metrics}");
    }

    // After: everything serves, the report whole and page by page is the report file's.
    let (status, _) = get(port, "/healthz").expect("/healthz after");
    assert_eq!(status, 503);
    let (status, _) = get(port, "/metrics").expect("/metrics after");
    assert_eq!(status, 200);
    let served = json(port, "/api/hosts");
    assert_eq!(
        served["hosts"], report["hosts"],
        "/api/hosts is the report's hosts"
    );
    assert_eq!(served["vendors"], report["vendors"]);
    let paged = walk_pages(port, 700);
    assert_eq!(serde_json::Value::from(paged), report["hosts"]);
    assert!(
        sensor.0.try_wait().expect("wait").is_none(),
        "still running"
    );
}

#[test]
fn api_hosts_pages_by_address_and_names_a_bad_query() {
    let tmp = tempfile::tempdir().expect("tmp");
    let report_path = tmp.path().join("report.json");
    let dir = pcap_path("tls.pcap")
        .parent()
        .expect("pcaps/")
        .to_path_buf();
    let (_sensor, port) = lingering_replay(&dir, &report_path);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).expect("report")).expect("JSON");
    let all = ips(&report);
    assert!(
        all.len() >= 5,
        "the golden captures have several hosts: {all:?}"
    );

    let first = json(port, "/api/hosts?limit=2");
    assert_eq!(ips(&first), all[..2]);
    assert_eq!(first["next_after"], all[1].as_str());
    assert_eq!(first["vendors"], report["vendors"]);
    let rest = json(port, &format!("/api/hosts?after={}", all[1]));
    assert_eq!(ips(&rest), all[2..]);
    assert_eq!(rest["next_after"], serde_json::Value::Null);
    let last = all.last().expect("a host");
    assert_eq!(
        ips(&json(port, &format!("/api/hosts?after={last}&limit=5"))),
        Vec::<String>::new()
    );
    assert_eq!(
        serde_json::Value::from(walk_pages(port, 3)),
        report["hosts"]
    );
    // The unpaged answer has the report's shape, without a cursor.
    let whole = json(port, "/api/hosts");
    assert_eq!(whole["hosts"], report["hosts"]);
    assert!(whole.get("next_after").is_none());
    // A limit with more digits than a machine word asks for every host, not a bad request.
    let huge = json(port, "/api/hosts?limit=99999999999999999999999");
    assert_eq!(huge["hosts"], report["hosts"]);

    for (query, says) in [
        ("limit=0", "limit=\"0\""),
        ("after=10.0.0", "after=\"10.0.0\""),
        ("page=2", "unknown parameter \"page\""),
    ] {
        let (status, body) = get(port, &format!("/api/hosts?{query}")).expect("answer");
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(says), "{query}: {body}");
    }
}

/// Destroys the listening socket on `port` (`ss -K`, needs root and a kernel with
/// CONFIG_INET_DIAG_DESTROY); false when the kernel would not.
fn destroy_listener(port: u16) -> bool {
    let filter = format!("sport = :{port}");
    let killed = Command::new("ss")
        .args(["-K", "-t", "state", "listening"])
        .arg(&filter)
        .output()
        .expect("ss (iproute2)");
    assert!(killed.status.success(), "ss -K: {killed:?}");
    let left = Command::new("ss")
        .args(["-H", "-t", "state", "listening"])
        .arg(&filter)
        .output()
        .expect("ss");
    left.stdout.is_empty()
}

/// Waits for the sensor to exit by itself; its exit code and stderr.
fn exits_by_itself(mut sensor: Sensor, stderr: &std::path::Path) -> (Option<i32>, String) {
    let start = Instant::now();
    let status = loop {
        if let Some(status) = sensor.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "still running 60 s after its endpoint died; stderr:\n{}",
            std::fs::read_to_string(stderr).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    (
        status.code(),
        std::fs::read_to_string(stderr).unwrap_or_default(),
    )
}

#[test]
fn a_sensor_whose_listener_dies_says_so_and_exits_1() {
    if !is_root() {
        eprintln!("SKIPPED: destroying a socket (ss -K) and live capture need root");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");

    // Live on the loopback interface, under the seccomp filter.
    let port = free_port();
    let stderr = tmp.path().join("live.stderr");
    let mut sensor = Sensor(
        bin()
            .args(["live", "-i", "lo", "--workers", "1", "--user", "nobody"])
            .args(["--bpf", "udp port 9"])
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("starts vendorwatch live"),
    );
    wait_for("/healthz 200", Duration::from_secs(60), &mut sensor, || {
        get(port, "/healthz").is_ok_and(|(s, _)| s == 200)
    });
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert!(log.contains("seccomp filter on"), "{log}");
    assert_eq!(get(port, "/metrics").expect("/metrics").0, 200);
    assert_eq!(
        json(port, "/api/hosts?limit=1")["next_after"],
        serde_json::Value::Null
    );
    if !destroy_listener(port) {
        eprintln!("SKIPPED: this kernel cannot destroy sockets (CONFIG_INET_DIAG_DESTROY)");
        return;
    }
    let (code, log) = exits_by_itself(sensor, &stderr);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "the metrics endpoint on http://127.0.0.1:{port} stopped"
        )),
        "said at once: {log}"
    );
    assert!(
        log.contains("the metrics endpoint failed"),
        "and at the end: {log}"
    );

    // A replay lingering to be scraped stops lingering, with the same status.
    let port = free_port();
    let stderr = tmp.path().join("replay.stderr");
    let mut sensor = Sensor(
        bin()
            .args(["replay", "-q", "--linger", "900", "--metrics-addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg(pcap_path("tls.pcap"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("starts vendorwatch replay"),
    );
    wait_for(
        "the replay to finish",
        Duration::from_secs(60),
        &mut sensor,
        || get(port, "/healthz").is_ok_and(|(_, b)| b.starts_with(b"unhealthy: replay finished")),
    );
    assert!(destroy_listener(port), "destroyed before");
    let (code, log) = exits_by_itself(sensor, &stderr);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("the metrics endpoint failed during the run"),
        "{log}"
    );
}
