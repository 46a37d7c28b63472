//! Validated configuration: what the program runs on, built once from the command line and
//! the configuration file, with every problem reported in words a user can act on.
//!
//! `settings` declares every option once (clap and the file's schema); this module reads and
//! checks the file (each problem at its line); `run` merges and validates into `RunConfig`.

mod run;
pub mod settings;

pub use run::{
    default_workers, file_identity, load_file, refuse_overwrite, rule_source, ConfigError,
    FileIdentity, LiveConfig, ReloadSpec, RunConfig,
};
pub use settings::{LiveSettings, Mode, ReplaySettings, Settings, DEFAULT_HOME_NET};

use crate::detect::rules::{self, Loaded, RuleError};
use crate::detect::{HomeNet, RuleSet};
use crate::suppress::{ItemLines, Known, Suppression, Suppressions};
use crate::time::Timestamp;
use serde::Deserialize;
use std::path::PathBuf;

/// Why an option's value is refused (`--home-net`, `--resolvers`, a count out of range).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("--home-net: {0:?} is not a CIDR such as 10.0.0.0/8 or fd00::/8")]
    NotCidr(String),
    #[error("--home-net is empty: give at least one CIDR")]
    EmptyHomeNet,
    #[error("{0:?} is not an IP address")]
    NotAddress(String),
    /// A count given on the command line is out of its bound (`--workers must be …`).
    #[error("--{flag} {bound}")]
    OutOfRange { flag: String, bound: BoundError },
}

impl OptionError {
    /// A short label (for logs and metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            OptionError::NotCidr(_) => "not_cidr",
            OptionError::EmptyHomeNet => "empty_home_net",
            OptionError::NotAddress(_) => "not_address",
            OptionError::OutOfRange { .. } => "out_of_range",
        }
    }
}

/// A count outside its bound (`COUNT_BOUNDS`); the message does not name the option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundError {
    #[error("must be at least {min}")]
    BelowMinimum { min: u64 },
    #[error("must be at most {max} ({what}), not {value}")]
    AboveMaximum {
        max: u64,
        what: &'static str,
        value: u64,
    },
}

impl BoundError {
    /// A short label (for logs and metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            BoundError::BelowMinimum { .. } => "below_minimum",
            BoundError::AboveMaximum { .. } => "above_maximum",
        }
    }
}

/// Why the rules cannot be used: they do not load, or not for the vendors asked for.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The rule files have problems, each as `RuleError` words it.
    /// `rules`: where they were read from, as the user named it; `check`: the command that
    /// checks them again.
    #[error("{}", load_problems(rules, problems, check))]
    Load {
        rules: String,
        problems: Vec<String>,
        check: String,
    },
    #[error(transparent)]
    Compile(#[from] crate::detect::CompileError),
}

impl RulesError {
    /// A short label (for logs and metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            RulesError::Load { .. } => "rules_invalid",
            RulesError::Compile(e) => e.reason(),
        }
    }
}

fn load_problems(rules: &str, problems: &[String], check: &str) -> String {
    let mut msg = format!("the rules in {rules} have {} problem(s):\n", problems.len());
    for e in problems {
        msg.push_str(&format!("  {e}\n"));
    }
    msg.push_str(&format!("fix them and check again with `{check}`"));
    msg
}

/// Whether `addr` can be listened on as written: `off`, an address and port, or a host name
/// and port (resolved when the endpoint starts, not here).
fn is_listen_address(addr: &str) -> bool {
    if addr == "off" || addr.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    addr.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains(['[', ']', ' ']) && port.parse::<u16>().is_ok()
    })
}

/// Why one key of the configuration file is refused (its line is added by the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// `rest` is serde's words after "unknown field" (the key and the expected ones).
    #[error("unknown key{rest}")]
    Unknown { rest: String },
    #[error("{key}: {message}")]
    BadValue { key: String, message: String },
}

impl KeyError {
    /// A short label (for logs and metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            KeyError::Unknown { .. } => "unknown_key",
            KeyError::BadValue { .. } => "bad_value",
        }
    }
}

pub fn parse_home_net(list: &str) -> Result<HomeNet, OptionError> {
    let mut nets = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        nets.push(parse_cidr(part).ok_or_else(|| OptionError::NotCidr(part.to_string()))?);
    }
    if nets.is_empty() {
        return Err(OptionError::EmptyHomeNet);
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
            RuleSource::Path(p) => crate::operator_input::shown(p),
        }
    }

    /// The command that checks these rules (with their path: without one, `rules check`
    /// checks the embedded packs).
    pub fn check_command(&self) -> String {
        match self {
            RuleSource::Embedded => "vendorwatch rules check".into(),
            RuleSource::Path(p) => format!(
                "vendorwatch rules check {}",
                crate::operator_input::shown(p)
            ),
        }
    }

    /// The command that lists the vendors and categories of these rules.
    pub fn list_command(&self) -> String {
        match self {
            RuleSource::Embedded => "vendorwatch rules list".into(),
            RuleSource::Path(p) => format!(
                "vendorwatch rules list --rules {}",
                crate::operator_input::shown(p)
            ),
        }
    }

    /// What suppressions may name with these rules: every pack's vendors, categories and
    /// rule ids, selected or not.
    pub fn known(&self, loaded: &Loaded) -> Known {
        Known::of(loaded, self.describe(), self.list_command())
    }
}

/// Loads and compiles rules, or explains why not.
pub fn load_rules(source: &RuleSource, vendors: Option<&[String]>) -> Result<RuleSet, RulesError> {
    load_rules_and_names(source, vendors).map(|(set, _)| set)
}

