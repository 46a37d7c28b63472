//! The sensor's HTTP endpoint: `/metrics` (Prometheus), `/healthz` and `/api/hosts` (the
//! host report), built so that no client, however hostile, can take it down or take the
//! sensor's memory with it.
//!
//! ## What it runs on, and why
//! `hyper` 1.x (HTTP/1.1 only) on a tokio runtime of **one thread** (`current_thread`), the
//! `metrics` thread, created at start-up before the seccomp filter is installed. An async
//! server holds a waiting connection as a small task, not a thread: 8,000 slow clients cost
//! 8,000 sockets and a few KiB each, and the thread count never moves (the endpoint this
//! replaces, `tiny_http`, spawned a thread per connection and panicked, leaving the port
//! closed, when it could not get one). One thread is enough for what is served: a scrape is
//! a few milliseconds of work (and shared, see below), and the one long answer, `/api/hosts`, is produced in chunks
//! of `REPORT_CHUNK_BYTES` that yield to the other connections between them. hyper is the
//! HTTP implementation most of the Rust ecosystem rests on (parsing, keep-alive, HEAD,
//! HTTP/1.0 clients, `431` for oversized heads); a hand-written server or a pool of
//! blocking workers would have to re-earn that, and a blocking pool ties a worker to every
//! slow client. The runtime only needs epoll, eventfd and `accept4`, which the seccomp
//! deny-list leaves alone (`capture::sandbox`).
//!
//! ## Bounds (each a named constant below)
//! - **Request head**: at most `MAX_REQUEST_HEAD_BYTES` and `MAX_REQUEST_HEADERS` headers,
//!   else `431` and the connection is closed; the head must arrive within `HEADER_TIMEOUT`
//!   (also the keep-alive idle limit). Request bodies are never read: hyper discards a small
//!   one and closes the connection on a larger one.
//! - **Connections**: at most `MAX_CONNECTIONS`, and never more than half the process's
//!   file-descriptor limit (the sensor's own files must still open). A new connection
//!   beyond that takes the slot of the oldest one that is not in the middle of an answer
//!   (a slow client still sending its head, or an idle keep-alive), or, when every one is
//!   (clients that asked and do not read), of the oldest: attackers holding slots are
//!   pushed out by anyone who connects, the way nginx reuses idle connections when it runs
//!   out, and the accept loop reads what its new connections sent before it takes more
//!   (`ACCEPT_BATCH`), so a health check is answered before a flood can push it out.
//! - **Writes**: a client that reads nothing for `WRITE_TIMEOUT` is disconnected.
//! - **`/metrics`**: rendered at most once per `METRICS_REUSE` (or four times as long as the
//!   last rendering took): a flood of scrapes cannot keep the thread from `/healthz`, and
//!   every answer of the same moment shares one buffer, however slowly it is read.
//! - **`/api/hosts`**: never built whole. The addresses are listed, then hosts are read
//!   from the live table and serialised one chunk at a time, as fast as the client reads;
//!   at most `MAX_REPORT_STREAMS` at once (more get `503` with `Retry-After`). A client that
//!   never reads holds one chunk and the address list until `WRITE_TIMEOUT`, and blocks
//!   nobody. `?limit=N&after=IP` pages through the hosts in address order (README).
//!
//! What was cut short is counted: `vendorwatch_http_shed_total{reason}` (reasons from
//! `Shed::reason`), with `vendorwatch_http_connections_open`.
//!
//! ## When the listener fails
//! Binding fails at start-up with the address in the message. If accepting later fails for
//! good (the socket was closed under it, or the thread panicked), the thread says so on
//! the log (stderr) at once and `Server::failure` reports it: `live` then stops (so a supervisor
//! restarts it with a working endpoint) and every run ends with exit status 1. Transient
//! accept errors (out of file descriptors, a connection reset before it was accepted) are
//! counted and retried.

