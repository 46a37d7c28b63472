//! The validated configuration of `replay` and `live`: the settings merged once (command
//! line over file over defaults, `settings::layered`) and checked once, into the values the
//! program runs on. Every problem is found here, before anything starts, in words that name
//! the option (`--workers must be at most 1024 …`); the file's own problems were found, with
//! their lines, when it was loaded.

use super::settings::{self, LiveSettings, Mode, Settings};
use super::{check_flag, load_config, load_rules_and_names, parse_home_net, parse_resolvers};
use super::{check_suppressions, render_problems, LoadedConfig};
use super::{RuleSource, Suppressions};
use crate::detect::{DetectLimits, HomeNet, RuleSet};
use crate::extract::ExtractorLimits;
use crate::output::alertfile::AlertFileOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a configuration cannot be used (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file has problems, each `file:line: problem`.
    #[error("the configuration has {} problem(s):\n  {}\ncheck it with `vendorwatch config check {path}`", problems.len(), problems.join("\n  "))]
    File { path: String, problems: Vec<String> },
    /// The rules do not load or do not compile for the vendors asked for.
    #[error("{0}")]
    Rules(String),
    /// An option's value is out of range, malformed or contradicts another (the message names it).
    #[error("{0}")]
    Invalid(String),
}

impl ConfigError {
    /// A short label (for logs and metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            ConfigError::File { .. } => "config_file",
            ConfigError::Rules(_) => "rules",
            ConfigError::Invalid(_) => "invalid_option",
        }
    }
}

impl From<String> for ConfigError {
    fn from(msg: String) -> Self {
        ConfigError::Invalid(msg)
    }
}

impl From<crate::hosts::agency::AgencyError> for ConfigError {
    fn from(e: crate::hosts::agency::AgencyError) -> Self {
        ConfigError::Invalid(e.to_string())
    }
}

impl From<super::OptionError> for ConfigError {
    fn from(e: super::OptionError) -> Self {
        ConfigError::Invalid(e.to_string())
    }
}

impl From<settings::MergeError> for ConfigError {
    fn from(e: settings::MergeError) -> Self {
        ConfigError::Invalid(e.to_string())
    }
}

impl From<crate::detect::resolvers::ResolverListError> for ConfigError {
    fn from(e: crate::detect::resolvers::ResolverListError) -> Self {
        ConfigError::Invalid(e.to_string())
    }
}

impl From<&str> for ConfigError {
    fn from(msg: &str) -> Self {
        ConfigError::Invalid(msg.to_string())
    }
}

/// Where a reload (SIGHUP, `--watch`) reads from: the configuration file, and the
/// command line's settings, which keep winning after a reload as they did at start.
#[derive(Debug, Clone, Default)]
pub struct ReloadSpec {
    pub config: Option<PathBuf>,
    /// The settings given on the command line.
    pub overrides: Settings,
    /// Poll the files for changes, not only wait for SIGHUP.
    pub watch: bool,
    /// The configuration file as loaded at start.
    pub started_with: Option<LoadedConfig>,
}

impl ReloadSpec {
    /// The rule source and vendors in force with `file` (the command line's win).
    pub fn rules_with(&self, file: Option<&LoadedConfig>) -> (RuleSource, Option<Vec<String>>) {
        let from_file = file.map(|f| f.settings.clone()).unwrap_or_default();
        // Both layers merged at start (a file's text is UTF-8): this cannot fail.
        let s = settings::layered(&[&self.overrides, &from_file]).unwrap_or_default();
        (rule_source(&s.rules), s.vendors)
    }
}

/// Where the rules come from: `--rules PATH`, else the embedded packs.
pub fn rule_source(path: &Option<PathBuf>) -> RuleSource {
    path.clone().map_or(RuleSource::Embedded, RuleSource::Path)
}

