//! The agency-wide inventory: what a sensor needs to take part in it (its identity, where the
//! PostgreSQL server is and how to log in), the host snapshot that travels from a sensor's
//! spool to the server, and the merge of many sensors' snapshots into one host per site and
//! address.
//!
//! A snapshot is one host as one sensor's local inventory holds it: cumulative counts, first
//! and last seen, the evidence sample, the identity history. Because it is the whole state
//! and not a delta, applying it twice changes nothing, and a newer snapshot of the same host
//! simply replaces an older one — in the spool (`spool`) and on the server (`postgres`).
//! The server keeps one snapshot per (site, address, sensor, local inventory); the agency
//! view sums and merges them at read time, so writers never update each other's rows and no
//! count is lost to a concurrent update.
//!
//! Credentials: the libpq-style URL or key=value string (`postgres://user:pw@host/db`), else
//! a password file (`--inventory-password-file`), else `PGPASSWORD`. The URL is never
//! printed: messages name the server as `user@host:port/dbname` ([`AgencyConfig::describe`]).

use super::store::EvidenceRow;
use super::{Detection, Host, HostIdentity, IdentityRecord};
use super::{IndicatorCount, EVIDENCE_FIRST, EVIDENCE_RECENT, MAX_IDENTITIES, MAX_INDICATORS};
use crate::detect::rules::Severity;
use crate::extract::IdentitySource;
use crate::mac::MacAddr;
use crate::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

/// Longest `--sensor-id` and `--site` (they label every row and metric series).
pub const MAX_LABEL_LEN: usize = 64;
/// Host snapshots waiting in the spool unless `--inventory-backlog` says otherwise. The spool
/// keeps one snapshot per host (a newer one replaces the older), so this bounds the distinct
/// hosts waiting, and the file: a snapshot is a few KB at most (bounded samples).
pub const DEFAULT_BACKLOG: usize = 200_000;
/// Snapshots shipped in one transaction unless `--inventory-batch` says otherwise.
pub const DEFAULT_BATCH: usize = 500;
/// How long `replay` waits at the end for the spool to drain [default of `--inventory-wait`].
pub const DEFAULT_REPLAY_WAIT_SECS: u64 = 60;
/// How long `live` waits at shutdown for the spool to drain (what is left goes at the next start).
pub const LIVE_WAIT_SECS: u64 = 10;

/// How a sensor takes part in the agency inventory (`--inventory postgres://…`).
#[derive(Clone)]
pub struct AgencyConfig {
    /// Parsed connection settings (with the password, never printed).
    pub pg: postgres::Config,
    /// Extra root certificate for TLS to the server (`--inventory-ca`).
    pub ca: Option<PathBuf>,
    pub sensor_id: String,
    pub site: String,
    /// Host snapshots the spool holds at most.
    pub backlog: usize,
    /// Snapshots per shipped batch.
    pub batch: usize,
    /// Seconds to wait at the end for the spool to drain.
    pub wait_secs: u64,
}

impl std::fmt::Debug for AgencyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(
            f,
            "AgencyConfig({}, sensor {}, site {})",
            describe(&self.pg),
            self.sensor_id,
            self.site
        )
    }
}

/// The server as messages may name it: `user@host:port/dbname`, no password.
pub fn describe(pg: &postgres::Config) -> String {
    let host = pg
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(s) => s.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        pg.get_user().unwrap_or("?"),
        pg.get_dbname().unwrap_or(pg.get_user().unwrap_or("?"))
    )
}

/// Whether a `--inventory` value names PostgreSQL.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://") || url.contains("host=")
}

