//! Resolvers, two kinds.
//!
//! Encrypted-DNS services (DoH, DoT) as data (`rules/resolvers/encrypted-dns.toml`): which
//! names and addresses hide a host's lookups from the sensor, and which addresses are
//! public resolvers a product might query directly.
//!
//! Home-net resolvers ([`ResolverRoles`]): which home-net hosts answer other home-net hosts'
//! lookups, learned only from evidence — a parsed DNS answer that matches a query another
//! home-net host sent it (same client address and port, transaction id and question) — or
//! pinned by the operator (`resolvers = [...]`, `--resolvers`). A port number proves nothing:
//! a SYN, an empty datagram or an unanswered query to port 53 never makes a host a resolver.
//!
//! A resolver's lookups are not blamed on it when they are *forwarded*: the same name (or a
//! name above it, as a resolver that minimises its queries asks `kaspersky.com` before
//! `dnl-01.geo.kaspersky.com`), or a CNAME target reached from it, was asked of that host by
//! another home-net host within [`FORWARD_WINDOW_SECS`] before. Every other lookup is the
//! host's own and alerts, whatever its role. Each worker records the client queries of its
//! flows as it reads them (with one worker, the capture thread does, in packet order; see
//! `Detector::note_dns_packet`), and a judgement that reads the
//! roles waits until every worker has read every packet before its own (`pipeline::order`),
//! so a client's question is always on record before the upstream lookup it caused is judged.
//!
//! Every table here is bounded; what does not fit is shed and counted.

use crate::time::Timestamp;
use dashmap::DashMap;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

pub const EMBEDDED: &str = include_str!("../../rules/resolvers/encrypted-dns.toml");

/// DNS over TLS (RFC 7858) and DNS over QUIC (RFC 9250) share this port.
pub const DOT_PORT: u16 = 853;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    resolver: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    names: Vec<String>,
    addresses: Vec<String>,
    #[allow(dead_code)]
    source: String,
}

/// Why an encrypted-dns resolver list cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ResolverListError {
    #[error("encrypted-dns resolver list: {0}")]
    Syntax(toml::de::Error),
    /// `resolver`: the name of the entry that lists the address.
    #[error("encrypted-dns resolver list: {address:?} ({resolver}) is not an address")]
    NotAddress { address: String, resolver: String },
}

impl ResolverListError {
    /// A short label (for logs and metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            ResolverListError::Syntax(_) => "syntax",
            ResolverListError::NotAddress { .. } => "not_address",
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct EncryptedDns {
    /// Looked up for every DNS name a home host asks and every server name it dials: the
    /// faster seeded hasher the other tables use, not SipHash.
    names: HashSet<String, ahash::RandomState>,
    addresses: HashMap<IpAddr, String, ahash::RandomState>,
}

impl EncryptedDns {
    pub fn parse(text: &str) -> Result<EncryptedDns, ResolverListError> {
        let file: File = toml::from_str(text).map_err(ResolverListError::Syntax)?;
        let mut out = EncryptedDns::default();
        for r in file.resolver {
            out.names
                .extend(r.names.iter().map(|n| n.to_ascii_lowercase()));
            for a in &r.addresses {
                let ip: IpAddr = a.parse().map_err(|_| ResolverListError::NotAddress {
                    address: a.clone(),
                    resolver: r.name.clone(),
                })?;
                out.addresses.insert(ip, r.name.clone());
            }
        }
        Ok(out)
    }

    pub fn embedded() -> Result<EncryptedDns, ResolverListError> {
        EncryptedDns::parse(EMBEDDED)
    }

    /// The service behind a public resolver address.
    pub fn service_at(&self, ip: IpAddr) -> Option<&str> {
        self.addresses.get(&ip).map(String::as_str)
    }

