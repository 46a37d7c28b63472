//! The persistent inventory: an embedded SQLite database (WAL, crash-safe, schema versioned
//! with `PRAGMA user_version` migrations) holding every host, its detections with first and
//! last seen, counts, the bounded sample of evidence, and when each was last alerted — so a
//! restarted sensor keeps counting and does not alert again what it already alerted — and
//! each host's identity (current host name, history of DHCP / PTR identities).
//!
//! Writes happen off the packet path: a persister thread saves the hosts that changed every
//! few seconds, in one transaction, and once more at the end.
//!
//! Faults are said in words a user can act on ([`explain`]): a sensor checks at start that it
//! can write the inventory ([`Store::open_for_writing`]: directory and file writable, no other
//! vendorwatch on it, no other process holding a write transaction); a save that fails later
//! (locked by a backup or an admin's sqlite3, a full disk) is counted and retried, and only a
//! final save that fails makes the run fail.

use super::{
    Detection, Evidence, EvidenceFlow, Host, HostIdentity, HostTable, IdentityRecord,
    IndicatorCount, Undetected,
};
use crate::decode::Proto;
use crate::detect::fingerprints::FingerprintStats;
use crate::detect::resolvers::{ResolverInfo, ResolverRoles, RoleSource};
use crate::detect::Indicator;
use crate::extract::IdentitySource;
use crate::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The schema this build writes. Each step of `MIGRATIONS` brings version N-1 to N.
pub const SCHEMA_VERSION: i64 = 4;
const MIGRATIONS: &[&str] = &[
    // 1: hosts and their detections.
    "
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
",
    // 2: host identity (current name, history) and the evidence sample of each detection.
    "
    ALTER TABLE hosts ADD COLUMN hostname TEXT;
    ALTER TABLE hosts ADD COLUMN hostname_source TEXT;
    ALTER TABLE hosts ADD COLUMN identities_omitted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE detections ADD COLUMN evidence TEXT NOT NULL DEFAULT '[]';
    -- Also the identities of addresses with no detection yet (no row in hosts).
    CREATE TABLE identities (
        ip TEXT NOT NULL,
        mac TEXT,
        hostname TEXT,
        client_id TEXT,
        source TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        count INTEGER NOT NULL
    );
    CREATE INDEX identities_ip ON identities(ip);
",
    // 3: home-net resolvers (the role earned by answering other hosts' queries, or pinned).
    "
    CREATE TABLE resolvers (
        ip TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        answered INTEGER NOT NULL,
        first_answer INTEGER,
        last_answer INTEGER
    );
",
    // 4: client fingerprints learned from visible vendor traffic (detect::fingerprints).
    "
    CREATE TABLE fingerprints (
        fingerprint TEXT PRIMARY KEY,
        last_seen INTEGER NOT NULL,
        stats TEXT NOT NULL
    );
",
];

/// One piece of evidence as the inventories store it (the SQLite `detections.evidence` JSON
/// column, the agency's snapshots): packet time in nanoseconds, so it reads back exactly.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EvidenceRow {
    pub t: i64,
    pub indicator: Indicator,
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    pub transport: String,
}

impl EvidenceRow {
    pub fn of(e: &Evidence) -> EvidenceRow {
        EvidenceRow {
            t: e.time.0,
            indicator: e.indicator.clone(),
            src_ip: e.flow.src_ip,
            src_port: e.flow.src_port,
            dst_ip: e.flow.dst_ip,
            dst_port: e.flow.dst_port,
            transport: e.flow.transport.as_str().into(),
        }
    }

    pub fn into_evidence(self) -> Evidence {
        Evidence {
            time: Timestamp(self.t),
            indicator: self.indicator,
            flow: EvidenceFlow {
                src_ip: self.src_ip,
                src_port: self.src_port,
                dst_ip: self.dst_ip,
                dst_port: self.dst_port,
                transport: if self.transport == "tcp" {
                    Proto::Tcp
                } else {
                    Proto::Udp
                },
            },
        }
    }
}

fn evidence_to_json(ev: &[Evidence]) -> String {
    let rows: Vec<EvidenceRow> = ev.iter().map(EvidenceRow::of).collect();
    serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into())
}

fn evidence_from_json(text: &str) -> Vec<Evidence> {
    serde_json::from_str::<Vec<EvidenceRow>>(text)
        .unwrap_or_default()
        .into_iter()
        .map(EvidenceRow::into_evidence)
        .collect()
}

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
    /// Runs inside every save's transaction after the hosts are written: the agency spool
    /// (`hosts::spool`) queues its snapshots there, so file and spool never disagree.
    save_hook: Option<SaveHook>,
}

