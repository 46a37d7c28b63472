//! The alerts file (`--alerts PATH|-`): JSON Lines written by one thread that owns the file,
//! fed through a bounded queue, so that a slow or full disk never holds up a worker.
//!
//! What it promises, and why:
//!
//! - **Whole lines.** A write that fails half-way (ENOSPC after a partial `write`, which tmpfs
//!   and ext4 both do) is cut back with `ftruncate` to the end of the last whole line before
//!   anything else is written, so the file stays valid JSON Lines whatever the disk does. The
//!   line is retried whole. (On stdout there is nothing to cut back: a pipe that broke mid-line
//!   is broken for good anyway.)
//! - **Nothing reordered, nothing doubled.** A line that could not be written stays at the
//!   head of an in-memory backlog; later alerts queue behind it. The writer tries again when
//!   the next alert comes and otherwise every [`RETRY_MAX`] at most (backing off from
//!   [`RETRY_START`]), and on success writes the backlog in order. A line counts as written
//!   only once its bytes are all in the file.
//! - **Bounded.** At most `backlog` lines wait (accepted and not yet written); beyond that an
//!   alert is dropped and counted in `dropped` (the host table, the report and the inventory
//!   still have the detection: an alert is a notification, not the record).
//! - **Rotation** (`max_bytes` > 0): before a line that would take the file past `max_bytes`
//!   the file is renamed to `PATH.1` (`PATH.1` to `PATH.2` and so on; the one past `keep` is
//!   replaced, i.e. removed) and a new `PATH` is started. Renaming, not copying and
//!   truncating, is what lets a tailing forwarder (Filebeat, Vector, rsyslog's imfile) finish
//!   the old inode and pick up the new file with no line lost, cut or read twice. A line
//!   longer than `max_bytes` gets a file of its own. At most `keep` + 1 files exist.
//! - **fsync** ([`FsyncPolicy`]): `always` syncs (fdatasync) after every write, before the
//!   writer waits for the next alert (alerts that arrive together share one sync: group
//!   commit); `interval` at most once per [`SYNC_INTERVAL`]; `never` leaves it to the kernel.
//!   A file is also synced before it is rotated away, and the directory after a rotation,
//!   unless the policy is `never`. An fsync that fails is counted (`sync_errors`) and tried
//!   again; Linux may have dropped the pages it could not write back, so such a failure is
//!   reported at the end as "may not be on disk", never silently.
//! - **Reopen** ([`AlertSink::reopen`], for SIGHUP after an external logrotate): the file is
//!   closed after the lines already queued, and `PATH` opened again for appending (created if
//!   it was moved away).
//!
//! The file is opened by [`AlertSink::start`], in the caller's thread, so a path that cannot
//! be written is refused at once and a sensor that drops its privileges later has it open
//! already: truncated (`replay`: one run, one file), or appended to
//! ([`AlertFileOptions::append`], `live`: a restarted sensor keeps what it wrote, and a last
//! line torn by a crash is cut off before anything is added).

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Lines held while the file cannot be written (alert lines are about 1 KiB: some 10 MiB).
pub const DEFAULT_BACKLOG: usize = 10_000;
/// Rotated files kept unless told otherwise.
pub const DEFAULT_KEEP: usize = 5;
/// First wait before retrying a failed write; doubles up to [`RETRY_MAX`]. A write attempt
/// on a full disk costs one system call, so the writer keeps trying often: the backlog lands
/// within a second of the disk having room again.
pub const RETRY_START: Duration = Duration::from_millis(100);
pub const RETRY_MAX: Duration = Duration::from_secs(1);
/// `interval`: at most one fsync per this.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// How long the end of a run waits for a file that does not take writes before it gives up
/// on the backlog (and says how many alerts are missing).
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Failures are printed at most once per this (all are counted).
const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// When the file is flushed to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// After every write (alerts are rare: one per host, vendor and category).
    #[default]
    Always,
    /// At most once per [`SYNC_INTERVAL`].
    Interval,
    /// Never; the kernel writes back when it likes.
    Never,
}

impl FsyncPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Interval => "interval",
            FsyncPolicy::Never => "never",
        }
    }
}

/// An `--alerts-fsync` value that is none of the policies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not always, interval or never")]
pub struct UnknownFsyncPolicy(pub String);

impl FromStr for FsyncPolicy {
    type Err = UnknownFsyncPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "always" => Ok(FsyncPolicy::Always),
            "interval" => Ok(FsyncPolicy::Interval),
            "never" => Ok(FsyncPolicy::Never),
            _ => Err(UnknownFsyncPolicy(s.to_string())),
        }
    }
}