/// What `replay` and `live` run on, validated.
pub struct RunConfig {
    pub rules: Arc<RuleSet>,
    pub home_net: HomeNet,
    /// Resolvers named by the operator (`--resolvers`, `resolvers = [...]`).
    pub pinned_resolvers: Vec<std::net::IpAddr>,
    pub workers: usize,
    pub alerts: Option<PathBuf>,
    /// Rotation, fsync policy and backlog of the alerts file.
    pub alerts_file: AlertFileOptions,
    pub report: Option<PathBuf>,
    pub events: Option<PathBuf>,
    pub extract_limits: ExtractorLimits,
    pub detect_limits: DetectLimits,
    /// What the decoder is told (`--vxlan-ports`).
    pub decode: crate::decode::DecodeOptions,
    pub quiet: bool,
    pub encrypted_dns: crate::detect::resolvers::EncryptedDns,
    /// Where to serve /metrics, /healthz and /api/hosts (`None`: not at all).
    pub metrics_addr: Option<String>,
    /// The persistent inventory (`None`: `--state none`).
    pub state: Option<PathBuf>,
    pub realert_secs: Option<u64>,
    /// Hosts the inventory holds; findings for new hosts beyond are shed and counted.
    pub max_hosts: usize,
    /// When a learned client fingerprint is used on hidden-name flows.
    pub learn: crate::detect::fingerprints::LearnSettings,
    /// Findings that raise no alert (still recorded, flagged).
    pub suppressions: Suppressions,
    /// Where alerts also go, over syslog.
    pub syslog: Option<crate::output::syslog::SyslogConfig>,
    /// Where a reload (SIGHUP, `--watch`) reads rules and suppressions from.
    pub reload: ReloadSpec,
    /// Install the seccomp filter once start-up is over.
    pub seccomp: bool,
    /// The agency inventory this sensor ships to, and whether `state` is a temporary spool.
    pub agency: Option<crate::hosts::agency::AgencyConfig>,
    pub temporary_spool: bool,
}

/// Default number of workers: one core is left to the reader.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// A value the defaults layer always fills (`Settings::defaults`).
fn given<T: Default>(v: Option<T>) -> T {
    v.unwrap_or_default()
}

impl RunConfig {
    /// Merges the configuration file (`file`, read from `config`) under the command line and
    /// over the defaults, and checks everything.
    pub fn build(
        cli: &Settings,
        file: &LoadedConfig,
        config: Option<&Path>,
        mode: Mode,
    ) -> Result<RunConfig, ConfigError> {
        let s = settings::layered(&[cli, &file.settings, &Settings::defaults(mode)])?;
        let decode = decode_options(&s)?;
        let syslog = syslog(&s)?;
        let (rules, known) = load_rules_and_names(&rule_source(&s.rules), s.vendors.as_deref())
            .map_err(|e| ConfigError::Rules(e.to_string()))?;
        if let Some(path) = config {
            let unknown = check_suppressions(&file.suppressions, &known);
            if !unknown.is_empty() {
                let path = crate::operator_input::shown(path);
                return Err(ConfigError::File {
                    problems: render_problems(&path, unknown),
                    path,
                });
            }
        }
        let (home_net, pinned_resolvers) = network(cli, &s)?;
        let (extract_limits, detect_limits, learn) = limits(&s)?;
        let (alerts_file, alerts, events) = outputs(&s)?;
        let (agency, state, temporary_spool) = inventory(cli, &s)?;
        let realert_hours = given(s.realert_hours);
        check_flag("realert_hours", realert_hours)?;
        let cfg = RunConfig {
            encrypted_dns: crate::detect::resolvers::EncryptedDns::embedded()?,
            rules: Arc::new(rules),
            home_net,
            pinned_resolvers,
            workers: s.workers.unwrap_or_else(default_workers),
            alerts,
            alerts_file,
            report: s.report.clone(),
            events,
            extract_limits,
            detect_limits,
            decode,
            quiet: given(s.quiet),
            metrics_addr: s.metrics_addr.clone().filter(|a| a != "off"),
            syslog,
            suppressions: file.suppressions.clone(),
            state,
            agency,
            temporary_spool,
            realert_secs: Some(realert_hours.saturating_mul(3600)).filter(|s| *s > 0),
            reload: ReloadSpec {
                config: config.map(Path::to_path_buf),
                overrides: cli.clone(),
                watch: given(s.watch),
                started_with: config.is_some().then(|| file.clone()),
            },
            seccomp: s.seccomp.unwrap_or(true),
            max_hosts: given(s.max_hosts),
            learn,
        };
        check_distinct_outputs(&cfg.outputs())?;
        Ok(cfg)
    }

