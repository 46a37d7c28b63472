//! The alert outputs behind one trait: the alerts file (or stdout) and syslog each take an
//! alert line and say what they did with the lines so far, so the pipeline hands every alert
//! to every sink the same way and the exporter reports them all the same way
//! (`vendorwatch_output_*{output}`).
//!
//! Each sink keeps its own queue and thread and never blocks the worker that delivers to it.

use super::alertfile::AlertSink;
use super::syslog::{SinkStats, SyslogSink};
use crate::detect::rules::Severity;
use std::sync::Mutex;
use std::time::Duration;

/// What a sink did with the alerts given to it so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Written to the file, or handed to the transport.
    pub written: u64,
    /// Failed writes, syncs, rotations, connects (each retried).
    pub errors: u64,
    /// Given up on: beyond the backlog, or refused by the transport.
    pub dropped: u64,
    /// Accepted and not yet written or sent.
    pub backlog: u64,
    /// Size-based rotations, for a sink that rotates.
    pub rotations: Option<u64>,
}

/// An alert output.
pub trait Sink: Send + Sync {
    /// The `output` label of its metrics.
    fn output(&self) -> &'static str;
    /// Queues one alert line (JSON, no newline needed); never blocks.
    fn deliver(&self, severity: Severity, line: &str);
    /// What it did so far; `None` once it is closed and counts no more.
    fn delivery(&self) -> Option<Delivery>;
    /// Starts its file again where it was moved away (SIGHUP after logrotate).
    fn reopen(&self) {}
}

impl Sink for AlertSink {
    fn output(&self) -> &'static str {
        "alerts"
    }

    fn deliver(&self, _severity: Severity, line: &str) {
        self.send(line.to_string());
    }

    fn delivery(&self) -> Option<Delivery> {
        let st = self.stats();
        Some(Delivery {
            written: st.written,
            errors: st.errors,
            dropped: st.dropped,
            backlog: st.backlog,
            rotations: Some(st.rotations),
        })
    }

    fn reopen(&self) {
        AlertSink::reopen(self);
    }
}

/// The syslog sink as the run holds it: taken out when it is closed at the end.
pub struct SyslogOutput(Mutex<Option<SyslogSink>>);

impl SyslogOutput {
    pub fn new(sink: SyslogSink) -> SyslogOutput {
        SyslogOutput(Mutex::new(Some(sink)))
    }

    /// Delivers what is queued (waiting up to `timeout`) and stops the sender; `None` when
    /// it was closed already.
    pub fn close(&self, timeout: Duration) -> Option<SinkStats> {
        let sink = self.0.lock().ok().and_then(|mut s| s.take())?;
        Some(sink.close(timeout))
    }
}

impl Sink for SyslogOutput {
    fn output(&self) -> &'static str {
        "syslog"
    }

    fn deliver(&self, severity: Severity, line: &str) {
        if let Ok(Some(sink)) = self.0.lock().as_deref() {
            sink.send(severity, line.to_string());
        }
    }

    fn delivery(&self) -> Option<Delivery> {
        let st = self.0.lock().ok()?.as_ref()?.stats();
        Some(Delivery {
            written: st.sent,
            errors: st.errors,
            dropped: st.dropped + st.rejected,
            backlog: st.queued,
            rotations: None,
        })
    }
}

/// Every alert output of a run.
#[derive(Default)]
pub struct Sinks {
    syslog: Option<SyslogOutput>,
    alerts: Option<AlertSink>,
}

impl Sinks {
    pub fn new(alerts: Option<AlertSink>, syslog: Option<SyslogSink>) -> Sinks {
        Sinks {
            syslog: syslog.map(SyslogOutput::new),
            alerts,
        }
    }

    /// Each sink, in the order alerts are delivered (syslog first: the file may be slow).
    pub fn iter(&self) -> impl Iterator<Item = &dyn Sink> {
        let syslog = self.syslog.as_ref().map(|s| s as &dyn Sink);
        let alerts = self.alerts.as_ref().map(|s| s as &dyn Sink);
        syslog.into_iter().chain(alerts)
    }

    /// Hands one alert to every sink.
    pub fn deliver(&self, severity: Severity, line: &str) {
        for sink in self.iter() {
            sink.deliver(severity, line);
        }
    }

    pub fn reopen(&self) {
        for sink in self.iter() {
            sink.reopen();
        }
    }

    /// The alerts file, for the end of the run (closing it and what to say).
    pub fn alerts(&self) -> Option<&AlertSink> {
        self.alerts.as_ref()
    }

    /// The syslog sink, for the end of the run.
    pub fn syslog(&self) -> Option<&SyslogOutput> {
        self.syslog.as_ref()
    }
}
