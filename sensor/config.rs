//! Validated configuration: what the program runs on, built from the raw command line
//! (`cli`) once, with every problem reported in words a user can act on.

use crate::detect::rules::{self, Loaded, RuleError};
use crate::detect::{DetectLimits, HomeNet, RuleSet};
use crate::extract::ExtractorLimits;
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
    /// Where alerts also go, over syslog.
    pub syslog: Option<crate::output::syslog::SyslogConfig>,
}