    /// The files this run writes, each with the flag that named it.
    pub fn outputs(&self) -> [(&'static str, Option<&Path>); 4] {
        [
            ("--alerts", self.alerts.as_deref()),
            ("--events", self.events.as_deref()),
            ("--report", self.report.as_deref()),
            ("--state", self.state.as_deref()),
        ]
    }
}

/// What a path given as an output names, to tell when two outputs (or an output and an
/// input) are one file: an existing regular file by its device and inode (another name or a
/// link to it is the same file), a file not there yet by its absolute path. A device or FIFO
/// (`/dev/null`, a pipe) names no file that can be overwritten, nor does stdout (`-`): any
/// number of outputs may share those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileIdentity {
    Inode { dev: u64, ino: u64 },
    Absent(PathBuf),
}

pub fn file_identity(path: &Path) -> Option<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    if path == Path::new("-") {
        return None;
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Some(FileIdentity::Inode {
            dev: m.dev(),
            ino: m.ino(),
        }),
        Ok(_) => None,
        Err(_) => {
            let name = path.file_name()?;
            let parent = crate::operator_input::parent_dir(path);
            let parent = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
            Some(FileIdentity::Absent(parent.join(name)))
        }
    }
}

/// What an existing regular file at `path` holds that an output written over it would destroy
/// and nothing could give back: a packet capture (as `replay` reads them: pcap, pcapng, or
/// either gzip-compressed) or an inventory (an SQLite database). Only a regular file is
/// opened: a FIFO would block.
fn irreplaceable_content(path: &Path) -> Option<&'static str> {
    use std::io::Read;
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return None;
    }
    if crate::capture::file::starts_like_capture(path) {
        return Some("a packet capture");
    }
    let mut magic = [0u8; 16];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic));
    (read.is_ok() && magic == *b"SQLite format 3\0").then_some("an inventory (SQLite database)")
}

/// Refuses a file a command writes whole (`report --html`, `fingerprints export -o`) where
/// writing it would destroy data: one of the command's `inputs` (each with what it is), or a
/// file that holds a capture or an inventory. `-` (stdout) and devices are never refused.
pub fn refuse_overwrite(flag: &str, path: &Path, inputs: &[(&str, &Path)]) -> Result<(), String> {
    let shown = crate::operator_input::shown(path);
    if let Some(id) = file_identity(path) {
        if let Some((what, _)) = inputs
            .iter()
            .find(|(_, input)| file_identity(input).as_ref() == Some(&id))
        {
            return Err(format!(
                "{flag} names {what} {shown}: writing there would destroy it; give {flag} its own file"
            ));
        }
    }
    match irreplaceable_content(path) {
        Some(content) => Err(format!(
            "{flag} names {shown}, which holds {content}: writing there would destroy it; give {flag} its own file"
        )),
        None => Ok(()),
    }
}

/// Refuses two outputs that are one file (each would truncate or interleave the other's
/// lines: `--alerts x --events x` lost alerts and wrote broken JSON, with exit 0), and an
/// output that holds a packet capture (`--alerts *.pcap`, the alerts file's name forgotten,
/// made the first capture the alerts file) or, but for `--state`, an inventory.
fn check_distinct_outputs(outputs: &[(&str, Option<&Path>)]) -> Result<(), ConfigError> {
    for (flag, path) in outputs {
        let Some(path) = path else { continue };
        let content = match irreplaceable_content(path) {
            Some(c) if !(*flag == "--state" && c.starts_with("an inventory")) => c,
            _ => continue,
        };
        return Err(format!(
            "{flag} names {}, which holds {content}: writing there would destroy it; give {flag} its own file",
            crate::operator_input::shown(path)
        )
        .into());
    }
    let named: Vec<(&str, &Path, FileIdentity)> = outputs
        .iter()
        .filter_map(|(flag, path)| {
            let path = (*path)?;
            Some((*flag, path, file_identity(path)?))
        })
        .collect();
    for (i, (flag, path, id)) in named.iter().enumerate() {
        if let Some((other, _, _)) = named[..i].iter().find(|(_, _, seen)| seen == id) {
            return Err(format!(
                "{other} and {flag} name the same file ({}): give each output its own file",
                crate::operator_input::shown(path)
            )
            .into());
        }
    }
    Ok(())
}

