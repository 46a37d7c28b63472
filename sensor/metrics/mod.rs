//! Counters every stage bumps: packets, drops and anomalies by reason, names by kind,
//! findings and alerts. Workers count locally and fold their counts in once per batch, so
//! the hot path touches no shared cache line. The replay summary reads these; the
//! Prometheus exporter (`serve::exporter`) reads the same at scrape time.

pub mod reason;

pub use reason::{Anomaly, DropReason, Layer, Stage};

use crate::extract::NameKind;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Counters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub flows_evicted: AtomicU64,
    pub findings: AtomicU64,
    pub alerts: AtomicU64,
    /// Findings a suppression covered (no alert raised for them).
    pub alerts_suppressed: AtomicU64,
    pub events: AtomicU64,
    /// Packets dropped because a worker's queue was full (live only; replay waits).
    pub queue_dropped: AtomicU64,
    /// Packets on pcapng interfaces with a link type we cannot read.
    pub unsupported_link: AtomicU64,
    anomalies: Mutex<BTreeMap<Anomaly, u64>>,
    names: Mutex<BTreeMap<NameKind, u64>>,
    encaps: Mutex<BTreeMap<&'static str, u64>>,
    /// Findings by (vendor, category, indicator kind): by name, not rule index, so counts
    /// survive a rule reload that renumbers the rules.
    matches: Mutex<BTreeMap<(String, String, NameKind), u64>>,
    /// Alerts by (vendor, category).
    alerts_by_category: Mutex<BTreeMap<(String, String), u64>>,
    /// Rule reloads that put new rules in force, and that failed (the old rules stayed).
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Live state for the exporter and the status line.
    pub sensor: SensorState,
}

/// What the running sensor looks like, beyond counters: capture sources, flows, health.
#[derive(Default)]
pub struct SensorState {
    /// Per capture source: (name, libpcap received, kernel dropped, interface dropped).
    pub sources: Mutex<Vec<(String, u64, u64, u64)>>,
    /// Per source: packets and bytes read by vendorwatch.
    pub source_packets: Mutex<BTreeMap<String, (u64, u64)>>,
    /// Active flows per worker.
    pub flows_active: Mutex<BTreeMap<usize, u64>>,
    /// Bytes held by TCP reassembly buffers, per worker.
    pub reassembly_bytes: Mutex<BTreeMap<usize, u64>>,
    /// Queued batches per worker.
    pub queue_depth: Mutex<Vec<usize>>,
    /// Why the sensor is not healthy, if it is not ("" when capturing with rules loaded).
    pub unhealthy: Mutex<Option<String>>,
    /// Unix time of the last successful rule load.
    pub rules_loaded_at: Mutex<f64>,
    /// The inventory persister's (successful saves, failed saves), when there is an inventory.
    pub inventory_saves: Mutex<Option<(Arc<AtomicU64>, Arc<AtomicU64>)>>,
    /// The shipper's figures, when the sensor ships to an agency inventory (`--inventory`).
    pub agency: Mutex<Option<Arc<crate::hosts::ship::ShipStats>>>,
    /// Per live capture interface: is it capturing, and how often was it interrupted.
    pub captures: Mutex<BTreeMap<String, CaptureStatus>>,
}

/// One live capture interface's health, kept by its capture thread.
#[derive(Default, Debug, Clone)]
pub struct CaptureStatus {
    /// Packets can arrive (the link is up and the handle is bound).
    pub up: bool,
    /// Interruptions by reason (`CaptureStatus::REASONS`).
    pub interruptions: BTreeMap<&'static str, u64>,
    /// Why it is not capturing, and what to do, when it is not.
    pub problem: Option<String>,
}

impl CaptureStatus {
    /// The bounded `reason` label values of `vendorwatch_capture_interruptions_total`:
    /// the link went down (and came back, or not yet), or the interface was removed.
    pub const REASONS: [&'static str; 2] = ["link_down", "interface_removed"];
}

/// A worker's counts since its last fold.
#[derive(Default, Debug)]
pub struct Local {
    pub packets: u64,
    pub bytes: u64,
    pub flows_evicted: u64,
    pub findings: u64,
    pub alerts: u64,
    pub alerts_suppressed: u64,
    pub events: u64,
    /// Packets in batches dropped because a worker's queue was full (live only).
    pub queue_dropped: u64,
    pub anomalies: BTreeMap<Anomaly, u64>,
    /// Names by kind (`NameKind as usize`): counted for every name read, so an array, not a
    /// map looked up (and rebuilt after every fold) each time.
    pub names: [u64; NameKind::ALL.len()],
    pub encaps: BTreeMap<&'static str, u64>,
    /// Findings by (rule index, indicator kind).
    pub matches: BTreeMap<(u32, NameKind), u64>,
    /// Alerts by rule index.
    pub alerts_by_rule: BTreeMap<u32, u64>,
}

impl Local {
    pub fn encaps(&mut self, e: crate::decode::Encaps) {
        // Nearly every packet came through none: no walk over every kind for it.
        if e.is_empty() {
            return;
        }
        for kind in e.iter() {
            *self.encaps.entry(kind.name()).or_default() += 1;
        }
    }

