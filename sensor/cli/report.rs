//! `vendorwatch report`: the compliance report, a self-contained HTML page, of the inventory,
//! of a host report (`--from`), or of the agency inventory (`--inventory`).

use super::exit;
use super::hosts::{load_inventory, parse_time, Inventory};
use crate::output;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Where to write the HTML page (- for stdout).
    #[arg(long, value_name = "PATH|-")]
    pub html: PathBuf,
    /// Render this host report (`--report` of `replay` or `live`, or `/api/hosts`) instead of
    /// the inventory.
    #[arg(long, value_name = "HOSTS.json")]
    pub from: Option<PathBuf>,
    /// The inventory to render (the `--state` of earlier runs).
    #[arg(long, value_name = "PATH", env = "VENDORWATCH_STATE", default_value = super::DEFAULT_REPLAY_STATE)]
    pub state: PathBuf,
    /// Hosts not seen for this many days are listed as gone quiet.
    #[arg(long, value_name = "DAYS", default_value_t = 7)]
    pub stale_days: u64,
    /// The report's "now" (YYYY-MM-DD or RFC 3339) [default: the report's last packet, else the current time].
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    #[command(flatten)]
    pub agency: super::agency::AgencyQueryArgs,
}

/// The host report of the inventory: what `--report` would have written for these hosts.
fn inventory_report(inv: &Inventory) -> serde_json::Value {
    let hosts = &inv.hosts;
    let seen = hosts.iter().flat_map(|(_, h)| h.detections.iter());
    let vendors = {
        let mut v: Vec<String> = seen.clone().map(|d| d.vendor.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    // The inventory keeps no rules: the legal basis of each vendor comes from the shipped packs.
    let packs: Vec<crate::detect::rules::Pack> = crate::detect::rules::load_embedded()
        .map(|l| l.packs)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| vendors.contains(&p.vendor))
        .collect();
    let meta = output::ReportMeta {
        first_packet: seen.clone().map(|d| d.first_seen).min(),
        last_packet: seen.map(|d| d.last_seen).max(),
        vendors,
        packs,
        resolver_roles: inv.resolvers.clone(),
        known_before: None,
    };
    let resolvers: Vec<std::net::IpAddr> = inv.resolvers.iter().map(|(ip, _)| *ip).collect();
    output::report_json(hosts, &resolvers, &meta)
}

/// The host report to render, as JSON.
fn source_report(args: &ReportArgs) -> Result<serde_json::Value, String> {
    if let Some(from) = &args.from {
        let text = crate::operator_input::read_bytes(
            from,
            crate::operator_input::MAX_HOST_REPORT,
            "a host report",
        )
        .map_err(|e| format!("host report {}: {e}", crate::operator_input::shown(from)))?;
        return serde_json::from_slice(&text).map_err(|e| {
            format!(
                "{} is not a host report (JSON from `--report` or /api/hosts): {e}",
                from.display()
            )
        });
    }
    if let Some(url) = args.agency.inventory.as_deref() {
        return super::agency::agency_report(&args.agency, url);
    }
    load_inventory(&args.state).map(|inv| inventory_report(&inv))
}

/// Runs `report`; returns the exit code.
pub fn run(args: ReportArgs) -> i32 {
    let source = match &args.from {
        Some(from) => format!("the host report {}", from.display()),
        None => format!("the inventory {}", args.state.display()),
    };
    // Before anything is read: the page must not be written over what it is made from.
    let inputs: Vec<(&str, &std::path::Path)> = match &args.from {
        Some(from) => vec![("the host report", from.as_path())],
        None => vec![("the inventory", args.state.as_path())],
    };
    if let Err(e) = crate::config::refuse_overwrite("--html", &args.html, &inputs) {
        eprintln!("vendorwatch: {e}");
        return exit::UNUSABLE;
    }
    let report = match source_report(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vendorwatch: {e}");
            return exit::UNUSABLE;
        }
    };
    let now = match &args.now {
        Some(t) => match crate::time::Timestamp::parse_day_or_rfc3339(t) {
            Some(ts) => ts,
            None => {
                eprintln!("vendorwatch: --now {t:?} is not YYYY-MM-DD or an RFC 3339 time such as 2026-11-27T10:00:00Z");
                return exit::UNUSABLE;
            }
        },
        None => report["last_packet"]
            .as_str()
            .and_then(parse_time)
            .unwrap_or_else(super::hosts::now),
    };
    let html = output::html::render_from(&report, now, args.stale_days, &source);
    // `create_output` takes `-` (and /dev/stdout) as the stream it is, as every output does.
    let written = output::create_output(&args.html)
        .and_then(|mut f| std::io::Write::write_all(&mut f, html.as_bytes()));
    if let Err(e) = written {
        eprintln!("vendorwatch: cannot write {}: {e}", args.html.display());
        return exit::PARTIAL;
    }
    exit::OK
}
