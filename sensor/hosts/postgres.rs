//! The agency inventory on PostgreSQL: connecting (TLS when the URL's `sslmode` asks for it),
//! the versioned schema, applying a shipped batch idempotently, and reading the agency view.
//!
//! Tables (all prefixed `vw_`):
//! - `vw_schema`: the schema version (migrations run under an advisory lock, so eight
//!   sensors starting at once migrate once);
//! - `vw_ship_marks`: per (sensor, local inventory) the highest spool sequence number
//!   applied — the high-water mark that makes a replayed batch change nothing;
//! - `vw_witness_hosts`: per (site, address, sensor, local inventory) the latest snapshot;
//! - `vw_witness_detections`: the same per detection, in columns (for filters and Grafana);
//! - `vw_alerts`: the agency's alert decision, one row per (site, address, vendor,
//!   category), taken by `INSERT … ON CONFLICT DO NOTHING RETURNING`: the first sensor to
//!   ship an alerted detection owns it, every later one learns it is a duplicate;
//! - views `vw_detections` and `vw_hosts`: the agency view, one row per (site, address,
//!   vendor, category) / (site, address), counts summed over witnesses.
//!
//! A sensor writes only its own witness rows, so concurrent writers never update the same
//! row's count (no lost updates), and the whole batch with its high-water mark is one
//! transaction: it is applied entirely or not at all.

use super::agency::{describe, AgencyConfig, HostSnapshot};
use std::net::IpAddr;

/// The schema this build writes. Each step of `MIGRATIONS` brings version N-1 to N.
pub const SCHEMA_VERSION: i32 = 1;
const MIGRATIONS: &[&str] = &[
    // 1: ship marks, witnesses, alert decisions, the agency views.
    "
    CREATE TABLE vw_ship_marks (
        sensor_id TEXT NOT NULL,
        inventory_id TEXT NOT NULL,
        site TEXT NOT NULL,
        high_water BIGINT NOT NULL,
        shipped_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (sensor_id, inventory_id)
    );
    CREATE TABLE vw_witness_hosts (
        site TEXT NOT NULL,
        ip INET NOT NULL,
        sensor_id TEXT NOT NULL,
        inventory_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        mac TEXT,
        hostname TEXT,
        host JSONB NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (site, ip, sensor_id, inventory_id)
    );
    CREATE INDEX vw_witness_hosts_sensor ON vw_witness_hosts (sensor_id);
    CREATE TABLE vw_witness_detections (
        site TEXT NOT NULL,
        ip INET NOT NULL,
        sensor_id TEXT NOT NULL,
        inventory_id TEXT NOT NULL,
        vendor TEXT NOT NULL,
        category TEXT NOT NULL,
        severity TEXT NOT NULL,
        first_seen TIMESTAMPTZ NOT NULL,
        last_seen TIMESTAMPTZ NOT NULL,
        count BIGINT NOT NULL,
        forwarded BOOLEAN NOT NULL,
        suppressed TEXT,
        alerted_at TIMESTAMPTZ,
        PRIMARY KEY (site, ip, sensor_id, inventory_id, vendor, category)
    );
    CREATE INDEX vw_witness_detections_vendor ON vw_witness_detections (vendor, category);
    CREATE INDEX vw_witness_detections_last_seen ON vw_witness_detections (last_seen);
    CREATE TABLE vw_alerts (
        site TEXT NOT NULL,
        ip INET NOT NULL,
        vendor TEXT NOT NULL,
        category TEXT NOT NULL,
        sensor_id TEXT NOT NULL,
        alerted_at TIMESTAMPTZ NOT NULL,
        decided_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (site, ip, vendor, category)
    );
    CREATE VIEW vw_detections AS
        SELECT site, ip, vendor, category,
               max(severity) AS severity,
               min(first_seen) AS first_seen, max(last_seen) AS last_seen,
               sum(count)::BIGINT AS count,
               array_agg(DISTINCT sensor_id ORDER BY sensor_id) AS sensors
        FROM vw_witness_detections GROUP BY site, ip, vendor, category;
    CREATE VIEW vw_hosts AS
        SELECT site, ip,
               min(first_seen) AS first_seen, max(last_seen) AS last_seen,
               sum(count)::BIGINT AS findings,
               array_agg(DISTINCT vendor ORDER BY vendor) AS vendors,
               array_agg(DISTINCT sensor_id ORDER BY sensor_id) AS sensors
        FROM vw_witness_detections GROUP BY site, ip;
",
];

