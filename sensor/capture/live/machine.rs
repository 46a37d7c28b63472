//! One interface's capture thread, as an explicit state machine.
//!
//! The packets come from a [`PacketSource`]: a libpcap handle ([`LiveCapture`]), or on
//! Linux one socket of an `AF_PACKET` fanout group (`capture::fanout::FanoutSocket`, one
//! thread per socket, each running this same machine). A fanout socket is never reopened
//! on its own (its group would have to be rebuilt): when its interface is removed, what it
//! holds is read out and its capture ends, as a sandboxed libpcap capture's does once the
//! interface is back — a restart (systemd's Restart=on-failure) opens a new group.
//!
//! The thread reads its handle until the stop flag, handing packets to a [`PacketSink`] (the
//! pipeline's dispatcher) and telling an [`Observer`] (health, counters, totals) what
//! happens. A link that goes down and comes back keeps its handle (libpcap keeps it bound);
//! a removed interface is read to the end of its ring ([`State::Draining`]), then its handle
//! is let go ([`State::Gone`]) and a new one is opened once the interface is back, when this
//! process may; otherwise its capture ends, so that a restart (systemd's
//! Restart=on-failure) captures on it again. Every change is logged and reported to
//! the observer; changes are logged (`tracing`). The durations that pace it are named below, each with why.

use super::{
    classify_read_error, LinkEvent, LinkState, LinkWatch, LiveCapture, OpenError, PcapTotals, Read,
    ReadFailure, DRAIN_AFTER_STOP, LINK_CHECK, READ_TIMEOUT_MS,
};
use crate::decode::LinkType;
use crate::time::Timestamp;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Half-full batches are handed over this often while traffic is slow: soon enough that a
/// quiet link's alerts are not held back, rarely enough that every pause is not a flush.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// libpcap's totals, the batch and the packet span are passed on this often (the status
/// line and `/api/hosts` show them while the sensor runs).
const STATS_EVERY: Duration = Duration::from_secs(1);
/// A "went down" read error that keeps coming this long while the link reads up is not a
/// passing outage: the capture stops with the error.
const LINK_DOWN_GRACE: Duration = Duration::from_secs(5);
/// Pause after a read that failed because the link is down: no busy loop meanwhile.
const LINK_DOWN_PAUSE: Duration = Duration::from_millis(100);
/// Pause after a read of a removed interface's handle failed while its ring drains: libpcap
/// fails at once, the kernel retires the last block only at its timeout.
const REMOVED_PAUSE: Duration = Duration::from_millis(5);
/// First wait between attempts to reopen a removed interface that is back (not ready yet:
/// no carrier, still being set up), doubled after each failure up to [`REOPEN_MAX`].
const REOPEN_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between reopen attempts.
const REOPEN_MAX: Duration = Duration::from_secs(30);

/// How long a fanout socket's read waits in `poll` for a packet: as long as libpcap's read
/// timeout, so a quiet capture flushes and sees the stop flag as often.
pub const FANOUT_WAIT: Duration = Duration::from_millis(READ_TIMEOUT_MS as u64);

/// A read that failed: what it means for the capture, and the source's own words.
#[derive(Debug, Clone)]
pub struct ReadFailed {
    pub failure: ReadFailure,
    pub message: String,
}

/// Why a capture ended before the stop flag (the sensor exits non-zero).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// A read failed for good; `message`: the source's own words.
    #[error("{interface}: capture stopped: {message}")]
    Stopped { interface: String, message: String },
    /// A fanout socket's interface was removed: such a group is not reopened.
    #[error(
        "{interface}: capture ended: the interface was removed (fanout capture): restart \
         vendorwatch to capture on it again"
    )]
    RemovedFanout { interface: String },
    /// The interface came back, but a new handle cannot be opened (`why`: what refuses it).
    #[error(
        "{interface}: capture ended: the interface was removed, and a new capture could not be \
         opened ({why}): restart vendorwatch to capture on it again"
    )]
    ReopenRefused {
        interface: String,
        why: &'static str,
    },
}

impl CaptureError {
    /// A short label (for logs and metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            CaptureError::Stopped { .. } => "read_failed",
            CaptureError::RemovedFanout { .. } => "interface_removed",
            CaptureError::ReopenRefused { .. } => "reopen_refused",
        }
    }
}

