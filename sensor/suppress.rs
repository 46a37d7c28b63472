//! Suppression and allow-lists: findings the organisation has decided not to be alerted
//! about (the security team's own analysis network, a vendor's public site in a research
//! subnet, …). A suppressed finding still lands in the inventory, flagged with the
//! suppression's reason, but raises no alert. Each suppression names why and may expire.
//!
//! The vendors, categories and rule ids a suppression names are held against every pack of
//! the rule source (`Known`): a typo would otherwise suppress nothing, silently.

use crate::detect::rules::{Loaded, Rule};
use crate::detect::Finding;
use crate::time::Timestamp;
use ipnet::IpNet;
use std::collections::BTreeSet;

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
    /// Where each of `vendors`, `categories` and `rules` is written, to point at a typo.
    pub item_lines: ItemLines,
}

/// The line of each item of a suppression's name lists, in the lists' order (a list may
/// span lines, one item each).
#[derive(Debug, Clone, Default)]
pub struct ItemLines {
    pub vendors: Vec<usize>,
    pub categories: Vec<usize>,
    pub rules: Vec<usize>,
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

    /// Each vendor, category or rule id this suppression names that no pack of the rule
    /// source has, as (line, problem in the file's terms).
    pub fn unknown_names(&self, known: &Known) -> Vec<(usize, String)> {
        let fields = [
            (
                "vendors",
                "vendor",
                &self.vendors,
                &self.item_lines.vendors,
                &known.vendors,
            ),
            (
                "categories",
                "category",
                &self.categories,
                &self.item_lines.categories,
                &known.categories,
            ),
            (
                "rules",
                "rule id",
                &self.rules,
                &self.item_lines.rules,
                &known.rules,
            ),
        ];
        let mut out = Vec::new();
        for (key, what, names, lines, valid) in fields {
            for (i, name) in names.iter().enumerate() {
                if valid.contains(name) {
                    continue;
                }
                let line = lines.get(i).copied().unwrap_or(self.line);
                out.push((line, known.unknown(key, what, name, valid)));
            }
        }
        out
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

    /// Every name of every suppression that no pack of the rule source has (see
    /// `Suppression::unknown_names`).
    pub fn unknown_names(&self, known: &Known) -> Vec<(usize, String)> {
        self.0.iter().flat_map(|s| s.unknown_names(known)).collect()
    }
}

/// A list of valid names is shown with the problem up to this many; a longer one is named
/// by the command that shows it.
const LIST_AT_MOST: usize = 16;

/// What a suppression may name: every vendor, category and rule id of the rule source's
/// packs, whether `--vendors` selects them or not (a site keeps the suppressions of a vendor
/// it does not watch today), with the learned-fingerprint rule each pack has.
#[derive(Debug, Clone, Default)]
pub struct Known {
    vendors: BTreeSet<String>,
    categories: BTreeSet<String>,
    rules: BTreeSet<String>,
    /// Where the packs were read from, as the user named it.
    source: String,
    /// The command that lists the vendors and categories of this source.
    list_command: String,
}

impl Known {
    /// `source`: where `loaded` was read from; `list_command`: the command that lists it.
    pub fn of(loaded: &Loaded, source: String, list_command: String) -> Known {
        let mut known = Known {
            source,
            list_command,
            ..Known::default()
        };
        for pack in &loaded.packs {
            known.vendors.insert(pack.vendor.clone());
            let learned = crate::detect::suspected_rule(pack);
            known.categories.insert(learned.category);
            known.rules.insert(learned.id);
        }
        for rule in &loaded.rules {
            known.categories.insert(rule.category.clone());
            known.rules.insert(rule.id.clone());
        }
        known
    }

    /// `suppress: vendors: "kasperksy" is not a vendor of …; did you mean "kaspersky"? …`
    fn unknown(&self, key: &str, what: &str, name: &str, valid: &BTreeSet<String>) -> String {
        let mut msg = format!(
            "suppress: {key}: {name:?} is not a {what} of {}, so it would suppress nothing",
            self.source
        );
        if let Some(close) = closest(name, valid) {
            msg.push_str(&format!("; did you mean {close:?}?"));
        }
        if key == "rules" {
            msg.push_str(" (a rule id is the `id` of a [[rule]] in the packs)");
        } else if valid.len() <= LIST_AT_MOST {
            let all: Vec<&str> = valid.iter().map(String::as_str).collect();
            msg.push_str(&format!(" ({key}: {})", all.join(", ")));
        } else {
            msg.push_str(&format!(" (`{}` shows them)", self.list_command));
        }
        msg
    }
}

/// The valid name closest to `name` when it is close enough to be a typo of it: at most one
/// edit (a letter added, dropped, changed, or two swapped) per three letters and two in all
/// (more, and a long rule id would be "close" to any other of its vendor), case ignored.
fn closest<'a>(name: &str, valid: &'a BTreeSet<String>) -> Option<&'a str> {
    let name = name.to_lowercase();
    let allowed = (name.chars().count() / 3).clamp(1, 2);
    valid
        .iter()
        .map(|v| (edit_distance(&name, &v.to_lowercase()), v))
        .filter(|(d, _)| *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v.as_str())
}

