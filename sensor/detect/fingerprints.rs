//! Learned client fingerprints: what a vendor's software looks like on this network, learned
//! from the hosts whose vendor names are visible, applied to the hosts where names are hidden.
//!
//! For every TLS or QUIC ClientHello from a home-net host the learner counts its JA4 in one of
//! two columns: a *vendor flow* (its server name matched a vendor rule of medium severity or
//! more: product traffic, not a person reading the vendor's web site) or an *other flow* (a
//! visible name no vendor rule matched). Flows whose destination is hidden (no SNI, or an
//! real Encrypted Client Hello, whose outer name is a provider's public name) count in neither: they are what
//! the learning is for.
//!
//! A fingerprint is a **candidate** for a vendor when
//! - at least `min_hosts` distinct hosts used it on that vendor's flows,
//! - its flow specificity (vendor flows / all visible-name flows) is at least
//!   `min_specificity`, and so is its host specificity (vendor hosts / every host that used it
//!   with a visible name), so a stack that many hosts use for anything else never qualifies,
//! - and those vendor flows span at least `min_observe_secs` of packet time.
//!
//! A host that uses a candidate fingerprint on a hidden-name flow gets a finding of the
//! vendor's `suspected` category (medium severity at most, never an alert of high severity by
//! itself). Hidden flows seen before the fingerprint qualified are remembered (bounded) and
//! reported when it does, so the order of a replay does not decide the outcome.
//!
//! Every table is bounded: `MAX_FINGERPRINTS` fingerprints (an eighth gives way at once, those
//! never seen on a vendor's flows and least recently seen first, counted), `MAX_HOSTS_KEPT`
//! hosts listed per column, `MAX_PENDING` remembered hidden flows.

use crate::extract::FlowId;
use crate::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// The JA4 a ClientHello would have with a server name: what the learner keys on. JA4 marks
/// whether SNI was sent (`d`/`i`) and counts it among the extensions; everything else (cipher
/// and extension hashes exclude SNI) is the same, so one client stack with and without a name
/// is one key. Returns `None` for a string that is not a JA4.
pub fn with_sni(ja4: &str) -> Option<String> {
    let b = ja4.as_bytes();
    if b.len() < 10 || !matches!(b[0], b't' | b'q') || b.get(10) != Some(&b'_') {
        return None;
    }
    match b[3] {
        b'd' => Some(ja4.to_string()),
        b'i' => {
            let count: u32 = ja4.get(6..8)?.parse().ok()?;
            Some(format!(
                "{}d{}{:02}{}",
                &ja4[..3],
                &ja4[4..6],
                (count + 1).min(99),
                &ja4[8..]
            ))
        }
        _ => None,
    }
}

/// The JA4 the same client stack has without a server name (the other form `with_sni` unifies).
pub fn without_sni(ja4: &str) -> Option<String> {
    let canonical = with_sni(ja4)?;
    let count: u32 = canonical.get(6..8)?.parse().ok()?;
    Some(format!(
        "{}i{}{:02}{}",
        &canonical[..3],
        &canonical[4..6],
        count.saturating_sub(1),
        &canonical[8..]
    ))
}

/// Fingerprints remembered; beyond it the least recently seen is shed.
pub const MAX_FINGERPRINTS: usize = 8192;
/// Hosts listed per fingerprint and column: enough to decide and to show the analyst; the
/// counts that decide stay exact up to this many.
pub const MAX_HOSTS_KEPT: usize = 256;
/// Server names kept per fingerprint and vendor, as evidence for the analyst.
pub const MAX_NAMES_KEPT: usize = 8;
/// Hidden-name flows remembered per fingerprint until it qualifies.
pub const MAX_PENDING: usize = 64;

/// When a fingerprint becomes a candidate. The defaults are conservative: a network needs
/// several hosts whose vendor traffic is visible for an hour before anything is suspected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearnSettings {
    pub min_hosts: usize,
    pub min_specificity: f64,
    pub min_observe_secs: u64,
}