/// Loads and compiles rules, with what suppressions may name: every vendor, category and
/// rule id of the source, not only of the vendors selected (one load for both: a rule
/// directory may hold a million names).
pub fn load_rules_and_names(
    source: &RuleSource,
    vendors: Option<&[String]>,
) -> Result<(RuleSet, Known), RulesError> {
    let loaded = source.load().map_err(|errs| RulesError::Load {
        rules: source.describe(),
        problems: errs.iter().map(ToString::to_string).collect(),
        check: source.check_command(),
    })?;
    let known = source.known(&loaded);
    Ok((RuleSet::compile(loaded, vendors)?, known))
}

/// Each vendor, category or rule id of a suppression that no pack of the rule source has,
/// at the line of the item: such a suppression would silently suppress nothing.
pub fn check_suppressions(suppressions: &Suppressions, known: &Known) -> Vec<ConfigProblem> {
    suppressions
        .unknown_names(known)
        .into_iter()
        .map(|(line, problem)| ConfigProblem { line, problem })
        .collect()
}

/// Pinned resolvers, comma-separated addresses (`--resolvers`, `resolvers = [...]`).
pub fn parse_resolvers(list: &str) -> Result<Vec<std::net::IpAddr>, OptionError> {
    list.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse()
                .map_err(|_| OptionError::NotAddress(a.to_string()))
        })
        .collect()
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

/// The most HTTP requests read per connection: each may pass over a body of up to
/// `http::MAX_BODY_SKIP` bytes, so this bounds the work one connection can ask for.
pub const MAX_HTTP_REQUESTS: u32 = 1_000_000;

/// Keys a reload puts in force; every other key is read at start only.
pub const RELOADABLE_KEYS: [&str; 3] = ["rules", "vendors", "suppress"];

/// A configuration file, validated.
#[derive(Debug, Default, Clone)]
pub struct LoadedConfig {
    /// The keys as written (each value checked); `suppress` is moved out, validated, into
    /// `suppressions`.
    pub settings: Settings,
    /// The `[live]` table.
    pub live: LiveSettings,
    /// The `[replay]` table.
    pub replay: ReplaySettings,
    pub suppressions: Suppressions,
    /// The keys a reload cannot change, as written (to tell the user a restart is needed).
    pub fixed: toml::Table,
    /// The line of each top-level key (for problems found later, such as an unknown vendor).
    pub lines: std::collections::BTreeMap<String, usize>,
    /// The line of each key of the command tables (`[live]`, `[replay]`), by table.
    pub table_lines:
        std::collections::BTreeMap<&'static str, std::collections::BTreeMap<String, usize>>,
}

impl LoadedConfig {
    /// The line of a key of a command table (the table's when the key is not there, 1 when
    /// neither is).
    pub fn table_line(&self, table: &str, key: &str) -> usize {
        self.table_lines
            .get(table)
            .and_then(|lines| lines.get(key))
            .or_else(|| self.lines.get(table))
            .copied()
            .unwrap_or(1)
    }

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
    Timestamp::parse_day_or_rfc3339(text)
}

/// Reads and validates a configuration file; every problem is reported as `file:line: …`,
/// in line order.
pub fn load_config(path: &std::path::Path) -> Result<LoadedConfig, Vec<String>> {
    use crate::operator_input::{self, MAX_CONFIG_FILE};
    let name = operator_input::shown(path);
    let text = operator_input::read_text(path, MAX_CONFIG_FILE, "a configuration file")
        .map_err(|e| vec![format!("{name}:{}: {e}", e.line().unwrap_or(0))])?;
    parse_config(&name, &text)
}

/// Validates configuration text; `name` is how problems refer to it.
pub fn parse_config(name: &str, text: &str) -> Result<LoadedConfig, Vec<String>> {
    let (loaded, problems) = check_config_text(text);
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(render_problems(name, problems))
    }
}

/// `vendorwatch config check`: the file's problems and those of the rules and vendors it
/// names (each at the line of its key), the names its suppressions give that the rules lack,
/// and what `live` would refuse on this machine (`[live]` filter and user), all in line order.
/// `rules`: the rule directory the sensor will be given on its command line (`--rules`),
/// which wins over the file's `rules` key (suppressions are checked against its packs).
pub fn check_config_file(
    path: &std::path::Path,
    rules: Option<&std::path::Path>,
) -> Result<LoadedConfig, Vec<String>> {
    use crate::operator_input::{self, MAX_CONFIG_FILE};
    let name = operator_input::shown(path);
    let text = operator_input::read_text(path, MAX_CONFIG_FILE, "a configuration file")
        .map_err(|e| vec![format!("{name}:{}: {e}", e.line().unwrap_or(0))])?;
    let (loaded, mut problems) = check_config_text(&text);
    let rules_line = loaded.lines.get("rules").copied();
    let vendors_line = loaded.lines.get("vendors").copied();
    // After a syntax error nothing was read: the embedded rules are checked, and pass.
    let source = rules
        .map(std::path::Path::to_path_buf)
        .or_else(|| loaded.settings.rules.clone())
        .map_or(RuleSource::Embedded, RuleSource::Path);
    match load_rules_and_names(&source, loaded.settings.vendors.as_deref()) {
        Ok((_, known)) => problems.extend(check_suppressions(&loaded.suppressions, &known)),
        Err(msg) => {
            let (key, line) = if matches!(msg, RulesError::Compile(_)) {
                ("vendors", vendors_line)
            } else {
                ("rules", rules_line)
            };
            problems.push(ConfigProblem {
                line: line.unwrap_or(1),
                problem: format!("{key}: {msg}"),
            });
        }
    }
    problems.extend(check_live_on_this_machine(&loaded));
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(render_problems(&name, problems))
    }
}