/// Edits from `a` to `b`, a swap of two neighbours counting one (the optimal string
/// alignment distance): `kasperksy` is one edit from `kaspersky`.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Three rows: two back (for swaps), the previous, the current.
    let mut two_back = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(two_back[j - 2] + 1);
            }
        }
        std::mem::swap(&mut two_back, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedded() -> (Loaded, Known) {
        let loaded = crate::detect::rules::load_embedded().expect("embedded packs load");
        let known = Known::of(
            &loaded,
            "the embedded rule packs".into(),
            "rules list".into(),
        );
        (loaded, known)
    }

    #[test]
    fn a_swap_of_two_letters_is_one_edit() {
        assert_eq!(edit_distance("kasperksy", "kaspersky"), 1);
        assert_eq!(edit_distance("updates", "update"), 1);
        assert_eq!(edit_distance("", "ksn"), 3);
        assert_eq!(edit_distance("ksn", "ksn"), 0);
        assert_eq!(edit_distance("dahua", "huawei"), 5);
    }

    #[test]
    fn only_a_close_name_is_suggested() {
        let (_, known) = embedded();
        assert_eq!(closest("Kaspersky", &known.vendors), Some("kaspersky"));
        assert_eq!(closest("hikvison", &known.vendors), Some("hikvision"));
        assert_eq!(closest("updaet", &known.categories), Some("update"));
        assert_eq!(closest("sophos", &known.vendors), None);
        assert_eq!(closest("xy", &known.categories), None);
        // Four edits in a long id are another rule, not a typo.
        assert_eq!(closest("kaspersky.update.nope", &known.rules), None);
        assert_eq!(
            closest("kaspersky.update.upd-server", &known.rules),
            Some("kaspersky.update.upd-servers")
        );
    }

    #[test]
    fn every_rule_of_every_pack_can_be_named_with_its_learned_rule() {
        let (loaded, known) = embedded();
        let all: Vec<String> = loaded.packs.iter().map(|p| p.vendor.clone()).collect();
        let set = crate::detect::RuleSet::compile(loaded, Some(&all)).expect("compiles");
        for rule in set.rules.iter().chain(&set.learned) {
            assert!(known.vendors.contains(&rule.vendor), "{}", rule.vendor);
            assert!(
                known.categories.contains(&rule.category),
                "{}",
                rule.category
            );
            assert!(known.rules.contains(&rule.id), "{}", rule.id);
        }
    }

    #[test]
    fn each_unknown_name_is_reported_at_its_own_line() {
        let (_, known) = embedded();
        let s = Suppression {
            reason: "lab".into(),
            expires: None,
            hosts: Vec::new(),
            vendors: vec!["kaspersky".into(), "kasperksy".into()],
            categories: vec!["updates".into()],
            rules: vec!["kaspersky.update.nope".into()],
            line: 3,
            item_lines: ItemLines {
                vendors: vec![4, 5],
                categories: vec![6],
                rules: Vec::new(),
            },
        };
        let got = s.unknown_names(&known);
        let lines: Vec<usize> = got.iter().map(|(l, _)| *l).collect();
        // A rule id without its line is reported at the entry's.
        assert_eq!(lines, [5, 6, 3], "{got:?}");
        assert_eq!(
            got[0].1,
            "suppress: vendors: \"kasperksy\" is not a vendor of the embedded rule packs, so it \
             would suppress nothing; did you mean \"kaspersky\"? (vendors: china-carriers, dahua, \
             hikvision, huawei, kaspersky, zte)"
        );
        assert!(got[1].1.contains("did you mean \"update\"?"), "{got:?}");
        assert!(!got[2].1.contains("did you mean"), "{got:?}");
    }
}
