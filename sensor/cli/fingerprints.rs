//! `vendorwatch fingerprints`: the client fingerprints the sensor learned (see
//! `detect::fingerprints`), listed for review or exported as a supplement rule pack.

use super::{exit, DEFAULT_REPLAY_STATE};
use crate::detect::fingerprints::{self, Candidate, FingerprintStats, LearnSettings};
use clap::{Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct FingerprintsArgs {
    #[command(subcommand)]
    pub action: Option<FingerprintsAction>,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Subcommand, Debug)]
pub enum FingerprintsAction {
    /// List the candidates with their evidence (the default).
    List {
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Every fingerprint seen on a vendor's flows, candidate or not.
        #[arg(long)]
        all: bool,
    },
    /// Write the candidates of one vendor as a supplement rule pack (TOML) to review, commit
    /// and deploy next to the shipped packs (`--rules DIR`).
    Export {
        /// The vendor whose candidates are written.
        #[arg(long, default_value = "kaspersky")]
        vendor: String,
        /// Where to write the pack (- for stdout) [default: stdout].
        #[arg(long, short = 'o', value_name = "PATH|-")]
        out: Option<PathBuf>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct SourceArgs {
    /// The inventory that holds what the sensor learned.
    #[arg(long, global = true, value_name = "PATH", env = "VENDORWATCH_STATE", default_value = DEFAULT_REPLAY_STATE)]
    pub state: PathBuf,
    /// Distinct hosts a fingerprint needs on a vendor's visible flows [default: 5].
    #[arg(long, global = true, value_name = "N")]
    pub learn_min_hosts: Option<usize>,
    /// Share of its visible-name flows and hosts that must be the vendor's [default: 0.95].
    #[arg(long, global = true, value_name = "FRACTION")]
    pub learn_min_specificity: Option<f64>,
    /// Packet time its vendor flows must span [default: 3600].
    #[arg(long, global = true, value_name = "SECS")]
    pub learn_min_seconds: Option<u64>,
}

impl SourceArgs {
    fn settings(&self) -> LearnSettings {
        let d = LearnSettings::default();
        LearnSettings {
            min_hosts: self.learn_min_hosts.unwrap_or(d.min_hosts),
            min_specificity: self.learn_min_specificity.unwrap_or(d.min_specificity),
            min_observe_secs: self.learn_min_seconds.unwrap_or(d.min_observe_secs),
        }
    }
}

fn load(path: &Path) -> Result<Vec<FingerprintStats>, String> {
    if path == Path::new("none") {
        return Err("--state none names no inventory to read: give the --state PATH an earlier `vendorwatch replay` or `live` learned fingerprints into".into());
    }
    if !path.exists() {
        let shown = crate::operator_input::shown(path);
        return Err(format!(
            "no inventory at {shown} (fingerprints are learned by `vendorwatch live`, or `replay --state {shown}`; name another with --state PATH)"
        ));
    }
    crate::hosts::store::Store::open_read_only(path)
        .and_then(|s| s.load_fingerprints())
        .map_err(String::from)
}

pub fn run(args: FingerprintsArgs) -> i32 {
    if let Some(FingerprintsAction::Export { out: Some(out), .. }) = &args.action {
        // Before anything is read: the pack must not be written over the inventory it comes
        // from, nor over a capture.
        let inputs = [("the inventory", args.source.state.as_path())];
        if let Err(e) = crate::config::refuse_overwrite("-o", out, &inputs) {
            eprintln!("vendorwatch: {e}");
            return exit::UNUSABLE;
        }
    }
    let rows = match load(&args.source.state) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vendorwatch: {e}");
            return exit::UNUSABLE;
        }
    };
    let settings = args.source.settings();
    match args.action.unwrap_or(FingerprintsAction::List {
        format: ListFormat::Table,
        all: false,
    }) {
        FingerprintsAction::List { format, all } => list(&rows, &settings, format, all),
        FingerprintsAction::Export { vendor, out } => export(&rows, &settings, &vendor, out),
    }
}

/// Every fingerprint used on a vendor's flows, candidate or not (for `--all`).
fn as_seen(rows: &[FingerprintStats]) -> Vec<Candidate> {
    let mut v: Vec<Candidate> = rows
        .iter()
        .filter_map(|r| r.leading_use().map(|(c, _)| c))
        .collect();
    v.sort_by_key(|c| std::cmp::Reverse(c.vendor_flows));
    v
}

fn list(rows: &[FingerprintStats], settings: &LearnSettings, format: ListFormat, all: bool) -> i32 {
    let candidates = fingerprints::candidates_of(rows, settings);
    let shown = if all {
        as_seen(rows)
    } else {
        candidates.clone()
    };
    match format {
        ListFormat::Json => {
            let items: Vec<serde_json::Value> = shown
                .iter()
                .map(|c| {
                    let mut v = serde_json::to_value(c).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert(
                            "candidate".into(),
                            candidates
                                .iter()
                                .any(|x| x.fingerprint == c.fingerprint)
                                .into(),
                        );
                    }
                    v
                })
                .collect();
            println!("{}", serde_json::Value::Array(items));
        }
        ListFormat::Table => {
            if shown.is_empty() {
                eprintln!(
                    "vendorwatch: no candidate fingerprint under these settings ({} host(s), specificity {}, {} s; {} fingerprint(s) learned, --all lists those used on vendor flows)",
                    settings.min_hosts,
                    settings.min_specificity,
                    settings.min_observe_secs,
                    rows.len()
                );
                return exit::OK;
            }
            println!(
                "{:<40} {:<12} {:>5} {:>7} {:>7} {:>6}  {:<27}  {:<27}  NAMES",
                "FINGERPRINT",
                "VENDOR",
                "HOSTS",
                "VFLOWS",
                "OTHER",
                "SPEC",
                "FIRST SEEN",
                "LAST SEEN"
            );
            for c in &shown {
                let mark = if candidates.iter().any(|x| x.fingerprint == c.fingerprint) {
                    ""
                } else {
                    " (not a candidate)"
                };
                println!(
                    "{:<40} {:<12} {:>5} {:>7} {:>7} {:>6.3}  {:<27}  {:<27}  {}{mark}",
                    c.fingerprint,
                    c.vendor,
                    c.hosts.len(),
                    c.vendor_flows,
                    c.other_flows,
                    c.specificity,
                    c.first_seen.to_string(),
                    c.last_seen.to_string(),
                    c.names.join(",")
                );
            }
        }
    }
    exit::OK
}

fn export(
    rows: &[FingerprintStats],
    settings: &LearnSettings,
    vendor: &str,
    out: Option<PathBuf>,
) -> i32 {
    let candidates = fingerprints::candidates_of(rows, settings);
    let n = candidates.iter().filter(|c| c.vendor == vendor).count();
    if n == 0 {
        eprintln!(
            "vendorwatch: no candidate fingerprint for {vendor:?}: nothing to export (see `vendorwatch fingerprints list --all`)"
        );
        return exit::PARTIAL;
    }
    let now = crate::time::Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
    );
    let text = fingerprints::export_pack(&candidates, vendor, &now.to_string());
    match out.filter(|path| path != std::path::Path::new("-")) {
        Some(path) => {
            if let Err(e) = std::fs::write(&path, text) {
                eprintln!("vendorwatch: cannot write {}: {e}", path.display());
                return exit::PARTIAL;
            }
            eprintln!(
                "vendorwatch: {n} rule(s) written to {}; review them, then deploy the file next to the shipped packs (--rules DIR)",
                path.display()
            );
        }
        None => print!("{text}"),
    }
    exit::OK
}
