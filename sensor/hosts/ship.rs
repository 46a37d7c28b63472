//! The shipper: a thread that reads the spool in sequence order and ships it to the agency
//! inventory in batches, off the packet path (capture and workers never wait on the
//! network; the persister only writes the local file).
//!
//! A batch is applied on the server in one transaction with the sensor's high-water mark
//! (`postgres::apply_batch`), and deleted from the spool only after that commit. A crash or
//! SIGKILL between the two leaves rows the server already has: the next run sends them
//! again and the high-water mark skips them. A server that is down, restarting or refusing
//! costs retries with backoff (1 s doubling to `MAX_BACKOFF`), counted by reason and said on
//! the log (stderr) once (then at most once a minute) and when it recovers; the spool keeps
//! everything meanwhile (bounded: see `spool`).

use super::agency::{describe, AgencyConfig};
use super::postgres;
use super::spool::{SpoolReader, SpoolState, Who};
use super::HostTable;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest wait between two tries while the server is unreachable.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often the shipper looks at the spool when it has nothing to do.
pub const POLL: Duration = Duration::from_millis(500);
/// Failures after the first are said at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What the shipper did, for metrics and the end of a run.
#[derive(Debug, Default)]
pub struct ShipStats {
    pub sensor_id: String,
    pub site: String,
    /// Host snapshots the server committed.
    pub shipped: AtomicU64,
    /// Batches committed.
    pub batches: AtomicU64,
    /// Failed tries, by `PgError::reason` (or "spool").
    pub failures: Mutex<BTreeMap<&'static str, u64>>,
    /// Snapshots waiting in the spool (updated every round).
    pub spool: Arc<SpoolState>,
    /// Queue time (Unix seconds) of the oldest waiting snapshot, 0 when none.
    pub oldest_queued: AtomicU64,
    /// Agency alert decisions: first for its (site, host, vendor, category), or a duplicate.
    pub alerts_first: AtomicU64,
    pub alerts_duplicate: AtomicU64,
    /// 1 while the last try reached the server.
    pub up: AtomicBool,
}

impl ShipStats {
    fn fail(&self, reason: &'static str) {
        if let Ok(mut f) = self.failures.lock() {
            *f.entry(reason).or_default() += 1;
        }
    }

    pub fn failures_total(&self) -> u64 {
        self.failures.lock().map(|f| f.values().sum()).unwrap_or(0)
    }