impl Default for LearnSettings {
    fn default() -> Self {
        LearnSettings {
            min_hosts: 5,
            min_specificity: 0.95,
            min_observe_secs: 3600,
        }
    }
}

/// One vendor's use of a fingerprint.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VendorUse {
    pub flows: u64,
    pub hosts: BTreeSet<IpAddr>,
    #[serde(with = "nanos")]
    pub first_seen: Timestamp,
    #[serde(with = "nanos")]
    pub last_seen: Timestamp,
    pub names: BTreeSet<String>,
    pub ports: BTreeSet<u16>,
}

/// What the learner knows of one fingerprint (also the inventory's row).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FingerprintStats {
    pub fingerprint: String,
    /// Flows with a visible name that no vendor rule matched.
    pub other_flows: u64,
    /// Hosts that used it on such flows (bounded; see `MAX_HOSTS_KEPT`).
    pub other_hosts: BTreeSet<IpAddr>,
    pub vendors: BTreeMap<String, VendorUse>,
    #[serde(with = "nanos")]
    pub last_seen: Timestamp,
}

/// Packet times as nanoseconds in the inventory, so they read back exactly.
mod nanos {
    use crate::time::Timestamp;

    pub fn serialize<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(t.0)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        <i64 as serde::Deserialize>::deserialize(d).map(Timestamp)
    }
}

/// A fingerprint that qualified for a vendor, with the evidence an analyst reviews.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Candidate {
    pub fingerprint: String,
    pub vendor: String,
    /// Hosts it was learned from (their vendor names were visible).
    pub hosts: Vec<IpAddr>,
    pub vendor_flows: u64,
    pub other_flows: u64,
    pub other_hosts: usize,
    pub specificity: f64,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub names: Vec<String>,
    pub ports: Vec<u16>,
}

impl Candidate {
    /// One line for the finding's indicator: what it was learned from.
    pub fn summary(&self) -> String {
        let shown: Vec<String> = self.hosts.iter().take(5).map(ToString::to_string).collect();
        let more = self.hosts.len().saturating_sub(shown.len());
        format!(
            "learned from {} host(s) ({}{}) whose {} flow(s) named {}; specificity {:.2} ({} other flow(s))",
            self.hosts.len(),
            shown.join(", "),
            if more > 0 { format!(", +{more}") } else { String::new() },
            self.vendor_flows,
            self.vendor,
            self.specificity,
            self.other_flows
        )
    }
}

impl FingerprintStats {
    /// Its use by the vendor that used it most, with the figures that decide, whether it
    /// qualifies or not (what `fingerprints list --all` shows).
    pub fn leading_use(&self) -> Option<(Candidate, f64)> {
        let (vendor, usage) = self.vendors.iter().max_by_key(|(_, u)| u.flows)?;
        let vendor_flows: u64 = self.vendors.values().map(|u| u.flows).sum();
        let visible = vendor_flows + self.other_flows;
        let specificity = usage.flows as f64 / visible.max(1) as f64;
        let other_only = self
            .other_hosts
            .iter()
            .filter(|h| !usage.hosts.contains(h))
            .count();
        let host_specificity =
            usage.hosts.len() as f64 / (usage.hosts.len() + other_only).max(1) as f64;
        let c = Candidate {
            fingerprint: self.fingerprint.clone(),
            vendor: vendor.clone(),
            hosts: usage.hosts.iter().copied().collect(),
            vendor_flows: usage.flows,
            other_flows: self.other_flows,
            other_hosts: other_only,
            specificity,
            first_seen: usage.first_seen,
            last_seen: usage.last_seen,
            names: usage.names.iter().cloned().collect(),
            ports: usage.ports.iter().copied().collect(),
        };
        Some((c, host_specificity))
    }

    /// The vendor this fingerprint qualifies for, if any.
    pub fn candidate(&self, s: &LearnSettings) -> Option<Candidate> {
        let (c, host_specificity) = self.leading_use()?;
        let span = c.last_seen.0.saturating_sub(c.first_seen.0) / 1_000_000_000;
        let qualifies = c.hosts.len() >= s.min_hosts.max(1)
            && c.specificity >= s.min_specificity
            && host_specificity >= s.min_specificity
            && span >= i64::try_from(s.min_observe_secs).unwrap_or(i64::MAX);
        qualifies.then_some(c)
    }
}

