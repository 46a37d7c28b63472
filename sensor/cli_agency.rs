//! The command line of the agency inventory: `--inventory postgres://…`, `--sensor-id` and
//! `--site` for `replay` and `live` (the spool and its shipper), and the agency views of
//! `hosts` and `report` (`--inventory postgres://…` with `--site` and `--sensor` filters).
//!
//! Kept apart from `cli.rs` so that the commands there change only where they start and end
//! the shipper and where `hosts`/`report` read the agency instead of a local file.

use crate::config::FileConfig;
use crate::hosts::agency::{self, AgencyConfig, AgencyHost};
use crate::hosts::postgres::{self as pg, AgencyReader, Filter};
use crate::hosts::ship::Shipper;
use crate::hosts::spool::{self, SpoolState};
use crate::hosts::HostTable;
use crate::time::Timestamp;
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `replay` and `live`: taking part in the agency inventory.
#[derive(Args, Debug, Clone, Default)]
pub struct AgencyArgs {
    /// Also ship the inventory to the agency's PostgreSQL, a libpq-style URL
    /// (postgres://USER@HOST:PORT/DB?sslmode=require; the password from the URL,
    /// --inventory-password-file or PGPASSWORD). Detections land in the local inventory
    /// (--state) first and are shipped from there; replay without --state uses a temporary one.
    #[arg(long, value_name = "postgres://...", env = "VENDORWATCH_INVENTORY")]
    pub inventory: Option<String>,
    /// A file whose first line is the password of the --inventory role.
    #[arg(long, value_name = "PATH")]
    pub inventory_password_file: Option<PathBuf>,
    /// A PEM root certificate to trust for TLS to the inventory server (a private CA).
    #[arg(long, value_name = "PEM")]
    pub inventory_ca: Option<PathBuf>,
    /// This sensor's name in the agency inventory and its metrics [default: the host name].
    #[arg(long, value_name = "ID")]
    pub sensor_id: Option<String>,
    /// The site this sensor watches: hosts are keyed by site and address [default: default].
    #[arg(long, value_name = "NAME")]
    pub site: Option<String>,
    /// Host snapshots the spool holds while the server is unreachable; beyond, new hosts
    /// wait for a resync (counted) [default: 200000].
    #[arg(long, value_name = "N")]
    pub inventory_backlog: Option<usize>,
    /// Host snapshots per shipped transaction [default: 500].
    #[arg(long, value_name = "N")]
    pub inventory_batch: Option<usize>,
    /// Seconds replay waits at the end for the spool to drain [default: 60].
    #[arg(long, value_name = "SECS")]
    pub inventory_wait: Option<u64>,
}

/// `hosts` and `report`: reading the agency inventory.
#[derive(Args, Debug, Clone, Default)]
pub struct AgencyQueryArgs {
    /// Read the agency inventory (PostgreSQL URL) instead of a local --state file.
    #[arg(long, value_name = "postgres://...", env = "VENDORWATCH_INVENTORY")]
    pub inventory: Option<String>,
    /// A file whose first line is the password of the --inventory role.
    #[arg(long, value_name = "PATH")]
    pub inventory_password_file: Option<PathBuf>,
    /// A PEM root certificate to trust for TLS to the inventory server.
    #[arg(long, value_name = "PEM")]
    pub inventory_ca: Option<PathBuf>,
    /// Only hosts of this site (with --inventory).
    #[arg(long, value_name = "NAME")]
    pub site: Option<String>,
    /// Only what this sensor saw (with --inventory).
    #[arg(long, value_name = "ID")]
    pub sensor: Option<String>,
    /// Create or migrate the agency schema first (once, as the database owner; sensors and
    /// analysts then need only the grants of deploy/postgres/roles.sql).
    #[arg(long, requires = "inventory")]
    pub create_schema: bool,
}