/// What `live` would refuse only once it starts, found now: a `[live]` filter that libpcap
/// does not compile (with libpcap's reason), and a `user` to drop to that this machine does
/// not have.
fn check_live_on_this_machine(loaded: &LoadedConfig) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    if let Some(filter) = loaded.live.bpf.as_deref() {
        // As `live` checks it before an interface is up (for Ethernet); it is compiled again
        // for the interface's own link type when `live` opens it.
        if let Err(e) = crate::capture::live::check_filter(filter) {
            problems.push(ConfigProblem {
                line: loaded.table_line("live", "bpf"),
                problem: format!("bpf: {e}"),
            });
        }
    }
    // An empty name is already a problem of the file.
    if let Some(user) = loaded.live.user.as_deref().filter(|u| !u.trim().is_empty()) {
        // Looked up as `capture::privileges::drop_to` looks it up when `live` drops to it.
        let problem = match nix::unistd::User::from_name(user) {
            Ok(Some(_)) => None,
            Ok(None) => Some(format!(
                "user: {user:?} does not exist on this machine: create it \
                 (`useradd --system --no-create-home {user}`) or change `user`"
            )),
            Err(e) => Some(format!("user: cannot look up {user:?}: {e}")),
        };
        if let Some(problem) = problem {
            problems.push(ConfigProblem {
                line: loaded.table_line("live", "user"),
                problem,
            });
        }
    }
    problems
}

/// One problem of a configuration file: its line (1-based) and what is wrong, in the file's
/// own terms (`workers: …`, not `--workers …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub line: usize,
    pub problem: String,
}

/// `file:line: problem`, in line order (problems on one line keep the order found).
pub fn render_problems(name: &str, mut problems: Vec<ConfigProblem>) -> Vec<String> {
    problems.sort_by_key(|p| p.line);
    problems
        .into_iter()
        .map(|p| format!("{name}:{}: {}", p.line, p.problem))
        .collect()
}

/// Upper bounds of the count options, with the command-line flag, the configuration key and
/// what is counted. Each is far beyond any real deployment and low enough that a typo (a few
/// zeros too many) is refused with a clear error rather than spawning 100,000 threads or
/// looping over a hundred million file names.
pub struct CountBound {
    /// The configuration key (the flag is `--` and the key with `-` for `_`).
    pub key: &'static str,
    /// 1 for counts, 0 for durations where 0 means "never" or "off".
    pub min: u64,
    pub max: u64,
    pub what: &'static str,
}

/// Worker threads: more than the cores of any machine this runs on.
pub const MAX_WORKERS: usize = 1024;
/// Flows per worker (each some hundreds of bytes).
pub const MAX_FLOWS: usize = 1 << 26;
/// Hosts in the inventory.
pub const MAX_HOSTS: usize = 10_000_000;
/// Passive-DNS entries.
pub const MAX_PDNS: usize = 10_000_000;
/// Alerts held for syslog or the alerts file (about 1 KiB each).
pub const MAX_QUEUE: usize = 1_000_000;
/// Rotated alerts files kept.
pub const MAX_KEEP: usize = 1000;
/// Seconds for the passive-DNS TTL floor and cap (a year).
pub const MAX_TTL_SECS: u64 = 366 * 86_400;
/// Hours before a host is alerted again (ten years).
pub const MAX_REALERT_HOURS: u64 = 87_600;
/// MiB of kernel buffer per interface: libpcap takes the size in bytes as a C int.
pub const MAX_BUFFER_MB: u64 = 2047;
/// Seconds between status lines (a day).
pub const MAX_STATUS_EVERY: u64 = 86_400;
/// A replay serves its metrics at most a week after it ends.
pub const MAX_LINGER_SECS: u64 = 7 * 86_400;

const fn bound(key: &'static str, min: u64, max: u64, what: &'static str) -> CountBound {
    CountBound {
        key,
        min,
        max,
        what,
    }
}

#[rustfmt::skip]
pub const COUNT_BOUNDS: &[CountBound] = &[
    bound("workers", 1, MAX_WORKERS as u64, "worker threads"),
    bound("max_flows", 1, MAX_FLOWS as u64, "flows per worker"),
    bound("reassembly_mb", 1, MAX_REASSEMBLY_MB as u64, "MiB per worker"),
    bound("http_max_requests", 1, MAX_HTTP_REQUESTS as u64, "HTTP requests per connection"),
    bound("max_hosts", 1, MAX_HOSTS as u64, "hosts"),
    bound("pdns_max", 1, MAX_PDNS as u64, "passive-DNS entries"),
    bound("syslog_queue", 1, MAX_QUEUE as u64, "queued alerts"),
    bound("alerts_backlog", 1, MAX_QUEUE as u64, "held alerts"),
    bound("alerts_keep", 1, MAX_KEEP as u64, "rotated files"),
    bound("buffer_mb", 1, MAX_BUFFER_MB, "MiB per interface"),
    bound("pdns_ttl_floor", 0, MAX_TTL_SECS, "seconds"),
    bound("pdns_ttl_cap", 0, MAX_TTL_SECS, "seconds"),
    bound("realert_hours", 0, MAX_REALERT_HOURS, "hours"),
    bound("status_every", 0, MAX_STATUS_EVERY, "seconds"),
    bound("linger", 0, MAX_LINGER_SECS, "seconds"),
    bound(
        "capture_threads",
        0,
        crate::capture::live::MAX_CAPTURE_THREADS as u64,
        "capture threads per interface",
    ),
    bound("learn_min_hosts", 1, MAX_HOSTS as u64, "hosts"),
];

