//! The agency inventory at the command layer: starting and finishing the shipper of
//! `replay` and `live` (their `--inventory` settings are `config::Settings`), and the agency
//! views of `hosts` and `report` (`--inventory postgres://…` with `--site` and `--sensor`).

use crate::hosts::agency::{self, AgencyConfig, AgencyHost};
use crate::hosts::postgres::{self as pg, AgencyReader, Filter};
use crate::hosts::ship::Shipper;
use crate::hosts::spool::{self, SpoolState};
use crate::hosts::HostTable;
use crate::time::Timestamp;
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
        tracing::warn!(
            "agency inventory {target}: the spool was full (--inventory-backlog) and turned {} host snapshot(s) away; they are queued again from the local inventory as the spool drains",
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
            tracing::info!(
                "agency inventory {target}: {} host snapshot(s) shipped, none waiting",
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
    format: super::hosts::HostsFormat,
    since: Option<Timestamp>,
    stale_before: Option<Timestamp>,
) -> std::io::Result<()> {
    use super::hosts::HostsFormat;
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
    let mut out = String::new();
    match format {
        HostsFormat::Json => json(w, &mut out, &hosts)?,
        HostsFormat::Csv => csv(w, &mut out, &hosts)?,
        HostsFormat::Table if hosts.is_empty() => out.push_str("no host matches\n"),
        HostsFormat::Table => table(w, &mut out, &hosts)?,
    }
    w.write_all(out.as_bytes())?;
    w.flush()
}

/// Output is written in pieces of about this size.
const CHUNK: usize = 1 << 20;

/// Writes `out` once it holds a piece's worth.
fn spill(w: &mut dyn std::io::Write, out: &mut String) -> std::io::Result<()> {
    if out.len() > CHUNK {
        w.write_all(out.as_bytes())?;
        out.clear();
    }
    Ok(())
}

/// Host by host: the whole report is never built as one JSON tree.
fn json(w: &mut dyn std::io::Write, out: &mut String, hosts: &[AgencyHost]) -> std::io::Result<()> {
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
        spill(w, out)?;
    }
    out.push_str("\n  ]");
    out.push_str(after);
    out.push('\n');
    Ok(())
}

fn csv(w: &mut dyn std::io::Write, out: &mut String, hosts: &[AgencyHost]) -> std::io::Result<()> {
    // Quoted, and neutralised where a spreadsheet would read a formula, as `hosts` does.
    let field = super::hosts::csv_cell;
    out.push_str("site,ip,mac,vendor,category,severity,first_seen,last_seen,count,forwarded,suppressed,hostname,sensors\n");
    for a in hosts {
        let ip = a.ip.map(|i| i.to_string()).unwrap_or_default();
        let sensors = a.sensors.iter().cloned().collect::<Vec<_>>().join(" ");
        for d in &a.host.detections {
            out.push_str(&format!(
                "{},{ip},{},{}\n",
                field(&a.site),
                super::hosts::detection_cells(&a.host, d),
                field(&sensors)
            ));
        }
        spill(w, out)?;
    }
    Ok(())
}

fn table(
    w: &mut dyn std::io::Write,
    out: &mut String,
    hosts: &[AgencyHost],
) -> std::io::Result<()> {
    out.push_str(&format!(
        "{:<12} {:<30} {:<10} {:<18} {:<8} {:<28} {:<28} {:>7}  SENSORS\n",
        "SITE", "HOST", "VENDOR", "CATEGORY", "SEVERITY", "FIRST SEEN", "LAST SEEN", "COUNT"
    ));
    for a in hosts {
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
        spill(w, out)?;
    }
    Ok(())
}

/// The agency's host report for `report --html` (the `--report` format with `site` and
/// `sensors` per host).
pub fn agency_report(args: &AgencyQueryArgs, url: &str) -> Result<serde_json::Value, String> {
    Ok(crate::output::agency_report_json(&load_agency(
        args, url, None, None,
    )?))
}