/// Why the alerts sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the alerts backlog and the rotated files kept must be at least 1")]
    BadOptions,
    #[error("cannot create the alerts file {path}: {source} ({advice})")]
    Create {
        path: String,
        source: io::Error,
        advice: &'static str,
    },
    #[error("cannot start the alerts writer thread: {0}")]
    Thread(io::Error),
}

impl StartError {
    /// A short label (for a metric or a log field).
    pub fn reason(&self) -> &'static str {
        match self {
            StartError::BadOptions => "bad_options",
            StartError::Create { .. } => "create",
            StartError::Thread(_) => "thread",
        }
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the file is kept; [`Default`] is no rotation, fsync always, [`DEFAULT_BACKLOG`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertFileOptions {
    /// Rotate before the file would grow past this many bytes (0: never).
    pub max_bytes: u64,
    /// Rotated files kept (`PATH.1` … `PATH.keep`), at least 1.
    pub keep: usize,
    pub fsync: FsyncPolicy,
    /// Lines held at most while the file cannot be written (at least 1).
    pub backlog: usize,
    /// Append to an existing file instead of starting it afresh (a restarted live sensor
    /// keeps what it wrote; a torn last line from a crash is cut off first).
    pub append: bool,
}

impl Default for AlertFileOptions {
    fn default() -> Self {
        AlertFileOptions {
            max_bytes: 0,
            keep: DEFAULT_KEEP,
            fsync: FsyncPolicy::Always,
            backlog: DEFAULT_BACKLOG,
            append: false,
        }
    }
}

/// What the sink did so far. Every line given to `send` is in exactly one of `written`,
/// `dropped` or `backlog` (after `close`, `backlog` is what could not be written at all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertStats {
    /// Lines wholly in the file (or on stdout).
    pub written: u64,
    /// Lines refused because `backlog` lines were already waiting.
    pub dropped: u64,
    /// Lines accepted and not written (yet): the backlog.
    pub backlog: u64,
    /// Failed writes, opens, renames and syncs.
    pub errors: u64,
    /// Failed fsyncs (also in `errors`).
    pub sync_errors: u64,
    /// Lines that waited in the backlog after a failure and were written later, in order.
    pub delayed: u64,
    pub rotations: u64,
    /// The last failure, in words.
    pub last_error: Option<String>,
    /// Whether the last attempt failed (the file is not writable now).
    pub failing: bool,
    /// Whether an fsync failed and no later one succeeded.
    pub unsynced: bool,
    /// Stdout was closed by its reader (a broken pipe): nothing more can go there, so
    /// nothing more is tried; every alert since is counted in `dropped`.
    pub closed: bool,
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
    sync_errors: AtomicU64,
    delayed: AtomicU64,
    rotations: AtomicU64,
    /// Stdout's reader is gone (see `AlertStats::closed`).
    closed: std::sync::atomic::AtomicBool,
    /// Accepted and not yet written or given up: the bound `backlog` puts on the queue.
    in_flight: AtomicUsize,
    /// (last error, failing now, unsynced)
    state: Mutex<(Option<String>, bool, bool)>,
}

impl Counters {
    fn bump(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

enum Msg {
    Line(String),
    Reopen,
    Close(Instant),
}

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    File(PathBuf),
}

impl Destination {
    /// `-` is stdout.
    pub fn from_path(p: &Path) -> Destination {
        if p == Path::new("-") {
            Destination::Stdout
        } else {
            Destination::File(p.to_path_buf())
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Destination::Stdout => "stdout".into(),
            Destination::File(p) => crate::operator_input::shown(p),
        }
    }
}

/// The sink. `send` may be called from any number of threads (`&self`) and never blocks.
pub struct AlertSink {
    tx: Sender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
    capacity: usize,
    destination: Destination,
    options: AlertFileOptions,
}

impl AlertSink {
    /// Creates (truncates) the file and starts the writer thread. An error names the path
    /// and says what to check.
    pub fn start(
        destination: Destination,
        options: AlertFileOptions,
    ) -> Result<AlertSink, StartError> {
        if options.backlog == 0 || options.keep == 0 {
            return Err(StartError::BadOptions);
        }
        let out = match &destination {
            Destination::Stdout => Out::Stdout,
            Destination::File(p) => {
                let opened = if options.append {
                    open_for_append(p)
                } else {
                    super::create_output(p).map(|f| (f, 0))
                };
                let (file, len) = opened.map_err(|source| StartError::Create {
                    path: crate::operator_input::shown(p),
                    source,
                    advice: super::create_advice(p),
                })?;
                Out::File {
                    file,
                    len,
                    torn: false,
                }
            }
        };
        let counters = Arc::new(Counters::default());
        let (tx, rx) = unbounded();
        let writer = Writer {
            destination: destination.clone(),
            options,
            rx,
            counters: Arc::clone(&counters),
            pending: VecDeque::new(),
            out: Some(out),
            retry: RETRY_START,
            next_retry: None,
            failing: false,
            dirty: false,
            last_sync: Instant::now(),
            deadline: None,
            last_warning: None,
            outage_written: 0,
        };
        let thread = std::thread::Builder::new()
            .name("alerts-writer".into())
            .spawn(move || writer.run())
            .map_err(StartError::Thread)?;
        Ok(AlertSink {
            tx,
            thread: Mutex::new(Some(thread)),
            counters,
            capacity: options.backlog,
            destination,
            options,
        })
    }