    pub fn is_doh_name(&self, name: &str) -> bool {
        self.names.contains(name)
    }
}

/// Distinct answered queries (matched to the query another home-net host sent) that make a
/// host a resolver. One is enough: the answer must match a query seen on the wire from
/// another home-net host (address, port, id and question), which no scan, empty datagram or
/// lone forged answer provides, and the role alone silences nothing (a lookup is forwarded
/// only when a client asked that host for the same name just before). The bundled captures
/// of small networks show their resolver answering a single query.
pub const RESOLVER_MIN_ANSWERED: u64 = 1;
/// Home-net resolvers known at most (learned and pinned); beyond it new ones are shed and
/// counted (`resolvers_shed`): a flood of forged transactions cannot grow the set.
pub const RESOLVERS_MAX: usize = 4096;
/// Client queries to home-net hosts waiting for their answer, at most. When full, entries
/// older than `PENDING_SECS` are dropped, then new queries are shed and counted.
pub const PENDING_MAX: usize = 16_384;
/// How long a query waits for its answer (resolvers give up well before).
pub const PENDING_SECS: i64 = 30;
/// How long after a client asked a host for a name that host's own lookup of it counts as
/// forwarded: resolvers retry and walk referrals for a few seconds, and clients retry too.
pub const FORWARD_WINDOW_SECS: i64 = 30;
/// (host, name) pairs asked of home-net hosts, remembered at most; a full table first drops
/// pairs older than the window, then sheds new ones (counted): a resolver's lookup for a
/// shed name alerts, the safe side.
pub const ASKED_MAX: usize = 32_768;
/// Names above the asked one remembered with it (a minimising resolver's first questions).
pub const ASKED_ANCESTORS: usize = 8;

/// Why a host holds the resolver role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleSource {
    /// Named in the configuration (`resolvers = [...]` or `--resolvers`).
    Pinned,
    /// Answered queries of other home-net hosts, seen on the wire.
    Answered,
}

impl RoleSource {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleSource::Pinned => "pinned",
            RoleSource::Answered => "answered",
        }
    }

    pub fn parse(text: &str) -> Option<RoleSource> {
        match text {
            "pinned" => Some(RoleSource::Pinned),
            "answered" => Some(RoleSource::Answered),
            _ => None,
        }
    }
}

/// What the sensor knows about one home-net resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverInfo {
    pub source: RoleSource,
    /// Answers matched to a client's query (this run, plus what the inventory remembered).
    pub answered: u64,
    /// Packet times of the first and the latest matched answer.
    pub first_answer: Option<Timestamp>,
    pub last_answer: Option<Timestamp>,
}

/// A query to a home-net host, waiting for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PendingKey {
    client: IpAddr,
    client_port: u16,
    server: IpAddr,
    id: u16,
}

/// Client queries of one (host, name): the first and the latest of a run of queries each
/// within the window of the one before, so any lookup time in `[first, latest + window]`
/// has a query at most one window before it — even when workers judge lookups out of order.
#[derive(Debug, Clone, Copy)]
struct Asked {
    first: Timestamp,
    latest: Timestamp,
}

/// The key of `ResolverRoles::asked`: the host asked and the name, hashed together under
/// `ResolverRoles::name_hasher` (see `ResolverRoles::suffix_keys`). A worker records
/// a name and its ancestors for every client query and a worker looks one up for every
/// upstream lookup: a string key cost an allocation per new name and a string hash and
/// compare per probe, where a keyed 64-bit hash costs neither, and a (host, name) passes for
/// another only by a collision nobody outside can aim at (the seed is random per run). The
/// key is already a hash, so the table does not hash it again.
type AskedKey = u64;

/// Hashes nothing: `AskedKey`s are keyed hashes already.
type AskedHasher = std::hash::BuildHasherDefault<nohash_hasher::NoHashHasher<u64>>;