/// Where packets come from: one handle the machine reads until the stop flag.
pub trait PacketSource: Sized {
    /// Whether a handle of a removed interface can be replaced by a new one (`reopen`).
    const REOPENS: bool;
    fn interface(&self) -> &str;
    fn link(&self) -> LinkType;
    /// The next packet, or `Read::Idle` after a wait that found none (the source paces
    /// itself: no busy loop on a quiet link).
    fn read(&mut self) -> Result<Read<'_>, ReadFailed>;
    /// The handle's totals (received, dropped) so far.
    fn totals(&mut self) -> Option<PcapTotals>;
    /// A new handle on the interface re-created under the same name, its totals carried on.
    fn reopen(&self) -> Result<Self, OpenError>;
}

impl PacketSource for LiveCapture {
    const REOPENS: bool = true;
    fn interface(&self) -> &str {
        &self.interface
    }
    fn link(&self) -> LinkType {
        self.link
    }
    fn read(&mut self) -> Result<Read<'_>, ReadFailed> {
        LiveCapture::read(self).map_err(|e| {
            let message = e.to_string();
            ReadFailed {
                failure: classify_read_error(&message),
                message,
            }
        })
    }
    fn totals(&mut self) -> Option<PcapTotals> {
        LiveCapture::totals(self)
    }
    fn reopen(&self) -> Result<Self, OpenError> {
        LiveCapture::reopen(self)
    }
}

#[cfg(target_os = "linux")]
impl PacketSource for crate::capture::ring_fanout::RingMember {
    // One member cannot rejoin its group alone (see `ring_fanout`).
    const REOPENS: bool = false;
    fn interface(&self) -> &str {
        crate::capture::ring_fanout::RingMember::interface(self)
    }
    fn link(&self) -> LinkType {
        self.capture_ref().link
    }
    fn read(&mut self) -> Result<Read<'_>, ReadFailed> {
        PacketSource::read(self.capture())
    }
    fn totals(&mut self) -> Option<PcapTotals> {
        LiveCapture::totals(self.capture())
    }
    fn reopen(&self) -> Result<Self, OpenError> {
        // Never called (`REOPENS` is false).
        Err(OpenError::Other {
            interface: self.interface().to_string(),
            reason: "a fanout member is not reopened on its own".into(),
        })
    }
}

#[cfg(target_os = "linux")]
impl PacketSource for crate::capture::fanout::FanoutSocket {
    const REOPENS: bool = false;
    fn interface(&self) -> &str {
        crate::capture::fanout::FanoutSocket::interface(self)
    }
    fn link(&self) -> LinkType {
        crate::capture::fanout::FanoutSocket::link(self)
    }
    fn read(&mut self) -> Result<Read<'_>, ReadFailed> {
        use crate::capture::fanout::ReadError;
        // No pause after an empty read: the wait is in `poll`.
        match self.next_packet(FANOUT_WAIT) {
            Ok(Some(p)) => Ok(Read::Packet {
                ts: p.ts,
                data: p.data,
                wire_len: p.wire_len,
            }),
            Ok(None) => Ok(Read::Idle),
            Err(e) => Err(ReadFailed {
                failure: match e {
                    ReadError::LinkDown => ReadFailure::LinkDown,
                    ReadError::Other(_) => ReadFailure::Fatal,
                },
                message: e.to_string(),
            }),
        }
    }
    fn totals(&mut self) -> Option<PcapTotals> {
        let t = self.stats().ok()?;
        Some(PcapTotals {
            received: t.received,
            dropped: t.dropped,
            if_dropped: 0,
        })
    }
    fn reopen(&self) -> Result<Self, OpenError> {
        // Never called (`REOPENS` is false): one member cannot rejoin a group alone.
        Err(OpenError::Other {
            interface: self.interface().to_string(),
            reason: "a fanout socket is not reopened on its own".into(),
        })
    }
}

/// Where packets go.
pub trait PacketSink {
    fn packet(&mut self, ts: Timestamp, link: LinkType, data: &[u8], wire_len: u32);
    /// Hands over what is batched.
    fn flush(&mut self);
}

