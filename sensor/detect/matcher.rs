//! The compiled matcher: every rule form indexed so that a lookup costs the same with ten
//! rules or a million.
//!
//! Names: one table filed by label-boundary suffix (`a.b.c`, `b.c`, `c`) holds the exact
//! names, the suffixes, the globs (under their literal tail) and the exclusions, and every
//! shorter label-boundary suffix of each of those keys as an empty node. A lookup walks
//! the name's suffixes from the shortest (`c`) up and stops at the first one the table does
//! not hold: no longer suffix can be a key then, because each key's own shorter suffixes are
//! all in the table. So a name under no rule costs one or two hash probes (`www.example.org`:
//! `org`, then `example.org` misses), and a name under a rule one probe per label — the cost
//! grows with the labels of the name, not with the rules. Addresses: one hash table
//! per prefix length in use. Ports: a table per transport. Within one vendor the most
//! specific name match wins (exact > glob > longer suffix > shorter suffix), and a vendor's
//! exclusions silence its rules for the names they cover.

use super::rules::{Exclude, Rule};
use crate::decode::Proto;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::net::IpAddr;

pub type RuleIdx = u32;
type Hits = SmallVec<[RuleIdx; 2]>;
type Table<K> = HashMap<K, Hits, ahash::RandomState>;

/// A name rule that hit, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameHit {
    pub rule: RuleIdx,
    pub how: HowMatched,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HowMatched {
    /// A suffix of this many labels.
    Suffix(u8),
    /// A glob with this many literal labels.
    Glob(u8),
    Exact,
}

impl HowMatched {
    pub fn describe(self) -> &'static str {
        match self {
            HowMatched::Suffix(_) => "suffix",
            HowMatched::Glob(_) => "glob",
            HowMatched::Exact => "exact name",
        }
    }
}

#[derive(Debug, Clone)]
struct Glob {
    labels: Vec<Box<str>>,
    literal_labels: u8,
    rule: RuleIdx,
}

/// What is filed under one label-boundary suffix. Exact names (the common case in a large
/// pack) take only `exact`; the rest is boxed so that a pack of a million names stays small.
#[derive(Debug, Default)]
struct Node {
    exact: Hits,
    more: Option<Box<NodeMore>>,
}

#[derive(Debug, Default)]
struct NodeMore {
    exclude_exact: SmallVec<[u16; 1]>,
    suffix: Hits,
    exclude_suffix: SmallVec<[u16; 1]>,
    /// Globs whose literal tail is this key.
    globs: Vec<Glob>,
}

impl Node {
    fn more(&mut self) -> &mut NodeMore {
        self.more.get_or_insert_with(Box::default)
    }
}

/// The address tables while they are built: prefix length → network → rules.
#[derive(Default)]
struct CidrTables {
    v4: HashMap<u8, Table<u32>>,
    v6: HashMap<u8, Table<u128>>,
}

impl CidrTables {
    fn add(&mut self, net: &ipnet::IpNet, idx: RuleIdx) {
        match net {
            ipnet::IpNet::V4(n) => {
                file_network(&mut self.v4, n.prefix_len(), n.network().into(), idx)
            }
            ipnet::IpNet::V6(n) => {
                file_network(&mut self.v6, n.prefix_len(), n.network().into(), idx)
            }
        }
    }
}

fn file_network<K: std::hash::Hash + Eq>(
    by_len: &mut HashMap<u8, Table<K>>,
    prefix_len: u8,
    network: K,
    idx: RuleIdx,
) {
    by_len
        .entry(prefix_len)
        .or_default()
        .entry(network)
        .or_default()
        .push(idx);
}

/// The prefix lengths in use, longest first: a lookup reports the most specific network's
/// rules first.
fn longest_prefix_first<K>(by_len: HashMap<u8, Table<K>>) -> Vec<(u8, Table<K>)> {
    let mut v: Vec<(u8, Table<K>)> = by_len.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.0));
    v
}

/// Longest run of label-boundary suffixes kept on the stack during a lookup.
const INLINE_LABELS: usize = 16;