/// Home-net resolvers and the client queries they received (see the module doc).
#[derive(Default)]
pub struct ResolverRoles {
    roles: DashMap<IpAddr, ResolverInfo, ahash::RandomState>,
    /// Entries in `roles` (a shard lock is held while inserting, so `len()` cannot be used).
    count: AtomicUsize,
    /// Workers write it; a mutex keeps it simple (its holds are short).
    /// Keyed by what the wire says: a randomly seeded hasher (as every table here), which
    /// costs a fraction of the standard library's SipHash per lookup.
    /// The query's name is kept as its hash under `name_hasher` (randomly seeded): a response
    /// matches when the client, port, server, id and that hash all agree, and a name that is
    /// not the query's passes for it only by a 64-bit collision nobody outside can aim at.
    /// No string is allocated per query.
    pending: Mutex<HashMap<PendingKey, (u64, Timestamp), ahash::RandomState>>,
    name_hasher: ahash::RandomState,
    /// Keyed by `AskedKey` (host and name).
    asked: DashMap<AskedKey, Asked, AskedHasher>,
    /// Entries in `asked`, counted as they are added and recounted at each sweep: `len()`
    /// read-locks every shard (64 of them on a 16-core machine), and it was asked for every
    /// new name. Workers adding at once may leave it a little off until the next
    /// sweep; the cap it enforces is a bound on memory, not an exact figure.
    asked_count: AtomicUsize,
    /// Hosts that earned the role when `RESOLVERS_MAX` were already known.
    pub shed: AtomicU64,
    /// Client queries not remembered (pending table full).
    pub pending_shed: AtomicU64,
    /// Asked names not remembered (table full).
    pub asked_shed: AtomicU64,
    /// Judgements that read these tables made before every packet ahead of theirs was read
    /// (`pipeline::order`: too many kept back, or live, kept back too long).
    pub judged_early: AtomicU64,
    /// The roles changed since the inventory last saved them.
    changed: std::sync::atomic::AtomicBool,
    /// Packet second of the last scan of a full `pending` / `asked` table for old entries:
    /// at most one scan per second of packet time, or a flood into a full table would cost
    /// a full scan per packet.
    pending_swept_at: std::sync::atomic::AtomicI64,
    asked_swept_at: std::sync::atomic::AtomicI64,
}

fn window(secs: i64) -> i64 {
    secs.saturating_mul(1_000_000_000)
}