    /// The Prometheus samples: (name, help, counter?, [(labels, value)]).
    #[allow(clippy::type_complexity)]
    pub fn samples(
        &self,
    ) -> Vec<(
        &'static str,
        &'static str,
        bool,
        Vec<(Vec<(&'static str, String)>, f64)>,
    )> {
        // `sensor` and `site` are added to every series by the registry (see
        // `serve::exporter::registry`).
        let who = Vec::<(&'static str, String)>::new;
        let one = |v: f64| vec![(who(), v)];
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let oldest = self.oldest_queued.load(Ordering::Relaxed);
        let age = if oldest == 0 {
            0.0
        } else {
            now.saturating_sub(oldest) as f64
        };
        let mut failures: Vec<(Vec<(&'static str, String)>, f64)> = Vec::new();
        let f = self.failures.lock().map(|f| f.clone()).unwrap_or_default();
        for reason in ["connect", "tls", "permission", "schema", "query", "spool"] {
            let mut l = who();
            l.push(("reason", reason.to_string()));
            failures.push((l, f.get(reason).copied().unwrap_or(0) as f64));
        }
        let mut alerts = Vec::new();
        for (d, v) in [
            ("first", &self.alerts_first),
            ("duplicate", &self.alerts_duplicate),
        ] {
            let mut l = who();
            l.push(("decision", d.to_string()));
            alerts.push((l, v.load(Ordering::Relaxed) as f64));
        }
        let mut dropped = who();
        dropped.push(("reason", "spool_full".to_string()));
        vec![
            ("vendorwatch_sensor_info", "The sensor's identity in the agency inventory (always 1).", false, one(1.0)),
            ("vendorwatch_inventory_shipped_total", "Host snapshots the agency inventory (PostgreSQL) committed.", true, one(self.shipped.load(Ordering::Relaxed) as f64)),
            ("vendorwatch_inventory_ship_batches_total", "Batches the agency inventory committed.", true, one(self.batches.load(Ordering::Relaxed) as f64)),
            ("vendorwatch_inventory_ship_failures_total", "Failed tries to ship to the agency inventory, by reason (each retried; the spool keeps everything).", true, failures),
            ("vendorwatch_inventory_ship_pending", "Host snapshots waiting in the spool to be shipped.", false, one(self.spool.pending.load(Ordering::Relaxed) as f64)),
            ("vendorwatch_inventory_ship_oldest_pending_seconds", "Age of the oldest snapshot waiting in the spool (0 when none).", false, one(age)),
            ("vendorwatch_inventory_ship_dropped_total", "Host snapshots not queued because the spool was full (queued again by a resync once it drains).", true, vec![(dropped, self.spool.dropped_full.load(Ordering::Relaxed) as f64)]),
            ("vendorwatch_inventory_ship_up", "1 while the last try reached the agency inventory.", false, one(if self.up.load(Ordering::Relaxed) { 1.0 } else { 0.0 })),
            ("vendorwatch_inventory_agency_alerts_total", "Alerted detections shipped, by the agency's decision: first for its site, host, vendor and category, or a duplicate of another sensor's.", true, alerts),
        ]
    }
}

/// The running shipper.
pub struct Shipper {
    stop: Arc<AtomicBool>,
    /// Set at the end: ship what is left, then stop (or stop at the deadline).
    drain_until: Arc<Mutex<Option<Instant>>>,
    handle: Option<std::thread::JoinHandle<()>>,
    pub stats: Arc<ShipStats>,
    pub last_error: Arc<Mutex<Option<String>>>,
    pub spool_path: PathBuf,
    pub target: String,
}

/// What the end of a run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipEnd {
    pub shipped: u64,
    pub pending: u64,
    /// Snapshots a full spool turned away (queued again by a resync).
    pub turned_away: u64,
    pub last_error: Option<String>,
}

/// Why the shipper could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error(transparent)]
    Spool(#[from] super::store::StoreError),
    #[error("cannot start the inventory shipper: {0}")]
    Thread(std::io::Error),
}

impl ShipError {
    /// Short, fixed: a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            ShipError::Spool(e) => e.reason(),
            ShipError::Thread(_) => "thread",
        }
    }
}

/// For the command layer, which still carries its errors as text.
impl From<ShipError> for String {
    fn from(e: ShipError) -> String {
        e.to_string()
    }
}

impl Shipper {
    /// Starts shipping the spool at `spool_path` (the local inventory file).
    pub fn start(
        cfg: &AgencyConfig,
        spool_path: &Path,
        inventory_id: String,
        hosts: Arc<HostTable>,
        spool: Arc<SpoolState>,
    ) -> Result<Shipper, ShipError> {
        let reader = SpoolReader::open(spool_path)?;
        let stats = Arc::new(ShipStats {
            sensor_id: cfg.sensor_id.clone(),
            site: cfg.site.clone(),
            spool,
            ..ShipStats::default()
        });
        if let Ok((n, oldest)) = reader.pending() {
            stats.spool.pending.store(n, Ordering::Relaxed);
            stats
                .oldest_queued
                .store(oldest.map_or(0, |t| t.max(0) as u64), Ordering::Relaxed);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let drain_until: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
        let last_error = Arc::new(Mutex::new(None));
        let target = describe(&cfg.pg);
        let worker = Worker {
            pg: cfg.pg.clone(),
            ca: cfg.ca.clone(),
            batch: cfg.batch.max(1),
            inventory_id,
            who: Who {
                site: cfg.site.clone(),
                sensor_id: cfg.sensor_id.clone(),
                backlog: cfg.backlog,
            },
            reader,
            hosts,
            stats: Arc::clone(&stats),
            last_error: Arc::clone(&last_error),
            stop: Arc::clone(&stop),
            drain_until: Arc::clone(&drain_until),
            target: target.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("inventory-ship".into())
            .spawn(move || worker.run())
            .map_err(ShipError::Thread)?;
        Ok(Shipper {
            stop,
            drain_until,
            handle: Some(handle),
            stats,
            last_error,
            spool_path: spool_path.to_path_buf(),
            target,
        })
    }

    /// Ships what is left for at most `wait`, then stops; says what is still waiting.
    pub fn finish(mut self, wait: Duration) -> ShipEnd {
        if let Ok(mut d) = self.drain_until.lock() {
            *d = Some(Instant::now() + wait);
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        ShipEnd {
            shipped: self.stats.shipped.load(Ordering::Relaxed),
            pending: self.stats.spool.pending.load(Ordering::Relaxed),
            turned_away: self.stats.spool.dropped_full.load(Ordering::Relaxed),
            last_error: self.last_error.lock().ok().and_then(|l| l.clone()),
        }
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct Worker {
    pg: ::postgres::Config,
    ca: Option<PathBuf>,
    batch: usize,
    inventory_id: String,
    who: Who,
    reader: SpoolReader,
    hosts: Arc<HostTable>,
    stats: Arc<ShipStats>,
    last_error: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    drain_until: Arc<Mutex<Option<Instant>>>,
    target: String,
}

enum Round {
    /// Shipped a batch: go on at once.
    Shipped,
    /// Nothing waiting.
    Idle,
    Failed,
}

impl Worker {
    fn run(mut self) {
        let mut client: Option<::postgres::Client> = None;
        let mut backoff = Duration::from_secs(1);
        let mut next_try = Instant::now();
        let mut last_warning: Option<Instant> = None;
        let mut failing = false;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let deadline = self.drain_until.lock().ok().and_then(|d| *d);
            if Instant::now() < next_try {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return;
                }
                std::thread::sleep(POLL.min(next_try - Instant::now()));
                continue;
            }
            let round = self.round(&mut client);
            self.refresh_pending();
            match round {
                Round::Shipped => {
                    backoff = Duration::from_secs(1);
                    if failing {
                        failing = false;
                        last_warning = None;
                        tracing::info!(
                            "agency inventory {} reachable again; shipping the spool ({} failed tries before)",
                            self.target,
                            self.stats.failures_total()
                        );
                    }
                }
                Round::Idle => {
                    backoff = Duration::from_secs(1);
                    if deadline.is_some() {
                        return;
                    }
                    next_try = Instant::now() + POLL;
                }
                Round::Failed => {
                    client = None;
                    failing = true;
                    if last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                        last_warning = Some(Instant::now());
                        let e = self.last_error.lock().ok().and_then(|l| l.clone());
                        tracing::warn!(
                            "{}; {} host snapshot(s) wait in the spool and are retried (the run goes on)",
                            e.unwrap_or_default(),
                            self.stats.spool.pending.load(Ordering::Relaxed)
                        );
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return;
                    }
                    next_try = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn refresh_pending(&self) {
        if let Ok((n, oldest)) = self.reader.pending() {
            self.stats.spool.pending.store(n, Ordering::Relaxed);
            self.stats
                .oldest_queued
                .store(oldest.map_or(0, |t| t.max(0) as u64), Ordering::Relaxed);
        }
    }

    fn failed(&self, reason: &'static str, msg: String) -> Round {
        self.stats.fail(reason);
        self.stats.up.store(false, Ordering::Relaxed);
        if let Ok(mut l) = self.last_error.lock() {
            *l = Some(msg);
        }
        Round::Failed
    }

    fn round(&mut self, client: &mut Option<::postgres::Client>) -> Round {
        let (rows, top) = match self.reader.batch(self.batch) {
            Ok(b) => b,
            Err(e) => return self.failed("spool", format!("cannot read the spool: {e}")),
        };
        if top == 0 {
            // Drained: if a full spool turned hosts away, queue the hosts again (a step at a
            // time, as many as the spool holds).
            self.stats.spool.pending.store(0, Ordering::Relaxed);
            return match self.reader.resync_step(
                &self.who,
                &self.stats.spool,
                self.hosts.snapshot(),
            ) {
                Ok(true) => Round::Shipped,
                Ok(false) => Round::Idle,
                Err(e) => self.failed("spool", format!("cannot write the spool: {e}")),
            };
        }
        if client.is_none() {
            match postgres::connect(&self.pg, self.ca.as_deref()).and_then(|mut c| {
                postgres::migrate(&self.pg, &mut c)?;
                Ok(c)
            }) {
                Ok(c) => *client = Some(c),
                Err(e) => return self.failed(e.reason(), e.to_string()),
            }
        }
        let Some(c) = client.as_mut() else {
            return Round::Failed;
        };
        // Rows of another sensor id (the id changed between runs) go in their own batch.
        let first_sensor = rows.first().map(|r| r.sensor_id.clone());
        let (rows, top) = match &first_sensor {
            Some(s) if rows.iter().any(|r| &r.sensor_id != s) => {
                let cut: Vec<_> = rows.into_iter().take_while(|r| &r.sensor_id == s).collect();
                let top = cut.last().map_or(0, |r| r.seq);
                (cut, top)
            }
            _ => (rows, top),
        };
        match postgres::apply_batch(&self.pg, c, &self.inventory_id, &rows) {
            Ok(a) => {
                self.stats.up.store(true, Ordering::Relaxed);
                self.stats.shipped.fetch_add(a.applied, Ordering::Relaxed);
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .alerts_first
                    .fetch_add(a.alerts_first, Ordering::Relaxed);
                self.stats
                    .alerts_duplicate
                    .fetch_add(a.alerts_duplicate, Ordering::Relaxed);
                if let Err(e) = self.reader.shipped(top) {
                    // The server has them; they go again next round and are skipped there.
                    return self.failed("spool", format!("cannot update the spool: {e}"));
                }
                Round::Shipped
            }
            Err(e) => {
                let reason = e.reason();
                self.failed(reason, e.to_string())
            }
        }
    }
}