    /// Queues one alert line (a newline is added if missing); never blocks. When `backlog`
    /// lines are already waiting the line is dropped and counted.
    pub fn send(&self, mut line: String) {
        let c = &self.counters;
        if c.closed.load(Ordering::Relaxed) {
            Counters::bump(&c.dropped, 1);
            return;
        }
        if c.in_flight.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            c.in_flight.fetch_sub(1, Ordering::AcqRel);
            Counters::bump(&c.dropped, 1);
            return;
        }
        if !line.ends_with('\n') {
            line.push('\n');
        }
        // The channel is unbounded (the count above is the bound); it fails only once the
        // writer is gone (after `close`), and then the line is dropped like any that cannot
        // queue.
        if self.tx.send(Msg::Line(line)).is_err() {
            c.in_flight.fetch_sub(1, Ordering::AcqRel);
            Counters::bump(&c.dropped, 1);
        }
    }

    /// Closes the file after the lines already queued and opens `PATH` again, appending
    /// (created if an external logrotate moved it away). Does nothing on stdout.
    pub fn reopen(&self) {
        let _ = self.tx.send(Msg::Reopen);
    }

    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    pub fn options(&self) -> AlertFileOptions {
        self.options
    }

    pub fn stats(&self) -> AlertStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (last_error, failing, unsynced) = c.state.lock().map(|s| s.clone()).unwrap_or_default();
        AlertStats {
            written: get(&c.written),
            dropped: get(&c.dropped),
            backlog: c.in_flight.load(Ordering::Relaxed) as u64,
            errors: get(&c.errors),
            sync_errors: get(&c.sync_errors),
            delayed: get(&c.delayed),
            rotations: get(&c.rotations),
            last_error,
            failing,
            unsynced,
            closed: c.closed.load(Ordering::Relaxed),
        }
    }

