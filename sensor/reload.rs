//! Hot reload: on SIGHUP, and with `--watch` when a rule or configuration file changes, the
//! rules and suppressions are read again, validated, compiled and put in force with one
//! pointer swap each, while capture goes on. A file that does not load changes nothing: the
//! rules in force stay, the error is reported with its file and line, and the failure is
//! counted (`vendorwatch_rule_reloads_total{result="failure"}`).
//!
//! Only rules, vendors and suppressions are reloaded; every other setting is read at start,
//! and a reload that finds one of them differing from the value in force since start says a
//! restart is needed (until the file holds that value again). A suppression that names a
//! vendor, category or rule id no pack of the rules has fails the reload like a broken rule
//! file. SIGHUP also reopens the alerts file, for an external logrotate.

use crate::config::{self, LoadedConfig, ReloadSpec, RuleSource};
use crate::pipeline::Shared;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often `--watch` looks at the files' modification times.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// After a reload, when every worker has surely loaded the new rules (a batch takes
/// milliseconds): what workers on the old rules still learned is then carried over.
const SETTLE_AFTER: Duration = Duration::from_secs(2);
/// How often the reloader looks for a SIGHUP.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// Why a reload changed nothing (the rules and suppressions in force stay).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The configuration file does not load.
    #[error("{0}")]
    Config(String),
    /// The rules do not load or compile.
    #[error("{0}")]
    Rules(String),
}

impl ReloadError {
    /// A short label (for logs and metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            ReloadError::Config(_) => "config",
            ReloadError::Rules(_) => "rules",
        }
    }
}

/// What a successful reload put in force.
#[derive(Debug)]
pub struct Reloaded {
    pub rules: usize,
    pub vendors: Vec<String>,
    pub suppressions: usize,
    pub rules_from: String,
    /// Start-only settings whose value in the file differs from the one in force since
    /// start (the command line's aside): they need a restart.
    pub restart_needed_for: Vec<String>,
}

impl std::fmt::Display for Reloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} rule(s) for {} from {}, {} suppression(s)",
            self.rules,
            self.vendors.join(","),
            self.rules_from,
            self.suppressions
        )?;
        if !self.restart_needed_for.is_empty() {
            write!(
                f,
                "; changed settings that only a restart applies: {}",
                self.restart_needed_for.join(", ")
            )?;
        }
        Ok(())
    }
}

/// The reloader's memory between reloads.
struct State {
    spec: ReloadSpec,
    /// The configuration file as last loaded (its rules and vendors are in force).
    in_force: Option<LoadedConfig>,
    /// The configuration file as loaded at start: its start-only settings are in force
    /// whatever later reloads read.
    started: Option<LoadedConfig>,
}

impl State {
    fn rules_path(&self) -> Option<PathBuf> {
        match self.spec.rules_with(self.in_force.as_ref()).0 {
            RuleSource::Path(p) => Some(p),
            RuleSource::Embedded => None,
        }
    }

    /// The files whose change `--watch` reacts to.
    fn watched(&self) -> Vec<PathBuf> {
        self.spec
            .config
            .iter()
            .cloned()
            .chain(self.rules_path())
            .collect()
    }

    /// The keys of `changed` the command line does not give: the command line's value wins
    /// over the file's before and after a restart, so a change in the file needs none.
    fn not_overridden(&self, mut changed: Vec<String>) -> Vec<String> {
        let given = serde_json::to_value(&self.spec.overrides).unwrap_or_default();
        changed.retain(|key| given.get(key).is_none_or(serde_json::Value::is_null));
        changed
    }

    /// Reads everything again and, only if all of it is valid, puts it in force.
    fn reload(&mut self, shared: &Shared) -> Result<Reloaded, ReloadError> {
        let file = match &self.spec.config {
            Some(path) => Some(config::load_config(path).map_err(|errs| {
                ReloadError::Config(format!(
                    "{} (`vendorwatch config check {}` lists every problem)",
                    errs.join("; "),
                    path.display()
                ))
            })?),
            None => None,
        };
        let (source, vendors) = self.spec.rules_with(file.as_ref());
        let loaded = source.load().map_err(|errs| {
            let first: Vec<String> = errs.iter().take(3).map(|e| e.to_string()).collect();
            let more = errs.len().saturating_sub(first.len());
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            let check = match &source {
                RuleSource::Path(p) => format!("vendorwatch rules check {}", p.display()),
                RuleSource::Embedded => "vendorwatch rules check".into(),
            };
            ReloadError::Rules(format!(
                "{}{more} (`{check}` lists every problem)",
                first.join("; ")
            ))
        })?;
        if let (Some(f), Some(path)) = (&file, &self.spec.config) {
            let unknown = config::check_suppressions(&f.suppressions, &source.known(&loaded));
            if !unknown.is_empty() {
                let name = crate::operator_input::shown(path);
                return Err(ReloadError::Config(format!(
                    "{} (`vendorwatch config check {name}` lists every problem)",
                    config::render_problems(&name, unknown).join("; ")
                )));
            }
        }
        let set = crate::detect::RuleSet::compile(loaded, vendors.as_deref())
            .map_err(|e| ReloadError::Rules(e.to_string()))?;
        let suppressions = file
            .as_ref()
            .map(|f| f.suppressions.clone())
            .unwrap_or_else(|| (*shared.suppressions.load_full()).clone());
        let restart_needed_for = match (&self.started, &file) {
            (Some(started), Some(new)) => self.not_overridden(started.restart_needed_for(new)),
            _ => Vec::new(),
        };
        let in_force = shared.detector.replace_rules(set);
        let n_suppressions = suppressions.0.len();
        shared.suppressions.store(Arc::new(suppressions));
        if let Some(f) = file {
            self.in_force = Some(f);
        }
        if let Ok(mut t) = shared.counters.sensor.rules_loaded_at.lock() {
            *t = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
        }
        Ok(Reloaded {
            rules: in_force.rules.len(),
            vendors: in_force.vendors(),
            suppressions: n_suppressions,
            rules_from: source.describe(),
            restart_needed_for,
        })
    }
}

