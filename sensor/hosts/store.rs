//! The persistent inventory: an embedded SQLite database (WAL, crash-safe, schema versioned
//! with `PRAGMA user_version` migrations) holding every host, its detections with first and
//! last seen, counts, the bounded sample of evidence, and when each was last alerted — so a
//! restarted sensor keeps counting and does not alert again what it already alerted.
//!
//! Writes happen off the packet path: a persister thread saves the hosts that changed every
//! few seconds, in one transaction, and once more at the end.
//!
//! Faults are said in words a user can act on ([`explain`]): a sensor checks at start that it
//! can write the inventory ([`Store::open_for_writing`]: directory and file writable, no other
//! vendorwatch on it, no other process holding a write transaction); a save that fails later
//! (locked by a backup or an admin's sqlite3, a full disk) is counted and retried, and only a
//! final save that fails makes the run fail.

use super::{Detection, Host, HostTable, IndicatorCount};
use crate::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The schema this build writes. Each step of `MIGRATIONS` brings version N-1 to N.
pub const SCHEMA_VERSION: i64 = 1;
const MIGRATIONS: &[&str] = &["
    CREATE TABLE hosts (
        ip TEXT PRIMARY KEY,
        mac TEXT,
        ech_connections INTEGER NOT NULL DEFAULT 0,
        encrypted_dns_connections INTEGER NOT NULL DEFAULT 0,
        encrypted_dns_via TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE detections (
        ip TEXT NOT NULL REFERENCES hosts(ip),
        vendor TEXT NOT NULL,
        category TEXT NOT NULL,
        severity TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        count INTEGER NOT NULL,
        forwarded INTEGER NOT NULL,
        suppressed TEXT,
        alerted_at INTEGER,
        rules TEXT NOT NULL,
        indicators TEXT NOT NULL,
        indicators_omitted INTEGER NOT NULL,
        PRIMARY KEY (ip, vendor, category)
    );
    CREATE INDEX detections_last_seen ON detections(last_seen);
"];

/// Seconds between saves of the hosts that changed.
pub const SAVE_EVERY_SECS: u64 = 5;

pub struct Store {
    conn: Connection,
    /// For messages.
    path: std::path::PathBuf,
    /// An exclusive `flock` on the database file held by a sensor that writes it
    /// ([`Store::open_for_writing`]), so that a second vendorwatch on the same inventory is
    /// refused instead of overwriting the first one's counts. (On Linux `flock` locks are
    /// independent of the `fcntl` locks SQLite takes, so this does not get in SQLite's way,
    /// and readers such as `vendorwatch hosts` never take it.)
    _instance: Option<nix::fcntl::Flock<std::fs::File>>,
}

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> String {
    format!("inventory {}: {what}: {e}", path.display())
}

/// What to do about a database that another process holds.
const LOCKED_HINT: &str = "another process holds it: another vendorwatch using the same inventory, or a sqlite3 session or backup with a transaction open; stop it, or give this run its own inventory with --state PATH, or run without one with --state none";

/// An SQLite error in words a user can act on: what is wrong, and what to do.
pub fn explain(path: &Path, what: &str, e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode;
    let hint = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            format!("the database is locked: {LOCKED_HINT}")
        }
        Some(ErrorCode::ReadOnly) => {
            "the database is read-only: make the file and its directory writable for the sensor's user, or choose another with --state PATH, or run without one with --state none"
                .to_string()
        }
        Some(ErrorCode::DiskFull) => {
            "the disk holding it is full: free some space (saves are retried), or choose another with --state PATH, or run without one with --state none"
                .to_string()
        }
        Some(ErrorCode::CannotOpen) => {
            "SQLite cannot open it or its journal (-wal, -shm), which live next to it: check the directory exists and is writable, or choose another with --state PATH, or run without one with --state none"
                .to_string()
        }
        Some(ErrorCode::NotADatabase) => {
            "it is not an SQLite database (another program's file?): choose another with --state PATH, or run without one with --state none".to_string()
        }
        _ => return err(path, what, e),
    };
    format!("inventory {}: {what}: {hint} (SQLite: {e})", path.display())
}

