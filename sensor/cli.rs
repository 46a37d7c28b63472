//! The command line as the user typed it (clap), and the commands that run on it.
//!
//! Each command turns its raw arguments into a validated configuration (`config`) before
//! doing anything, so every usage problem is found up front and reported with exit code 2.

mod fingerprints;

use crate::capture::inputs;
use crate::capture::live;
use crate::config::{self, RuleSource, RunConfig, DEFAULT_HOME_NET};
use crate::detect::{DetectLimits, Detector, RuleSet};
use crate::extract::ExtractorLimits;
use crate::hosts::HostTable;
use crate::metrics::exporter;
use crate::metrics::Counters;
use crate::output;
use crate::pipeline::{self, Progress, Shared, SharedWriter, WhenFull};
use crate::time::Timestamp;
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Writes a line to stdout; a closed pipe (`vendorwatch hosts | head`) is not an error.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Exit codes (documented in the README).
pub mod exit {
    /// Everything read, nothing wrong.
    pub const OK: i32 = 0;
    /// Some input could not be read (or an output could not be written); the rest was processed.
    pub const PARTIAL: i32 = 1;
    /// Nothing usable: usage error, no readable input, broken rules.
    pub const UNUSABLE: i32 = 2;
}

#[derive(Parser, Debug)]
#[command(
    name = "vendorwatch",
    version,
    about = "Passive sensor that finds the hosts whose software talks to banned vendors (Kaspersky first).",
    long_about = "vendorwatch reads captured traffic, extracts DNS names, TLS server names and HTTP hosts, \
matches them against rule packs of vendor endpoints, and reports every internal host with its evidence: \
one alert per host, vendor and category, a host report, and a summary.",
    after_help = "Exit codes: 0 all input read; 1 some input unreadable or an output failed (the rest was \
processed); 2 nothing usable (usage error, no readable input, broken rules).\n\
Examples:\n  vendorwatch replay pcaps/tls.pcap\n  vendorwatch replay --alerts alerts.jsonl --report hosts.json /captures/\n  \
tcpdump -i eth0 -w - | vendorwatch replay -\n  vendorwatch rules match dnl-01.geo.kaspersky.com"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Replay pcap/pcapng captures (files, directories of rotated captures, or - for stdin).
    Replay(ReplayArgs),
    /// Capture live on one or more interfaces until SIGINT/SIGTERM, then write everything pending.
    Live(LiveArgs),
    /// Inspect and test the rule packs.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Write the compliance report: a self-contained HTML page (no network needed to open it).
    Report(ReportArgs),
    /// Check a configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List the host inventory (the `--state` database of earlier runs).
    Hosts(HostsArgs),
    /// Client fingerprints learned from visible vendor traffic: list the candidates, or
    /// export them as a rule pack to review and deploy.
    Fingerprints(fingerprints::FingerprintsArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RuleArgs {
    /// Rule pack file or directory of *.toml packs [default: the packs embedded in the binary].
    #[arg(long, value_name = "PATH")]
    pub rules: Option<PathBuf>,
    /// Vendors whose packs are active, comma-separated [default: the packs enabled by default: kaspersky].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub vendors: Option<Vec<String>>,
}

/// Options shared by `replay` and `live`.
#[derive(Args, Debug)]
pub struct CommonArgs {
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Write alerts as JSON Lines to PATH (- for stdout): one per host, vendor and category.
    #[arg(long, value_name = "PATH|-")]
    pub alerts: Option<PathBuf>,
    /// Rotate the alerts file before it grows past this many MiB (decimals allowed, 0: never):
    /// PATH becomes PATH.1 (PATH.1 becomes PATH.2, …) and a new PATH is started [default: 0].
    #[arg(long, value_name = "MIB")]
    pub alerts_max_mb: Option<f64>,
    /// Rotated alerts files kept (PATH.1 … PATH.K); the oldest is removed [default: 5].
    #[arg(long, value_name = "K")]
    pub alerts_keep: Option<usize>,
    /// When the alerts file is fsynced: always (after every alert), interval (at most once a
    /// second) or never (left to the OS) [default: always].
    #[arg(long, value_name = "always|interval|never")]
    pub alerts_fsync: Option<crate::output::alertfile::FsyncPolicy>,
    /// Alerts held in memory while the alerts file cannot be written (a full disk), written in
    /// order once it can; beyond this many they are dropped and counted [default: 10000].
    #[arg(long, value_name = "N")]
    pub alerts_backlog: Option<usize>,
    /// Write the host report (JSON) to PATH at the end.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// Write every extracted name, matched or not, as JSON Lines to PATH (- for stdout).
    #[arg(long, value_name = "PATH|-")]
    pub events: Option<PathBuf>,
    /// Internal networks whose hosts are reported, comma-separated CIDRs
    /// [default: RFC 1918, 100.64.0.0/10, fc00::/7, fe80::/10].
    #[arg(long, value_name = "CIDR,...")]
    pub home_net: Option<String>,
    /// Home-net resolvers, comma-separated addresses: they hold the resolver role from the
    /// start (without it, a host earns the role by answering other home-net hosts' queries).
    #[arg(long, value_name = "IP,...")]
    pub resolvers: Option<String>,
    /// The persistent host inventory (SQLite), or `none`
    /// [default: none for replay, /var/lib/vendorwatch/inventory.db for live].
    #[arg(long, value_name = "PATH|none", env = "VENDORWATCH_STATE")]
    pub state: Option<String>,
    /// Alert again for a host still talking to a vendor this many hours after its last alert
    /// (0: never) [default: 24].
    #[arg(long, value_name = "HOURS")]
    pub realert_hours: Option<u64>,
    /// Configuration file (TOML): every option here, named with underscores (max_flows),
    /// plus [live] settings and [[suppress]] entries; options given on the command line win.
    #[arg(long, value_name = "PATH", env = "VENDORWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Also reload rules and suppressions when the rule files or the configuration file change
    /// (SIGHUP always reloads them). A broken file keeps the rules in force.
    #[arg(long)]
    pub watch: bool,
    /// Worker threads [default: cores - 1, at least 1].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Flows tracked per worker; beyond it the longest-idle are evicted (and counted) [default: 262144].
    #[arg(long, value_name = "N")]
    pub max_flows: Option<usize>,
    /// MiB all TCP reassembly buffers of one worker may hold; beyond it the flows that
    /// started buffering first give theirs up (counted, no longer inspected) [default: 64].
    #[arg(long, value_name = "MIB")]
    pub reassembly_mb: Option<usize>,
    /// HTTP requests read per connection (keep-alive and proxy connections, request bodies
    /// passed over); beyond it the connection is no longer inspected (counted) [default: 1000].
    #[arg(long, value_name = "N")]
    pub http_max_requests: Option<u32>,
    /// Hosts in the inventory; findings for new hosts beyond it are shed and counted
    /// (known hosts keep being updated) [default: 100000].
    #[arg(long, value_name = "N")]
    pub max_hosts: Option<usize>,
    /// Fingerprint learning: distinct hosts that must have used a client fingerprint on a
    /// vendor's visible flows before it is suspected on hidden-name flows [default: 5].
    #[arg(long, value_name = "N")]
    pub learn_min_hosts: Option<usize>,
    /// Fingerprint learning: the share of a fingerprint's visible-name flows (and hosts)
    /// that must be the vendor's, between 0 and 1 [default: 0.95].
    #[arg(long, value_name = "FRACTION")]
    pub learn_min_specificity: Option<f64>,
    /// Fingerprint learning: packet time the vendor flows must span before the fingerprint
    /// is used [default: 3600].
    #[arg(long, value_name = "SECS")]
    pub learn_min_seconds: Option<u64>,
    /// Passive DNS: addresses remembered from answers to vendor names (when full, expired
    /// entries go first, then the oldest answers; counted) [default: 100000].
    #[arg(long, value_name = "N")]
    pub pdns_max: Option<usize>,
    /// Passive DNS: keep an answer at least this long, whatever its TTL (clients cache longer
    /// than TTLs say) [default: 600].
    #[arg(long, value_name = "SECS")]
    pub pdns_ttl_floor: Option<u64>,
    /// Passive DNS: keep an answer at most this long [default: 86400].
    #[arg(long, value_name = "SECS")]
    pub pdns_ttl_cap: Option<u64>,
    /// Also send alerts to a syslog receiver, RFC 5424: udp://HOST:PORT, tcp://HOST:PORT
    /// (octet-counted) or unix:PATH. Never blocks capture: a bounded queue, reconnects, drops counted.
    #[arg(long, value_name = "TARGET")]
    pub syslog: Option<String>,
    /// Alerts queued for syslog while the receiver is unreachable [default: 10000].
    #[arg(long, value_name = "N")]
    pub syslog_queue: Option<usize>,
    /// UDP ports carrying VXLAN, comma-separated (add 8472 for Linux's legacy default) [default: 4789].
    #[arg(long, value_name = "PORT,...", value_delimiter = ',')]
    pub vxlan_ports: Option<Vec<u16>>,
    /// Serve Prometheus metrics, /healthz and /api/hosts on ADDR, or `off` [default: 127.0.0.1:9717 for live, off for replay].
    #[arg(long, value_name = "ADDR|off")]
    pub metrics_addr: Option<String>,
    /// Print no summary, no progress bar and no status line.
    #[arg(long, short)]
    pub quiet: bool,
    /// Do not install the seccomp filter that, once start-up is over, refuses the system calls
    /// an exploit would need (exec, ptrace, mount, namespaces, kernel modules, bpf, new raw
    /// sockets, ...). Only for debugging under strace or gdb (they need ptrace of the sensor's
    /// own threads, or see EPERM where they expect success) or a libc that makes one of those
    /// calls in normal operation.
    #[arg(long)]
    pub no_seccomp: bool,
    /// Read TCP segments whatever their IP and TCP checksums say. By default a segment with a
    /// wrong checksum, in a direction whose checksums were right so far, is not read (the
    /// receiver dropped it: an evader's insertion), and a direction whose checksums are never
    /// right (captured on a host with checksum offload) is read as it is.
    #[arg(long)]
    pub ignore_checksums: bool,
    #[command(flatten)]
    pub agency: crate::cli_agency::AgencyArgs,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Capture files (pcap or pcapng), directories (read in natural order), or - for stdin.
    #[arg(required = true, value_name = "PCAP|DIR|-")]
    pub inputs: Vec<String>,
    /// Keep serving metrics this long after the replay ends (for dashboards and tests).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub linger: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct LiveArgs {
    /// Interface to capture on (a span port or tap); repeat for several, one capture thread
    /// each (or `interfaces` in the [live] table of --config).
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub interfaces: Vec<String>,
    /// BPF filter, compiled by libpcap (e.g. "not port 22").
    #[arg(long, value_name = "EXPR")]
    pub bpf: Option<String>,
    /// Kernel capture buffer per interface, in MiB (raise it if the kernel drops packets) [default: 64].
    #[arg(long, value_name = "MIB")]
    pub buffer_mb: Option<u32>,
    /// Do not put the interface in promiscuous mode.
    #[arg(long)]
    pub no_promisc: bool,
    /// After the interfaces and outputs are open, run as this user and keep no capabilities
    /// [default when started as root: vendorwatch, if that user exists].
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Seconds between status lines on a terminal (packets, drops per stage, alerts) [default: 10].
    #[arg(long, value_name = "SECS")]
    pub status_every: Option<u64>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct HostsArgs {
    /// The inventory to read.
    #[arg(long, value_name = "PATH", env = "VENDORWATCH_STATE", default_value = DEFAULT_REPLAY_STATE)]
    pub state: PathBuf,
    #[arg(long, value_enum, default_value_t = HostsFormat::Table)]
    pub format: HostsFormat,
    /// Only detections of this vendor.
    #[arg(long, value_name = "VENDOR")]
    pub vendor: Option<String>,
    /// Only detections of this category.
    #[arg(long, value_name = "CATEGORY")]
    pub category: Option<String>,
    /// Only detections seen since this time (YYYY-MM-DD or RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only hosts not seen for at least this many days (cleaned up, or just quiet).
    #[arg(long, value_name = "DAYS")]
    pub stale: Option<u64>,
    /// "Now" for --stale (YYYY-MM-DD or RFC 3339) [default: the current time].
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    #[command(flatten)]
    pub agency: crate::cli_agency::AgencyQueryArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostsFormat {
    Table,
    Json,
    Csv,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate a configuration file (every problem with its line); exit 1 on any.
    Check {
        /// The file [default: /etc/vendorwatch/vendorwatch.toml].
        path: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Where to write the HTML page.
    #[arg(long, value_name = "PATH")]
    pub html: PathBuf,
    /// Render this host report (`--report` of `replay` or `live`, or `/api/hosts`) instead of
    /// the inventory.
    #[arg(long, value_name = "HOSTS.json")]
    pub from: Option<PathBuf>,
    /// The inventory to render (the `--state` of earlier runs).
    #[arg(long, value_name = "PATH", env = "VENDORWATCH_STATE", default_value = DEFAULT_REPLAY_STATE)]
    pub state: PathBuf,
    /// Hosts not seen for this many days are listed as gone quiet.
    #[arg(long, value_name = "DAYS", default_value_t = 7)]
    pub stale_days: u64,
    /// The report's "now" (RFC 3339) [default: the report's last packet, else the current time].
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    #[command(flatten)]
    pub agency: crate::cli_agency::AgencyQueryArgs,
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
    /// Show every rule a name, address or port hits, and why (exit 0 on a hit, 1 on none).
    Match {
        /// A DNS name, an IP address, or a port (443, 13000/tcp, 15000/udp).
        value: String,
        #[command(flatten)]
        rules: RuleArgs,
    },
}

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let (config, command) = match cli.command {
        Command::Rules(cmd) => return run_rules(cmd),
        Command::Report(args) => return run_report(args),
        Command::Hosts(args) => return run_hosts(args),
        Command::Fingerprints(args) => return fingerprints::run(args),
        Command::Config(ConfigCommand::Check { path }) => return run_config_check(path),
        Command::Replay(args) => {
            let metrics = args.common.metrics_addr.clone();
            (
                run_config(args.common, metrics, &REPLAY_DEFAULTS),
                Mode::Replay(args.inputs, args.linger),
            )
        }
        Command::Live(args) => {
            let metrics = args.common.metrics_addr.clone();
            let command = Mode::Live(LiveOverrides {
                interfaces: args.interfaces,
                bpf: args.bpf,
                buffer_mb: args.buffer_mb,
                no_promisc: args.no_promisc,
                status_every: args.status_every,
                user: args.user,
            });
            (run_config(args.common, metrics, &LIVE_DEFAULTS), command)
        }
    };
    let (cfg, file) = match config {
        Ok(cfg) => cfg,
        Err(msg) => {
            eprintln!("vendorwatch: {msg}");
            return exit::UNUSABLE;
        }
    };
    match command {
        Mode::Replay(inputs, linger) => run_replay(cfg, &inputs, linger),
        Mode::Live(given) => {
            let from_file = &file.live;
            let live = LiveSettings {
                interfaces: if given.interfaces.is_empty() {
                    from_file.interfaces.clone().unwrap_or_default()
                } else {
                    given.interfaces
                },
                bpf: given.bpf.or_else(|| from_file.bpf.clone()),
                buffer_mb: given.buffer_mb.or(from_file.buffer_mb).unwrap_or(64),
                promiscuous: !given.no_promisc && from_file.promiscuous.unwrap_or(true),
                status_every: given.status_every.or(from_file.status_every).unwrap_or(10),
                user: given.user.or_else(|| from_file.user.clone()),
            };
            for (key, value) in [
                ("buffer_mb", u64::from(live.buffer_mb)),
                ("status_every", live.status_every),
            ] {
                if let Err(e) = config::check_flag(key, value) {
                    eprintln!("vendorwatch: {e}");
                    return exit::UNUSABLE;
                }
            }
            if live.interfaces.is_empty() {
                eprintln!("vendorwatch: live needs an interface: -i IFACE (repeatable), or interfaces = [\"eth1\"] in the [live] table of --config");
                return exit::UNUSABLE;
            }
            run_live(cfg, live)
        }
    }
}

/// Where `hosts` and `report` look for an inventory unless `--state` says otherwise (a replay
/// keeps one only when asked: `--state PATH` or `state` in the configuration).
pub const DEFAULT_REPLAY_STATE: &str = "vendorwatch.db";
pub const DEFAULT_LIVE_STATE: &str = "/var/lib/vendorwatch/inventory.db";

/// Where `live` serves metrics unless told otherwise: loopback only.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9717";

/// Defaults that differ between `replay` and `live`.
struct CommandDefaults {
    /// `None`: no inventory unless asked for.
    state: Option<&'static str>,
    metrics_addr: Option<&'static str>,
}

const REPLAY_DEFAULTS: CommandDefaults = CommandDefaults {
    state: None,
    metrics_addr: None,
};

const LIVE_DEFAULTS: CommandDefaults = CommandDefaults {
    state: Some(DEFAULT_LIVE_STATE),
    metrics_addr: Some(DEFAULT_METRICS_ADDR),
};

enum Mode {
    Replay(Vec<String>, u64),
    Live(LiveOverrides),
}

/// `live`'s own options as given on the command line (merged with the file's [live] table).
struct LiveOverrides {
    interfaces: Vec<String>,
    bpf: Option<String>,
    buffer_mb: Option<u32>,
    no_promisc: bool,
    status_every: Option<u64>,
    user: Option<String>,
}

struct LiveSettings {
    interfaces: Vec<String>,
    bpf: Option<String>,
    buffer_mb: u32,
    promiscuous: bool,
    status_every: u64,
    user: Option<String>,
}

fn rule_source(path: &Option<PathBuf>) -> RuleSource {
    path.clone().map_or(RuleSource::Embedded, RuleSource::Path)
}

/// Builds the validated configuration: each option from the command line if given, else from
/// the configuration file, else its default. Returns the file too (live reads its [live] table).
fn run_config(
    args: CommonArgs,
    metrics_addr: Option<String>,
    defaults: &CommandDefaults,
) -> Result<(RunConfig, config::LoadedConfig), String> {
    let file = match &args.config {
        Some(p) => config::load_config(p).map_err(|errs| {
            format!(
                "the configuration has {} problem(s):\n  {}\ncheck it with `vendorwatch config check {}`",
                errs.len(),
                errs.join("\n  "),
                crate::operator_input::shown(p)
            )
        })?,
        None => config::LoadedConfig::default(),
    };
    let vxlan_ports = args
        .vxlan_ports
        .clone()
        .or_else(|| file.settings.vxlan_ports.clone())
        .unwrap_or_else(|| vec![crate::decode::tunnel::VXLAN_PORT]);
    if vxlan_ports.contains(&0) {
        return Err("--vxlan-ports: 0 is not a port".into());
    }
    crate::decode::tunnel::set_vxlan_ports(vxlan_ports);
    let syslog = match args.syslog.as_ref().or(file.settings.syslog.as_ref()) {
        Some(t) => {
            let target: crate::output::syslog::SyslogTarget =
                t.parse().map_err(|e| format!("--syslog: {e}"))?;
            let mut c = crate::output::syslog::SyslogConfig::new(target);
            c.capacity = args
                .syslog_queue
                .or(file.settings.syslog_queue)
                .unwrap_or(crate::output::syslog::DEFAULT_CAPACITY);
            config::check_flag("syslog_queue", c.capacity as u64)?;
            Some(c)
        }
        None => None,
    };
    let rules_path = args.rules.rules.clone().or(file.settings.rules.clone());
    let vendors = args.rules.vendors.clone().or(file.settings.vendors.clone());
    let rules = config::load_rules(&rule_source(&rules_path), vendors.as_deref())?;
    let home_net = config::parse_home_net(
        args.home_net
            .as_deref()
            .or(file.home_net.as_deref())
            .unwrap_or(DEFAULT_HOME_NET),
    )?;
    // Values from the file were checked when it was loaded; these are the command line's.
    let pinned_resolvers = match (&args.resolvers, &file.settings.resolvers) {
        (Some(list), _) => {
            config::parse_resolvers(list).map_err(|e| format!("--resolvers: {e}"))?
        }
        (None, Some(list)) => {
            config::parse_resolvers(&list.join(",")).map_err(|e| format!("resolvers: {e}"))?
        }
        (None, None) => Vec::new(),
    };
    if let Some(outside) = pinned_resolvers.iter().find(|ip| !home_net.contains(**ip)) {
        return Err(format!(
            "{} {outside} is not in the home net (only home-net hosts hold the resolver role)",
            if args.resolvers.is_some() {
                "--resolvers:"
            } else {
                "resolvers:"
            }
        ));
    }
    let workers = args.workers.or(file.settings.workers);
    if let Some(w) = workers {
        config::check_flag("workers", w as u64)?;
    }
    let max_flows = args
        .max_flows
        .or(file.settings.max_flows)
        .unwrap_or(ExtractorLimits::default().max_flows);
    config::check_flag("max_flows", max_flows as u64)?;
    let reassembly_mb = args
        .reassembly_mb
        .or(file.settings.reassembly_mb)
        .unwrap_or(64);
    config::check_flag("reassembly_mb", reassembly_mb as u64)?;
    let http_max_requests = args
        .http_max_requests
        .or(file.settings.http_max_requests)
        .unwrap_or(crate::extract::flow::HTTP_MAX_REQUESTS);
    config::check_flag("http_max_requests", u64::from(http_max_requests))?;
    let max_hosts = args
        .max_hosts
        .or(file.settings.max_hosts)
        .unwrap_or(crate::hosts::DEFAULT_MAX_HOSTS);
    config::check_flag("max_hosts", max_hosts as u64)?;
    let learn_defaults = crate::detect::fingerprints::LearnSettings::default();
    let learn = crate::detect::fingerprints::LearnSettings {
        min_hosts: args
            .learn_min_hosts
            .or(file.settings.learn_min_hosts)
            .unwrap_or(learn_defaults.min_hosts),
        min_specificity: args
            .learn_min_specificity
            .or(file.settings.learn_min_specificity)
            .unwrap_or(learn_defaults.min_specificity),
        min_observe_secs: args
            .learn_min_seconds
            .or(file.settings.learn_min_seconds)
            .unwrap_or(learn_defaults.min_observe_secs),
    };
    config::check_flag("learn_min_hosts", learn.min_hosts as u64)?;
    if !(learn.min_specificity > 0.0 && learn.min_specificity <= 1.0) {
        return Err("--learn-min-specificity must be a fraction above 0 and at most 1".into());
    }
    let detect_defaults = DetectLimits::default();
    let detect_limits = DetectLimits {
        pdns_max_entries: args
            .pdns_max
            .or(file.settings.pdns_max)
            .unwrap_or(detect_defaults.pdns_max_entries),
        pdns_ttl_floor_secs: args
            .pdns_ttl_floor
            .or(file.settings.pdns_ttl_floor)
            .unwrap_or(detect_defaults.pdns_ttl_floor_secs),
        pdns_ttl_cap_secs: args
            .pdns_ttl_cap
            .or(file.settings.pdns_ttl_cap)
            .unwrap_or(detect_defaults.pdns_ttl_cap_secs),
        ..detect_defaults
    };
    config::check_flag("pdns_max", detect_limits.pdns_max_entries as u64)?;
    config::check_flag("pdns_ttl_floor", detect_limits.pdns_ttl_floor_secs)?;
    config::check_flag("pdns_ttl_cap", detect_limits.pdns_ttl_cap_secs)?;
    if detect_limits.pdns_ttl_floor_secs > detect_limits.pdns_ttl_cap_secs {
        return Err(format!(
            "--pdns-ttl-floor ({}) is larger than --pdns-ttl-cap ({})",
            detect_limits.pdns_ttl_floor_secs, detect_limits.pdns_ttl_cap_secs
        ));
    }
    let alerts = args.alerts.or_else(|| file.settings.alerts.clone());
    let events = args.events.or_else(|| file.settings.events.clone());
    let alerts_max_mb = args
        .alerts_max_mb
        .or(file.settings.alerts_max_mb)
        .unwrap_or(0.0);
    if !(alerts_max_mb.is_finite() && alerts_max_mb >= 0.0) {
        return Err("--alerts-max-mb must be 0 (never rotate) or a positive number of MiB".into());
    }
    let fsync = match (args.alerts_fsync, &file.settings.alerts_fsync) {
        (Some(f), _) => f,
        (None, Some(text)) => text.parse().map_err(|e| format!("alerts_fsync: {e}"))?,
        (None, None) => crate::output::alertfile::FsyncPolicy::default(),
    };
    let alerts_file = crate::output::alertfile::AlertFileOptions {
        // `as` saturates: an absurdly large size means "never in practice".
        max_bytes: (alerts_max_mb * 1024.0 * 1024.0).ceil() as u64,
        keep: args
            .alerts_keep
            .or(file.settings.alerts_keep)
            .unwrap_or(crate::output::alertfile::DEFAULT_KEEP),
        fsync,
        backlog: args
            .alerts_backlog
            .or(file.settings.alerts_backlog)
            .unwrap_or(crate::output::alertfile::DEFAULT_BACKLOG),
        append: false,
    };
    if alerts_file.max_bytes > 0 && alerts.as_deref() == Some(Path::new("-")) {
        return Err("--alerts-max-mb rotates a file; stdout cannot be rotated".into());
    }
    if alerts_file.keep == 0 {
        return Err(
            "--alerts-keep must be at least 1 (use --alerts-max-mb 0 to never rotate)".into(),
        );
    }
    config::check_flag("alerts_keep", alerts_file.keep as u64)?;
    config::check_flag("alerts_backlog", alerts_file.backlog as u64)?;
    let stdout_users = [&alerts, &events]
        .iter()
        .filter(|o| o.as_deref() == Some(Path::new("-")))
        .count();
    if stdout_users > 1 {
        return Err("--alerts and --events cannot both write to stdout".into());
    }
    let state = args
        .state
        .or_else(|| file.settings.state.clone())
        .or_else(|| defaults.state.map(str::to_string))
        .unwrap_or_else(|| "none".to_string());
    let (agency, state, temporary_spool) = crate::cli_agency::agency_config(
        &args.agency,
        &file.settings,
        match state.as_str() {
            "none" => None,
            path => Some(PathBuf::from(path)),
        },
    )?;
    let realert_hours = args
        .realert_hours
        .or(file.settings.realert_hours)
        .unwrap_or(24);
    config::check_flag("realert_hours", realert_hours)?;
    let cfg = RunConfig {
        encrypted_dns: crate::detect::resolvers::EncryptedDns::embedded()?,
        rules: Arc::new(rules),
        home_net,
        pinned_resolvers,
        workers: workers.unwrap_or_else(config::default_workers),
        alerts,
        alerts_file,
        report: args.report.or_else(|| file.settings.report.clone()),
        events,
        extract_limits: ExtractorLimits {
            max_flows,
            reassembly_budget: reassembly_mb << 20,
            http_max_requests,
            verify_checksums: !(args.ignore_checksums
                || file.settings.ignore_checksums.unwrap_or(false)),
            ..ExtractorLimits::default()
        },
        detect_limits,
        quiet: args.quiet || file.settings.quiet.unwrap_or(false),
        metrics_addr: metrics_addr
            .or_else(|| file.settings.metrics_addr.clone())
            .or_else(|| defaults.metrics_addr.map(str::to_string))
            .filter(|a| a != "off"),
        syslog,
        suppressions: file.suppressions.clone(),
        state,
        agency,
        temporary_spool,
        realert_secs: Some(realert_hours.saturating_mul(3600)).filter(|s| *s > 0),
        reload: crate::reload::ReloadSpec {
            config: args.config.clone(),
            rules: args.rules.rules.clone(),
            vendors: args.rules.vendors.clone(),
            watch: args.watch || file.settings.watch.unwrap_or(false),
            started_with: args.config.is_some().then(|| file.clone()),
        },
        seccomp: !args.no_seccomp && file.settings.seccomp.unwrap_or(true),
        max_hosts,
        learn,
    };
    Ok((cfg, file))
}

fn open_output(path: &Path, what: &str) -> Result<SharedWriter, String> {
    let w: Box<dyn Write + Send> = if path == Path::new("-") {
        Box::new(std::io::BufWriter::new(std::io::stdout()))
    } else {
        let f = std::fs::File::create(path).map_err(|e| {
            format!(
                "cannot create the {what} file {}: {e} (check the directory exists and is writable)",
                crate::operator_input::shown(path)
            )
        })?;
        Box::new(std::io::BufWriter::with_capacity(256 * 1024, f))
    };
    Ok(Arc::new(Mutex::new(w)))
}

/// What a run starts with: the shared state, the active vendors, the metrics endpoint and
/// the inventory's persister.
struct Started {
    /// Flushes the events file every second (live only; a replay's is written at the end).
    flusher: Option<output::Flusher>,
    /// Earliest and latest packet time so far (live capture threads update it every second;
    /// `/api/hosts` reads it).
    span: PacketSpan,
    shared: Arc<Shared>,
    vendors: Vec<String>,
    server: Option<exporter::Server>,
    persister: Option<crate::hosts::store::Persister>,
    reloader: Option<crate::reload::Reloader>,
    /// Ships the spool to the agency inventory (`--inventory`).
    shipper: Option<crate::hosts::ship::Shipper>,
}

/// Opens the outputs and builds the state the workers share. `replay`: a replay's report,
/// summary and host table describe its own inputs, even when an inventory is kept (the host
/// table keeps a run view apart from what the inventory held).
fn start(cfg: &RunConfig, replay: bool) -> Result<Started, String> {
    // The report is written at the end, but opened now: a path that cannot be written
    // fails at once, and a live sensor that dropped its privileges can still write it.
    let report_file = match &cfg.report {
        Some(p) => Some(std::fs::File::create(p).map_err(|e| {
            format!(
                "cannot create the report {}: {e} (check the directory exists and is writable)",
                crate::operator_input::shown(p)
            )
        })?),
        None => None,
    };
    let alerts = cfg
        .alerts
        .as_deref()
        .map(|p| {
            crate::output::alertfile::AlertSink::start(
                crate::output::alertfile::Destination::from_path(p),
                cfg.alerts_file,
            )
            .map_err(|e| e.to_string())
        })
        .transpose()?;
    let events = cfg
        .events
        .as_deref()
        .map(|p| open_output(p, "events"))
        .transpose()?;
    let vendors: Vec<String> = cfg.rules.packs.iter().map(|p| p.vendor.clone()).collect();
    let rules = Arc::clone(&cfg.rules);
    let mut table = HostTable::with_realert(cfg.realert_secs).with_max_hosts(cfg.max_hosts);
    // A temporary spool (`replay --inventory` without --state) is no inventory of the user's.
    if replay && cfg.state.is_some() && !cfg.temporary_spool {
        table = table.with_run_view();
    }
    let hosts = Arc::new(table);
    let roles = Arc::new(crate::detect::resolvers::ResolverRoles::with_pinned(
        &cfg.pinned_resolvers,
    ));
    let mut shipper = None;
    let persister = match &cfg.state {
        Some(path) => {
            let mut store = crate::hosts::store::Store::open_for_writing(path).map_err(|e| {
                if e.contains("--state") {
                    e
                } else {
                    format!("{e} (use --state PATH to choose another, or --state none)")
                }
            })?;
            hosts.restore(store.load()?);
            roles.restore(store.load_resolvers()?);
            if let Some(agency) = &cfg.agency {
                shipper = Some(crate::cli_agency::start_shipping(
                    agency, path, &mut store, &hosts,
                )?);
            }
            Some(store)
        }
        None => None,
    };
    let shared = Arc::new(Shared {
        detector: Detector::new(
            rules,
            cfg.home_net.clone(),
            cfg.detect_limits,
            cfg.encrypted_dns.clone(),
        )
        .with_learning(cfg.learn)
        .with_resolver_roles(roles),
        hosts,
        counters: Counters::default(),
        events,
        extract_limits: cfg.extract_limits,
        batch_seconds: crate::metrics::exporter::batch_histogram(),
        report_file: Mutex::new(report_file),
        suppressions: arc_swap::ArcSwap::from_pointee(cfg.suppressions.clone()),
        sinks: crate::output::sink::Sinks::new(
            alerts,
            match &cfg.syslog {
                Some(c) => Some(
                    crate::output::syslog::SyslogSink::start(c.clone())
                        .map_err(|e| format!("cannot start the syslog sink: {e}"))?,
                ),
                None => None,
            },
        ),
        output_error: Mutex::new(None),
    });
    if let (Some(s), Ok(mut slot)) = (&shipper, shared.counters.sensor.agency.lock()) {
        *slot = Some(Arc::clone(&s.stats));
    }
    let persister = match persister {
        Some(store) => {
            let learner = Arc::clone(&shared.detector.learner);
            // What earlier runs learned of fingerprints is unreadable only in a damaged file,
            // whose hosts would not have loaded either: nothing more to say.
            if let Ok(rows) = store.load_fingerprints() {
                learner.restore(rows);
            }
            Some(
                crate::hosts::store::Persister::start_with(
                    store,
                    Arc::clone(&shared.hosts),
                    Some(Arc::clone(shared.detector.resolver_roles())),
                    Some(learner),
                )
                .map_err(|e| e.to_string())?,
            )
        }
        None => None,
    };
    if let (Some(p), Ok(mut slot)) = (&persister, shared.counters.sensor.inventory_saves.lock()) {
        *slot = Some((Arc::clone(&p.saves), Arc::clone(&p.failures)));
    }
    if let Ok(mut h) = shared.counters.sensor.unhealthy.lock() {
        *h = Some("starting".into());
    }
    if let Ok(mut t) = shared.counters.sensor.rules_loaded_at.lock() {
        *t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
    }
    let span: PacketSpan = Arc::new(Mutex::new((None, None)));
    let server = match &cfg.metrics_addr {
        Some(addr) => Some(exporter::Server::start(
            addr,
            Arc::clone(&shared),
            vendors.clone(),
            Arc::clone(&span),
        )?),
        None => None,
    };
    let reloader =
        crate::reload::Reloader::start(Arc::clone(&shared), cfg.reload.clone(), cfg.quiet)
            .map_err(|e| format!("cannot start the reloader (SIGHUP handler): {e}"))?;
    let flusher = match (&shared.events, replay) {
        (Some(w), false) => Some(
            output::Flusher::start(Arc::clone(w))
                .map_err(|e| format!("cannot start the events flusher: {e}"))?,
        ),
        _ => None,
    };
    Ok(Started {
        flusher,
        span,
        shared,
        vendors,
        server,
        persister,
        reloader: Some(reloader),
        shipper,
    })
}

fn start_or_say(cfg: &RunConfig, replay: bool) -> Option<Started> {
    start(cfg, replay)
        .map_err(|msg| eprintln!("vendorwatch: {msg}"))
        .ok()
}

fn set_health(shared: &Shared, unhealthy: Option<&str>) {
    if let Ok(mut h) = shared.counters.sensor.unhealthy.lock() {
        *h = unhealthy.map(str::to_string);
    }
}

/// The outputs besides the alert sinks that this run's detections were sent to.
fn configured_outputs(cfg: &RunConfig) -> Vec<String> {
    let mut has: Vec<String> = Vec::new();
    if let Some(a) = &cfg.alerts {
        has.push(format!("the alerts file {}", a.display()));
    }
    if let Some(r) = &cfg.report {
        has.push(format!("the report {}", r.display()));
    }
    if let Some(s) = cfg.state.as_ref().filter(|_| !cfg.temporary_spool) {
        has.push(format!("the inventory {}", s.display()));
    }
    has
}

/// Writes the report and the summary; returns the exit code so far (0, or 1 when an output failed).
fn conclude(
    cfg: &RunConfig,
    shared: &Shared,
    vendors: &[String],
    facts: output::summary::RunFacts<'_>,
    persister: Option<crate::hosts::store::Persister>,
) -> i32 {
    let mut code = exit::OK;
    let mut kept_in: Vec<String> = Vec::new();
    if let Some(p) = persister {
        let failures = Arc::clone(&p.failures);
        let last_error = Arc::clone(&p.last_error);
        if let Some(e) = p.finish() {
            let mut has = Vec::new();
            if let Some(r) = &cfg.report {
                has.push(format!("the report {}", r.display()));
            }
            if !cfg.quiet {
                has.push("the host table below".to_string());
            }
            let has = if has.is_empty() {
                "nothing else kept it (pass --report PATH next time)".to_string()
            } else {
                format!("{} have every detection", has.join(" and "))
            };
            eprintln!(
                "vendorwatch: the inventory could not be saved at the end: {e}; what this run detected since its last good save is not in it; {has}"
            );
            code = exit::PARTIAL;
        } else if let Some(state) = &cfg.state {
            let failed = failures.load(Ordering::Relaxed);
            if failed > 0 {
                eprintln!(
                    "vendorwatch: inventory {}: {failed} save(s) failed during the run and were retried; everything is saved (last failure: {})",
                    state.display(),
                    last_error.lock().ok().and_then(|l| l.clone()).unwrap_or_default()
                );
            }
            kept_in.push(format!("the inventory {}", state.display()));
        }
    }
    // A replay with an inventory: this run's own view, not everything the inventory holds.
    let hosts = shared.hosts.run_snapshot();
    if let Some(path) = &cfg.report {
        let meta = output::ReportMeta {
            first_packet: facts.first_packet,
            last_packet: facts.last_packet,
            vendors: vendors.to_vec(),
            packs: shared.detector.rules().packs.clone(),
            resolver_roles: shared.detector.resolver_roles().list(),
            known_before: shared.hosts.known_before(),
        };
        let report = output::report_json(&hosts, facts.resolvers, &meta);
        // Streamed to the file: a report of many hosts is never held twice in memory.
        let write = |f: std::fs::File| -> std::io::Result<()> {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            serde_json::to_writer_pretty(&mut w, &report)?;
            w.write_all(b"\n")?;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()
        };
        let written = match shared.report_file.lock().map(|mut f| f.take()) {
            Ok(Some(f)) => write(f),
            _ => std::fs::File::create(path).and_then(write),
        };
        if let Err(e) = written {
            eprintln!(
                "vendorwatch: cannot write the report {}: {e}",
                crate::operator_input::shown(path)
            );
            code = exit::PARTIAL;
        } else {
            kept_in.insert(
                0,
                format!("the report {}", crate::operator_input::shown(path)),
            );
        }
    }
    if !cfg.quiet {
        kept_in.push("the host table below".into());
    }
    let kept = output::sink::Kept {
        configured: configured_outputs(cfg),
        holding: kept_in,
    };
    for end in shared.sinks.conclude(&kept) {
        eprintln!("vendorwatch: {}", end.message);
        if end.lost {
            code = exit::PARTIAL;
        }
    }
    // Only the events output writes through `output_error` (alerts have their own sink).
    if let Ok(Some(e)) = shared.output_error.lock().map(|s| s.clone()) {
        let what = match cfg.events.as_deref() {
            Some(p) if p == Path::new("-") => "the events output (stdout)".to_string(),
            Some(p) => format!("the events file {}", crate::operator_input::shown(p)),
            None => "an output".to_string(),
        };
        eprintln!(
            "vendorwatch: {what} could not be written: {e}; events from then on are missing (alerts, the report and the inventory are not affected)"
        );
        code = exit::PARTIAL;
    }
    for e in facts.input_errors {
        eprintln!("vendorwatch: {e}");
    }
    if !cfg.quiet {
        eprint!(
            "{}",
            output::summary::render(&shared.counters, &facts, &hosts)
        );
        if let (Some(known), Some(state), false) =
            (shared.hosts.known_before(), &cfg.state, cfg.temporary_spool)
        {
            let already = hosts.iter().filter(|(ip, _)| known.contains(ip)).count();
            eprintln!(
                "  inventory {}: {already} of the {} host(s) above were already in it (the table shows this run's inputs only)",
                state.display(),
                hosts.len()
            );
        }
    }
    eprint!(
        "{}",
        output::summary::shed_note(&shared.hosts, &shared.detector)
    );
    code
}

struct Bar {
    bar: indicatif::ProgressBar,
    sizes: Vec<u64>,
    done_before: u64,
    current: usize,
}

impl Progress for Bar {
    fn start_input(&mut self, index: usize, name: &str) {
        self.done_before = self.sizes.iter().take(index).sum();
        self.current = index;
        self.bar.set_message(name.to_string());
        self.bar.set_position(self.done_before);
    }
    fn advance(&mut self, bytes: u64) {
        let cap = self.sizes.get(self.current).copied().unwrap_or(0);
        self.bar
            .set_position(self.done_before + bytes.min(cap.max(bytes)));
    }
    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

fn run_replay(cfg: RunConfig, inputs_given: &[String], linger: u64) -> i32 {
    let expanded = inputs::expand(inputs_given);
    for p in &expanded.problems {
        eprintln!("vendorwatch: {}: {}", p.path, p.problem);
    }
    if !cfg.quiet {
        for d in &expanded.dirs {
            eprintln!("vendorwatch: {}", d.describe());
        }
    }
    if expanded.inputs.is_empty() {
        eprintln!("vendorwatch: no capture to read (give pcap/pcapng files, directories holding them, or - for stdin)");
        return exit::UNUSABLE;
    }
    let Some(Started {
        flusher: _,
        span,
        shared,
        vendors,
        server,
        persister,
        reloader,
        shipper,
    }) = start_or_say(&cfg, true)
    else {
        return exit::UNUSABLE;
    };
    let sizes: Vec<u64> = expanded
        .inputs
        .iter()
        .map(|i| match i {
            inputs::Input::Path(p) => std::fs::metadata(p).map_or(0, |m| m.len()),
            inputs::Input::Stdin => 0,
        })
        .collect();
    let total: u64 = sizes.iter().sum();
    let bar = if cfg.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::with_draw_target(
            Some(total),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}",
        ) {
            b.set_style(style);
        }
        b
    };
    let mut progress = Bar {
        bar,
        sizes,
        done_before: 0,
        current: 0,
    };
    let started = std::time::Instant::now();
    set_health(&shared, None);
    // SIGINT/SIGTERM end the replay early but cleanly: what was read is reported and saved.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(signal, Arc::clone(&stop));
    }
    // Outputs, inventory and metrics socket are open: from here on, no exec, ptrace, mounts, ...
    // (the replay's line goes to the log, VENDORWATCH_LOG=info; its stderr is the summary's).
    match crate::capture::sandbox::apply(cfg.seccomp) {
        Ok(sandbox) => tracing::info!("{}", sandbox.describe()),
        Err(e) => {
            eprintln!("vendorwatch: {e}");
            return exit::UNUSABLE;
        }
    }
    let outcome = match pipeline::replay(
        &expanded.inputs,
        Arc::clone(&shared),
        cfg.workers,
        &mut progress,
        &stop,
    ) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("vendorwatch: cannot start worker threads: {e}");
            return exit::UNUSABLE;
        }
    };
    // `/api/hosts` (with --linger) dates the replay like the report does.
    widen_span(&span, outcome.first_packet, outcome.last_packet);
    // No reload while the results are written: they are judged by one rule set.
    if let Some(r) = reloader {
        r.stop();
    }
    let resolvers = shared.detector.resolvers();
    let errors: Vec<String> = outcome.errors.iter().map(|e| e.to_string()).collect();
    let facts = output::summary::RunFacts {
        inputs_read: outcome.inputs_read,
        input_errors: &errors,
        skipped_inputs: expanded.skipped.len(),
        elapsed_secs: started.elapsed().as_secs_f64(),
        first_packet: outcome.first_packet,
        last_packet: outcome.last_packet,
        resolvers: &resolvers,
        vendors: &vendors,
        sources: Vec::new(),
    };
    let mut code = conclude(&cfg, &shared, &vendors, facts, persister);
    if let Some(s) = shipper {
        let wait = cfg.agency.as_ref().map_or(0, |a| a.wait_secs);
        code = code.max(crate::cli_agency::finish_shipping(
            s,
            std::time::Duration::from_secs(wait),
            cfg.temporary_spool,
            cfg.quiet,
        ));
    }
    if let Some(where_) = &outcome.interrupted {
        eprintln!("vendorwatch: interrupted by a signal in {where_}; everything read until then is in the alerts, report and inventory");
        code = exit::PARTIAL;
    }
    if let Some(server) = server {
        set_health(&shared, Some("replay finished"));
        if linger > 0 && server.failure().is_none() {
            eprintln!(
                "vendorwatch: serving metrics on http://{}/metrics for {linger} s more",
                server.addr
            );
            // In steps, so that SIGINT/SIGTERM or the endpoint failing end the wait.
            let until =
                std::time::Instant::now().checked_add(std::time::Duration::from_secs(linger));
            while !stop.load(Ordering::Relaxed)
                && until.is_none_or(|u| std::time::Instant::now() < u)
                && server.failure().is_none()
            {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        if let Some(why) = server.stop() {
            eprintln!("vendorwatch: the metrics endpoint failed during the run: {why}");
            code = exit::PARTIAL;
        }
    }
    let packets = Counters::get(&shared.counters.packets);
    if outcome.inputs_read == 0 || (packets == 0 && outcome.errors.len() >= outcome.inputs_read) {
        return exit::UNUSABLE;
    }
    if !outcome.errors.is_empty() || !expanded.problems.is_empty() {
        code = exit::PARTIAL;
    }
    code
}

/// Earliest and latest packet time seen, shared between capture threads and `/api/hosts`.
use crate::output::PacketSpan;

/// Widens `span` to take in `first..=last`.
fn widen_span(span: &PacketSpan, first: Option<Timestamp>, last: Option<Timestamp>) {
    if let Ok(mut g) = span.lock() {
        g.0 = match (g.0, first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        g.1 = g.1.max(last);
    }
}

/// Per-interface capture statistics shared between capture threads and the status line.
type SourceTotals = Arc<Mutex<Vec<(String, live::PcapTotals)>>>;

fn run_live(cfg: RunConfig, settings: LiveSettings) -> i32 {
    // A restarted sensor appends to its alerts file (a SIEM tailing it sees no truncation).
    let cfg = RunConfig {
        alerts_file: crate::output::alertfile::AlertFileOptions {
            append: true,
            ..cfg.alerts_file
        },
        ..cfg
    };
    // Every interface is opened before anything runs, so a typo fails at once.
    let mut captures = Vec::new();
    for interface in &settings.interfaces {
        let opts = live::LiveOptions {
            interface: interface.clone(),
            bpf: settings.bpf.clone(),
            buffer_mb: settings.buffer_mb,
            promiscuous: settings.promiscuous,
        };
        match live::LiveCapture::open(&opts) {
            Ok(c) => captures.push(c),
            Err(e) => {
                eprintln!("vendorwatch: {e}");
                return exit::UNUSABLE;
            }
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            eprintln!("vendorwatch: cannot install the signal handler: {e}");
            return exit::UNUSABLE;
        }
    }
    let Some(Started {
        flusher: _flusher,
        span,
        shared,
        vendors,
        server,
        persister,
        reloader,
        shipper,
    }) = start_or_say(&cfg, false)
    else {
        return exit::UNUSABLE;
    };
    let pool = match pipeline::WorkerPool::start(
        Arc::clone(&shared),
        cfg.workers,
        pipeline::LIVE_QUEUE_BATCHES,
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("vendorwatch: cannot start worker threads: {e}");
            return exit::UNUSABLE;
        }
    };
    // Everything privileged is open: interfaces, outputs, the metrics socket.
    match crate::capture::privileges::drop_to(settings.user.as_deref()) {
        Ok(crate::capture::privileges::Dropped::StillRoot) if !cfg.quiet => eprintln!(
            "vendorwatch: warning: still running as root (create the user {:?} or pass --user)",
            crate::capture::privileges::DEFAULT_USER
        ),
        Ok(crate::capture::privileges::Dropped::To { user, uid, gid }) if !cfg.quiet => {
            eprintln!("vendorwatch: running as {user} (uid {uid}, gid {gid}) with no capabilities")
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("vendorwatch: {e}");
            return exit::UNUSABLE;
        }
    }
    // Start-up is over (interfaces, outputs, metrics socket, inventory, privileges): install
    // the seccomp filter on every thread, the workers' and the metrics server's included.
    let sandboxed = match crate::capture::sandbox::apply(cfg.seccomp) {
        Ok(sandbox) => {
            if !cfg.quiet {
                eprintln!("vendorwatch: {}", sandbox.describe());
            }
            matches!(sandbox, crate::capture::sandbox::Sandbox::On { .. })
        }
        Err(e) => {
            eprintln!("vendorwatch: {e}");
            return exit::UNUSABLE;
        }
    };
    let totals: SourceTotals = Arc::new(Mutex::new(
        captures
            .iter()
            .map(|c| (c.interface.clone(), live::PcapTotals::default()))
            .collect(),
    ));
    let first_last = span;
    let mut threads = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for (index, cap) in captures.into_iter().enumerate() {
        let dispatcher = pool.dispatcher(WhenFull::Drop, &cap.interface);
        let ctx = CaptureThread {
            stop: Arc::clone(&stop),
            totals: Arc::clone(&totals),
            index,
            first_last: Arc::clone(&first_last),
            shared: Arc::clone(&shared),
            sandboxed,
        };
        let name = format!("capture-{}", cap.interface);
        match std::thread::Builder::new()
            .name(name)
            .spawn(move || capture_loop(cap, dispatcher, &ctx))
        {
            Ok(h) => threads.push(h),
            Err(e) => failures.push(format!("cannot start a capture thread: {e}")),
        }
    }
    let started = std::time::Instant::now();
    set_health(&shared, None);
    if let Some(server) = &server {
        if !cfg.quiet {
            eprintln!("vendorwatch: metrics on http://{}/metrics", server.addr);
        }
    }
    let status = !cfg.quiet && std::io::stderr().is_terminal() && settings.status_every > 0;
    let mut next_status = started + std::time::Duration::from_secs(settings.status_every.max(1));
    while !stop.load(Ordering::Relaxed) && threads.iter().any(|t| !t.is_finished()) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        if let (Ok(t), Ok(mut mirror)) = (totals.lock(), shared.counters.sensor.sources.lock()) {
            *mirror = t
                .iter()
                .map(|(n, s)| (n.clone(), s.received, s.dropped, s.if_dropped))
                .collect();
        }
        if let Ok(mut depth) = shared.counters.sensor.queue_depth.lock() {
            *depth = pool.queue_depths();
        }
        // Healthy while every interface captures; otherwise the first one's problem, with
        // what happens next (it comes back by itself, or a restart is needed).
        let problem = shared.counters.sensor.captures.lock().ok().and_then(|c| {
            c.iter()
                .find_map(|(i, st)| st.problem.as_ref().map(|p| format!("{i}: {p}")))
        });
        let stopped = threads
            .iter()
            .position(|t| t.is_finished())
            .map(|t| format!("capture thread {t} stopped"));
        set_health(&shared, problem.or(stopped).as_deref());
        // Without its endpoint the sensor cannot be watched (`/healthz` is gone): stop, so
        // that the exit status says so and a supervisor restarts it with a working one.
        if let Some(why) = server.as_ref().and_then(exporter::Server::failure) {
            failures.push(format!(
                "the metrics endpoint failed: {why}; stopping (restart the sensor to serve it again)"
            ));
            break;
        }
        if status && std::time::Instant::now() >= next_status {
            next_status += std::time::Duration::from_secs(settings.status_every);
            eprintln!(
                "{}",
                status_line(&shared, &totals, &pool, started.elapsed().as_secs_f64())
            );
        }
    }
    // Stop: capture threads flush their batches, the workers drain every queue and end
    // their flows, and only then are the report and the summary written.
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        match t.join() {
            Ok(Err(e)) => failures.push(e),
            Ok(Ok(())) => {}
            Err(_) => failures.push("a capture thread panicked".into()),
        }
    }
    pool.finish();
    if let Some(server) = server {
        server.stop();
    }
    // No reload while the results are written: they are judged by one rule set.
    if let Some(r) = reloader {
        r.stop();
    }
    let resolvers = shared.detector.resolvers();
    let (first_packet, last_packet) = first_last.lock().map(|g| *g).unwrap_or_default();
    let sources = totals.lock().map(|t| t.clone()).unwrap_or_default();
    let facts = output::summary::RunFacts {
        inputs_read: sources.len(),
        input_errors: &failures,
        skipped_inputs: 0,
        elapsed_secs: started.elapsed().as_secs_f64(),
        first_packet,
        last_packet,
        resolvers: &resolvers,
        vendors: &vendors,
        sources: sources
            .iter()
            .map(|(name, t)| (name.clone(), t.received, t.dropped, t.if_dropped))
            .collect(),
    };
    let mut code = conclude(&cfg, &shared, &vendors, facts, persister);
    if let Some(s) = shipper {
        code = code.max(crate::cli_agency::finish_shipping(
            s,
            std::time::Duration::from_secs(crate::hosts::agency::LIVE_WAIT_SECS),
            false,
            cfg.quiet,
        ));
    }
    if failures.is_empty() {
        code
    } else {
        exit::PARTIAL
    }
}