/// The validated agency settings of `replay`/`live`, and the state path to use (replay
/// without an inventory file gets a temporary spool).
pub fn agency_config(
    args: &AgencyArgs,
    file: &FileConfig,
    state: Option<PathBuf>,
) -> Result<(Option<AgencyConfig>, Option<PathBuf>, bool), String> {
    let Some(url) = args.inventory.clone().or_else(|| file.inventory.clone()) else {
        if args.sensor_id.is_some() || args.site.is_some() {
            // Harmless, but say it: the identity labels nothing without an agency inventory.
            eprintln!("vendorwatch: --sensor-id and --site label the agency inventory; without --inventory they are not used");
        }
        return Ok((None, state, false));
    };
    if !agency::is_postgres(&url) {
        return Err("--inventory takes a PostgreSQL URL: postgres://USER@HOST:PORT/DB (the local inventory is --state)".into());
    }
    let password_file = args
        .inventory_password_file
        .clone()
        .or_else(|| file.inventory_password_file.clone());
    let pg = agency::connection(&url, password_file.as_deref())?;
    let sensor_id = agency::check_label(
        "--sensor-id",
        &args
            .sensor_id
            .clone()
            .or_else(|| file.sensor_id.clone())
            .unwrap_or_else(agency::default_sensor_id),
    )?;
    let site = agency::check_label(
        "--site",
        &args
            .site
            .clone()
            .or_else(|| file.site.clone())
            .unwrap_or_else(|| "default".into()),
    )?;
    let backlog = args
        .inventory_backlog
        .or(file.inventory_backlog)
        .unwrap_or(agency::DEFAULT_BACKLOG);
    let batch = args
        .inventory_batch
        .or(file.inventory_batch)
        .unwrap_or(agency::DEFAULT_BATCH);
    if backlog == 0 || batch == 0 {
        return Err("--inventory-backlog and --inventory-batch must be at least 1".into());
    }
    let (state, temporary) = match state {
        Some(s) => (Some(s), false),
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            (
                Some(std::env::temp_dir().join(format!(
                    "vendorwatch-spool-{}-{nanos}.db",
                    std::process::id()
                ))),
                true,
            )
        }
    };
    Ok((
        Some(AgencyConfig {
            pg,
            ca: args
                .inventory_ca
                .clone()
                .or_else(|| file.inventory_ca.clone()),
            sensor_id,
            site,
            backlog,
            batch,
            wait_secs: args
                .inventory_wait
                .or(file.inventory_wait)
                .unwrap_or(agency::DEFAULT_REPLAY_WAIT_SECS),
        }),
        state,
        temporary,
    ))
}

/// Sets up the spool in the local inventory `path` (the store's save hook) and starts the
/// shipper. Hosts the inventory held before it was ever spooled are queued now.
pub fn start_shipping(
    cfg: &AgencyConfig,
    path: &Path,
    store: &mut crate::hosts::store::Store,
    hosts: &Arc<HostTable>,
) -> Result<Shipper, String> {
    let _ = crate::output::SENSOR_IDENTITY.set((cfg.sensor_id.clone(), cfg.site.clone()));
    let (inventory_id, fresh) = spool::prepare(path)?;
    let state = Arc::new(SpoolState::default());
    store.set_save_hook(Box::new(spool::hook(
        spool::Who {
            site: cfg.site.clone(),
            sensor_id: cfg.sensor_id.clone(),
            backlog: cfg.backlog,
        },
        Arc::clone(&state),
    )));
    if fresh {
        hosts.mark_dirty(hosts.snapshot().into_iter().map(|(ip, _)| ip));
    }
    Ok(Shipper::start(
        cfg,
        path,
        inventory_id,
        Arc::clone(hosts),
        state,
    )?)
}