/// Why talking to the server failed; `reason()` is the metric label.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("cannot connect to the agency inventory {target}: {}", chain(.source))]
    Connect {
        target: String,
        source: postgres::Error,
    },
    #[error("TLS set-up for the agency inventory: {0}")]
    Tls(String),
    #[error("the agency inventory {target} refused: permission denied ({}); the sensor's database role needs SELECT, INSERT and UPDATE on the vw_ tables (deploy/postgres/roles.sql)", chain(.source))]
    Permission {
        target: String,
        source: postgres::Error,
    },
    #[error("the agency inventory {target} has schema {found}, this vendorwatch knows {SCHEMA_VERSION}: upgrade vendorwatch")]
    NewerSchema { target: String, found: i32 },
    #[error("the agency inventory {target} has no vendorwatch schema yet: start a sensor with --inventory once (a role that may create tables), or see deploy/postgres/roles.sql")]
    NoSchema { target: String },
    #[error("agency inventory {target}: {}", chain(.source))]
    Query {
        target: String,
        source: postgres::Error,
    },
}

/// The error with its causes ("error connecting to server: Connection refused (os error 111)").
fn chain(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

impl PgError {
    pub fn reason(&self) -> &'static str {
        match self {
            PgError::Connect { .. } => "connect",
            PgError::Tls(_) => "tls",
            PgError::Permission { .. } => "permission",
            PgError::NewerSchema { .. } | PgError::NoSchema { .. } => "schema",
            PgError::Query { .. } => "query",
        }
    }

    fn from_query(pg: &postgres::Config, e: postgres::Error) -> PgError {
        let target = describe(pg);
        if e.code() == Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
            PgError::Permission { target, source: e }
        } else if e.is_closed() || e.as_db_error().is_none() {
            PgError::Connect { target, source: e }
        } else {
            PgError::Query { target, source: e }
        }
    }
}

/// Opens a connection: plain when the URL says `sslmode=disable`, else TLS through the
/// system's OpenSSL (`sslmode=prefer`, the default, falls back to plain when the server has
/// no TLS; `require` does not). `ca` adds a root certificate (a private CA, self-signed).
pub fn connect(
    pg: &postgres::Config,
    ca: Option<&std::path::Path>,
) -> Result<postgres::Client, PgError> {
    if pg.get_ssl_mode() == postgres::config::SslMode::Disable {
        return pg.connect(postgres::NoTls).map_err(|e| PgError::Connect {
            target: describe(pg),
            source: e,
        });
    }
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(path) = ca {
        let pem = std::fs::read(path)
            .map_err(|e| PgError::Tls(format!("cannot read {}: {e}", path.display())))?;
        let cert = native_tls::Certificate::from_pem(&pem).map_err(|e| {
            PgError::Tls(format!("{} is not a PEM certificate: {e}", path.display()))
        })?;
        builder.add_root_certificate(cert);
    }
    let tls = builder.build().map_err(|e| PgError::Tls(e.to_string()))?;
    pg.connect(postgres_native_tls::MakeTlsConnector::new(tls))
        .map_err(|e| PgError::from_query(pg, e))
}

/// The schema version, or `None` when there is no vendorwatch schema.
pub fn schema_version(
    pg: &postgres::Config,
    client: &mut postgres::Client,
) -> Result<Option<i32>, PgError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('vw_schema') IS NOT NULL", &[])
        .map_err(|e| PgError::from_query(pg, e))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt("SELECT max(version) FROM vw_schema", &[])
        .map_err(|e| PgError::from_query(pg, e))?;
    Ok(row.and_then(|r| r.get::<_, Option<i32>>(0)))
}

/// Creates or migrates the schema (once, under an advisory lock, whoever comes first).
pub fn migrate(pg: &postgres::Config, client: &mut postgres::Client) -> Result<(), PgError> {
    let q = |e| PgError::from_query(pg, e);
    // Nothing to do (the usual case, and all a least-privilege sensor role may do).
    if let Some(v) = schema_version(pg, client)? {
        if v == SCHEMA_VERSION {
            return Ok(());
        }
        if v > SCHEMA_VERSION {
            return Err(PgError::NewerSchema {
                target: describe(pg),
                found: v,
            });
        }
    }
    let mut tx = client.transaction().map_err(q)?;
    tx.execute("SELECT pg_advisory_xact_lock(7415263)", &[])
        .map_err(q)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS vw_schema (version INTEGER NOT NULL)")
        .map_err(q)?;
    let current: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM vw_schema", &[])
        .map_err(q)?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(PgError::NewerSchema {
            target: describe(pg),
            found: current,
        });
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        tx.batch_execute(step).map_err(q)?;
        let v = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute("INSERT INTO vw_schema (version) VALUES ($1)", &[&v])
            .map_err(q)?;
    }
    tx.commit().map_err(q)
}