#[derive(Debug, Default)]
pub struct Matcher {
    /// Label-boundary suffix → what is filed under it (see the module doc).
    names: HashMap<Box<str>, Node, ahash::RandomState>,
    /// Prefix length → network → rules, for the lengths in use, longest first.
    v4: Vec<(u8, Table<u32>)>,
    v6: Vec<(u8, Table<u128>)>,
    tcp_ports: Table<u16>,
    udp_ports: Table<u16>,
    /// Few in practice; scanned.
    http_paths: Vec<(Box<str>, RuleIdx)>,
    user_agents: Vec<(Box<str>, RuleIdx)>,
    cert_issuers: Vec<(Box<str>, RuleIdx)>,
    cert_subjects: Vec<(Box<str>, RuleIdx)>,
    ja4: Table<Box<str>>,
    /// Vendor index of each rule (for exclusions and most-specific-wins).
    rule_vendor: Vec<u16>,
    vendors: Vec<String>,
}

impl Matcher {
    pub fn build(rules: &[Rule], excludes: &[Exclude]) -> Matcher {
        let mut m = Matcher::default();
        let mut cidrs = CidrTables::default();
        for (i, r) in rules.iter().enumerate() {
            let idx = i as RuleIdx;
            let vi = m.vendor_index(&r.vendor);
            m.rule_vendor.push(vi);
            m.add_name_forms(r, idx);
            for net in &r.cidrs {
                cidrs.add(net, idx);
            }
            m.add_ports(r, idx);
            m.add_content_forms(r, idx);
        }
        for e in excludes {
            m.add_exclude(e);
        }
        m.v4 = longest_prefix_first(cidrs.v4);
        m.v6 = longest_prefix_first(cidrs.v6);
        m
    }

    /// The index of a vendor, given one on its first sight.
    fn vendor_index(&mut self, vendor: &str) -> u16 {
        match self.vendors.iter().position(|x| x == vendor) {
            Some(i) => i as u16,
            None => {
                self.vendors.push(vendor.to_string());
                (self.vendors.len() - 1) as u16
            }
        }
    }

    /// Exact names, suffixes and globs, each filed under its key in the name table.
    fn add_name_forms(&mut self, r: &Rule, idx: RuleIdx) {
        for n in &r.names {
            self.node(n).exact.push(idx);
        }
        for s in &r.suffixes {
            self.node(s).more().suffix.push(idx);
        }
        for g in &r.globs {
            let labels: Vec<Box<str>> = g.split('.').map(Into::into).collect();
            let literal = labels
                .iter()
                .rev()
                .take_while(|l| !l.contains(['*', '?']))
                .count();
            let tail = labels[labels.len() - literal..].join(".");
            self.node(&tail).more().globs.push(Glob {
                literal_labels: (labels.iter().filter(|l| !l.contains(['*', '?'])).count()).min(255)
                    as u8,
                labels,
                rule: idx,
            });
        }
    }

    /// Every port of every range, each rule once per port.
    fn add_ports(&mut self, r: &Rule, idx: RuleIdx) {
        for (table, ranges) in [
            (&mut self.tcp_ports, &r.tcp_ports),
            (&mut self.udp_ports, &r.udp_ports),
        ] {
            for &(lo, hi) in ranges {
                for p in lo..=hi {
                    let hits = table.entry(p).or_default();
                    if !hits.contains(&idx) {
                        hits.push(idx);
                    }
                }
            }
        }
    }

    /// HTTP paths, user agents, certificate names (scanned) and JA4s (looked up).
    fn add_content_forms(&mut self, r: &Rule, idx: RuleIdx) {
        for p in &r.http_paths {
            self.http_paths.push((p.as_str().into(), idx));
        }
        for u in &r.user_agents {
            self.user_agents.push((u.as_str().into(), idx));
        }
        for c in &r.cert_issuers {
            self.cert_issuers.push((c.as_str().into(), idx));
        }
        for c in &r.cert_subjects {
            self.cert_subjects.push((c.as_str().into(), idx));
        }
        for j in &r.ja4 {
            self.ja4.entry(j.as_str().into()).or_default().push(idx);
        }
    }