/// Checks a count option against its bound (`COUNT_BOUNDS`); the message does not name the
/// option, so a file can say `workers: …` and the command line `--workers …`.
pub fn check_count(key: &str, value: u64) -> Result<(), BoundError> {
    match COUNT_BOUNDS.iter().find(|b| b.key == key) {
        Some(b) if value < b.min => Err(BoundError::BelowMinimum { min: b.min }),
        Some(b) if value > b.max => Err(BoundError::AboveMaximum {
            max: b.max,
            what: b.what,
            value,
        }),
        _ => Ok(()),
    }
}

/// The same for a value given on the command line: `--workers must be …`.
pub fn check_flag(key: &str, value: u64) -> Result<(), OptionError> {
    check_count(key, value).map_err(|bound| OptionError::OutOfRange {
        flag: key.replace('_', "-"),
        bound,
    })
}

/// The keys of one `[[suppress]]` entry, each checked on its own.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuppressKeys {
    reason: Option<String>,
    expires: Option<String>,
    hosts: Option<Vec<String>>,
    vendors: Option<Vec<String>>,
    categories: Option<Vec<String>>,
    rules: Option<Vec<String>>,
}

type Spanned<'i> = toml::Spanned<toml::de::DeValue<'i>>;
type Key<'i> = toml::Spanned<toml::de::DeString<'i>>;

/// Deserialises `T` from a table holding only `key = value`: an unknown key or a value of
/// the wrong type is then a problem of that key alone, and every other key is still checked.
fn check_key<T: serde::de::DeserializeOwned>(
    key: &Key<'_>,
    value: &Spanned<'_>,
) -> Result<T, KeyError> {
    let mut one = toml::de::DeTable::new();
    one.insert(key.clone(), value.clone());
    let table = toml::Spanned::new(value.span(), toml::de::DeValue::Table(one));
    T::deserialize(toml::de::ValueDeserializer::from(table)).map_err(|e| {
        let msg = e.message().trim().to_string();
        match msg.strip_prefix("unknown field") {
            Some(rest) => KeyError::Unknown {
                rest: rest.to_string(),
            },
            None => KeyError::BadValue {
                key: key.get_ref().to_string(),
                message: msg,
            },
        }
    })
}

/// Validates configuration text: the configuration when it can be built, and every problem
/// found (none when it is valid).
pub fn check_config_text(text: &str) -> (LoadedConfig, Vec<ConfigProblem>) {
    let mut c = Checker {
        text,
        problems: Vec::new(),
        lines: Default::default(),
        table_lines: Default::default(),
    };
    let (doc, syntax) = toml::de::DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        // Past a syntax error the document's shape is a guess: report those alone.
        for e in syntax {
            let line = e.span().map_or(1, |s| c.line_at(s.start));
            c.problem(line, e.message().trim().to_string());
        }
        return (LoadedConfig::default(), c.problems);
    }
    let doc = doc.into_inner();
    let parts = c.split(&doc);
    let whole = toml::Spanned::new(0..text.len(), toml::de::DeValue::Table(parts.good));
    let file = match Settings::deserialize(toml::de::ValueDeserializer::from(whole)) {
        Ok(f) => f,
        Err(e) => {
            // Each key passed on its own; what fails now is a combination (none is known).
            c.problem(1, e.message().trim().to_string());
            Settings::default()
        }
    };
    c.check_lists(&doc, &file);
    c.check_counts(&file, &parts.live, &parts.replay);
    c.check_combinations(&file, &parts.live);
    let list = parts
        .suppress
        .iter()
        .map(|(line, table)| c.suppression(*line, table))
        .collect();
    // The text parsed, so it is a table; keep the start-only part as written.
    let mut fixed: toml::Table = text.parse().unwrap_or_default();
    for key in RELOADABLE_KEYS {
        fixed.remove(key);
    }
    (
        LoadedConfig {
            settings: file,
            live: parts.live,
            replay: parts.replay,
            suppressions: Suppressions(list),
            fixed,
            lines: c.lines,
            table_lines: c.table_lines,
        },
        c.problems,
    )
}

/// The document split by what reads each part: the top-level settings that passed their
/// own check, the `[live]` and `[replay]` tables, and the `[[suppress]]` entries with their
/// lines.
struct Parts<'i> {
    good: toml::de::DeTable<'i>,
    live: LiveSettings,
    replay: ReplaySettings,
    suppress: Vec<(usize, toml::de::DeTable<'i>)>,
}

/// What checking a file collects: its problems, and the line of every key.
struct Checker<'t> {
    text: &'t str,
    problems: Vec<ConfigProblem>,
    lines: std::collections::BTreeMap<String, usize>,
    /// The line of each key of the command tables (`[live]`, `[replay]`), by table.
    table_lines:
        std::collections::BTreeMap<&'static str, std::collections::BTreeMap<String, usize>>,
}

