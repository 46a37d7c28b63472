//! The command line as the user typed it (clap), and the commands that run on it.
//!
//! Each command turns its raw arguments into a validated configuration (`config`) before
//! doing anything, so every usage problem is found up front and reported with exit code 2.

use crate::capture::inputs;
use crate::config::{self, ReplayConfig, RuleSource, DEFAULT_HOME_NET};
use crate::detect::{DetectLimits, Detector, RuleSet};
use crate::extract::ExtractorLimits;
use crate::hosts::HostTable;
use crate::metrics::Counters;
use crate::output;
use crate::pipeline::{self, Progress, Shared, SharedWriter};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    /// Inspect and test the rule packs.
    #[command(subcommand)]
    Rules(RulesCommand),
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

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Capture files (pcap or pcapng), directories (read in natural order), or - for stdin.
    #[arg(required = true, value_name = "PCAP|DIR|-")]
    pub inputs: Vec<String>,
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Write alerts as JSON Lines to PATH (- for stdout): one per host, vendor and category.
    #[arg(long, value_name = "PATH|-")]
    pub alerts: Option<PathBuf>,
    /// Write the host report (JSON) to PATH at the end.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// Write every extracted name, matched or not, as JSON Lines to PATH (- for stdout).
    #[arg(long, value_name = "PATH|-")]
    pub events: Option<PathBuf>,
    /// Internal networks whose hosts are reported, comma-separated CIDRs.
    #[arg(long, value_name = "CIDR,...", default_value = DEFAULT_HOME_NET)]
    pub home_net: String,
    /// Worker threads [default: cores - 1, at least 1].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Flows tracked per worker; beyond it the longest-idle are evicted (and counted).
    #[arg(long, value_name = "N", default_value_t = ExtractorLimits::default().max_flows)]
    pub max_flows: usize,
    /// Passive DNS: addresses remembered from answers to vendor names (oldest expired first when full).
    #[arg(long, value_name = "N", default_value_t = DetectLimits::default().pdns_max_entries)]
    pub pdns_max: usize,
    /// Passive DNS: keep an answer at least this long, whatever its TTL (clients cache longer than TTLs say).
    #[arg(long, value_name = "SECS", default_value_t = DetectLimits::default().pdns_ttl_floor_secs)]
    pub pdns_ttl_floor: u64,
    /// Passive DNS: keep an answer at most this long.
    #[arg(long, value_name = "SECS", default_value_t = DetectLimits::default().pdns_ttl_cap_secs)]
    pub pdns_ttl_cap: u64,
    /// Print no summary and no progress bar.
    #[arg(long, short)]
    pub quiet: bool,
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
    match cli.command {
        Command::Replay(args) => match replay_config(args) {
            Ok(cfg) => run_replay(cfg),
            Err(msg) => {
                eprintln!("vendorwatch: {msg}");
                exit::UNUSABLE
            }
        },
        Command::Rules(cmd) => run_rules(cmd),
    }
}

fn rule_source(path: &Option<PathBuf>) -> RuleSource {
    path.clone().map_or(RuleSource::Embedded, RuleSource::Path)
}

fn replay_config(args: ReplayArgs) -> Result<ReplayConfig, String> {
    let rules = config::load_rules(
        &rule_source(&args.rules.rules),
        args.rules.vendors.as_deref(),
    )?;
    let home_net = config::parse_home_net(&args.home_net)?;
    if args.workers == Some(0) {
        return Err("--workers must be at least 1".into());
    }
    if args.max_flows == 0 {
        return Err("--max-flows must be at least 1".into());
    }
    if args.pdns_ttl_floor > args.pdns_ttl_cap {
        return Err(format!(
            "--pdns-ttl-floor ({}) is larger than --pdns-ttl-cap ({})",
            args.pdns_ttl_floor, args.pdns_ttl_cap
        ));
    }
    let stdout_users = [&args.alerts, &args.events]
        .iter()
        .filter(|o| o.as_deref() == Some(Path::new("-")))
        .count();
    if stdout_users > 1 {
        return Err("--alerts and --events cannot both write to stdout".into());
    }
    Ok(ReplayConfig {
        encrypted_dns: crate::detect::resolvers::EncryptedDns::embedded()?,
        inputs: args.inputs,
        rules,
        home_net,
        workers: args.workers.unwrap_or_else(config::default_workers),
        alerts: args.alerts,
        report: args.report,
        events: args.events,
        extract_limits: ExtractorLimits {
            max_flows: args.max_flows,
            ..ExtractorLimits::default()
        },
        detect_limits: DetectLimits {
            pdns_max_entries: args.pdns_max,
            pdns_ttl_floor_secs: args.pdns_ttl_floor,
            pdns_ttl_cap_secs: args.pdns_ttl_cap,
            ..DetectLimits::default()
        },
        quiet: args.quiet,
    })
}