/// What a capture thread shares with the rest of the sensor.
struct CaptureThread {
    stop: Arc<AtomicBool>,
    totals: SourceTotals,
    index: usize,
    first_last: PacketSpan,
    shared: Arc<Shared>,
    /// Under the seccomp filter, which refuses new packet sockets: a removed interface
    /// cannot be captured again until a restart (the reopen is still tried, and its error said).
    sandboxed: bool,
}

impl CaptureThread {
    /// Updates this interface's health for /healthz and the metrics.
    fn status(&self, interface: &str, f: impl FnOnce(&mut crate::metrics::CaptureStatus)) {
        if let Ok(mut all) = self.shared.counters.sensor.captures.lock() {
            f(all.entry(interface.to_string()).or_default());
        }
    }

    fn interrupted(
        &self,
        interface: &str,
        reason: &'static str,
        times: u64,
        problem: Option<String>,
    ) {
        self.status(interface, |st| {
            *st.interruptions.entry(reason).or_default() += times;
            if problem.is_some() {
                st.up = false;
                st.problem = problem;
            }
        });
    }
}

/// Reads one interface until the stop flag, handing packets to the workers. A link that
/// goes down and comes back keeps its handle (libpcap keeps it bound); a removed interface
/// is reopened once it is back when this process may, and otherwise its capture ends then,
/// so that a restart (systemd's Restart=on-failure) captures on it again. Every
/// change is said on stderr, counted, and shown by /healthz.
fn capture_loop(
    mut cap: live::LiveCapture,
    mut dispatcher: pipeline::Dispatcher,
    ctx: &CaptureThread,
) -> Result<(), String> {
    let iface = cap.interface.clone();
    let mut link = cap.link;
    let mut watch = live::LinkWatch::new(&iface);
    let mut last_stats = std::time::Instant::now();
    let mut last_flush = std::time::Instant::now();
    let mut last_link_check = std::time::Instant::now();
    let mut first: Option<Timestamp> = None;
    let mut last: Option<Timestamp> = None;
    let mut result = Ok(());
    let mut stop_seen: Option<std::time::Instant> = None;
    // The interface is gone: since when the handle has looked empty (the ring is read to
    // the end first), and whether the handle is dead.
    let mut gone_idle: Option<std::time::Instant> = None;
    let mut dead = false;
    let mut reopen_at = std::time::Instant::now();
    let mut reopen_wait = std::time::Duration::from_secs(1);
    // A "went down" read error that keeps coming while the link reads up is not transient.
    let mut down_errors_since: Option<std::time::Instant> = None;
    ctx.status(&iface, |st| {
        st.up = watch.state().is_up();
        st.problem = None;
    });
    loop {
        // After a stop, the ring is read until it has been empty for longer than the
        // kernel holds a partly filled block: what was captured before the signal counts.
        if stop_seen.is_none() && ctx.stop.load(Ordering::Relaxed) {
            stop_seen = Some(std::time::Instant::now());
        }
        let stopping = stop_seen.is_some_and(|t| t.elapsed() >= live::DRAIN_AFTER_STOP);
        if dead {
            if stop_seen.is_some() {
                break;
            }
            std::thread::sleep(live::LINK_CHECK);
            let _ = watch.check();
            let exists = !matches!(watch.state(), live::LinkState::Removed);
            if exists && std::time::Instant::now() >= reopen_at {
                record_totals(&mut cap, &ctx.totals, ctx.index);
                match cap.reopen() {
                    Ok(fresh) => {
                        cap = fresh;
                        link = cap.link;
                        watch.rebind();
                        dead = false;
                        gone_idle = None;
                        reopen_wait = std::time::Duration::from_secs(1);
                        eprintln!("vendorwatch: {iface}: the interface is back; capture reopened");
                        ctx.status(&iface, |st| {
                            st.up = watch.state().is_up();
                            st.problem = None;
                        });
                    }
                    Err(live::OpenError::Permission { reason, .. }) => {
                        let why = if ctx.sandboxed {
                            "the seccomp filter refuses new packet sockets"
                        } else {
                            "this process dropped CAP_NET_RAW"
                        };
                        eprintln!(
                            "vendorwatch: {iface}: the interface is back, but a new capture cannot be opened \
                             ({reason}; {why}); ending its capture so that a restart opens it"
                        );
                        result = Err(format!(
                            "{iface}: capture ended: the interface was removed, and a new capture could not be \
                             opened ({why}): restart vendorwatch to capture on it again"
                        ));
                        ctx.status(&iface, |st| {
                            st.problem = Some(
                                "capture ended: the interface was removed; restart vendorwatch"
                                    .into(),
                            )
                        });
                        break;
                    }
                    Err(e) => {
                        // Not there yet, or not ready (no carrier, still being set up).
                        tracing::debug!("{iface}: reopen: {e}");
                        reopen_at = std::time::Instant::now() + reopen_wait;
                        reopen_wait = (reopen_wait * 2).min(std::time::Duration::from_secs(30));
                    }
                }
            }
            continue;
        }
        match cap.read() {
            Ok(live::Read::Packet { ts, data, wire_len }) => {
                first.get_or_insert(ts);
                last = Some(ts);
                down_errors_since = None;
                dispatcher.packet(ts, link, data, wire_len);
            }
            Ok(live::Read::Idle) if stopping => break,
            Ok(live::Read::Idle) => {
                // A read that waits normally: the link errors of an earlier outage are over.
                down_errors_since = None;
                // Slow traffic: hand over half-full batches now and then, not on every pause.
                if last_flush.elapsed() >= std::time::Duration::from_millis(50) {
                    last_flush = std::time::Instant::now();
                    dispatcher.flush();
                }
                if watch.removed() {
                    let since = *gone_idle.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= live::DRAIN_AFTER_STOP {
                        dead = true;
                    }
                }
            }
            // A stop is not held up by a link that keeps failing reads.
            Err(_) if stopping => break,
            Err(e) => match live::classify_read_error(&e) {
                // libpcap reports the removal as soon as it polls, but the ring may still hold
                // a block the kernel retires only at its timeout: read on until it has been
                // quiet as long as after a stop, then let the handle go.
                live::ReadFailure::Removed => {
                    let since = *gone_idle.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= live::DRAIN_AFTER_STOP {
                        dead = true;
                    } else {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                }
                live::ReadFailure::LinkDown
                    if down_errors_since.is_none_or(|t| {
                        !watch.state().is_up() || t.elapsed() < std::time::Duration::from_secs(5)
                    }) =>
                {
                    down_errors_since.get_or_insert_with(std::time::Instant::now);
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                _ => {
                    result = Err(format!("{iface}: capture stopped: {e}"));
                    ctx.status(&iface, |st| {
                        st.up = false;
                        st.problem = Some(format!("capture stopped: {e}"));
                    });
                    break;
                }
            },
        }
        if dead {
            dispatcher.flush();
            let what = if ctx.sandboxed {
                "a new one is tried when the interface is back; the seccomp filter will refuse it, and the \
                 capture then ends, so that a restart opens it (systemd's Restart=on-failure does, when no \
                 capture is left)"
            } else {
                "it is reopened when the interface is back"
            };
            ctx.interrupted(
                &iface,
                "interface_removed",
                1,
                Some(if ctx.sandboxed {
                    "capture interrupted: the interface was removed; restart vendorwatch once it is back".into()
                } else {
                    "capture interrupted: the interface was removed; it is reopened when it is back".into()
                }),
            );
            eprintln!(
                "vendorwatch: {iface}: the interface was removed; its capture handle is gone and {what}; \
                 everything captured until then is kept"
            );
        }
        if last_link_check.elapsed() >= live::LINK_CHECK && !dead {
            last_link_check = std::time::Instant::now();
            match watch.check() {
                Some(live::LinkEvent::Lost(state)) if !watch.removed() => {
                    let why = state.describe();
                    eprintln!(
                        "vendorwatch: {iface}: the interface went down ({why}); the capture stays open and \
                         resumes when the link is back (nothing captured so far is lost)"
                    );
                    ctx.interrupted(
                        &iface,
                        "link_down",
                        1,
                        Some(format!("capture interrupted: the interface is {why}; it resumes when the link is back")),
                    );
                }
                Some(live::LinkEvent::Back(after)) => {
                    down_errors_since = None;
                    eprintln!(
                        "vendorwatch: {iface}: the interface is up again after {:.1} s; capturing",
                        after.as_secs_f64()
                    );
                    ctx.status(&iface, |st| {
                        st.up = true;
                        st.problem = None;
                    });
                }
                Some(live::LinkEvent::Flapped(n)) => {
                    eprintln!(
                        "vendorwatch: {iface}: the link went down and came back between two checks ({n} time(s)); capturing"
                    );
                    ctx.interrupted(&iface, "link_down", n, None);
                }
                // Removed or replaced: the handle is declared dead once its ring is read out.
                Some(live::LinkEvent::Lost(_)) | None => {}
            }
        }
        if last_stats.elapsed() >= std::time::Duration::from_secs(1) {
            last_stats = std::time::Instant::now();
            record_totals(&mut cap, &ctx.totals, ctx.index);
            dispatcher.flush();
            // `/api/hosts` shows the span while the sensor runs, not only at the end.
            widen_span(&ctx.first_last, first, last);
        }
    }
    record_totals(&mut cap, &ctx.totals, ctx.index);
    dispatcher.finish();
    widen_span(&ctx.first_last, first, last);
    result
}

fn record_totals(
    cap: &mut live::LiveCapture,
    totals: &Mutex<Vec<(String, live::PcapTotals)>>,
    index: usize,
) {
    if let (Some(t), Ok(mut all)) = (cap.totals(), totals.lock()) {
        if let Some(slot) = all.get_mut(index) {
            slot.1 = t;
        }
    }
}

fn status_line(
    shared: &Shared,
    totals: &SourceTotals,
    pool: &pipeline::WorkerPool,
    secs: f64,
) -> String {
    let c = &shared.counters;
    let packets = Counters::get(&c.packets);
    let sources: Vec<String> = totals
        .lock()
        .map(|t| {
            t.iter()
                .map(|(n, s)| {
                    format!(
                        "{n} recv {} drop {} ifdrop {}",
                        s.received, s.dropped, s.if_dropped
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "[{:>6.0}s] {} packets ({:.0}/s) | {} | queue drops {} (depth {:?}) | evictions {} | hosts {} | alerts {}",
        secs,
        packets,
        packets as f64 / secs.max(1e-9),
        sources.join("; "),
        Counters::get(&c.queue_dropped),
        pool.queue_depths(),
        Counters::get(&c.flows_evicted),
        shared.hosts.len(),
        Counters::get(&c.alerts),
    )
}

fn parse_day_or_time(text: &str) -> Option<Timestamp> {
    parse_time(text).or_else(|| {
        let d = ::time::Date::parse(
            text,
            ::time::macros::format_description!("[year]-[month]-[day]"),
        )
        .ok()?;
        Some(Timestamp::from_parts(
            d.midnight().assume_utc().unix_timestamp(),
            0,
        ))
    })
}

fn run_hosts(args: HostsArgs) -> i32 {
    let agency = match &args.agency.inventory {
        Some(url) => match crate::cli_agency::load_agency(
            &args.agency,
            url,
            args.vendor.as_deref(),
            args.category.as_deref(),
        ) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("vendorwatch: {e}");
                return exit::UNUSABLE;
            }
        },
        None => None,
    };
    let loaded = match agency.as_ref().map_or_else(
        || load_inventory(&args.state),
        |_| {
            Ok(Inventory {
                hosts: Vec::new(),
                resolvers: Vec::new(),
            })
        },
    ) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("vendorwatch: {e}");
            return exit::UNUSABLE;
        }
    };
    let time_arg = |flag: &str, v: &Option<String>| -> Result<Option<Timestamp>, String> {
        match v {
            None => Ok(None),
            Some(t) => parse_day_or_time(t)
                .map(Some)
                .ok_or_else(|| format!("{flag} {t:?} is not YYYY-MM-DD or an RFC 3339 time")),
        }
    };
    let (since, now) = match (
        time_arg("--since", &args.since),
        time_arg("--now", &args.now),
    ) {
        (Ok(s), Ok(n)) => (s, n),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("vendorwatch: {e}");
            return exit::UNUSABLE;
        }
    };
    let now = now.unwrap_or_else(|| {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    });
    if let Err(e) = check_filters(&args, &loaded.hosts) {
        eprintln!("vendorwatch: {e}");
        return exit::UNUSABLE;
    }
    let resolver_roles = loaded.resolvers;
    let mut hosts: Vec<(std::net::IpAddr, crate::hosts::Host)> = loaded
        .hosts
        .into_iter()
        .map(|(ip, mut h)| {
            h.detections.retain(|d| {
                args.vendor.as_ref().is_none_or(|v| &d.vendor == v)
                    && args.category.as_ref().is_none_or(|c| &d.category == c)
                    && since.is_none_or(|s| d.last_seen >= s)
            });
            (ip, h)
        })
        .filter(|(_, h)| !h.detections.is_empty())
        .collect();
    if let Some(days) = args.stale {
        let cutoff = Timestamp(
            now.0.saturating_sub(
                i64::try_from(days.saturating_mul(86_400))
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1_000_000_000),
            ),
        );
        hosts.retain(|(_, h)| {
            h.detections
                .iter()
                .map(|d| d.last_seen)
                .max()
                .is_some_and(|last| last < cutoff)
        });
    }
    if let Some(agency) = agency {
        let stale = args.stale.map(|days| {
            Timestamp(
                now.0.saturating_sub(
                    i64::try_from(days.saturating_mul(86_400))
                        .unwrap_or(i64::MAX)
                        .saturating_mul(1_000_000_000),
                ),
            )
        });
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        // A closed pipe (`| head`) is not an error.
        let _ = crate::cli_agency::print_hosts(&mut out, agency, args.format, since, stale);
        return exit::OK;
    }
    match args.format {
        HostsFormat::Json => {
            // The role the inventory remembers (a resolver's forwarded lookups read as such).
            let resolvers: Vec<std::net::IpAddr> =
                resolver_roles.iter().map(|(ip, _)| *ip).collect();
            let meta = output::ReportMeta {
                resolver_roles,
                ..output::ReportMeta::default()
            };
            let report = output::report_json(&hosts, &resolvers, &meta);
            outln!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        }
        HostsFormat::Csv => {
            outln!(
                "ip,mac,vendor,category,severity,first_seen,last_seen,count,forwarded,suppressed,hostname"
            );
            for (ip, h) in &hosts {
                for d in &h.detections {
                    let field = csv_cell;
                    outln!(
                        "{ip},{},{},{},{},{},{},{},{},{},{}",
                        output::mac_string(h.mac).unwrap_or_default(),
                        field(&d.vendor),
                        field(&d.category),
                        d.severity.as_str(),
                        d.first_seen,
                        d.last_seen,
                        d.count,
                        d.forwarded,
                        field(d.suppressed.as_deref().unwrap_or_default()),
                        field(h.identity.hostname.as_deref().unwrap_or_default())
                    );
                }
            }
        }
        HostsFormat::Table if hosts.is_empty() => outln!("no host matches"),
        HostsFormat::Table => {
            use std::io::Write as _;
            let _ = std::io::stdout()
                .lock()
                .write_all(output::summary::host_table(&hosts).as_bytes());
        }
    }
    exit::OK
}

