//! `vendorwatch replay`: read captures (files, directories, stdin) through the pipeline,
//! then conclude the run (report, summary, inventory).

use super::runtime::{self, Started};
use super::{exit, logging, CommonArgs};
use crate::capture::inputs;
use crate::config::{settings, ReplaySettings, RunConfig};
use crate::metrics::Counters;
use crate::output;
use crate::pipeline::{self, Progress};
use clap::Args;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Capture files (pcap or pcapng, as they are or gzip-compressed), directories (read in
    /// natural order), or - for stdin.
    #[arg(required = true, value_name = "PCAP|DIR|-")]
    pub inputs: Vec<String>,
    #[command(flatten)]
    pub replay: ReplaySettings,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The progress bar over all inputs (hidden when quiet).
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

impl Bar {
    fn new(quiet: bool, inputs: &[inputs::Input]) -> Bar {
        let sizes: Vec<u64> = inputs
            .iter()
            .map(|i| match i {
                inputs::Input::Path(p) => std::fs::metadata(p).map_or(0, |m| m.len()),
                inputs::Input::Stdin => 0,
            })
            .collect();
        let total: u64 = sizes.iter().sum();
        let bar = if quiet {
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
        Bar {
            bar,
            sizes,
            done_before: 0,
            current: 0,
        }
    }
}

/// The command line's `--linger` over the file's `[replay]` table over the default.
fn linger(cli: &ReplaySettings, file: &ReplaySettings) -> Result<u64, crate::config::ConfigError> {
    let merged = settings::layered(&[cli, file, &ReplaySettings::defaults()])?;
    let linger = merged.linger.unwrap_or_default();
    crate::config::check_flag("linger", linger)?;
    Ok(linger)
}

/// Runs `replay`; returns the exit code.
pub fn run(args: ReplayArgs) -> i32 {
    let built = runtime::configure(&args.common, crate::config::Mode::Replay)
        .and_then(|(cfg, file)| Ok((cfg, linger(&args.replay, &file.replay)?)));
    match built {
        Ok((cfg, linger)) => replay(cfg, &args.inputs, linger),
        Err(e) => {
            logging::error(&e.to_string());
            exit::UNUSABLE
        }
    }
}

fn replay(cfg: RunConfig, inputs_given: &[String], linger: u64) -> i32 {
    let expanded = inputs::expand(inputs_given);
    if !cfg.quiet {
        for d in &expanded.dirs {
            tracing::info!("{}", d.describe());
        }
    }
    if expanded.inputs.is_empty() {
        // Otherwise said once at the end, on stderr and in the summary (`finish`).
        for p in &expanded.problems {
            logging::error(&format!("{}: {}", p.path, p.problem));
        }
        logging::error("no capture to read (give pcap/pcapng files, gzip-compressed or not, directories holding them, or - for stdin)");
        return exit::UNUSABLE;
    }
    if let Some(problem) = output_over_input(&cfg, &expanded.inputs) {
        logging::error(&problem);
        return exit::UNUSABLE;
    }
    if linger > 0 && cfg.metrics_addr.is_none() {
        // Not an error: a configuration file may set `linger` for the replays that serve.
        tracing::warn!(
            "--linger {linger} keeps the metrics endpoint up after the replay, but metrics are off: give --metrics-addr 127.0.0.1:9717 to serve them"
        );
    }
    let Some(started) = runtime::start_or_say(&cfg, true) else {
        return exit::UNUSABLE;
    };
    let mut progress = Bar::new(cfg.quiet, &expanded.inputs);
    let clock = std::time::Instant::now();
    runtime::set_health(&started.shared, None);
    // SIGINT/SIGTERM end the replay early but cleanly: what was read is reported and saved.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(signal, Arc::clone(&stop));
    }
    // Outputs, inventory and metrics socket are open: from here on, no exec, ptrace, mounts, ...
    // (the replay's line is logged only with VENDORWATCH_LOG=info; its stderr is the summary's).
    match crate::capture::sandbox::apply(cfg.seccomp) {
        Ok(sandbox) => tracing::info!(target: "vendorwatch::sandbox", "{}", sandbox.describe()),
        Err(e) => {
            logging::error(&e.to_string());
            return exit::UNUSABLE;
        }
    }
    let outcome = match pipeline::replay(
        &expanded.inputs,
        Arc::clone(&started.shared),
        cfg.workers,
        &mut progress,
        &stop,
    ) {
        Ok(o) => o,
        Err(e) => {
            logging::error(&format!("cannot start worker threads: {e}"));
            return exit::UNUSABLE;
        }
    };
    let read = Read {
        outcome,
        skipped: expanded.skipped.len(),
        problems: expanded
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.problem))
            .collect(),
        elapsed_secs: clock.elapsed().as_secs_f64(),
    };
    finish(&cfg, started, read, linger, &stop)
}

