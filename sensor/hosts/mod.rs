//! The host inventory: every home-net host with evidence against it, shared by all workers.
//!
//! One entry per host; per host one detection per (vendor, category) with first/last seen,
//! counts and a bounded sample of indicators. `record` says when a finding is the first of
//! its (host, vendor, category) — the moment an alert is due.

use crate::detect::rules::Severity;
use crate::detect::{Finding, Indicator, RuleSet};
use crate::time::Timestamp;
use dashmap::DashMap;
use std::net::IpAddr;

pub mod store;

/// Distinct indicators kept per detection; beyond this they are only counted.
pub const MAX_INDICATORS: usize = 32;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IndicatorCount {
    #[serde(flatten)]
    pub indicator: Indicator,
    pub count: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Detection {
    pub vendor: String,
    pub category: String,
    pub severity: Severity,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub count: u64,
    /// Every finding so far was a resolver's upstream lookup for some client.
    pub forwarded: bool,
    pub rules: Vec<String>,
    pub indicators: Vec<IndicatorCount>,
    /// Indicators beyond `MAX_INDICATORS`, counted only.
    #[serde(skip_serializing_if = "is_zero")]
    pub indicators_omitted: u64,
    /// Set while every finding so far was covered by a suppression: its reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<String>,
    /// Packet time of the last alert for this detection (kept across restarts).
    #[serde(skip)]
    pub alerted_at: Option<Timestamp>,
    #[serde(skip)]
    pub alerted: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Distinct encrypted-DNS services remembered per host.
pub const MAX_HIDING_VIA: usize = 8;

#[derive(Debug, Clone, Default)]
pub struct Host {
    pub mac: Option<[u8; 6]>,
    pub detections: Vec<Detection>,
    /// TLS connections with Encrypted Client Hello: names the sensor cannot see.
    pub ech_connections: u64,
    /// Connections to DNS-over-HTTPS/TLS/QUIC services: lookups the sensor cannot see.
    pub encrypted_dns_connections: u64,
    pub encrypted_dns_via: Vec<String>,
}

/// What `record` decided.
#[derive(Debug, Clone)]
pub enum Recorded {
    /// First finding of this (host, vendor, category) that warrants an alert.
    NewAlert(Detection),
    /// Counted into an existing detection, or a forwarded lookup (no alert).
    Counted,
}

#[derive(Default)]
pub struct HostTable {
    hosts: DashMap<IpAddr, Host, ahash::RandomState>,
    /// Hosts changed since the inventory last saved them.
    dirty: DashMap<IpAddr, (), ahash::RandomState>,
    /// Alert again for a detection still active this long after its last alert.
    realert_after_secs: Option<u64>,
}

impl HostTable {
    pub fn new() -> Self {
        HostTable::default()
    }

    pub fn with_realert(secs: Option<u64>) -> Self {
        HostTable {
            realert_after_secs: secs.filter(|s| *s > 0),
            ..HostTable::default()
        }
    }

    /// Puts back what the inventory remembers (counts go on, alerted detections stay quiet).
    pub fn restore(&self, hosts: Vec<(IpAddr, Host)>) {
        for (ip, h) in hosts {
            self.hosts.insert(ip, h);
        }
    }

    /// The hosts changed since the last call, with their current state.
    pub fn take_dirty(&self) -> Vec<(IpAddr, Host)> {
        let ips: Vec<IpAddr> = self.dirty.iter().map(|e| *e.key()).collect();
        ips.into_iter()
            .filter_map(|ip| {
                self.dirty.remove(&ip);
                self.hosts.get(&ip).map(|h| (ip, h.clone()))
            })
            .collect()
    }

    /// Marks hosts as changed again (after a failed save).
    pub fn mark_dirty(&self, ips: impl Iterator<Item = IpAddr>) {
        for ip in ips {
            self.dirty.insert(ip, ());
        }
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Records a finding; `suppressed` is the reason of a suppression that covers it.
    pub fn record(&self, f: &Finding, rules: &RuleSet, suppressed: Option<&str>) -> Recorded {
        let rule = rules.rule(f.rule);
        let mut host = self.hosts.entry(f.host).or_default();
        if f.host_mac.is_some() {
            host.mac = f.host_mac;
        }
        let det = match host
            .detections
            .iter_mut()
            .position(|d| d.vendor == rule.vendor && d.category == rule.category)
        {
            Some(i) => &mut host.detections[i],
            None => {
                host.detections.push(Detection {
                    vendor: rule.vendor.clone(),
                    category: rule.category.clone(),
                    severity: rule.severity,
                    first_seen: f.ts,
                    last_seen: f.ts,
                    count: 0,
                    forwarded: f.forwarded,
                    rules: Vec::new(),
                    indicators: Vec::new(),
                    indicators_omitted: 0,
                    suppressed: suppressed.map(str::to_string),
                    alerted_at: None,
                    alerted: false,
                });
                let last = host.detections.len() - 1;
                &mut host.detections[last]
            }
        };
        det.count += 1;
        det.first_seen = det.first_seen.min(f.ts);
        det.last_seen = det.last_seen.max(f.ts);
        det.severity = det.severity.max(rule.severity);
        det.forwarded &= f.forwarded;
        if !det.rules.contains(&rule.id) {
            det.rules.push(rule.id.clone());
        }
        if let Some(i) = det
            .indicators
            .iter_mut()
            .find(|i| i.indicator == f.indicator)
        {
            i.count += 1;
        } else if det.indicators.len() < MAX_INDICATORS {
            det.indicators.push(IndicatorCount {
                indicator: f.indicator.clone(),
                count: 1,
            });
        } else {
            det.indicators_omitted += 1;
        }
        if suppressed.is_none() {
            det.suppressed = None;
        }
        // Alert on the first finding, and again for a host still active after the re-alert interval.
        let realert_due = match (det.alerted_at, self.realert_after_secs) {
            (Some(at), Some(secs)) => f.ts >= at.saturating_add_secs(secs),
            _ => false,
        };
        self.dirty.insert(f.host, ());
        if (!det.alerted || realert_due) && !f.forwarded && suppressed.is_none() {
            det.alerted = true;
            det.alerted_at = Some(f.ts);
            return Recorded::NewAlert(det.clone());
        }
        Recorded::Counted
    }

    /// Counts a way the host hides names from the sensor.
    pub fn note_hiding(&self, host: IpAddr, hiding: crate::detect::Hiding) {
        self.dirty.insert(host, ());
        let mut h = self.hosts.entry(host).or_default();
        match hiding {
            crate::detect::Hiding::Ech => h.ech_connections += 1,
            crate::detect::Hiding::EncryptedDns(via) => {
                h.encrypted_dns_connections += 1;
                if h.encrypted_dns_via.len() < MAX_HIDING_VIA && !h.encrypted_dns_via.contains(&via)
                {
                    h.encrypted_dns_via.push(via);
                }
            }
        }
    }

    /// A consistent copy of the inventory, hosts sorted by address.
    pub fn snapshot(&self) -> Vec<(IpAddr, Host)> {
        let mut v: Vec<(IpAddr, Host)> = self
            .hosts
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        v.sort_by_key(|e| e.0);
        for (_, h) in &mut v {
            h.detections
                .sort_by(|a, b| (&a.vendor, &a.category).cmp(&(&b.vendor, &b.category)));
        }
        v
    }
}