/// A hidden-name flow, remembered until its fingerprint qualifies.
#[derive(Debug, Clone, PartialEq)]
pub struct HiddenFlow {
    pub ts: Timestamp,
    pub host: IpAddr,
    pub host_mac: Option<crate::mac::MacAddr>,
    pub flow: FlowId,
}

#[derive(Debug, Default)]
struct Entry {
    stats: FingerprintStats,
    pending: Vec<HiddenFlow>,
}

/// The learning state, shared by every worker (one short lock per ClientHello).
pub struct Learner {
    settings: LearnSettings,
    /// Keyed by the fingerprint a ClientHello carries: a seeded hasher, as every table keyed by
    /// what the wire says.
    table: Mutex<HashMap<String, Entry, ahash::RandomState>>,
    /// Fingerprints shed because the table was full.
    pub shed: AtomicU64,
    /// Changed since the last save.
    dirty: AtomicBool,
}

impl Learner {
    pub fn new(settings: LearnSettings) -> Learner {
        Learner {
            settings,
            table: Mutex::new(HashMap::default()),
            shed: AtomicU64::new(0),
            dirty: AtomicBool::new(false),
        }
    }

    pub fn settings(&self) -> LearnSettings {
        self.settings
    }

    fn with_entry<T>(&self, fp: &str, ts: Timestamp, f: impl FnOnce(&mut Entry) -> T) -> T {
        let Ok(mut table) = self.table.lock() else {
            return f(&mut Entry::default());
        };
        if !table.contains_key(fp) && table.len() >= MAX_FINGERPRINTS {
            // An eighth of the table gives way at once, so a flood of new fingerprints costs
            // one scan per `MAX_FINGERPRINTS / 8` of them, not one each. Fingerprints never
            // seen on a vendor's flows go first, least recently seen first: a flood of made-up
            // hellos does not push out what was learned.
            let mut ages: Vec<(bool, Timestamp)> = table
                .values()
                .map(|e| (!e.stats.vendors.is_empty(), e.stats.last_seen))
                .collect();
            let n = (ages.len() / 8).max(1).min(ages.len() - 1);
            let (_, cutoff, _) = ages.select_nth_unstable(n);
            let cutoff = *cutoff;
            let before = table.len();
            table.retain(|_, e| (!e.stats.vendors.is_empty(), e.stats.last_seen) > cutoff);
            self.shed
                .fetch_add((before - table.len()) as u64, Ordering::Relaxed);
        }
        let entry = table.entry(fp.to_string()).or_insert_with(|| Entry {
            stats: FingerprintStats {
                fingerprint: fp.to_string(),
                ..FingerprintStats::default()
            },
            pending: Vec::new(),
        });
        entry.stats.last_seen = entry.stats.last_seen.max(ts);
        self.dirty.store(true, Ordering::Relaxed);
        f(entry)
    }

    /// A flow whose name matched `vendor`. Returns the hidden flows that this made reportable.
    pub fn vendor_flow(
        &self,
        fp: &str,
        vendor: &str,
        host: IpAddr,
        name: &str,
        port: u16,
        ts: Timestamp,
    ) -> Option<(Candidate, Vec<HiddenFlow>)> {
        let settings = self.settings;
        self.with_entry(fp, ts, |e| {
            let usage = e.stats.vendors.entry(vendor.to_string()).or_default();
            if usage.flows == 0 {
                usage.first_seen = ts;
            }
            usage.flows += 1;
            usage.first_seen = usage.first_seen.min(ts);
            usage.last_seen = usage.last_seen.max(ts);
            if usage.hosts.len() < MAX_HOSTS_KEPT {
                usage.hosts.insert(host);
            }
            if usage.names.len() < MAX_NAMES_KEPT {
                usage.names.insert(name.to_string());
            }
            if usage.ports.len() < MAX_NAMES_KEPT {
                usage.ports.insert(port);
            }
            if e.pending.is_empty() {
                return None;
            }
            let candidate = e.stats.candidate(&settings)?;
            let released = std::mem::take(&mut e.pending)
                .into_iter()
                .filter(|h| !candidate.hosts.contains(&h.host))
                .collect();
            Some((candidate, released))
        })
    }