/// What the capture tells the rest of the sensor about itself.
pub trait Observer {
    /// The capture works; `up`: whether the link is up.
    fn healthy(&self, up: bool);
    /// A problem shown (by `/healthz`) until the next `healthy`; `down`: the link is down too.
    fn problem(&self, problem: String, down: bool);
    /// An interruption, counted under `reason` (`link_down`, `interface_removed`).
    fn interrupted(&self, reason: &'static str, times: u64);
    /// libpcap's totals of the handle (of the old one, before a reopen).
    fn totals(&self, totals: PcapTotals);
    /// The first and last packet time so far.
    fn span(&self, first: Option<Timestamp>, last: Option<Timestamp>);
    /// Whether this capture speaks for its interface's link: logs and counts its
    /// interruptions. The sockets of a fanout group all see the same link go down; one
    /// of them speaks for it, so that an outage is one log line and one count.
    fn speaks_for_link(&self) -> bool {
        true
    }
}

/// Where the capture stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Reading the handle.
    Reading,
    /// The interface is removed: the handle is read until its ring has been quiet for
    /// [`DRAIN_AFTER_STOP`] since `since` (what was captured before counts).
    Draining { since: Instant },
    /// The handle is gone: a new one is tried at `reopen_at` once the interface exists
    /// again, then `wait` later if that fails.
    Gone { reopen_at: Instant, wait: Duration },
    /// The capture is over (a stop, or an error in `Capture::result`).
    Ended,
}

/// When the periodic work was last done.
struct Ticks {
    flush: Instant,
    stats: Instant,
    link_check: Instant,
}

/// One interface's capture: the handle, its link watch and what the loop remembers.
pub struct Capture<'a, P: PacketSource, S: PacketSink, O: Observer> {
    cap: P,
    iface: String,
    link: LinkType,
    watch: LinkWatch,
    sink: &'a mut S,
    observer: &'a O,
    stop: &'a AtomicBool,
    /// Under the seccomp filter, which refuses new packet sockets: a removed interface
    /// cannot be captured again until a restart (the reopen is still tried, its error said).
    sandboxed: bool,
    state: State,
    ticks: Ticks,
    /// When the stop flag was first seen: the ring is read for [`DRAIN_AFTER_STOP`] more.
    stop_seen: Option<Instant>,
    /// Since when reads fail with "went down" (a link that reads up while they keep coming
    /// for [`LINK_DOWN_GRACE`] is a real failure).
    down_errors_since: Option<Instant>,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    result: Result<(), CaptureError>,
}

impl<'a, P: PacketSource, S: PacketSink, O: Observer> Capture<'a, P, S, O> {
    pub fn new(
        cap: P,
        sink: &'a mut S,
        observer: &'a O,
        stop: &'a AtomicBool,
        sandboxed: bool,
    ) -> Self {
        let iface = cap.interface().to_string();
        let now = Instant::now();
        Capture {
            link: cap.link(),
            watch: LinkWatch::new(&iface),
            iface,
            cap,
            sink,
            observer,
            stop,
            sandboxed,
            state: State::Reading,
            ticks: Ticks {
                flush: now,
                stats: now,
                link_check: now,
            },
            stop_seen: None,
            down_errors_since: None,
            first: None,
            last: None,
            result: Ok(()),
        }
    }

    /// Runs until the stop flag (and the drain after it) or a failure that ends the capture.
    pub fn run(mut self) -> Result<(), CaptureError> {
        self.observer.healthy(self.watch.state().is_up());
        loop {
            if self.stop_seen.is_none() && self.stop.load(Ordering::Relaxed) {
                self.stop_seen = Some(Instant::now());
            }
            let read = matches!(self.state, State::Reading | State::Draining { .. });
            self.state = match self.state {
                State::Reading => self.read(None),
                State::Draining { since } => self.read(Some(since)),
                State::Gone { reopen_at, wait } => self.reopen(reopen_at, wait),
                State::Ended => break,
            };
            if read && self.state != State::Ended {
                if !matches!(self.state, State::Gone { .. }) {
                    self.check_link();
                }
                self.periodic_stats();
            }
        }
        if let Some(t) = self.cap.totals() {
            self.observer.totals(t);
        }
        self.sink.flush();
        self.observer.span(self.first, self.last);
        self.result
    }

    /// After a stop, once the ring has had its time to drain.
    fn stopping(&self) -> bool {
        self.stop_seen
            .is_some_and(|t| t.elapsed() >= DRAIN_AFTER_STOP)
    }

