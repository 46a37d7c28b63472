//! Detection: rule packs (`rules`), the compiled matcher (`matcher`), and the `Detector`
//! that turns what extraction saw into findings about hosts.
//!
//! The detector owns the cross-flow knowledge detection needs — which home-net hosts are
//! resolvers, which addresses DNS answers tied to vendor names (passive DNS), which ports a
//! pair of hosts has used — in shared, bounded maps, so workers need no other coordination.

pub mod fingerprints;
pub mod matcher;
pub mod resolvers;
pub mod rules;

use crate::decode::Proto;
use crate::extract::{Detail, Extracted, FlowId, NameEvent, NameKind};
use crate::time::Timestamp;
use dashmap::DashMap;
use matcher::{Matcher, RuleIdx};
use rules::{Loaded, Pack, Rule};
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// The rules in force: the packs, the active rules, and their matcher.
pub struct RuleSet {
    pub packs: Vec<Pack>,
    pub rules: Vec<Rule>,
    pub matcher: Matcher,
    /// One `suspected` rule per active pack, for findings of learned fingerprints (no match
    /// forms: the learner, not the matcher, decides them). Indexed after `rules`.
    pub learned: Vec<Rule>,
    /// Which load this is (0 at start, one more per reload): cross-flow state written with
    /// the rule indices of one generation is never read with another's.
    pub generation: u64,
}

/// Why loaded rules cannot be compiled for the vendors asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// `known`: the vendors that have a pack, as loaded.
    #[error("no rule pack for vendor {vendor:?} (packs: {})", known.join(", "))]
    UnknownVendor { vendor: String, known: Vec<String> },
}

impl CompileError {
    /// A short label (for logs and metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            CompileError::UnknownVendor { .. } => "unknown_vendor",
        }
    }
}

impl RuleSet {
    /// Compiles the packs of the chosen vendors (`None`: the packs enabled by default).
    pub fn compile(loaded: Loaded, vendors: Option<&[String]>) -> Result<RuleSet, CompileError> {
        if let Some(vs) = vendors {
            for v in vs {
                if !loaded.packs.iter().any(|p| &p.vendor == v) {
                    return Err(CompileError::UnknownVendor {
                        vendor: v.clone(),
                        known: loaded.packs.iter().map(|p| p.vendor.clone()).collect(),
                    });
                }
            }
        }
        let chosen: Vec<String> = match vendors {
            Some(vs) => vs.to_vec(),
            None => loaded
                .packs
                .iter()
                .filter(|p| p.enabled_by_default)
                .map(|p| p.vendor.clone())
                .collect(),
        };
        let active = |vendor: &str| chosen.iter().any(|v| v == vendor);
        let rules: Vec<Rule> = loaded
            .rules
            .into_iter()
            .filter(|r| active(&r.vendor))
            .collect();
        let excludes: Vec<_> = loaded
            .excludes
            .into_iter()
            .filter(|e| active(&e.vendor))
            .collect();
        let packs: Vec<Pack> = loaded
            .packs
            .into_iter()
            .filter(|p| active(&p.vendor))
            .collect();
        let matcher = Matcher::build(&rules, &excludes);
        let learned = packs.iter().map(suspected_rule).collect();
        Ok(RuleSet {
            packs,
            rules,
            matcher,
            learned,
            generation: 0,
        })
    }

    pub fn rule(&self, idx: RuleIdx) -> &Rule {
        let i = idx as usize;
        match self.rules.get(i) {
            Some(r) => r,
            None => &self.learned[i - self.rules.len()],
        }
    }

    /// The rule under which a vendor's learned-fingerprint findings are reported.
    pub fn suspected_rule(&self, vendor: &str) -> Option<RuleIdx> {
        let i = self.learned.iter().position(|r| r.vendor == vendor)?;
        RuleIdx::try_from(self.rules.len() + i).ok()
    }

    /// The vendors whose packs are active.
    pub fn vendors(&self) -> Vec<String> {
        self.packs.iter().map(|p| p.vendor.clone()).collect()
    }
}

/// The `suspected` rule of a pack: what a learned fingerprint on a hidden-name flow means
/// (a name suppressions may give, too).
pub(crate) fn suspected_rule(pack: &Pack) -> Rule {
    Rule {
        id: format!("{}.suspected.learned-fingerprint", pack.vendor),
        vendor: pack.vendor.clone(),
        category: "suspected".into(),
        severity: rules::Severity::Medium,
        confidence: rules::Confidence::Low,
        description: format!(
            "The host's TLS/QUIC client fingerprint is one that, on this network, hosts whose names were visible used for {} servers and almost nothing else; this connection's server name was hidden. A lead to verify on the host, not proof.",
            pack.name
        ),
        sources: vec![rules::Source {
            url: None,
            document: Some("learned by vendorwatch on this network (vendorwatch fingerprints)".into()),
            retrieved: "-".into(),
            note: None,
        }],
        names: Vec::new(),
        suffixes: Vec::new(),
        globs: Vec::new(),
        cidrs: Vec::new(),
        tcp_ports: Vec::new(),
        udp_ports: Vec::new(),
        min_distinct_ports: 1,
        http_paths: Vec::new(),
        user_agents: Vec::new(),
        cert_issuers: Vec::new(),
        cert_subjects: Vec::new(),
        ja4: Vec::new(),
        test_names: Vec::new(),
        file: "<learned>".into(),
        line: 0,
    }
}

/// The evidence of one finding, as alerts and the report show it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Indicator {
    pub kind: NameKind,
    pub value: String,
    /// `ip`: the name the address was learned from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `dns` reached through a CNAME chain: the name that was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// `http_host` / `http_connect` matched by its request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `tls_sni` / `quic_sni` of a ClientHello with Encrypted Client Hello: the outer name.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ech: bool,
    /// … and that outer name is a known ECH public name (from an HTTPS/SVCB answer's ECH
    /// configuration, or a provider's well-known one): real ECH, the destination's own name
    /// is hidden and this is the provider the host reached. Without it, the ECH extension
    /// is taken as GREASE and the outer name is the destination.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ech_real: bool,
}

impl Indicator {
    /// What an alert says about the ECH of its ClientHello, if it had one.
    pub fn ech_explanation(&self) -> Option<String> {
        if !self.ech {
            return None;
        }
        Some(if self.ech_real {
            format!(
                "the connection used Encrypted Client Hello (ECH) with the public name {}: the host reached this ECH provider, and the name it asked for inside is hidden",
                self.value
            )
        } else {
            format!(
                "the connection used Encrypted Client Hello (ECH) with the public name {}; no ECH configuration is known for that name, so the extension is GREASE and {} is the server the host reached",
                self.value, self.value
            )
        })
    }
}

/// One piece of evidence that a home-net host talks to a vendor.
#[derive(Debug, Clone)]
pub struct Finding {
    pub ts: Timestamp,
    pub host: IpAddr,
    pub host_mac: Option<crate::mac::MacAddr>,
    pub rule: RuleIdx,
    pub indicator: Indicator,
    pub flow: FlowId,
    /// A resolver's upstream lookup on a client's behalf, not the resolver's own traffic.
    pub forwarded: bool,
    /// The DNS server asked, when it is a well-known public resolver.
    pub public_resolver: Option<IpAddr>,
    /// JA4 of the ClientHello the finding came from, if any.
    pub ja4: Option<String>,
}

/// The names a DNS answer to a possible resolver leads to, kept until the roles can say
/// whether the resolver looked `name` up for a client (see [`Detector::note_dns_packet`]).
#[derive(Debug, Clone)]
pub struct Chase {
    pub ts: Timestamp,
    pub resolver: IpAddr,
    pub name: String,
    pub targets: Vec<String>,
}

/// What a ClientHello's own name matched, as the fingerprint learner counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    /// A vendor rule of medium severity or more: the vendor's software at work.
    Product(RuleIdx),
    /// Only low-severity vendor rules (its web site, a catch-all of its domains).
    VendorSite,
    /// No vendor rule.
    Other,
}