/// What the replay read.
struct Read {
    outcome: pipeline::ReplayOutcome,
    skipped: usize,
    /// The inputs named that could not be read at all (a missing file), each with its reason.
    problems: Vec<String>,
    elapsed_secs: f64,
}

/// Concludes the replay: report, summary, shipping, the lingering metrics endpoint.
fn finish(cfg: &RunConfig, started: Started, read: Read, linger: u64, stop: &AtomicBool) -> i32 {
    let Started {
        flusher: _,
        span,
        shared,
        vendors,
        server,
        persister,
        reloader,
        shipper,
    } = started;
    let outcome = &read.outcome;
    // `/api/hosts` (with --linger) dates the replay like the report does.
    runtime::widen_span(&span, outcome.first_packet, outcome.last_packet);
    // No reload while the results are written: they are judged by one rule set.
    if let Some(r) = reloader {
        r.stop();
    }
    let resolvers = shared.detector.resolvers();
    // An input that could not be opened at all is an error of the run as much as one that
    // broke while read: both get their summary line.
    let errors: Vec<String> = read
        .problems
        .iter()
        .cloned()
        .chain(outcome.errors.iter().map(|e| e.to_string()))
        .collect();
    let facts = output::summary::RunFacts {
        inputs_read: outcome.inputs_read,
        input_errors: &errors,
        skipped_inputs: read.skipped,
        elapsed_secs: read.elapsed_secs,
        first_packet: outcome.first_packet,
        last_packet: outcome.last_packet,
        resolvers: &resolvers,
        vendors: &vendors,
        sources: Vec::new(),
        interfaces: false,
    };
    let mut code = runtime::conclude(cfg, &shared, &vendors, facts, persister);
    if let Some(s) = shipper {
        let wait = cfg.agency.as_ref().map_or(0, |a| a.wait_secs);
        code = code.max(super::agency::finish_shipping(
            s,
            std::time::Duration::from_secs(wait),
            cfg.temporary_spool,
            cfg.quiet,
        ));
    }
    if let Some(where_) = &outcome.interrupted {
        logging::error(&format!("interrupted by a signal in {where_}; everything read until then is in the alerts, report and inventory"));
        code = exit::PARTIAL;
    }
    if let Some(server) = server {
        runtime::set_health(&shared, Some("replay finished"));
        code = code.max(linger_then_stop(server, linger, stop));
    }
    let packets = Counters::get(&shared.counters.packets);
    if outcome.inputs_read == 0 || (packets == 0 && outcome.errors.len() >= outcome.inputs_read) {
        return exit::UNUSABLE;
    }
    if !outcome.errors.is_empty() || !read.problems.is_empty() {
        code = exit::PARTIAL;
    }
    code
}

/// Serves metrics `linger` seconds more (`--linger`), then stops the endpoint; exit 1 when
/// it failed during the run.
fn linger_then_stop(server: crate::serve::exporter::Server, linger: u64, stop: &AtomicBool) -> i32 {
    if linger > 0 && server.failure().is_none() {
        tracing::info!(
            "serving metrics on http://{}/metrics for {linger} s more",
            server.addr
        );
        // In steps, so that SIGINT/SIGTERM or the endpoint failing end the wait.
        let until = std::time::Instant::now().checked_add(std::time::Duration::from_secs(linger));
        while !stop.load(Ordering::Relaxed)
            && until.is_none_or(|u| std::time::Instant::now() < u)
            && server.failure().is_none()
        {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    if let Some(why) = server.stop() {
        logging::error(&format!(
            "the metrics endpoint failed during the run: {why}"
        ));
        return exit::PARTIAL;
    }
    exit::OK
}

/// An output that is one of the inputs, said plainly: opening it would overwrite the capture
/// (`--alerts *.pcap` with the file name forgotten made the first capture the alerts file).
fn output_over_input(cfg: &RunConfig, inputs: &[inputs::Input]) -> Option<String> {
    use crate::config::file_identity;
    let input_ids: Vec<(String, crate::config::FileIdentity)> = inputs
        .iter()
        .filter_map(|input| match input {
            inputs::Input::Path(p) => Some((input.display_name(), file_identity(p)?)),
            inputs::Input::Stdin => None,
        })
        .collect();
    cfg.outputs().iter().find_map(|(flag, path)| {
        let id = file_identity((*path)?)?;
        let (input, _) = input_ids.iter().find(|(_, input_id)| *input_id == id)?;
        Some(format!(
            "{flag} names the input {input}: writing it would overwrite the capture; give {flag} its own file"
        ))
    })
}
