//! `vendorwatch config check`: validate a configuration file, every problem with its line:
//! its keys, the rules and vendors it names, the vendors, categories and rule ids of its
//! suppressions (against every pack of those rules), and what `live` would meet only on
//! this machine at start (the `[live]` filter, compiled by libpcap, and the `user`).

use super::exit;
use crate::config::{self, rule_source};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate a configuration file (every problem with its line); exit 1 on any.
    Check {
        /// The file [default: /etc/vendorwatch/vendorwatch.toml].
        path: Option<PathBuf>,
        /// The rule pack file or directory the sensor is given on its command line (`--rules`,
        /// which wins over the file's `rules`): its packs are what suppressions are checked
        /// against [default: the file's `rules`, else the packs embedded in the binary].
        #[arg(long, value_name = "PATH")]
        rules: Option<PathBuf>,
    },
}

/// Runs `config …`; returns the exit code.
pub fn run(cmd: ConfigCommand) -> i32 {
    match cmd {
        ConfigCommand::Check { path, rules } => check(path, rules),
    }
}

fn check(path: Option<PathBuf>, rules: Option<PathBuf>) -> i32 {
    let path = path.unwrap_or_else(|| PathBuf::from("/etc/vendorwatch/vendorwatch.toml"));
    let loaded = match config::check_config_file(&path, rules.as_deref()) {
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
        rule_source(&rules.or(loaded.settings.rules.clone())).describe(),
        loaded
            .settings
            .vendors
            .map_or("default".to_string(), |v| v.join(",")),
        loaded
            .settings
            .home_net
            .map_or("default".to_string(), |n| n.join(","))
    );
    exit::OK
}
