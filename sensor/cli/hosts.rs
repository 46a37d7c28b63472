//! `vendorwatch hosts`: the host inventory (`--state`, or the agency's with `--inventory`)
//! as a table, JSON or CSV, filtered by vendor, category, time and staleness.

use super::exit;
use crate::output;
use crate::time::Timestamp;
use clap::Args;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct HostsArgs {
    /// The inventory to read.
    #[arg(long, value_name = "PATH", env = "VENDORWATCH_STATE", default_value = super::DEFAULT_REPLAY_STATE)]
    pub state: PathBuf,
    #[arg(long, value_enum, default_value_t = HostsFormat::Table)]
    pub format: HostsFormat,
    /// Only detections of this vendor.
    #[arg(long, value_name = "VENDOR")]
    pub vendor: Option<String>,
    /// Only detections of this category.
    #[arg(long, value_name = "CATEGORY")]
    pub category: Option<String>,
    /// Only detections seen since this time (YYYY-MM-DD or RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only hosts not seen for at least this many days (cleaned up, or just quiet).
    #[arg(long, value_name = "DAYS")]
    pub stale: Option<u64>,
    /// "Now" for --stale (YYYY-MM-DD or RFC 3339) [default: the current time].
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    #[command(flatten)]
    pub agency: super::agency::AgencyQueryArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostsFormat {
    Table,
    Json,
    Csv,
}

type Hosts = Vec<(IpAddr, crate::hosts::Host)>;

/// What the inventory holds: its hosts and its resolvers.
pub struct Inventory {
    pub hosts: Hosts,
    pub resolvers: Vec<(IpAddr, crate::detect::resolvers::ResolverInfo)>,
}

/// Reads the inventory at `path`, or says what to do when there is none.
pub fn load_inventory(path: &Path) -> Result<Inventory, String> {
    if path == Path::new("none") {
        return Err("--state none names no inventory to read: give the --state PATH an earlier `vendorwatch replay` or `live` wrote (`report` can also render a host report: --from HOSTS.json)".into());
    }
    if !path.exists() {
        let shown = crate::operator_input::shown(path);
        return Err(format!(
            "no inventory at {shown} (run `vendorwatch replay` or `live` with --state {shown} first, or name it with --state PATH)"
        ));
    }
    let store = crate::hosts::store::Store::open_read_only(path)?;
    Ok(Inventory {
        hosts: store.load()?,
        resolvers: store.load_resolvers()?,
    })
}

/// An RFC 3339 time.
pub fn parse_time(text: &str) -> Option<Timestamp> {
    Timestamp::parse_rfc3339(text).ok()
}

/// The current time.
pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// `days` before `now`.
fn days_before(now: Timestamp, days: u64) -> Timestamp {
    Timestamp(
        now.0.saturating_sub(
            i64::try_from(days.saturating_mul(86_400))
                .unwrap_or(i64::MAX)
                .saturating_mul(1_000_000_000),
        ),
    )
}

/// `--since` and `--now`, read.
fn times(args: &HostsArgs) -> Result<(Option<Timestamp>, Timestamp), String> {
    let time_arg = |flag: &str, v: &Option<String>| -> Result<Option<Timestamp>, String> {
        match v {
            None => Ok(None),
            Some(t) => Timestamp::parse_day_or_rfc3339(t)
                .map(Some)
                .ok_or_else(|| format!("{flag} {t:?} is not YYYY-MM-DD or an RFC 3339 time")),
        }
    };
    let since = time_arg("--since", &args.since)?;
    let now = time_arg("--now", &args.now)?.unwrap_or_else(now);
    Ok((since, now))
}

/// Runs `hosts`; returns the exit code.
pub fn run(args: HostsArgs) -> i32 {
    match hosts(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vendorwatch: {e}");
            exit::UNUSABLE
        }
    }
}

fn hosts(args: &HostsArgs) -> Result<i32, String> {
    let agency = match &args.agency.inventory {
        Some(url) => Some(super::agency::load_agency(
            &args.agency,
            url,
            args.vendor.as_deref(),
            args.category.as_deref(),
        )?),
        None => None,
    };
    let loaded = match agency {
        Some(_) => Inventory {
            hosts: Vec::new(),
            resolvers: Vec::new(),
        },
        None => load_inventory(&args.state)?,
    };
    let (since, now) = times(args)?;
    check_filters(args, &loaded.hosts)?;
    if let Some(agency) = agency {
        let stale = args.stale.map(|days| days_before(now, days));
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        // A closed pipe (`| head`) is not an error.
        let _ = super::agency::print_hosts(&mut out, agency, args.format, since, stale);
        return Ok(exit::OK);
    }
    let mut hosts: Hosts = loaded
        .hosts
        .into_iter()
        .map(|(ip, mut h)| {
            h.detections.retain(|d| {
                args.vendor.as_ref().is_none_or(|v| &d.vendor == v)
                    && args.category.as_ref().is_none_or(|c| &d.category == c)
                    && since.is_none_or(|s| d.last_seen >= s)
            });
            (ip, h)
        })
        .filter(|(_, h)| !h.detections.is_empty())
        .collect();
    if let Some(days) = args.stale {
        let cutoff = days_before(now, days);
        hosts.retain(|(_, h)| {
            h.detections
                .iter()
                .map(|d| d.last_seen)
                .max()
                .is_some_and(|last| last < cutoff)
        });
    }
    print(args.format, &hosts, loaded.resolvers);
    Ok(exit::OK)
}