    /// A flow with a visible name that no vendor rule matched.
    pub fn other_flow(&self, fp: &str, host: IpAddr, ts: Timestamp) {
        self.with_entry(fp, ts, |e| {
            e.stats.other_flows += 1;
            if e.stats.other_hosts.len() < MAX_HOSTS_KEPT {
                e.stats.other_hosts.insert(host);
            }
        });
    }

    /// A flow whose destination is hidden: the candidate it is suspected for, now; otherwise
    /// it is remembered in case the fingerprint qualifies later.
    pub fn hidden_flow(&self, fp: &str, hidden: HiddenFlow) -> Option<Candidate> {
        let settings = self.settings;
        self.with_entry(fp, hidden.ts, |e| match e.stats.candidate(&settings) {
            Some(c) if c.hosts.contains(&hidden.host) => None,
            Some(c) => Some(c),
            None => {
                if e.pending.len() < MAX_PENDING && !e.pending.iter().any(|p| p.host == hidden.host)
                {
                    e.pending.push(hidden);
                }
                None
            }
        })
    }

    /// Every fingerprint that qualifies now, most used first.
    pub fn candidates(&self) -> Vec<Candidate> {
        candidates_of(&self.snapshot(), &self.settings)
    }

    /// Everything learned, for the inventory.
    pub fn snapshot(&self) -> Vec<FingerprintStats> {
        self.table
            .lock()
            .map(|t| t.values().map(|e| e.stats.clone()).collect())
            .unwrap_or_default()
    }

    /// Whether anything was learned since the last call.
    pub fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::Relaxed)
    }

    /// Something learned was not saved: the next save writes it again.
    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Puts back what an inventory remembers (at start, before any packet).
    pub fn restore(&self, rows: Vec<FingerprintStats>) {
        if let Ok(mut table) = self.table.lock() {
            for stats in rows.into_iter().take(MAX_FINGERPRINTS) {
                table.insert(
                    stats.fingerprint.clone(),
                    Entry {
                        stats,
                        pending: Vec::new(),
                    },
                );
            }
        }
    }
}

/// The candidates among `rows` under `settings`, most vendor flows first.
pub fn candidates_of(rows: &[FingerprintStats], settings: &LearnSettings) -> Vec<Candidate> {
    let mut v: Vec<Candidate> = rows.iter().filter_map(|s| s.candidate(settings)).collect();
    v.sort_by(|a, b| {
        b.vendor_flows
            .cmp(&a.vendor_flows)
            .then_with(|| a.fingerprint.cmp(&b.fingerprint))
    });
    v
}

