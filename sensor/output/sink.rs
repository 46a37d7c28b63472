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
    /// Ends delivery at the end of the run (waiting at most its own close timeout) and
    /// says what the user must hear about it, if anything.
    fn conclude(&self, kept: &Kept) -> Option<Concluded>;
}

/// Where a run keeps its detections besides the alert sinks: what a sink that lost alerts
/// names so the user knows nothing detected is gone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kept {
    /// Every output the detections were sent to ("the alerts file PATH", "the report
    /// PATH", "the inventory PATH"), whether or not it was written in the end.
    pub configured: Vec<String>,
    /// Where every detection is now: the report written, the inventory saved, the host
    /// table printed.
    pub holding: Vec<String>,
}

/// A sink's word at the end of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concluded {
    /// The line for stderr (without the `vendorwatch: ` prefix).
    pub message: String,
    /// Alerts were lost (the exit code says so).
    pub lost: bool,
}

/// How long the end of a run waits for syslog to deliver what is queued.
pub const SYSLOG_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

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

    fn conclude(&self, kept: &Kept) -> Option<Concluded> {
        let stats = self.close(super::alertfile::CLOSE_TIMEOUT);
        let (message, lost) = self.end_message(&stats, &kept.holding)?;
        Some(Concluded { message, lost })
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

    fn conclude(&self, kept: &Kept) -> Option<Concluded> {
        let stats = self.close(SYSLOG_CLOSE_TIMEOUT)?;
        let lost = stats.dropped + stats.unsent + stats.queued + stats.rejected;
        if lost == 0 {
            return None;
        }
        let where_else = if kept.configured.is_empty() {
            "nothing else kept them (pass --alerts or --report next time)".to_string()
        } else {
            format!("{} have the detections", kept.configured.join(", "))
        };
        Some(Concluded {
            message: format!(
                "syslog: {} alert(s) sent, {lost} not delivered (receiver unreachable or queue full); {where_else}",
                stats.sent
            ),
            lost: true,
        })
    }
}

/// Every alert output of a run, treated alike.
#[derive(Default)]
pub struct Sinks(Vec<Box<dyn Sink>>);

impl Sinks {
    /// The run's outputs: syslog (when configured) is handed each alert first, then the
    /// alerts file; at the end they are concluded in the same order.
    pub fn new(alerts: Option<AlertSink>, syslog: Option<SyslogSink>) -> Sinks {
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        if let Some(s) = syslog {
            sinks.push(Box::new(SyslogOutput::new(s)));
        }
        if let Some(a) = alerts {
            sinks.push(Box::new(a));
        }
        Sinks(sinks)
    }

    /// Each sink, in delivery order.
    pub fn iter(&self) -> impl Iterator<Item = &dyn Sink> {
        self.0.iter().map(|s| s.as_ref())
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

    /// Ends every sink (each waits at most its own close timeout); what to tell the user.
    pub fn conclude(&self, kept: &Kept) -> Vec<Concluded> {
        self.iter().filter_map(|s| s.conclude(kept)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::alertfile::{AlertFileOptions, Destination};
    use crate::output::syslog::{SyslogConfig, SyslogTarget};

    #[test]
    fn every_sink_gets_every_alert_and_reports_alike() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("alerts.jsonl");
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        receiver
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let target = SyslogTarget::Udp(receiver.local_addr().expect("addr"));
        let sinks = Sinks::new(
            Some(
                AlertSink::start(Destination::File(path.clone()), AlertFileOptions::default())
                    .expect("alerts"),
            ),
            Some(SyslogSink::start(SyslogConfig::new(target)).expect("syslog")),
        );
        let outputs: Vec<&str> = sinks.iter().map(|s| s.output()).collect();
        assert_eq!(outputs, ["syslog", "alerts"]);
        sinks.deliver(Severity::High, r#"{"alert":1}"#);
        sinks.deliver(Severity::Low, r#"{"alert":2}"#);
        let mut buf = [0u8; 2048];
        for _ in 0..2 {
            let n = receiver.recv(&mut buf).expect("a syslog datagram");
            assert!(String::from_utf8_lossy(&buf[..n]).contains(r#"{"alert":"#));
        }
        let kept = Kept {
            configured: vec!["the report r.json".into()],
            holding: vec!["the report r.json".into()],
        };
        // Nothing was lost: nothing to say, and every alert counted as written by both.
        assert_eq!(sinks.conclude(&kept), Vec::new());
        let text = std::fs::read_to_string(&path).expect("alerts file");
        assert_eq!(text, "{\"alert\":1}\n{\"alert\":2}\n");
        let alerts = sinks
            .iter()
            .find(|s| s.output() == "alerts")
            .expect("alerts");
        assert_eq!(
            alerts.delivery(),
            Some(Delivery {
                written: 2,
                rotations: Some(0),
                ..Delivery::default()
            })
        );
        // A closed syslog sink reports no more (its series leave /metrics, as before).
        let syslog = sinks
            .iter()
            .find(|s| s.output() == "syslog")
            .expect("syslog");
        assert_eq!(syslog.delivery(), None);
    }

    #[test]
    fn a_syslog_sink_that_lost_alerts_says_where_the_detections_are() {
        // A unix datagram socket that nobody binds: every message fails and stays queued
        // until the close gives up on it.
        let dir = tempfile::tempdir().expect("tmp");
        let target = SyslogTarget::Unix(dir.path().join("nobody"));
        let mut cfg = SyslogConfig::new(target);
        cfg.capacity = 1;
        let sinks = Sinks::new(None, Some(SyslogSink::start(cfg).expect("syslog")));
        sinks.deliver(Severity::High, "one");
        sinks.deliver(Severity::High, "two");
        let kept = Kept {
            configured: vec!["the alerts file a.jsonl".into(), "the report r.json".into()],
            holding: Vec::new(),
        };
        let ends = sinks.conclude(&kept);
        assert_eq!(ends.len(), 1, "{ends:?}");
        assert!(ends[0].lost);
        assert!(
            ends[0]
                .message
                .starts_with("syslog: 0 alert(s) sent, 2 not delivered")
                && ends[0]
                    .message
                    .ends_with("; the alerts file a.jsonl, the report r.json have the detections"),
            "{}",
            ends[0].message
        );
    }
}