/// One spooled snapshot on its way to the server.
#[derive(Debug, Clone)]
pub struct Shipped {
    pub seq: i64,
    pub site: String,
    pub sensor_id: String,
    pub ip: IpAddr,
    pub snapshot: HostSnapshot,
}

/// What applying a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Snapshots written (those at or below the high-water mark are skipped).
    pub applied: u64,
    pub skipped: u64,
    /// Alert decisions this sensor took for the agency / found already taken by another.
    pub alerts_first: u64,
    pub alerts_duplicate: u64,
}

fn ts(ns: i64) -> std::time::SystemTime {
    let d = std::time::Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        std::time::UNIX_EPOCH + d
    } else {
        std::time::UNIX_EPOCH - d
    }
}

/// The columns of a batch's hosts, for one `unnest` insert.
#[derive(Default)]
struct HostCols<'a> {
    site: Vec<&'a str>,
    ip: Vec<IpAddr>,
    seq: Vec<i64>,
    mac: Vec<Option<String>>,
    hostname: Vec<Option<&'a str>>,
    host: Vec<serde_json::Value>,
}

/// The columns of a batch's detections.
#[derive(Default)]
struct DetCols<'a> {
    site: Vec<&'a str>,
    ip: Vec<IpAddr>,
    vendor: Vec<&'a str>,
    category: Vec<&'a str>,
    severity: Vec<&'static str>,
    first: Vec<std::time::SystemTime>,
    last: Vec<std::time::SystemTime>,
    count: Vec<i64>,
    forwarded: Vec<bool>,
    suppressed: Vec<Option<&'a str>>,
    alerted: Vec<Option<std::time::SystemTime>>,
}

/// Applies a batch of snapshots of one (sensor, local inventory), in sequence order, in one
/// transaction with its high-water mark: a batch applied twice, or a batch whose first half
/// was applied before a crash, changes nothing the second time.
pub fn apply_batch(
    pg: &postgres::Config,
    client: &mut postgres::Client,
    inventory_id: &str,
    batch: &[Shipped],
) -> Result<Applied, PgError> {
    let q = |e| PgError::from_query(pg, e);
    let mut out = Applied::default();
    let Some(first) = batch.first() else {
        return Ok(out);
    };
    let sensor = &first.sensor_id;
    let mut tx = client.transaction().map_err(q)?;
    let hwm = high_water(&mut tx, sensor, inventory_id, &first.site).map_err(q)?;
    let newest = newest_per_host(batch, sensor, hwm, &mut out.skipped);
    let top = batch
        .iter()
        .filter(|s| s.sensor_id == *sensor)
        .map(|s| s.seq)
        .max()
        .unwrap_or(hwm)
        .max(hwm);
    let (h, d) = columns(&newest);
    out.applied = h.site.len() as u64;
    write_witnesses(&mut tx, sensor, inventory_id, &h, &d).map_err(q)?;
    decide_alerts(&mut tx, sensor, &d, &mut out).map_err(q)?;
    tx.execute(
        "UPDATE vw_ship_marks SET high_water = $3, site = $4, shipped_at = now() WHERE sensor_id = $1 AND inventory_id = $2",
        &[sensor, &inventory_id, &top, &first.site],
    )
    .map_err(q)?;
    tx.commit().map_err(q)?;
    Ok(out)
}

/// The (sensor, local inventory)'s high-water mark, its row made if new and locked for the
/// rest of the transaction.
fn high_water(
    tx: &mut postgres::Transaction<'_>,
    sensor: &str,
    inventory_id: &str,
    site: &str,
) -> Result<i64, postgres::Error> {
    tx.execute(
        "INSERT INTO vw_ship_marks (sensor_id, inventory_id, site, high_water) VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
        &[&sensor, &inventory_id, &site],
    )?;
    let hwm: i64 = tx
        .query_one(
            "SELECT high_water FROM vw_ship_marks WHERE sensor_id = $1 AND inventory_id = $2 FOR UPDATE",
            &[&sensor, &inventory_id],
        )?
        .get(0);
    Ok(hwm)
}