/// How a host hides the names it reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hiding {
    /// TLS Encrypted Client Hello: the real server name is encrypted.
    Ech,
    /// DNS over HTTPS / TLS / QUIC to a known service: lookups are invisible.
    EncryptedDns(String),
}

/// Bounds and clocks of the shared detection state.
#[derive(Debug, Clone, Copy)]
pub struct DetectLimits {
    pub pdns_max_entries: usize,
    pub pdns_ttl_floor_secs: u64,
    pub pdns_ttl_cap_secs: u64,
    pub port_pairs_max: usize,
}

impl Default for DetectLimits {
    fn default() -> Self {
        DetectLimits {
            pdns_max_entries: 32_768,
            pdns_ttl_floor_secs: 600,
            pdns_ttl_cap_secs: 86_400,
            port_pairs_max: 100_000,
        }
    }
}

#[derive(Debug, Clone)]
struct PdnsEntry {
    name: Arc<str>,
    rules: smallvec::SmallVec<[RuleIdx; 2]>,
    /// The rule-set generation `rules` index into.
    generation: u64,
    expires: Timestamp,
    /// Packet time of the answer: the oldest are shed first when the table is full.
    answered: Timestamp,
}

/// Passive-DNS answers in the order they came, to shed the oldest from a full table. An
/// address answered again is queued again; entries whose address was answered later, expired
/// or left are skipped when reached, and dropped whenever the queue outgrows the table.
#[derive(Default)]
struct PdnsAge {
    queue: std::collections::VecDeque<(IpAddr, Timestamp)>,
}

/// Which home-net ranges hold the hosts we report on.
#[derive(Debug, Clone)]
pub struct HomeNet(pub Vec<ipnet::IpNet>);

impl HomeNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&ip))
    }
}

/// The distinct (transport, port) pairs seen between two hosts for one rule, tagged with
/// the rule-set generation the rule index belongs to.
#[derive(Debug, Default)]
struct PortsSeen {
    generation: u64,
    ports: smallvec::SmallVec<[(Proto, u16); 4]>,
}

/// (lower address, higher address, rule) → the distinct ports seen.
type PortPairs = DashMap<(IpAddr, IpAddr, RuleIdx), PortsSeen, ahash::RandomState>;

/// Cross-flow detection state, shared by every worker.
pub struct Detector {
    /// Swapped whole on a reload; a worker loads it once per batch, so every finding is
    /// judged, recorded and reported against one consistent rule set.
    rules: arc_swap::ArcSwap<RuleSet>,
    /// The rules a reload replaced, until `settle` has carried over what they still wrote.
    previous_rules: std::sync::Mutex<Option<Arc<RuleSet>>>,
    home: HomeNet,
    limits: DetectLimits,
    encrypted_dns: resolvers::EncryptedDns,
    /// Home-net resolvers and the client queries they received.
    roles: Arc<resolvers::ResolverRoles>,
    pdns: DashMap<IpAddr, PdnsEntry, ahash::RandomState>,
    /// (lower address, higher address, rule) → distinct (transport, port) seen.
    port_pairs: PortPairs,
    /// Passive-DNS entries shed because the table was full (the oldest answer gave way).
    pub pdns_dropped: AtomicU64,
    /// Packet second of the last scan of a full passive-DNS table for expired entries.
    pdns_swept_at: AtomicI64,
    /// The answers in arrival order (see `PdnsAge`).
    pdns_age: std::sync::Mutex<PdnsAge>,
    /// Scans of a full passive-DNS table (each walks every entry).
    pdns_sweeps: AtomicU64,
    pub port_pairs_dropped: AtomicU64,
    /// Client fingerprints learned from visible vendor traffic (see `fingerprints`).
    pub learner: Arc<fingerprints::Learner>,
    /// Public names of ECH configurations seen in HTTPS/SVCB answers (bounded by
    /// `MAX_ECH_PUBLIC_NAMES`; once full, new names are not learned).
    ech_public_names: DashMap<String, (), ahash::RandomState>,
}

/// ECH public names remembered from DNS answers: providers, so few (Cloudflare uses one for
/// every zone).
const MAX_ECH_PUBLIC_NAMES: usize = 4096;

impl Detector {
    pub fn new(
        rules: Arc<RuleSet>,
        home: HomeNet,
        limits: DetectLimits,
        encrypted_dns: resolvers::EncryptedDns,
    ) -> Detector {
        Detector {
            rules: arc_swap::ArcSwap::new(rules),
            previous_rules: std::sync::Mutex::new(None),
            home,
            limits,
            encrypted_dns,
            roles: Arc::default(),
            pdns: DashMap::default(),
            port_pairs: DashMap::default(),
            pdns_dropped: AtomicU64::new(0),
            pdns_swept_at: AtomicI64::new(i64::MIN),
            pdns_age: std::sync::Mutex::new(PdnsAge::default()),
            pdns_sweeps: AtomicU64::new(0),
            port_pairs_dropped: AtomicU64::new(0),
            learner: Arc::new(fingerprints::Learner::new(
                fingerprints::LearnSettings::default(),
            )),
            ech_public_names: DashMap::default(),
        }
    }

    /// Whether `name`, the outer SNI of a ClientHello with the ECH extension, is an ECH
    /// public name (real ECH) rather than the destination itself (GREASE).
    pub fn is_ech_public_name(&self, name: &str) -> bool {
        crate::extract::ech::KNOWN_PUBLIC_NAMES.contains(&name)
            || self.ech_public_names.contains_key(name)
    }

    /// Remembers the ECH public names an HTTPS/SVCB answer publishes.
    fn learn_ech_public_names(&self, d: &crate::extract::DnsDetail) {
        for a in d.answers.iter() {
            let crate::extract::dns::RData::Svcb {
                ech_public_names, ..
            } = &a.data
            else {
                continue;
            };
            for name in ech_public_names {
                if self.ech_public_names.len() < MAX_ECH_PUBLIC_NAMES
                    && !self.ech_public_names.contains_key(name)
                {
                    self.ech_public_names.insert(name.clone(), ());
                }
            }
        }
    }

    /// Learns client fingerprints under `settings` instead of the defaults.
    pub fn with_learning(mut self, settings: fingerprints::LearnSettings) -> Detector {
        self.learner = Arc::new(fingerprints::Learner::new(settings));
        self
    }

    pub fn home_net(&self) -> &HomeNet {
        &self.home
    }

