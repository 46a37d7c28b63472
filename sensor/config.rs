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
    /// Rotation, fsync policy and backlog of the alerts file.
    pub alerts_file: crate::output::alertfile::AlertFileOptions,
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
    /// Where a reload (SIGHUP, `--watch`) reads rules and suppressions from.
    pub reload: crate::reload::ReloadSpec,
    /// Install the seccomp filter once start-up is over.
    pub seccomp: bool,
    /// The agency inventory this sensor ships to, and whether `state` is a temporary spool.
    pub agency: Option<crate::hosts::agency::AgencyConfig>,
    pub temporary_spool: bool,
}

/// The configuration file (`--config PATH`, checked by `vendorwatch config check`). Every
/// key is optional and named like its command-line option (`--max-flows` is `max_flows`);
/// options given on the command line win over the file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Rule pack file or directory (default: the embedded packs).
    pub rules: Option<PathBuf>,
    /// Vendors whose packs are active.
    pub vendors: Option<Vec<String>>,
    /// Internal networks whose hosts are reported.
    pub home_net: Option<Vec<String>>,
    pub alerts: Option<PathBuf>,
    pub alerts_max_mb: Option<f64>,
    pub alerts_keep: Option<usize>,
    /// always, interval or never.
    pub alerts_fsync: Option<String>,
    pub alerts_backlog: Option<usize>,
    pub report: Option<PathBuf>,
    pub events: Option<PathBuf>,
    /// The inventory database, or "none".
    pub state: Option<String>,
    pub realert_hours: Option<u64>,
    pub workers: Option<usize>,
    pub max_flows: Option<usize>,
    pub reassembly_mb: Option<usize>,
    /// Hosts the inventory holds (`--max-hosts`).
    pub max_hosts: Option<usize>,
    pub pdns_max: Option<usize>,
    pub pdns_ttl_floor: Option<u64>,
    pub pdns_ttl_cap: Option<u64>,
    pub syslog: Option<String>,
    pub syslog_queue: Option<usize>,
    pub vxlan_ports: Option<Vec<u16>>,
    pub metrics_addr: Option<String>,
    pub quiet: Option<bool>,
    /// Reload rules and suppressions when these files change.
    pub watch: Option<bool>,
    /// The seccomp filter after start-up (`false`: `--no-seccomp`).
    pub seccomp: Option<bool>,
    /// The agency inventory (`--inventory` and its options, `cli_agency`).
    pub inventory: Option<String>,
    pub inventory_password_file: Option<PathBuf>,
    pub inventory_ca: Option<PathBuf>,
    pub sensor_id: Option<String>,
    pub site: Option<String>,
    pub inventory_backlog: Option<usize>,
    pub inventory_batch: Option<usize>,
    pub inventory_wait: Option<u64>,
    /// Settings of `vendorwatch live` only.
    pub live: Option<LiveFileConfig>,
    #[serde(default)]
    pub suppress: Vec<toml::Spanned<SuppressSpec>>,
}

/// The `[live]` table.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveFileConfig {
    pub interfaces: Option<Vec<String>>,
    pub bpf: Option<String>,
    pub buffer_mb: Option<u32>,
    pub promiscuous: Option<bool>,
    pub user: Option<String>,
    pub status_every: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
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

/// The largest reassembly budget per worker, in MiB (1 TiB: beyond any machine).
pub const MAX_REASSEMBLY_MB: usize = 1 << 20;

/// Keys a reload puts in force; every other key is read at start only.
pub const RELOADABLE_KEYS: [&str; 3] = ["rules", "vendors", "suppress"];

/// A configuration file, validated.
#[derive(Debug, Default, Clone)]
pub struct LoadedConfig {
    /// The keys as written (each value checked); `suppress` is moved out, validated, into
    /// `suppressions`.
    pub settings: FileConfig,
    /// `home_net` as one comma-separated list, as `--home-net` takes it.
    pub home_net: Option<String>,
    pub live: LiveFileConfig,
    pub suppressions: Suppressions,
    /// The keys a reload cannot change, as written (to tell the user a restart is needed).
    pub fixed: toml::Table,
}

impl LoadedConfig {
    /// Keys a reload cannot apply that differ between `self` (in force) and `newer`.
    pub fn restart_needed_for(&self, newer: &LoadedConfig) -> Vec<String> {
        let keys: std::collections::BTreeSet<&String> =
            self.fixed.keys().chain(newer.fixed.keys()).collect();
        keys.into_iter()
            .filter(|k| self.fixed.get(*k) != newer.fixed.get(*k))
            .cloned()
            .collect()
    }
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
    parse_config(&name, &text)
}

