//! `vendorwatch rules`: check the rule packs, list them, and show which rules a name, an
//! address or a port hits and why.

use super::exit;
use crate::config::{self, rule_source};
use crate::detect::RuleSet;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Which rules: `--rules` and `--vendors` (as `replay` and `live` take them).
#[derive(Args, Debug, Clone)]
pub struct RuleArgs {
    /// Rule pack file or directory of *.toml packs [default: the packs embedded in the binary].
    #[arg(long, value_name = "PATH")]
    pub rules: Option<PathBuf>,
    /// Vendors whose packs are active, comma-separated [default: the packs enabled by default: kaspersky].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub vendors: Option<Vec<String>>,
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Validate rule packs (all problems at once, with file, line and rule id); exit 1 on any.
    Check {
        /// Rule pack file or directory [default: the embedded packs].
        path: Option<PathBuf>,
    },
    /// List vendors, categories and rule counts.
    List {
        #[command(flatten)]
        rules: RuleArgs,
    },
    /// Show every rule a name, address or port hits, and why (exit 0 on a hit, 1 on none, 2
    /// on a value that is no name, address or port, such as 99999 or 13000/xyz).
    Match {
        /// A DNS name, an IP address, or a port (443, 13000/tcp, 15000/udp).
        value: String,
        #[command(flatten)]
        rules: RuleArgs,
    },
}

/// Runs `rules …`; returns the exit code.
pub fn run(cmd: RulesCommand) -> i32 {
    match cmd {
        RulesCommand::Check { path } => check(path),
        RulesCommand::List { rules } => list(&rules),
        RulesCommand::Match { value, rules } => explain(&value, &rules),
    }
}

fn check(path: Option<PathBuf>) -> i32 {
    let source = rule_source(&path);
    match source.load() {
        Ok(l) => {
            outln!(
                "{}: {} pack(s), {} rule(s), {} exclusion(s): OK",
                source.describe(),
                l.packs.len(),
                l.rules.len(),
                l.excludes.len()
            );
            exit::OK
        }
        Err(errs) => {
            for e in &errs {
                eprintln!("{e}");
            }
            eprintln!("{} problem(s) in {}", errs.len(), source.describe());
            exit::PARTIAL
        }
    }
}

fn list(rules: &RuleArgs) -> i32 {
    // Loaded with `--vendors` as `replay` loads them, so that a vendor no pack has is refused
    // as there (it was listed as every pack inactive, exit 0).
    let set = match config::load_rules(&rule_source(&rules.rules), rules.vendors.as_deref()) {
        Ok(_) => match rule_source(&rules.rules).load() {
            Ok(all) => all,
            Err(_) => return exit::UNUSABLE,
        },
        Err(msg) => {
            eprintln!("vendorwatch: {msg}");
            return exit::UNUSABLE;
        }
    };
    let active: Vec<String> = match &rules.vendors {
        Some(v) => v.clone(),
        None => set
            .packs
            .iter()
            .filter(|p| p.enabled_by_default)
            .map(|p| p.vendor.clone())
            .collect(),
    };
    outln!(
        "{:<16} {:<8} {:<16} {:>5}  LEGAL BASIS",
        "VENDOR",
        "ACTIVE",
        "CATEGORY",
        "RULES"
    );
    for p in &set.packs {
        let mut cats: std::collections::BTreeMap<&str, usize> = Default::default();
        for r in set.rules.iter().filter(|r| r.vendor == p.vendor) {
            *cats.entry(r.category.as_str()).or_default() += 1;
        }
        let on = if active.contains(&p.vendor) {
            "yes"
        } else {
            "no"
        };
        let mut first = true;
        for (cat, n) in &cats {
            let (v, a, lb) = if first {
                (p.vendor.as_str(), on, p.legal_basis.join("; "))
            } else {
                ("", "", String::new())
            };
            outln!("{v:<16} {a:<8} {cat:<16} {n:>5}  {lb}");
            first = false;
        }
    }
    exit::OK
}