    /// The rules in force now.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.load_full()
    }

    /// Puts a new rule set in force without stopping anything: workers pick it up with their
    /// next batch. Passive-DNS and port-pair state learned under the old rules is carried
    /// over by rule id (entries whose rules are gone are dropped), so a reload forgets
    /// nothing that still matters. Workers still on the old rules for the batch they are in
    /// may add entries after this; `settle`, called once they have moved on, carries those.
    pub fn replace_rules(&self, mut new: RuleSet) -> Arc<RuleSet> {
        let old = self.rules.load_full();
        new.generation = old.generation + 1;
        let new = Arc::new(new);
        self.rules.store(Arc::clone(&new));
        self.carry_over(&old, &new);
        if let Ok(mut previous) = self.previous_rules.lock() {
            *previous = Some(old);
        }
        new
    }

    /// Carries over what workers on the previous rules added during the last reload (call it
    /// a moment after `replace_rules`, when every worker has loaded the new rules).
    pub fn settle(&self) {
        let Some(old) = self.previous_rules.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        let new = self.rules();
        if new.generation == old.generation + 1 {
            self.carry_over(&old, &new);
        }
    }

    /// Rewrites cross-flow state tagged with `old`'s generation in `new`'s rule indices.
    fn carry_over(&self, old: &RuleSet, new: &RuleSet) {
        let by_id: std::collections::HashMap<&str, RuleIdx> = new
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.as_str(), i as RuleIdx))
            .collect();
        let translate = |idx: RuleIdx| {
            old.rules
                .get(idx as usize)
                .and_then(|r| by_id.get(r.id.as_str()).copied())
        };
        let generation = new.generation;
        self.pdns.retain(|_, e| {
            if e.generation == old.generation {
                e.rules = e.rules.iter().filter_map(|&r| translate(r)).collect();
                e.generation = generation;
            }
            e.generation == generation && !e.rules.is_empty()
        });
        // Keys hold rule indices, so entries move to new keys one by one; entries already in
        // the new generation stay where they are.
        let stale: Vec<_> = self
            .port_pairs
            .iter()
            .filter(|e| e.value().generation != generation)
            .map(|e| *e.key())
            .collect();
        for key in stale {
            let Some((_, seen)) = self.port_pairs.remove(&key) else {
                continue;
            };
            let (a, b, rule) = key;
            let target = match seen.generation {
                // Reset to the new generation by a worker in the meantime: it stays.
                g if g == generation => Some(rule),
                g if g == old.generation => translate(rule),
                _ => None,
            };
            let Some(rule) = target else { continue };
            let mut slot = self.port_pairs.entry((a, b, rule)).or_default();
            if slot.generation != generation {
                *slot = PortsSeen {
                    generation,
                    ports: Default::default(),
                };
            }
            for p in seen.ports {
                if !slot.ports.contains(&p) {
                    slot.ports.push(p);
                }
            }
        }
    }

    /// Hosts the operator names as resolvers (`resolvers = [...]`, `--resolvers`): they hold
    /// the role from the start, whatever the capture shows.
    pub fn with_pinned_resolvers(self, pinned: &[IpAddr]) -> Detector {
        self.with_resolver_roles(Arc::new(resolvers::ResolverRoles::with_pinned(pinned)))
    }

    /// Uses these roles (pinned, restored from the inventory, and saved by it).
    pub fn with_resolver_roles(mut self, roles: Arc<resolvers::ResolverRoles>) -> Detector {
        self.roles = roles;
        self
    }

    /// Reads one packet to or from port 53 for resolver evidence: between two home-net hosts,
    /// a query is remembered (who asked which host for what) and a response that matches a
    /// remembered query is an answered query; an answer to a host that may be a resolver
    /// holds the names it will chase next for its client (CNAME and SVCB targets).
    /// The worker that owns the packet's flow calls this before it extracts anything from
    /// the packet (with one worker, the capture thread does, in packet order). The evidence is written at once; the chase reads the roles (is the host
    /// a resolver, did a client ask it for this name), which other workers' packets write,
    /// so it is done here only when `settled` says every packet before this one is on
    /// record, and otherwise returned for the caller to do with [`Detector::chase`] once it
    /// is (see `pipeline::order`). Only parsed DNS counts: a SYN, an empty or malformed
    /// datagram is nothing. `parsed`: the message of a UDP datagram, when the caller has
    /// parsed it already.
    pub fn note_dns_packet(
        &self,
        ts: Timestamp,
        pkt: &crate::decode::Packet<'_>,
        parsed: Option<&crate::extract::DnsParse>,
        settled: &mut dyn FnMut() -> bool,
    ) -> Option<Chase> {
        use crate::decode::Transport;
        let (src, dst) = (pkt.src, pkt.dst);
        let (sp, dp, msg) = match &pkt.transport {
            Transport::Udp(u) => (u.src_port, u.dst_port, u.payload),
            // DNS over TCP: a segment that starts with the length prefix and holds the whole
            // message (what resolvers and clients send); anything else is not read here.
            Transport::Tcp(t) => {
                let len = t
                    .payload
                    .get(..2)
                    .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))?;
                (t.src_port, t.dst_port, t.payload.get(2..2 + len)?)
            }
            Transport::Other { .. } => return None,
        };
        if sp != 53 && dp != 53 {
            return None;
        }
        let between_home = src != dst && self.home.contains(src) && self.home.contains(dst);
        // An answer to a host that holds or may earn the resolver role: a home-net host, or
        // one the operator pinned (only home-net hosts earn it, so this reads nothing that
        // changes while the sensor runs).
        let may_chase = sp == 53 && (self.home.contains(dst) || self.roles.is_resolver(dst));
        if !between_home && !may_chase {
            return None;
        }
        // A whole datagram's message as the caller parsed it; the roles read nothing of it
        // that `parse_for_roles` leaves out. A message cut by the snap length is read here
        // as a whole one (its cut names are out of bounds, and the message is left alone).
        let own;
        let uncut_udp = matches!(&pkt.transport, Transport::Udp(u) if u.cut == 0);
        let m = match parsed {
            Some(Ok(m)) if uncut_udp => m,
            Some(Err(_)) if uncut_udp => return None,
            _ => {
                own = crate::extract::dns::parse_for_roles(msg).ok()?;
                &own
            }
        };
        let a = &m.anomalies;
        if m.opcode != 0 || a.name_pointer_loop || a.name_too_long || a.name_out_of_bounds {
            return None;
        }
        let q = m.questions.first()?;
        if between_home {
            match (m.is_response, sp, dp) {
                (false, _, 53) => self.roles.note_query(ts, src, sp, dst, m.id, &q.name),
                (true, 53, _) => self.roles.note_response(ts, src, dst, dp, m.id, &q.name),
                _ => {}
            }
        }
        if !(may_chase && m.is_response) {
            return None;
        }
        use crate::extract::dns::RData;
        let targets = m.answers.iter().filter_map(|ans| match &ans.data {
            RData::Cname(target) | RData::Svcb { target, .. } if !target.is_empty() => {
                Some(target.as_str())
            }
            _ => None,
        });
        // Nothing to chase: nothing to keep back.
        targets.clone().next()?;
        if settled() {
            self.chase_targets(ts, dst, &q.name, targets);
            return None;
        }
        Some(Chase {
            ts,
            resolver: dst,
            name: q.name.to_string(),
            targets: targets.map(str::to_string).collect(),
        })
    }

    /// Does what [`Detector::note_dns_packet`] left for later, once every packet before its
    /// own is on record.
    pub fn chase(&self, chase: &Chase) {
        let targets = chase.targets.iter().map(String::as_str);
        self.chase_targets(chase.ts, chase.resolver, &chase.name, targets);
    }

    /// When `resolver` holds the role and looked up `name` for a client, the names its answer
    /// leads to are the client's too: the resolver will look them up next.
    fn chase_targets<'a>(
        &self,
        ts: Timestamp,
        resolver: IpAddr,
        name: &str,
        targets: impl Iterator<Item = &'a str>,
    ) {
        if self.roles.is_resolver(resolver) && self.roles.client_asked(resolver, name, ts) {
            for target in targets {
                self.roles.note_asked(ts, resolver, target, true);
            }
        }
    }

    pub fn is_resolver(&self, ip: IpAddr) -> bool {
        self.roles.is_resolver(ip)
    }

    /// Home-net resolvers, sorted by address.
    pub fn resolvers(&self) -> Vec<IpAddr> {
        self.roles.list().into_iter().map(|(ip, _)| ip).collect()
    }

    /// The resolver role's state: who holds it and why, and what was shed.
    pub fn resolver_roles(&self) -> &Arc<resolvers::ResolverRoles> {
        &self.roles
    }

    /// Whether `host`'s lookup of `name` at `ts` was made for a client (see
    /// `resolvers::ResolverRoles::client_asked`): what every finding of a DNS name event
    /// says in `Finding::forwarded`.
    pub fn forwarded_lookup(&self, host: IpAddr, name: &str, ts: Timestamp) -> bool {
        self.roles.client_asked(host, name, ts)
    }

    pub fn pdns_len(&self) -> usize {
        self.pdns.len()
    }

    /// Whether an extraction result shows its host hiding names from the sensor: ECH, or DNS
    /// over HTTPS/TLS/QUIC. Returns the host and what it used.
    pub fn name_hiding(&self, item: &Extracted) -> Option<(IpAddr, Hiding)> {
        let (host, hiding) = match item {
            Extracted::Name(ev) => match &ev.detail {
                // Only real ECH hides a name: GREASE ECH names its destination in clear.
                Detail::Tls { ech: true, .. } if self.is_ech_public_name(&ev.value) => {
                    (ev.flow.client.ip(), Hiding::Ech)
                }
                Detail::Tls { .. } if self.encrypted_dns.is_doh_name(&ev.value) => (
                    ev.flow.client.ip(),
                    Hiding::EncryptedDns(format!("DoH {}", ev.value)),
                ),
                _ => return None,
            },
            Extracted::FlowStart { flow, .. } => {
                let server = flow.server;
                if server.port() == resolvers::DOT_PORT {
                    (
                        flow.client.ip(),
                        Hiding::EncryptedDns(format!("DoT/DoQ {server}")),
                    )
                } else if server.port() == 443 {
                    let service = self.encrypted_dns.service_at(server.ip())?;
                    (
                        flow.client.ip(),
                        Hiding::EncryptedDns(format!("DoH? HTTPS to {service} ({})", server.ip())),
                    )
                } else {
                    return None;
                }
            }
            _ => return None,
        };
        self.home.contains(host).then_some((host, hiding))
    }

    /// Turns one extraction result into findings under `rules` (from `Detector::rules`);
    /// findings' rule indices point into `rules`.
    pub fn detect(&self, rules: &RuleSet, item: &Extracted, out: &mut impl FnMut(Finding)) {
        // The vendor a ClientHello's own name matched (product traffic, not the web site):
        // what the fingerprint learner needs to know of it.
        let mut named = Named::Other;
        let mut seen = |f: Finding| {
            if matches!(f.indicator.kind, NameKind::TlsSni | NameKind::QuicSni) {
                if rules.rule(f.rule).severity >= rules::Severity::Medium {
                    named = Named::Product(f.rule);
                } else if named == Named::Other {
                    named = Named::VendorSite;
                }
            }
            out(f)
        };
        self.detect_inner(rules, item, &mut seen);
        self.learn(rules, item, named, out);
    }

    /// Feeds the learner with a ClientHello and reports a hidden-name flow whose fingerprint
    /// is a candidate (see `fingerprints`).
    fn learn(
        &self,
        rules: &RuleSet,
        item: &Extracted,
        named: Named,
        out: &mut impl FnMut(Finding),
    ) {
        let Some(hello) = LearnedHello::of(item) else {
            return;
        };
        let Some(fp) = fingerprints::with_sni(hello.ja4) else {
            return;
        };
        let fp = fp.as_str();
        let flow = hello.flow;
        let host = flow.client.ip();
        if !self.home.contains(host) {
            return;
        }
        let learner = &self.learner;
        let hidden = fingerprints::HiddenFlow {
            ts: hello.ts,
            host,
            host_mac: hello.mac,
            flow,
        };
        match (named, hello.name) {
            // A vendor's web site or another low-severity name: neither product traffic nor
            // someone else's, so it teaches nothing either way.
            (Named::VendorSite, _) => {}
            (Named::Product(rule), Some(name)) => {
                let vendor = &rules.rule(rule).vendor;
                if let Some((c, released)) =
                    learner.vendor_flow(fp, vendor, host, name, flow.server.port(), hello.ts)
                {
                    for h in &released {
                        report_candidate(rules, &c, h, out);
                    }
                }
            }
            // Real ECH: the outer name is the provider's public name, the destination is
            // hidden. (GREASE ECH, as browsers send it, names its server: an ordinary name.)
            (_, Some(outer)) if hello.ech && self.is_ech_public_name(outer) => {
                if let Some(c) = learner.hidden_flow(fp, hidden.clone()) {
                    report_candidate(rules, &c, &hidden, out);
                }
            }
            (_, Some(_)) => learner.other_flow(fp, host, hello.ts),
            (_, None) => {
                if let Some(c) = learner.hidden_flow(fp, hidden.clone()) {
                    report_candidate(rules, &c, &hidden, out);
                }
            }
        }
    }

    fn detect_inner(&self, rules: &RuleSet, item: &Extracted, out: &mut impl FnMut(Finding)) {
        match item {
            Extracted::Name(ev) => self.on_name(rules, ev, out),
            Extracted::FlowStart {
                ts,
                flow,
                client_mac,
            } => self.on_flow_start(rules, *ts, flow, *client_mac, out),
            Extracted::Unnamed { ts, flow } => self.on_unnamed(rules, *ts, flow, out),
            Extracted::Fingerprint { ts, flow, detail } => {
                self.on_fingerprint(rules, *ts, flow, detail, out)
            }
            Extracted::Anomaly(_) | Extracted::Evicted | Extracted::Identity(_) => {}
        }
    }

    fn on_name(&self, rules: &RuleSet, ev: &NameEvent, out: &mut impl FnMut(Finding)) {
        if let Detail::Dns(d) = &ev.detail {
            if d.is_response {
                self.learn_ech_public_names(d);
            }
        }
        let host = ev.flow.client.ip();
        if !self.home.contains(host) {
            return;
        }
        let mut emit =
            |rule: RuleIdx, indicator: Indicator, forwarded: bool, public: Option<IpAddr>| {
                out(Finding {
                    ts: ev.ts,
                    host,
                    host_mac: ev.client_mac,
                    rule,
                    indicator,
                    flow: ev.flow,
                    forwarded,
                    public_resolver: public,
                    ja4: match &ev.detail {
                        Detail::Tls { ja4, .. } => ja4.clone(),
                        _ => None,
                    },
                })
            };
        match &ev.detail {
            Detail::Dns(d) => self.on_dns_name(rules, ev, d, &mut emit),
            Detail::Cert(c) => on_cert(&rules.matcher, ev, c, &mut emit),
            Detail::Tls { .. } | Detail::Http { .. } => {
                self.on_client_request(&rules.matcher, ev, &mut emit)
            }
        }
    }

    /// A DNS question (and, in a response, its answers) of a home-net host.
    fn on_dns_name(
        &self,
        rules: &RuleSet,
        ev: &NameEvent,
        d: &crate::extract::DnsDetail,
        emit: &mut impl FnMut(RuleIdx, Indicator, bool, Option<IpAddr>),
    ) {
        // The host's own lookup unless a client asked it for this name just before. Looked
        // up only for a name that matches: most names match nothing.
        let asked = std::cell::OnceCell::new();
        let forwarded =
            || *asked.get_or_init(|| self.forwarded_lookup(ev.flow.client.ip(), &ev.value, ev.ts));
        // Looked up only when a finding is emitted (most names match nothing).
        let server = ev.flow.server.ip();
        let public = || self.encrypted_dns.service_at(server).map(|_| server);
        // The question counts once per transaction: on the query, or on the answer
        // when the query was not captured.
        if !d.is_response || !d.query_seen {
            for hit in rules.matcher.match_name(&ev.value) {
                emit(
                    hit.rule,
                    indicator(NameKind::Dns, &ev.value),
                    forwarded(),
                    public(),
                );
            }
        }
        if d.is_response {
            self.on_answers(rules, ev, d, &forwarded, &public, emit);
        }
    }

    /// A ClientHello's server name and JA4, or an HTTP request's host, path and user agent.
    fn on_client_request(
        &self,
        m: &Matcher,
        ev: &NameEvent,
        emit: &mut impl FnMut(RuleIdx, Indicator, bool, Option<IpAddr>),
    ) {
        // The outer name of an ECH hello is matched like any server name: under
        // GREASE it is the destination, under real ECH the provider's public name,
        // which is still the infrastructure the host talks to.
        let ech = matches!(ev.detail, Detail::Tls { ech: true, .. });
        let ech_real = ech && self.is_ech_public_name(&ev.value);
        for hit in m.match_name(&ev.value) {
            let mut ind = indicator(ev.kind, &ev.value);
            (ind.ech, ind.ech_real) = (ech, ech_real);
            emit(hit.rule, ind, false, None);
        }
        if let Detail::Tls { ja4: Some(j), .. } = &ev.detail {
            for rule in m.match_ja4(j) {
                emit(rule, indicator(NameKind::Ja4, j), false, None);
            }
        }
        if let Detail::Http {
            target, user_agent, ..
        } = &ev.detail
        {
            for rule in m.match_http_path(target) {
                let mut ind = indicator(ev.kind, &ev.value);
                ind.path = Some(target.clone());
                emit(rule, ind, false, None);
            }
            if let Some(ua) = user_agent {
                for rule in m.match_user_agent(ua) {
                    emit(rule, indicator(NameKind::UserAgent, ua), false, None);
                }
            }
        }
    }

    /// CNAME chains and passive DNS from a response.
    fn on_answers(
        &self,
        rules: &RuleSet,
        ev: &NameEvent,
        d: &crate::extract::DnsDetail,
        forwarded: &impl Fn() -> bool,
        public: &impl Fn() -> Option<IpAddr>,
        emit: &mut impl FnMut(RuleIdx, Indicator, bool, Option<IpAddr>),
    ) {
        use crate::extract::dns::RData;
        let named = chain_hits(&rules.matcher, ev, d, &mut |rule, ind| {
            emit(rule, ind, forwarded(), public())
        });
        // Addresses answered for a name that is, or is reached from, a vendor name.
        let chain_rules: smallvec::SmallVec<[RuleIdx; 2]> =
            named.iter().flat_map(|(_, r)| r.iter().copied()).collect();
        if chain_rules.is_empty() {
            return;
        }
        let vendor_name = named
            .iter()
            .rev()
            .find(|(_, r)| !r.is_empty())
            .map_or(&*ev.value, |(n, _)| n);
        for a in d.answers.iter() {
            let ip = match a.data {
                RData::A(v4) => IpAddr::V4(v4),
                RData::Aaaa(v6) => IpAddr::V6(v6),
                _ => continue,
            };
            let ttl = u64::from(a.ttl).clamp(
                self.limits.pdns_ttl_floor_secs,
                self.limits.pdns_ttl_cap_secs,
            );
            self.remember_answer(
                ip,
                PdnsEntry {
                    name: Arc::from(vendor_name),
                    rules: chain_rules.clone(),
                    generation: rules.generation,
                    expires: ev.ts.saturating_add_secs(ttl),
                    answered: ev.ts,
                },
            );
        }
    }

    /// Files a passive-DNS answer, making room in a full table.
    fn remember_answer(&self, ip: IpAddr, entry: PdnsEntry) {
        let now = entry.answered;
        if self.pdns.len() >= self.limits.pdns_max_entries && !self.pdns.contains_key(&ip) {
            // A scan walks the whole table: once per second of packet time, or a flood
            // of answers into a full table would cost a full scan each.
            if self.pdns_swept_at.swap(now.secs(), Ordering::Relaxed) != now.secs() {
                self.pdns_sweeps.fetch_add(1, Ordering::Relaxed);
                self.expire_pdns(now);
            }
            // Still full: the new answer wins over an old one. Refusing it instead would
            // let a flood of answers (kept at least the TTL floor) blind passive DNS to
            // every lookup after it, until the flood's entries expire.
            if self.pdns.len() >= self.limits.pdns_max_entries {
                if !self.shed_oldest_answer() {
                    return;
                }
                self.pdns_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        let answered = entry.answered;
        self.pdns.insert(ip, entry);
        if let Ok(mut age) = self.pdns_age.lock() {
            age.queue.push_back((ip, answered));
            if age.queue.len() > 2 * self.limits.pdns_max_entries + 1024 {
                let pdns = &self.pdns;
                age.queue
                    .retain(|(ip, at)| pdns.get(ip).is_some_and(|e| e.answered == *at));
            }
        }
    }

    /// Removes the least recently answered address; false when there is none to remove.
    fn shed_oldest_answer(&self) -> bool {
        let Ok(mut age) = self.pdns_age.lock() else {
            return false;
        };
        while let Some((ip, at)) = age.queue.pop_front() {
            // Only the queue entry of the answer the table holds now counts.
            if self.pdns.remove_if(&ip, |_, e| e.answered == at).is_some() {
                return true;
            }
        }
        false
    }

    fn expire_pdns(&self, now: Timestamp) {
        self.pdns.retain(|_, e| e.expires > now);
    }

    fn on_fingerprint(
        &self,
        rules: &RuleSet,
        ts: Timestamp,
        flow: &FlowId,
        detail: &Detail,
        out: &mut impl FnMut(Finding),
    ) {
        let (Detail::Tls { ja4: Some(j), .. }, true) =
            (detail, self.home.contains(flow.client.ip()))
        else {
            return;
        };
        for rule in rules.matcher.match_ja4(j) {
            out(Finding {
                ts,
                host: flow.client.ip(),
                host_mac: None,
                rule,
                indicator: indicator(NameKind::Ja4, j),
                flow: *flow,
                forwarded: false,
                public_resolver: None,
                ja4: Some(j.clone()),
            });
        }
    }

    fn on_flow_start(
        &self,
        rules: &RuleSet,
        ts: Timestamp,
        flow: &FlowId,
        client_mac: Option<crate::mac::MacAddr>,
        out: &mut impl FnMut(Finding),
    ) {
        let host = flow.client.ip();
        if !self.home.contains(host) {
            return;
        }
        let m = &rules.matcher;
        let server = flow.server.ip();
        let finding = |rule, indicator| Finding {
            ts,
            host,
            host_mac: client_mac,
            rule,
            indicator,
            flow: *flow,
            forwarded: false,
            public_resolver: None,
            ja4: None,
        };
        for rule in m.match_ip(server) {
            let mut ind = indicator(NameKind::Ip, &server.to_string());
            ind.name = None;
            out(finding(rule, ind));
        }
        let port = flow.server.port();
        for rule in m.match_port(flow.proto, port) {
            let needed = rules.rule(rule).min_distinct_ports as usize;
            let proto = match flow.proto {
                Proto::Tcp => "tcp",
                Proto::Udp => "udp",
            };
            let ind = indicator(NameKind::Port, &format!("{port}/{proto}"));
            if needed <= 1 {
                out(finding(rule, ind));
                continue;
            }
            let key = if host <= server {
                (host, server, rule)
            } else {
                (server, host, rule)
            };
            if !self.port_pairs.contains_key(&key)
                && self.port_pairs.len() >= self.limits.port_pairs_max
            {
                self.port_pairs_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let distinct = {
                let mut seen = self.port_pairs.entry(key).or_default();
                if seen.generation != rules.generation {
                    // Written by a worker still on the previous rules during a reload.
                    *seen = PortsSeen {
                        generation: rules.generation,
                        ports: Default::default(),
                    };
                }
                if !seen.ports.contains(&(flow.proto, port)) {
                    seen.ports.push((flow.proto, port));
                }
                seen.ports.len()
            };
            if distinct >= needed {
                out(finding(rule, ind));
            }
        }
    }

    fn on_unnamed(
        &self,
        rules: &RuleSet,
        ts: Timestamp,
        flow: &FlowId,
        out: &mut impl FnMut(Finding),
    ) {
        let host = flow.client.ip();
        if !self.home.contains(host) {
            return;
        }
        let server = flow.server.ip();
        let Some(entry) = self.pdns.get(&server).map(|e| e.clone()) else {
            return;
        };
        // An entry from another generation was written during a reload by a worker on the
        // old rules; its indices mean nothing here.
        if entry.expires < ts || entry.generation != rules.generation {
            return;
        }
        for &rule in &entry.rules {
            let mut ind = indicator(NameKind::Ip, &server.to_string());
            ind.name = Some(entry.name.to_string());
            out(Finding {
                ts,
                host,
                host_mac: None,
                rule,
                indicator: ind,
                flow: *flow,
                forwarded: false,
                public_resolver: None,
                ja4: None,
            });
        }
    }
}

/// What the fingerprint learner takes from a ClientHello with a JA4: when and where it was
/// seen, and the server name it gave (none for a hello without one).
struct LearnedHello<'a> {
    ts: Timestamp,
    flow: FlowId,
    mac: Option<crate::mac::MacAddr>,
    ja4: &'a str,
    ech: bool,
    name: Option<&'a str>,
}

impl<'a> LearnedHello<'a> {
    fn of(item: &'a Extracted) -> Option<LearnedHello<'a>> {
        let (ts, flow, mac, detail, name) = match item {
            Extracted::Name(ev) if matches!(ev.kind, NameKind::TlsSni | NameKind::QuicSni) => {
                (ev.ts, ev.flow, ev.client_mac, &ev.detail, Some(&*ev.value))
            }
            Extracted::Fingerprint { ts, flow, detail } => (*ts, *flow, None, detail, None),
            _ => return None,
        };
        let Detail::Tls {
            ja4: Some(ja4),
            ech,
            ..
        } = detail
        else {
            return None;
        };
        Some(LearnedHello {
            ts,
            flow,
            mac,
            ja4,
            ech: *ech,
            name,
        })
    }
}

/// A finding for a hidden-name flow whose fingerprint is a vendor's candidate, under the
/// vendor's `suspected` rule (none when the vendor's pack is not active).
fn report_candidate(
    rules: &RuleSet,
    c: &fingerprints::Candidate,
    h: &fingerprints::HiddenFlow,
    out: &mut impl FnMut(Finding),
) {
    let Some(rule) = rules.suspected_rule(&c.vendor) else {
        return;
    };
    let mut ind = indicator(NameKind::Fingerprint, &c.fingerprint);
    ind.name = Some(c.summary());
    out(Finding {
        ts: h.ts,
        host: h.host,
        host_mac: h.host_mac,
        rule,
        indicator: ind,
        flow: h.flow,
        forwarded: false,
        public_resolver: None,
        ja4: Some(c.fingerprint.clone()),
    });
}

/// A certificate: its names (SANs and subject name, each once) and its issuer and subject.
fn on_cert(
    m: &Matcher,
    ev: &NameEvent,
    c: &crate::extract::cert::CertSummary,
    emit: &mut impl FnMut(RuleIdx, Indicator, bool, Option<IpAddr>),
) {
    let mut names: Vec<&str> = c.sans.iter().map(String::as_str).collect();
    names.push(&ev.value);
    names.sort_unstable();
    names.dedup();
    for name in names {
        let name = crate::extract::names::normalize(name.as_bytes()).unwrap_or_default();
        for hit in m.match_name(&name) {
            emit(hit.rule, indicator(NameKind::TlsCert, &name), false, None);
        }
    }
    for (rule, by_issuer) in m.match_cert(&c.issuer, &c.subject) {
        let dn = if by_issuer { &c.issuer } else { &c.subject };
        emit(rule, indicator(NameKind::TlsCert, dn), false, None);
    }
}

/// Rules that each owner name in a DNS answer hits: the question's, then every CNAME (or
/// SVCB/HTTPS) target's, which are reported (`emit`) with the question they answer.
fn chain_hits<'a>(
    m: &Matcher,
    ev: &'a NameEvent<'_>,
    d: &'a crate::extract::DnsDetail<'_>,
    emit: &mut impl FnMut(RuleIdx, Indicator),
) -> ChainHits<'a> {
    use crate::extract::dns::RData;
    let mut named = ChainHits::new();
    let q_hits: smallvec::SmallVec<[RuleIdx; 2]> =
        m.match_name(&ev.value).iter().map(|h| h.rule).collect();
    named.push((&ev.value, q_hits));
    for a in d.answers.iter() {
        let (RData::Cname(target) | RData::Svcb { target, .. }) = &a.data else {
            continue;
        };
        if !target.is_empty() {
            let hits: smallvec::SmallVec<[RuleIdx; 2]> =
                m.match_name(target).iter().map(|h| h.rule).collect();
            for &rule in &hits {
                let mut ind = indicator(NameKind::Dns, target);
                ind.query = Some(ev.value.to_string());
                emit(rule, ind);
            }
            named.push((target.as_str(), hits));
        }
    }
    named
}