/// Why the agency options cannot be used. Never repeats the connection string (it may hold
/// a password).
#[derive(Debug, thiserror::Error)]
pub enum AgencyError {
    #[error("--inventory is not a PostgreSQL URL (postgres://USER@HOST:PORT/DB?sslmode=require) or key=value string: {0}")]
    NotAUrl(postgres::Error),
    #[error("--inventory names no host (postgres://USER@HOST:PORT/DB)")]
    NoHost,
    #[error("--inventory names no user (postgres://USER@HOST:PORT/DB)")]
    NoUser,
    #[error("cannot read the inventory password file {}: {source}", file.display())]
    PasswordFile {
        file: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the inventory password file {} is empty", file.display())]
    EmptyPasswordFile { file: std::path::PathBuf },
    #[error("{what} must be 1 to {MAX_LABEL_LEN} characters")]
    LabelLength { what: String },
    #[error("{what} {value:?} may hold only letters, digits, '-', '_', '.' and ':'")]
    LabelCharacters { what: String, value: String },
}

impl AgencyError {
    /// Short, fixed: a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            AgencyError::NotAUrl(_) => "not_a_url",
            AgencyError::NoHost => "no_host",
            AgencyError::NoUser => "no_user",
            AgencyError::PasswordFile { .. } => "password_file",
            AgencyError::EmptyPasswordFile { .. } => "empty_password_file",
            AgencyError::LabelLength { .. } => "label_length",
            AgencyError::LabelCharacters { .. } => "label_characters",
        }
    }
}

/// For the command layer, which still carries its errors as text.
impl From<AgencyError> for String {
    fn from(e: AgencyError) -> String {
        e.to_string()
    }
}

/// Parses the connection string and finds the password: in the URL, else in
/// `password_file` (first line), else in `PGPASSWORD`. Errors never repeat the string.
pub fn connection(
    url: &str,
    password_file: Option<&std::path::Path>,
) -> Result<postgres::Config, AgencyError> {
    let mut pg: postgres::Config = url.parse().map_err(AgencyError::NotAUrl)?;
    if pg.get_hosts().is_empty() {
        return Err(AgencyError::NoHost);
    }
    if pg.get_user().is_none() {
        return Err(AgencyError::NoUser);
    }
    if pg.get_password().is_none() {
        if let Some(file) = password_file {
            let text =
                std::fs::read_to_string(file).map_err(|source| AgencyError::PasswordFile {
                    file: file.to_path_buf(),
                    source,
                })?;
            let line = text.lines().next().unwrap_or_default().trim_end();
            if line.is_empty() {
                return Err(AgencyError::EmptyPasswordFile {
                    file: file.to_path_buf(),
                });
            }
            pg.password(line);
        } else if let Ok(pw) = std::env::var("PGPASSWORD") {
            pg.password(pw);
        }
    }
    pg.application_name("vendorwatch");
    pg.connect_timeout(std::time::Duration::from_secs(10));
    Ok(pg)
}

/// Checks a `--sensor-id` or `--site` value: short, printable, no spaces.
pub fn check_label(what: &str, v: &str) -> Result<String, AgencyError> {
    if v.is_empty() || v.len() > MAX_LABEL_LEN {
        return Err(AgencyError::LabelLength { what: what.into() });
    }
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(AgencyError::LabelCharacters {
            what: what.into(),
            value: v.into(),
        });
    }
    Ok(v.to_string())
}

/// The default sensor id: the host name.
pub fn default_sensor_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| {
            h.chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .take(MAX_LABEL_LEN)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sensor".into())
}