impl ResolverRoles {
    /// Hosts pinned by the operator hold the role from the start (they count toward the cap
    /// but are never shed).
    pub fn with_pinned(pinned: &[IpAddr]) -> ResolverRoles {
        let r = ResolverRoles::default();
        r.changed.store(!pinned.is_empty(), Ordering::Relaxed);
        for ip in pinned {
            if r.roles
                .insert(
                    *ip,
                    ResolverInfo {
                        source: RoleSource::Pinned,
                        answered: 0,
                        first_answer: None,
                        last_answer: None,
                    },
                )
                .is_none()
            {
                r.count.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }

    /// Puts back what the inventory remembers: the role stays earned across restarts.
    pub fn restore(&self, list: impl IntoIterator<Item = (IpAddr, ResolverInfo)>) {
        for (ip, info) in list {
            self.changed.store(true, Ordering::Relaxed);
            // A pin the configuration no longer holds leaves only what was earned.
            let known = self.roles.contains_key(&ip);
            if known || info.answered >= RESOLVER_MIN_ANSWERED {
                self.earn(ip, info);
            }
        }
    }

    /// Adds `info`'s answers to `ip`'s role, or gives `ip` the role when the table has room
    /// (counted when it has not). One entry lock: several workers may record answers of the
    /// same resolver at once.
    fn earn(&self, ip: IpAddr, info: ResolverInfo) {
        match self.roles.entry(ip) {
            dashmap::mapref::entry::Entry::Occupied(mut e) => {
                let known = e.get_mut();
                known.answered = known.answered.saturating_add(info.answered);
                known.first_answer = match (known.first_answer, info.first_answer) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                known.last_answer = known.last_answer.max(info.last_answer);
            }
            dashmap::mapref::entry::Entry::Vacant(v) => {
                if self.count.load(Ordering::Relaxed) >= RESOLVERS_MAX {
                    self.shed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                self.count.fetch_add(1, Ordering::Relaxed);
                v.insert(ResolverInfo {
                    source: RoleSource::Answered,
                    ..info
                });
            }
        }
    }

    /// A DNS query from `client` to the home-net host `server` (both home-net, distinct).
    pub fn note_query(
        &self,
        ts: Timestamp,
        client: IpAddr,
        client_port: u16,
        server: IpAddr,
        id: u16,
        name: &str,
    ) {
        if name.is_empty() {
            return;
        }
        self.note_asked(ts, server, name, true);
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        if pending.len() >= PENDING_MAX {
            if self.pending_swept_at.swap(ts.secs(), Ordering::Relaxed) != ts.secs() {
                let oldest = ts.0.saturating_sub(window(PENDING_SECS));
                pending.retain(|_, (_, at)| at.0 >= oldest);
            }
            if pending.len() >= PENDING_MAX {
                self.pending_shed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        pending.insert(
            PendingKey {
                client,
                client_port,
                server,
                id,
            },
            (self.name_hasher.hash_one(name), ts),
        );
    }

    /// A DNS response from the home-net host `server` to `client`: when it answers a query
    /// seen from that client, it is evidence that `server` is a resolver.
    pub fn note_response(
        &self,
        ts: Timestamp,
        server: IpAddr,
        client: IpAddr,
        client_port: u16,
        id: u16,
        name: &str,
    ) {
        let key = PendingKey {
            client,
            client_port,
            server,
            id,
        };
        let matched = match self.pending.lock() {
            Ok(mut pending) => match pending.get(&key) {
                Some((asked, at))
                    if *asked == self.name_hasher.hash_one(name)
                        && ts.0.saturating_sub(at.0) <= window(PENDING_SECS) =>
                {
                    pending.remove(&key);
                    true
                }
                _ => false,
            },
            Err(_) => false,
        };
        if !matched {
            return;
        }
        self.changed.store(true, Ordering::Relaxed);
        // RESOLVER_MIN_ANSWERED is 1: the first matched answer earns the role.
        self.earn(
            server,
            ResolverInfo {
                source: RoleSource::Answered,
                answered: 1,
                first_answer: Some(ts),
                last_answer: Some(ts),
            },
        );
    }

    /// Remembers that `host` was asked for `name` at `ts` (and, with `ancestors`, for the
    /// names above it). Also called for the CNAME targets of a forwarded lookup's answer: a
    /// recursive resolver chases them on the client's behalf.
    pub fn note_asked(&self, ts: Timestamp, host: IpAddr, name: &str, ancestors: bool) {
        let mut keys = self.suffix_keys(host, name);
        // The whole name, then (with `ancestors`) the names after its dots, longest first;
        // a trailing dot's empty name is not one.
        let shortest = usize::from(name.ends_with('.'));
        let parents = if ancestors { ASKED_ANCESTORS } else { 0 };
        for key in keys.drain(shortest..).rev().take(parents + 1) {
            if let Some(mut a) = self.asked.get_mut(&key) {
                if ts.0.saturating_sub(a.latest.0) > window(FORWARD_WINDOW_SECS) {
                    a.first = ts;
                }
                a.latest = a.latest.max(ts);
                a.first = a.first.min(ts);
                continue;
            }
            if self.asked_count.load(Ordering::Relaxed) >= ASKED_MAX {
                if self.asked_swept_at.swap(ts.secs(), Ordering::Relaxed) != ts.secs() {
                    let oldest = ts.0.saturating_sub(window(FORWARD_WINDOW_SECS));
                    self.asked.retain(|_, a| a.latest.0 >= oldest);
                    self.asked_count.store(self.asked.len(), Ordering::Relaxed);
                }
                if self.asked_count.load(Ordering::Relaxed) >= ASKED_MAX {
                    self.asked_shed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            let fresh = Asked {
                first: ts,
                latest: ts,
            };
            if self.asked.insert(key, fresh).is_none() {
                self.asked_count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Whether `host`'s lookup of `name` at `ts` answers a client's question (see the module
    /// doc): another home-net host asked `host` for it at most the window before.
    pub fn client_asked(&self, host: IpAddr, name: &str, ts: Timestamp) -> bool {
        let Some(&key) = self.suffix_keys(host, name).last() else {
            return false;
        };
        self.asked.get(&key).is_some_and(|a| {
            a.first <= ts && ts.0.saturating_sub(a.latest.0) <= window(FORWARD_WINDOW_SECS)
        })
    }

    /// The `AskedKey`s of `host` asked for each name that ends `name` after a dot, from the
    /// last label to the whole name (the last key). One hasher reads the host and then the
    /// labels from the right, each followed by a dot, and each key is what it has read so
    /// far: a name and every name above it cost one pass over it, where hashing each of them
    /// whole cost a pass per ancestor.
    fn suffix_keys(&self, host: IpAddr, name: &str) -> smallvec::SmallVec<[AskedKey; 8]> {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut hasher = self.name_hasher.build_hasher();
        host.hash(&mut hasher);
        let mut keys = smallvec::SmallVec::new();
        // A byte predicate, not `str::rsplit('.')`: its searcher cost more than the hashing.
        for label in name.as_bytes().rsplit(|&b| b == b'.') {
            hasher.write(label);
            hasher.write_u8(b'.');
            keys.push(hasher.clone().finish());
        }
        keys
    }

    pub fn is_resolver(&self, ip: IpAddr) -> bool {
        self.roles.contains_key(&ip)
    }

    /// Whether the roles changed since the last call (for the inventory's saves).
    pub fn take_changed(&self) -> bool {
        self.changed.swap(false, Ordering::Relaxed)
    }

    /// Marks the roles as changed again (after a failed save).
    pub fn mark_changed(&self) {
        self.changed.store(true, Ordering::Relaxed);
    }

    pub fn info(&self, ip: IpAddr) -> Option<ResolverInfo> {
        self.roles.get(&ip).map(|e| e.value().clone())
    }

    /// Every resolver, sorted by address.
    pub fn list(&self) -> Vec<(IpAddr, ResolverInfo)> {
        let mut v: Vec<(IpAddr, ResolverInfo)> = self
            .roles
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        v.sort_by_key(|e| e.0);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolver_list_errors_have_unique_reasons_and_keep_their_words() {
        let address = EncryptedDns::parse(
            "[[resolver]]\nname = \"Example\"\nnames = []\naddresses = [\"nope\"]\nsource = \"test\"\n",
        )
        .unwrap_err();
        assert_eq!(
            address.to_string(),
            "encrypted-dns resolver list: \"nope\" (Example) is not an address"
        );
        let syntax = EncryptedDns::parse("[[resolver]\n").unwrap_err();
        assert!(
            syntax
                .to_string()
                .starts_with("encrypted-dns resolver list: "),
            "{syntax}"
        );
        assert_ne!(address.reason(), syntax.reason());
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_parts(secs, 0)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_an_answer_to_a_seen_query_earns_the_role() {
        let r = ResolverRoles::default();
        let (ws, res, client) = (ip("10.0.0.11"), ip("10.0.0.53"), ip("10.0.0.12"));
        // An answer nobody asked for (forged, or a one-way tap): nothing.
        r.note_response(t(1), ws, client, 40000, 7, "x.example");
        // A query that is never answered (a probe of a closed port): nothing.
        r.note_query(t(1), client, 40001, ws, 8, "version.bind");
        // An answer with the wrong id or name: nothing.
        r.note_query(t(2), client, 40002, res, 9, "a.example");
        r.note_response(t(2), res, client, 40002, 10, "a.example");
        r.note_response(t(2), res, client, 40002, 9, "b.example");
        assert!(!r.is_resolver(ws) && !r.is_resolver(res));
        r.note_response(t(2), res, client, 40002, 9, "a.example");
        assert!(r.is_resolver(res) && !r.is_resolver(ws));
        assert_eq!(r.info(res).map(|i| i.answered), Some(1));
        // Stale: an answer long after its query does not count.
        r.note_query(t(3), client, 40003, ws, 11, "c.example");
        r.note_response(t(3 + PENDING_SECS + 1), ws, client, 40003, 11, "c.example");
        assert!(!r.is_resolver(ws));
    }

    #[test]
    fn the_role_is_bounded_and_shedding_is_counted() {
        let r = ResolverRoles::with_pinned(&[ip("10.9.9.9")]);
        let client = ip("10.0.0.1");
        let extra = 10u32;
        for n in 0..(RESOLVERS_MAX as u32 + extra) {
            let server = IpAddr::from(std::net::Ipv4Addr::from(0x0a01_0000 + n));
            r.note_query(t(1), client, 5000, server, 1, "x.example");
            r.note_response(t(1), server, client, 5000, 1, "x.example");
        }
        assert_eq!(r.list().len(), RESOLVERS_MAX);
        assert_eq!(r.shed.load(Ordering::Relaxed), u64::from(extra) + 1);
        assert!(
            r.is_resolver(ip("10.9.9.9")),
            "a pinned resolver is never shed"
        );
    }

    #[test]
    fn the_asked_table_is_bounded_and_makes_room_once_its_names_are_old() {
        let r = ResolverRoles::default();
        let res = ip("10.0.0.53");
        let extra = 100;
        for i in 0..ASKED_MAX + extra {
            r.note_asked(t(100), res, &format!("n{i}.example"), false);
        }
        assert_eq!(r.asked.len(), ASKED_MAX);
        assert_eq!(r.asked_shed.load(Ordering::Relaxed), extra as u64);
        // Names asked again are refreshed, not counted twice.
        r.note_asked(t(100), res, "n0.example", false);
        assert_eq!(r.asked_count.load(Ordering::Relaxed), ASKED_MAX);
        // Past the window, the next new name sweeps the old ones out and is remembered.
        let later = t(100 + FORWARD_WINDOW_SECS + 1);
        r.note_asked(later, res, "new.example", false);
        assert!(r.client_asked(res, "new.example", later));
        assert_eq!(r.asked.len(), 1);
        assert_eq!(r.asked_count.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn at_most_asked_ancestors_names_above_the_asked_one_are_remembered() {
        let r = ResolverRoles::default();
        let res = ip("10.0.0.53");
        // Twelve labels: eleven names above it.
        r.note_asked(t(100), res, "a.b.c.d.e.f.g.h.i.j.example.com", true);
        assert!(r.client_asked(res, "a.b.c.d.e.f.g.h.i.j.example.com", t(101)));
        assert!(r.client_asked(res, "b.c.d.e.f.g.h.i.j.example.com", t(101)));
        // The eighth name above, and not the ninth.
        assert_eq!(ASKED_ANCESTORS, 8);
        assert!(r.client_asked(res, "i.j.example.com", t(101)));
        assert!(!r.client_asked(res, "j.example.com", t(101)));
        assert!(!r.client_asked(res, "com", t(101)));
        // Without ancestors, the name alone.
        r.note_asked(t(100), res, "x.example.org", false);
        assert!(r.client_asked(res, "x.example.org", t(101)));
        assert!(!r.client_asked(res, "example.org", t(101)));
        // Names are keyed label by label: a label boundary elsewhere is another name, and a
        // trailing dot's empty name is not remembered.
        r.note_asked(t(100), res, "ab.example.net.", true);
        assert!(r.client_asked(res, "ab.example.net.", t(101)));
        assert!(r.client_asked(res, "example.net.", t(101)));
        assert!(r.client_asked(res, "net.", t(101)));
        assert!(!r.client_asked(res, "", t(101)));
        assert!(!r.client_asked(res, "a.b.example.net.", t(101)));
        assert!(!r.client_asked(res, "ab.example.net", t(101)));
        assert!(!r.client_asked(res, "bexample.net.", t(101)));
        assert!(!r.client_asked(ip("10.0.0.54"), "ab.example.net.", t(101)));
    }

    #[test]
    fn a_lookup_is_forwarded_only_for_what_a_client_asked_just_before() {
        let r = ResolverRoles::default();
        let res = ip("10.0.0.53");
        r.note_query(
            t(100),
            ip("10.0.0.12"),
            4000,
            res,
            1,
            "dnl-01.geo.kaspersky.com",
        );
        assert!(r.client_asked(res, "dnl-01.geo.kaspersky.com", t(101)));
        // A minimising resolver asks the names above first.
        assert!(r.client_asked(res, "kaspersky.com", t(101)));
        // Not before the client asked, nor long after, nor another name.
        assert!(!r.client_asked(res, "dnl-01.geo.kaspersky.com", t(99)));
        assert!(!r.client_asked(
            res,
            "dnl-01.geo.kaspersky.com",
            t(100 + FORWARD_WINDOW_SECS + 1)
        ));
        assert!(!r.client_asked(res, "ksn-file-geo.kaspersky-labs.com", t(101)));
        // Another host was not asked.
        assert!(!r.client_asked(ip("10.0.0.11"), "dnl-01.geo.kaspersky.com", t(101)));
        // A client asking again later keeps older lookups judged late covered.
        r.note_query(
            t(110),
            ip("10.0.0.12"),
            4001,
            res,
            2,
            "dnl-01.geo.kaspersky.com",
        );
        assert!(r.client_asked(res, "dnl-01.geo.kaspersky.com", t(105)));
    }

    #[test]
    fn shipped_list_parses_and_has_the_documented_fallbacks() {
        let e = EncryptedDns::embedded().expect("shipped list parses");
        for fallback in [
            "8.8.8.8",
            "1.1.1.1",
            "223.6.6.6",
            "9.9.9.9",
            "185.228.168.168",
        ] {
            assert!(
                e.service_at(fallback.parse().unwrap()).is_some(),
                "{fallback}"
            );
        }
        assert!(e.is_doh_name("dns.google"));
        assert!(!e.is_doh_name("www.google.com"));
    }
}