/// A file's or a directory's state as `--watch` compares it: modification times and sizes
/// of the file, or of every `*.toml` in the directory (a pack added or removed counts).
fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, Option<(SystemTime, u64)>)> {
    let stat = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
    };
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map(|rd| {
                    rd.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                        .collect()
                })
                .unwrap_or_default();
            entries.sort();
            out.extend(entries.into_iter().map(|p| {
                let s = stat(&p);
                (p, s)
            }));
        } else {
            out.push((path.clone(), stat(path)));
        }
    }
    out
}

/// The thread that waits for SIGHUP (and, with `--watch`, file changes) and reloads.
pub struct Reloader {
    /// Dropped to stop the thread at once (it waits on the channel between polls).
    stop: Option<crossbeam_channel::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Reloader {
    /// Installs the SIGHUP handler and starts watching.
    pub fn start(
        shared: Arc<Shared>,
        mut spec: ReloadSpec,
        quiet: bool,
    ) -> std::io::Result<Reloader> {
        let hup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))?;
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let started = spec.started_with.take();
        let mut state = State {
            spec,
            in_force: started.clone(),
            started,
        };
        let handle = std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || {
                let watch = state.spec.watch;
                let mut baseline = watch.then(|| fingerprint(&state.watched()));
                let mut pending: Option<Vec<_>> = None;
                let mut since_watch = Duration::ZERO;
                let mut settle_at: Option<std::time::Instant> = None;
                // Nothing is sent: the channel disconnects when `stop` lets go of the sender.
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(SIGNAL_POLL)
                {
                    if settle_at.is_some_and(|t| t.elapsed() >= SETTLE_AFTER) {
                        settle_at = None;
                        shared.detector.settle();
                    }
                    let mut why = None;
                    if hup.swap(false, Ordering::Relaxed) {
                        why = Some("SIGHUP".to_string());
                        // logrotate's postrotate sends SIGHUP: start a new alerts file
                        // where the old one was moved away.
                        shared.sinks.reopen();
                    }
                    since_watch += SIGNAL_POLL;
                    if let (Some(base), true) = (&baseline, since_watch >= WATCH_EVERY) {
                        since_watch = Duration::ZERO;
                        let now = fingerprint(&state.watched());
                        // Reload once a change has held still for one poll, so a file
                        // being written is not read half-way.
                        if &now != base && pending.as_ref() == Some(&now) && why.is_none() {
                            why = Some(format!("a change of {}", changed(base, &now)));
                        }
                        pending = (&now != base).then_some(now);
                    }
                    let Some(why) = why else { continue };
                    let outcome = state.reload(&shared);
                    match &outcome {
                        Ok(done) => {
                            settle_at = Some(std::time::Instant::now());
                            shared.counters.reloads_ok.fetch_add(1, Ordering::Relaxed);
                            if !quiet || !done.restart_needed_for.is_empty() {
                                tracing::info!("reloaded after {why}: {done}");
                            }
                        }
                        Err(e) => {
                            shared.counters.reloads_failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                "reload after {why} failed; the rules and suppressions in force stay: {e}"
                            );
                        }
                    }
                    // Whatever happened, this state of the files has been judged; the next
                    // change is judged again.
                    if watch {
                        baseline = Some(fingerprint(&state.watched()));
                        pending = None;
                    }
                }
            })?;
        Ok(Reloader {
            stop: Some(stop),
            handle: Some(handle),
        })
    }

    pub fn stop(mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The files that differ between two fingerprints, for the log line.
fn changed(
    before: &[(PathBuf, Option<(SystemTime, u64)>)],
    after: &[(PathBuf, Option<(SystemTime, u64)>)],
) -> String {
    let mut names: Vec<String> = after
        .iter()
        .filter(|a| !before.contains(a))
        .chain(before.iter().filter(|b| !after.iter().any(|a| a.0 == b.0)))
        .map(|(p, _)| p.display().to_string())
        .collect();
    names.dedup();
    if names.is_empty() {
        "the watched files".into()
    } else {
        names.join(", ")
    }
}
