//! What `replay` and `live` share: starting a run (outputs, inventory, shared state,
//! metrics endpoint, reloader) and concluding it (inventory, syslog, report, alerts file,
//! summary), with the exit code that says how it went.

use super::{exit, logging, CommonArgs};
use crate::config::settings::{self, Mode, Settings};
use crate::config::{ConfigError, LoadedConfig, RunConfig};
use crate::detect::Detector;
use crate::hosts::HostTable;
use crate::metrics::Counters;
use crate::output;
use crate::output::PacketSpan;
use crate::pipeline::{Shared, SharedWriter};
use crate::serve::exporter;
use crate::time::Timestamp;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// What a run starts with: the shared state, the active vendors, the metrics endpoint and
/// the inventory's persister.
pub struct Started {
    /// Flushes the events file every second (live only; a replay's is written at the end).
    pub flusher: Option<output::Flusher>,
    /// Earliest and latest packet time so far (live capture threads update it every second;
    /// `/api/hosts` reads it).
    pub span: PacketSpan,
    pub shared: Arc<Shared>,
    pub vendors: Vec<String>,
    pub server: Option<exporter::Server>,
    pub persister: Option<crate::hosts::store::Persister>,
    pub reloader: Option<crate::reload::Reloader>,
    /// Ships the spool to the agency inventory (`--inventory`).
    pub shipper: Option<crate::hosts::ship::Shipper>,
}

/// Reads the configuration file, sets up the log as the settings say (before anything can
/// warn), and builds the run configuration. Returns the file too (`live` reads [live]).
pub fn configure(
    common: &CommonArgs,
    mode: Mode,
) -> Result<(RunConfig, LoadedConfig), ConfigError> {
    let path = common.config.as_deref();
    let file = crate::config::load_file(path).inspect_err(|_| {
        logging::init(common.settings.log_format.unwrap_or_default());
    })?;
    // A merge that fails is reported by `build`, in the default log format.
    let merged = settings::layered(&[&common.settings, &file.settings, &Settings::defaults(mode)]);
    logging::init(merged.ok().and_then(|s| s.log_format).unwrap_or_default());
    let cfg = RunConfig::build(&common.settings, &file, path, mode)?;
    Ok((cfg, file))
}

fn open_output(path: &Path, what: &str) -> Result<SharedWriter, String> {
    let w: Box<dyn Write + Send> = if path == Path::new("-") {
        Box::new(std::io::BufWriter::new(std::io::stdout()))
    } else {
        let f = output::create_output(path).map_err(|e| {
            format!(
                "cannot create the {what} file {}: {e} ({})",
                crate::operator_input::shown(path),
                output::create_advice(path)
            )
        })?;
        Box::new(std::io::BufWriter::with_capacity(256 * 1024, f))
    };
    Ok(Arc::new(Mutex::new(w)))
}

/// The report file, the alerts sink and the events writer, opened now: a path that cannot
/// be written fails at once, and a live sensor that dropped its privileges can still write.
type Outputs = (
    Option<std::fs::File>,
    Option<output::alertfile::AlertSink>,
    Option<SharedWriter>,
);