/// One host as one sensor's inventory holds it (the spool's payload, the server's `host`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HostSnapshot {
    pub mac: Option<MacAddr>,
    pub hostname: Option<String>,
    pub hostname_source: Option<IdentitySource>,
    pub ech_connections: u64,
    pub encrypted_dns_connections: u64,
    pub encrypted_dns_via: Vec<String>,
    pub identities: Vec<IdentityRow>,
    pub identities_omitted: u64,
    pub detections: Vec<DetectionRow>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IdentityRow {
    pub mac: Option<MacAddr>,
    pub hostname: Option<String>,
    pub client_id: Option<String>,
    pub source: IdentitySource,
    pub first_seen: i64,
    pub last_seen: i64,
    pub count: u64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DetectionRow {
    pub vendor: String,
    pub category: String,
    pub severity: Severity,
    /// Packet times in nanoseconds since the epoch.
    pub first_seen: i64,
    pub last_seen: i64,
    pub count: u64,
    pub forwarded: bool,
    pub suppressed: Option<String>,
    pub alerted_at: Option<i64>,
    pub rules: Vec<String>,
    pub indicators: Vec<IndicatorCount>,
    pub indicators_omitted: u64,
    pub evidence: Vec<EvidenceRow>,
}

impl HostSnapshot {
    pub fn of(h: &Host) -> HostSnapshot {
        HostSnapshot {
            mac: h.mac,
            hostname: h.identity.hostname.clone(),
            hostname_source: h.identity.hostname_source,
            ech_connections: h.ech_connections,
            encrypted_dns_connections: h.encrypted_dns_connections,
            encrypted_dns_via: h.encrypted_dns_via.clone(),
            identities: h
                .identity
                .history
                .iter()
                .map(|r| IdentityRow {
                    mac: r.mac,
                    hostname: r.hostname.clone(),
                    client_id: r.client_id.clone(),
                    source: r.source,
                    first_seen: r.first_seen.0,
                    last_seen: r.last_seen.0,
                    count: r.count,
                })
                .collect(),
            identities_omitted: h.identity.history_omitted,
            detections: h
                .detections
                .iter()
                .map(|d| DetectionRow {
                    vendor: d.vendor.clone(),
                    category: d.category.clone(),
                    severity: d.severity,
                    first_seen: d.first_seen.0,
                    last_seen: d.last_seen.0,
                    count: d.count,
                    forwarded: d.forwarded,
                    suppressed: d.suppressed.clone(),
                    alerted_at: d.alerted_at.map(|t| t.0),
                    rules: d.rules.clone(),
                    indicators: d.indicators.clone(),
                    indicators_omitted: d.indicators_omitted,
                    evidence: d.evidence.iter().map(EvidenceRow::of).collect(),
                })
                .collect(),
        }
    }

    pub fn into_host(self) -> Host {
        let history: Vec<IdentityRecord> = self
            .identities
            .into_iter()
            .map(|r| IdentityRecord {
                mac: r.mac,
                hostname: r.hostname,
                client_id: r.client_id,
                source: r.source,
                first_seen: Timestamp(r.first_seen),
                last_seen: Timestamp(r.last_seen),
                count: r.count,
            })
            .collect();
        let current_at = history
            .iter()
            .map(|r| r.last_seen)
            .max()
            .unwrap_or_default();
        Host {
            mac: self.mac,
            detections: self
                .detections
                .into_iter()
                .map(|d| Detection {
                    vendor: d.vendor,
                    category: d.category,
                    severity: d.severity,
                    first_seen: Timestamp(d.first_seen),
                    last_seen: Timestamp(d.last_seen),
                    count: d.count,
                    forwarded: d.forwarded,
                    rules: d.rules,
                    indicators: d.indicators,
                    evidence: d
                        .evidence
                        .into_iter()
                        .map(EvidenceRow::into_evidence)
                        .collect(),
                    indicators_omitted: d.indicators_omitted,
                    suppressed: d.suppressed,
                    alerted_at: d.alerted_at.map(Timestamp),
                    alerted: d.alerted_at.is_some(),
                })
                .collect(),
            ech_connections: self.ech_connections,
            encrypted_dns_connections: self.encrypted_dns_connections,
            encrypted_dns_via: self.encrypted_dns_via,
            identity: HostIdentity {
                hostname: self.hostname,
                hostname_source: self.hostname_source,
                history,
                history_omitted: self.identities_omitted,
                current_at,
            },
        }
    }
}

/// One host of the agency: every sensor's snapshot of (site, address) merged.
#[derive(Debug, Clone, Default)]
pub struct AgencyHost {
    pub site: String,
    pub ip: Option<IpAddr>,
    pub host: Host,
    /// The sensors that saw it (witnesses), sorted.
    pub sensors: BTreeSet<String>,
}

/// Merges snapshots (site, address, sensor, snapshot) into one host per (site, address).
/// Counts add up (each snapshot counts what its own sensor saw); first seen is the earliest,
/// last seen the latest; the evidence sample keeps the earliest and the latest findings of
/// all; the current MAC and host name come from the witness with the newest identity.
pub fn merge(rows: impl IntoIterator<Item = (String, IpAddr, String, Host)>) -> Vec<AgencyHost> {
    let mut by: BTreeMap<(String, IpAddr), AgencyHost> = BTreeMap::new();
    for (site, ip, sensor, h) in rows {
        let entry = by.entry((site.clone(), ip)).or_insert_with(|| AgencyHost {
            site,
            ip: Some(ip),
            host: Host::default(),
            sensors: BTreeSet::new(),
        });
        let first = entry.sensors.is_empty();
        entry.sensors.insert(sensor);
        if first {
            entry.host = h;
        } else {
            merge_host(&mut entry.host, h);
        }
    }
    by.into_values().collect()
}

/// Merges snapshots that arrive sorted by (site, address) — as the server returns them —
/// one host at a time, so memory holds the merged hosts and never every snapshot at once.
#[derive(Default)]
pub struct SortedMerge {
    current: Option<AgencyHost>,
    pub out: Vec<AgencyHost>,
}

impl SortedMerge {
    pub fn push(&mut self, site: String, ip: IpAddr, sensor: String, h: Host) {
        match &mut self.current {
            Some(c) if c.site == site && c.ip == Some(ip) => {
                c.sensors.insert(sensor);
                merge_host(&mut c.host, h);
            }
            _ => {
                let mut sensors = BTreeSet::new();
                sensors.insert(sensor);
                if let Some(done) = self.current.replace(AgencyHost {
                    site,
                    ip: Some(ip),
                    host: h,
                    sensors,
                }) {
                    self.out.push(done);
                }
            }
        }
    }

    pub fn finish(mut self) -> Vec<AgencyHost> {
        if let Some(done) = self.current.take() {
            self.out.push(done);
        }
        self.out
    }
}

fn merge_host(into: &mut Host, h: Host) {
    if h.identity.current_at > into.identity.current_at
        || (into.mac.is_none() && into.identity.hostname.is_none())
    {
        into.mac = h.mac.or(into.mac);
        if h.identity.hostname.is_some() {
            into.identity.hostname = h.identity.hostname.clone();
            into.identity.hostname_source = h.identity.hostname_source;
        }
        into.identity.current_at = h.identity.current_at;
    }
    into.ech_connections += h.ech_connections;
    into.encrypted_dns_connections += h.encrypted_dns_connections;
    for v in h.encrypted_dns_via {
        if !into.encrypted_dns_via.contains(&v) {
            into.encrypted_dns_via.push(v);
        }
    }
    into.identity.history_omitted += h.identity.history_omitted;
    for r in h.identity.history {
        let same = into.identity.history.iter_mut().find(|o| {
            o.mac == r.mac
                && o.hostname == r.hostname
                && o.client_id == r.client_id
                && o.source == r.source
        });
        match same {
            Some(o) => {
                o.first_seen = o.first_seen.min(r.first_seen);
                o.last_seen = o.last_seen.max(r.last_seen);
                o.count += r.count;
            }
            None => into.identity.history.push(r),
        }
    }
    if into.identity.history.len() > MAX_IDENTITIES {
        into.identity.history.sort_by_key(|r| r.last_seen);
        let extra = into.identity.history.len() - MAX_IDENTITIES;
        into.identity.history.drain(..extra);
        into.identity.history_omitted += extra as u64;
        into.identity.history.sort_by_key(|r| r.first_seen);
    }
    for d in h.detections {
        match into
            .detections
            .iter_mut()
            .find(|o| o.vendor == d.vendor && o.category == d.category)
        {
            Some(o) => merge_detection(o, d),
            None => into.detections.push(d),
        }
    }
    into.detections
        .sort_by(|a, b| (&a.vendor, &a.category).cmp(&(&b.vendor, &b.category)));
}

fn merge_detection(o: &mut Detection, d: Detection) {
    o.severity = o.severity.max(d.severity);
    o.first_seen = o.first_seen.min(d.first_seen);
    o.last_seen = o.last_seen.max(d.last_seen);
    o.count += d.count;
    o.forwarded &= d.forwarded;
    // Suppressed only while every witness's findings were.
    if d.suppressed.is_none() {
        o.suppressed = None;
    }
    o.alerted_at = match (o.alerted_at, d.alerted_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    o.alerted |= d.alerted;
    for r in d.rules {
        if !o.rules.contains(&r) {
            o.rules.push(r);
        }
    }
    o.rules.sort();
    o.indicators_omitted += d.indicators_omitted;
    for i in d.indicators {
        if let Some(x) = o.indicators.iter_mut().find(|x| x.indicator == i.indicator) {
            x.count += i.count;
        } else if o.indicators.len() < MAX_INDICATORS {
            o.indicators.push(i);
        } else {
            o.indicators_omitted += 1;
        }
    }
    let mut ev = std::mem::take(&mut o.evidence);
    ev.extend(d.evidence);
    ev.sort_by_key(|e| e.time);
    ev.dedup();
    if ev.len() > EVIDENCE_FIRST + EVIDENCE_RECENT {
        let recent = ev.split_off(ev.len() - EVIDENCE_RECENT);
        ev.truncate(EVIDENCE_FIRST);
        ev.extend(recent);
    }
    o.evidence = ev;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Indicator;
    use crate::extract::NameKind;

    fn det(count: u64, first: i64, last: i64, value: &str) -> Detection {
        Detection {
            vendor: "kaspersky".into(),
            category: "update".into(),
            severity: Severity::High,
            first_seen: Timestamp(first),
            last_seen: Timestamp(last),
            count,
            forwarded: false,
            rules: vec!["r".into()],
            indicators: vec![IndicatorCount {
                indicator: Indicator {
                    kind: NameKind::Dns,
                    value: value.into(),
                    name: None,
                    query: None,
                    path: None,
                    ech: false,
                    ech_real: false,
                },
                count,
            }],
            evidence: Vec::new(),
            indicators_omitted: 0,
            suppressed: None,
            alerted_at: Some(Timestamp(first)),
            alerted: true,
        }
    }

    #[test]
    fn snapshot_round_trips_through_json() {
        let h = Host {
            mac: Some(MacAddr([0, 0x11, 0x22, 0x33, 0x44, 0x55])),
            detections: vec![det(3, 10, 20, "a.kaspersky.com")],
            ..Host::default()
        };
        let text = serde_json::to_string(&HostSnapshot::of(&h)).expect("serialises");
        let back: HostSnapshot = serde_json::from_str(&text).expect("parses");
        let back = back.into_host();
        assert_eq!(back.mac, h.mac);
        assert_eq!(back.detections[0].count, 3);
        assert_eq!(back.detections[0].alerted_at, Some(Timestamp(10)));
        assert_eq!(
            back.detections[0].indicators[0].indicator.value,
            "a.kaspersky.com"
        );
    }

    #[test]
    fn two_witnesses_of_one_site_are_one_host_and_two_sites_are_two() {
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let a = Host {
            detections: vec![det(3, 10, 20, "a.kaspersky.com")],
            ..Host::default()
        };
        let b = Host {
            detections: vec![det(2, 5, 15, "b.kaspersky.com")],
            ..Host::default()
        };
        let merged = merge(vec![
            ("hq".into(), ip, "s1".into(), a.clone()),
            ("hq".into(), ip, "s2".into(), b),
            ("branch".into(), ip, "s3".into(), a),
        ]);
        assert_eq!(merged.len(), 2);
        let hq = merged.iter().find(|m| m.site == "hq").expect("hq");
        assert_eq!(hq.sensors.iter().collect::<Vec<_>>(), ["s1", "s2"]);
        let d = &hq.host.detections[0];
        assert_eq!(
            (d.count, d.first_seen, d.last_seen),
            (5, Timestamp(5), Timestamp(20))
        );
        assert_eq!(d.indicators.len(), 2);
        let branch = merged.iter().find(|m| m.site == "branch").expect("branch");
        assert_eq!(branch.host.detections[0].count, 3);
    }

    #[test]
    fn passwords_come_from_url_file_or_environment_and_are_never_described() {
        let pg = connection("postgres://vw:s3cret@db.example:5433/inv", None).expect("url");
        assert_eq!(pg.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(describe(&pg), "vw@db.example:5433/inv");
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("pw");
        std::fs::write(&file, "fromfile\n").expect("write");
        let pg = connection("postgres://vw@db.example/inv", Some(&file)).expect("url");
        assert_eq!(pg.get_password(), Some(&b"fromfile"[..]));
        assert!(
            connection("postgres://db.example/inv", None).is_err(),
            "no user"
        );
        assert!(check_label("--site", "hq-1").is_ok());
        assert!(check_label("--site", "bad site").is_err());
    }
}