use crate::output;
use crate::pipeline::Shared;
use crate::serve::exporter;
use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// Connections held at once. Prometheus, a dashboard and an operator's curl need a handful;
/// this leaves room for many while a connection costs its head buffer (at most 8 KiB), a
/// task, and its answer (a `/metrics` text shared with every scrape of the same moment, see
/// `METRICS_REUSE`), so the worst case is a few MB.
pub const MAX_CONNECTIONS: usize = 1024;
/// Of the process's file-descriptor limit (`RLIMIT_NOFILE`), the endpoint takes at most
/// 1/`FD_SHARE` for connections: the alerts file, its rotation, the inventory and syslog
/// must still be able to open theirs.
const FD_SHARE: u64 = 2;
/// Request line and headers, in bytes. Apache's per-field limit is 8190, nginx's default
/// buffer 1 KiB grown to 8 KiB; a Prometheus scrape sends about 300 bytes. (hyper's own
/// buffer cannot be smaller than 8 KiB, which is also what a connection costs at most.)
pub const MAX_REQUEST_HEAD_BYTES: usize = 8 * 1024;
/// Headers in a request (hyper's default is 100; scrapers and curl send fewer than 10).
pub const MAX_REQUEST_HEADERS: usize = 32;
/// The whole request head must arrive within this, counted from when the server starts
/// waiting for it: slow-header clients and idle keep-alive connections are closed after it.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that accepts no byte of its answer for this long is disconnected.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// `/api/hosts` answers in progress at once: each holds the list of addresses (17 bytes a
/// host) and one chunk.
pub const MAX_REPORT_STREAMS: usize = 2;
/// `/api/hosts` is serialised this many bytes at a time (one host may overshoot it, by at
/// most the size of one host's entry, itself bounded by the host table's caps).
pub const REPORT_CHUNK_BYTES: usize = 64 * 1024;
/// A `/metrics` text rendered less than this long ago is served again rather than rendered
/// anew: a flood of scrapes costs one rendering per period (the one answer that takes real
/// CPU on the endpoint's only thread), and the answers held for clients that do not read
/// share one buffer. Prometheus stamps a scrape when it starts and scrapes every few
/// seconds: 100 ms is below anything it can tell apart.
pub const METRICS_REUSE: Duration = Duration::from_millis(100);
/// A rendering that took longer (a large host table) is reused for this many times its
/// own duration, so that however many scrapes come, rendering takes at most a fifth of the
/// endpoint's thread and `/healthz` is never queued behind a row of them.
const METRICS_REUSE_PER_RENDER: u32 = 4;
/// Pending connections the kernel queues before the accept loop takes them: a burst of
/// connections must not make a health check wait for a SYN retransmission.
const LISTEN_BACKLOG: u32 = 4096;
/// Connections accepted in a row before the accept loop lets every connection with data
/// waiting be served: under a connection flood, a new client's request is read long
/// before `MAX_CONNECTIONS` newer connections could push it out of its slot.
const ACCEPT_BATCH: usize = 16;
/// Pause before accepting again after a transient accept error (out of descriptors, …).
const ACCEPT_RETRY: Duration = Duration::from_millis(20);

/// Why the endpoint cut a connection or request short (`vendorwatch_http_shed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Shed {
    #[error("connection closed to give its slot to a newer one")]
    Evicted,
    #[error(
        "request head larger than {MAX_REQUEST_HEAD_BYTES} bytes or {MAX_REQUEST_HEADERS} headers"
    )]
    HeadTooLarge,
    #[error("request head not complete within {HEADER_TIMEOUT:?}")]
    HeaderTimeout,
    #[error("client read nothing of its answer for {WRITE_TIMEOUT:?}")]
    WriteTimeout,
    #[error("malformed request")]
    BadRequest,
    #[error("/api/hosts refused: {MAX_REPORT_STREAMS} answers already in progress")]
    ReportBusy,
    #[error("accepting a connection failed (transient)")]
    AcceptError,
}

impl Shed {
    pub const ALL: [Shed; 7] = [
        Shed::Evicted,
        Shed::HeadTooLarge,
        Shed::HeaderTimeout,
        Shed::WriteTimeout,
        Shed::BadRequest,
        Shed::ReportBusy,
        Shed::AcceptError,
    ];

    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Shed::Evicted => "evicted",
            Shed::HeadTooLarge => "head_too_large",
            Shed::HeaderTimeout => "header_timeout",
            Shed::WriteTimeout => "write_timeout",
            Shed::BadRequest => "bad_request",
            Shed::ReportBusy => "report_busy",
            Shed::AcceptError => "accept_error",
        }
    }
}

/// The endpoint's own series, registered with the sensor's.
struct Stats {
    shed: prometheus::IntCounterVec,
    open: prometheus::IntGauge,
}

impl Stats {
    fn new(registry: &prometheus::Registry) -> Result<Stats, prometheus::Error> {
        let shed = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "vendorwatch_http_shed_total",
                "Connections and requests the metrics endpoint cut short to protect itself, by reason.",
            ),
            &["reason"],
        )?;
        for s in Shed::ALL {
            shed.with_label_values(&[s.reason()]);
        }
        let open = prometheus::IntGauge::new(
            "vendorwatch_http_connections_open",
            "Connections the metrics endpoint holds now.",
        )?;
        registry.register(Box::new(shed.clone()))?;
        registry.register(Box::new(open.clone()))?;
        Ok(Stats { shed, open })
    }

    fn count(&self, s: Shed) {
        self.shed.with_label_values(&[s.reason()]).inc();
    }
}

