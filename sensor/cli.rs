//! The command layer: the command line as the user typed it (clap), and one small module per
//! subcommand over `runtime`, which starts and concludes a run of `replay` or `live`.
//!
//! Each command turns its raw arguments into a validated configuration (`config`) before
//! doing anything, so every usage problem is found up front and reported with exit code 2.

/// Writes a line to stdout; a closed pipe (`vendorwatch hosts | head`) is not an error.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod agency;
mod config;
mod fingerprints;
mod hosts;
mod live;
mod logging;
mod replay;
mod report;
mod rules;
mod runtime;

pub use hosts::{csv_cell, HostsFormat};
pub use rules::explain_match;

use crate::config::settings::{self, LiveSettings, Mode, Settings};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
    Replay(replay::ReplayArgs),
    /// Capture live on one or more interfaces until SIGINT/SIGTERM, then write everything pending.
    Live(live::LiveArgs),
    /// Inspect and test the rule packs.
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// Write the compliance report: a self-contained HTML page (no network needed to open it).
    Report(report::ReportArgs),
    /// Check a configuration file.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// List the host inventory (the `--state` database of earlier runs).
    Hosts(hosts::HostsArgs),
    /// Client fingerprints learned from visible vendor traffic: list the candidates, or
    /// export them as a rule pack to review and deploy.
    Fingerprints(fingerprints::FingerprintsArgs),
}

/// Options shared by `replay` and `live`: the configuration file, and every setting
/// (`config::Settings`, which the file may hold too).
#[derive(Args, Debug)]
pub struct CommonArgs {
    /// Configuration file (TOML): every option here, named with underscores (max_flows),
    /// plus [live] settings and [[suppress]] entries; options given on the command line win.
    #[arg(long, value_name = "PATH", env = "VENDORWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
}

/// Where `hosts` and `report` look for an inventory unless `--state` says otherwise (a replay
/// keeps one only when asked: `--state PATH` or `state` in the configuration).
pub const DEFAULT_REPLAY_STATE: &str = "vendorwatch.db";

/// The command line, with each option's default shown in its help (`Settings::defaults`).
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command()
        .mut_subcommand("replay", |c| {
            settings::with_defaults_shown(c, &Settings::defaults(Mode::Replay))
        })
        .mut_subcommand("live", |c| {
            let c = settings::with_defaults_shown(c, &Settings::defaults(Mode::Live));
            settings::with_defaults_shown(c, &LiveSettings::defaults())
        })
}

/// Parses the process's command line (exits on a usage error, as clap does).
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    if !matches!(cli.command, Command::Replay(_) | Command::Live(_)) {
        // `replay` and `live` set it up once they have read their settings.
        logging::init(logging::LogFormat::default());
    }
    match cli.command {
        Command::Replay(args) => replay::run(args),
        Command::Live(args) => live::run(args),
        Command::Rules(cmd) => rules::run(cmd),
        Command::Report(args) => report::run(args),
        Command::Config(cmd) => config::run(cmd),
        Command::Hosts(args) => hosts::run(args),
        Command::Fingerprints(args) => fingerprints::run(args),
    }
}

#[cfg(test)]
mod tests {
    /// A commented example line of deploy/vendorwatch.toml (`# workers = 3`), uncommented.
    fn uncommented(line: &str) -> Option<&str> {
        let rest = line.strip_prefix('#')?.trim_start();
        let key = rest.split(" = ").next()?;
        let is_key = !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        (rest.starts_with("[[suppress]]") || (is_key && rest.contains(" = "))).then_some(rest)
    }

    /// Adding an option is one field of `Settings`; this keeps the README and the example
    /// configuration file in step with it.
    #[test]
    fn settings_readme_and_deploy_file_agree() {
        let readme = include_str!("../README.md");
        for sub in ["replay", "live"] {
            let cmd = super::command();
            let cmd = cmd.find_subcommand(sub).expect("subcommand");
            for arg in cmd.get_arguments() {
                if let Some(long) = arg.get_long().filter(|l| *l != "help") {
                    assert!(
                        readme.contains(&format!("--{long}")),
                        "README.md does not mention --{long} ({sub})"
                    );
                }
            }
        }
        let deploy = include_str!("../deploy/vendorwatch.toml");
        crate::config::parse_config("deploy/vendorwatch.toml", deploy).expect("deploy file parses");
        // Every example, commented or not, must parse, and every key must be there.
        let all: String = deploy
            .lines()
            .map(|l| uncommented(l).unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let parsed = crate::config::parse_config("deploy (uncommented)", &all)
            .expect("every example of deploy/vendorwatch.toml parses");
        let top = serde_json::to_value(&parsed.settings).expect("json");
        for key in crate::config::settings::keys::<crate::config::Settings>() {
            assert!(
                !top[&key].is_null(),
                "deploy/vendorwatch.toml lacks the key {key}"
            );
        }
        let live = serde_json::to_value(&parsed.live).expect("json");
        for key in crate::config::settings::keys::<crate::config::LiveSettings>() {
            assert!(
                !live[&key].is_null(),
                "deploy/vendorwatch.toml lacks [live] {key}"
            );
        }
        let replay = serde_json::to_value(&parsed.replay).expect("json");
        for key in crate::config::settings::keys::<crate::config::ReplaySettings>() {
            assert!(
                !replay[&key].is_null(),
                "deploy/vendorwatch.toml lacks [replay] {key}"
            );
        }
    }
}