/// Reads and checks the configuration file, if there is one.
pub fn load_file(config: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
    match config {
        Some(p) => load_config(p).map_err(|problems| ConfigError::File {
            path: crate::operator_input::shown(p),
            problems,
        }),
        None => Ok(LoadedConfig::default()),
    }
}

fn decode_options(s: &Settings) -> Result<crate::decode::DecodeOptions, ConfigError> {
    let vxlan_ports = s.vxlan_ports.clone().unwrap_or_default();
    if vxlan_ports.contains(&0) {
        return Err("--vxlan-ports: 0 is not a port".into());
    }
    Ok(crate::decode::DecodeOptions { vxlan_ports })
}

fn syslog(s: &Settings) -> Result<Option<crate::output::syslog::SyslogConfig>, ConfigError> {
    let Some(t) = &s.syslog else {
        return Ok(None);
    };
    let target: crate::output::syslog::SyslogTarget =
        t.parse().map_err(|e| format!("--syslog: {e}"))?;
    let mut c = crate::output::syslog::SyslogConfig::new(target);
    c.capacity = given(s.syslog_queue);
    check_flag("syslog_queue", c.capacity as u64)?;
    Ok(Some(c))
}

/// The home net and the pinned resolvers, which must lie in it. A value from the command
/// line is named as its flag, one from the file as its key.
fn network(cli: &Settings, s: &Settings) -> Result<(HomeNet, Vec<std::net::IpAddr>), ConfigError> {
    let home_net = parse_home_net(&given(s.home_net.clone()).join(","))?;
    let flag = if cli.resolvers.is_some() {
        "--resolvers:"
    } else {
        "resolvers:"
    };
    let pinned = match &s.resolvers {
        Some(list) => parse_resolvers(&list.join(",")).map_err(|e| format!("{flag} {e}"))?,
        None => Vec::new(),
    };
    if let Some(outside) = pinned.iter().find(|ip| !home_net.contains(**ip)) {
        return Err(format!(
            "{flag} {outside} is not in the home net (only home-net hosts hold the resolver role)"
        )
        .into());
    }
    Ok((home_net, pinned))
}

/// The limits of the extractor, the detector and the fingerprint learner.
fn limits(
    s: &Settings,
) -> Result<
    (
        ExtractorLimits,
        DetectLimits,
        crate::detect::fingerprints::LearnSettings,
    ),
    ConfigError,