/// Which hosts `/api/hosts` returns: `?after=IP&limit=N`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Page {
    /// Only hosts whose address sorts after this one (the previous page's `next_after`).
    pub after: Option<IpAddr>,
    /// At most this many hosts (at least 1); none: every host.
    pub limit: Option<usize>,
}

/// A query string `/api/hosts` cannot answer (`400`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("unknown parameter {0:?} (/api/hosts takes after=IP and limit=N)")]
    Unknown(String),
    #[error("parameter {0:?} given twice")]
    Repeated(&'static str),
    #[error("after={0:?} is not an IP address")]
    After(String),
    #[error("limit={0:?} is not a whole number of at least 1")]
    Limit(String),
}

impl QueryError {
    pub fn reason(&self) -> &'static str {
        match self {
            QueryError::Unknown(_) => "unknown_parameter",
            QueryError::Repeated(_) => "repeated_parameter",
            QueryError::After(_) => "bad_after",
            QueryError::Limit(_) => "bad_limit",
        }
    }
}

/// `%XX` escapes and `+` decoded; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

impl Page {
    /// Reads the query string (without the `?`).
    pub fn parse(query: Option<&str>) -> Result<Page, QueryError> {
        let mut page = Page::default();
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(raw);
            // What the error quotes: the decoded value, or the raw one if it does not decode.
            let shown = || value.clone().unwrap_or_else(|| raw.to_string());
            match key {
                "after" => {
                    if page.after.is_some() {
                        return Err(QueryError::Repeated("after"));
                    }
                    let ip = value.as_deref().and_then(|v| v.parse::<IpAddr>().ok());
                    page.after = Some(ip.ok_or_else(|| QueryError::After(shown()))?);
                }
                "limit" => {
                    if page.limit.is_some() {
                        return Err(QueryError::Repeated("limit"));
                    }
                    // More digits than a usize holds ask for more hosts than there can be.
                    let n = value.as_deref().and_then(|v| match v.parse::<usize>() {
                        Ok(n) => Some(n),
                        Err(_) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                            Some(usize::MAX)
                        }
                        Err(_) => None,
                    });
                    match n {
                        Some(n) if n >= 1 => page.limit = Some(n),
                        _ => return Err(QueryError::Limit(shown())),
                    }
                }
                _ => return Err(QueryError::Unknown(key.chars().take(64).collect())),
            }
        }
        Ok(page)
    }

    fn paged(&self) -> bool {
        self.after.is_some() || self.limit.is_some()
    }

    /// This page's addresses out of all of them (sorted), and the `next_after` cursor when
    /// more hosts follow.
    fn select(&self, mut all: Vec<IpAddr>) -> (Vec<IpAddr>, Option<IpAddr>) {
        if let Some(after) = self.after {
            let start = all.partition_point(|ip| *ip <= after);
            all.drain(..start);
        }
        let mut next = None;
        if let Some(limit) = self.limit {
            if all.len() > limit {
                all.truncate(limit);
                next = all.last().copied();
            }
        }
        (all, next)
    }
}

/// What every connection's handler needs.
struct Ctx {
    shared: Arc<Shared>,
    vendors: Vec<String>,
    /// The packet times read so far, for the report's `first_packet` and `last_packet`.
    span: output::PacketSpan,
    registry: prometheus::Registry,
    stats: Stats,
    reports: Arc<Semaphore>,
    /// The last `/metrics` text, until when it is served again, and its content type.
    rendered: Mutex<Option<(std::time::Instant, Bytes, HeaderValue)>>,
}

impl Ctx {
    /// The `/metrics` text: the last one while it may be reused (`METRICS_REUSE`).
    fn metrics(&self) -> Result<(Bytes, HeaderValue), prometheus::Error> {
        let started = std::time::Instant::now();
        if let Ok(Some((until, body, content_type))) = self.rendered.lock().map(|r| r.clone()) {
            if started < until {
                return Ok((body, content_type));
            }
        }
        let (buf, content_type) = exporter::render(&self.registry)?;
        let body = Bytes::from(buf);
        let content_type =
            HeaderValue::from_str(&content_type).unwrap_or(HeaderValue::from_static("text/plain"));
        let done = std::time::Instant::now();
        let reuse = METRICS_REUSE.max((done - started) * METRICS_REUSE_PER_RENDER);
        if let Ok(mut r) = self.rendered.lock() {
            *r = Some((done + reuse, body.clone(), content_type.clone()));
        }
        Ok((body, content_type))
    }
}

/// The response body: a whole buffer, or the host report produced chunk by chunk. It holds
/// its connection's "answering" mark until hyper is done with it.
struct Body {
    inner: Inner,
    _answering: Answering,
}

