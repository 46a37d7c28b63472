//! Validated configuration: what the program runs on, built from the raw command line
//! (`cli`) once, with every problem reported in words a user can act on.

use crate::detect::rules::{self, Loaded, RuleError};
use crate::detect::{DetectLimits, HomeNet, RuleSet};
use crate::extract::ExtractorLimits;
use crate::suppress::{Suppression, Suppressions};
use crate::time::Timestamp;
use serde::Deserialize;
use std::path::PathBuf;

/// RFC 1918, carrier-grade NAT, IPv6 unique-local and link-local.
pub const DEFAULT_HOME_NET: &str =
    "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7,fe80::/10";

pub fn parse_home_net(list: &str) -> Result<HomeNet, String> {
    let mut nets = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let net = part
            .parse::<ipnet::IpNet>()
            .or_else(|_| part.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| {
                format!("--home-net: {part:?} is not a CIDR such as 10.0.0.0/8 or fd00::/8")
            })?;
        nets.push(net.trunc());
    }
    if nets.is_empty() {
        return Err("--home-net is empty: give at least one CIDR".into());
    }
    Ok(HomeNet(nets))
}

/// Where the rules come from.
#[derive(Debug, Clone)]
pub enum RuleSource {
    Embedded,
    Path(PathBuf),
}

impl RuleSource {
    pub fn load(&self) -> Result<Loaded, Vec<RuleError>> {
        match self {
            RuleSource::Embedded => rules::load_embedded(),
            RuleSource::Path(p) => rules::load_path(p),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            RuleSource::Embedded => "the embedded rule packs".into(),
            RuleSource::Path(p) => p.display().to_string(),
        }
    }
}

/// Loads and compiles rules, or explains why not.
pub fn load_rules(source: &RuleSource, vendors: Option<&[String]>) -> Result<RuleSet, String> {
    let loaded = source.load().map_err(|errs| {
        let mut msg = format!(
            "the rules in {} have {} problem(s):\n",
            source.describe(),
            errs.len()
        );
        for e in &errs {
            msg.push_str(&format!("  {e}\n"));
        }
        msg.push_str("fix them and check again with `vendorwatch rules check`");
        msg
    })?;
    RuleSet::compile(loaded, vendors)
}

/// Default number of workers: one core is left to the reader.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// What `replay` and `live` run on, validated.
pub struct RunConfig {
    pub rules: std::sync::Arc<RuleSet>,
    pub home_net: HomeNet,
    pub workers: usize,
    pub alerts: Option<PathBuf>,
    pub report: Option<PathBuf>,
    pub events: Option<PathBuf>,
    pub extract_limits: ExtractorLimits,
    pub detect_limits: DetectLimits,
    pub quiet: bool,
    pub encrypted_dns: crate::detect::resolvers::EncryptedDns,
    /// Where to serve /metrics, /healthz and /api/hosts (`None`: not at all).
    pub metrics_addr: Option<String>,
    /// The persistent inventory (`None`: `--state none`).
    pub state: Option<std::path::PathBuf>,
    pub realert_secs: Option<u64>,
    /// Hosts the inventory holds; findings for new hosts beyond are shed and counted.
    pub max_hosts: usize,
    /// Findings that raise no alert (still recorded, flagged).
    pub suppressions: Suppressions,
    /// Where alerts also go, over syslog.
    pub syslog: Option<crate::output::syslog::SyslogConfig>,
}

/// The configuration file (`--config PATH`, checked by `vendorwatch config check`). Every key
/// is optional; options given on the command line win over the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Rule pack file or directory (default: the embedded packs).
    pub rules: Option<std::path::PathBuf>,
    /// Vendors whose packs are active.
    pub vendors: Option<Vec<String>>,
    /// Internal networks whose hosts are reported.
    pub home_net: Option<Vec<String>>,
    /// Hosts the inventory holds (`--max-hosts`).
    pub max_hosts: Option<usize>,
    #[serde(default)]
    pub suppress: Vec<toml::Spanned<SuppressSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressSpec {
    pub reason: String,
    /// YYYY-MM-DD (UTC midnight) or an RFC 3339 time.
    pub expires: Option<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub vendors: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub rules: Vec<String>,
}