> {
    if let Some(w) = s.workers {
        check_flag("workers", w as u64)?;
    }
    let (max_flows, reassembly_mb) = (given(s.max_flows), given(s.reassembly_mb));
    let http_max_requests = given(s.http_max_requests);
    check_flag("max_flows", max_flows as u64)?;
    check_flag("reassembly_mb", reassembly_mb as u64)?;
    check_flag("http_max_requests", u64::from(http_max_requests))?;
    check_flag("max_hosts", given(s.max_hosts) as u64)?;
    let learn = crate::detect::fingerprints::LearnSettings {
        min_hosts: given(s.learn_min_hosts),
        min_specificity: given(s.learn_min_specificity),
        min_observe_secs: given(s.learn_min_seconds),
    };
    check_flag("learn_min_hosts", learn.min_hosts as u64)?;
    if !(learn.min_specificity > 0.0 && learn.min_specificity <= 1.0) {
        return Err("--learn-min-specificity must be a fraction above 0 and at most 1".into());
    }
    let detect = DetectLimits {
        pdns_max_entries: given(s.pdns_max),
        pdns_ttl_floor_secs: given(s.pdns_ttl_floor),
        pdns_ttl_cap_secs: given(s.pdns_ttl_cap),
        ..DetectLimits::default()
    };
    check_flag("pdns_max", detect.pdns_max_entries as u64)?;
    check_flag("pdns_ttl_floor", detect.pdns_ttl_floor_secs)?;
    check_flag("pdns_ttl_cap", detect.pdns_ttl_cap_secs)?;
    if detect.pdns_ttl_floor_secs > detect.pdns_ttl_cap_secs {
        return Err(format!(
            "--pdns-ttl-floor ({}) is larger than --pdns-ttl-cap ({})",
            detect.pdns_ttl_floor_secs, detect.pdns_ttl_cap_secs
        )
        .into());
    }
    let extract = ExtractorLimits {
        max_flows,
        reassembly_budget: reassembly_mb << 20,
        http_max_requests,
        verify_checksums: !given(s.ignore_checksums),
        ..ExtractorLimits::default()
    };
    Ok((extract, detect, learn))
}

/// The alerts file's options, and the alerts and events paths (at most one of them stdout).
fn outputs(
    s: &Settings,
) -> Result<(AlertFileOptions, Option<PathBuf>, Option<PathBuf>), ConfigError> {
    let alerts_max_mb = given(s.alerts_max_mb);
    if !(alerts_max_mb.is_finite() && alerts_max_mb >= 0.0) {
        return Err("--alerts-max-mb must be 0 (never rotate) or a positive number of MiB".into());
    }
    let alerts_file = AlertFileOptions {
        // `as` saturates: an absurdly large size means "never in practice".
        max_bytes: (alerts_max_mb * 1024.0 * 1024.0).ceil() as u64,
        keep: given(s.alerts_keep),
        fsync: given(s.alerts_fsync),
        backlog: given(s.alerts_backlog),
        append: false,
    };
    let stdout = |o: &Option<PathBuf>| o.as_deref() == Some(Path::new("-"));
    if alerts_file.max_bytes > 0 && stdout(&s.alerts) {
        return Err("--alerts-max-mb rotates a file; stdout cannot be rotated".into());
    }
    if let Some(path) = s.alerts.as_deref().filter(|_| alerts_file.max_bytes > 0) {
        // Rotation renames the path away and creates a new file there: as root, a device
        // node or a link to one (`/dev/stderr`) would be replaced by a regular file.
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            return Err(format!(
                "--alerts-max-mb rotates a file; {} is not a regular file (a device, FIFO or link to one): pass --alerts-max-mb 0 to write to it without rotation",
                crate::operator_input::shown(path)
            )
            .into());
        }
    }
    if alerts_file.keep == 0 {
        return Err(
            "--alerts-keep must be at least 1 (use --alerts-max-mb 0 to never rotate)".into(),
        );
    }
    check_flag("alerts_keep", alerts_file.keep as u64)?;
    check_flag("alerts_backlog", alerts_file.backlog as u64)?;
    if stdout(&s.alerts) && stdout(&s.events) {
        return Err("--alerts and --events cannot both write to stdout".into());
    }
    if stdout(&s.report) && (stdout(&s.alerts) || stdout(&s.events)) {
        return Err("--report and --alerts or --events cannot both write to stdout".into());
    }
    Ok((alerts_file, s.alerts.clone(), s.events.clone()))
}

/// The agency settings of `replay`/`live`, the state path to use (a replay with an agency
/// inventory but no `--state` gets a temporary spool), and whether it is that spool.
fn inventory(
    cli: &Settings,
    s: &Settings,
) -> Result<
    (
        Option<crate::hosts::agency::AgencyConfig>,
        Option<PathBuf>,
        bool,
    ),
    ConfigError,