/// Ships what is left (for `wait`), then says what could not be shipped; returns 1 when
/// something is still waiting, else 0. A temporary spool that drained is removed; one that
/// did not is kept and named.
pub fn finish_shipping(
    shipper: Shipper,
    wait: std::time::Duration,
    temporary: bool,
    quiet: bool,
) -> i32 {
    let path = shipper.spool_path.clone();
    let target = shipper.target.clone();
    let end = shipper.finish(wait);
    if end.turned_away > 0 {
        eprintln!(
            "vendorwatch: agency inventory {target}: the spool was full (--inventory-backlog) and turned {} host snapshot(s) away; they are queued again from the local inventory as the spool drains",
            end.turned_away
        );
    }
    if end.pending == 0 {
        if temporary {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(p));
            }
        }
        if !quiet {
            eprintln!(
                "vendorwatch: agency inventory {target}: {} host snapshot(s) shipped, none waiting",
                end.shipped
            );
        }
        return 0;
    }
    eprintln!(
        "vendorwatch: agency inventory {target}: {} host snapshot(s) shipped, {} still waiting ({}); they are kept in {} and shipped by the next run with --state {} --inventory …",
        end.shipped,
        end.pending,
        end.last_error.unwrap_or_else(|| "not reached in time".into()),
        path.display(),
        path.display()
    );
    1
}

fn reader(args: &AgencyQueryArgs, url: &str) -> Result<AgencyReader, String> {
    if !agency::is_postgres(url) {
        return Err("--inventory takes a PostgreSQL URL: postgres://USER@HOST:PORT/DB (a local inventory is --state)".into());
    }
    Ok(AgencyReader {
        pg: agency::connection(url, args.inventory_password_file.as_deref())?,
        ca: args.inventory_ca.clone(),
    })
}

/// The agency's hosts, merged, with only the detections that pass the filters.
pub fn load_agency(
    args: &AgencyQueryArgs,
    url: &str,
    vendor: Option<&str>,
    category: Option<&str>,
) -> Result<Vec<AgencyHost>, String> {
    let r = reader(args, url)?;
    if args.create_schema {
        let mut c = pg::connect(&r.pg, r.ca.as_deref()).map_err(|e| e.to_string())?;
        pg::migrate(&r.pg, &mut c).map_err(|e| e.to_string())?;
    }
    let filter = Filter {
        site: args.site.clone(),
        sensor: args.sensor.clone(),
        vendor: vendor.map(str::to_string),
        category: category.map(str::to_string),
    };
    let mut hosts = pg::load(&r, &filter).map_err(|e| e.to_string())?;
    for a in &mut hosts {
        a.host.detections.retain(|d| {
            vendor.is_none_or(|v| d.vendor == v) && category.is_none_or(|c| d.category == c)
        });
    }
    hosts.retain(|a| !a.host.detections.is_empty());
    Ok(hosts)
}