    /// An exclusion is filed by vendor: it silences all of that vendor's rules.
    fn add_exclude(&mut self, e: &Exclude) {
        let vi = self.vendor_index(&e.vendor);
        for n in &e.names {
            self.node(n).more().exclude_exact.push(vi);
        }
        for s in &e.suffixes {
            self.node(s).more().exclude_suffix.push(vi);
        }
    }

    /// The node of `key`, made (with every shorter label-boundary suffix of `key` as an empty
    /// node, which the lookup's early stop relies on) if it is new.
    fn node(&mut self, key: &str) -> &mut Node {
        if !self.names.contains_key(key) {
            // Longest first: once a suffix is present, all of its own suffixes are too.
            for (i, _) in key.match_indices('.') {
                let tail = &key[i + 1..];
                if self.names.contains_key(tail) {
                    break;
                }
                self.names.insert(tail.into(), Node::default());
            }
        }
        self.names.entry(key.into()).or_default()
    }

    /// Rules hit by a normalised name: for each vendor, only its most specific matches.
    pub fn match_name(&self, name: &str) -> SmallVec<[NameHit; 2]> {
        // Shortest first, up to the first suffix that is not in the table (module doc): each
        // suffix starts after the last dot before the previous one, found from the end, so a
        // name that misses early is not scanned whole (most names miss at their second label).
        let mut found: SmallVec<[(usize, usize, &Node); INLINE_LABELS]> = SmallVec::new();
        let mut before = name.len();
        for labels in 1.. {
            // A byte loop: `str::rfind`'s searcher cost more than the few bytes it passes.
            let head = name.as_bytes().get(..before).unwrap_or_default();
            let start = head
                .iter()
                .rposition(|&b| b == b'.')
                .map_or(0, |dot| dot + 1);
            // After a dot, so on a character boundary: `get` only spares a panic path.
            match name.get(start..).and_then(|suffix| self.names.get(suffix)) {
                Some(node) => found.push((start, labels, node)),
                None => break,
            }
            if start == 0 {
                break;
            }
            before = start - 1;
        }
        // Globs match names of their own number of labels (counted only when one is filed).
        let total_labels = std::cell::OnceCell::new();
        let total_labels =
            || *total_labels.get_or_init(|| name.bytes().filter(|&b| b == b'.').count() + 1);
        if found.is_empty() {
            return SmallVec::new();
        }
        let mut all: SmallVec<[NameHit; 4]> = SmallVec::new();
        let mut excluded: SmallVec<[u16; 2]> = SmallVec::new();
        // The whole name, when it was reached: exact names and exact exclusions.
        if let Some(&(0, _, node)) = found.last() {
            if let Some(more) = &node.more {
                excluded.extend_from_slice(&more.exclude_exact);
            }
            all.extend(node.exact.iter().map(|&rule| NameHit {
                rule,
                how: HowMatched::Exact,
            }));
        }
        // Longest suffix first, as the rules' order of specificity reads.
        for &(_, labels, node) in found.iter().rev() {
            let Some(more) = &node.more else {
                continue;
            };
            excluded.extend_from_slice(&more.exclude_suffix);
            let how = HowMatched::Suffix(labels.min(255) as u8);
            all.extend(more.suffix.iter().map(|&rule| NameHit { rule, how }));
            for g in more
                .globs
                .iter()
                .filter(|g| g.labels.len() == total_labels())
            {
                if glob_matches(&g.labels, name) {
                    all.push(NameHit {
                        rule: g.rule,
                        how: HowMatched::Glob(g.literal_labels),
                    });
                }
            }
        }
        if all.is_empty() {
            return SmallVec::new();
        }
        // Most specific per vendor; excluded vendors drop out.
        let mut out: SmallVec<[NameHit; 2]> = SmallVec::new();
        for hit in &all {
            let vendor = self.rule_vendor[hit.rule as usize];
            if excluded.contains(&vendor) {
                continue;
            }
            let best = all
                .iter()
                .filter(|h| self.rule_vendor[h.rule as usize] == vendor)
                .map(|h| h.how)
                .max();
            if Some(hit.how) == best && !out.iter().any(|h| h.rule == hit.rule) {
                out.push(*hit);
            }
        }
        out
    }