impl<'t> Checker<'t> {
    fn line_at(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn problem(&mut self, line: usize, problem: String) {
        self.problems.push(ConfigProblem { line, problem });
    }

    /// The line of a top-level key (1 when it is not there).
    fn at(&self, key: &str) -> usize {
        self.lines.get(key).copied().unwrap_or(1)
    }

    /// The line of a key of a command table, `[live]` or `[replay]` (the table's when the
    /// key is not there).
    fn table_at(&self, table: &str, key: &str) -> usize {
        self.table_lines
            .get(table)
            .and_then(|lines| lines.get(key))
            .copied()
            .unwrap_or_else(|| self.at(table))
    }

    /// Sorts the top-level keys; each setting is checked on its own, so one bad key does not
    /// hide the others.
    fn split<'i>(&mut self, doc: &toml::de::DeTable<'i>) -> Parts<'i> {
        let mut parts = Parts {
            good: toml::de::DeTable::new(),
            live: LiveSettings::default(),
            replay: ReplaySettings::default(),
            suppress: Vec::new(),
        };
        for (key, value) in doc.iter() {
            let line = self.line_at(key.span().start);
            self.lines.insert(key.get_ref().to_string(), line);
            match (key.get_ref().as_ref(), value.get_ref()) {
                ("live", toml::de::DeValue::Table(t)) => {
                    parts.live = self.sub_table("live", line, value.span(), t);
                }
                ("replay", toml::de::DeValue::Table(t)) => {
                    parts.replay = self.sub_table("replay", line, value.span(), t);
                }
                ("live" | "replay", _) => {
                    let table = key.get_ref();
                    self.problem(line, format!("{table}: must be a table ([{table}])"));
                }
                ("suppress", toml::de::DeValue::Array(entries)) => {
                    for entry in entries {
                        let at = self.line_at(entry.span().start);
                        match entry.get_ref() {
                            toml::de::DeValue::Table(t) => parts.suppress.push((at, t.clone())),
                            _ => self.problem(
                                at,
                                "suppress: each entry must be a table ([[suppress]])".into(),
                            ),
                        }
                    }
                }
                ("suppress", _) => self.problem(
                    line,
                    "suppress: must be written as [[suppress]] tables".into(),
                ),
                _ => match check_key::<Settings>(key, value) {
                    Ok(_) => {
                        parts.good.insert(key.clone(), value.clone());
                    }
                    Err(e) => self.problem(line, e.to_string()),
                },
            }
        }
        parts
    }

    /// A command's own table (`[live]`, `[replay]`), each key checked on its own (the line of
    /// each key is kept for `table_at`).
    fn sub_table<T: serde::de::DeserializeOwned + Default>(
        &mut self,
        name: &'static str,
        line: usize,
        span: std::ops::Range<usize>,
        t: &toml::de::DeTable<'_>,
    ) -> T {
        let mut ok = toml::de::DeTable::new();
        let mut lines = std::collections::BTreeMap::new();
        for (k, v) in t.iter() {
            let l = self.line_at(k.span().start);
            lines.insert(k.get_ref().to_string(), l);
            match check_key::<T>(k, v) {
                Ok(_) => {
                    ok.insert(k.clone(), v.clone());
                }
                Err(e) => self.problem(l, e.to_string()),
            }
        }
        let table = toml::Spanned::new(span, toml::de::DeValue::Table(ok));
        self.table_lines.insert(name, lines);
        T::deserialize(toml::de::ValueDeserializer::from(table)).unwrap_or_else(|e| {
            self.problem(line, format!("{name}: {}", e.message().trim()));
            T::default()
        })
    }

    /// The values that parse further: CIDRs (each at its own line), addresses, the syslog target.
    fn check_lists(&mut self, doc: &toml::de::DeTable<'_>, file: &Settings) {
        let items = doc
            .iter()
            .find(|(k, _)| k.get_ref() == "home_net")
            .map(|(_, v)| v.get_ref());
        if let (Some(nets), Some(toml::de::DeValue::Array(items))) = (&file.home_net, items) {
            for (net, item) in nets.iter().zip(items) {
                if parse_cidr(net).is_none() {
                    self.problem(
                        self.line_at(item.span().start),
                        format!("home_net: {net:?} is not a CIDR such as 10.0.0.0/8 or fd00::/8"),
                    );
                }
            }
            if nets.iter().all(|n| n.trim().is_empty()) {
                self.problem(
                    self.at("home_net"),
                    "home_net: is empty: give at least one CIDR".into(),
                );
            }
        }
        if let Some(Err(e)) = file
            .resolvers
            .as_ref()
            .map(|l| parse_resolvers(&l.join(",")))
        {
            self.problem(self.at("resolvers"), format!("resolvers: {e}"));
        }
        if let Some(Err(e)) = file
            .syslog
            .as_ref()
            .map(|t| t.parse::<crate::output::syslog::SyslogTarget>())
        {
            self.problem(self.at("syslog"), format!("syslog: {e}"));
        }
    }

    /// Every count against its bound (`COUNT_BOUNDS`): a key of the file, of [live] or of
    /// [replay].
    fn check_counts(&mut self, file: &Settings, live: &LiveSettings, replay: &ReplaySettings) {
        // The top level (no table name), then each command table.
        let tables = [
            (None, serde_json::to_value(file).unwrap_or_default()),
            (Some("live"), serde_json::to_value(live).unwrap_or_default()),
            (
                Some("replay"),
                serde_json::to_value(replay).unwrap_or_default(),
            ),
        ];
        for bound in COUNT_BOUNDS {
            let given = tables.iter().find_map(|(table, values)| {
                let v = values.get(bound.key).filter(|v| !v.is_null())?;
                let line = match table {
                    Some(table) => self.table_at(table, bound.key),
                    None => self.at(bound.key),
                };
                Some((v, line))
            });
            let Some((value, line)) = given else {
                continue;
            };
            if let Some(Err(e)) = value.as_u64().map(|v| check_count(bound.key, v)) {
                self.problem(line, format!("{}: {e}", bound.key));
            }
        }
    }

    /// Values that are wrong by themselves or together with another.
    fn check_combinations(&mut self, file: &Settings, live: &LiveSettings) {
        if file
            .alerts_max_mb
            .is_some_and(|m| !(m.is_finite() && m >= 0.0))
        {
            self.problem(
                self.at("alerts_max_mb"),
                "alerts_max_mb: must be 0 (never rotate) or a positive number of MiB".into(),
            );
        }
        if file
            .learn_min_specificity
            .is_some_and(|f| !(f > 0.0 && f <= 1.0))
        {
            self.problem(
                self.at("learn_min_specificity"),
                "learn_min_specificity: must be a fraction above 0 and at most 1".into(),
            );
        }
        if let (Some(floor), Some(cap)) = (file.pdns_ttl_floor, file.pdns_ttl_cap) {
            if floor > cap {
                self.problem(
                    self.at("pdns_ttl_floor"),
                    format!("pdns_ttl_floor: {floor} is larger than pdns_ttl_cap ({cap})"),
                );
            }
        }
        if file.vxlan_ports.as_ref().is_some_and(|p| p.contains(&0)) {
            self.problem(
                self.at("vxlan_ports"),
                "vxlan_ports: 0 is not a port".into(),
            );
        }
        let stdout =
            |p: &Option<std::path::PathBuf>| p.as_deref() == Some(std::path::Path::new("-"));
        if stdout(&file.alerts) && stdout(&file.events) {
            self.problem(
                self.at("events"),
                "events: alerts and events cannot both write to stdout".into(),
            );
        }
        if stdout(&file.report) && (stdout(&file.alerts) || stdout(&file.events)) {
            self.problem(
                self.at("report"),
                "report: the report and alerts or events cannot both write to stdout".into(),
            );
        }
        if live.interfaces.as_ref().is_some_and(|i| i.is_empty()) {
            self.problem(
                self.table_at("live", "interfaces"),
                "interfaces: is empty: name at least one interface".into(),
            );
        }
        self.check_empty_and_addresses(file, live);
    }

    /// Values the sensor would refuse at start that a file can hold: an empty path or name
    /// (`state = ""` failed with "inventory : cannot open"), and a metrics address that is not
    /// one.
    fn check_empty_and_addresses(&mut self, file: &Settings, live: &LiveSettings) {
        let path_text = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.as_os_str().len());
        let top = [
            ("rules", path_text(&file.rules)),
            ("alerts", path_text(&file.alerts)),
            ("events", path_text(&file.events)),
            ("report", path_text(&file.report)),
            ("state", file.state.as_ref().map(String::len)),
            ("metrics_addr", file.metrics_addr.as_ref().map(String::len)),
        ];
        for (key, len) in top {
            if len == Some(0) {
                let problem = format!("{key}: is empty: give a value, or leave the key out");
                self.problem(self.at(key), problem);
            }
        }
        if let Some(addr) = file.metrics_addr.as_deref().filter(|a| !a.is_empty()) {
            if !is_listen_address(addr) {
                self.problem(
                    self.at("metrics_addr"),
                    format!("metrics_addr: {addr:?} is not an address and port such as 127.0.0.1:9717 or [::1]:9717 (or off)"),
                );
            }
        }
        if live
            .interfaces
            .iter()
            .flatten()
            .any(|i| i.trim().is_empty())
        {
            self.problem(
                self.table_at("live", "interfaces"),
                "interfaces: an interface name is empty".into(),
            );
        }
        if live.user.as_deref().is_some_and(|u| u.trim().is_empty()) {
            self.problem(
                self.table_at("live", "user"),
                "user: is empty: name the user to run as, or leave the key out".into(),
            );
        }
    }

    /// A suppression's reason, which it must have (at its key's line, else the entry's).
    fn reason(
        &mut self,
        spec: &SuppressKeys,
        key_line: Option<usize>,
        entry_line: usize,
    ) -> String {
        let reason = spec.reason.clone().unwrap_or_default();
        if reason.trim().is_empty() && key_line.is_none() {
            self.problem(
                entry_line,
                "suppress: every suppression needs a reason (auditors will ask)".into(),
            );
        } else if reason.trim().is_empty() && spec.reason.is_some() {
            self.problem(
                key_line.unwrap_or(entry_line),
                "suppress: reason: is empty; every suppression needs a reason (auditors will ask)"
                    .into(),
            );
        }
        reason
    }

    /// One `[[suppress]]` entry starting at `entry_line`, each key checked on its own.
    fn suppression(&mut self, entry_line: usize, table: &toml::de::DeTable<'_>) -> Suppression {
        let mut ok = toml::de::DeTable::new();
        let mut key_lines: std::collections::BTreeMap<String, usize> = Default::default();
        // The line of each item of each list, by key: a problem points at the item.
        let mut item_lines: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
        for (k, v) in table.iter() {
            let l = self.line_at(k.span().start);
            key_lines.insert(k.get_ref().to_string(), l);
            if let toml::de::DeValue::Array(items) = v.get_ref() {
                let lines = items.iter().map(|i| self.line_at(i.span().start));
                item_lines.insert(k.get_ref().to_string(), lines.collect());
            }
            match check_key::<SuppressKeys>(k, v) {
                Ok(_) => {
                    ok.insert(k.clone(), v.clone());
                }
                Err(e) => self.problem(l, format!("suppress: {e}")),
            }
        }
        let spec = SuppressKeys::deserialize(toml::de::ValueDeserializer::from(
            toml::Spanned::new(0..0, toml::de::DeValue::Table(ok)),
        ))
        .unwrap_or_default();
        let key_at = |k: &str| key_lines.get(k).copied().unwrap_or(entry_line);
        let reason = self.reason(&spec, key_lines.get("reason").copied(), entry_line);
        let expires = spec.expires.as_ref().and_then(|e| {
            let t = parse_expiry(e);
            if t.is_none() {
                self.problem(
                    key_at("expires"),
                    format!("suppress: expires: {e:?} is not YYYY-MM-DD or an RFC 3339 time"),
                );
            }
            t
        });
        let mut hosts = Vec::new();
        for (i, h) in spec.hosts.iter().flatten().enumerate() {
            match parse_cidr(h) {
                Some(n) => hosts.push(n),
                None => self.problem(
                    item_lines
                        .get("hosts")
                        .and_then(|l| l.get(i))
                        .copied()
                        .unwrap_or_else(|| key_at("hosts")),
                    format!("suppress: hosts: {h:?} is not an address or CIDR"),
                ),
            }
        }
        let empty = |l: &Option<Vec<String>>| l.as_ref().is_none_or(Vec::is_empty);
        if empty(&spec.hosts)
            && empty(&spec.vendors)
            && empty(&spec.categories)
            && empty(&spec.rules)
            && !["hosts", "vendors", "categories", "rules"]
                .iter()
                .any(|k| key_lines.contains_key(*k) && spec_has(&spec, k).is_none())
        {
            self.problem(
                entry_line,
                "suppress: names nothing to suppress (give hosts, vendors, categories or rules)"
                    .into(),
            );
        }
        Suppression {
            reason,
            expires,
            hosts,
            vendors: spec.vendors.unwrap_or_default(),
            categories: spec.categories.unwrap_or_default(),
            rules: spec.rules.unwrap_or_default(),
            line: entry_line,
            item_lines: ItemLines {
                vendors: item_lines.remove("vendors").unwrap_or_default(),
                categories: item_lines.remove("categories").unwrap_or_default(),
                rules: item_lines.remove("rules").unwrap_or_default(),
            },
        }
    }
}