/// The snapshots of the batch above the high-water mark, the newest per (site, address)
/// (the spool keeps one per host, but a row queued twice in a race must not make one
/// statement update a row twice); the others are counted in `skipped`.
fn newest_per_host<'a>(
    batch: &'a [Shipped],
    sensor: &str,
    hwm: i64,
    skipped: &mut u64,
) -> std::collections::BTreeMap<(&'a str, IpAddr), &'a Shipped> {
    let mut newest: std::collections::BTreeMap<(&str, IpAddr), &Shipped> = Default::default();
    for s in batch {
        if s.seq <= hwm || s.sensor_id != *sensor {
            *skipped += 1;
            continue;
        }
        let e = newest.entry((s.site.as_str(), s.ip)).or_insert(s);
        if e.seq < s.seq {
            *e = s;
            *skipped += 1;
        }
    }
    newest
}

/// The batch as columns, one entry per host and per detection.
fn columns<'a>(
    newest: &std::collections::BTreeMap<(&'a str, IpAddr), &'a Shipped>,
) -> (HostCols<'a>, DetCols<'a>) {
    let mut h = HostCols::default();
    let mut d = DetCols::default();
    for s in newest.values() {
        h.site.push(&s.site);
        h.ip.push(s.ip);
        h.seq.push(s.seq);
        h.mac.push(s.snapshot.mac.map(|m| m.to_string()));
        h.hostname.push(s.snapshot.hostname.as_deref());
        h.host
            .push(serde_json::to_value(&s.snapshot).unwrap_or_default());
        for det in &s.snapshot.detections {
            d.site.push(&s.site);
            d.ip.push(s.ip);
            d.vendor.push(&det.vendor);
            d.category.push(&det.category);
            d.severity.push(det.severity.as_str());
            d.first.push(ts(det.first_seen));
            d.last.push(ts(det.last_seen));
            d.count.push(i64::try_from(det.count).unwrap_or(i64::MAX));
            d.forwarded.push(det.forwarded);
            d.suppressed.push(det.suppressed.as_deref());
            d.alerted.push(det.alerted_at.map(ts));
        }
    }
    (h, d)
}

/// Writes this sensor's witness rows of the batch's hosts and detections. One statement
/// per table for the whole batch (arrays unnested on the server): a few round trips per
/// batch instead of several per host.
fn write_witnesses(
    tx: &mut postgres::Transaction<'_>,
    sensor: &str,
    inventory_id: &str,
    h: &HostCols<'_>,
    d: &DetCols<'_>,
) -> Result<(), postgres::Error> {
    tx.execute(
        "INSERT INTO vw_witness_hosts (site, ip, sensor_id, inventory_id, seq, mac, hostname, host, updated_at)
         SELECT site, ip, $1, $2, seq, mac, hostname, host, now()
         FROM unnest($3::TEXT[], $4::INET[], $5::BIGINT[], $6::TEXT[], $7::TEXT[], $8::JSONB[])
              AS t(site, ip, seq, mac, hostname, host)
         ON CONFLICT (site, ip, sensor_id, inventory_id) DO UPDATE SET seq = excluded.seq, mac = excluded.mac,
           hostname = excluded.hostname, host = excluded.host, updated_at = now()
         WHERE vw_witness_hosts.seq < excluded.seq",
        &[&sensor, &inventory_id, &h.site, &h.ip, &h.seq, &h.mac, &h.hostname, &h.host],
    )?;
    tx.execute(
        "INSERT INTO vw_witness_detections (site, ip, sensor_id, inventory_id, vendor, category, severity, first_seen, last_seen, count, forwarded, suppressed, alerted_at)
         SELECT site, ip, $1, $2, vendor, category, severity, first_seen, last_seen, count, forwarded, suppressed, alerted_at
         FROM unnest($3::TEXT[], $4::INET[], $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TIMESTAMPTZ[], $9::TIMESTAMPTZ[],
                     $10::BIGINT[], $11::BOOLEAN[], $12::TEXT[], $13::TIMESTAMPTZ[])
              AS t(site, ip, vendor, category, severity, first_seen, last_seen, count, forwarded, suppressed, alerted_at)
         ON CONFLICT (site, ip, sensor_id, inventory_id, vendor, category) DO UPDATE SET severity = excluded.severity,
           first_seen = excluded.first_seen, last_seen = excluded.last_seen, count = excluded.count,
           forwarded = excluded.forwarded, suppressed = excluded.suppressed, alerted_at = excluded.alerted_at",
        &[
            &sensor, &inventory_id, &d.site, &d.ip, &d.vendor, &d.category, &d.severity, &d.first,
            &d.last, &d.count, &d.forwarded, &d.suppressed, &d.alerted,
        ],
    )?;
    Ok(())
}

/// Takes the agency's alert decision for the alerted detections of the batch and counts
/// the ones this sensor won and those another sensor had taken.
fn decide_alerts(
    tx: &mut postgres::Transaction<'_>,
    sensor: &str,
    d: &DetCols<'_>,
    out: &mut Applied,
) -> Result<(), postgres::Error> {
    // The agency's alert decision: the first sensor to ship an alerted detection owns it.
    let alerted: Vec<usize> = (0..d.alerted.len())
        .filter(|&i| d.alerted[i].is_some())
        .collect();
    if !alerted.is_empty() {
        let pick = |v: &[&str]| {
            alerted
                .iter()
                .map(|&i| v[i].to_string())
                .collect::<Vec<_>>()
        };
        let (a_site, a_vendor, a_category) = (pick(&d.site), pick(&d.vendor), pick(&d.category));
        let a_ip: Vec<IpAddr> = alerted.iter().map(|&i| d.ip[i]).collect();
        let a_at: Vec<std::time::SystemTime> =
            alerted.iter().filter_map(|&i| d.alerted[i]).collect();
        let won = tx.execute(
            "INSERT INTO vw_alerts (site, ip, vendor, category, sensor_id, alerted_at)
                 SELECT site, ip, vendor, category, $1, alerted_at
                 FROM unnest($2::TEXT[], $3::INET[], $4::TEXT[], $5::TEXT[], $6::TIMESTAMPTZ[])
                      AS t(site, ip, vendor, category, alerted_at)
                 ON CONFLICT DO NOTHING",
            &[&sensor, &a_site, &a_ip, &a_vendor, &a_category, &a_at],
        )?;
        out.alerts_first = won;
        out.alerts_duplicate = alerted.len() as u64 - won.min(alerted.len() as u64);
    }
    Ok(())
}

/// What to read from the agency inventory.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub site: Option<String>,
    pub sensor: Option<String>,
    pub vendor: Option<String>,
    pub category: Option<String>,
}