/// Writes the hosts to stdout in `format`.
fn print(
    format: HostsFormat,
    hosts: &Hosts,
    resolver_roles: Vec<(IpAddr, crate::detect::resolvers::ResolverInfo)>,
) {
    match format {
        HostsFormat::Json => {
            // The role the inventory remembers (a resolver's forwarded lookups read as such).
            let resolvers: Vec<IpAddr> = resolver_roles.iter().map(|(ip, _)| *ip).collect();
            let meta = output::ReportMeta {
                resolver_roles,
                ..output::ReportMeta::default()
            };
            let report = output::report(hosts, &resolvers, &meta);
            outln!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        }
        HostsFormat::Csv => print_csv(hosts),
        HostsFormat::Table if hosts.is_empty() => outln!("no host matches"),
        HostsFormat::Table => {
            use std::io::Write as _;
            let _ = std::io::stdout()
                .lock()
                .write_all(output::summary::host_table(hosts).as_bytes());
        }
    }
}

fn print_csv(hosts: &Hosts) {
    outln!(
        "ip,mac,vendor,category,severity,first_seen,last_seen,count,forwarded,suppressed,hostname"
    );
    for (ip, h) in hosts {
        for d in &h.detections {
            outln!("{ip},{}", detection_cells(h, d));
        }
    }
}

/// The CSV cells of one detection of a host, from `mac` to `hostname` (the columns `hosts`
/// and the agency view share).
pub fn detection_cells(host: &crate::hosts::Host, d: &crate::hosts::Detection) -> String {
    let field = csv_cell;
    format!(
        "{},{},{},{},{},{},{},{},{},{}",
        host.mac.map(|m| m.to_string()).unwrap_or_default(),
        field(&d.vendor),
        field(&d.category),
        d.severity.as_str(),
        d.first_seen,
        d.last_seen,
        d.count,
        d.forwarded,
        field(d.suppressed.as_deref().unwrap_or_default()),
        field(host.identity.hostname.as_deref().unwrap_or_default())
    )
}

/// One CSV cell (RFC 4180 quoting). A cell that a spreadsheet would read as a formula (it
/// starts with `=`, `+`, `-`, `@`, a tab or a carriage return: a DHCP host name of
/// `=HYPERLINK(…)`, say) gets a leading `'` and is quoted, OWASP's rule against CSV injection.
pub fn csv_cell(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if formula {
        format!("\"'{}\"", s.replace('"', "\"\""))
    } else if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `hosts --vendor V` and `--category C` must name a vendor or category that exists (in the
/// embedded rule packs or in the inventory), as `--vendors` must: a typo is an error, not a
/// clean result.
fn check_filters(args: &HostsArgs, loaded: &[(IpAddr, crate::hosts::Host)]) -> Result<(), String> {
    let packs = crate::detect::rules::load_embedded().unwrap_or_default();
    let detections = || loaded.iter().flat_map(|(_, h)| h.detections.iter());
    let mut vendors: std::collections::BTreeSet<&str> =
        packs.packs.iter().map(|p| p.vendor.as_str()).collect();
    vendors.extend(detections().map(|d| d.vendor.as_str()));
    let mut categories: std::collections::BTreeSet<&str> =
        packs.rules.iter().map(|r| r.category.as_str()).collect();
    categories.extend(detections().map(|d| d.category.as_str()));
    let list =
        |set: &std::collections::BTreeSet<&str>| set.iter().copied().collect::<Vec<_>>().join(", ");
    if let Some(v) = &args.vendor {
        if !vendors.contains(v.as_str()) {
            return Err(format!(
                "--vendor {v:?}: no rule pack or inventory entry has this vendor (vendors: {})",
                list(&vendors)
            ));
        }
    }
    if let Some(c) = &args.category {
        if !categories.contains(c.as_str()) {
            return Err(format!(
                "--category {c:?}: no rule or inventory entry has this category (categories: {})",
                list(&categories)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_that_start_like_a_formula_are_neutralised() {
        assert_eq!(csv_cell("ws-alice.lab"), "ws-alice.lab");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("=1+1"), "\"'=1+1\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        for lead in ["+", "-", "@", "\t", "\r"] {
            assert_eq!(csv_cell(&format!("{lead}cmd")), format!("\"'{lead}cmd\""));
        }
        assert_eq!(csv_cell("x=1"), "x=1", "only the first character counts");
    }
}