    pub fn match_ip(&self, ip: IpAddr) -> Hits {
        let mut out = Hits::new();
        match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                for (len, table) in &self.v4 {
                    let mask = if *len == 0 {
                        0
                    } else {
                        u32::MAX << (32 - u32::from(*len))
                    };
                    if let Some(r) = table.get(&(a & mask)) {
                        out.extend_from_slice(r);
                    }
                }
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                for (len, table) in &self.v6 {
                    let mask = if *len == 0 {
                        0
                    } else {
                        u128::MAX << (128 - u32::from(*len))
                    };
                    if let Some(r) = table.get(&(a & mask)) {
                        out.extend_from_slice(r);
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    pub fn match_port(&self, proto: Proto, port: u16) -> Hits {
        let table = match proto {
            Proto::Tcp => &self.tcp_ports,
            Proto::Udp => &self.udp_ports,
        };
        table.get(&port).cloned().unwrap_or_default()
    }

    /// Rules whose HTTP path prefix starts the request target's path.
    pub fn match_http_path(&self, target: &str) -> Hits {
        let path = path_of(target);
        self.http_paths
            .iter()
            .filter(|(p, _)| path.starts_with(&**p))
            .map(|(_, r)| *r)
            .collect()
    }

    /// Rules whose User-Agent substring (lower case) occurs in `ua`.
    pub fn match_user_agent(&self, ua: &str) -> Hits {
        if self.user_agents.is_empty() {
            return Hits::new();
        }
        let lower = ua.to_ascii_lowercase();
        self.user_agents
            .iter()
            .filter(|(s, _)| lower.contains(&**s))
            .map(|(_, r)| *r)
            .collect()
    }
}

impl Matcher {
    /// Rules whose issuer or subject substring (lower case) occurs in the DN; each hit says
    /// which DN it matched.
    pub fn match_cert(&self, issuer: &str, subject: &str) -> SmallVec<[(RuleIdx, bool); 2]> {
        let (issuer, subject) = (issuer.to_ascii_lowercase(), subject.to_ascii_lowercase());
        let mut out = SmallVec::new();
        for (s, r) in &self.cert_issuers {
            if issuer.contains(&**s) {
                out.push((*r, true));
            }
        }
        for (s, r) in &self.cert_subjects {
            if subject.contains(&**s) {
                out.push((*r, false));
            }
        }
        out
    }

    pub fn match_ja4(&self, fingerprint: &str) -> Hits {
        self.ja4.get(fingerprint).cloned().unwrap_or_default()
    }
}

/// The path of a request target (origin form, or the path of an absolute-form URL).
fn path_of(target: &str) -> &str {
    if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        return rest.find('/').map_or("/", |i| &rest[i..]);
    }
    target
}

fn glob_matches(pattern: &[Box<str>], name: &str) -> bool {
    pattern
        .iter()
        .zip(name.split('.'))
        .all(|(p, l)| label_glob(p.as_bytes(), l.as_bytes()))
}

/// Wildcard match inside one label: `*` any run, `?` one character.
pub fn label_glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::super::rules::load_sources;
    use super::*;

    fn matcher() -> (Matcher, Vec<Rule>) {
        let text = r#"
[pack]
vendor = "kaspersky"
name = "Kaspersky"
enabled_by_default = true
legal_basis = ["test"]
description = "test pack"
[[rule]]
id = "kaspersky.update.upd"
category = "update"
severity = "high"
confidence = "high"
description = "d"
sources = [{ document = "x", retrieved = "2026-11-01" }]
suffixes = ["upd.kaspersky.com"]
globs = ["dnl-*.geo.kaspersky.com", "s??.upd.kaspersky.com"]
[[rule]]
id = "kaspersky.web-portal.site"
category = "web-portal"
severity = "low"
confidence = "high"
description = "d"
sources = [{ document = "x", retrieved = "2026-11-01" }]
suffixes = ["kaspersky.com"]
cidrs = ["77.74.176.0/21"]
[[exclude]]
id = "kaspersky.exclude.tip"
description = "d"
names = ["opentip.kaspersky.com"]
"#;
        let l = load_sources(vec![("k.toml".into(), text.into())]).expect("valid");
        (Matcher::build(&l.rules, &l.excludes), l.rules)
    }

    fn ids(m: &Matcher, rules: &[Rule], name: &str) -> Vec<String> {
        m.match_name(name)
            .iter()
            .map(|h| rules[h.rule as usize].id.clone())
            .collect()
    }

    #[test]
    fn suffixes_only_on_label_boundaries() {
        let (m, r) = matcher();
        assert_eq!(
            ids(&m, &r, "kaspersky.com"),
            vec!["kaspersky.web-portal.site"]
        );
        assert_eq!(
            ids(&m, &r, "www.kaspersky.com"),
            vec!["kaspersky.web-portal.site"]
        );
        assert!(ids(&m, &r, "notkaspersky.com").is_empty());
        assert!(ids(&m, &r, "kaspersky.com.evil.example").is_empty());
    }

    /// Empty labels (two dots, a leading or trailing dot) are labels like any other: the walk
    /// from the last dot finds every label-boundary suffix, the empty ones included, and a
    /// glob counts them.
    #[test]
    fn empty_labels_are_label_boundaries_too() {
        let (m, r) = matcher();
        let web = vec!["kaspersky.web-portal.site"];
        assert_eq!(ids(&m, &r, "a..kaspersky.com"), web);
        assert_eq!(ids(&m, &r, ".kaspersky.com"), web);
        assert!(ids(&m, &r, "kaspersky.com.").is_empty());
        assert!(ids(&m, &r, "").is_empty());
        assert!(ids(&m, &r, ".").is_empty());
        assert!(ids(&m, &r, "com").is_empty());
        // `dnl-*.geo.kaspersky.com` has four labels: with an empty fifth it is only the suffix.
        assert_eq!(ids(&m, &r, ".dnl-01.geo.kaspersky.com"), web);
        assert_eq!(
            ids(&m, &r, "dnl-.geo.kaspersky.com"),
            vec!["kaspersky.update.upd"]
        );
    }

    #[test]
    fn most_specific_wins_within_a_vendor() {
        let (m, r) = matcher();
        assert_eq!(
            ids(&m, &r, "s05.upd.kaspersky.com"),
            vec!["kaspersky.update.upd"]
        );
        assert_eq!(
            ids(&m, &r, "dnl-01.geo.kaspersky.com"),
            vec!["kaspersky.update.upd"]
        );
        assert_eq!(
            ids(&m, &r, "x.geo.kaspersky.com"),
            vec!["kaspersky.web-portal.site"]
        );
        assert_eq!(
            ids(&m, &r, "dnl-01.a.geo.kaspersky.com"),
            vec!["kaspersky.web-portal.site"]
        );
    }

    #[test]
    fn exclusions_silence_the_vendor() {
        let (m, r) = matcher();
        assert!(ids(&m, &r, "opentip.kaspersky.com").is_empty());
    }

    #[test]
    fn addresses_by_prefix() {
        let (m, _) = matcher();
        assert_eq!(m.match_ip("77.74.183.255".parse().unwrap()).len(), 1);
        assert!(m.match_ip("77.74.184.0".parse().unwrap()).is_empty());
    }

    #[test]
    fn label_globs() {
        assert!(label_glob(b"s??", b"s05"));
        assert!(!label_glob(b"s??", b"s5"));
        assert!(label_glob(b"dnl-*", b"dnl-"));
        assert!(label_glob(b"*-geo", b"ksn-file-geo"));
        assert!(!label_glob(b"*-geo", b"ksn-file-ge"));
        assert!(label_glob(b"a*b*c", b"aXbYbZc"));
    }
}
