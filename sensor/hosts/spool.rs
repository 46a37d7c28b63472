//! The spool: host snapshots waiting to be shipped to the agency inventory, kept in the
//! sensor's own SQLite inventory (table `agency_spool`, created on first use; it is a
//! queue, not part of the versioned host schema, so it stays out of `store`'s migrations).
//!
//! Snapshots are queued inside the very transaction that saves the hosts (`store`'s save
//! hook), so the local inventory and the spool never disagree, even after SIGKILL. Each row
//! has a sequence number (SQLite `AUTOINCREMENT`: strictly increasing, never reused); the
//! shipper sends them in that order and deletes them once the server has committed them.
//!
//! Bound and policy: a snapshot is the whole state of a host, so a newer one replaces the
//! pending older one of the same host (keeping the older's queue time, so the oldest-pending
//! age tells the truth). The backlog is thus at most one row per host, and at most
//! `backlog` rows (`--inventory-backlog`): when that many hosts are waiting, the snapshot of
//! a host not yet waiting is turned away — counted
//! (`vendorwatch_inventory_ship_dropped_total{reason="spool_full"}`, alert
//! `VendorwatchInventoryBacklogFull`) — and a resync is marked in the file. Once the spool
//! has drained, the shipper queues every host of the inventory again, in address order, as
//! many as fit at a time, until all have gone. Nothing is lost while the local inventory
//! holds it; the agency view is only late for those hosts.