/// See `Store::set_save_hook`.
pub type SaveHook =
    Box<dyn FnMut(&rusqlite::Transaction<'_>, &[(IpAddr, Host)]) -> rusqlite::Result<()> + Send>;

/// What to do instead, when the inventory at the path cannot be used.
const ELSEWHERE: &str = "choose another with --state PATH, or run without one with --state none";

/// Why the inventory cannot be opened, read or saved, each said in words a user can act on:
/// what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("inventory {shown}: is a {kind}, not a regular file: give the path of an SQLite file (it is created if missing), or run without one with --state none")]
    NotAFile { shown: String, kind: &'static str },
    /// The same, met by a reader (`hosts`, `report`, `fingerprints`), which creates nothing.
    #[error("inventory {shown}: is a {kind}, not an inventory: give --state the file an earlier `vendorwatch replay --state PATH` or `live` wrote (`live` keeps /var/lib/vendorwatch/inventory.db unless told otherwise)")]
    ReadNotAFile { shown: String, kind: &'static str },
    #[error("inventory {shown}: {dir} is not a directory: choose another path with --state PATH, or run without one with --state none")]
    ParentNotADirectory { shown: String, dir: String },
    #[error("inventory {shown}: the directory {dir} does not exist: create it for the sensor's user (mkdir -p {dir}; the systemd unit's StateDirectory does), choose another path with --state PATH, or run without one with --state none")]
    NoDirectory { shown: String, dir: String },
    #[error("inventory {shown}: {source}")]
    Stat {
        shown: String,
        source: std::io::Error,
    },
    /// SQLite refused; the common causes are explained (`explain`).
    #[error("{}", explain(path, what, source))]
    Sqlite {
        path: PathBuf,
        what: &'static str,
        source: rusqlite::Error,
    },
    /// Anything else that failed while opening, as the failing call said it.
    #[error("inventory {}: {what}: {detail}", path.display())]
    Failed {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    #[error("inventory {}: written by a newer vendorwatch: schema {version} > {SCHEMA_VERSION}; upgrade vendorwatch or use another --state", path.display())]
    NewerSchema { path: PathBuf, version: i64 },
    #[error("inventory {}: holds no vendorwatch inventory (an empty file, or another database): give --state the inventory a sensor wrote (a replay keeps one only with --state PATH)", path.display())]
    NoInventory { path: PathBuf },
    #[error("{0} (a sensor is writing it: read it as a user who may write its directory, or read a copy)")]
    BeingWritten(Box<StoreError>),
    #[error("{0} (it was written by an older vendorwatch and must be migrated once, which needs write access: copy it somewhere writable)")]
    NeedsMigration(Box<StoreError>),
    #[error("inventory {}: the directory {} is not writable ({source}); SQLite keeps the database's journal (-wal, -shm) next to it: make the directory writable for the sensor's user, or {ELSEWHERE}", path.display(), dir.display())]
    DirectoryNotWritable {
        path: PathBuf,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("inventory {}: the file is not writable ({source}): make it writable for the sensor's user, or {ELSEWHERE}", path.display())]
    FileNotWritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("inventory {}: another vendorwatch is using it; two sensors on one inventory would overwrite each other's counts: stop the other one, or give this run its own inventory with --state PATH, or run without one with --state none", path.display())]
    InUse { path: PathBuf },
    #[error("inventory {}: SQLite opened it read-only: make the file and its directory writable for the sensor's user, or {ELSEWHERE}", path.display())]
    OpenedReadOnly { path: PathBuf },
    /// A query of an open inventory failed.
    #[error("{0}")]
    Query(#[from] rusqlite::Error),
}

impl StoreError {
    /// Short, fixed: a metric label.
    pub fn reason(&self) -> &'static str {
        use rusqlite::ErrorCode;
        match self {
            StoreError::NotAFile { .. } | StoreError::ReadNotAFile { .. } => "not_a_file",
            StoreError::ParentNotADirectory { .. } | StoreError::NoDirectory { .. } => {
                "no_directory"
            }
            StoreError::Stat { .. } => "stat",
            StoreError::Sqlite { source, .. } => match source.sqlite_error_code() {
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => "locked",
                Some(ErrorCode::ReadOnly) => "read_only",
                Some(ErrorCode::DiskFull) => "disk_full",
                Some(ErrorCode::CannotOpen) => "cannot_open",
                Some(ErrorCode::NotADatabase) => "not_a_database",
                _ => "sqlite",
            },
            StoreError::Failed { .. } => "failed",
            StoreError::NewerSchema { .. } => "newer_schema",
            StoreError::NoInventory { .. } => "no_inventory",
            StoreError::BeingWritten(e) | StoreError::NeedsMigration(e) => e.reason(),
            StoreError::DirectoryNotWritable { .. } | StoreError::FileNotWritable { .. } => {
                "not_writable"
            }
            StoreError::InUse { .. } => "in_use",
            StoreError::OpenedReadOnly { .. } => "read_only",
            StoreError::Query(_) => "query",
        }
    }

    fn sqlite(path: &Path, what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        let path = path.to_path_buf();
        move |source| StoreError::Sqlite { path, what, source }
    }

    fn failed<E: std::fmt::Display>(
        path: &Path,
        what: &'static str,
    ) -> impl FnOnce(E) -> StoreError {
        let path = path.to_path_buf();
        move |e| StoreError::Failed {
            path,
            what,
            detail: e.to_string(),
        }
    }
}

/// For the command layer, which still carries its errors as text.
impl From<StoreError> for String {
    fn from(e: StoreError) -> String {
        e.to_string()
    }
}

/// What the inventory's path must be: a regular file, or nothing yet in a directory that
/// exists. A device (`--state /dev/null`), a FIFO or a directory is refused before SQLite
/// touches it (it would put its `-journal` or `-wal` beside it, in `/dev`); a missing
/// directory is refused with how to create it, not created.
pub fn check_state_path(path: &Path) -> Result<(), StoreError> {
    let shown = crate::operator_input::shown(path);
    match std::fs::metadata(path) {
        Ok(m) => match crate::operator_input::kind_of(m.file_type()) {
            None => Ok(()),
            Some(kind) => Err(StoreError::NotAFile { shown, kind }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = crate::operator_input::parent_dir(path);
            match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => Ok(()),
                Ok(_) => Err(StoreError::ParentNotADirectory {
                    shown,
                    dir: crate::operator_input::shown(dir),
                }),
                Err(_) => Err(StoreError::NoDirectory {
                    shown,
                    dir: crate::operator_input::shown(dir),
                }),
            }
        }
        Err(source) => Err(StoreError::Stat { shown, source }),
    }
}

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> String {
    format!("inventory {}: {what}: {e}", path.display())
}

/// What to do about a database that another process holds.
const LOCKED_HINT: &str = "another process holds it: another vendorwatch using the same inventory, or a sqlite3 session or backup with a transaction open; stop it, or give this run its own inventory with --state PATH, or run without one with --state none";

/// An SQLite error in words a user can act on: what is wrong, and what to do.
fn explain(path: &Path, what: &str, e: &rusqlite::Error) -> String {
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

/// One row of `identities` as stored: address, MAC, host name, client id, source, first
/// and last seen, count.
type IdentityCols = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
    i64,
    i64,
);

/// One row of a host's identity history (`insert_identity`).
const INSERT_IDENTITY: &str = "INSERT INTO identities (ip, mac, hostname, client_id, source, first_seen, last_seen, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// Writes one identity record of the host `ip` with the statement of `INSERT_IDENTITY`.
fn insert_identity(
    stmt: &mut rusqlite::CachedStatement<'_>,
    ip: &str,
    r: &crate::hosts::IdentityRecord,
) -> rusqlite::Result<usize> {
    stmt.execute(params![
        ip,
        r.mac.map(|m| m.to_string()),
        r.hostname,
        r.client_id,
        r.source.as_str(),
        r.first_seen.0,
        r.last_seen.0,
        r.count as i64,
    ])
}

fn identity_cols(r: &rusqlite::Row<'_>) -> rusqlite::Result<IdentityCols> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

impl Store {
    /// Runs `hook` inside every later save's transaction (a failing hook fails the save).
    pub fn set_save_hook(&mut self, hook: SaveHook) {
        self.save_hook = Some(hook);
    }

    /// Opens (creating and migrating as needed) the inventory at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        // No directory is created: a mistyped --state must not grow a tree of directories
        // somewhere unexpected (the systemd unit and the container create theirs).
        check_state_path(path)?;
        let conn = Connection::open(path).map_err(StoreError::sqlite(path, "cannot open"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(StoreError::failed(path, "busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(StoreError::sqlite(path, "cannot enable WAL"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(StoreError::failed(path, "synchronous"))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(StoreError::failed(path, "not an SQLite database"))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: path.to_path_buf(),
                version,
            });
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
            .map_err(StoreError::sqlite(path, "migration failed"))?;
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            _instance: None,
            save_hook: None,
        })
    }

    /// Opens the inventory only to read it (`vendorwatch hosts`, `report`): no directory is
    /// made, nothing is migrated or written, so a copy on read-only media or in a directory
    /// the reader cannot write is read as it is. A database of an older schema is opened the
    /// usual way once, which migrates it.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        use rusqlite::OpenFlags;
        check_state_path(path).map_err(|e| match e {
            StoreError::NotAFile { shown, kind } => StoreError::ReadNotAFile { shown, kind },
            other => other,
        })?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let read_version = |conn: &Connection| -> rusqlite::Result<i64> {
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.pragma_query_value(None, "user_version", |r| r.get(0))
        };
        let opened =
            Connection::open_with_flags(path, flags).and_then(|c| read_version(&c).map(|v| (c, v)));
        let wal_in_use = {
            let mut wal = path.as_os_str().to_owned();
            wal.push("-wal");
            std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0)
        };
        let (conn, version) = match opened {
            Ok(cv) => cv,
            // A WAL database needs its shared-memory file, which a reader cannot create in a
            // directory it may not write. With no write-ahead log beside it (a closed
            // inventory, a copy), the file is the whole truth and is read as the immutable
            // snapshot it is; with one, a sensor is writing and an immutable read would
            // miss its latest saves, so that is refused below.
            Err(rusqlite::Error::SqliteFailure(e, _))
                if !wal_in_use
                    && matches!(
                        e.code,
                        rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly
                    ) =>
            {
                let escaped = path
                    .display()
                    .to_string()
                    .replace('%', "%25")
                    .replace('?', "%3f")
                    .replace('#', "%23");
                let uri = format!("file:{escaped}?immutable=1");
                Connection::open_with_flags(&uri, flags | OpenFlags::SQLITE_OPEN_URI)
                    .and_then(|c| read_version(&c).map(|v| (c, v)))
                    .map_err(StoreError::sqlite(path, "cannot read"))?
            }
            Err(e) if wal_in_use => {
                return Err(StoreError::BeingWritten(Box::new(StoreError::sqlite(
                    path,
                    "cannot read",
                )(e))))
            }
            Err(e) => return Err(StoreError::sqlite(path, "cannot read")(e)),
        };
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: path.to_path_buf(),
                version,
            });
        }
        if version == 0 {
            // Every schema vendorwatch ever wrote has a version; none is no inventory (an
            // empty file given by mistake was once filled with an empty one and read as a
            // fleet with no hosts).
            return Err(StoreError::NoInventory {
                path: path.to_path_buf(),
            });
        }
        if version < SCHEMA_VERSION {
            drop(conn);
            return Store::open(path).map_err(|e| StoreError::NeedsMigration(Box::new(e)));
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            _instance: None,
            save_hook: None,
        })
    }

    /// Opens the inventory for a sensor that will write it, and checks up front that it can:
    /// the directory and the file are writable, no other vendorwatch has it, and no other
    /// process holds a write transaction (waiting up to the busy timeout for one to end).
    /// Every refusal says what is wrong and what to do.
    pub fn open_for_writing(path: &Path) -> Result<Store, StoreError> {
        use std::io::ErrorKind;
        check_state_path(path)?;
        let dir = crate::operator_input::parent_dir(path);
        if dir.is_dir() {
            probe_dir(dir).map_err(|source| StoreError::DirectoryNotWritable {
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
                source,
            })?;
        }
        let instance = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
        {
            Ok(f) => Some(f),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(source) => {
                return Err(StoreError::FileNotWritable {
                    path: path.to_path_buf(),
                    source,
                })
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
                .map_err(StoreError::failed(path, "cannot open"))?,
        };
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| {
                if errno == nix::errno::Errno::EWOULDBLOCK {
                    StoreError::InUse {
                        path: path.to_path_buf(),
                    }
                } else {
                    StoreError::failed(path, "cannot lock")(errno)
                }
            })?;
        store._instance = Some(lock);
        if store.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(StoreError::OpenedReadOnly {
                path: path.to_path_buf(),
            });
        }
        // Takes the write lock and lets it go: fails (after the busy timeout) while another
        // process holds a write transaction, rather than at the first save minutes later.
        store
            .conn
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(StoreError::sqlite(path, "cannot write"))?;
        Ok(store)
    }

    /// Every host with its detections.
    pub fn load(&self) -> Result<Vec<(IpAddr, Host)>, StoreError> {
        let mut hosts = self.load_host_rows()?;
        self.load_identity_history(&mut hosts)?;
        self.load_detections(&mut hosts)?;
        Ok(hosts.into_iter().collect())
    }

    /// The hosts table: each host's own columns, without history or detections.
    fn load_host_rows(&self) -> Result<std::collections::BTreeMap<IpAddr, Host>, StoreError> {
        let mut hosts: std::collections::BTreeMap<IpAddr, Host> = Default::default();
        let mut stmt = self
            .conn
            .prepare("SELECT ip, mac, ech_connections, encrypted_dns_connections, encrypted_dns_via, hostname, hostname_source, identities_omitted FROM hosts")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                (
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                ),
                HostIdentity {
                    hostname: r.get(5)?,
                    hostname_source: r
                        .get::<_, Option<String>>(6)?
                        .as_deref()
                        .and_then(IdentitySource::from_label),
                    history: Vec::new(),
                    history_omitted: u64::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
                    current_at: Timestamp::default(),
                },
            ))
        })?;
        for row in rows {
            let ((ip, mac, ech, edns, via), identity) = row?;
            let Ok(ip) = ip.parse::<IpAddr>() else {
                continue;
            };
            hosts.insert(
                ip,
                Host {
                    mac: mac.as_deref().and_then(|m| m.parse().ok()),
                    detections: Vec::new(),
                    ech_connections: u64::try_from(ech).unwrap_or(0),
                    encrypted_dns_connections: u64::try_from(edns).unwrap_or(0),
                    encrypted_dns_via: serde_json::from_str(&via).unwrap_or_default(),
                    identity,
                },
            );
        }
        Ok(hosts)
    }

    /// Adds each host's identity history, in the order it was written.
    fn load_identity_history(
        &self,
        hosts: &mut std::collections::BTreeMap<IpAddr, Host>,
    ) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT ip, mac, hostname, client_id, source, first_seen, last_seen, count FROM identities ORDER BY rowid")?;
        let rows = stmt.query_map([], identity_cols)?;
        for row in rows {
            let (ip, mac, hostname, client_id, source, first, last, count) = row?;
            let (Ok(ip), Some(source)) =
                (ip.parse::<IpAddr>(), IdentitySource::from_label(&source))
            else {
                continue;
            };
            if let Some(h) = hosts.get_mut(&ip) {
                // The current name is as new as the newest identity (what `apply` compares).
                h.identity.current_at = h.identity.current_at.max(Timestamp(last));
                h.identity.history.push(IdentityRecord {
                    mac: mac.as_deref().and_then(|m| m.parse().ok()),
                    hostname,
                    client_id,
                    source,
                    first_seen: Timestamp(first),
                    last_seen: Timestamp(last),
                    count: u64::try_from(count).unwrap_or(0),
                });
            }
        }
        Ok(())
    }

    /// Adds the detections; one whose host row is missing makes a host of its own.
    fn load_detections(
        &self,
        hosts: &mut std::collections::BTreeMap<IpAddr, Host>,
    ) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT ip, vendor, category, severity, first_seen, last_seen, count, forwarded, suppressed, alerted_at, rules, indicators, indicators_omitted, evidence FROM detections")?;
        let rows = stmt.query_map([], |r| {
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
                    evidence: evidence_from_json(&r.get::<_, String>(13)?),
                },
            ))
        })?;
        for row in rows {
            let (ip, det) = row?;
            if let Ok(ip) = ip.parse::<IpAddr>() {
                hosts.entry(ip).or_default().detections.push(det);
            }
        }
        Ok(())
    }

    /// The identities of addresses that are not hosts (no detection yet), as the undetected
    /// map holds them: (address, current MAC, identity), the current name and MAC rebuilt by
    /// taking the history in again in time order.
    pub fn load_undetected(&self) -> Result<Vec<(IpAddr, Undetected)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT ip, mac, hostname, client_id, source, first_seen, last_seen, count FROM identities WHERE ip NOT IN (SELECT ip FROM hosts) ORDER BY last_seen, rowid")?;
        let rows = stmt.query_map([], identity_cols)?;
        let mut by_ip: std::collections::BTreeMap<IpAddr, Undetected> = Default::default();
        for row in rows {
            let (ip, mac, hostname, client_id, source, first, last, count) = row?;
            let (Ok(ip), Some(source)) =
                (ip.parse::<IpAddr>(), IdentitySource::from_label(&source))
            else {
                continue;
            };
            let (current_mac, identity) = by_ip.entry(ip).or_default();
            let id = crate::extract::Identity {
                ts: Timestamp(last),
                ip,
                mac: mac.as_deref().and_then(|m| m.parse().ok()),
                hostname,
                client_id,
                source,
            };
            identity.apply_bounded(current_mac, &id, super::MAX_UNDETECTED_HISTORY);
            if let Some(r) = identity.history.last_mut() {
                r.first_seen = Timestamp(first);
                r.count = u64::try_from(count).unwrap_or(0);
            }
        }
        Ok(by_ip.into_iter().collect())
    }

    /// Saves the identities of undetected addresses (`None`: gone from the map), in one
    /// transaction; `whole`: `list` is all of them, and every other undetected row goes.
    /// Rows of an address that has become a host are left to `save`.
    pub fn save_undetected(
        &mut self,
        whole: bool,
        list: &[(IpAddr, Option<Undetected>)],
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        if whole {
            tx.execute(
                "DELETE FROM identities WHERE ip NOT IN (SELECT ip FROM hosts)",
                [],
            )?;
        }
        // Compiled once per save (see `save_rows`).
        let mut forget = tx.prepare_cached(
            "DELETE FROM identities WHERE ip = ?1 AND ip NOT IN (SELECT ip FROM hosts)",
        )?;
        let mut remember = tx.prepare_cached(INSERT_IDENTITY)?;
        for (ip, kept) in list {
            let ip = ip.to_string();
            forget.execute(params![ip])?;
            for r in kept.iter().flat_map(|(_, id)| &id.history) {
                insert_identity(&mut remember, &ip, r)?;
            }
        }
        drop((forget, remember));
        Ok(tx.commit()?)
    }

    /// The home-net resolvers the inventory remembers.
    pub fn load_resolvers(&self) -> Result<Vec<(IpAddr, ResolverInfo)>, StoreError> {
        let read = || -> rusqlite::Result<Vec<(IpAddr, ResolverInfo)>> {
            let mut stmt = self.conn.prepare(
                "SELECT ip, source, answered, first_answer, last_answer FROM resolvers ORDER BY ip",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (ip, source, answered, first, last) = row?;
                // A row this build cannot read is skipped, not fatal: the role is re-earned.
                let (Ok(ip), Some(source)) = (ip.parse::<IpAddr>(), RoleSource::parse(&source))
                else {
                    continue;
                };
                out.push((
                    ip,
                    ResolverInfo {
                        source,
                        answered: u64::try_from(answered).unwrap_or(0),
                        first_answer: first.map(Timestamp),
                        last_answer: last.map(Timestamp),
                    },
                ));
            }
            Ok(out)
        };
        read().map_err(StoreError::sqlite(&self.path, "cannot read resolvers"))
    }

    /// Replaces the remembered resolvers with `list` (bounded by `RESOLVERS_MAX`), in one
    /// transaction.
    pub fn save_resolvers(&mut self, list: &[(IpAddr, ResolverInfo)]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let write = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM resolvers", [])?;
            for (ip, r) in list {
                tx.execute(
                    "INSERT INTO resolvers (ip, source, answered, first_answer, last_answer) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        ip.to_string(),
                        r.source.as_str(),
                        i64::try_from(r.answered).unwrap_or(i64::MAX),
                        r.first_answer.map(|t| t.0),
                        r.last_answer.map(|t| t.0),
                    ],
                )?;
            }
            tx.commit()
        };
        write(&mut self.conn).map_err(StoreError::sqlite(&path, "cannot save resolvers"))
    }

    /// Saves these hosts (insert or replace), in one transaction.
    pub fn save(&mut self, hosts: &[(IpAddr, Host)]) -> Result<(), StoreError> {
        let path = self.path.clone();
        self.save_rows(hosts)
            .map_err(StoreError::sqlite(&path, "cannot save"))
    }

    fn save_rows(&mut self, hosts: &[(IpAddr, Host)]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        // Each statement compiled once per save, not once per row: a save of thousands of
        // hosts spent most of its time in SQLite's parser.
        let mut save_host = tx.prepare_cached(
                "INSERT INTO hosts (ip, mac, ech_connections, encrypted_dns_connections, encrypted_dns_via, hostname, hostname_source, identities_omitted) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(ip) DO UPDATE SET mac = excluded.mac, ech_connections = excluded.ech_connections,
                 encrypted_dns_connections = excluded.encrypted_dns_connections, encrypted_dns_via = excluded.encrypted_dns_via,
                 hostname = excluded.hostname, hostname_source = excluded.hostname_source, identities_omitted = excluded.identities_omitted",
        )?;
        let mut forget_identities = tx.prepare_cached("DELETE FROM identities WHERE ip = ?1")?;
        let mut save_identity = tx.prepare_cached(INSERT_IDENTITY)?;
        let mut save_detection = tx.prepare_cached(
            "INSERT OR REPLACE INTO detections (ip, vendor, category, severity, first_seen, last_seen, count, forwarded, suppressed, alerted_at, rules, indicators, indicators_omitted, evidence)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?;
        for (ip, h) in hosts {
            let ip = ip.to_string();
            save_host.execute(params![
                ip,
                h.mac.map(|m| m.to_string()),
                h.ech_connections as i64,
                h.encrypted_dns_connections as i64,
                serde_json::to_string(&h.encrypted_dns_via).unwrap_or_default(),
                h.identity.hostname,
                h.identity.hostname_source.map(IdentitySource::as_str),
                h.identity.history_omitted as i64,
            ])?;
            // The history is small and bounded: replaced whole.
            forget_identities.execute(params![ip])?;
            for r in &h.identity.history {
                insert_identity(&mut save_identity, &ip, r)?;
            }
            for d in &h.detections {
                save_detection.execute(params![
                    ip,
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
                    d.indicators_omitted as i64,
                    evidence_to_json(&d.evidence)
                ])?;
            }
        }
        drop((save_host, forget_identities, save_identity, save_detection));
        if let Some(hook) = self.save_hook.as_mut() {
            hook(&tx, hosts)?;
        }
        tx.commit()
    }

    /// Writes what the fingerprint learner knows (every row replaced: the table is bounded).
    pub fn save_fingerprints(&mut self, rows: &[FingerprintStats]) -> Result<(), StoreError> {
        let write = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM fingerprints", [])?;
            for r in rows {
                tx.execute(
                    "INSERT INTO fingerprints (fingerprint, last_seen, stats) VALUES (?1, ?2, ?3)",
                    params![
                        r.fingerprint,
                        r.last_seen.0,
                        serde_json::to_string(r).unwrap_or_default()
                    ],
                )?;
            }
            tx.commit()
        };
        write(&mut self.conn).map_err(StoreError::sqlite(&self.path, "cannot save fingerprints"))
    }

    /// What earlier runs learned of client fingerprints (rows that do not parse are skipped).
    pub fn load_fingerprints(&self) -> Result<Vec<FingerprintStats>, StoreError> {
        let read = || -> rusqlite::Result<Vec<FingerprintStats>> {
            let mut stmt = self
                .conn
                .prepare("SELECT stats FROM fingerprints ORDER BY last_seen DESC")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for text in rows {
                if let Ok(stats) = serde_json::from_str(&text?) {
                    out.push(stats);
                }
            }
            Ok(out)
        };
        read().map_err(StoreError::sqlite(&self.path, "cannot read fingerprints"))
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

/// Saves the hosts that changed, every `SAVE_EVERY_SECS`, until stopped; then once more.
/// A save that fails (the database locked by another process, a full disk) keeps its hosts
/// dirty, so the next one writes them again: nothing is lost while the sensor runs. The first
/// failure, and the recovery, are logged (then at most once a minute); all are counted.
pub struct Persister {
    /// Dropped to stop the saver at once (it waits on the channel, not in sleeps, so the
    /// end of a run does not wait for the next tick).
    stop: Option<crossbeam_channel::Sender<()>>,
    handle: Option<std::thread::JoinHandle<Store>>,
    /// Saves that failed.
    pub failures: Arc<AtomicU64>,
    /// Saves that wrote at least one host.
    pub saves: Arc<AtomicU64>,
    /// The last save failed: some hosts are not in the database (yet).
    pub unsaved: Arc<AtomicBool>,
    pub last_error: Arc<std::sync::Mutex<Option<String>>>,
}

/// What the persister saves of the fingerprint learner besides the hosts.
pub trait LearnedState: Send + Sync {
    fn take_dirty(&self) -> bool;
    fn mark_dirty(&self);
    fn snapshot(&self) -> Vec<FingerprintStats>;
}

/// The fingerprint learner is what the inventory saves of what it learned (the trait lives
/// here, beside the saver, so that detection needs nothing from the inventory).
impl LearnedState for crate::detect::fingerprints::Learner {
    fn take_dirty(&self) -> bool {
        crate::detect::fingerprints::Learner::take_dirty(self)
    }

    fn mark_dirty(&self) {
        crate::detect::fingerprints::Learner::mark_dirty(self)
    }

    fn snapshot(&self) -> Vec<FingerprintStats> {
        crate::detect::fingerprints::Learner::snapshot(self)
    }
}

/// How often the fingerprint learner's state is saved (besides at the end).
const FINGERPRINTS_SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Failures after the first are said at most this often.
const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Persister {
    /// Starts saving; first puts back the identities of undetected addresses the inventory
    /// remembers (hosts are restored by the caller, who needs them before the pipeline runs).
    /// `roles`, when given, are saved too (whenever they changed).
    pub fn start(
        store: Store,
        hosts: Arc<HostTable>,
        roles: Option<Arc<ResolverRoles>>,
    ) -> std::io::Result<Persister> {
        Persister::start_with(store, hosts, roles, None)
    }

    /// Like `start`, and also saves the fingerprint learner's state with every save.
    pub fn start_with(
        mut store: Store,
        hosts: Arc<HostTable>,
        roles: Option<Arc<ResolverRoles>>,
        learner: Option<Arc<dyn LearnedState>>,
    ) -> std::io::Result<Persister> {
        // A file whose hosts loaded has readable identities; if not, they are only lost.
        if let Ok(list) = store.load_undetected() {
            hosts.restore_undetected(list);
        }
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let failures = Arc::new(AtomicU64::new(0));
        let saves = Arc::new(AtomicU64::new(0));
        let unsaved = Arc::new(AtomicBool::new(false));
        let last_error = Arc::new(std::sync::Mutex::new(None));
        let mut saver = Saver {
            hosts,
            roles,
            learner,
            failures: Arc::clone(&failures),
            saves: Arc::clone(&saves),
            unsaved: Arc::clone(&unsaved),
            last_error: Arc::clone(&last_error),
            last_warning: None,
            fingerprints_saved: None,
        };
        let handle = std::thread::Builder::new()
            .name("inventory".into())
            .spawn(move || {
                let every = std::time::Duration::from_secs(SAVE_EVERY_SECS);
                // Nothing is ever sent: the channel only disconnects when `finish` (or a
                // drop) lets go of the sender.
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    saver.save(&mut store, false);
                }
                saver.save(&mut store, true);
                store
            })?;
        Ok(Persister {
            stop: Some(stop),
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
        drop(self.stop.take());
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

/// The persister thread's side: what it saves and the counters it shares with `Persister`.
struct Saver {
    hosts: Arc<HostTable>,
    roles: Option<Arc<ResolverRoles>>,
    learner: Option<Arc<dyn LearnedState>>,
    failures: Arc<AtomicU64>,
    saves: Arc<AtomicU64>,
    unsaved: Arc<AtomicBool>,
    last_error: Arc<std::sync::Mutex<Option<String>>>,
    /// When a failed host save was last said (none since the last success).
    last_warning: Option<std::time::Instant>,
    fingerprints_saved: Option<std::time::Instant>,
}

impl Saver {
    /// One round: the learner (when due), the resolver roles, the undetected identities and
    /// the hosts, each only if it changed; `last` is the final round of the run.
    fn save(&mut self, store: &mut Store, last: bool) {
        self.save_fingerprints(store, last);
        self.save_resolvers(store);
        self.save_undetected(store);
        self.save_hosts(store);
    }

    /// Counts a failed save and keeps its error; what failed stays dirty (the caller's part).
    fn failed(&self, e: &StoreError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.unsaved.store(true, Ordering::Relaxed);
        if let Ok(mut l) = self.last_error.lock() {
            *l = Some(e.to_string());
        }
    }

    fn save_fingerprints(&mut self, store: &mut Store, last: bool) {
        // The learner changes with every ClientHello and is saved whole (it is
        // bounded): once a minute, and at the end, is enough.
        let fingerprints_due = last
            || self
                .fingerprints_saved
                .is_none_or(|t| t.elapsed() >= FINGERPRINTS_SAVE_EVERY);
        if let Some(l) = self
            .learner
            .as_ref()
            .filter(|l| fingerprints_due && l.take_dirty())
        {
            self.fingerprints_saved = Some(std::time::Instant::now());
            if let Err(e) = store.save_fingerprints(&l.snapshot()) {
                l.mark_dirty();
                self.failed(&e);
            }
        }
    }

    fn save_resolvers(&self, store: &mut Store) {
        if let Some(r) = self.roles.as_ref().filter(|r| r.take_changed()) {
            if let Err(e) = store.save_resolvers(&r.list()) {
                self.failed(&e);
                r.mark_changed();
            }
        }
    }

    fn save_undetected(&self, store: &mut Store) {
        let (whole, undetected) = self.hosts.take_dirty_undetected();
        if whole || !undetected.is_empty() {
            if let Err(e) = store.save_undetected(whole, &undetected) {
                self.failed(&e);
                self.hosts
                    .mark_dirty_undetected(whole, undetected.iter().map(|(ip, _)| *ip));
            }
        }
    }

    /// Saves the hosts that changed; the first failure and the recovery are said (failures
    /// again at most every `WARN_EVERY`).
    fn save_hosts(&mut self, store: &mut Store) {
        let dirty = self.hosts.take_dirty();
        if dirty.is_empty() {
            return;
        }
        match store.save(&dirty) {
            Ok(()) => {
                self.saves.fetch_add(1, Ordering::Relaxed);
                if self.unsaved.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        "inventory {} saved again ({} failed save(s) before)",
                        store.path.display(),
                        self.failures.load(Ordering::Relaxed)
                    );
                    self.last_warning = None;
                }
            }
            Err(e) => {
                self.failed(&e);
                if self.last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    self.last_warning = Some(std::time::Instant::now());
                    tracing::warn!(
                        "{e}; {} host(s) kept in memory and saved again every {SAVE_EVERY_SECS} s (the run goes on)",
                        dirty.len()
                    );
                }
                // Keep them dirty: the next save tries again, nothing is lost while we run.
                self.hosts.mark_dirty(dirty.iter().map(|(ip, _)| *ip));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mac::MacAddr;

    #[test]
    fn round_trip_and_migrations() {
        let dir = tempfile::tempdir().expect("tmp");
        // The directory must exist: the store does not create one.
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        let path = dir.path().join("sub/inv.db");
        let mut store = Store::open(&path).expect("opens");
        assert_eq!(store.schema_version(), Some(SCHEMA_VERSION));
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let host = Host {
            mac: Some(MacAddr([0, 1, 2, 3, 4, 5])),
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
                evidence: vec![Evidence {
                    time: Timestamp(1_500),
                    indicator: Indicator {
                        kind: crate::extract::NameKind::TlsSni,
                        value: "dnl-01.geo.kaspersky.com".into(),
                        name: None,
                        query: None,
                        path: None,
                        ech: false,
                        ech_real: false,
                    },
                    flow: EvidenceFlow {
                        src_ip: ip,
                        src_port: 40000,
                        dst_ip: "203.0.113.5".parse().unwrap(),
                        dst_port: 443,
                        transport: Proto::Tcp,
                    },
                }],
                indicators_omitted: 0,
                suppressed: None,
                alerted_at: Some(Timestamp(1)),
                alerted: true,
            }],
            ech_connections: 3,
            encrypted_dns_connections: 0,
            encrypted_dns_via: vec![],
            identity: HostIdentity {
                hostname: Some("ws-1".into()),
                hostname_source: Some(IdentitySource::DhcpRequest),
                history: vec![
                    IdentityRecord {
                        mac: Some(MacAddr([0, 1, 2, 3, 4, 5])),
                        hostname: Some("ws-1".into()),
                        client_id: Some("01:00:01:02:03:04:05".into()),
                        source: IdentitySource::DhcpRequest,
                        first_seen: Timestamp(10),
                        last_seen: Timestamp(20),
                        count: 2,
                    },
                    IdentityRecord {
                        mac: None,
                        hostname: Some("ws-1.lab".into()),
                        client_id: None,
                        source: IdentitySource::Ptr,
                        first_seen: Timestamp(30),
                        last_seen: Timestamp(30),
                        count: 1,
                    },
                ],
                history_omitted: 4,
                current_at: Timestamp(30),
            },
        };
        store.save(&[(ip, host.clone())]).expect("saves");
        // Saving again replaces the history, never duplicates it.
        store.save(&[(ip, host.clone())]).expect("saves again");
        drop(store);
        let store = Store::open(&path).expect("reopens");
        let loaded = store.load().expect("loads");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].1.mac, Some(MacAddr([0, 1, 2, 3, 4, 5])));
        assert_eq!(loaded[0].1.ech_connections, 3);
        let d = &loaded[0].1.detections[0];
        assert_eq!(
            (d.count, d.alerted, d.alerted_at),
            (7, true, Some(Timestamp(1)))
        );
        assert_eq!(d.evidence, host.detections[0].evidence);
        assert_eq!(loaded[0].1.identity, host.identity);
    }

    /// A database written by the v2 schema (its DDL as it shipped, spelled out) opens with
    /// this build: migrated to the current schema, its rows intact, and the resolver role saved and read back
    /// (a host's role survives in the inventory).
    #[test]
    fn v2_database_is_migrated_and_keeps_resolver_roles() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("v2.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "BEGIN;
            CREATE TABLE hosts (
                ip TEXT PRIMARY KEY,
                mac TEXT,
                ech_connections INTEGER NOT NULL DEFAULT 0,
                encrypted_dns_connections INTEGER NOT NULL DEFAULT 0,
                encrypted_dns_via TEXT NOT NULL DEFAULT '[]'
            , hostname TEXT, hostname_source TEXT, identities_omitted INTEGER NOT NULL DEFAULT 0);
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
                indicators_omitted INTEGER NOT NULL, evidence TEXT NOT NULL DEFAULT '[]',
                PRIMARY KEY (ip, vendor, category)
            );
            CREATE INDEX detections_last_seen ON detections(last_seen);
            CREATE TABLE identities (
                ip TEXT NOT NULL, mac TEXT, hostname TEXT, client_id TEXT, source TEXT NOT NULL,
                first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, count INTEGER NOT NULL
            );
            CREATE INDEX identities_ip ON identities(ip);
            INSERT INTO hosts VALUES ('10.2.0.53', NULL, 0, 0, '[]', 'dns-1', 'dhcp_ack', 0);
            INSERT INTO detections VALUES ('10.2.0.53', 'kaspersky', 'update', 'high', 1000, 2000, 3, 1,
                NULL, NULL, '[\"kaspersky.update.dnl-geo-mirrors\"]',
                '[{\"kind\":\"dns\",\"value\":\"dnl-01.geo.kaspersky.com\",\"count\":3}]', 0, '[]');
            PRAGMA user_version = 2;
            COMMIT;",
        )
        .expect("v2 database");
        drop(conn);

        let mut store = Store::open(&path).expect("v2 opens");
        assert_eq!(store.schema_version(), Some(SCHEMA_VERSION));
        let loaded = store.load().expect("loads");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].1.identity.hostname.as_deref(), Some("dns-1"));
        assert!(loaded[0].1.detections[0].forwarded);
        assert!(store.load_resolvers().expect("empty table").is_empty());

        let ip: IpAddr = "10.2.0.53".parse().unwrap();
        let pinned: IpAddr = "10.2.0.54".parse().unwrap();
        let roles = [
            (
                ip,
                ResolverInfo {
                    source: RoleSource::Answered,
                    answered: 4,
                    first_answer: Some(Timestamp(1500)),
                    last_answer: Some(Timestamp(1900)),
                },
            ),
            (
                pinned,
                ResolverInfo {
                    source: RoleSource::Pinned,
                    answered: 0,
                    first_answer: None,
                    last_answer: None,
                },
            ),
        ];
        store.save_resolvers(&roles).expect("saves");
        drop(store);
        let store = Store::open_read_only(&path).expect("reopens");
        assert_eq!(store.load_resolvers().expect("loads"), roles);

        // Restored, the earned role stays; a pin the configuration dropped does not.
        let restored = ResolverRoles::default();
        restored.restore(roles.iter().cloned());
        assert_eq!(
            restored.list(),
            vec![(ip, roles[0].1.clone())],
            "earned role kept, stale pin dropped"
        );
    }

    /// A database written by the v1 schema (its DDL as it shipped, spelled out here so that a
    /// later edit of `MIGRATIONS` cannot change what this test builds) opens with this
    /// build: migrated to v2, every v1 row intact, and the v2 columns and table usable.
    #[test]
    fn v1_database_is_migrated_with_its_data() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("v1.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "BEGIN;
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
            INSERT INTO hosts VALUES ('10.1.2.3', '00:11:22:33:44:55', 2, 1, '[\"DoT/DoQ 9.9.9.9:853\"]');
            INSERT INTO detections VALUES ('10.1.2.3', 'kaspersky', 'update', 'high', 1000, 2000, 12, 0,
                NULL, 1000, '[\"kaspersky.update.dnl-geo-mirrors\"]',
                '[{\"kind\":\"dns\",\"value\":\"dnl-01.geo.kaspersky.com\",\"count\":12}]', 0);
            PRAGMA user_version = 1;
            COMMIT;",
        )
        .expect("v1 database");
        drop(conn);

        let mut store = Store::open(&path).expect("v1 opens");
        assert_eq!(store.schema_version(), Some(SCHEMA_VERSION));
        let loaded = store.load().expect("loads");
        assert_eq!(loaded.len(), 1);
        let (ip, h) = &loaded[0];
        assert_eq!(ip.to_string(), "10.1.2.3");
        assert_eq!(h.mac, Some(MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x55])));
        assert_eq!((h.ech_connections, h.encrypted_dns_connections), (2, 1));
        assert_eq!(h.encrypted_dns_via, ["DoT/DoQ 9.9.9.9:853"]);
        assert_eq!(h.identity, HostIdentity::default());
        let d = &h.detections[0];
        assert_eq!(
            (d.vendor.as_str(), d.category.as_str(), d.count),
            ("kaspersky", "update", 12)
        );
        assert_eq!(
            (d.first_seen, d.last_seen),
            (Timestamp(1000), Timestamp(2000))
        );
        assert_eq!((d.alerted, d.alerted_at), (true, Some(Timestamp(1000))));
        assert_eq!(d.indicators[0].indicator.value, "dnl-01.geo.kaspersky.com");
        assert_eq!(d.indicators[0].count, 12);
        assert!(d.evidence.is_empty());

        // v2 works on the migrated file: identities and evidence are written and read back.
        let mut h = h.clone();
        h.identity.apply(
            &mut h.mac,
            &crate::extract::Identity {
                ts: Timestamp(3000),
                ip: *ip,
                mac: Some(MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x66])),
                hostname: Some("ws-9".into()),
                client_id: None,
                source: IdentitySource::DhcpAck,
            },
        );
        h.detections[0].evidence.push(Evidence {
            time: Timestamp(2000),
            indicator: d.indicators[0].indicator.clone(),
            flow: EvidenceFlow {
                src_ip: *ip,
                src_port: 5353,
                dst_ip: "10.0.0.53".parse().unwrap(),
                dst_port: 53,
                transport: Proto::Udp,
            },
        });
        store.save(&[(*ip, h.clone())]).expect("saves v2");
        drop(store);
        let again = Store::open(&path).expect("reopens").load().expect("loads");
        assert_eq!(again[0].1.identity, h.identity);
        assert_eq!(again[0].1.identity.hostname.as_deref(), Some("ws-9"));
        assert_eq!(again[0].1.detections[0].evidence, h.detections[0].evidence);
    }

    #[test]
    fn identities_of_undetected_addresses_are_saved_loaded_and_deleted() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut store = Store::open(&dir.path().join("inv.db")).expect("opens");
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let ident =
            |ip: IpAddr, ts: i64, name: &str, source: IdentitySource| crate::extract::Identity {
                ts: Timestamp(ts),
                ip,
                mac: (source != IdentitySource::Ptr).then_some(MacAddr([2, 0, 0, 0, 0, 1])),
                hostname: Some(name.into()),
                client_id: None,
                source,
            };
        let mut id_a = HostIdentity::default();
        let mut mac_a = None;
        id_a.apply(&mut mac_a, &ident(a, 10, "ws-a", IdentitySource::DhcpAck));
        id_a.apply(&mut mac_a, &ident(a, 20, "ws-a.lab", IdentitySource::Ptr));
        let mut id_b = HostIdentity::default();
        let mut mac_b = None;
        id_b.apply(&mut mac_b, &ident(b, 5, "ws-b", IdentitySource::DhcpAck));
        store
            .save_undetected(
                false,
                &[
                    (a, Some((mac_a, id_a.clone()))),
                    (b, Some((mac_b, id_b.clone()))),
                ],
            )
            .expect("saves");
        // b becomes a host: its rows are the host's now, and no longer undetected ones.
        let host_b = Host {
            mac: mac_b,
            identity: id_b.clone(),
            ..Host::default()
        };
        store.save(&[(b, host_b)]).expect("saves host");
        store
            .save_undetected(false, &[(b, None)])
            .expect("leaves host rows alone");
        let loaded = store.load_undetected().expect("loads");
        assert_eq!(loaded.len(), 1);
        let (ip, (mac, id)) = &loaded[0];
        assert_eq!((*ip, *mac), (a, mac_a));
        // The current name is rebuilt as taking the history in again gives it: DHCP's.
        assert_eq!(id.hostname.as_deref(), Some("ws-a"));
        assert_eq!(id.history, id_a.history);
        assert_eq!(
            store.load().expect("hosts")[0].1.identity.history,
            id_b.history
        );
        // Evicted: gone.
        store.save_undetected(false, &[(a, None)]).expect("deletes");
        assert!(store.load_undetected().expect("loads").is_empty());
    }

    #[test]
    fn newer_schema_and_garbage_are_refused_clearly() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("inv.db");
        let conn = Connection::open(&path).expect("open");
        conn.pragma_update(None, "user_version", 99).expect("set");
        drop(conn);
        let e = Store::open(&path).err().expect("refused");
        assert_eq!(e.reason(), "newer_schema");
        assert!(e.to_string().contains("newer vendorwatch"), "{e}");
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
        assert_eq!(e.reason(), "in_use");
        let e = e.to_string();
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