/// Whether a list key of a suppression was accepted with items (`Some(true)`), accepted empty
/// (`Some(false)`), or absent or refused (`None`; a refused key's problem is already reported).
fn spec_has(spec: &SuppressKeys, key: &str) -> Option<bool> {
    let list = match key {
        "hosts" => &spec.hosts,
        "vendors" => &spec.vendors,
        "categories" => &spec.categories,
        _ => &spec.rules,
    };
    list.as_ref().map(|l| !l.is_empty())
}

/// An address or a CIDR, truncated to its network.
fn parse_cidr(text: &str) -> Option<ipnet::IpNet> {
    crate::detect::rules::address_or_prefix(text.trim())
        .ok()
        .map(|n| n.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each label names one variant, as a metric label must.
    fn assert_unique(labels: &[&str]) {
        let set: std::collections::HashSet<_> = labels.iter().collect();
        assert_eq!(set.len(), labels.len(), "{labels:?}");
    }

    #[test]
    fn option_errors_have_unique_reasons_and_keep_their_words() {
        let home = parse_home_net("10.0.0.0/8, bogus").unwrap_err();
        assert_eq!(
            home.to_string(),
            "--home-net: \"bogus\" is not a CIDR such as 10.0.0.0/8 or fd00::/8"
        );
        let empty = parse_home_net(" , ").unwrap_err();
        assert_eq!(
            empty.to_string(),
            "--home-net is empty: give at least one CIDR"
        );
        let address = parse_resolvers("192.0.2.1,nope").unwrap_err();
        assert_eq!(address.to_string(), "\"nope\" is not an IP address");
        let flag = check_flag("workers", 0).unwrap_err();
        assert_eq!(flag.to_string(), "--workers must be at least 1");
        assert_unique(&[
            home.reason(),
            empty.reason(),
            address.reason(),
            flag.reason(),
        ]);
    }

    #[test]
    fn the_replay_table_holds_linger_checked_at_its_line() {
        let (loaded, problems) = check_config_text("workers = 1\n\n[replay]\nlinger = 30\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(loaded.replay.linger, Some(30));
        let (_, problems) = check_config_text("[replay]\n\nlinger = 99999999\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, 3);
        assert!(
            problems[0].problem.contains("linger: must be at most"),
            "{problems:?}"
        );
        let (_, problems) = check_config_text("[replay]\nlingr = 3\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, 2);
        let (_, problems) = check_config_text("replay = 3\n");
        assert_eq!(problems[0].problem, "replay: must be a table ([replay])");
        // A key of the top level is not one of the table's.
        let (_, problems) = check_config_text("linger = 3\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn empty_values_and_a_metrics_address_that_is_none_are_problems_at_their_line() {
        let text = "state = \"\"\nalerts = \"\"\nmetrics_addr = \"nonsense\"\n\n[live]\ninterfaces = [\"eth1\", \"\"]\nuser = \"\"\n";
        let (_, problems) = check_config_text(text);
        let mut got: Vec<(usize, &str)> = problems
            .iter()
            .map(|p| (p.line, p.problem.split(':').next().unwrap_or_default()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (1, "state"),
                (2, "alerts"),
                (3, "metrics_addr"),
                (6, "interfaces"),
                (7, "user")
            ],
            "{problems:?}"
        );
        for good in [
            "127.0.0.1:9717",
            "[::1]:9717",
            "localhost:9717",
            "off",
            "0.0.0.0:0",
        ] {
            assert!(is_listen_address(good), "{good}");
        }
        for bad in ["nonsense", "localhost:99999", ":9717", "[::1]", "1.2.3.4"] {
            assert!(!is_listen_address(bad), "{bad}");
        }
    }

    #[test]
    fn bound_errors_have_unique_reasons_and_keep_their_words() {
        let low = check_count("learn_min_hosts", 0).unwrap_err();
        assert_eq!(low.to_string(), "must be at least 1");
        let high = check_count("workers", u64::MAX).unwrap_err();
        assert_eq!(
            high.to_string(),
            format!(
                "must be at most {MAX_WORKERS} (worker threads), not {}",
                u64::MAX
            )
        );
        assert_unique(&[low.reason(), high.reason()]);
    }

    #[test]
    fn rules_errors_have_unique_reasons_and_keep_their_words() {
        let load = RulesError::Load {
            rules: "/etc/vendorwatch/rules".into(),
            problems: vec!["a.toml: one".into(), "b.toml: two".into()],
            check: RuleSource::Path("/etc/vendorwatch/rules".into()).check_command(),
        };
        assert_eq!(
            load.to_string(),
            "the rules in /etc/vendorwatch/rules have 2 problem(s):\n  a.toml: one\n  b.toml: two\n\
             fix them and check again with `vendorwatch rules check /etc/vendorwatch/rules`"
        );
        let Err(compile) = load_rules(&RuleSource::Embedded, Some(&["nobody".to_string()])) else {
            panic!("a vendor without a pack must be refused");
        };
        assert!(
            compile
                .to_string()
                .starts_with("no rule pack for vendor \"nobody\" (packs: "),
            "{compile}"
        );
        assert_unique(&[load.reason(), compile.reason()]);
    }

    #[test]
    fn key_errors_have_unique_reasons_and_keep_their_words() {
        let unknown = KeyError::Unknown {
            rest: " `wrokers`, expected `workers`".into(),
        };
        assert_eq!(
            unknown.to_string(),
            "unknown key `wrokers`, expected `workers`"
        );
        let bad = KeyError::BadValue {
            key: "workers".into(),
            message: "invalid type: string \"x\", expected usize".into(),
        };
        assert_eq!(
            bad.to_string(),
            "workers: invalid type: string \"x\", expected usize"
        );
        assert_unique(&[unknown.reason(), bad.reason()]);
    }

    #[test]
    fn config_file_problems_name_the_line() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "vendors = [\"kaspersky\"]\n\n[[suppress]]\nreason = \"lab\"\nhosts = [\"10.0.0.0/33\"]\nexpires = \"someday\"\n").expect("write");
        let errs = load_config(&p).expect_err("invalid");
        assert_eq!(errs.len(), 2, "{errs:?}");
        // Each at the line of the value that is wrong, not at the [[suppress]] header.
        assert!(errs[0].contains("c.toml:5: suppress: hosts:"), "{errs:?}");
        assert!(errs[1].contains("c.toml:6: suppress: expires:"), "{errs:?}");
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
        assert_eq!(c.settings.home_net, Some(vec!["10.0.0.0/8".to_string()]));
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
    fn every_problem_is_reported_in_line_order_in_the_files_terms() {
        let text = "vendorz = [\"kaspersky\"]\nworkers = 100000\nhome_net = [\"10.0.0.0/8\",\n  \"10.1.2.3/40\"]\n\
                    max_flows = \"many\"\nalerts_keep = 100000000\n\n[live]\nbuffer_mb = 99999\ninterface = [\"eth0\"]\n\n\
                    [[suppress]]\nreason = \"lab\"\nhosts = [\"10.9.0.0/16\"]\nexpires = \"2027-02-30\"\ncolour = \"red\"\n";
        let errs = parse_config("c.toml", text).expect_err("invalid");
        let lines: Vec<&str> = errs
            .iter()
            .map(|e| e.split(": ").next().unwrap_or_default())
            .collect();
        assert_eq!(
            lines,
            [
                "c.toml:1",
                "c.toml:2",
                "c.toml:4",
                "c.toml:5",
                "c.toml:6",
                "c.toml:9",
                "c.toml:10",
                "c.toml:15",
                "c.toml:16"
            ],
            "{errs:#?}"
        );
        assert!(errs[0].contains("unknown key `vendorz`"), "{errs:?}");
        assert!(
            errs[1].contains("workers: must be at most 1024"),
            "{errs:?}"
        );
        assert!(
            errs[2].contains("home_net: \"10.1.2.3/40\" is not a CIDR"),
            "{errs:?}"
        );
        assert!(errs[3].contains("max_flows: invalid type"), "{errs:?}");
        assert!(
            errs[4].contains("alerts_keep: must be at most 1000"),
            "{errs:?}"
        );
        assert!(
            errs[5].contains("buffer_mb: must be at most 2047"),
            "{errs:?}"
        );
        assert!(errs[6].contains("unknown key `interface`"), "{errs:?}");
        assert!(
            errs[7].contains("suppress: expires: \"2027-02-30\""),
            "{errs:?}"
        );
        assert!(
            errs[8].contains("suppress: unknown key `colour`"),
            "{errs:?}"
        );
        assert!(errs.iter().all(|e| !e.contains("--")), "{errs:?}");
    }

    #[test]
    fn a_suppressions_unknown_names_are_problems_at_the_line_of_each_item() {
        let text = "[[suppress]]\nreason = \"lab\"\nvendors = [\n  \"hikvision\",\n  \"hikvison\",\n]\n\
                    categories = [\"ksn\", \"kns\"]\nrules = [\"zte.suspected.learned-fingerprint\"]\n";
        let (loaded, problems) = check_config_text(text);
        assert!(problems.is_empty(), "{problems:?}");
        let source = RuleSource::Embedded;
        let known = source.known(&source.load().expect("embedded packs load"));
        let got = check_suppressions(&loaded.suppressions, &known);
        let lines: Vec<usize> = got.iter().map(|p| p.line).collect();
        assert_eq!(lines, [5, 7], "{got:?}");
        assert!(
            got[0].problem.contains("did you mean \"hikvision\"?"),
            "{got:?}"
        );
        assert!(got[1].problem.contains("did you mean \"ksn\"?"), "{got:?}");
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