fn open_output(path: &Path, what: &str) -> Result<SharedWriter, String> {
    let w: Box<dyn Write + Send> = if path == Path::new("-") {
        Box::new(std::io::BufWriter::new(std::io::stdout()))
    } else {
        let f = std::fs::File::create(path)
            .map_err(|e| format!("cannot create the {what} file {}: {e} (check the directory exists and is writable)", path.display()))?;
        Box::new(std::io::BufWriter::with_capacity(256 * 1024, f))
    };
    Ok(Arc::new(Mutex::new(w)))
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

fn run_replay(cfg: ReplayConfig) -> i32 {
    let expanded = inputs::expand(&cfg.inputs);
    for p in &expanded.problems {
        eprintln!("vendorwatch: {}: {}", p.path, p.problem);
    }
    if expanded.inputs.is_empty() {
        eprintln!("vendorwatch: no capture to read (give pcap/pcapng files, directories holding them, or - for stdin)");
        return exit::UNUSABLE;
    }
    let (alerts, events) = match (
        cfg.alerts
            .as_deref()
            .map(|p| open_output(p, "alerts"))
            .transpose(),
        cfg.events
            .as_deref()
            .map(|p| open_output(p, "events"))
            .transpose(),
    ) {
        (Ok(a), Ok(e)) => (a, e),
        (Err(msg), _) | (_, Err(msg)) => {
            eprintln!("vendorwatch: {msg}");
            return exit::UNUSABLE;
        }
    };
    let vendors: Vec<String> = cfg.rules.packs.iter().map(|p| p.vendor.clone()).collect();
    let rules = Arc::new(cfg.rules);
    let shared = Arc::new(Shared {
        detector: Detector::new(
            Arc::clone(&rules),
            cfg.home_net,
            cfg.detect_limits,
            cfg.encrypted_dns,
        ),
        hosts: HostTable::new(),
        counters: Counters::default(),
        alerts,
        events,
        extract_limits: cfg.extract_limits,
        output_error: Mutex::new(None),
    });
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
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}") {
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
    let outcome = pipeline::replay(
        &expanded.inputs,
        Arc::clone(&shared),
        cfg.workers,
        &mut progress,
    );
    let elapsed = started.elapsed().as_secs_f64();
    let hosts = shared.hosts.snapshot();
    let resolvers = shared.detector.resolvers();
    let mut code = exit::OK;
    if let Some(path) = &cfg.report {
        let meta = output::ReportMeta {
            first_packet: outcome.first_packet,
            last_packet: outcome.last_packet,
            vendors: vendors.clone(),
        };
        let report = output::report_json(&hosts, &resolvers, &meta);
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!(
                "vendorwatch: cannot write the report {}: {e}",
                path.display()
            );
            code = exit::PARTIAL;
        }
    }
    if let Ok(Some(e)) = shared.output_error.lock().map(|s| s.clone()) {
        eprintln!(
            "vendorwatch: an output could not be written: {e} (alerts or events may be incomplete)"
        );
        code = exit::PARTIAL;
    }
    let errors: Vec<String> = outcome.errors.iter().map(|e| e.to_string()).collect();
    for e in &errors {
        eprintln!("vendorwatch: {e}");
    }
    if !cfg.quiet {
        let facts = output::summary::RunFacts {
            inputs_read: outcome.inputs_read,
            input_errors: &errors,
            skipped_inputs: expanded.skipped.len(),
            elapsed_secs: elapsed,
            first_packet: outcome.first_packet,
            last_packet: outcome.last_packet,
            resolvers: &resolvers,
            vendors: &vendors,
        };
        eprint!(
            "{}",
            output::summary::render(&shared.counters, &facts, &hosts)
        );
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

fn run_rules(cmd: RulesCommand) -> i32 {
    match cmd {
        RulesCommand::Check { path } => {
            let source = rule_source(&path);
            match source.load() {
                Ok(l) => {
                    println!(
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
            println!(
                "{:<16} {:<8} {:<16} {:>5}  LEGAL BASIS",
                "VENDOR", "ACTIVE", "CATEGORY", "RULES"
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
                    println!("{v:<16} {a:<8} {cat:<16} {n:>5}  {lb}");
                    first = false;
                }
            }
            exit::OK
        }
        RulesCommand::Match { value, rules } => {
            let vendors = rules.vendors.clone().or_else(|| {
                // Matching asks about every pack, not only the active ones.
                rule_source(&rules.rules)
                    .load()
                    .ok()
                    .map(|l| l.packs.iter().map(|p| p.vendor.clone()).collect())
            });
            let set = match config::load_rules(&rule_source(&rules.rules), vendors.as_deref()) {
                Ok(s) => s,
                Err(msg) => {
                    eprintln!("vendorwatch: {msg}");
                    return exit::UNUSABLE;
                }
            };
            let hits = explain_match(&set, &value);
            if hits.is_empty() {
                println!("no rule matches {value:?}");
                return exit::PARTIAL;
            }
            for h in hits {
                println!("{h}");
            }
            exit::OK
        }
    }
}

/// Every rule `value` hits, one line each: rule id, vendor/category, severity, why.
pub fn explain_match(set: &RuleSet, value: &str) -> Vec<String> {
    use crate::decode::Proto;
    let line = |idx: u32, why: String| {
        let r = set.rule(idx);
        format!(
            "{}  {}/{}  severity={} confidence={}  {}  ({}:{})",
            r.id,
            r.vendor,
            r.category,
            r.severity.as_str(),
            r.confidence.as_str(),
            why,
            r.file,
            r.line
        )
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
