//! The host inventory: every home-net host with evidence against it, shared by all workers.
//!
//! One entry per host; per host one detection per (vendor, category) with first/last seen,
//! counts, a bounded sample of indicators and of evidence (the first and the latest
//! findings), and the host's identity: its current MAC and host name and a bounded history
//! of the distinct identities DHCP and DNS PTR answers gave its address. `record` says when
//! a finding is the first of its (host, vendor, category) — the moment an alert is due.
//!
//! Everything is bounded: the table holds at most `max_hosts` hosts (findings for new hosts
//! beyond it are shed and counted; known hosts keep being updated), and identities of
//! addresses with no detection yet wait in a map of their own, oldest evicted and counted,
//! so a DHCP lease seen hours before a host's first vendor lookup still names it.

use crate::decode::Proto;
use crate::detect::rules::{Rule, Severity};
use crate::detect::{Finding, Indicator, RuleSet};
use crate::extract::{Identity, IdentitySource};
use crate::mac::MacAddr;
use crate::time::Timestamp;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

pub mod agency;
pub mod postgres;
pub mod ship;
pub mod spool;
pub mod store;

/// Distinct indicators kept per detection; beyond this they are only counted.
pub const MAX_INDICATORS: usize = 32;
/// Evidence kept per detection: the first findings (proof of first contact) and the most
/// recent ones (still active).
pub const EVIDENCE_FIRST: usize = 4;
pub const EVIDENCE_RECENT: usize = 4;
/// Distinct identities remembered per address; beyond this the least recently seen goes.
pub const MAX_IDENTITIES: usize = 16;
/// Hosts in the table unless `--max-hosts` says otherwise.
pub const DEFAULT_MAX_HOSTS: usize = 2_048;
/// Addresses with an identity but no detection yet, remembered at most.
pub const MAX_UNDETECTED_IDENTITIES: usize = 65_536;
/// Distinct identities kept per address while it has no detection: enough for two machines
/// that held the address in turn (a DHCP request, its ACK and a PTR answer each). A flood of
/// identities for addresses that never reach the table costs at most 65,536 × 8 records: a
/// few tens of MB with real names, and a bound even for hostile ones (a host name is at most
/// 255 octets, a client id at most `extract::dhcp::MAX_CLIENT_ID` octets).
pub const MAX_UNDETECTED_HISTORY: usize = 8;

/// One finding kept as evidence: when, what, and on which flow.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Evidence {
    pub time: Timestamp,
    pub indicator: Indicator,
    pub flow: EvidenceFlow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EvidenceFlow {
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    pub transport: Proto,
}

/// One distinct identity an address had: (MAC, host name, client id) as one source said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRecord {
    pub mac: Option<MacAddr>,
    pub hostname: Option<String>,
    pub client_id: Option<String>,
    pub source: IdentitySource,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub count: u64,
}

/// Who an address is: the current host name and the history of identities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostIdentity {
    pub hostname: Option<String>,
    /// Where the current host name came from (a DHCP name is not replaced by a PTR name).
    pub hostname_source: Option<IdentitySource>,
    /// Distinct identities, at most `MAX_IDENTITIES`, in the order first seen.
    pub history: Vec<IdentityRecord>,
    /// Identities dropped from a full history.
    pub history_omitted: u64,
    /// Packet time of the identity the current name and MAC come from: workers deliver
    /// identities slightly out of order, and older news must not overwrite newer.
    pub current_at: Timestamp,
}

impl HostIdentity {
    /// Takes one identity in; `mac` is the host's current MAC, updated when DHCP names one.
    pub fn apply(&mut self, mac: &mut Option<MacAddr>, id: &Identity) {
        self.apply_bounded(mac, id, MAX_IDENTITIES);
    }