/// A configuration file, validated.
#[derive(Debug, Default)]
pub struct LoadedConfig {
    pub rules: Option<std::path::PathBuf>,
    pub vendors: Option<Vec<String>>,
    pub home_net: Option<String>,
    pub max_hosts: Option<usize>,
    pub suppressions: Suppressions,
}

fn parse_expiry(text: &str) -> Option<Timestamp> {
    use ::time::format_description::well_known::Rfc3339;
    if let Ok(t) = ::time::OffsetDateTime::parse(text, &Rfc3339) {
        return Some(Timestamp(i64::try_from(t.unix_timestamp_nanos()).ok()?));
    }
    let d = ::time::Date::parse(
        text,
        ::time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()?;
    Some(Timestamp::from_parts(
        d.midnight().assume_utc().unix_timestamp(),
        0,
    ))
}

/// Reads and validates a configuration file; every problem is reported as `file:line: …`.
pub fn load_config(path: &std::path::Path) -> Result<LoadedConfig, Vec<String>> {
    let name = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| vec![format!("{name}: cannot read: {e}")])?;
    let line_at = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let file: FileConfig = toml::from_str(&text).map_err(|e| {
        let line = e.span().map_or(0, |s| line_at(s.start));
        vec![format!("{name}:{line}: {}", e.message().trim())]
    })?;
    let mut errors = Vec::new();
    let home_net = file.home_net.map(|nets| nets.join(","));
    if let Some(h) = &home_net {
        if let Err(e) = parse_home_net(h) {
            errors.push(format!("{name}: home_net: {e}"));
        }
    }
    if file.max_hosts == Some(0) {
        errors.push(format!("{name}: max_hosts: must be at least 1"));
    }
    let mut list = Vec::new();
    for spanned in file.suppress {
        let line = line_at(spanned.span().start);
        let spec = spanned.into_inner();
        let mut problem = |p: String| errors.push(format!("{name}:{line}: suppress: {p}"));
        if spec.reason.trim().is_empty() {
            problem("every suppression needs a reason (auditors will ask)".into());
        }
        let expires = match &spec.expires {
            Some(e) => match parse_expiry(e) {
                Some(t) => Some(t),
                None => {
                    problem(format!(
                        "expires {e:?} is not YYYY-MM-DD or an RFC 3339 time"
                    ));
                    None
                }
            },
            None => None,
        };
        let mut hosts = Vec::new();
        for h in &spec.hosts {
            match h
                .parse::<ipnet::IpNet>()
                .or_else(|_| h.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            {
                Ok(n) => hosts.push(n.trunc()),
                Err(_) => problem(format!("hosts: {h:?} is not an address or CIDR")),
            }
        }
        if spec.hosts.is_empty()
            && spec.vendors.is_empty()
            && spec.categories.is_empty()
            && spec.rules.is_empty()
        {
            problem("names nothing to suppress (give hosts, vendors, categories or rules)".into());
        }
        list.push(Suppression {
            reason: spec.reason,
            expires,
            hosts,
            vendors: spec.vendors,
            categories: spec.categories,
            rules: spec.rules,
            line,
        });
    }
    if errors.is_empty() {
        Ok(LoadedConfig {
            rules: file.rules,
            vendors: file.vendors,
            home_net,
            max_hosts: file.max_hosts,
            suppressions: Suppressions(list),
        })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_problems_name_the_line() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "vendors = [\"kaspersky\"]\n\n[[suppress]]\nreason = \"lab\"\nhosts = [\"10.0.0.0/33\"]\nexpires = \"someday\"\n").expect("write");
        let errs = load_config(&p).expect_err("invalid");
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs.iter().all(|e| e.contains("c.toml:3: suppress:")),
            "{errs:?}"
        );
        std::fs::write(&p, "vendorz = []\n").expect("write");
        let errs = load_config(&p).expect_err("unknown key");
        assert!(
            errs[0].contains("c.toml:1:") && errs[0].contains("vendorz"),
            "{errs:?}"
        );
    }

    #[test]
    fn expiry_dates() {
        assert_eq!(
            parse_expiry("2027-01-31"),
            Some(Timestamp::from_parts(1_801_353_600, 0))
        );
        assert!(parse_expiry("2027-01-31T12:00:00Z").is_some());
        assert!(parse_expiry("31/01/2027").is_none());
    }
}