    /// Counts one anomaly: a stage's typed error (`DecodeError`, a defragmenter event, the
    /// extractor's `Anomaly`) or one of the dispatcher's own.
    pub fn anomaly(&mut self, anomaly: impl Into<Anomaly>) {
        self.anomalies_n(anomaly, 1);
    }

    /// Counts `n` of one anomaly.
    pub fn anomalies_n(&mut self, anomaly: impl Into<Anomaly>, n: u64) {
        if n > 0 {
            *self.anomalies.entry(anomaly.into()).or_default() += n;
        }
    }

    pub fn name(&mut self, kind: NameKind) {
        self.names[kind as usize] += 1;
    }
}

/// Adds a worker's counts by label into the shared map, and empties them.
fn merge<K: Ord>(shared: &Mutex<BTreeMap<K, u64>>, local: &mut BTreeMap<K, u64>) {
    if local.is_empty() {
        return;
    }
    if let Ok(mut m) = shared.lock() {
        for (k, v) in std::mem::take(local) {
            *m.entry(k).or_default() += v;
        }
    }
}

impl Counters {
    pub fn fold(&self, local: &mut Local) {
        let add = |c: &AtomicU64, v: &mut u64| {
            if *v > 0 {
                c.fetch_add(*v, Ordering::Relaxed);
                *v = 0;
            }
        };
        add(&self.packets, &mut local.packets);
        add(&self.bytes, &mut local.bytes);
        add(&self.flows_evicted, &mut local.flows_evicted);
        add(&self.findings, &mut local.findings);
        add(&self.alerts, &mut local.alerts);
        add(&self.alerts_suppressed, &mut local.alerts_suppressed);
        add(&self.events, &mut local.events);
        add(&self.queue_dropped, &mut local.queue_dropped);
        merge(&self.anomalies, &mut local.anomalies);
        merge(&self.encaps, &mut local.encaps);
        if local.names.iter().any(|&n| n > 0) {
            if let Ok(mut m) = self.names.lock() {
                for (kind, n) in NameKind::ALL.into_iter().zip(&mut local.names) {
                    if *n > 0 {
                        *m.entry(kind).or_default() += std::mem::take(n);
                    }
                }
            }
        }
    }

    /// Folds a worker's findings and alerts, counted by rule index under `rules` (the rule
    /// set the worker judged them with), into the per-vendor and per-category counts.
    pub fn fold_findings(&self, local: &mut Local, rules: &crate::detect::RuleSet) {
        if !local.matches.is_empty() {
            if let Ok(mut m) = self.matches.lock() {
                for ((rule, kind), n) in std::mem::take(&mut local.matches) {
                    let r = rules.rule(rule);
                    *m.entry((r.vendor.clone(), r.category.clone(), kind))
                        .or_default() += n;
                }
            }
        }
        if !local.alerts_by_rule.is_empty() {
            if let Ok(mut m) = self.alerts_by_category.lock() {
                for (rule, n) in std::mem::take(&mut local.alerts_by_rule) {
                    let r = rules.rule(rule);
                    *m.entry((r.vendor.clone(), r.category.clone())).or_default() += n;
                }
            }
        }
    }

    pub fn anomalies(&self) -> BTreeMap<Anomaly, u64> {
        self.anomalies.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// The anomalies by their labels, in label order (the replay summary's list).
    pub fn anomalies_by_reason(&self) -> BTreeMap<&'static str, u64> {
        let mut by = BTreeMap::new();
        for (a, n) in self.anomalies() {
            *by.entry(a.reason()).or_default() += n;
        }
        by
    }

    /// Packets per encapsulation they came through (vlan, gre, vxlan, …).
    pub fn encaps(&self) -> BTreeMap<&'static str, u64> {
        self.encaps.lock().map(|a| a.clone()).unwrap_or_default()
    }

    pub fn matches(&self) -> BTreeMap<(String, String, NameKind), u64> {
        self.matches.lock().map(|a| a.clone()).unwrap_or_default()
    }

    pub fn alerts_by_category(&self) -> BTreeMap<(String, String), u64> {
        self.alerts_by_category
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    pub fn names(&self) -> BTreeMap<NameKind, u64> {
        self.names.lock().map(|a| a.clone()).unwrap_or_default()
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