    /// `apply`, keeping at most `max` identities (the least recently seen goes first).
    pub fn apply_bounded(&mut self, mac: &mut Option<MacAddr>, id: &Identity, max: usize) {
        let same = |r: &IdentityRecord| {
            r.mac == id.mac
                && r.hostname == id.hostname
                && r.client_id == id.client_id
                && r.source == id.source
        };
        if let Some(r) = self.history.iter_mut().find(|r| same(r)) {
            r.first_seen = r.first_seen.min(id.ts);
            r.last_seen = r.last_seen.max(id.ts);
            r.count += 1;
        } else {
            while self.history.len() >= max.max(1) {
                if let Some(oldest) = self
                    .history
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, r)| r.last_seen)
                    .map(|(i, _)| i)
                {
                    self.history.remove(oldest);
                    self.history_omitted += 1;
                } else {
                    break;
                }
            }
            self.history.push(IdentityRecord {
                mac: id.mac,
                hostname: id.hostname.clone(),
                client_id: id.client_id.clone(),
                source: id.source,
                first_seen: id.ts,
                last_seen: id.ts,
                count: 1,
            });
        }
        if id.ts < self.current_at {
            return;
        }
        let mut changed = false;
        if let Some(m) = id.mac {
            changed = true;
            // Another machine took the address: the old name is not its name.
            if mac.is_some_and(|old| old != m) && id.hostname.is_none() {
                self.hostname = None;
                self.hostname_source = None;
            }
            *mac = Some(m);
        }
        if let Some(name) = &id.hostname {
            // DNS PTR answers may be stale or describe a zone, not the machine: DHCP's own
            // word on a name wins over them.
            let keep = id.source == IdentitySource::Ptr
                && self
                    .hostname_source
                    .is_some_and(|s| s != IdentitySource::Ptr);
            if !keep {
                self.hostname = Some(name.clone());
                self.hostname_source = Some(id.source);
                changed = true;
            }
        }
        if changed {
            self.current_at = id.ts;
        }
    }

    /// The distinct MAC addresses in the history (more than one: the address moved).
    pub fn macs(&self) -> Vec<MacAddr> {
        let mut v: Vec<MacAddr> = self.history.iter().filter_map(|r| r.mac).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn last_seen(&self) -> Timestamp {
        self.history
            .iter()
            .map(|r| r.last_seen)
            .max()
            .unwrap_or_default()
    }
}

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
    /// The first `EVIDENCE_FIRST` findings, then the latest `EVIDENCE_RECENT`, in that order.
    pub evidence: Vec<Evidence>,
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

/// The host's detection of `rule`'s vendor and category, made (with nothing counted yet)
/// if this is its first finding.
fn detection_for<'a>(
    detections: &'a mut Vec<Detection>,
    rule: &Rule,
    f: &Finding,
    suppressed: Option<&str>,
) -> &'a mut Detection {
    match detections
        .iter()
        .position(|d| d.vendor == rule.vendor && d.category == rule.category)
    {
        Some(i) => &mut detections[i],
        None => {
            detections.push(Detection {
                vendor: rule.vendor.clone(),
                category: rule.category.clone(),
                severity: rule.severity,
                first_seen: f.ts,
                last_seen: f.ts,
                count: 0,
                forwarded: f.forwarded,
                rules: Vec::new(),
                indicators: Vec::new(),
                evidence: Vec::new(),
                indicators_omitted: 0,
                suppressed: suppressed.map(str::to_string),
                alerted_at: None,
                alerted: false,
            });
            let last = detections.len() - 1;
            &mut detections[last]
        }
    }
}

impl Detection {
    /// Counts one finding of the detection: its time, severity, rule, indicator and evidence.
    fn count_finding(&mut self, rule: &Rule, f: &Finding, suppressed: Option<&str>) {
        self.count += 1;
        self.first_seen = self.first_seen.min(f.ts);
        self.last_seen = self.last_seen.max(f.ts);
        self.severity = self.severity.max(rule.severity);
        self.forwarded &= f.forwarded;
        if !self.rules.contains(&rule.id) {
            self.rules.push(rule.id.clone());
        }
        self.count_indicator(&f.indicator);
        self.keep_evidence(f);
        if suppressed.is_none() {
            self.suppressed = None;
        }
    }

    /// Counts the indicator: up to `MAX_INDICATORS` distinct ones, the rest only counted.
    fn count_indicator(&mut self, indicator: &Indicator) {
        if let Some(i) = self
            .indicators
            .iter_mut()
            .find(|i| i.indicator == *indicator)
        {
            i.count += 1;
        } else if self.indicators.len() < MAX_INDICATORS {
            self.indicators.push(IndicatorCount {
                indicator: indicator.clone(),
                count: 1,
            });
        } else {
            self.indicators_omitted += 1;
        }
    }