/// `vendorwatch hosts --inventory postgres://…`: the table, JSON or CSV of the agency.
pub fn print_hosts(
    w: &mut dyn std::io::Write,
    hosts: Vec<AgencyHost>,
    format: crate::cli::HostsFormat,
    since: Option<Timestamp>,
    stale_before: Option<Timestamp>,
) -> std::io::Result<()> {
    use crate::cli::HostsFormat;
    /// Output is written in pieces of about this size.
    const CHUNK: usize = 1 << 20;
    let hosts: Vec<AgencyHost> = hosts
        .into_iter()
        .map(|mut a| {
            a.host
                .detections
                .retain(|d| since.is_none_or(|s| d.last_seen >= s));
            a
        })
        .filter(|a| !a.host.detections.is_empty())
        .filter(|a| {
            stale_before.is_none_or(|cut| {
                a.host
                    .detections
                    .iter()
                    .map(|d| d.last_seen)
                    .max()
                    .is_some_and(|last| last < cut)
            })
        })
        .collect();
    // Quoted, and neutralised where a spreadsheet would read a formula, as `hosts` does.
    let field = crate::cli::csv_cell;
    let mut out = String::new();
    match format {
        HostsFormat::Json => {
            // Host by host: the whole report is never built as one JSON tree.
            let mut head = crate::output::agency_report_json(&[]);
            let all = hosts.iter().flat_map(|a| a.host.detections.iter());
            head["first_packet"] = serde_json::json!(all.clone().map(|d| d.first_seen).min());
            head["last_packet"] = serde_json::json!(all.clone().map(|d| d.last_seen).max());
            let mut vendors: Vec<&str> = all.map(|d| d.vendor.as_str()).collect();
            vendors.sort_unstable();
            vendors.dedup();
            head["vendors"] = serde_json::json!(vendors);
            let mut sites: Vec<&str> = hosts.iter().map(|a| a.site.as_str()).collect();
            sites.sort_unstable();
            sites.dedup();
            head["sites"] = serde_json::json!(sites);
            let text = serde_json::to_string_pretty(&head).unwrap_or_default();
            let (before, after) = text.split_once("\"hosts\": []").unwrap_or((&text, "}"));
            out.push_str(before);
            out.push_str("\"hosts\": [");
            for (i, a) in hosts.iter().enumerate() {
                let one = crate::output::agency_report_json(std::slice::from_ref(a));
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                out.push_str(&serde_json::to_string(&one["hosts"][0]).unwrap_or_default());
                if out.len() > CHUNK {
                    w.write_all(out.as_bytes())?;
                    out.clear();
                }
            }
            out.push_str("\n  ]");
            out.push_str(after);
            out.push('\n');
        }
        HostsFormat::Csv => {
            out.push_str("site,ip,mac,vendor,category,severity,first_seen,last_seen,count,forwarded,suppressed,hostname,sensors\n");
            for a in &hosts {
                let ip = a.ip.map(|i| i.to_string()).unwrap_or_default();
                let sensors = a.sensors.iter().cloned().collect::<Vec<_>>().join(" ");
                for d in &a.host.detections {
                    out.push_str(&format!(
                        "{},{ip},{},{},{},{},{},{},{},{},{},{},{}\n",
                        field(&a.site),
                        a.host.mac.map(|m| m.to_string()).unwrap_or_default(),
                        field(&d.vendor),
                        field(&d.category),
                        d.severity.as_str(),
                        d.first_seen,
                        d.last_seen,
                        d.count,
                        d.forwarded,
                        field(d.suppressed.as_deref().unwrap_or_default()),
                        field(a.host.identity.hostname.as_deref().unwrap_or_default()),
                        field(&sensors)
                    ));
                }
                if out.len() > CHUNK {
                    w.write_all(out.as_bytes())?;
                    out.clear();
                }
            }
        }
        HostsFormat::Table if hosts.is_empty() => out.push_str("no host matches\n"),
        HostsFormat::Table => {
            out.push_str(&format!(
                "{:<12} {:<30} {:<10} {:<18} {:<8} {:<28} {:<28} {:>7}  SENSORS\n",
                "SITE",
                "HOST",
                "VENDOR",
                "CATEGORY",
                "SEVERITY",
                "FIRST SEEN",
                "LAST SEEN",
                "COUNT"
            ));
            for a in &hosts {
                let ip = a.ip.map(|i| i.to_string()).unwrap_or_default();
                let sensors = a.sensors.iter().cloned().collect::<Vec<_>>().join(",");
                for d in &a.host.detections {
                    out.push_str(&format!(
                        "{:<12} {:<30} {:<10} {:<18} {:<8} {:<28} {:<28} {:>7}  {sensors}\n",
                        a.site,
                        ip,
                        d.vendor,
                        d.category,
                        d.severity.as_str(),
                        d.first_seen.to_string(),
                        d.last_seen.to_string(),
                        d.count
                    ));
                }
                if out.len() > CHUNK {
                    w.write_all(out.as_bytes())?;
                    out.clear();
                }
            }
        }
    }
    w.write_all(out.as_bytes())?;
    w.flush()
}

/// The agency's host report for `report --html` (the `--report` format with `site` and
/// `sensors` per host).
pub fn agency_report(args: &AgencyQueryArgs, url: &str) -> Result<serde_json::Value, String> {
    Ok(crate::output::agency_report_json(&load_agency(
        args, url, None, None,
    )?))
}