    /// Writes what is queued, retrying until `timeout` runs out if the file is not writable,
    /// syncs (unless `never`) and stops the writer. What is still held then is `backlog` in
    /// the stats. Calling it again returns the same stats.
    pub fn close(&self, timeout: Duration) -> AlertStats {
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let now = Instant::now();
            let _ = self
                .tx
                .send(Msg::Close(now.checked_add(timeout).unwrap_or(now)));
            if h.join().is_err() {
                tracing::error!("the alerts writer thread panicked");
            }
        }
        self.stats()
    }

    /// What to tell the user at the end, if anything: `None` when every alert was written
    /// without trouble. `elsewhere` names where the detections also are (the report, the
    /// inventory, the host table on stderr). The bool is true when alerts were lost from
    /// this file (the run's exit code should say so).
    pub fn end_message(&self, stats: &AlertStats, elsewhere: &[String]) -> Option<(String, bool)> {
        let what = self.destination.describe();
        let why = stats.last_error.as_deref().unwrap_or("unknown error");
        let lost = stats.backlog + stats.dropped;
        let total = stats.written + lost;
        let kept = if elsewhere.is_empty() {
            "no report, inventory or host table was kept: pass --report PATH to keep every detection"
                .to_string()
        } else {
            format!(
                "every detection is in {} (nothing detected is lost)",
                elsewhere.join(" and ")
            )
        };
        if stats.closed {
            return Some((
                format!(
                    "alerts: stdout was closed by its reader (broken pipe): {} alert(s) written before, {lost} not written; {kept}",
                    stats.written
                ),
                true,
            ));
        }
        if lost > 0 {
            let mut msg = format!(
                "alerts: {lost} of {total} alert(s) could not be written to {what} ({why}): \
                 {} still held in memory at exit, {} dropped beyond the backlog of {}",
                stats.backlog, stats.dropped, self.capacity
            );
            if stats.delayed > 0 {
                msg.push_str(&format!(
                    "; {} were written late, in order, once the file took writes again",
                    stats.delayed
                ));
            }
            if elsewhere.is_empty() {
                msg.push_str("; no report, inventory or host table was kept: pass --report PATH to keep every detection");
            } else {
                msg.push_str(&format!(
                    "; every detection is in {} (nothing detected is lost)",
                    elsewhere.join(" and ")
                ));
            }
            return Some((msg, true));
        }
        let mut notes = Vec::new();
        if stats.errors > stats.sync_errors {
            notes.push(format!(
                "{} write failure(s) on {what} (last: {why}); the {} alert(s) held meanwhile were written later, in order, none lost",
                stats.errors - stats.sync_errors,
                stats.delayed
            ));
        }
        if stats.unsynced {
            notes.push(format!(
                "{} fsync failure(s) on {what}: alerts written since the last successful fsync may not be on disk",
                stats.sync_errors
            ));
            return Some((format!("alerts: {}", notes.join("; ")), true));
        }
        if stats.sync_errors > 0 {
            notes.push(format!(
                "{} fsync failure(s) on {what}, each retried successfully",
                stats.sync_errors
            ));
        }
        (!notes.is_empty()).then(|| (format!("alerts: {}", notes.join("; ")), false))
    }
}

/// Dropping without `close` stops the writer after what is queued, without waiting.
impl Drop for AlertSink {
    fn drop(&mut self) {
        if self.thread.lock().is_ok_and(|t| t.is_some()) {
            let _ = self.tx.send(Msg::Close(Instant::now()));
        }
    }
}

enum Out {
    Stdout,
    File {
        file: File,
        /// Bytes of whole lines in the file.
        len: u64,
        /// A write failed part-way: the file must be cut back to `len` before the next one.
        torn: bool,
    },
}

impl Out {
    fn len(&self) -> u64 {
        match self {
            Out::Stdout => 0,
            Out::File { len, .. } => *len,
        }
    }

    fn write_line(&mut self, line: &str) -> io::Result<()> {
        match self {
            Out::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(line.as_bytes())?;
                out.flush()
            }
            Out::File { file, len, torn } => {
                Out::repair(file, *len, torn)?;
                let bytes = line.as_bytes();
                let mut done = 0;
                while done < bytes.len() {
                    match file.write(&bytes[done..]) {
                        Ok(0) => {
                            return Err(Out::cut(
                                file,
                                *len,
                                torn,
                                done,
                                io::ErrorKind::WriteZero.into(),
                            ))
                        }
                        Ok(n) => done += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(Out::cut(file, *len, torn, done, e)),
                    }
                }
                *len += bytes.len() as u64;
                Ok(())
            }
        }
    }

    /// After a write that failed with `done` bytes of the line in: cut them off now (a full
    /// disk allows that: truncating frees space), or before the next write if this fails.
    fn cut(file: &mut File, len: u64, torn: &mut bool, done: usize, e: io::Error) -> io::Error {
        if done > 0 {
            *torn = true;
            let _ = Out::repair(file, len, torn);
        }
        e
    }

    fn repair(file: &mut File, len: u64, torn: &mut bool) -> io::Result<()> {
        if *torn {
            file.set_len(len)?;
            file.seek(SeekFrom::Start(len))?;
            *torn = false;
        }
        Ok(())
    }

    /// Cuts off a torn line, if any (before a rotation renames the file away).
    fn mend(&mut self) -> io::Result<()> {
        match self {
            Out::Stdout => Ok(()),
            Out::File { file, len, torn } => Out::repair(file, *len, torn),
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        match self {
            // A pipe or terminal has no stable storage to reach.
            Out::Stdout => Ok(()),
            // Nor has a device or FIFO given as the file (`super::sync_to_storage`).
            Out::File { file, .. } => super::sync_to_storage(file),
        }
    }
}