/// One CSV cell (RFC 4180 quoting). A cell that a spreadsheet would read as a formula (it
/// starts with `=`, `+`, `-`, `@`, a tab or a carriage return: a DHCP host name of
/// `=HYPERLINK(…)`, say) gets a leading `'` and is quoted, OWASP's rule against CSV injection.
pub fn csv_cell(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if formula {
        format!("\"'{}\"", s.replace('"', "\"\""))
    } else if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `hosts --vendor V` and `--category C` must name a vendor or category that exists (in the
/// embedded rule packs or in the inventory), as `--vendors` must: a typo is an error, not a
/// clean result.
fn check_filters(
    args: &HostsArgs,
    loaded: &[(std::net::IpAddr, crate::hosts::Host)],
) -> Result<(), String> {
    let packs = crate::detect::rules::load_embedded().unwrap_or_default();
    let detections = || loaded.iter().flat_map(|(_, h)| h.detections.iter());
    let mut vendors: std::collections::BTreeSet<&str> =
        packs.packs.iter().map(|p| p.vendor.as_str()).collect();
    vendors.extend(detections().map(|d| d.vendor.as_str()));
    let mut categories: std::collections::BTreeSet<&str> =
        packs.rules.iter().map(|r| r.category.as_str()).collect();
    categories.extend(detections().map(|d| d.category.as_str()));
    let list =
        |set: &std::collections::BTreeSet<&str>| set.iter().copied().collect::<Vec<_>>().join(", ");
    if let Some(v) = &args.vendor {
        if !vendors.contains(v.as_str()) {
            return Err(format!(
                "--vendor {v:?}: no rule pack or inventory entry has this vendor (vendors: {})",
                list(&vendors)
            ));
        }
    }
    if let Some(c) = &args.category {
        if !categories.contains(c.as_str()) {
            return Err(format!(
                "--category {c:?}: no rule or inventory entry has this category (categories: {})",
                list(&categories)
            ));
        }
    }
    Ok(())
}

fn run_config_check(path: Option<PathBuf>) -> i32 {
    let path = path.unwrap_or_else(|| PathBuf::from("/etc/vendorwatch/vendorwatch.toml"));
    let loaded = match config::check_config_file(&path) {
        Ok(c) => c,
        Err(errs) => {
            for e in &errs {
                eprintln!("{e}");
            }
            eprintln!(
                "{} problem(s) in {}",
                errs.len(),
                crate::operator_input::shown(&path)
            );
            return exit::PARTIAL;
        }
    };
    outln!(
        "{}: OK ({} suppression(s); rules: {}; vendors: {}; home_net: {})",
        crate::operator_input::shown(&path),
        loaded.suppressions.0.len(),
        rule_source(&loaded.settings.rules).describe(),
        loaded
            .settings
            .vendors
            .map_or("default".to_string(), |v| v.join(",")),
        loaded.home_net.unwrap_or_else(|| "default".into())
    );
    exit::OK
}

fn parse_time(text: &str) -> Option<Timestamp> {
    let t = ::time::OffsetDateTime::parse(text, &::time::format_description::well_known::Rfc3339)
        .ok()?;
    Some(Timestamp(i64::try_from(t.unix_timestamp_nanos()).ok()?))
}

/// What the inventory holds: its hosts and its resolvers.
struct Inventory {
    hosts: Vec<(std::net::IpAddr, crate::hosts::Host)>,
    resolvers: Vec<(std::net::IpAddr, crate::detect::resolvers::ResolverInfo)>,
}

/// Reads the inventory at `path`, or says what to do when there is none.
fn load_inventory(path: &Path) -> Result<Inventory, String> {
    if path == Path::new("none") {
        return Err("--state none names no inventory to read: give the --state PATH an earlier `vendorwatch replay` or `live` wrote (`report` can also render a host report: --from HOSTS.json)".into());
    }
    if !path.exists() {
        let shown = crate::operator_input::shown(path);
        return Err(format!(
            "no inventory at {shown} (run `vendorwatch replay` or `live` with --state {shown} first, or name it with --state PATH)"
        ));
    }
    let store = crate::hosts::store::Store::open_read_only(path)?;
    Ok(Inventory {
        hosts: store.load()?,
        resolvers: store.load_resolvers()?,
    })
}

/// The host report of the inventory: what `--report` would have written for these hosts.
fn inventory_report(inv: &Inventory) -> serde_json::Value {
    let hosts = &inv.hosts;
    let seen = hosts.iter().flat_map(|(_, h)| h.detections.iter());
    let vendors = {
        let mut v: Vec<String> = seen.clone().map(|d| d.vendor.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    // The inventory keeps no rules: the legal basis of each vendor comes from the shipped packs.
    let packs: Vec<crate::detect::rules::Pack> = crate::detect::rules::load_embedded()
        .map(|l| l.packs)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| vendors.contains(&p.vendor))
        .collect();
    let meta = output::ReportMeta {
        first_packet: seen.clone().map(|d| d.first_seen).min(),
        last_packet: seen.map(|d| d.last_seen).max(),
        vendors,
        packs,
        resolver_roles: inv.resolvers.clone(),
        known_before: None,
    };
    let resolvers: Vec<std::net::IpAddr> = inv.resolvers.iter().map(|(ip, _)| *ip).collect();
    output::report_json(hosts, &resolvers, &meta)
}

fn run_report(args: ReportArgs) -> i32 {
    let source = match &args.from {
        Some(from) => format!("the host report {}", from.display()),
        None => format!("the inventory {}", args.state.display()),
    };
    let report = match &args.from {
        Some(from) => {
            let text = match crate::operator_input::read_bytes(
                from,
                crate::operator_input::MAX_HOST_REPORT,
                "a host report",
            ) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!(
                        "vendorwatch: host report {}: {e}",
                        crate::operator_input::shown(from)
                    );
                    return exit::UNUSABLE;
                }
            };
            match serde_json::from_slice(&text) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!(
                        "vendorwatch: {} is not a host report (JSON from `--report` or /api/hosts): {e}",
                        from.display()
                    );
                    return exit::UNUSABLE;
                }
            }
        }
        None if args.agency.inventory.is_some() => {
            let url = args.agency.inventory.as_deref().unwrap_or_default();
            match crate::cli_agency::agency_report(&args.agency, url) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("vendorwatch: {e}");
                    return exit::UNUSABLE;
                }
            }
        }
        None => match load_inventory(&args.state) {
            Ok(inv) => inventory_report(&inv),
            Err(e) => {
                eprintln!("vendorwatch: {e}");
                return exit::UNUSABLE;
            }
        },
    };
    let now = match &args.now {
        Some(t) => {
            match parse_time(t) {
                Some(ts) => ts,
                None => {
                    eprintln!("vendorwatch: --now {t:?} is not an RFC 3339 time such as 2026-11-27T10:00:00Z");
                    return exit::UNUSABLE;
                }
            }
        }
        None => report["last_packet"]
            .as_str()
            .and_then(parse_time)
            .unwrap_or_else(|| {
                let d = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                Timestamp(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            }),
    };
    let html = output::html::render_from(&report, now, args.stale_days, &source);
    if let Err(e) = std::fs::write(&args.html, html) {
        eprintln!("vendorwatch: cannot write {}: {e}", args.html.display());
        return exit::PARTIAL;
    }
    exit::OK
}

fn run_rules(cmd: RulesCommand) -> i32 {
    match cmd {
        RulesCommand::Check { path } => {
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
        RulesCommand::List { rules } => {
            let set = match config::load_rules(&rule_source(&rules.rules), None) {
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
        RulesCommand::Match { value, rules } => {
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
            let hits = explain_match(&set, &value);
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
    }
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

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_that_start_like_a_formula_are_neutralised() {
        assert_eq!(csv_cell("ws-alice.lab"), "ws-alice.lab");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("=1+1"), "\"'=1+1\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        for lead in ["+", "-", "@", "\t", "\r"] {
            assert_eq!(csv_cell(&format!("{lead}cmd")), format!("\"'{lead}cmd\""));
        }
        assert_eq!(csv_cell("x=1"), "x=1", "only the first character counts");
    }
}