enum Inner {
    Full(Option<Bytes>),
    Report(Box<ReportStream>),
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.inner {
            Inner::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Inner::Report(r) => r.poll_chunk(cx).map(|c| c.map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(data) => data.is_none(),
            Inner::Report(r) => r.done(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.inner {
            Inner::Full(Some(d)) => http_body::SizeHint::with_exact(d.len() as u64),
            Inner::Full(None) => http_body::SizeHint::with_exact(0),
            Inner::Report(_) => http_body::SizeHint::default(),
        }
    }
}

/// `/api/hosts`, streamed: `{"hosts":[` then the hosts a chunk at a time, read from the
/// live table when their turn comes, then the rest of the report's fields.
struct ReportStream {
    shared: Arc<Shared>,
    head: Option<Bytes>,
    addresses: std::vec::IntoIter<IpAddr>,
    /// Sorted, for `role`.
    resolvers: Vec<IpAddr>,
    /// Why each resolver holds its role.
    roles: Vec<(IpAddr, crate::detect::resolvers::ResolverInfo)>,
    tail: Option<Bytes>,
    first: bool,
    /// A chunk was just produced: give the other connections a turn before the next one.
    yield_next: bool,
    _permit: OwnedSemaphorePermit,
}

impl ReportStream {
    fn new(ctx: &Ctx, page: &Page, permit: OwnedSemaphorePermit) -> ReportStream {
        let mut resolvers = ctx.shared.detector.resolvers();
        resolvers.sort_unstable();
        let (addresses, next) = page.select(ctx.shared.hosts.addresses());
        let (first_packet, last_packet) = ctx.span.lock().map(|g| *g).unwrap_or_default();
        let meta = output::ReportMeta {
            first_packet,
            last_packet,
            vendors: ctx.vendors.clone(),
            packs: ctx.shared.detector.rules().packs.clone(),
            resolver_roles: Vec::new(),
            known_before: None,
        };
        let roles = ctx.shared.detector.resolver_roles().list();
        let mut rest = output::report_head(&resolvers, &meta);
        if page.paged() {
            rest.next_after = Some(next);
        }
        // `rest` is an object of at least `generated_by`: "{…}" becomes "],…}".
        let rest = serde_json::to_string(&rest).unwrap_or_default();
        let tail = match rest.strip_prefix('{') {
            Some(fields) if fields != "}" => format!("],{fields}"),
            _ => "]}".to_string(),
        };
        ReportStream {
            shared: Arc::clone(&ctx.shared),
            head: Some(Bytes::from_static(b"{\"hosts\":[")),
            addresses: addresses.into_iter(),
            resolvers,
            roles,
            tail: Some(Bytes::from(tail)),
            first: true,
            yield_next: false,
            _permit: permit,
        }
    }

    fn done(&self) -> bool {
        self.head.is_none() && self.addresses.len() == 0 && self.tail.is_none()
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(head));
        }
        if self.yield_next {
            // Each chunk is CPU work on the endpoint's only thread: let `/healthz` and the
            // scrapes in between.
            self.yield_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let mut buf = Vec::with_capacity(REPORT_CHUNK_BYTES + REPORT_CHUNK_BYTES / 4);
        while buf.len() < REPORT_CHUNK_BYTES {
            let Some(ip) = self.addresses.next() else {
                break;
            };
            // A host shed since the list was made is skipped.
            let Some(host) = self.shared.hosts.host(ip) else {
                continue;
            };
            let is_resolver = self.resolvers.binary_search(&ip).is_ok();
            let mut entry = output::report_host(ip, &host, is_resolver);
            if is_resolver {
                entry.resolver = self
                    .roles
                    .iter()
                    .find(|(r, _)| *r == ip)
                    .map(|(_, info)| info.into());
            }
            if !self.first {
                buf.push(b',');
            }
            // Writing JSON into a Vec cannot fail.
            if serde_json::to_writer(&mut buf, &entry).is_ok() {
                self.first = false;
            }
        }
        if !buf.is_empty() {
            self.yield_next = true;
            return Poll::Ready(Some(Bytes::from(buf)));
        }
        Poll::Ready(self.tail.take())
    }
}

/// A connection's state shared with its slot.
#[derive(Default)]
struct SlotState {
    /// Answers being written now (a connection answering is never evicted).
    answering: AtomicUsize,
    /// Requests received so far.
    served: AtomicUsize,
}

/// Marks a connection as answering while a response body exists.
struct Answering(Arc<SlotState>);

impl Answering {
    fn new(state: &Arc<SlotState>) -> Answering {
        state.answering.fetch_add(1, Ordering::Relaxed);
        Answering(Arc::clone(state))
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answering.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Slot {
    state: Arc<SlotState>,
    abort: tokio::task::AbortHandle,
}

/// The open connections, oldest first (ids grow with every accept).
struct Slots {
    cap: usize,
    next_id: u64,
    open: BTreeMap<u64, Slot>,
}

impl Slots {
    /// Closes the oldest connection that is not answering or, when every one is (clients
    /// that asked and do not read), the oldest of all: a newcomer always gets a slot.
    /// False when there is no connection to close.
    fn evict_one(slots: &Mutex<Slots>) -> bool {
        let victim = match slots.lock() {
            Ok(mut s) => {
                let idle = s
                    .open
                    .iter()
                    .find(|(_, slot)| slot.state.answering.load(Ordering::Relaxed) == 0)
                    .map(|(id, _)| *id);
                let id = idle.or_else(|| s.open.keys().next().copied());
                id.and_then(|id| s.open.remove(&id))
            }
            Err(_) => None,
        };
        match victim {
            Some(slot) => {
                slot.abort.abort();
                true
            }
            None => false,
        }
    }
}

/// Removes its connection's slot when the connection's task ends or is aborted.
struct SlotGuard {
    id: u64,
    slots: Arc<Mutex<Slots>>,
    ctx: Arc<Ctx>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.slots.lock() {
            s.open.remove(&self.id);
        }
        self.ctx.stats.open.dec();
    }
}

/// The socket, with a deadline on writes: `WRITE_TIMEOUT` without progress fails the write
/// (hyper then closes the connection).
struct Deadline<T> {
    io: T,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> Deadline<T> {
    fn new(io: T) -> Self {
        Deadline { io, stalled: None }
    }

    fn progress<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match r {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let sleep = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        Shed::WriteTimeout,
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Deadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Deadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.progress(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.progress(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.progress(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_shutdown(cx);
        self.progress(cx, r)
    }
}

fn full(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: HeaderValue,
    answering: Answering,
) -> Response<Body> {
    let mut r = Response::new(Body {
        inner: Inner::Full(Some(body.into())),
        _answering: answering,
    });
    *r.status_mut() = status;
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, content_type);
    r
}

fn text(status: StatusCode, body: String, answering: Answering) -> Response<Body> {
    let plain = HeaderValue::from_static("text/plain; charset=utf-8");
    full(status, body, plain, answering)
}

/// Answers one request.
fn respond(req: &Request<Incoming>, ctx: &Ctx, answering: Answering) -> Response<Body> {
    let path = req.uri().path();
    let known = matches!(path, "/metrics" | "/healthz" | "/api/hosts");
    if !known {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /api/hosts\n".into(),
            answering,
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD\n".into(),
            answering,
        );
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => metrics_response(ctx, answering),
        "/healthz" => health_response(ctx, answering),
        // "/api/hosts"
        _ => hosts_response(req, ctx, answering),
    }
}

/// `/metrics`: the registry in the text format asked for.
fn metrics_response(ctx: &Ctx, answering: Answering) -> Response<Body> {
    match ctx.metrics() {
        Ok((body, content_type)) => full(StatusCode::OK, body, content_type, answering),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding failed: {e}\n"),
            answering,
        ),
    }
}

/// `/healthz`: ok, or why the sensor is unhealthy.
fn health_response(ctx: &Ctx, answering: Answering) -> Response<Body> {
    match ctx
        .shared
        .counters
        .sensor
        .unhealthy
        .lock()
        .map(|u| u.clone())
    {
        Ok(None) => text(StatusCode::OK, "ok\n".into(), answering),
        Ok(Some(why)) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {why}\n"),
            answering,
        ),
        Err(_) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "unhealthy: state unavailable\n".into(),
            answering,
        ),
    }
}

/// `/api/hosts`: a page of the host report, streamed; refused while too many are being made.
fn hosts_response(req: &Request<Incoming>, ctx: &Ctx, answering: Answering) -> Response<Body> {
    let page = match Page::parse(req.uri().query()) {
        Ok(p) => p,
        Err(e) => {
            ctx.stats.count(Shed::BadRequest);
            return text(StatusCode::BAD_REQUEST, format!("{e}\n"), answering);
        }
    };
    let Ok(permit) = Arc::clone(&ctx.reports).try_acquire_owned() else {
        ctx.stats.count(Shed::ReportBusy);
        let mut r = text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("busy: {}\n", Shed::ReportBusy),
            answering,
        );
        r.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let mut r = Response::new(Body {
        inner: Inner::Report(Box::new(ReportStream::new(ctx, &page, permit))),
        _answering: answering,
    });
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Why hyper ended a connection, when it was the endpoint's doing.
fn shed_of(e: &hyper::Error) -> Option<Shed> {
    use std::error::Error as _;
    if e.is_parse_too_large() {
        return Some(Shed::HeadTooLarge);
    }
    if e.is_timeout() {
        return Some(Shed::HeaderTimeout);
    }
    if e.is_parse() || e.is_parse_status() {
        return Some(Shed::BadRequest);
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                return Some(Shed::WriteTimeout);
            }
        }
        source = s.source();
    }
    None
}