/// Can the sensor create files in `dir` (SQLite puts `-wal` and `-shm` there)? Probed by
/// creating one, because permission bits say nothing about a read-only mount and nothing
/// to root.
fn probe_dir(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".vendorwatch-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

impl Store {
    /// Opens (creating and migrating as needed) the inventory at `path`.
    pub fn open(path: &Path) -> Result<Store, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(path, "cannot create its directory", e))?;
        }
        let conn = Connection::open(path).map_err(|e| explain(path, "cannot open", &e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| err(path, "busy timeout", e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| explain(path, "cannot enable WAL", &e))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| err(path, "synchronous", e))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| err(path, "not an SQLite database", e))?;
        if version > SCHEMA_VERSION {
            return Err(err(path, "written by a newer vendorwatch", format!("schema {version} > {SCHEMA_VERSION}; upgrade vendorwatch or use another --state")));
        }
        for (i, step) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            conn.execute_batch(&format!(
                "BEGIN; {step} PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))
            .map_err(|e| explain(path, "migration failed", &e))?;
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            _instance: None,
        })
    }

    /// Opens the inventory for a sensor that will write it, and checks up front that it can:
    /// the directory and the file are writable, no other vendorwatch has it, and no other
    /// process holds a write transaction (waiting up to the busy timeout for one to end).
    /// Every refusal says what is wrong and what to do.
    pub fn open_for_writing(path: &Path) -> Result<Store, String> {
        use std::io::ErrorKind;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if dir.is_dir() {
            probe_dir(dir).map_err(|e| {
                format!(
                    "inventory {}: the directory {} is not writable ({e}); SQLite keeps the database's journal (-wal, -shm) next to it: make the directory writable for the sensor's user, or choose another with --state PATH, or run without one with --state none",
                    path.display(),
                    dir.display()
                )
            })?;
        }
        let instance = match std::fs::OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => {
                return Err(format!(
                    "inventory {}: the file is not writable ({e}): make it writable for the sensor's user, or choose another with --state PATH, or run without one with --state none",
                    path.display()
                ))
            }
        };
        let mut store = Store::open(path)?;
        let file = match instance {
            Some(f) => f,
            // Created by `open` just now.
            None => std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| err(path, "cannot open", e))?,
        };
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| {
                if errno == nix::errno::Errno::EWOULDBLOCK {
                    format!(
                        "inventory {}: another vendorwatch is using it; two sensors on one inventory would overwrite each other's counts: stop the other one, or give this run its own inventory with --state PATH, or run without one with --state none",
                        path.display()
                    )
                } else {
                    err(path, "cannot lock", errno)
                }
            })?;
        store._instance = Some(lock);
        if store.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(format!(
                "inventory {}: SQLite opened it read-only: make the file and its directory writable for the sensor's user, or choose another with --state PATH, or run without one with --state none",
                path.display()
            ));
        }
        // Takes the write lock and lets it go: fails (after the busy timeout) while another
        // process holds a write transaction, rather than at the first save minutes later.
        store
            .conn
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(|e| explain(path, "cannot write", &e))?;
        Ok(store)
    }

    /// Every host with its detections.
    pub fn load(&self) -> Result<Vec<(IpAddr, Host)>, String> {
        let mut hosts: std::collections::BTreeMap<IpAddr, Host> = Default::default();
        let mut stmt = self
            .conn
            .prepare("SELECT ip, mac, ech_connections, encrypted_dns_connections, encrypted_dns_via FROM hosts")
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(|e| e.to_string())?;
        for row in rows {
            let (ip, mac, ech, edns, via) = row.map_err(|e| e.to_string())?;
            let Ok(ip) = ip.parse::<IpAddr>() else {
                continue;
            };
            hosts.insert(
                ip,
                Host {
                    mac: mac.as_deref().and_then(parse_mac),
                    detections: Vec::new(),
                    ech_connections: u64::try_from(ech).unwrap_or(0),
                    encrypted_dns_connections: u64::try_from(edns).unwrap_or(0),
                    encrypted_dns_via: serde_json::from_str(&via).unwrap_or_default(),
                },
            );
        }
        let mut stmt = self
            .conn
            .prepare("SELECT ip, vendor, category, severity, first_seen, last_seen, count, forwarded, suppressed, alerted_at, rules, indicators, indicators_omitted FROM detections")
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Detection {
                        vendor: r.get(1)?,
                        category: r.get(2)?,
                        severity: serde_json::from_value(serde_json::Value::String(r.get(3)?))
                            .unwrap_or(crate::detect::rules::Severity::High),
                        first_seen: Timestamp(r.get(4)?),
                        last_seen: Timestamp(r.get(5)?),
                        count: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
                        forwarded: r.get::<_, i64>(7)? != 0,
                        suppressed: r.get(8)?,
                        alerted_at: r.get::<_, Option<i64>>(9)?.map(Timestamp),
                        alerted: r.get::<_, Option<i64>>(9)?.is_some(),
                        rules: serde_json::from_str(&r.get::<_, String>(10)?).unwrap_or_default(),
                        indicators: serde_json::from_str::<Vec<IndicatorCount>>(
                            &r.get::<_, String>(11)?,
                        )
                        .unwrap_or_default(),
                        indicators_omitted: u64::try_from(r.get::<_, i64>(12)?).unwrap_or(0),
                    },
                ))
            })
            .map_err(|e| e.to_string())?;
        for row in rows {
            let (ip, det) = row.map_err(|e| e.to_string())?;
            if let Ok(ip) = ip.parse::<IpAddr>() {
                hosts.entry(ip).or_default().detections.push(det);
            }
        }
        Ok(hosts.into_iter().collect())
    }

    /// Saves these hosts (insert or replace), in one transaction.
    pub fn save(&mut self, hosts: &[(IpAddr, Host)]) -> Result<(), String> {
        let path = self.path.clone();
        self.save_rows(hosts)
            .map_err(|e| explain(&path, "cannot save", &e))
    }

    fn save_rows(&mut self, hosts: &[(IpAddr, Host)]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        for (ip, h) in hosts {
            tx.execute(
                "INSERT INTO hosts (ip, mac, ech_connections, encrypted_dns_connections, encrypted_dns_via) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(ip) DO UPDATE SET mac = excluded.mac, ech_connections = excluded.ech_connections,
                 encrypted_dns_connections = excluded.encrypted_dns_connections, encrypted_dns_via = excluded.encrypted_dns_via",
                params![
                    ip.to_string(),
                    crate::output::mac_string(h.mac),
                    h.ech_connections as i64,
                    h.encrypted_dns_connections as i64,
                    serde_json::to_string(&h.encrypted_dns_via).unwrap_or_default()
                ],
            )?;
            for d in &h.detections {
                tx.execute(
                    "INSERT OR REPLACE INTO detections (ip, vendor, category, severity, first_seen, last_seen, count, forwarded, suppressed, alerted_at, rules, indicators, indicators_omitted)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    params![
                        ip.to_string(),
                        d.vendor,
                        d.category,
                        d.severity.as_str(),
                        d.first_seen.0,
                        d.last_seen.0,
                        d.count as i64,
                        i64::from(d.forwarded),
                        d.suppressed,
                        d.alerted_at.map(|t| t.0),
                        serde_json::to_string(&d.rules).unwrap_or_default(),
                        serde_json::to_string(&d.indicators).unwrap_or_default(),
                        d.indicators_omitted as i64
                    ],
                )?;
            }
        }
        tx.commit()
    }

    /// The schema version of the file (for tests and `hosts`).
    pub fn schema_version(&self) -> Option<i64> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .optional()
            .ok()
            .flatten()
    }
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    Some(out)
}