struct Writer {
    destination: Destination,
    options: AlertFileOptions,
    rx: Receiver<Msg>,
    counters: Arc<Counters>,
    /// Lines taken from the channel and not yet written, oldest first.
    pending: VecDeque<String>,
    /// `None` after a rotation or reopen until the next line opens `PATH`.
    out: Option<Out>,
    retry: Duration,
    next_retry: Option<Instant>,
    /// The last attempt failed.
    failing: bool,
    /// Written since the last successful sync.
    dirty: bool,
    last_sync: Instant,
    deadline: Option<Instant>,
    last_warning: Option<Instant>,
    /// Held lines written since the current outage began (for the recovery message).
    outage_written: u64,
}

impl Writer {
    fn run(mut self) {
        loop {
            let wake = self.next_wake();
            let first = match wake {
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => self
                    .rx
                    .recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            let mut arrived = false;
            match first {
                Ok(m) => arrived |= self.take(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.deadline.get_or_insert_with(Instant::now);
                }
            }
            loop {
                match self.rx.try_recv() {
                    Ok(m) => arrived |= self.take(m),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.deadline.get_or_insert_with(Instant::now);
                        break;
                    }
                }
            }
            let now = Instant::now();
            let retry_due = self.next_retry.is_none_or(|t| now >= t);
            if !self.pending.is_empty() && (arrived || retry_due || self.deadline.is_some()) {
                self.deliver();
            }
            self.maybe_sync(false);
            if let Some(d) = self.deadline {
                if self.pending.is_empty() || Instant::now() >= d {
                    break;
                }
            }
        }
        // Lines still held stay counted in `in_flight`: that is the backlog the stats report.
        self.maybe_sync(true);
    }

    /// When to wake without a message: the next retry, the next interval sync, the close
    /// deadline; `None` waits for a message.
    fn next_wake(&self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut earliest = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        if !self.pending.is_empty() {
            earliest(self.next_retry.unwrap_or_else(Instant::now));
        }
        if self.dirty && self.options.fsync == FsyncPolicy::Interval {
            earliest(self.last_sync + SYNC_INTERVAL);
        }
        if let Some(d) = self.deadline {
            earliest(d);
        }
        at
    }

    /// Returns whether a line arrived.
    fn take(&mut self, m: Msg) -> bool {
        match m {
            Msg::Line(_) if self.counters.closed.load(Ordering::Relaxed) => {
                // Queued before the pipe was found closed: not written either.
                self.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
                Counters::bump(&self.counters.dropped, 1);
                false
            }
            Msg::Line(l) => {
                self.pending.push_back(l);
                true
            }
            Msg::Reopen => {
                // Lines queued before the request go to the old file first. A file with a
                // torn line that could not be cut off yet is kept until it is (rare: a
                // truncate that failed twice); the request is not repeated then.
                self.deliver();
                if matches!(self.out, Some(Out::File { torn: false, .. })) {
                    self.maybe_sync(true);
                    self.out = None;
                }
                false
            }
            Msg::Close(d) => {
                self.deadline = Some(d);
                false
            }
        }
    }

    fn deliver(&mut self) {
        let was_failing = self.failing;
        let mut written = 0u64;
        while let Some(line) = self.pending.pop_front() {
            match self.write_one(&line) {
                Ok(()) => {
                    written += 1;
                    self.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
                    Counters::bump(&self.counters.written, 1);
                    if was_failing {
                        Counters::bump(&self.counters.delayed, 1);
                        self.outage_written += 1;
                    }
                }
                Err(e)
                    if self.destination == Destination::Stdout
                        && e.kind() == io::ErrorKind::BrokenPipe =>
                {
                    // The reader of the pipe is gone and cannot come back: stop now, say
                    // so once, and count this line and every later one as not written.
                    self.counters.closed.store(true, Ordering::Relaxed);
                    Counters::bump(&self.counters.errors, 1);
                    if let Ok(mut s) = self.counters.state.lock() {
                        s.0 = Some(e.to_string());
                    }
                    let given_up = 1 + self.pending.len();
                    self.pending.clear();
                    self.counters
                        .in_flight
                        .fetch_sub(given_up, Ordering::AcqRel);
                    Counters::bump(&self.counters.dropped, given_up as u64);
                    tracing::error!(
                        "alerts: stdout was closed by its reader (broken pipe); no more alerts are written there (the report and the inventory still get every detection)"
                    );
                    return;
                }
                Err(e) => {
                    self.pending.push_front(line);
                    self.fail(&e);
                    return;
                }
            }
        }
        if written > 0 {
            self.dirty = true;
        }
        self.retry = RETRY_START;
        self.next_retry = None;
        if was_failing {
            self.failing = false;
            if let Ok(mut s) = self.counters.state.lock() {
                s.1 = false;
            }
            // At error level, like the failure it ends: the default log filter shows errors
            // only, and whoever saw the failure must see it end.
            tracing::error!(
                "alerts file {} is writable again: {} held alert(s) written, in order",
                self.destination.describe(),
                std::mem::take(&mut self.outage_written)
            );
            self.last_warning = None;
        }
        if self.options.fsync == FsyncPolicy::Always {
            self.maybe_sync(true);
        }
    }