async fn serve_connection(stream: tokio::net::TcpStream, ctx: Arc<Ctx>, state: Arc<SlotState>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES.max(8192))
        .max_header_size(MAX_REQUEST_HEAD_BYTES)
        .max_headers(MAX_REQUEST_HEADERS);
    let service = {
        let ctx = Arc::clone(&ctx);
        let state = Arc::clone(&state);
        hyper::service::service_fn(move |req: Request<Incoming>| {
            state.served.fetch_add(1, Ordering::Relaxed);
            let response = respond(&req, &ctx, Answering::new(&state));
            std::future::ready(Ok::<_, Infallible>(response))
        })
    };
    let io = hyper_util::rt::TokioIo::new(Deadline::new(stream));
    if let Err(e) = http.serve_connection(io, service).await {
        match shed_of(&e) {
            // A keep-alive connection that served and then went quiet is no abuse.
            Some(Shed::HeaderTimeout) if state.served.load(Ordering::Relaxed) > 0 => {}
            Some(s) => ctx.stats.count(s),
            None => {}
        }
    }
}

/// Accept errors after which the socket will never accept again.
fn listener_is_dead(e: &io::Error) -> bool {
    use nix::libc;
    matches!(
        e.raw_os_error(),
        Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EFAULT)
    )
}