/// Validates configuration text; `name` is how problems refer to it.
pub fn parse_config(name: &str, text: &str) -> Result<LoadedConfig, Vec<String>> {
    let line_at = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let mut file: FileConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| line_at(s.start));
        vec![format!("{name}:{line}: {}", e.message().trim())]
    })?;
    // Deserialising succeeded, so the text is a table; keep the start-only part as written.
    let mut fixed: toml::Table = text.parse().unwrap_or_default();
    for key in RELOADABLE_KEYS {
        fixed.remove(key);
    }
    let mut errors = Vec::new();
    let mut problem_at = |key: &str, p: String| {
        errors.push(format!("{name}:{}: {key}: {p}", key_line(text, key)));
    };
    let home_net = file.home_net.as_ref().map(|nets| nets.join(","));
    if let Some(h) = &home_net {
        if let Err(e) = parse_home_net(h) {
            problem_at("home_net", e);
        }
    }
    if let Some(t) = &file.syslog {
        if let Err(e) = t.parse::<crate::output::syslog::SyslogTarget>() {
            problem_at("syslog", e.to_string());
        }
    }
    if let Some(f) = &file.alerts_fsync {
        if let Err(e) = f.parse::<crate::output::alertfile::FsyncPolicy>() {
            problem_at("alerts_fsync", e);
        }
    }
    if file
        .alerts_max_mb
        .is_some_and(|m| !(m.is_finite() && m >= 0.0))
    {
        problem_at(
            "alerts_max_mb",
            "must be 0 (never rotate) or a positive number of MiB".into(),
        );
    }
    for (key, value) in [
        ("workers", file.workers),
        ("max_flows", file.max_flows),
        ("max_hosts", file.max_hosts),
        ("reassembly_mb", file.reassembly_mb),
        ("syslog_queue", file.syslog_queue),
        ("alerts_keep", file.alerts_keep),
        ("alerts_backlog", file.alerts_backlog),
    ] {
        if value == Some(0) {
            problem_at(key, "must be at least 1".into());
        }
    }
    if let (Some(floor), Some(cap)) = (file.pdns_ttl_floor, file.pdns_ttl_cap) {
        if floor > cap {
            problem_at(
                "pdns_ttl_floor",
                format!("{floor} is larger than pdns_ttl_cap ({cap})"),
            );
        }
    }
    if file.reassembly_mb.is_some_and(|m| m > MAX_REASSEMBLY_MB) {
        problem_at(
            "reassembly_mb",
            format!("must be at most {MAX_REASSEMBLY_MB} (MiB per worker)"),
        );
    }
    if file.vxlan_ports.as_ref().is_some_and(|p| p.contains(&0)) {
        problem_at("vxlan_ports", "0 is not a port".into());
    }
    if file.alerts.as_deref() == Some(std::path::Path::new("-"))
        && file.events.as_deref() == Some(std::path::Path::new("-"))
    {
        problem_at(
            "events",
            "alerts and events cannot both write to stdout".into(),
        );
    }
    let live = file.live.take().unwrap_or_default();
    if live.interfaces.as_ref().is_some_and(|i| i.is_empty()) {
        problem_at("interfaces", "is empty: name at least one interface".into());
    }
    let mut list = Vec::new();
    for spanned in std::mem::take(&mut file.suppress) {
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
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(LoadedConfig {
        settings: file,
        home_net,
        live,
        suppressions: Suppressions(list),
        fixed,
    })
}

/// The line where `key = …` is first written (1 when it cannot be found): validation
/// happens after parsing, where spans are gone, and a key appears once per table.
fn key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(1, |i| i + 1)
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
    fn every_option_has_a_key_and_bad_values_name_their_line() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            r#"rules = "/etc/vendorwatch/rules"
vendors = ["kaspersky", "hikvision"]
home_net = ["10.0.0.0/8"]
alerts = "/var/log/vendorwatch/alerts.jsonl"
report = "/var/lib/vendorwatch/hosts.json"
events = "/var/log/vendorwatch/events.jsonl"
state = "none"
realert_hours = 12
workers = 3
max_flows = 1000
pdns_max = 50
pdns_ttl_floor = 60
pdns_ttl_cap = 3600
syslog = "udp://127.0.0.1:514"
syslog_queue = 100
vxlan_ports = [4789, 8472]
metrics_addr = "127.0.0.1:9999"
quiet = true
watch = true

[live]
interfaces = ["span0", "span1"]
bpf = "not port 22"
buffer_mb = 256
promiscuous = false
user = "vendorwatch"
status_every = 30
"#,
        )
        .expect("write");
        let c = load_config(&p).expect("valid");
        assert_eq!(c.settings.workers, Some(3));
        assert_eq!(c.settings.vxlan_ports, Some(vec![4789, 8472]));
        assert_eq!(c.home_net.as_deref(), Some("10.0.0.0/8"));
        assert_eq!(
            c.live.interfaces,
            Some(vec!["span0".into(), "span1".into()])
        );
        assert_eq!(c.live.promiscuous, Some(false));
        assert_eq!(c.settings.watch, Some(true));
        // Only rules, vendors and suppressions are reloadable; the rest needs a restart.
        std::fs::write(&p, "vendors = [\"kaspersky\"]\nworkers = 4\n").expect("write");
        let newer = load_config(&p).expect("valid");
        let changed = c.restart_needed_for(&newer);
        assert!(changed.contains(&"workers".to_string()), "{changed:?}");
        assert!(changed.contains(&"live".to_string()), "{changed:?}");
        assert!(!changed.contains(&"vendors".to_string()), "{changed:?}");

        std::fs::write(
            &p,
            "quiet = true\nworkers = 0\nsyslog = \"ftp://x\"\n\n[live]\ninterfaces = []\n",
        )
        .expect("write");
        let errs = load_config(&p).expect_err("invalid");
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("{}:2: workers:", p.display()))),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("{}:3: syslog:", p.display()))),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("{}:6: interfaces:", p.display()))),
            "{errs:?}"
        );
        std::fs::write(&p, "[live]\ninterface = [\"eth0\"]\n").expect("write");
        let errs = load_config(&p).expect_err("unknown key");
        assert!(
            errs[0].contains("c.toml:2:") && errs[0].contains("interface"),
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