    fn fail(&mut self, e: &io::Error) {
        Counters::bump(&self.counters.errors, 1);
        self.failing = true;
        if let Ok(mut s) = self.counters.state.lock() {
            s.0 = Some(e.to_string());
            s.1 = true;
        }
        let now = Instant::now();
        self.next_retry = Some(now + self.retry);
        self.retry = (self.retry * 2).min(RETRY_MAX);
        if self
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= WARN_INTERVAL)
        {
            self.last_warning = Some(now);
            tracing::error!(
                "cannot write to the alerts file {}: {e}; {} alert(s) held in memory (at most {}) and retried every {} s until it takes writes again",
                self.destination.describe(),
                self.counters.in_flight.load(Ordering::Relaxed),
                self.options.backlog,
                RETRY_MAX.as_secs()
            );
        }
    }

    fn write_one(&mut self, line: &str) -> io::Result<()> {
        let max = self.options.max_bytes;
        let out = match &mut self.out {
            Some(o) => o,
            None => self.out.insert(self.open_append()?),
        };
        out.mend()?;
        let len = out.len();
        if max > 0 && len > 0 && len + line.len() as u64 > max {
            self.rotate()?;
        }
        let out = match &mut self.out {
            Some(o) => o,
            None => self.out.insert(self.open_append()?),
        };
        // A fresh file takes the line whatever its size.
        out.write_line(line)
    }

    fn open_append(&self) -> io::Result<Out> {
        match &self.destination {
            Destination::Stdout => Ok(Out::Stdout),
            Destination::File(p) => {
                let (file, len) = open_for_append(p)?;
                Ok(Out::File {
                    file,
                    len,
                    torn: false,
                })
            }
        }
    }

    /// `PATH` → `PATH.1` → … → `PATH.keep` (the old `PATH.keep` is replaced). Safe to call
    /// again after a failure part-way: each step moves a file into a slot the step before
    /// emptied.
    fn rotate(&mut self) -> io::Result<()> {
        let Destination::File(path) = &self.destination else {
            return Ok(());
        };
        let path = path.clone();
        if self.options.fsync != FsyncPolicy::Never {
            if let Some(out) = &mut self.out {
                out.sync()?;
            }
        }
        let numbered = |i: usize| {
            let mut s = path.clone().into_os_string();
            s.push(format!(".{i}"));
            PathBuf::from(s)
        };
        // Only the rotated files that exist are moved (`PATH.1` up to the first gap), so a
        // rotation costs as many renames as there are files, whatever `keep` says.
        let present = (1..self.options.keep)
            .find(|&i| !numbered(i).exists())
            .unwrap_or(self.options.keep);
        for i in (1..present).rev() {
            match std::fs::rename(numbered(i), numbered(i + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        std::fs::rename(&path, numbered(1))?;
        self.out = None;
        Counters::bump(&self.counters.rotations, 1);
        self.dirty = false;
        let out = self.open_append()?;
        self.out = Some(out);
        if self.options.fsync != FsyncPolicy::Never {
            // The renames and the new file are directory entries: sync them too, so a crash
            // does not bring back the old name over the new file.
            let dir = crate::operator_input::parent_dir(&path);
            if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
                self.sync_failed(&e);
            }
        }
        Ok(())
    }

    /// Syncs if the policy wants it now (`force`: whatever the interval, unless `never`).
    fn maybe_sync(&mut self, force: bool) {
        if !self.dirty || self.options.fsync == FsyncPolicy::Never {
            return;
        }
        let due = force
            || self.options.fsync == FsyncPolicy::Always
            || self.last_sync.elapsed() >= SYNC_INTERVAL;
        if !due {
            return;
        }
        let Some(out) = &mut self.out else {
            return;
        };
        match out.sync() {
            Ok(()) => {
                self.dirty = false;
                self.last_sync = Instant::now();
                if let Ok(mut s) = self.counters.state.lock() {
                    s.2 = false;
                }
            }
            Err(e) => {
                // Stay dirty: the next write or interval tries again.
                self.last_sync = Instant::now();
                self.sync_failed(&e);
            }
        }
    }

    fn sync_failed(&mut self, e: &io::Error) {
        Counters::bump(&self.counters.errors, 1);
        Counters::bump(&self.counters.sync_errors, 1);
        if let Ok(mut s) = self.counters.state.lock() {
            s.0 = Some(format!("fsync: {e}"));
            s.2 = true;
        }
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= WARN_INTERVAL)
        {
            self.last_warning = Some(now);
            tracing::error!(
                "fsync of the alerts file {} failed: {e}; alerts written since the last successful fsync may not be on disk",
                self.destination.describe()
            );
        }
    }
}