/// The agency's hosts that pass the filter, merged: a host is chosen when it has a
/// detection of the vendor and category asked for; the sensor filter keeps only what that
/// sensor saw. Rows are streamed from the server in (site, address) order and merged as
/// they come, so a million hosts never sit in memory twice.
pub fn load(
    cfg: &AgencyReader,
    filter: &Filter,
) -> Result<Vec<super::agency::AgencyHost>, PgError> {
    let pg = &cfg.pg;
    let q = |e| PgError::from_query(pg, e);
    let mut client = connect(pg, cfg.ca.as_deref())?;
    match schema_version(pg, &mut client)? {
        None => {
            return Err(PgError::NoSchema {
                target: describe(pg),
            })
        }
        Some(v) if v > SCHEMA_VERSION => {
            return Err(PgError::NewerSchema {
                target: describe(pg),
                found: v,
            })
        }
        Some(_) => {}
    }
    let params: [&(dyn postgres::types::ToSql + Sync); 4] = [
        &filter.site,
        &filter.sensor,
        &filter.vendor,
        &filter.category,
    ];
    let mut rows = client
        .query_raw(
            "SELECT w.site, w.ip, w.sensor_id, w.host::TEXT FROM vw_witness_hosts w
             WHERE ($1::TEXT IS NULL OR w.site = $1) AND ($2::TEXT IS NULL OR w.sensor_id = $2)
               AND (($3::TEXT IS NULL AND $4::TEXT IS NULL) OR (w.site, w.ip) IN (
                    SELECT d.site, d.ip FROM vw_witness_detections d
                    WHERE ($3::TEXT IS NULL OR d.vendor = $3) AND ($4::TEXT IS NULL OR d.category = $4)))
             ORDER BY w.site, w.ip, w.sensor_id",
            params,
        )
        .map_err(q)?;
    let mut merged = super::agency::SortedMerge::default();
    use postgres::fallible_iterator::FallibleIterator;
    while let Some(r) = rows.next().map_err(q)? {
        let text: &str = r.get(3);
        let Ok(snap) = serde_json::from_str::<HostSnapshot>(text) else {
            continue;
        };
        merged.push(r.get(0), r.get(1), r.get(2), snap.into_host());
    }
    Ok(merged.finish())
}

/// Where `hosts` and `report` read the agency inventory (an analyst's read-only role will do).
#[derive(Debug, Clone)]
pub struct AgencyReader {
    pub pg: postgres::Config,
    pub ca: Option<std::path::PathBuf>,
}

impl From<&AgencyConfig> for AgencyReader {
    fn from(c: &AgencyConfig) -> Self {
        AgencyReader {
            pg: c.pg.clone(),
            ca: c.ca.clone(),
        }
    }
}