    /// One read of the handle; `draining`: since when the interface is known removed.
    fn read(&mut self, draining: Option<Instant>) -> State {
        let same = draining.map_or(State::Reading, |since| State::Draining { since });
        let stopping = self.stopping();
        match self.cap.read() {
            Ok(Read::Packet { ts, data, wire_len }) => {
                self.first.get_or_insert(ts);
                self.last = Some(ts);
                self.down_errors_since = None;
                self.sink.packet(ts, self.link, data, wire_len);
                same
            }
            Ok(Read::Idle) if stopping => State::Ended,
            Ok(Read::Idle) => {
                // A read that waits normally: the link errors of an earlier outage are over.
                self.down_errors_since = None;
                if self.ticks.flush.elapsed() >= FLUSH_EVERY {
                    self.ticks.flush = Instant::now();
                    self.sink.flush();
                }
                if self.watch.removed() {
                    self.drain(draining, Duration::ZERO)
                } else {
                    same
                }
            }
            // A stop is not held up by a link that keeps failing reads.
            Err(_) if stopping => State::Ended,
            Err(e) => self.read_failed(e, draining, same),
        }
    }

    fn read_failed(&mut self, e: ReadFailed, draining: Option<Instant>, same: State) -> State {
        let ReadFailed {
            failure,
            message: e,
        } = e;
        match failure {
            // libpcap reports the removal as soon as it polls, but the ring may still hold a
            // block the kernel retires only at its timeout: read on until it has been quiet
            // as long as after a stop, then let the handle go.
            ReadFailure::Removed => self.drain(draining, REMOVED_PAUSE),
            ReadFailure::LinkDown
                if self.down_errors_since.is_none_or(|t| {
                    !self.watch.state().is_up() || t.elapsed() < LINK_DOWN_GRACE
                }) =>
            {
                self.down_errors_since.get_or_insert_with(Instant::now);
                std::thread::sleep(LINK_DOWN_PAUSE);
                same
            }
            _ => {
                self.result = Err(CaptureError::Stopped {
                    interface: self.iface.clone(),
                    message: e.clone(),
                });
                self.observer.problem(format!("capture stopped: {e}"), true);
                State::Ended
            }
        }
    }