fn explain(value: &str, rules: &RuleArgs) -> i32 {
    // Matching asks about every pack, and says which are not active: a hit in a pack
    // that `--vendors` (or its default) leaves off would raise nothing in a replay.
    let source = rule_source(&rules.rules);
    let every: Option<Vec<String>> = source
        .load()
        .ok()
        .map(|l| l.packs.iter().map(|p| p.vendor.clone()).collect());
    let (set, active) = match (
        config::load_rules(&source, every.as_deref()),
        config::load_rules(&source, rules.vendors.as_deref()),
    ) {
        (Ok(all), Ok(active)) => (all, active.vendors()),
        (Err(msg), _) | (_, Err(msg)) => {
            eprintln!("vendorwatch: {msg}");
            return exit::UNUSABLE;
        }
    };
    if let Some(problem) = not_a_query(value) {
        eprintln!("vendorwatch: rules match {value:?}: {problem}");
        return exit::UNUSABLE;
    }
    let hits = explain_match(&set, value);
    if hits.is_empty() {
        outln!("no rule matches {value:?}");
        return exit::PARTIAL;
    }
    let mut any_active = false;
    for (vendor, line) in &hits {
        if active.contains(vendor) {
            any_active = true;
            outln!("{line}");
        } else {
            outln!("{line}  [pack {vendor} inactive: enable it with --vendors {vendor}]");
        }
    }
    if any_active {
        exit::OK
    } else {
        outln!(
            "{value:?} hits only inactive packs (active: {}); replay and live would not match it",
            active.join(", ")
        );
        exit::PARTIAL
    }
}

/// Why `value` is no name, address or port `rules match` can look up, if it is none: a
/// mistyped port or address would otherwise be looked up as a name and say "no rule matches"
/// (exit 1), which a script cannot tell from a real miss.
fn not_a_query(value: &str) -> Option<String> {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if value.trim().is_empty() {
        return Some("is empty: give a name, an address or a port".into());
    }
    if value.contains(char::is_whitespace) {
        return Some("holds a space: a name, an address or a port has none".into());
    }
    if let Some((port, proto)) = value.split_once('/') {
        if !matches!(proto, "tcp" | "udp") {
            return Some(format!(
                "{proto:?} is not a protocol: give a port as 443, 13000/tcp or 15000/udp"
            ));
        }
        if port.parse::<u16>().is_err() {
            return Some(format!("{port:?} is not a port (0 to 65535)"));
        }
        return None;
    }
    if digits(value) && value.parse::<u16>().is_err() {
        return Some("not a port (0 to 65535)".into());
    }
    let parts: Vec<&str> = value.split('.').collect();
    if parts.len() == 4
        && parts.iter().all(|p| digits(p))
        && value.parse::<std::net::IpAddr>().is_err()
    {
        return Some("not an IPv4 address (each part 0 to 255)".into());
    }
    None
}

/// Every rule `value` hits, one line each (with the rule's vendor): rule id, vendor/category,
/// severity, why.
pub fn explain_match(set: &RuleSet, value: &str) -> Vec<(String, String)> {
    use crate::decode::Proto;
    let line = |idx: u32, why: String| {
        let r = set.rule(idx);
        let text = format!(
            "{}  {}/{}  severity={} confidence={}  {}  ({}:{})",
            r.id,
            r.vendor,
            r.category,
            r.severity.as_str(),
            r.confidence.as_str(),
            why,
            r.file,
            r.line
        );
        (r.vendor.clone(), text)
    };
    if let Ok(ip) = value.parse::<std::net::IpAddr>() {
        return set
            .matcher
            .match_ip(ip)
            .into_iter()
            .map(|i| line(i, format!("address {ip} is in a listed range")))
            .collect();
    }
    let (port, protos): (Option<u16>, Vec<Proto>) = match value.split_once('/') {
        Some((p, "tcp")) => (p.parse().ok(), vec![Proto::Tcp]),
        Some((p, "udp")) => (p.parse().ok(), vec![Proto::Udp]),
        _ => (value.parse().ok(), vec![Proto::Tcp, Proto::Udp]),
    };
    if let Some(port) = port {
        let mut out = Vec::new();
        for proto in protos {
            for i in set.matcher.match_port(proto, port) {
                let need = set.rule(i).min_distinct_ports;
                let cond = if need > 1 {
                    format!(" (alerts only with {need} distinct listed ports between the same two hosts)")
                } else {
                    String::new()
                };
                out.push(line(
                    i,
                    format!("port {port}/{proto:?}{cond}").to_lowercase(),
                ));
            }
        }
        return out;
    }
    let name = crate::extract::names::normalize(value.as_bytes()).unwrap_or_default();
    set.matcher
        .match_name(&name)
        .into_iter()
        .map(|h| {
            line(
                h.rule,
                format!("name {name} matched by {}", h.how.describe()),
            )
        })
        .collect()
}