fn open_outputs(cfg: &RunConfig) -> Result<Outputs, String> {
    let report_file = match &cfg.report {
        Some(p) => Some(output::create_output(p).map_err(|e| {
            format!(
                "cannot create the report {}: {e} ({})",
                crate::operator_input::shown(p),
                output::create_advice(p)
            )
        })?),
        None => None,
    };
    let alerts = cfg
        .alerts
        .as_deref()
        .map(|p| {
            output::alertfile::AlertSink::start(
                output::alertfile::Destination::from_path(p),
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
    Ok((report_file, alerts, events))
}

/// Why the inventory cannot be opened, with the way out (another path, or none) when the
/// store's own words do not already give it.
pub(super) fn inventory_unusable(e: crate::hosts::store::StoreError) -> String {
    let e = String::from(e);
    if e.contains("--state") {
        e
    } else {
        format!("{e} (use --state PATH to choose another, or --state none)")
    }
}

/// Opens the inventory (`--state`), restores hosts and resolver roles from it, and starts
/// shipping to the agency inventory when there is one.
fn open_inventory(
    cfg: &RunConfig,
    hosts: &Arc<HostTable>,
    roles: &crate::detect::resolvers::ResolverRoles,
) -> Result<
    (
        Option<crate::hosts::store::Store>,
        Option<crate::hosts::ship::Shipper>,
    ),
    String,
> {
    let Some(path) = &cfg.state else {
        return Ok((None, None));
    };
    let mut store =
        crate::hosts::store::Store::open_for_writing(path).map_err(inventory_unusable)?;
    hosts.restore(store.load()?);
    roles.restore(store.load_resolvers()?);
    let shipper = match &cfg.agency {
        Some(agency) => Some(super::agency::start_shipping(
            agency, path, &mut store, hosts,
        )?),
        None => None,
    };
    Ok((Some(store), shipper))
}

/// Starts saving the host table (and the learner's state) to the inventory.
fn start_persister(
    store: crate::hosts::store::Store,
    shared: &Shared,
) -> Result<crate::hosts::store::Persister, String> {
    let learner = Arc::clone(&shared.detector.learner);
    // What earlier runs learned of fingerprints is unreadable only in a damaged file,
    // whose hosts would not have loaded either: nothing more to say.
    if let Ok(rows) = store.load_fingerprints() {
        learner.restore(rows);
    }
    let p = crate::hosts::store::Persister::start_with(
        store,
        Arc::clone(&shared.hosts),
        Some(Arc::clone(shared.detector.resolver_roles())),
        Some(learner),
    )
    .map_err(|e| e.to_string())?;
    if let Ok(mut slot) = shared.counters.sensor.inventory_saves.lock() {
        *slot = Some((Arc::clone(&p.saves), Arc::clone(&p.failures)));
    }
    Ok(p)
}

/// Opens the outputs and builds the state the workers share. `replay`: a replay's report,
/// summary and host table describe its own inputs, even when an inventory is kept (the host
/// table keeps a run view apart from what the inventory held).
pub fn start(cfg: &RunConfig, replay: bool) -> Result<Started, String> {
    let (report_file, alerts, events) = open_outputs(cfg)?;
    let vendors: Vec<String> = cfg.rules.packs.iter().map(|p| p.vendor.clone()).collect();
    let mut table = HostTable::with_realert(cfg.realert_secs).with_max_hosts(cfg.max_hosts);
    // A temporary spool (`replay --inventory` without --state) is no inventory of the user's.
    if replay && cfg.state.is_some() && !cfg.temporary_spool {
        table = table.with_run_view();
    }
    let hosts = Arc::new(table);
    let roles = Arc::new(crate::detect::resolvers::ResolverRoles::with_pinned(
        &cfg.pinned_resolvers,
    ));
    let (store, shipper) = open_inventory(cfg, &hosts, &roles)?;
    let syslog = match &cfg.syslog {
        Some(c) => Some(
            output::syslog::SyslogSink::start(c.clone())
                .map_err(|e| format!("cannot start the syslog sink: {e}"))?,
        ),
        None => None,
    };
    let shared = Arc::new(Shared {
        detector: Detector::new(
            Arc::clone(&cfg.rules),
            cfg.home_net.clone(),
            cfg.detect_limits,
            cfg.encrypted_dns.clone(),
        )
        .with_learning(cfg.learn)
        .with_resolver_roles(roles),
        hosts,
        counters: Counters::default(),
        sinks: output::sink::Sinks::new(alerts, syslog),
        events,
        extract_limits: cfg.extract_limits,
        decode: cfg.decode.clone(),
        batch_seconds: exporter::batch_histogram(),
        report_file: Mutex::new(report_file),
        suppressions: arc_swap::ArcSwap::from_pointee(cfg.suppressions.clone()),
        output_error: Mutex::new(None),
    });
    if let (Some(s), Ok(mut slot)) = (&shipper, shared.counters.sensor.agency.lock()) {
        *slot = Some(Arc::clone(&s.stats));
    }
    let persister = store.map(|s| start_persister(s, &shared)).transpose()?;
    start_services(cfg, replay, shared, vendors, persister, shipper)
}

/// The health and reload time at start, the metrics endpoint, the reloader and the flusher.
fn start_services(
    cfg: &RunConfig,
    replay: bool,
    shared: Arc<Shared>,
    vendors: Vec<String>,
    persister: Option<crate::hosts::store::Persister>,
    shipper: Option<crate::hosts::ship::Shipper>,
) -> Result<Started, String> {
    set_health(&shared, Some("starting"));
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

/// [`start`], saying why not on stderr.
pub fn start_or_say(cfg: &RunConfig, replay: bool) -> Option<Started> {
    start(cfg, replay).map_err(|msg| logging::error(&msg)).ok()
}

/// What `/healthz` says: healthy (`None`) or why not.
pub fn set_health(shared: &Shared, unhealthy: Option<&str>) {
    if let Ok(mut h) = shared.counters.sensor.unhealthy.lock() {
        *h = unhealthy.map(str::to_string);
    }
}

/// Widens `span` to take in `first..=last`.
pub fn widen_span(span: &PacketSpan, first: Option<Timestamp>, last: Option<Timestamp>) {
    if let Ok(mut g) = span.lock() {
        g.0 = match (g.0, first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        g.1 = g.1.max(last);
    }
}

/// Writes the report and the summary; returns the exit code so far (0, or 1 when an output failed).
pub fn conclude(
    cfg: &RunConfig,
    shared: &Shared,
    vendors: &[String],
    facts: output::summary::RunFacts<'_>,
    persister: Option<crate::hosts::store::Persister>,
) -> i32 {
    let mut kept_in: Vec<String> = Vec::new();
    let mut code = finish_inventory(cfg, persister, &mut kept_in);
    // A replay with an inventory: this run's own view, not everything the inventory holds.
    let hosts = shared.hosts.run_snapshot();
    if let Some(path) = &cfg.report {
        match write_report(shared, path, vendors, &facts, &hosts) {
            Ok(()) => kept_in.insert(
                0,
                format!("the report {}", crate::operator_input::shown(path)),
            ),
            Err(e) => {
                logging::error(&format!(
                    "cannot write the report {}: {e}",
                    crate::operator_input::shown(path)
                ));
                code = exit::PARTIAL;
            }
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
        if end.lost {
            logging::error(&end.message);
        } else {
            logging::warning(&end.message);
        }
        if end.lost {
            code = exit::PARTIAL;
        }
    }
    code = code.max(events_error(cfg, shared));
    for e in facts.input_errors {
        logging::error(&e.to_string());
    }
    print_summary(cfg, shared, &facts, &hosts);
    code
}

/// Saves the inventory a last time; says so when it fails (exit 1) or failed on the way.
fn finish_inventory(
    cfg: &RunConfig,
    persister: Option<crate::hosts::store::Persister>,
    kept_in: &mut Vec<String>,
) -> i32 {
    let Some(p) = persister else {
        return exit::OK;
    };
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
        logging::error(&format!(
            "the inventory could not be saved at the end: {e}; what this run detected since its last good save is not in it; {has}"
        ));
        return exit::PARTIAL;
    }
    if let Some(state) = &cfg.state {
        let failed = failures.load(Ordering::Relaxed);
        if failed > 0 {
            logging::warning(&format!(
                "inventory {}: {failed} save(s) failed during the run and were retried; everything is saved (last failure: {})",
                state.display(),
                last_error.lock().ok().and_then(|l| l.clone()).unwrap_or_default()
            ));
        }
        kept_in.push(format!("the inventory {}", state.display()));
    }
    exit::OK
}

/// The outputs besides the alert sinks that this run's detections were sent to (what a
/// sink that lost alerts names).
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

/// Writes the host report, streamed: a report of many hosts is never held twice in memory.
fn write_report(
    shared: &Shared,
    path: &Path,
    vendors: &[String],
    facts: &output::summary::RunFacts<'_>,
    hosts: &[(std::net::IpAddr, crate::hosts::Host)],
) -> std::io::Result<()> {
    let meta = output::ReportMeta {
        first_packet: facts.first_packet,
        last_packet: facts.last_packet,
        vendors: vendors.to_vec(),
        packs: shared.detector.rules().packs.clone(),
        resolver_roles: shared.detector.resolver_roles().list(),
        known_before: shared.hosts.known_before(),
    };
    let report = output::report(hosts, facts.resolvers, &meta);
    let write = |f: std::fs::File| -> std::io::Result<()> {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        serde_json::to_writer_pretty(&mut w, &report)?;
        w.write_all(b"\n")?;
        output::sync_to_storage(&w.into_inner().map_err(|e| e.into_error())?)
    };
    match shared.report_file.lock().map(|mut f| f.take()) {
        Ok(Some(f)) => write(f),
        _ => output::create_output(path).and_then(write),
    }
}

/// Says when the events output failed (exit 1); only it writes through `output_error`.
fn events_error(cfg: &RunConfig, shared: &Shared) -> i32 {
    let Ok(Some(e)) = shared.output_error.lock().map(|s| s.clone()) else {
        return exit::OK;
    };
    let what = match cfg.events.as_deref() {
        Some(p) if p == Path::new("-") => "the events output (stdout)".to_string(),
        Some(p) => format!("the events file {}", crate::operator_input::shown(p)),
        None => "an output".to_string(),
    };
    logging::error(&format!(
        "{what} could not be written: {e}; events from then on are missing (alerts, the report and the inventory are not affected)"
    ));
    exit::PARTIAL
}

/// The summary and host table on stderr (unless quiet), and what was shed.
fn print_summary(
    cfg: &RunConfig,
    shared: &Shared,
    facts: &output::summary::RunFacts<'_>,
    hosts: &[(std::net::IpAddr, crate::hosts::Host)],
) {
    if !cfg.quiet {
        eprint!(
            "{}",
            output::summary::render(&shared.counters, facts, hosts)
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
}