    /// The interface is removed: drain its ring, or let the handle go once it was quiet.
    fn drain(&mut self, draining: Option<Instant>, pause: Duration) -> State {
        let since = draining.unwrap_or_else(Instant::now);
        if since.elapsed() >= DRAIN_AFTER_STOP {
            return self.let_go();
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        State::Draining { since }
    }

    /// The handle of a removed interface is read out: let it go and wait for the interface.
    fn let_go(&mut self) -> State {
        self.sink.flush();
        let iface = &self.iface;
        let speaks = self.observer.speaks_for_link();
        if !P::REOPENS {
            if speaks {
                self.observer.interrupted("interface_removed", 1);
                tracing::warn!(
                "{iface}: the interface was removed; its fanout capture ends (a fanout group is \
                 not reopened while the sensor runs; a restart opens a new one, which systemd's \
                 Restart=on-failure does when no capture is left); everything captured until \
                 then is kept"
                );
            }
            self.observer.problem(
                "capture ended: the interface was removed; restart vendorwatch".into(),
                true,
            );
            self.result = Err(CaptureError::RemovedFanout {
                interface: iface.clone(),
            });
            return State::Ended;
        }
        let (what, problem) = if self.sandboxed {
            ("a new one is tried when the interface is back; the seccomp filter will refuse it, and the \
              capture then ends, so that a restart opens it (systemd's Restart=on-failure does, when no \
              capture is left)",
             "capture interrupted: the interface was removed; restart vendorwatch once it is back")
        } else {
            (
                "it is reopened when the interface is back",
                "capture interrupted: the interface was removed; it is reopened when it is back",
            )
        };
        self.observer.interrupted("interface_removed", 1);
        self.observer.problem(problem.into(), true);
        tracing::warn!(
            "{iface}: the interface was removed; its capture handle is gone and {what}; \
             everything captured until then is kept"
        );
        State::Gone {
            reopen_at: Instant::now(),
            wait: REOPEN_FIRST,
        }
    }

    /// Waits for the removed interface to exist again, then opens a new handle.
    fn reopen(&mut self, reopen_at: Instant, wait: Duration) -> State {
        if self.stop_seen.is_some() {
            return State::Ended;
        }
        std::thread::sleep(LINK_CHECK);
        let _ = self.watch.check();
        let exists = !matches!(self.watch.state(), LinkState::Removed);
        if !exists || Instant::now() < reopen_at {
            return State::Gone { reopen_at, wait };
        }
        if let Some(t) = self.cap.totals() {
            self.observer.totals(t);
        }
        let iface = self.iface.clone();
        match self.cap.reopen() {
            Ok(fresh) => {
                self.cap = fresh;
                self.link = self.cap.link();
                self.watch.rebind();
                tracing::info!("{iface}: the interface is back; capture reopened");
                self.observer.healthy(self.watch.state().is_up());
                State::Reading
            }
            Err(OpenError::Permission { reason, .. }) => {
                let why = if self.sandboxed {
                    "the seccomp filter refuses new packet sockets"
                } else {
                    "this process dropped CAP_NET_RAW"
                };
                tracing::warn!(
                    "{iface}: the interface is back, but a new capture cannot be opened \
                     ({reason}; {why}); ending its capture so that a restart opens it"
                );
                self.result = Err(CaptureError::ReopenRefused {
                    interface: iface.clone(),
                    why,
                });
                self.observer.problem(
                    "capture ended: the interface was removed; restart vendorwatch".into(),
                    false,
                );
                State::Ended
            }
            Err(e) => {
                // Not there yet, or not ready (no carrier, still being set up).
                tracing::debug!("{iface}: reopen: {e}");
                State::Gone {
                    reopen_at: Instant::now() + wait,
                    wait: (wait * 2).min(REOPEN_MAX),
                }
            }
        }
    }

    /// Every [`LINK_CHECK`]: whether the link went down, came back or flapped.
    fn check_link(&mut self) {
        if self.ticks.link_check.elapsed() < LINK_CHECK {
            return;
        }
        self.ticks.link_check = Instant::now();
        let iface = &self.iface;
        let speaks = self.observer.speaks_for_link();
        match self.watch.check() {
            Some(LinkEvent::Lost(state)) if !self.watch.removed() => {
                let why = state.describe();
                if speaks {
                    tracing::warn!(
                        "{iface}: the interface went down ({why}); the capture stays open and \
                         resumes when the link is back (nothing captured so far is lost)"
                    );
                    self.observer.interrupted("link_down", 1);
                }
                self.observer.problem(
                    format!("capture interrupted: the interface is {why}; it resumes when the link is back"),
                    true,
                );
            }
            Some(LinkEvent::Back(after)) => {
                self.down_errors_since = None;
                if speaks {
                    tracing::info!(
                        "{iface}: the interface is up again after {:.1} s; capturing",
                        after.as_secs_f64()
                    );
                }
                self.observer.healthy(true);
            }
            Some(LinkEvent::Flapped(n)) if speaks => {
                tracing::warn!(
                    "{iface}: the link went down and came back between two checks ({n} time(s)); capturing"
                );
                self.observer.interrupted("link_down", n);
            }
            // Removed or replaced: the handle is let go once its ring is read out.
            Some(LinkEvent::Lost(_) | LinkEvent::Flapped(_)) | None => {}
        }
    }

    /// Every [`STATS_EVERY`]: totals, the batch, and the packet span so far.
    fn periodic_stats(&mut self) {
        if self.ticks.stats.elapsed() < STATS_EVERY {
            return;
        }
        self.ticks.stats = Instant::now();
        if let Some(t) = self.cap.totals() {
            self.observer.totals(t);
        }
        self.sink.flush();
        // `/api/hosts` shows the span while the sensor runs, not only at the end.
        self.observer.span(self.first, self.last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_errors_have_unique_reasons_and_keep_their_words() {
        let errors = [
            CaptureError::Stopped {
                interface: "eth0".into(),
                message: "The interface went down".into(),
            },
            CaptureError::RemovedFanout {
                interface: "eth0".into(),
            },
            CaptureError::ReopenRefused {
                interface: "eth0".into(),
                why: "this process dropped CAP_NET_RAW",
            },
        ];
        let labels: std::collections::HashSet<_> = errors.iter().map(|e| e.reason()).collect();
        assert_eq!(labels.len(), errors.len());
        assert_eq!(
            errors[0].to_string(),
            "eth0: capture stopped: The interface went down"
        );
        assert_eq!(
            errors[2].to_string(),
            "eth0: capture ended: the interface was removed, and a new capture could not be opened \
             (this process dropped CAP_NET_RAW): restart vendorwatch to capture on it again"
        );
    }
}