/// Writes candidates as rule packs an analyst can review and deploy, one `supplement` pack per
/// vendor: its rules add to the vendor's shipped pack (same vendor id, legal basis and
/// categories) and match the fingerprint on any ClientHello.
pub fn export_pack(candidates: &[Candidate], vendor: &str, generated: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# Client fingerprints vendorwatch learned on this network ({generated}).\n\
         # Review every rule before deploying it: each lists the hosts and flows it was learned from.\n\
         # Deploy next to the shipped packs (a directory given to --rules) on every sensor.\n\n\
         [pack]\nvendor = {vendor:?}\nsupplement = true\n\n"
    ));
    for c in candidates.iter().filter(|c| c.vendor == vendor) {
        let short: String = c
            .fingerprint
            .chars()
            .map(|ch| {
                if ch.is_ascii_alphanumeric() {
                    ch.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let hosts: Vec<String> = c.hosts.iter().map(ToString::to_string).collect();
        let note = format!(
            "{} vendor flow(s) from {} host(s) ({}), names {}, ports {:?}; {} other flow(s); specificity {:.3}; seen {} .. {}",
            c.vendor_flows,
            c.hosts.len(),
            hosts.join(", "),
            c.names.join(", "),
            c.ports,
            c.other_flows,
            c.specificity,
            c.first_seen,
            c.last_seen
        );
        out.push_str(&format!(
            "[[rule]]\nid = \"{vendor}.suspected.ja4-{short}\"\ncategory = \"suspected\"\nseverity = \"medium\"\n\
             confidence = \"low\"\ndescription = {desc:?}\nja4 = [{fp:?}, {hidden:?}]\n\
             sources = [{{ document = {doc:?}, retrieved = {day:?}, note = {note:?} }}]\n\n",
            desc = format!(
                "A TLS/QUIC client fingerprint learned from {vendor} traffic on this network: hosts whose names were visible used it for {vendor} servers and almost nothing else."
            ),
            fp = c.fingerprint,
            hidden = without_sni(&c.fingerprint).unwrap_or_else(|| c.fingerprint.clone()),
            doc = "learned by vendorwatch on this network (vendorwatch fingerprints export)",
            day = generated.get(..10).unwrap_or(generated),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Proto;
    use std::net::SocketAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_parts(secs, 0)
    }

    fn hidden(host: &str, secs: i64) -> HiddenFlow {
        HiddenFlow {
            ts: t(secs),
            host: ip(host),
            host_mac: None,
            flow: FlowId {
                proto: Proto::Tcp,
                client: SocketAddr::new(ip(host), 40000),
                server: SocketAddr::new(ip("203.0.113.9"), 443),
            },
        }
    }

    fn quick() -> LearnSettings {
        LearnSettings {
            min_hosts: 3,
            min_specificity: 0.9,
            min_observe_secs: 0,
        }
    }

    #[test]
    fn a_fingerprint_used_by_enough_hosts_only_for_the_vendor_qualifies() {
        let l = Learner::new(quick());
        for h in ["10.0.0.1", "10.0.0.2"] {
            l.vendor_flow("fpA", "kaspersky", ip(h), "ksn.kaspersky.com", 443, t(1));
        }
        assert!(l.candidates().is_empty(), "two hosts are not enough");
        l.vendor_flow(
            "fpA",
            "kaspersky",
            ip("10.0.0.3"),
            "ksn.kaspersky.com",
            443,
            t(2),
        );
        let c = l.candidates();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].vendor, "kaspersky");
        assert_eq!(c[0].hosts.len(), 3);
    }

    #[test]
    fn a_common_stack_never_qualifies() {
        let l = Learner::new(quick());
        for h in 1..=5 {
            let host = ip(&format!("10.0.0.{h}"));
            l.vendor_flow("chrome", "kaspersky", host, "www.kaspersky.com", 443, t(1));
        }
        for h in 10..=20 {
            l.other_flow("chrome", ip(&format!("10.0.0.{h}")), t(1));
        }
        assert!(l.candidates().is_empty());
    }

    #[test]
    fn hidden_flows_seen_before_qualifying_are_reported_when_it_does() {
        let l = Learner::new(quick());
        assert_eq!(l.hidden_flow("fpA", hidden("10.0.0.9", 0)), None);
        for (i, h) in ["10.0.0.1", "10.0.0.2"].iter().enumerate() {
            assert!(l
                .vendor_flow(
                    "fpA",
                    "kaspersky",
                    ip(h),
                    "a.kaspersky.com",
                    443,
                    t(i as i64)
                )
                .is_none());
        }
        let (c, released) = l
            .vendor_flow(
                "fpA",
                "kaspersky",
                ip("10.0.0.3"),
                "a.kaspersky.com",
                443,
                t(5),
            )
            .expect("qualifies now");
        assert_eq!(c.fingerprint, "fpA");
        assert_eq!(released, vec![hidden("10.0.0.9", 0)]);
        // Later hidden flows are reported at once; a learned host's are not (it is named).
        assert!(l.hidden_flow("fpA", hidden("10.0.0.10", 6)).is_some());
        assert!(l.hidden_flow("fpA", hidden("10.0.0.1", 6)).is_none());
    }

    #[test]
    fn the_observation_time_is_required() {
        let l = Learner::new(LearnSettings {
            min_observe_secs: 600,
            ..quick()
        });
        for h in 1..=3 {
            l.vendor_flow(
                "fp",
                "kaspersky",
                ip(&format!("10.0.0.{h}")),
                "a.kaspersky.com",
                443,
                t(0),
            );
        }
        assert!(l.candidates().is_empty());
        l.vendor_flow(
            "fp",
            "kaspersky",
            ip("10.0.0.1"),
            "a.kaspersky.com",
            443,
            t(600),
        );
        assert_eq!(l.candidates().len(), 1);
    }

    #[test]
    fn one_stack_with_and_without_a_name_is_one_key() {
        let named = "t12d1107h1_8a2b5d9f1c3e_0123456789ab";
        assert_eq!(with_sni(named).as_deref(), Some(named));
        assert_eq!(
            with_sni("t12i1106h1_8a2b5d9f1c3e_0123456789ab").as_deref(),
            Some(named)
        );
        assert_eq!(
            without_sni(named).as_deref(),
            Some("t12i1106h1_8a2b5d9f1c3e_0123456789ab")
        );
        assert_eq!(with_sni("garbage"), None);
        assert_eq!(with_sni("t12x1106h1_8a2b5d9f1c3e_0123456789ab"), None);
    }

    #[test]
    fn a_full_table_sheds_other_fingerprints_least_recently_seen_first() {
        let l = Learner::new(quick());
        for i in 0..MAX_FINGERPRINTS + 10 {
            l.other_flow(&format!("fp{i}"), ip("10.0.0.1"), t(i as i64));
        }
        // What was learned on a vendor's flows outlives a flood of other fingerprints.
        l.vendor_flow(
            "learned",
            "kaspersky",
            ip("10.0.0.2"),
            "a.kaspersky.com",
            443,
            t(0),
        );
        for i in 0..3 * MAX_FINGERPRINTS {
            l.other_flow(&format!("fp{i}"), ip("10.0.0.1"), t(1 + i as i64));
        }
        let kept = l.snapshot();
        assert!(kept.len() <= MAX_FINGERPRINTS);
        assert!(l.shed.load(Ordering::Relaxed) >= 2 * MAX_FINGERPRINTS as u64);
        assert!(
            kept.iter().all(|s| s.fingerprint != "fp0"),
            "the oldest went"
        );
        assert!(kept.iter().any(|s| s.fingerprint == "learned"));
        let newest = format!("fp{}", 3 * MAX_FINGERPRINTS - 1);
        assert!(kept.iter().any(|s| s.fingerprint == newest));
    }

    #[test]
    fn exported_pack_loads_back_as_rules() {
        let l = Learner::new(quick());
        for h in 1..=3 {
            l.vendor_flow(
                "t13d1312h2_8b80da21ef18_b0a3a5a8a5ac",
                "kaspersky",
                ip(&format!("10.0.0.{h}")),
                "dnl-01.geo.kaspersky.com",
                443,
                t(h),
            );
        }
        let text = export_pack(&l.candidates(), "kaspersky", "2026-12-04T00:00:00Z");
        let mut sources: Vec<(String, String)> = crate::detect::rules::EMBEDDED
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        sources.push(("kaspersky-learned.toml".into(), text));
        let loaded = crate::detect::rules::load_sources(sources).expect("loads");
        let r = loaded
            .rules
            .iter()
            .find(|r| r.category == "suspected")
            .expect("the learned rule");
        assert_eq!(r.vendor, "kaspersky");
        assert_eq!(
            r.ja4,
            vec![
                "t13d1312h2_8b80da21ef18_b0a3a5a8a5ac".to_string(),
                "t13i1311h2_8b80da21ef18_b0a3a5a8a5ac".to_string()
            ]
        );
        assert_eq!(
            loaded
                .packs
                .iter()
                .filter(|p| p.vendor == "kaspersky")
                .count(),
            1
        );
    }
}