/// Saves the hosts that changed, every `SAVE_EVERY_SECS`, until stopped; then once more.
/// A save that fails (the database locked by another process, a full disk) keeps its hosts
/// dirty, so the next one writes them again: nothing is lost while the sensor runs. The first
/// failure, and the recovery, are said on stderr (then at most once a minute); all are counted.
pub struct Persister {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Store>>,
    /// Saves that failed.
    pub failures: Arc<AtomicU64>,
    /// Saves that wrote at least one host.
    pub saves: Arc<AtomicU64>,
    /// The last save failed: some hosts are not in the database (yet).
    pub unsaved: Arc<AtomicBool>,
    pub last_error: Arc<std::sync::Mutex<Option<String>>>,
}

/// Failures after the first are said at most this often.
const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Persister {
    pub fn start(mut store: Store, hosts: Arc<HostTable>) -> std::io::Result<Persister> {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicU64::new(0));
        let saves = Arc::new(AtomicU64::new(0));
        let unsaved = Arc::new(AtomicBool::new(false));
        let last_error = Arc::new(std::sync::Mutex::new(None));
        let (stop2, failures2, saves2, unsaved2, last2) = (
            Arc::clone(&stop),
            Arc::clone(&failures),
            Arc::clone(&saves),
            Arc::clone(&unsaved),
            Arc::clone(&last_error),
        );
        let handle = std::thread::Builder::new()
            .name("inventory".into())
            .spawn(move || {
                let mut last_warning: Option<std::time::Instant> = None;
                let mut save = |store: &mut Store| {
                    let dirty = hosts.take_dirty();
                    if dirty.is_empty() {
                        return;
                    }
                    match store.save(&dirty) {
                        Ok(()) => {
                            saves2.fetch_add(1, Ordering::Relaxed);
                            if unsaved2.swap(false, Ordering::Relaxed) {
                                eprintln!(
                                    "vendorwatch: inventory {} saved again ({} failed save(s) before)",
                                    store.path.display(),
                                    failures2.load(Ordering::Relaxed)
                                );
                                last_warning = None;
                            }
                        }
                        Err(e) => {
                            failures2.fetch_add(1, Ordering::Relaxed);
                            unsaved2.store(true, Ordering::Relaxed);
                            if last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                                last_warning = Some(std::time::Instant::now());
                                eprintln!(
                                    "vendorwatch: {e}; {} host(s) kept in memory and saved again every {SAVE_EVERY_SECS} s (the run goes on)",
                                    dirty.len()
                                );
                            }
                            if let Ok(mut l) = last2.lock() {
                                *l = Some(e);
                            }
                            // Keep them dirty: the next save tries again, nothing is lost while we run.
                            hosts.mark_dirty(dirty.iter().map(|(ip, _)| *ip));
                        }
                    }
                };
                let mut waited = 0u64;
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    waited += 200;
                    if waited >= SAVE_EVERY_SECS * 1000 {
                        waited = 0;
                        save(&mut store);
                    }
                }
                save(&mut store);
                store
            })?;
        Ok(Persister {
            stop,
            handle: Some(handle),
            failures,
            saves,
            unsaved,
            last_error,
        })
    }

    /// Saves what is left; returns the error of the last save if it failed (then some hosts
    /// of this run are not in the database). Failures that a later save made good are not
    /// returned: read `failures` for them.
    pub fn finish(mut self) -> Option<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        if self.unsaved.load(Ordering::Relaxed) {
            self.last_error.lock().ok().and_then(|l| l.clone())
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_migrations() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("sub/inv.db");
        let mut store = Store::open(&path).expect("opens");
        assert_eq!(store.schema_version(), Some(SCHEMA_VERSION));
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let host = Host {
            mac: Some([0, 1, 2, 3, 4, 5]),
            detections: vec![Detection {
                vendor: "kaspersky".into(),
                category: "update".into(),
                severity: crate::detect::rules::Severity::High,
                first_seen: Timestamp(1),
                last_seen: Timestamp(2),
                count: 7,
                forwarded: false,
                rules: vec!["kaspersky.update.x".into()],
                indicators: vec![],
                indicators_omitted: 0,
                suppressed: None,
                alerted_at: Some(Timestamp(1)),
                alerted: true,
            }],
            ech_connections: 3,
            encrypted_dns_connections: 0,
            encrypted_dns_via: vec![],
        };
        store.save(&[(ip, host)]).expect("saves");
        drop(store);
        let store = Store::open(&path).expect("reopens");
        let loaded = store.load().expect("loads");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].1.mac, Some([0, 1, 2, 3, 4, 5]));
        assert_eq!(loaded[0].1.ech_connections, 3);
        let d = &loaded[0].1.detections[0];
        assert_eq!(
            (d.count, d.alerted, d.alerted_at),
            (7, true, Some(Timestamp(1)))
        );
    }

    #[test]
    fn newer_schema_and_garbage_are_refused_clearly() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("inv.db");
        let conn = Connection::open(&path).expect("open");
        conn.pragma_update(None, "user_version", 99).expect("set");
        drop(conn);
        let e = Store::open(&path).err().expect("refused");
        assert!(e.contains("newer vendorwatch"), "{e}");
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![7u8; 4096]).expect("write");
        assert!(Store::open(&junk).is_err());
    }

    #[test]
    fn a_second_writer_is_refused_and_readers_are_not() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("inv.db");
        let first = Store::open_for_writing(&path).expect("first writer");
        let e = Store::open_for_writing(&path)
            .err()
            .expect("second writer refused");
        assert!(
            e.contains("another vendorwatch is using it") && e.contains("--state none"),
            "{e}"
        );
        let reader = Store::open(&path).expect("a reader (vendorwatch hosts) is not refused");
        assert!(reader.load().expect("loads").is_empty());
        drop(first);
        Store::open_for_writing(&path).expect("free again once the first is gone");
    }
}