/// What to do when the endpoint cannot listen.
const BIND_ADVICE: &str = "(choose another --metrics-addr, or `off`)";

/// Why the endpoint could not start, or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("cannot start the metrics endpoint: {0}")]
    Runtime(io::Error),
    #[error("cannot serve metrics on {addr}: {source} {BIND_ADVICE}")]
    Bind { addr: String, source: io::Error },
    #[error("cannot serve metrics on {addr}: no address {BIND_ADVICE}")]
    NoAddress { addr: String },
    #[error("cannot serve metrics on {addr}: {source}")]
    LocalAddr { addr: String, source: io::Error },
    #[error("cannot register the endpoint's metrics: {0}")]
    Registry(prometheus::Error),
    #[error("cannot start the metrics thread: {0}")]
    Thread(io::Error),
    #[error("accepting connections failed: {0}")]
    Accept(io::Error),
    #[error("the connection table is poisoned")]
    Poisoned,
}

impl EndpointError {
    /// Short, fixed: a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            EndpointError::Runtime(_) => "runtime",
            EndpointError::Bind { .. } | EndpointError::NoAddress { .. } => "bind",
            EndpointError::LocalAddr { .. } => "local_addr",
            EndpointError::Registry(_) => "registry",
            EndpointError::Thread(_) => "thread",
            EndpointError::Accept(_) => "accept",
            EndpointError::Poisoned => "poisoned",
        }
    }
}

/// For the command layer, which still carries its errors as text.
impl From<EndpointError> for String {
    fn from(e: EndpointError) -> String {
        e.to_string()
    }
}

/// Runs until `stop` fires (Ok) or the listener fails for good (Err, with why).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    ctx: Arc<Ctx>,
    slots: Arc<Mutex<Slots>>,
    mut stop: oneshot::Receiver<()>,
) -> Result<(), EndpointError> {
    enum Next {
        Stop,
        Accepted(io::Result<(tokio::net::TcpStream, SocketAddr)>),
    }
    let mut accepted = 0usize;
    loop {
        accepted += 1;
        if accepted % ACCEPT_BATCH == 0 {
            // Deferred until the runtime has polled the sockets and run every task that
            // became ready: the requests already sent are read before more clients come in.
            tokio::task::yield_now().await;
        }
        let next = std::future::poll_fn(|cx| {
            if Pin::new(&mut stop).poll(cx).is_ready() {
                return Poll::Ready(Next::Stop);
            }
            listener.poll_accept(cx).map(Next::Accepted)
        })
        .await;
        let stream = match next {
            Next::Stop => return Ok(()),
            Next::Accepted(Ok((stream, _))) => stream,
            Next::Accepted(Err(e)) if listener_is_dead(&e) => {
                return Err(EndpointError::Accept(e));
            }
            Next::Accepted(Err(e)) => {
                ctx.stats.count(Shed::AcceptError);
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::EMFILE | nix::libc::ENFILE)
                ) && Slots::evict_one(&slots)
                {
                    ctx.stats.count(Shed::Evicted);
                }
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let full = slots.lock().map(|s| s.open.len() >= s.cap).unwrap_or(true);
        if full && Slots::evict_one(&slots) {
            ctx.stats.count(Shed::Evicted);
        }
        let _ = stream.set_nodelay(true);
        let Ok(mut s) = slots.lock() else {
            return Err(EndpointError::Poisoned);
        };
        let id = s.next_id;
        s.next_id += 1;
        let state = Arc::new(SlotState::default());
        ctx.stats.open.inc();
        let guard = SlotGuard {
            id,
            slots: Arc::clone(&slots),
            ctx: Arc::clone(&ctx),
        };
        let task_ctx = Arc::clone(&ctx);
        let task_state = Arc::clone(&state);
        let task = tokio::spawn(async move {
            let _guard = guard;
            serve_connection(stream, task_ctx, task_state).await;
        });
        s.open.insert(
            id,
            Slot {
                state,
                abort: task.abort_handle(),
            },
        );
    }
}