> {
    use crate::hosts::agency;
    let state = match s.state.as_deref() {
        None | Some("none") => None,
        Some(path) => Some(PathBuf::from(path)),
    };
    let Some(url) = s.inventory.clone() else {
        if cli.sensor_id.is_some() || cli.site.is_some() {
            // Harmless, but say it: the identity labels nothing without an agency inventory.
            tracing::warn!("--sensor-id and --site label the agency inventory; without --inventory they are not used");
        }
        return Ok((None, state, false));
    };
    if !agency::is_postgres(&url) {
        return Err("--inventory takes a PostgreSQL URL: postgres://USER@HOST:PORT/DB (the local inventory is --state)".into());
    }
    let pg = agency::connection(&url, s.inventory_password_file.as_deref())?;
    let sensor_id = agency::check_label(
        "--sensor-id",
        &s.sensor_id
            .clone()
            .unwrap_or_else(agency::default_sensor_id),
    )?;
    let site = agency::check_label("--site", &given(s.site.clone()))?;
    let (backlog, batch) = (given(s.inventory_backlog), given(s.inventory_batch));
    if backlog == 0 || batch == 0 {
        return Err("--inventory-backlog and --inventory-batch must be at least 1".into());
    }
    let (state, temporary) = match state {
        Some(s) => (s, false),
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let name = format!("vendorwatch-spool-{}-{nanos}.db", std::process::id());
            (std::env::temp_dir().join(name), true)
        }
    };
    let config = agency::AgencyConfig {
        pg,
        ca: s.inventory_ca.clone(),
        sensor_id,
        site,
        backlog,
        batch,
        wait_secs: given(s.inventory_wait),
    };
    Ok((Some(config), Some(state), temporary))
}

/// `live`'s own settings, validated.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub interfaces: Vec<String>,
    pub bpf: Option<String>,
    pub buffer_mb: u32,
    pub promiscuous: bool,
    pub status_every: u64,
    pub user: Option<String>,
    /// Capture threads per interface: 0 = as many as workers (fanout where it works), 1 =
    /// libpcap alone, more = a fanout group of that many sockets.
    pub capture_threads: usize,
}

impl LiveConfig {
    /// The command line's `live` options over the file's [live] table over the defaults.
    pub fn build(cli: &LiveSettings, file: &LiveSettings) -> Result<LiveConfig, ConfigError> {
        let s = settings::layered(&[cli, file, &LiveSettings::defaults()])?;
        let live = LiveConfig {
            interfaces: given(s.interfaces),
            bpf: s.bpf,
            buffer_mb: given(s.buffer_mb),
            promiscuous: given(s.promiscuous),
            status_every: given(s.status_every),
            user: s.user,
            capture_threads: given(s.capture_threads),
        };
        check_flag("buffer_mb", u64::from(live.buffer_mb))?;
        check_flag("capture_threads", live.capture_threads as u64)?;
        check_flag("status_every", live.status_every)?;
        if live.interfaces.is_empty() {
            return Err("live needs an interface: -i IFACE (repeatable), or interfaces = [\"eth1\"] in the [live] table of --config".into());
        }
        // Opened twice, an interface delivers every packet twice: each is counted double and
        // the second copy is dropped as a mirror's duplicate.
        for (i, name) in live.interfaces.iter().enumerate() {
            if live.interfaces[..i].contains(name) {
                return Err(format!(
                    "interface {} is named twice: give each interface once",
                    crate::operator_input::escape_controls(name)
                )
                .into());
            }
        }
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interface_named_twice_is_refused() {
        let cli = LiveSettings {
            interfaces: Some(vec!["eth1".into(), "eth2".into(), "eth1".into()]),
            ..LiveSettings::default()
        };
        let Err(e) = LiveConfig::build(&cli, &LiveSettings::default()) else {
            panic!("an interface named twice was accepted");
        };
        assert_eq!(
            e.to_string(),
            "interface eth1 is named twice: give each interface once"
        );
        let once = LiveSettings {
            interfaces: Some(vec!["eth1".into(), "eth2".into()]),
            ..LiveSettings::default()
        };
        assert!(LiveConfig::build(&once, &LiveSettings::default()).is_ok());
    }
}