/// Opens `path` for appending (creating it), first cutting off a last line without its
/// newline (a write torn by a crash or power loss, never a whole alert), so that the next
/// line does not run into it. Returns the file and its length.
fn open_for_append(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let meta = file.metadata()?;
    // Devices, pipes and the like have no tail to mend.
    if !meta.is_file() || meta.len() == 0 {
        return Ok((file, meta.len()));
    }
    let whole = whole_lines_len(&mut File::open(path)?, meta.len())?;
    if whole < meta.len() {
        file.set_len(whole)?;
    }
    Ok((file, whole))
}

/// The length of the file up to and including its last newline (0 if it has none).
fn whole_lines_len(file: &mut File, len: u64) -> io::Result<u64> {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn fsync_policies_parse() {
        for (text, p) in [
            ("always", FsyncPolicy::Always),
            ("Interval", FsyncPolicy::Interval),
            (" never ", FsyncPolicy::Never),
        ] {
            assert_eq!(text.parse::<FsyncPolicy>(), Ok(p));
            assert_eq!(p.to_string().parse::<FsyncPolicy>(), Ok(p));
        }
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
        assert_eq!(FsyncPolicy::default(), FsyncPolicy::Always);
    }

    #[test]
    fn a_rotation_costs_the_files_there_are_not_the_files_kept() {
        // keep = 100,000,000 (the command line refuses it; the sink must not spin on it
        // either): each rotation once renamed a hundred million names that were not there.
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("alerts.jsonl");
        let opts = AlertFileOptions {
            max_bytes: 10,
            keep: 100_000_000,
            fsync: FsyncPolicy::Never,
            ..AlertFileOptions::default()
        };
        let sink = AlertSink::start(Destination::File(path.clone()), opts).expect("start");
        for n in 0..20 {
            sink.send(format!("{{\"n\":{n:02}}}"));
        }
        let stats = sink.close(Duration::from_secs(30));
        assert_eq!((stats.written, stats.backlog, stats.dropped), (20, 0, 0));
        assert_eq!(stats.rotations, 19);
        // One line per file, newest in PATH, oldest in PATH.19.
        assert_eq!(lines(&path), ["{\"n\":19}"]);
        assert_eq!(lines(&dir.path().join("alerts.jsonl.19")), ["{\"n\":00}"]);
    }

    #[test]
    fn writes_lines_in_order_and_rotates_keeping_k_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("alerts.jsonl");
        let opts = AlertFileOptions {
            max_bytes: 100,
            keep: 2,
            fsync: FsyncPolicy::Never,
            ..AlertFileOptions::default()
        };
        let sink = AlertSink::start(Destination::File(path.clone()), opts).expect("start");
        // 32-byte lines with their newline: three fit in 100 bytes.
        for n in 10..30 {
            sink.send(format!("{{\"n\":{n},\"pad\":\"xxxxxxxxxxxxxx\"}}"));
        }
        let stats = sink.close(Duration::from_secs(5));
        assert_eq!((stats.written, stats.backlog, stats.dropped), (20, 0, 0));
        let name = |i: usize| dir.path().join(format!("alerts.jsonl.{i}"));
        let (cur, one, two) = (lines(&path), lines(&name(1)), lines(&name(2)));
        assert!(!name(3).exists());
        for f in [&path, &name(1), &name(2)] {
            assert!(std::fs::metadata(f).expect("exists").len() <= 100);
        }
        // The newest 3 + 3 + 2 survive (20 lines: files of 3, the last holds 2), in order.
        let all: Vec<String> = [two, one, cur].concat();
        let want: Vec<String> = (22..30)
            .map(|n| format!("{{\"n\":{n},\"pad\":\"xxxxxxxxxxxxxx\"}}"))
            .collect();
        assert_eq!(all, want);
        assert_eq!(stats.rotations, 6);
    }

    #[test]
    fn a_device_given_as_the_file_is_written_without_sync_errors() {
        // fdatasync on /dev/null fails with EINVAL: nothing there to reach stable storage,
        // which is no failure of the alerts (a replay with `--alerts /dev/null` exited 1).
        let sink = AlertSink::start(
            Destination::File("/dev/null".into()),
            AlertFileOptions::default(),
        )
        .expect("start");
        for n in 0..3 {
            sink.send(format!("{{\"n\":{n}}}"));
        }
        let stats = sink.close(Duration::from_secs(5));
        assert_eq!(
            (stats.written, stats.errors, stats.sync_errors),
            (3, 0, 0),
            "{stats:?}"
        );
        assert!(sink.end_message(&stats, &[]).is_none());
    }

    #[test]
    fn backlog_is_bounded_and_counted_when_the_file_cannot_be_written() {
        // /dev/full: every write fails with ENOSPC, a real full device.
        let sink = AlertSink::start(
            Destination::File("/dev/full".into()),
            AlertFileOptions {
                backlog: 3,
                fsync: FsyncPolicy::Never,
                ..AlertFileOptions::default()
            },
        )
        .expect("start");
        for n in 0..10 {
            sink.send(format!("{{\"n\":{n}}}"));
        }
        let stats = sink.close(Duration::from_millis(300));
        assert_eq!(stats.written, 0);
        assert_eq!(stats.backlog + stats.dropped, 10);
        assert_eq!(stats.backlog, 3, "{stats:?}");
        assert!(stats.errors >= 1 && stats.failing, "{stats:?}");
        let e = stats.last_error.clone().unwrap_or_default();
        assert!(e.contains("No space left on device"), "{e}");
        let (msg, lost) = sink
            .end_message(&stats, &["the report r.json".into()])
            .expect("a message");
        assert!(lost);
        assert!(
            msg.contains("10 of 10 alert(s) could not be written to /dev/full")
                && msg.contains("3 still held in memory")
                && msg.contains("7 dropped beyond the backlog of 3")
                && msg.contains("the report r.json"),
            "{msg}"
        );
    }

    #[test]
    fn reopen_appends_to_a_new_file_after_an_external_rotation() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("a.jsonl");
        let sink = AlertSink::start(Destination::File(path.clone()), AlertFileOptions::default())
            .expect("start");
        sink.send("{\"n\":1}".into());
        // Wait until written, then move the file away as logrotate does.
        let t = Instant::now();
        while sink.stats().written < 1 && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::rename(&path, dir.path().join("a.jsonl.old")).expect("rename");
        sink.send("{\"n\":2}".into());
        sink.reopen();
        sink.send("{\"n\":3}".into());
        let stats = sink.close(Duration::from_secs(5));
        assert_eq!(stats.written, 3);
        assert_eq!(
            lines(&dir.path().join("a.jsonl.old")),
            ["{\"n\":1}", "{\"n\":2}"]
        );
        assert_eq!(lines(&path), ["{\"n\":3}"]);
        assert_eq!(sink.end_message(&stats, &[]), None);
    }

    #[test]
    fn appending_keeps_whole_lines_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("a.jsonl");
        // What a crash mid-write leaves: whole lines, then part of one.
        std::fs::write(&path, "{\"n\":1}\n{\"n\":2}\n{\"n\":3,\"pa").expect("write");
        let opts = AlertFileOptions {
            append: true,
            ..AlertFileOptions::default()
        };
        let sink = AlertSink::start(Destination::File(path.clone()), opts).expect("start");
        sink.send("{\"n\":4}".into());
        assert_eq!(sink.close(Duration::from_secs(5)).written, 1);
        assert_eq!(lines(&path), ["{\"n\":1}", "{\"n\":2}", "{\"n\":4}"]);
        // A file with no newline at all holds no whole line.
        std::fs::write(&path, "x".repeat(10_000)).expect("write");
        let sink = AlertSink::start(Destination::File(path.clone()), opts).expect("start");
        sink.send("{\"n\":5}".into());
        sink.close(Duration::from_secs(5));
        assert_eq!(lines(&path), ["{\"n\":5}"]);
        // Without `append` the file starts afresh, as `replay` always did.
        let sink = AlertSink::start(Destination::File(path.clone()), AlertFileOptions::default())
            .expect("start");
        sink.send("{\"n\":6}".into());
        sink.close(Duration::from_secs(5));
        assert_eq!(lines(&path), ["{\"n\":6}"]);
    }
}