    /// Keeps the finding as evidence: the first `EVIDENCE_FIRST`, then the latest
    /// `EVIDENCE_RECENT` (the oldest of those makes room).
    fn keep_evidence(&mut self, f: &Finding) {
        if self.evidence.len() >= EVIDENCE_FIRST + EVIDENCE_RECENT {
            self.evidence.remove(EVIDENCE_FIRST);
        }
        self.evidence.push(Evidence {
            time: f.ts,
            indicator: f.indicator.clone(),
            flow: EvidenceFlow {
                src_ip: f.flow.client.ip(),
                src_port: f.flow.client.port(),
                dst_ip: f.flow.server.ip(),
                dst_port: f.flow.server.port(),
                transport: f.flow.proto,
            },
        });
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Distinct encrypted-DNS services remembered per host.
pub const MAX_HIDING_VIA: usize = 8;

#[derive(Debug, Clone, Default)]
pub struct Host {
    pub mac: Option<MacAddr>,
    pub detections: Vec<Detection>,
    /// TLS connections with Encrypted Client Hello: names the sensor cannot see.
    pub ech_connections: u64,
    /// Connections to DNS-over-HTTPS/TLS/QUIC services: lookups the sensor cannot see.
    pub encrypted_dns_connections: u64,
    pub encrypted_dns_via: Vec<String>,
    pub identity: HostIdentity,
}

/// What the table keeps for an address with no detection yet: its current MAC and identity.
pub type Undetected = (Option<MacAddr>, HostIdentity);

/// What `record` decided.
#[derive(Debug, Clone)]
pub enum Recorded {
    /// First finding of this (host, vendor, category) that warrants an alert.
    NewAlert(Detection),
    /// Counted into an existing detection, or a forwarded lookup (no alert).
    Counted,
    /// A new host, and the table is full: shed and counted.
    Shed,
}

pub struct HostTable {
    hosts: DashMap<IpAddr, Host, ahash::RandomState>,
    /// Hosts in `hosts` (a shard lock is held while inserting, so `len()` cannot be used).
    count: AtomicUsize,
    max_hosts: usize,
    /// Findings and hiding notes for new hosts shed because the table was full.
    pub shed: AtomicU64,
    /// Identities of home-net addresses with no detection yet: (MAC, identity).
    undetected: DashMap<IpAddr, Undetected, ahash::RandomState>,
    max_undetected: usize,
    /// Undetected addresses changed (or evicted) since the inventory last saved them.
    undetected_dirty: DashMap<IpAddr, (), ahash::RandomState>,
    /// Too many changed for one save to list (a flood between two saves): the next save
    /// rewrites every undetected identity instead, and nothing is tracked until then.
    undetected_resync: AtomicBool,
    /// Undetected addresses whose identity was evicted from a full map.
    pub identities_evicted: AtomicU64,
    /// Hosts changed since the inventory last saved them.
    dirty: DashMap<IpAddr, (), ahash::RandomState>,
    /// Alert again for a detection still active this long after its last alert.
    realert_after_secs: Option<u64>,
    /// A replay that keeps an inventory also keeps what its own inputs showed, apart from
    /// what the inventory brought: its report, summary and host table describe exactly its
    /// inputs, while the inventory (this table) goes on counting and remembers what was
    /// alerted.
    run_view: Option<Box<HostTable>>,
    /// Hosts the inventory held before this run (with a run view only).
    known_before: std::sync::Mutex<std::collections::HashSet<IpAddr>>,
}

impl Default for HostTable {
    fn default() -> Self {
        HostTable {
            hosts: DashMap::default(),
            count: AtomicUsize::new(0),
            max_hosts: DEFAULT_MAX_HOSTS,
            shed: AtomicU64::new(0),
            undetected: DashMap::default(),
            max_undetected: MAX_UNDETECTED_IDENTITIES,
            undetected_dirty: DashMap::default(),
            undetected_resync: AtomicBool::new(false),
            identities_evicted: AtomicU64::new(0),
            dirty: DashMap::default(),
            realert_after_secs: None,
            run_view: None,
            known_before: Default::default(),
        }
    }
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

    /// At most `max_hosts` hosts (at least one); findings for new hosts beyond are shed.
    pub fn with_max_hosts(mut self, max_hosts: usize) -> Self {
        self.max_hosts = max_hosts.max(1);
        self
    }

    /// Also keeps this run's own view (see `run_view`); call before `restore`.
    pub fn with_run_view(mut self) -> Self {
        self.run_view = Some(Box::new(
            HostTable::with_realert(self.realert_after_secs).with_max_hosts(self.max_hosts),
        ));
        self
    }

    /// What this run's inputs showed: the run view when there is one, else everything.
    pub fn run_snapshot(&self) -> Vec<(IpAddr, Host)> {
        let Some(v) = &self.run_view else {
            return self.snapshot();
        };
        // Who a host is comes from everything known (a DHCP lease seen by an earlier run
        // still names the host this run detected); what it did, from this run alone.
        let mut hosts = v.snapshot();
        for (ip, h) in &mut hosts {
            if let Some(known) = self.hosts.get(ip) {
                h.mac = known.mac.or(h.mac);
                h.identity = known.identity.clone();
            }
        }
        hosts
    }

    /// With a run view, the hosts the inventory held before this run (else `None`).
    pub fn known_before(&self) -> Option<std::collections::HashSet<IpAddr>> {
        self.run_view.as_ref()?;
        Some(
            self.known_before
                .lock()
                .map(|k| k.clone())
                .unwrap_or_default(),
        )
    }

    /// At most `max` undetected addresses keep their identity (at least one).
    pub fn with_max_undetected(mut self, max: usize) -> Self {
        self.max_undetected = max.max(1);
        self
    }

    /// Puts back what the inventory remembers (counts go on, alerted detections stay quiet).
    /// A table restored beyond its cap keeps every host; only new hosts are shed.
    pub fn restore(&self, hosts: Vec<(IpAddr, Host)>) {
        if self.run_view.is_some() {
            if let Ok(mut k) = self.known_before.lock() {
                k.extend(hosts.iter().map(|(ip, _)| *ip));
            }
        }
        for (ip, h) in hosts {
            if self.hosts.insert(ip, h).is_none() {
                self.count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The entry of `ip`, created (with the identity waiting for it) when there is room.
    fn host_entry(&self, ip: IpAddr) -> Option<dashmap::mapref::one::RefMut<'_, IpAddr, Host>> {
        match self.hosts.entry(ip) {
            Entry::Occupied(o) => Some(o.into_ref()),
            Entry::Vacant(v) => {
                if self.count.load(Ordering::Relaxed) >= self.max_hosts {
                    self.shed.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                self.count.fetch_add(1, Ordering::Relaxed);
                // Lock order everywhere: a `hosts` shard, then `undetected`.
                let (mac, identity) = self
                    .undetected
                    .remove(&ip)
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                Some(v.insert(Host {
                    mac,
                    identity,
                    ..Host::default()
                }))
            }
        }
    }

    /// Takes in what DHCP or a PTR answer says about a home-net address.
    pub fn note_identity(&self, id: &Identity) {
        if let Some(v) = &self.run_view {
            v.note_identity(id);
        }
        match self.hosts.entry(id.ip) {
            Entry::Occupied(mut o) => {
                let h = o.get_mut();
                h.identity.apply(&mut h.mac, id);
                self.dirty.insert(id.ip, ());
            }
            Entry::Vacant(_vacant_keeps_the_shard_locked) => {
                if !self.undetected.contains_key(&id.ip)
                    && self.undetected.len() >= self.max_undetected
                {
                    self.evict_undetected();
                }
                let mut e = self.undetected.entry(id.ip).or_default();
                let (mac, identity) = e.value_mut();
                identity.apply_bounded(mac, id, MAX_UNDETECTED_HISTORY);
                drop(e);
                self.mark_undetected(id.ip);
            }
        }
    }

    /// Evicts the least recently seen eighth of the undetected identities (one scan and
    /// sort per eighth of the map, not per insert, so a flood of new addresses stays cheap).
    fn evict_undetected(&self) {
        let mut ages: Vec<(Timestamp, IpAddr)> = self
            .undetected
            .iter()
            .map(|e| (e.value().1.last_seen(), *e.key()))
            .collect();
        let n = (ages.len() / 8).max(1);
        ages.select_nth_unstable(n - 1);
        for (_, ip) in &ages[..n] {
            if self.undetected.remove(ip).is_some() {
                self.identities_evicted.fetch_add(1, Ordering::Relaxed);
                self.mark_undetected(*ip);
            }
        }
    }

    /// Addresses with an identity and no detection yet.
    pub fn undetected_len(&self) -> usize {
        self.undetected.len()
    }

    /// Puts back the identities of undetected addresses the inventory remembers (at most
    /// the map's cap; the newest first) — unless the address is a host already.
    pub fn restore_undetected(&self, mut list: Vec<(IpAddr, Undetected)>) {
        list.sort_by_key(|(_, (_, id))| std::cmp::Reverse(id.last_seen()));
        for (ip, kept) in list {
            if self.undetected.len() >= self.max_undetected {
                break;
            }
            if !self.hosts.contains_key(&ip) {
                self.undetected.insert(ip, kept);
            }
        }
    }

    /// Notes an undetected address to save; past twice the map's cap of changes (so the
    /// change list stays bounded too) the next save rewrites them all.
    fn mark_undetected(&self, ip: IpAddr) {
        if self.undetected_resync.load(Ordering::Relaxed) {
            return;
        }
        if self.undetected_dirty.len() >= self.max_undetected.saturating_mul(2) {
            self.undetected_resync.store(true, Ordering::Relaxed);
            self.undetected_dirty.clear();
            return;
        }
        self.undetected_dirty.insert(ip, ());
    }

    /// Undetected addresses changed since the last call: `Some` with the identity kept, `None`
    /// when it is gone (evicted, or its address became a host, which saves it from then on).
    /// `true` with every undetected identity instead when they are to be rewritten whole.
    pub fn take_dirty_undetected(&self) -> (bool, Vec<(IpAddr, Option<Undetected>)>) {
        if self.undetected_resync.swap(false, Ordering::Relaxed) {
            self.undetected_dirty.clear();
            let all = self
                .undetected
                .iter()
                .map(|e| (*e.key(), Some(e.value().clone())))
                .collect();
            return (true, all);
        }
        let ips: Vec<IpAddr> = self.undetected_dirty.iter().map(|e| *e.key()).collect();
        let changed = ips
            .into_iter()
            .map(|ip| {
                self.undetected_dirty.remove(&ip);
                (ip, self.undetected.get(&ip).map(|e| e.value().clone()))
            })
            .collect();
        (false, changed)
    }

    /// Marks undetected addresses as changed again (after a failed save; `whole`: that save
    /// was a full rewrite).
    pub fn mark_dirty_undetected(&self, whole: bool, ips: impl Iterator<Item = IpAddr>) {
        if whole {
            self.undetected_resync.store(true, Ordering::Relaxed);
            return;
        }
        for ip in ips {
            self.mark_undetected(ip);
        }
    }

    /// The identity of an address, detected or not: (MAC, identity).
    pub fn identity_of(&self, ip: IpAddr) -> Option<Undetected> {
        if let Some(h) = self.hosts.get(&ip) {
            return Some((h.mac, h.identity.clone()));
        }
        self.undetected.get(&ip).map(|e| e.value().clone())
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
        // The run's view counts the finding too; whether it alerts is the inventory's call.
        if let Some(v) = &self.run_view {
            v.record(f, rules, suppressed);
        }
        let rule = rules.rule(f.rule);
        let Some(mut host) = self.host_entry(f.host) else {
            return Recorded::Shed;
        };
        if f.host_mac.is_some() {
            host.mac = f.host_mac;
        }
        let det = detection_for(&mut host.detections, rule, f, suppressed);
        det.count_finding(rule, f, suppressed);
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
        if let Some(v) = &self.run_view {
            v.note_hiding(host, hiding.clone());
        }
        let Some(mut h) = self.host_entry(host) else {
            return;
        };
        self.dirty.insert(host, ());
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

    /// The host name the wire gave this address last (DHCP, else PTR), if any.
    pub fn hostname(&self, ip: IpAddr) -> Option<String> {
        self.hosts
            .get(&ip)
            .and_then(|h| h.identity.hostname.clone())
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

    /// Every host's address, in order (the metrics endpoint pages and streams by address,
    /// so it never holds a copy of the whole table).
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self.hosts.iter().map(|e| *e.key()).collect();
        v.sort_unstable();
        v
    }

    /// One host as `snapshot` gives it (detections in vendor, category order).
    pub fn host(&self, ip: IpAddr) -> Option<Host> {
        let mut h = self.hosts.get(&ip)?.value().clone();
        h.detections
            .sort_by(|a, b| (&a.vendor, &a.category).cmp(&(&b.vendor, &b.category)));
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::RuleSet;
    use crate::extract::{FlowId, NameKind};
    use std::net::SocketAddr;

    fn rules() -> RuleSet {
        let loaded = crate::detect::rules::load_embedded().expect("embedded packs");
        RuleSet::compile(loaded, None).expect("compiles")
    }

    fn finding(rules: &RuleSet, host: &str, secs: i64, port: u16) -> Finding {
        let name = "dnl-01.geo.kaspersky.com";
        let hit = rules.matcher.match_name(name);
        Finding {
            ts: Timestamp::from_parts(secs, 0),
            host: host.parse().expect("ip"),
            host_mac: None,
            rule: hit.first().expect("a rule for dnl-01").rule,
            indicator: Indicator {
                kind: NameKind::Dns,
                value: name.into(),
                name: None,
                query: None,
                path: None,
                ech: false,
                ech_real: false,
            },
            flow: FlowId {
                proto: Proto::Udp,
                client: SocketAddr::new(host.parse().expect("ip"), port),
                server: "10.0.0.53:53".parse().expect("addr"),
            },
            forwarded: false,
            public_resolver: None,
            ja4: None,
        }
    }

    fn identity(
        ip: &str,
        secs: i64,
        mac: u8,
        name: Option<&str>,
        source: IdentitySource,
    ) -> Identity {
        Identity {
            ts: Timestamp::from_parts(secs, 0),
            ip: ip.parse().expect("ip"),
            mac: (source != IdentitySource::Ptr).then_some(MacAddr([2, 0, 0, 0, 0, mac])),
            hostname: name.map(str::to_string),
            client_id: None,
            source,
        }
    }

    #[test]
    fn evidence_keeps_the_first_and_the_latest_findings() {
        let rules = rules();
        let t = HostTable::new();
        for i in 0..20u16 {
            t.record(
                &finding(&rules, "10.0.0.5", i64::from(i), 40000 + i),
                &rules,
                None,
            );
        }
        let snap = t.snapshot();
        let det = &snap[0].1.detections[0];
        assert_eq!(det.count, 20);
        let ports: Vec<u16> = det.evidence.iter().map(|e| e.flow.src_port).collect();
        assert_eq!(
            ports,
            [40000, 40001, 40002, 40003, 40016, 40017, 40018, 40019]
        );
        assert_eq!(det.evidence[0].time, Timestamp::from_parts(0, 0));
    }

    #[test]
    fn identity_seen_before_the_first_detection_names_the_host() {
        let rules = rules();
        let t = HostTable::new();
        let ack = identity("10.0.0.7", 1, 7, Some("ws-7"), IdentitySource::DhcpAck);
        t.note_identity(&ack);
        assert_eq!((t.len(), t.undetected_len()), (0, 1));
        t.record(&finding(&rules, "10.0.0.7", 3600, 40000), &rules, None);
        assert_eq!((t.len(), t.undetected_len()), (1, 0));
        let h = &t.snapshot()[0].1;
        assert_eq!(h.identity.hostname.as_deref(), Some("ws-7"));
        assert_eq!(h.mac, Some(MacAddr([2, 0, 0, 0, 0, 7])));
        assert_eq!(h.identity.history.len(), 1);
    }

    #[test]
    fn a_moved_address_keeps_both_machines_in_its_history() {
        let mut id = HostIdentity::default();
        let mut mac = None;
        id.apply(
            &mut mac,
            &identity("10.0.0.9", 1, 1, Some("alice"), IdentitySource::DhcpRequest),
        );
        id.apply(
            &mut mac,
            &identity("10.0.0.9", 2, 1, None, IdentitySource::DhcpAck),
        );
        // A PTR name does not replace the name DHCP gave.
        id.apply(
            &mut mac,
            &identity("10.0.0.9", 3, 0, Some("alice.lab"), IdentitySource::Ptr),
        );
        assert_eq!(id.hostname.as_deref(), Some("alice"));
        // Another machine is bound the address without saying its name: the old name goes.
        id.apply(
            &mut mac,
            &identity("10.0.0.9", 10, 2, None, IdentitySource::DhcpAck),
        );
        assert_eq!(
            (id.hostname.as_deref(), mac),
            (None, Some(MacAddr([2, 0, 0, 0, 0, 2])))
        );
        // Its REQUEST, delivered late by another worker, still names it; an older identity
        // delivered even later changes only the history.
        id.apply(
            &mut mac,
            &identity(
                "10.0.0.9",
                10,
                2,
                Some("carol"),
                IdentitySource::DhcpRequest,
            ),
        );
        id.apply(
            &mut mac,
            &identity("10.0.0.9", 2, 1, Some("alice"), IdentitySource::DhcpAck),
        );
        assert_eq!(
            (id.hostname.as_deref(), mac),
            (Some("carol"), Some(MacAddr([2, 0, 0, 0, 0, 2])))
        );
        assert_eq!(id.macs().len(), 2);
        assert_eq!(id.history.len(), 6);
        // Repeats are counted, not added.
        id.apply(
            &mut mac,
            &identity(
                "10.0.0.9",
                11,
                2,
                Some("carol"),
                IdentitySource::DhcpRequest,
            ),
        );
        assert_eq!(id.history.len(), 6);
        // The history is bounded: the least recently seen goes, and is counted.
        for i in 0..MAX_IDENTITIES as i64 {
            id.apply(
                &mut mac,
                &identity(
                    "10.0.0.9",
                    100 + i,
                    3,
                    Some(&format!("n{i}")),
                    IdentitySource::Ptr,
                ),
            );
        }
        assert_eq!(id.history.len(), MAX_IDENTITIES);
        assert_eq!(id.history_omitted, 6);
    }

    #[test]
    fn full_tables_shed_new_hosts_and_evict_old_identities_counted() {
        let rules = rules();
        let t = HostTable::new().with_max_hosts(2).with_max_undetected(16);
        for (i, host) in ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
            .iter()
            .enumerate()
        {
            let r = t.record(&finding(&rules, host, i as i64, 40000), &rules, None);
            assert_eq!(matches!(r, Recorded::Shed), i >= 2, "{host}");
        }
        assert_eq!((t.len(), t.shed.load(Ordering::Relaxed)), (2, 2));
        // Known hosts keep being updated.
        t.record(&finding(&rules, "10.0.0.1", 9, 40001), &rules, None);
        assert_eq!(t.snapshot()[0].1.detections[0].count, 2);
        // Identities of a flood of undetected addresses stay under the cap, every eviction
        // counted, the newest kept.
        for i in 0..1000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a01_0000 + i).to_string();
            t.note_identity(&identity(
                &ip,
                i64::from(i),
                1,
                Some("x"),
                IdentitySource::DhcpAck,
            ));
        }
        assert!(t.undetected_len() <= 16, "{}", t.undetected_len());
        assert_eq!(
            t.identities_evicted.load(Ordering::Relaxed) + t.undetected_len() as u64,
            1000
        );
        assert!(t.identity_of("10.1.3.231".parse().expect("ip")).is_some());
        // The changes to save stayed bounded too: past twice the cap, the next save is a
        // rewrite of what is kept.
        let (whole, all) = t.take_dirty_undetected();
        assert!(whole);
        assert_eq!(all.len(), t.undetected_len());
        assert!(all.iter().all(|(_, kept)| kept.is_some()));
        assert_eq!(t.take_dirty_undetected(), (false, Vec::new()));
        // An undetected address keeps a short history.
        for i in 0..50 {
            let name = format!("n{i}");
            t.note_identity(&identity(
                "10.1.3.231",
                2000 + i,
                1,
                Some(&name),
                IdentitySource::DhcpAck,
            ));
        }
        let (_, id) = t
            .identity_of("10.1.3.231".parse().expect("ip"))
            .expect("kept");
        assert_eq!(id.history.len(), MAX_UNDETECTED_HISTORY);
        assert_eq!(id.hostname.as_deref(), Some("n49"));
    }
}
