//! Suppression and allow-lists: findings the organisation has decided not to be alerted
//! about (the security team's own analysis network, a vendor's public site in a research
//! subnet, …). A suppressed finding still lands in the inventory, flagged with the
//! suppression's reason, but raises no alert. Each suppression names why and may expire.

use crate::detect::rules::Rule;
use crate::detect::Finding;
use crate::time::Timestamp;
use ipnet::IpNet;

/// One validated suppression. Every given field must match (AND); within a field, any
/// entry may (OR). Fields left out match everything.
#[derive(Debug, Clone)]
pub struct Suppression {
    pub reason: String,
    /// Findings at or after this time are no longer suppressed.
    pub expires: Option<Timestamp>,
    pub hosts: Vec<IpNet>,
    pub vendors: Vec<String>,
    pub categories: Vec<String>,
    pub rules: Vec<String>,
    pub line: usize,
}

impl Suppression {
    pub fn matches(&self, f: &Finding, rule: &Rule) -> bool {
        let any = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        self.expires.is_none_or(|e| f.ts < e)
            && (self.hosts.is_empty() || self.hosts.iter().any(|n| n.contains(&f.host)))
            && any(&self.vendors, &rule.vendor)
            && any(&self.categories, &rule.category)
            && any(&self.rules, &rule.id)
    }
}

/// The suppressions in force.
#[derive(Debug, Clone, Default)]
pub struct Suppressions(pub Vec<Suppression>);

impl Suppressions {
    /// The first suppression that covers this finding, if any.
    pub fn covering(&self, f: &Finding, rule: &Rule) -> Option<&Suppression> {
        self.0.iter().find(|s| s.matches(f, rule))
    }
}