/// The names of a DNS answer's chain with the rules each hits; room for the question and
/// three targets without an allocation (the chains of real answers are shorter).
type ChainHits<'a> = smallvec::SmallVec<[(&'a str, smallvec::SmallVec<[RuleIdx; 2]>); 4]>;

fn indicator(kind: NameKind, value: &str) -> Indicator {
    Indicator {
        kind,
        value: value.to_string(),
        name: None,
        query: None,
        path: None,
        ech: false,
        ech_real: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_error_keeps_its_words() {
        let loaded = rules::load_embedded().expect("embedded rules load");
        let packs: Vec<String> = loaded.packs.iter().map(|p| p.vendor.clone()).collect();
        let Err(e) = RuleSet::compile(loaded, Some(&["nobody".to_string()])) else {
            panic!("a vendor without a pack must be refused");
        };
        assert_eq!(
            e.to_string(),
            format!(
                "no rule pack for vendor \"nobody\" (packs: {})",
                packs.join(", ")
            )
        );
        // One variant: its label is unique by construction.
        assert_eq!(e.reason(), "unknown_vendor");
    }
    use crate::extract::{dns, DnsDetail, NameEvent};
    use std::net::SocketAddr;

    fn detector(limits: DetectLimits) -> Detector {
        let loaded = rules::load_embedded().expect("embedded packs");
        let set = RuleSet::compile(loaded, None).expect("compiles");
        let home = crate::config::parse_home_net(crate::config::DEFAULT_HOME_NET).expect("home");
        Detector::new(
            Arc::new(set),
            home,
            limits,
            resolvers::EncryptedDns::embedded().expect("list"),
        )
    }

    fn flow(proto: Proto, client: &str, server: &str) -> FlowId {
        FlowId {
            proto,
            client: client.parse::<SocketAddr>().expect("addr"),
            server: server.parse::<SocketAddr>().expect("addr"),
        }
    }

    fn findings(d: &Detector, item: &Extracted) -> Vec<Finding> {
        let mut v = Vec::new();
        d.detect(&d.rules(), item, &mut |f| v.push(f));
        v
    }

    #[test]
    fn ech_and_encrypted_dns_are_noticed_per_host() {
        let d = detector(DetectLimits::default());
        let start = |f: FlowId| Extracted::FlowStart {
            ts: Timestamp::from_parts(1, 0),
            flow: f,
            client_mac: None,
        };
        let dot = d.name_hiding(&start(flow(Proto::Tcp, "10.1.1.5:50000", "9.9.9.9:853")));
        assert!(
            matches!(dot, Some((_, Hiding::EncryptedDns(ref v))) if v.contains("DoT")),
            "{dot:?}"
        );
        let doh_by_address =
            d.name_hiding(&start(flow(Proto::Tcp, "10.1.1.5:50001", "1.1.1.1:443")));
        assert!(
            matches!(doh_by_address, Some((_, Hiding::EncryptedDns(ref v))) if v.contains("Cloudflare")),
            "{doh_by_address:?}"
        );
        assert!(d
            .name_hiding(&start(flow(Proto::Tcp, "10.1.1.5:50002", "192.0.2.1:443")))
            .is_none());
        // An outside host is nobody we report on.
        assert!(d
            .name_hiding(&start(flow(Proto::Tcp, "192.0.2.9:50000", "9.9.9.9:853")))
            .is_none());
        let hello = |name: &str, ech: bool| {
            Extracted::Name(NameEvent {
                ts: Timestamp::from_parts(1, 0),
                kind: NameKind::TlsSni,
                value: name.to_string().into(),
                flow: flow(Proto::Tcp, "10.1.1.5:50003", "192.0.2.1:443"),
                client_mac: None,
                detail: Detail::Tls {
                    version: 0x0304,
                    ech,
                    ja4: None,
                },
            })
        };
        assert_eq!(
            d.name_hiding(&hello("cloudflare-ech.com", true))
                .map(|h| h.1),
            Some(Hiding::Ech)
        );
        assert!(matches!(
            d.name_hiding(&hello("dns.google", false)),
            Some((_, Hiding::EncryptedDns(_)))
        ));
        // The outer name of an ECH hello is evidence like any server name; the indicator says
        // ECH was used, and GREASE (no configuration known for the name) hides nothing.
        let mut found = Vec::new();
        d.detect(
            &d.rules(),
            &hello("s05.upd.kaspersky.com", true),
            &mut |f| found.push(f),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].indicator.ech && !found[0].indicator.ech_real);
        assert!(found[0]
            .indicator
            .ech_explanation()
            .is_some_and(|e| e.contains("GREASE") && e.contains("s05.upd.kaspersky.com")));
        assert_eq!(d.name_hiding(&hello("s05.upd.kaspersky.com", true)), None);
        d.detect(
            &d.rules(),
            &hello("s05.upd.kaspersky.com", false),
            &mut |f| found.push(f),
        );
        assert_eq!(found.len(), 2);
        assert!(!found[1].indicator.ech);
    }

    #[test]
    fn an_ech_public_name_from_an_https_answer_makes_ech_real() {
        let d = detector(DetectLimits::default());
        let hello = Extracted::Name(NameEvent {
            ts: Timestamp::from_parts(2, 0),
            kind: NameKind::QuicSni,
            value: "ech.kaspersky.com".into(),
            flow: flow(Proto::Udp, "10.1.1.5:50003", "192.0.2.1:443"),
            client_mac: None,
            detail: Detail::Tls {
                version: 0x0304,
                ech: true,
                ja4: None,
            },
        });
        assert_eq!(
            d.name_hiding(&hello),
            None,
            "GREASE until a configuration is seen"
        );
        let answer = Extracted::Name(NameEvent {
            ts: Timestamp::from_parts(1, 0),
            kind: NameKind::Dns,
            value: "shop.example".into(),
            flow: flow(Proto::Udp, "10.1.1.5:40000", "10.1.1.53:53"),
            client_mac: None,
            detail: Detail::Dns(DnsDetail {
                is_response: true,
                qtype: 65,
                rcode: 0,
                answers: vec![dns::Answer {
                    name: "shop.example".into(),
                    rtype: 65,
                    ttl: 300,
                    data: dns::RData::Svcb {
                        priority: 1,
                        target: dns::Name::default(),
                        alpn: vec!["h3".into()],
                        ech: true,
                        ech_public_names: crate::extract::ech::public_names(
                            &crate::extract::ech::tests::config_list("ech.kaspersky.com"),
                        ),
                    },
                }]
                .into(),
                query_seen: true,
            }),
        });
        d.detect(&d.rules(), &answer, &mut |_| {});
        assert_eq!(d.name_hiding(&hello).map(|h| h.1), Some(Hiding::Ech));
        let mut found = Vec::new();
        d.detect(&d.rules(), &hello, &mut |f| found.push(f));
        assert!(!found.is_empty());
        assert!(found
            .iter()
            .all(|f| f.indicator.ech && f.indicator.ech_real));
        assert!(found[0]
            .indicator
            .ech_explanation()
            .is_some_and(|e| e.contains("public name ech.kaspersky.com") && e.contains("hidden")));
    }

    #[test]
    fn security_center_ports_need_two_distinct_ports_between_the_same_pair() {
        let d = detector(DetectLimits::default());
        let start = |f: FlowId| Extracted::FlowStart {
            ts: Timestamp::from_parts(1, 0),
            flow: f,
            client_mac: None,
        };
        assert!(findings(
            &d,
            &start(flow(Proto::Tcp, "10.1.1.5:50000", "10.1.1.2:13000"))
        )
        .is_empty());
        // The same port again is still one port.
        assert!(findings(
            &d,
            &start(flow(Proto::Tcp, "10.1.1.5:50001", "10.1.1.2:13000"))
        )
        .is_empty());
        // Another host pair does not add to this pair's count.
        assert!(findings(
            &d,
            &start(flow(Proto::Udp, "10.1.1.2:50000", "10.1.1.9:15000"))
        )
        .is_empty());
        // UDP 15000 from the server to the agent: the second port between the same two hosts.
        let f = findings(
            &d,
            &start(flow(Proto::Udp, "10.1.1.2:50002", "10.1.1.5:15000")),
        );
        assert_eq!(f.len(), 1, "{f:?}");
        let rule = d.rules().rule(f[0].rule).clone();
        assert_eq!(rule.category, "management");
        assert!(rule.severity < rules::Severity::High);
        assert_eq!(f[0].indicator.value, "15000/udp");
    }

    #[test]
    fn passive_dns_honours_ttl_floor_and_cap_and_its_size_bound() {
        let limits = DetectLimits {
            pdns_max_entries: 2,
            pdns_ttl_floor_secs: 60,
            pdns_ttl_cap_secs: 3600,
            ..DetectLimits::default()
        };
        let d = detector(limits);
        let answer = |ip: [u8; 4], ttl: u32, at: i64| {
            Extracted::Name(NameEvent {
                ts: Timestamp::from_parts(at, 0),
                kind: NameKind::Dns,
                value: "dnl-01.geo.kaspersky.com".into(),
                flow: flow(Proto::Udp, "10.1.1.5:5353", "10.1.1.53:53"),
                client_mac: None,
                detail: Detail::Dns(DnsDetail {
                    is_response: true,
                    qtype: 1,
                    rcode: 0,
                    answers: vec![dns::Answer {
                        name: "dnl-01.geo.kaspersky.com".into(),
                        rtype: 1,
                        ttl,
                        data: dns::RData::A(ip.into()),
                    }]
                    .into(),
                    query_seen: true,
                }),
            })
        };
        let unnamed = |ip: &str, at: i64| Extracted::Unnamed {
            ts: Timestamp::from_parts(at, 0),
            flow: flow(Proto::Tcp, "10.1.1.6:40000", &format!("{ip}:443")),
        };
        findings(&d, &answer([203, 0, 113, 1], 1, 1000));
        // TTL 1 s, floor 60 s: still known 59 s later, gone after 61 s.
        assert_eq!(findings(&d, &unnamed("203.0.113.1", 1059)).len(), 1);
        assert!(findings(&d, &unnamed("203.0.113.1", 1061)).is_empty());
        findings(&d, &answer([203, 0, 113, 2], 1_000_000, 1000));
        assert_eq!(findings(&d, &unnamed("203.0.113.2", 4599)).len(), 1);
        assert!(findings(&d, &unnamed("203.0.113.2", 4601)).is_empty());
        // Bounded: a third live address takes the place of the oldest answer, counted.
        findings(&d, &answer([203, 0, 113, 3], 100, 1001));
        assert!(d.pdns_len() <= 2);
        assert_eq!(d.pdns_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(findings(&d, &unnamed("203.0.113.3", 1001)).len(), 1);
        // A flood of answers into the full table within one second scans it for expired
        // entries once, not once per answer; each answer sheds one older entry, counted, and
        // what was answered last is known.
        let (sweeps, dropped) = (
            d.pdns_sweeps.load(Ordering::Relaxed),
            d.pdns_dropped.load(Ordering::Relaxed),
        );
        for i in 0..100u8 {
            findings(&d, &answer([198, 51, 100, i], 100, 1002));
        }
        assert_eq!(d.pdns_sweeps.load(Ordering::Relaxed), sweeps + 1);
        assert_eq!(d.pdns_dropped.load(Ordering::Relaxed), dropped + 100);
        assert!(d.pdns_len() <= 2);
        findings(&d, &answer([203, 0, 113, 2], 1_000_000, 1003));
        let f = findings(&d, &unnamed("203.0.113.2", 1004));
        assert_eq!(f[0].indicator.kind, NameKind::Ip);
        assert_eq!(
            f[0].indicator.name.as_deref(),
            Some("dnl-01.geo.kaspersky.com")
        );
        // The least recently answered address is the one shed: A, B, A again, then C sheds B.
        let d = detector(limits);
        findings(&d, &answer([192, 0, 2, 1], 10_000, 2000));
        findings(&d, &answer([192, 0, 2, 2], 10_000, 2001));
        findings(&d, &answer([192, 0, 2, 1], 10_000, 2002));
        findings(&d, &answer([192, 0, 2, 3], 10_000, 2003));
        assert_eq!(findings(&d, &unnamed("192.0.2.1", 2004)).len(), 1);
        assert!(findings(&d, &unnamed("192.0.2.2", 2004)).is_empty());
        assert_eq!(findings(&d, &unnamed("192.0.2.3", 2004)).len(), 1);
    }

    #[test]
    fn a_reload_keeps_what_passive_dns_and_port_pairs_learned_under_the_old_rules() {
        let d = detector(DetectLimits::default());
        let answer = Extracted::Name(NameEvent {
            ts: Timestamp::from_parts(1000, 0),
            kind: NameKind::Dns,
            value: "dnl-01.geo.kaspersky.com".into(),
            flow: flow(Proto::Udp, "10.1.1.5:5353", "10.1.1.53:53"),
            client_mac: None,
            detail: Detail::Dns(DnsDetail {
                is_response: true,
                qtype: 1,
                rcode: 0,
                answers: vec![dns::Answer {
                    name: "dnl-01.geo.kaspersky.com".into(),
                    rtype: 1,
                    ttl: 300,
                    data: dns::RData::A([203, 0, 113, 9].into()),
                }]
                .into(),
                query_seen: true,
            }),
        });
        let unnamed = Extracted::Unnamed {
            ts: Timestamp::from_parts(1010, 0),
            flow: flow(Proto::Tcp, "10.1.1.6:40000", "203.0.113.9:443"),
        };
        let start = |f: FlowId| Extracted::FlowStart {
            ts: Timestamp::from_parts(1, 0),
            flow: f,
            client_mac: None,
        };
        findings(&d, &answer);
        let before: Vec<String> = findings(&d, &unnamed)
            .iter()
            .map(|f| d.rules().rule(f.rule).id.clone())
            .collect();
        assert!(!before.is_empty());
        // One Security Center port seen before the reload, the second after it.
        assert!(findings(
            &d,
            &start(flow(Proto::Tcp, "10.1.1.5:50000", "10.1.1.2:13000"))
        )
        .is_empty());

        // Every pack active, in another order: the Kaspersky rules sit at other indices.
        let mut loaded = rules::load_embedded().expect("embedded packs");
        loaded.rules.reverse();
        let all: Vec<String> = loaded.packs.iter().map(|p| p.vendor.clone()).collect();
        let wider = RuleSet::compile(loaded, Some(&all)).expect("compiles");
        let first_kaspersky = wider.rules.iter().position(|r| r.vendor == "kaspersky");
        assert_ne!(first_kaspersky, Some(0), "indices must move for this test");
        let old = d.rules();
        let in_force = d.replace_rules(wider);
        assert_eq!(in_force.generation, 1);
        // A worker still on the old rules learns another address during the reload: new
        // workers cannot use it until `settle` carries it over.
        let late = match &answer {
            Extracted::Name(ev) => {
                let mut ev = ev.clone();
                if let Detail::Dns(dd) = &mut ev.detail {
                    dd.answers.to_mut()[0].data = dns::RData::A([203, 0, 113, 10].into());
                }
                Extracted::Name(ev)
            }
            _ => unreachable!("an answer"),
        };
        d.detect(&old, &late, &mut |_| {});
        let late_conn = Extracted::Unnamed {
            ts: Timestamp::from_parts(1010, 0),
            flow: flow(Proto::Tcp, "10.1.1.7:40000", "203.0.113.10:443"),
        };
        assert!(findings(&d, &late_conn).is_empty(), "not carried over yet");
        d.settle();
        assert_eq!(findings(&d, &late_conn).len(), before.len(), "carried over");
        let after: Vec<String> = findings(&d, &unnamed)
            .iter()
            .map(|f| d.rules().rule(f.rule).id.clone())
            .collect();
        assert_eq!(after, before, "the learned address keeps its rules by id");
        let f = findings(
            &d,
            &start(flow(Proto::Udp, "10.1.1.2:50002", "10.1.1.5:15000")),
        );
        assert_eq!(
            f.len(),
            1,
            "the port seen before the reload still counts: {f:?}"
        );

        // Rules that are gone take their learned addresses with them.
        let loaded = rules::load_embedded().expect("embedded packs");
        let others: Vec<String> = all.into_iter().filter(|v| v != "kaspersky").collect();
        d.replace_rules(RuleSet::compile(loaded, Some(&others)).expect("compiles"));
        assert!(findings(&d, &unnamed).is_empty());
        assert_eq!(d.pdns_len(), 0);
    }

    /// IPv4/UDP frame (checksum zero: not checked).
    fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let total = (28 + payload.len()) as u16;
        let mut f = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
        f[2..4].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&(total - 20).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    /// A resolver asked for www.example.org by a client gets an answer from upstream that
    /// leads to dnl-01.geo.kaspersky.com: that name is the client's too, so the resolver's
    /// lookup of it is forwarded. Chased at once when every earlier packet is on record;
    /// otherwise handed back, and chased when the worker makes it.
    #[test]
    fn an_answers_cname_targets_are_chased_for_the_client_now_or_when_settled() {
        let (client, resolver, upstream) = ([10, 0, 0, 5], [10, 0, 0, 53], [192, 0, 2, 1]);
        let answer = crate::extract::dns::tests::cname_answer();
        // The client's question: the answer's header and question, as a query.
        let mut query = answer[..12 + 21].to_vec();
        query[2..4].copy_from_slice(&[0x01, 0x00]);
        query[6..8].copy_from_slice(&[0, 0]);
        let ts = Timestamp::from_parts(100, 0);
        let target = "dnl-01.geo.kaspersky.com";
        let res_ip = IpAddr::from(resolver);
        for settled in [true, false] {
            let d = detector(DetectLimits::default());
            let note = |frame: Vec<u8>| {
                let pkt = crate::decode::decode(crate::decode::LinkType::RawIp, &frame)
                    .expect("test frame decodes");
                d.note_dns_packet(ts, &pkt, None, &mut || settled)
            };
            assert!(note(udp(client, resolver, 5555, 53, &query)).is_none());
            // The resolver answers the client: it earns the role. Nothing to chase there
            // (the client holds no role).
            let _ = note(udp(resolver, client, 53, 5555, &answer));
            assert!(d.is_resolver(res_ip));
            let upstream_answer = note(udp(upstream, resolver, 53, 4444, &answer));
            let asked = || d.forwarded_lookup(res_ip, target, ts);
            if settled {
                assert!(upstream_answer.is_none());
                assert!(asked());
            } else {
                let chase = upstream_answer.expect("the chase is handed back");
                assert_eq!(chase.resolver, res_ip);
                assert_eq!(chase.targets, [target]);
                assert!(!asked(), "not chased before it is settled");
                d.chase(&chase);
                assert!(asked());
            }
        }
        // An answer that leads nowhere never asks whether it is settled.
        let d = detector(DetectLimits::default());
        let mut plain = answer.clone();
        plain[7] = 0;
        let frame = udp(upstream, resolver, 53, 4444, &plain[..12 + 21]);
        let pkt = crate::decode::decode(crate::decode::LinkType::RawIp, &frame).expect("decodes");
        let mut asked_order = || panic!("asked for nothing to chase");
        assert!(d
            .note_dns_packet(ts, &pkt, None, &mut asked_order)
            .is_none());
    }
}