use super::agency::HostSnapshot;
use super::postgres::Shipped;
use super::store::StoreError;
use super::Host;
use rusqlite::{params, Connection, OptionalExtension};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const CREATE: &str = "
    CREATE TABLE IF NOT EXISTS agency_spool (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        site TEXT NOT NULL,
        sensor_id TEXT NOT NULL,
        ip TEXT NOT NULL,
        queued_at INTEGER NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS agency_spool_ip ON agency_spool(site, ip);
    CREATE TABLE IF NOT EXISTS agency_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// What the spool's writer (the save hook) and reader (the shipper) share.
#[derive(Debug, Default)]
pub struct SpoolState {
    /// Rows waiting.
    pub pending: AtomicU64,
    /// Snapshots not queued because the spool was full (a resync queues them again).
    pub dropped_full: AtomicU64,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Creates the spool tables if needed; returns this local inventory's id (made once, at
/// random, so a re-created inventory file is a new stream on the server and not mistaken
/// for an old one whose sequence numbers it reuses) and whether this inventory was never
/// spooled before (then every host it already holds must be queued).
pub fn prepare(path: &Path) -> Result<(String, bool), StoreError> {
    let conn = open(path)?;
    conn.execute_batch(CREATE)
        .map_err(|source| StoreError::Sqlite {
            path: path.to_path_buf(),
            what: "cannot create the spool",
            source,
        })?;
    let id: Option<String> = conn
        .query_row(
            "SELECT value FROM agency_meta WHERE key = 'inventory_id'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = id {
        return Ok((id, false));
    }
    let id = new_id();
    conn.execute(
        "INSERT INTO agency_meta (key, value) VALUES ('inventory_id', ?1)",
        params![id],
    )
    .map_err(|source| StoreError::Sqlite {
        path: path.to_path_buf(),
        what: "cannot write the spool",
        source,
    })?;
    Ok((id, true))
}

fn new_id() -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut rnd = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut rnd);
    }
    h.update(rnd);
    h.update(std::process::id().to_le_bytes());
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes(),
    );
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|source| StoreError::Sqlite {
        path: path.to_path_buf(),
        what: "cannot open",
        source,
    })?;
    // The persister writes hosts and queues snapshots while the shipper deletes shipped
    // rows: each waits for the other's short transaction.
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// Queues a snapshot of every host with a detection: a newer snapshot replaces the pending
/// one of the same host; a host not yet waiting is turned away when `backlog` hosts are
/// (counted). Returns the hosts queued and the hosts turned away.
fn queue(
    conn: &Connection,
    who: &Who,
    state: &SpoolState,
    hosts: &[(IpAddr, Host)],
) -> rusqlite::Result<(u64, u64)> {
    let now = now_secs();
    let (mut added, mut turned_away) = (0u64, 0u64);
    for (ip, h) in hosts {
        if h.detections.is_empty() {
            continue;
        }
        let ip_text = ip.to_string();
        let old: Option<(i64, i64)> = conn
            .query_row(
                "SELECT seq, queued_at FROM agency_spool WHERE site = ?1 AND ip = ?2",
                params![who.site, ip_text],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let queued_at = match old {
            Some((seq, at)) => {
                conn.execute("DELETE FROM agency_spool WHERE seq = ?1", params![seq])?;
                at
            }
            None => {
                if state.pending.load(Ordering::Relaxed) + added >= who.backlog as u64 {
                    turned_away += 1;
                    continue;
                }
                added += 1;
                now
            }
        };
        let payload = serde_json::to_string(&HostSnapshot::of(h)).unwrap_or_default();
        conn.execute(
            "INSERT INTO agency_spool (site, sensor_id, ip, queued_at, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![who.site, who.sensor_id, ip_text, queued_at, payload],
        )?;
    }
    Ok((added, turned_away))
}

/// Whose snapshots these are, and how many hosts may wait.
#[derive(Debug, Clone)]
pub struct Who {
    pub site: String,
    pub sensor_id: String,
    pub backlog: usize,
}

/// The save hook: queues a snapshot of every saved host, inside the save's transaction. A
/// host turned away by a full spool asks for a resync from the first host.
pub fn hook(
    who: Who,
    state: Arc<SpoolState>,
) -> impl FnMut(&rusqlite::Transaction<'_>, &[(IpAddr, Host)]) -> rusqlite::Result<()> + Send {
    move |tx, hosts| {
        let (added, turned_away) = queue(tx, &who, &state, hosts)?;
        if turned_away > 0 {
            state.dropped_full.fetch_add(turned_away, Ordering::Relaxed);
            tx.execute(
                "INSERT OR REPLACE INTO agency_meta (key, value) VALUES ('resync', '')",
                [],
            )?;
        }
        // The shipper re-reads the true figure from the file every round.
        state.pending.fetch_add(added, Ordering::Relaxed);
        Ok(())
    }
}

/// The shipper's side of the spool.
pub struct SpoolReader {
    conn: Connection,
}

impl SpoolReader {
    pub fn open(path: &Path) -> Result<SpoolReader, StoreError> {
        Ok(SpoolReader { conn: open(path)? })
    }

    /// The oldest `limit` rows, in sequence order (rows that no longer parse are skipped and
    /// deleted with the batch: a newer vendorwatch cannot read them either).
    pub fn batch(&self, limit: usize) -> rusqlite::Result<(Vec<Shipped>, i64)> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, site, sensor_id, ip, payload FROM agency_spool ORDER BY seq LIMIT ?1",
        )?;
        let mut top = 0i64;
        let mut out = Vec::new();
        let rows = stmt.query_map(params![limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        for row in rows {
            let (seq, site, sensor_id, ip, payload) = row?;
            top = top.max(seq);
            let (Ok(ip), Ok(snapshot)) = (
                ip.parse::<IpAddr>(),
                serde_json::from_str::<HostSnapshot>(&payload),
            ) else {
                continue;
            };
            out.push(Shipped {
                seq,
                site,
                sensor_id,
                ip,
                snapshot,
            });
        }
        Ok((out, top))
    }

    /// Forgets the rows up to `seq` (the server has them). Rows queued meanwhile have higher
    /// numbers, so exactly the shipped rows go.
    pub fn shipped(&self, seq: i64) -> rusqlite::Result<usize> {
        self.conn
            .execute("DELETE FROM agency_spool WHERE seq <= ?1", params![seq])
    }

    /// (rows waiting, queue time of the oldest in Unix seconds).
    pub fn pending(&self) -> rusqlite::Result<(u64, Option<i64>)> {
        self.conn.query_row(
            "SELECT count(*), min(queued_at) FROM agency_spool",
            [],
            |r| Ok((u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0), r.get(1)?)),
        )
    }

    /// One step of a resync (a full spool turned hosts away): queues every host of the
    /// local inventory `hosts`, in address order from where the last step stopped, until the
    /// spool is full again. Returns whether a resync is (still) under way.
    pub fn resync_step(
        &mut self,
        who: &Who,
        state: &SpoolState,
        hosts: Vec<(IpAddr, Host)>,
    ) -> rusqlite::Result<bool> {
        // The write lock at once: the persister queues snapshots from its own connection.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let cursor: Option<String> = tx
            .query_row(
                "SELECT value FROM agency_meta WHERE key = 'resync'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let Some(cursor) = cursor else {
            return Ok(false);
        };
        let after: Option<IpAddr> = cursor.parse().ok();
        let mut hosts: Vec<(IpAddr, Host)> = hosts
            .into_iter()
            .filter(|(ip, _)| after.is_none_or(|a| *ip > a))
            .collect();
        hosts.sort_by_key(|(ip, _)| *ip);
        let room = (who.backlog as u64).saturating_sub(state.pending.load(Ordering::Relaxed));
        let room = usize::try_from(room).unwrap_or(usize::MAX);
        if hosts.len() > room {
            hosts.truncate(room);
            let last = hosts.last().map(|(ip, _)| ip.to_string()).unwrap_or(cursor);
            queue(&tx, who, state, &hosts)?;
            tx.execute(
                "UPDATE agency_meta SET value = ?1 WHERE key = 'resync'",
                params![last],
            )?;
        } else {
            queue(&tx, who, state, &hosts)?;
            tx.execute("DELETE FROM agency_meta WHERE key = 'resync'", [])?;
        }
        tx.commit()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(count: u64) -> Host {
        let mut h = Host::default();
        h.detections.push(crate::hosts::Detection {
            vendor: "kaspersky".into(),
            category: "update".into(),
            severity: crate::detect::rules::Severity::High,
            first_seen: crate::time::Timestamp(1),
            last_seen: crate::time::Timestamp(2),
            count,
            forwarded: false,
            rules: Vec::new(),
            indicators: Vec::new(),
            evidence: Vec::new(),
            indicators_omitted: 0,
            suppressed: None,
            alerted_at: None,
            alerted: false,
        });
        h
    }

    #[test]
    fn newer_snapshots_replace_pending_ones_and_a_full_spool_asks_for_a_resync() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("inv.db");
        let (id, fresh) = prepare(&path).expect("prepare");
        assert!(fresh);
        assert_eq!(prepare(&path).expect("again"), (id, false));
        let state = Arc::new(SpoolState::default());
        let who = Who {
            site: "hq".into(),
            sensor_id: "s1".into(),
            backlog: 2,
        };
        let mut hook = hook(who.clone(), Arc::clone(&state));
        let mut conn = Connection::open(&path).expect("open");
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let c: IpAddr = "10.0.0.3".parse().expect("ip");
        for hosts in [
            vec![(a, host(1)), (b, host(1))],
            vec![(a, host(5))],
            vec![(c, host(1))],
        ] {
            let tx = conn.transaction().expect("tx");
            hook(&tx, &hosts).expect("hook");
            tx.commit().expect("commit");
        }
        let mut reader = SpoolReader::open(&path).expect("reader");
        let (rows, top) = reader.batch(10).expect("batch");
        let got: Vec<(IpAddr, u64)> = rows
            .iter()
            .map(|s| (s.ip, s.snapshot.detections[0].count))
            .collect();
        assert_eq!(got, [(b, 1), (a, 5)]);
        assert_eq!(state.dropped_full.load(Ordering::Relaxed), 1);
        assert_eq!(reader.shipped(top).expect("delete"), 2);
        assert_eq!(reader.pending().expect("pending").0, 0);
        state.pending.store(0, Ordering::Relaxed);
        // The resync queues every host again, two at a time (the backlog), in address order.
        let all = vec![(c, host(1)), (a, host(5)), (b, host(1))];
        assert!(reader.resync_step(&who, &state, all.clone()).expect("step"));
        let (rows, top) = reader.batch(10).expect("batch");
        assert_eq!(rows.iter().map(|s| s.ip).collect::<Vec<_>>(), [a, b]);
        reader.shipped(top).expect("delete");
        assert!(reader.resync_step(&who, &state, all.clone()).expect("step"));
        let (rows, top) = reader.batch(10).expect("batch");
        assert_eq!(rows.iter().map(|s| s.ip).collect::<Vec<_>>(), [c]);
        reader.shipped(top).expect("delete");
        assert!(!reader.resync_step(&who, &state, all).expect("done"));
    }
}