/// How many connections the file-descriptor limit leaves room for.
fn connection_cap() -> usize {
    use nix::sys::resource::{getrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) if soft != nix::sys::resource::RLIM_INFINITY => {
            let share = usize::try_from(soft / FD_SHARE).unwrap_or(MAX_CONNECTIONS);
            share.clamp(1, MAX_CONNECTIONS)
        }
        _ => MAX_CONNECTIONS,
    }
}

fn bind(addr: &str) -> Result<tokio::net::TcpListener, EndpointError> {
    let bind_error = |source| EndpointError::Bind {
        addr: addr.into(),
        source,
    };
    let candidates: Vec<SocketAddr> = addr.to_socket_addrs().map_err(bind_error)?.collect();
    let mut last = None;
    for a in &candidates {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        };
        let listening = socket.and_then(|s| {
            s.set_reuseaddr(true)?;
            s.bind(*a)?;
            s.listen(LISTEN_BACKLOG)
        });
        match listening {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => bind_error(e),
        None => EndpointError::NoAddress { addr: addr.into() },
    })
}

/// The HTTP endpoint, on its own thread.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    failure: Arc<Mutex<Option<String>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` and serves until `stop`. `vendors` is what the report lists as active.
    pub fn start(
        addr: &str,
        shared: Arc<Shared>,
        vendors: Vec<String>,
        span: output::PacketSpan,
    ) -> Result<Server, EndpointError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(EndpointError::Runtime)?;
        let listener = {
            let _entered = runtime.enter();
            bind(addr)?
        };
        let bound = listener
            .local_addr()
            .map_err(|source| EndpointError::LocalAddr {
                addr: addr.into(),
                source,
            })?;
        let registry = exporter::registry(&shared);
        let stats = Stats::new(&registry).map_err(EndpointError::Registry)?;
        let ctx = Arc::new(Ctx {
            shared,
            vendors,
            span,
            registry,
            stats,
            reports: Arc::new(Semaphore::new(MAX_REPORT_STREAMS)),
            rendered: Mutex::new(None),
        });
        let slots = Arc::new(Mutex::new(Slots {
            cap: connection_cap(),
            next_id: 0,
            open: BTreeMap::new(),
        }));
        let (stop_tx, stop_rx) = oneshot::channel();
        let failure = Arc::new(Mutex::new(None));
        let failed = Arc::clone(&failure);
        let handle = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                let outcome = runtime.block_on(accept_loop(listener, ctx, slots, stop_rx));
                if let Err(why) = outcome {
                    tracing::error!(
                        "the metrics endpoint on http://{bound} stopped: {why}; \
                         /metrics, /healthz and /api/hosts are no longer served"
                    );
                    if let Ok(mut f) = failed.lock() {
                        *f = Some(why.to_string());
                    }
                }
            })
            .map_err(EndpointError::Thread)?;
        Ok(Server {
            addr: bound,
            stop: Some(stop_tx),
            failure,
            handle: Some(handle),
        })
    }

    /// Why the endpoint no longer serves, if it stopped on its own.
    pub fn failure(&self) -> Option<String> {
        if let Some(why) = self.failure.lock().ok().and_then(|f| f.clone()) {
            return Some(why);
        }
        match &self.handle {
            Some(h) if h.is_finished() => Some("the metrics thread ended unexpectedly".into()),
            _ => None,
        }
    }

    /// Stops serving; returns why the endpoint had already stopped, if it had.
    pub fn stop(mut self) -> Option<String> {
        let failed = self.failure();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(h) = self.handle.take() {
            if h.join().is_err() {
                return Some("the metrics thread panicked".into());
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_query_is_the_whole_report() {
        assert_eq!(Page::parse(None), Ok(Page::default()));
        assert_eq!(Page::parse(Some("")), Ok(Page::default()));
        assert!(!Page::default().paged());
    }

    #[test]
    fn after_and_limit_are_read_percent_decoded() {
        let p = Page::parse(Some("limit=50&after=10.0.0.7")).expect("valid");
        assert_eq!(p.limit, Some(50));
        assert_eq!(p.after, Some("10.0.0.7".parse().expect("ip")));
        let p = Page::parse(Some("after=fd00%3A%3A1")).expect("valid");
        assert_eq!(p.after, Some("fd00::1".parse().expect("ip")));
        let p = Page::parse(Some("after=fd00::1&")).expect("valid");
        assert_eq!(p.after, Some("fd00::1".parse().expect("ip")));
    }

    #[test]
    fn bad_queries_are_named() {
        let reason = |q: &str| Page::parse(Some(q)).map_err(|e| e.reason());
        assert_eq!(reason("limit=0"), Err("bad_limit"));
        assert_eq!(reason("limit=-1"), Err("bad_limit"));
        assert_eq!(reason("limit="), Err("bad_limit"));
        assert_eq!(reason("limit=1.5"), Err("bad_limit"));
        let huge = Page::parse(Some("limit=99999999999999999999999")).expect("valid");
        assert_eq!(
            huge.limit,
            Some(usize::MAX),
            "more than there can be: all of them"
        );
        assert_eq!(reason("after=10.0.0"), Err("bad_after"));
        assert_eq!(reason("after=%zz"), Err("bad_after"));
        assert_eq!(reason("after=%ff"), Err("bad_after"));
        assert_eq!(reason("offset=3"), Err("unknown_parameter"));
        assert_eq!(reason("limit=1&limit=2"), Err("repeated_parameter"));
        let long = format!("{}=1", "k".repeat(10_000));
        match Page::parse(Some(&long)) {
            Err(QueryError::Unknown(k)) => assert_eq!(k.len(), 64),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pages_follow_address_order_and_say_where_to_go_on() {
        let ips: Vec<IpAddr> = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::1"]
            .iter()
            .map(|s| s.parse().expect("ip"))
            .collect();
        let page = |after: Option<&str>, limit| Page {
            after: after.map(|a| a.parse().expect("ip")),
            limit,
        };
        assert_eq!(page(None, None).select(ips.clone()), (ips.clone(), None));
        assert_eq!(
            page(None, Some(2)).select(ips.clone()),
            (ips[..2].to_vec(), Some(ips[1]))
        );
        assert_eq!(
            page(Some("10.0.0.2"), Some(2)).select(ips.clone()),
            (ips[2..].to_vec(), None)
        );
        // A cursor that is no longer in the table still resumes after it.
        assert_eq!(
            page(Some("10.0.0.2"), Some(1)).select(vec![ips[0], ips[2], ips[3]]),
            (vec![ips[2]], Some(ips[2]))
        );
        assert_eq!(
            page(Some("fd00::1"), Some(5)).select(ips.clone()),
            (vec![], None)
        );
    }

    #[test]
    fn a_newcomer_takes_the_slot_of_the_oldest_idle_connection_else_of_the_oldest() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let slots = Mutex::new(Slots {
            cap: 3,
            next_id: 3,
            open: BTreeMap::new(),
        });
        let mut states = Vec::new();
        let mut tasks = Vec::new();
        for id in 0..3 {
            let state = Arc::new(SlotState::default());
            let task = rt.spawn(std::future::pending::<()>());
            let abort = task.abort_handle();
            tasks.push(task);
            let slot = Slot {
                state: Arc::clone(&state),
                abort,
            };
            slots.lock().expect("lock").open.insert(id, slot);
            states.push(state);
        }
        let open = || -> Vec<u64> { slots.lock().expect("lock").open.keys().copied().collect() };
        states[0].answering.store(1, Ordering::Relaxed);
        assert!(Slots::evict_one(&slots));
        assert_eq!(open(), [0, 2], "the oldest idle one");
        states[2].answering.store(1, Ordering::Relaxed);
        assert!(Slots::evict_one(&slots));
        assert_eq!(open(), [2], "every one answering: the oldest");
        assert!(Slots::evict_one(&slots));
        assert!(!Slots::evict_one(&slots), "nothing left to close");
        for t in tasks.iter_mut().skip(1) {
            let cancelled = rt.block_on(async { t.await.is_err_and(|e| e.is_cancelled()) });
            assert!(cancelled, "an evicted connection's task is cancelled");
        }
    }

    #[test]
    fn every_shed_reason_is_distinct() {
        let mut r: Vec<&str> = Shed::ALL.iter().map(Shed::reason).collect();
        r.sort_unstable();
        r.dedup();
        assert_eq!(r.len(), Shed::ALL.len());
    }
}
