//! The compliance report as one self-contained HTML page, built from the host report
//! (`schema::Report`): for a SOC manager who prints it or opens it on a machine without network
//! access. Inline CSS and inline SVG only: no scripts, fonts, images or links outside the page.
//!
//! The page takes the report as the schema reads it, tolerantly: members may be absent (older
//! or newer reports, hand-made files) and every string in it may come from the wire, so every
//! value is HTML-escaped.

use super::schema::{
    Label, Report, ReportDetection, ReportEvidence, ReportHost, ReportIdentity, Role, VendorEntry,
};
use crate::detect::rules::Severity;
use crate::extract::{IdentitySource, NameKind};
use crate::time::Timestamp;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

const NANOS_PER_SEC: i64 = 1_000_000_000;
const NANOS_PER_DAY: i64 = 86_400 * NANOS_PER_SEC;
/// Days the timeline shows at most (the latest ones); a longer span is noted under the chart.
pub const MAX_TIMELINE_DAYS: usize = 1096;

/// Text as HTML: safe in element content and in quoted attribute values. Control characters
/// and bidirectional overrides (which could make a hostile name read as something else) are
/// shown as visible `\u{…}` escapes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control()
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c)
                || c == '\u{200e}'
                || c == '\u{200f}'
                || c == '\u{061c}' =>
            {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as display text: strings as they are, null as empty, anything else as JSON
/// (the members of an indicator this build does not know).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A non-empty text, or `None`.
fn non_empty<S: AsRef<str>>(s: Option<S>) -> Option<String> {
    s.map(|s| s.as_ref().to_string()).filter(|s| !s.is_empty())
}

/// The non-empty texts of a list.
fn texts(list: &[String]) -> Vec<String> {
    list.iter().filter(|s| !s.is_empty()).cloned().collect()
}

/// The UTC day (days since 1970-01-01) a timestamp falls in.
pub fn day_of(ts: Timestamp) -> i64 {
    ts.0.div_euclid(NANOS_PER_DAY)
}

/// `2026-11-27` for a day number.
pub fn day_label(day: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(day.saturating_mul(86_400)) {
        Ok(dt) => format!(
            "{:04}-{:02}-{:02}",
            dt.year(),
            u8::from(dt.month()),
            dt.day()
        ),
        Err(_) => format!("day {day}"),
    }
}

/// `2026-11-27 23:55:59` (UTC; the page says so once).
fn fmt_ts(ts: Option<Timestamp>) -> String {
    let Some(ts) = ts else {
        return "unknown".into();
    };
    match time::OffsetDateTime::from_unix_timestamp(ts.secs()) {
        Ok(dt) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        ),
        Err(_) => "unknown".into(),
    }
}

/// A short human duration: `45 s`, `12 min`, `5 h`, `3 d`.
fn human_duration(nanos: i64) -> String {
    let secs = nanos.max(0) / NANOS_PER_SEC;
    if secs < 120 {
        format!("{secs} s")
    } else if secs < 2 * 3600 {
        format!("{} min", secs / 60)
    } else if secs < 2 * 86_400 {
        format!("{} h", secs / 3600)
    } else {
        format!("{} d", secs / 86_400)
    }
}

/// Whether a host is still active or has gone quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Last seen within `stale_days` of now (or later than now).
    Active,
    /// Last seen longer ago than that, or never with a readable time.
    Quiet,
}

/// Active when `last_seen` is no more than `stale_days` days before `now`.
pub fn classify(last_seen: Option<Timestamp>, now: Timestamp, stale_days: u64) -> Activity {
    let Some(last) = last_seen else {
        return Activity::Quiet;
    };
    let window = i64::try_from(stale_days)
        .unwrap_or(i64::MAX)
        .saturating_mul(NANOS_PER_DAY);
    if last.0 >= now.0.saturating_sub(window) {
        Activity::Active
    } else {
        Activity::Quiet
    }
}

/// For each day from `first_day` to `last_day` (inclusive), how many hosts have a span
/// `[first_seen, last_seen]` that touches it. `hosts[i]` holds the spans of host `i`; a host
/// counts at most once per day however many of its spans touch it.
pub fn hosts_per_day(
    hosts: &[Vec<(Timestamp, Timestamp)>],
    first_day: i64,
    last_day: i64,
) -> Vec<u32> {
    if last_day < first_day {
        return Vec::new();
    }
    let n = usize::try_from(last_day - first_day + 1).unwrap_or(0);
    let mut counts = vec![0u32; n];
    let mut last_host = vec![usize::MAX; n];
    for (h, spans) in hosts.iter().enumerate() {
        for &(a, b) in spans {
            let (a, b) = if a <= b { (a, b) } else { (b, a) };
            let from = day_of(a).max(first_day);
            let to = day_of(b).min(last_day);
            let mut d = from;
            while d <= to {
                // d - first_day is in 0..n here.
                let i = (d - first_day) as usize;
                if last_host[i] != h {
                    last_host[i] = h;
                    counts[i] += 1;
                }
                d += 1;
            }
        }
    }
    counts
}

/// A detection's severity as the report gives it: a known one, a word this build does not
/// know, or none.
type Rating<'a> = Option<&'a Label<Severity>>;

/// Severities in the order they rank (`Severity`'s own); a word this build does not know, or
/// none, ranks below them all.
fn severity_rank(s: Rating<'_>) -> Option<Severity> {
    s.and_then(Label::known)
}

/// The severity as text ("" when there is none).
fn severity_text(s: Rating<'_>) -> &str {
    s.map_or("", Label::as_str)
}

/// Highest first.
const SEVERITIES: [Severity; 5] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
    Severity::Info,
];

/// CSS class suffix for a severity (only known values, so nothing from the JSON reaches CSS).
fn severity_class(s: Rating<'_>) -> &'static str {
    severity_rank(s).map_or("unknown", Severity::as_str)
}

/// How the page names a kind of indicator ("" for one it has no words for).
fn kind_label(kind: Option<&Label<NameKind>>) -> &'static str {
    match kind.and_then(Label::known) {
        Some(NameKind::Dns) => "DNS lookup",
        Some(NameKind::TlsSni) => "TLS server name",
        Some(NameKind::QuicSni) => "QUIC server name",
        Some(NameKind::HttpHost) => "HTTP Host",
        Some(NameKind::HttpConnect) => "HTTP CONNECT",
        Some(NameKind::TlsCert) => "TLS certificate",
        Some(NameKind::Ip) => "IP address",
        Some(NameKind::Port) => "Port",
        Some(NameKind::Ja4) => "JA4 fingerprint",
        Some(NameKind::UserAgent) => "HTTP User-Agent",
        Some(NameKind::Fingerprint) | None => "",
    }
}

/// The kind of an indicator as text ("" when there is none).
fn kind_text(kind: Option<&Label<NameKind>>) -> &str {
    kind.map_or("", Label::as_str)
}

/// One detection (host × vendor × category) as read from the report.
struct Det<'a> {
    vendor: String,
    category: String,
    severity: Rating<'a>,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    count: u64,
    forwarded: bool,
    raw: &'a ReportDetection,
}

/// One host as read from the report.
struct HostRow<'a> {
    idx: usize,
    ip: String,
    mac: Option<String>,
    hostname: Option<String>,
    role: String,
    dets: Vec<Det<'a>>,
    ech: u64,
    enc_dns: u64,
    via: Vec<String>,
    /// DHCP / PTR identities of the address, as the report lists them.
    identities: &'a [ReportIdentity],
    /// The address was seen with more than one MAC (it moved between machines).
    multiple_macs: bool,
    /// A forward proxy: the clients whose proxied requests for a vendor name reached this
    /// host, which then asked for the same name itself (see `mark_proxies`).
    proxy_for: Vec<String>,
    /// The agency report (`--inventory`): the sensors that saw the host.
    sensors: Vec<String>,
}

impl HostRow<'_> {
    /// Detections of the host's own software (not a resolver's forwarded lookups).
    fn own(&self) -> impl Iterator<Item = &Det<'_>> {
        self.dets.iter().filter(|d| !d.forwarded)
    }
    fn detected(&self) -> bool {
        self.own().next().is_some()
    }
    fn forwarded_only(&self) -> bool {
        !self.dets.is_empty() && !self.detected()
    }
    fn hides(&self) -> bool {
        self.ech > 0 || self.enc_dns > 0
    }
    fn first_seen(&self) -> Option<Timestamp> {
        self.own().filter_map(|d| d.first).min()
    }
    fn last_seen(&self) -> Option<Timestamp> {
        self.own().filter_map(|d| d.last).max()
    }
    fn findings(&self) -> u64 {
        self.own().map(|d| d.count).sum()
    }
    fn max_severity(&self) -> Rating<'_> {
        self.own()
            .map(|d| d.severity)
            .max_by_key(|s| severity_rank(*s))
            .flatten()
    }
    /// `vendor: cat1, cat2` per vendor, own detections only.
    fn vendor_categories(&self) -> Vec<(String, Vec<String>)> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for d in self.own() {
            m.entry(d.vendor.clone())
                .or_default()
                .push(d.category.clone());
        }
        m.into_iter().collect()
    }
}

fn read_host(idx: usize, h: &ReportHost) -> HostRow<'_> {
    let dets = h
        .detections
        .iter()
        .map(|d| Det {
            vendor: non_empty(Some(&d.vendor)).unwrap_or_else(|| "unknown".into()),
            category: non_empty(Some(&d.category)).unwrap_or_else(|| "unknown".into()),
            severity: d.severity.as_ref(),
            first: d.first_seen,
            last: d.last_seen,
            count: d.count,
            forwarded: d.forwarded,
            raw: d,
        })
        .collect();
    let hidden = &h.names_hidden;
    HostRow {
        idx,
        // The agency report keys hosts by site and address: the site goes with it.
        ip: match (h.ip, non_empty(h.site.as_deref())) {
            (Some(ip), Some(site)) => format!("{ip} ({site})"),
            (ip, _) => ip.map_or_else(|| "unknown".into(), |ip| ip.to_string()),
        },
        mac: h.mac.map(|m| m.to_string()),
        hostname: non_empty(h.hostname.as_deref()),
        role: non_empty(h.role.as_ref().map(Label::as_str)).unwrap_or_else(|| "client".into()),
        dets,
        ech: hidden.ech_connections,
        enc_dns: hidden.encrypted_dns_connections,
        via: texts(&hidden.encrypted_dns_via),
        identities: &h.identities,
        multiple_macs: h.multiple_macs,
        proxy_for: Vec::new(),
        sensors: h.sensors.as_deref().map(texts).unwrap_or_default(),
    }
}

fn read_hosts(report: &Report) -> Vec<HostRow<'_>> {
    report
        .hosts
        .iter()
        .flatten()
        .enumerate()
        .map(|(idx, h)| read_host(idx, h))
        .collect()
}

/// An active vendor pack and its legal basis, when the report carries one.
struct VendorInfo {
    id: String,
    name: Option<String>,
    legal_basis: Vec<String>,
}

/// The vendors list: plain ids (`["kaspersky"]`) or packs (`{"vendor", "name",
/// "legal_basis"}`), plus a hand-made report's `legal_basis` map (vendor → text or list).
fn read_vendors(report: &Report) -> Option<Vec<VendorInfo>> {
    let mut out: Vec<VendorInfo> = Vec::new();
    let mut seen = false;
    for list in [&report.vendors, &report.packs, &report.rule_packs] {
        let Some(list) = list else {
            continue;
        };
        seen = true;
        for v in list {
            let (id, name, basis) = match v {
                VendorEntry::Pack(p) => {
                    let id = [&p.vendor, &p.id, &p.name]
                        .into_iter()
                        .find_map(|k| non_empty(k.as_deref()));
                    let name = non_empty(p.name.as_deref()).filter(|n| Some(n) != id.as_ref());
                    (id, name, texts(&p.legal_basis))
                }
                VendorEntry::Id(id) => (non_empty(Some(id)), None, Vec::new()),
            };
            let Some(id) = id else { continue };
            match out.iter_mut().find(|x| x.id == id) {
                Some(x) => {
                    if x.name.is_none() {
                        x.name = name;
                    }
                    for b in basis {
                        if !x.legal_basis.contains(&b) {
                            x.legal_basis.push(b);
                        }
                    }
                }
                None => out.push(VendorInfo {
                    id,
                    name,
                    legal_basis: basis,
                }),
            }
        }
    }
    if let Some(map) = &report.legal_basis {
        for (vendor, basis) in map {
            let basis = texts(&basis.0);
            match out.iter_mut().find(|x| &x.id == vendor) {
                Some(x) => {
                    for b in basis {
                        if !x.legal_basis.contains(&b) {
                            x.legal_basis.push(b);
                        }
                    }
                }
                None if seen => {}
                None => out.push(VendorInfo {
                    id: vendor.clone(),
                    name: None,
                    legal_basis: basis,
                }),
            }
        }
        seen = true;
    }
    seen.then_some(out)
}

const CSS: &str = r#"
:root { --ink:#1f2328; --muted:#59636e; --line:#d1d9e0; --soft:#f6f8fa; --accent:#0b3d91;
  --crit:#7a0916; --high:#c62828; --med:#d9731a; --low:#b58b00; --info:#6e7781; --ok:#1a7f37; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Liberation Sans", "DejaVu Sans", Arial, sans-serif; }
main { max-width: 1160px; margin: 0 auto; padding: 28px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 2px; color: var(--accent); }
h2 { font-size: 19px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--accent); color: var(--accent); }
h3 { font-size: 16px; margin: 0; }
p { margin: 6px 0; }
.subtitle { color: var(--muted); margin: 0 0 18px; font-size: 15px; }
.mono, code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", "DejaVu Sans Mono", monospace; font-size: 12.5px; }
code { background: var(--soft); border: 1px solid #e4e8ec; border-radius: 3px; padding: 0 3px; overflow-wrap: anywhere; }
.muted { color: var(--muted); }
.small { font-size: 12px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; padding: 12px 16px;
  background: var(--soft); border: 1px solid var(--line); border-radius: 6px; }
dl.meta dt { font-weight: 600; color: var(--muted); }
dl.meta dd { margin: 0; }
dl.meta ul { margin: 2px 0 0; padding-left: 18px; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin: 14px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px; background: #fff; }
.card .num { font-size: 32px; font-weight: 700; line-height: 1.1; }
.card .lbl { color: var(--muted); font-size: 13px; }
.card.alert { border-left: 5px solid var(--high); }
.card.alert .num { color: var(--high); }
.card.warn { border-left: 5px solid var(--med); }
.card.quiet { border-left: 5px solid var(--info); }
.card.hide { border-left: 5px solid var(--accent); }
.split { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.bars { width: 100%; border-collapse: collapse; }
.bars td { padding: 3px 6px; border: 0; vertical-align: middle; }
.bars td.k { width: 34%; white-space: nowrap; }
.bars td.v { width: 10%; text-align: right; font-weight: 600; }
.bar { height: 12px; border-radius: 2px; background: var(--accent); min-width: 2px; }
.bar.sev-critical { background: var(--crit); } .bar.sev-high { background: var(--high); }
.bar.sev-medium { background: var(--med); } .bar.sev-low { background: var(--low); }
.bar.sev-info, .bar.sev-unknown { background: var(--info); }
.bars .bar.zero { background: transparent; }
.panel { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.panel h3 { font-size: 14px; margin-bottom: 6px; color: var(--muted); }
table.data { width: 100%; border-collapse: collapse; margin: 8px 0; font-size: 13px; }
table.data th, table.data td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
table.data th { background: var(--soft); font-weight: 600; white-space: nowrap; border-top: 1px solid var(--line); }
table.data td.n, table.data th.n { text-align: right; white-space: nowrap; }
table.data td.t { white-space: nowrap; }
table.data tr.vendor-row td { font-weight: 600; background: #eef3fb; }
table.data tr.vendor-row td.cat { font-weight: 400; color: var(--muted); }
table.data td.val { overflow-wrap: anywhere; word-break: break-word; }
thead { display: table-header-group; }
tr { break-inside: avoid; page-break-inside: avoid; }
.sev { display: inline-block; padding: 0 7px; border-radius: 10px; font-size: 11.5px; font-weight: 600; color: #fff; white-space: nowrap; }
.sev-critical { background: var(--crit); } .sev-high { background: var(--high); } .sev-medium { background: var(--med); }
.sev-low { background: var(--low); } .sev-info, .sev-unknown { background: var(--info); }
.tag { display: inline-block; padding: 0 7px; border-radius: 10px; font-size: 11.5px; font-weight: 600; border: 1px solid var(--line); background: var(--soft); color: var(--ink); white-space: nowrap; }
.tag.active { background: #fdecea; border-color: #f3b7b0; color: var(--high); }
.tag.quiet { background: #eef0f2; color: var(--muted); }
.tag.fwd { background: #fff4e5; border-color: #f5c98b; color: #8a4b00; }
.tag.resolver { background: #e8f0fe; border-color: #b6cdf5; color: var(--accent); }
.tag.proxy { background: #e8f0fe; border-color: #b6cdf5; color: var(--accent); }
.tag.moved { background: #fff4e5; border-color: #f5c98b; color: #8a4b00; }
table.data tr.other-mac td { background: #fff8ee; }
table.data caption { text-align: left; }
.chart { border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
.chart svg { display: block; width: 100%; height: auto; }
.note { font-size: 12.5px; color: var(--muted); }
.empty { padding: 10px 12px; background: var(--soft); border: 1px dashed var(--line); border-radius: 6px; color: var(--muted); }
.host { border: 1px solid var(--line); border-radius: 6px; margin: 14px 0; break-inside: avoid-page; }
.host > header { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: baseline; padding: 8px 12px; background: var(--soft); border-bottom: 1px solid var(--line); border-radius: 6px 6px 0 0; }
.host > header h3 { font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 15px; }
.host .body { padding: 6px 12px 10px; }
.det { border-left: 4px solid var(--line); padding: 4px 0 4px 10px; margin: 10px 0; break-inside: avoid; }
.det.s-critical { border-left-color: var(--crit); } .det.s-high { border-left-color: var(--high); }
.det.s-medium { border-left-color: var(--med); } .det.s-low { border-left-color: var(--low); }
.det.forwarded { border-left-style: dashed; border-left-color: #e0a030; }
.det .head { display: flex; flex-wrap: wrap; gap: 6px 12px; align-items: baseline; }
.det .head strong { font-size: 14px; }
.rules { margin: 4px 0 2px; display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 6px; }
table.indicators { table-layout: fixed; margin-top: 4px; }
table.indicators th:nth-child(1) { width: 19%; } table.indicators th:nth-child(2) { width: 43%; }
table.indicators th:nth-child(3) { width: 7%; } table.indicators th:nth-child(4) { width: 31%; }
table.indicators td { overflow-wrap: anywhere; }
table.indicators td.t { white-space: normal; }
.hidden-names { margin-top: 8px; padding: 6px 10px; background: #eef3fb; border-radius: 4px; font-size: 13px; }
a { color: var(--accent); text-decoration: none; }
footer { margin-top: 36px; padding-top: 8px; border-top: 1px solid var(--line); font-size: 12px; color: var(--muted); }
@media (max-width: 800px) { .cards { grid-template-columns: repeat(2, 1fr); } .split { grid-template-columns: 1fr; } }
@media print {
  @page { size: A4; margin: 14mm 12mm; }
  body { font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  h2 { break-after: avoid; page-break-after: avoid; margin-top: 18pt; }
  section.evidence h2 { margin-top: 0; }
  .cards { grid-template-columns: repeat(4, 1fr); }
  .split { grid-template-columns: 1fr 1fr; }
  section.evidence, section.hostlists { break-before: page; page-break-before: always; }
  section.hostlists h2 { margin-top: 0; }
  .note { break-after: avoid; page-break-after: avoid; }
  .chart, .panel, .card { break-inside: avoid; page-break-inside: avoid; }
  a { color: inherit; }
}
"#;

/// A self-contained HTML compliance report from the host report JSON. `now` decides which
/// hosts are "still active" (last seen within `stale_days` of now) and which have "gone quiet".
pub fn render(report: &Value, now: Timestamp, stale_days: u64) -> String {
    render_from(report, now, stale_days, "the host report")
}

/// `render`, with the footer naming what the report was built from (`source`, in words:
/// "the inventory /var/lib/vendorwatch/inventory.db", "the host report hosts.json").
pub fn render_from(report: &Value, now: Timestamp, stale_days: u64, source: &str) -> String {
    render_report(&Report::read(report), now, stale_days, source)
}

/// `render_from`, for a report already typed.
pub fn render_report(report: &Report, now: Timestamp, stale_days: u64, source: &str) -> String {
    let mut hosts = read_hosts(report);
    mark_proxies(&mut hosts);
    let detected: Vec<&HostRow> = hosts.iter().filter(|h| h.detected()).collect();
    let (active, quiet): (Vec<&HostRow>, Vec<&HostRow>) = detected
        .iter()
        .partition(|h| classify(h.last_seen(), now, stale_days) == Activity::Active);
    let is_active = |h: &HostRow| classify(h.last_seen(), now, stale_days) == Activity::Active;

    let mut out = String::with_capacity(64 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    // No scripts, no external loads of any kind, even if a value slipped through.
    out.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n");
    let _ = writeln!(
        out,
        "<title>vendorwatch compliance report — {}</title>",
        escape(&fmt_ts(Some(now)))
    );
    let _ = writeln!(out, "<style>{CSS}</style>\n</head>\n<body>\n<main>");

    header(&mut out, report, now, stale_days, &hosts);
    headline(&mut out, &detected, &active, &quiet, &hosts, stale_days);
    vendor_table(&mut out, &detected, &is_active);
    timeline(&mut out, report, &detected);
    host_lists(&mut out, &active, &quiet, &hosts, now, stale_days);
    evidence(&mut out, &hosts, &is_active);

    let _ = writeln!(
        out,
        "<footer>Rendered by vendorwatch {} from {}. All times are UTC. \
         A detection is one host × vendor × category; “findings” counts the matching lookups \
         and connections. <em>Forwarded</em> detections are a DNS resolver’s upstream lookups \
         made on behalf of its clients: the clients that asked are reported on their own, so \
         forwarded detections do not count a host as running the vendor’s software. \
         A <em>forward proxy</em> made requests its clients asked it for: the clients are \
         listed with it and reported on their own.</footer>",
        env!("CARGO_PKG_VERSION"),
        escape(source)
    );
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

fn header(out: &mut String, report: &Report, now: Timestamp, stale_days: u64, hosts: &[HostRow]) {
    out.push_str("<header>\n<h1>Banned-vendor software: compliance report</h1>\n");
    out.push_str("<p class=\"subtitle\">Internal hosts whose network traffic shows software from banned vendors, with the evidence for each.</p>\n");
    out.push_str("<dl class=\"meta\">\n");
    let gen = non_empty(Some(&report.generated_by)).unwrap_or_else(|| "unknown".into());
    let _ = writeln!(out, "<dt>Sensor</dt><dd>{}</dd>", escape(&gen));
    let (first, last) = (report.first_packet, report.last_packet);
    let span = match (first, last) {
        (Some(a), Some(b)) => format!(
            "{} → {} <span class=\"muted\">({})</span>",
            escape(&fmt_ts(Some(a))),
            escape(&fmt_ts(Some(b))),
            human_duration(b.0.saturating_sub(a.0))
        ),
        (None, None) => "<span class=\"muted\">not recorded</span>".into(),
        (a, b) => format!("{} → {}", escape(&fmt_ts(a)), escape(&fmt_ts(b))),
    };
    let _ = writeln!(out, "<dt>Traffic observed</dt><dd>{span}</dd>");
    let _ = writeln!(
        out,
        "<dt>Report time</dt><dd>{} <span class=\"muted\">— hosts seen within the last {} day{} count as still active</span></dd>",
        escape(&fmt_ts(Some(now))),
        stale_days,
        if stale_days == 1 { "" } else { "s" }
    );
    out.push_str("<dt>Active vendor packs</dt><dd>");
    match read_vendors(report) {
        None => out.push_str("<span class=\"muted\">not recorded in the report</span>"),
        Some(v) if v.is_empty() => out.push_str("<span class=\"muted\">none</span>"),
        Some(v) => {
            let any_basis = v.iter().any(|x| !x.legal_basis.is_empty());
            if any_basis {
                out.push_str("<ul class=\"vendors\">");
                for x in &v {
                    let _ = write!(out, "<li><strong>{}</strong>", escape(&x.id));
                    if let Some(n) = &x.name {
                        let _ = write!(out, " ({})", escape(n));
                    }
                    if x.legal_basis.is_empty() {
                        out.push_str(" <span class=\"muted\">— legal basis not recorded</span>");
                    } else {
                        let list: Vec<String> = x.legal_basis.iter().map(|b| escape(b)).collect();
                        let _ = write!(out, " — legal basis: {}", list.join("; "));
                    }
                    out.push_str("</li>");
                }
                out.push_str("</ul>");
            } else {
                let list: Vec<String> = v
                    .iter()
                    .map(|x| match &x.name {
                        Some(n) => format!("<strong>{}</strong> ({})", escape(&x.id), escape(n)),
                        None => format!("<strong>{}</strong>", escape(&x.id)),
                    })
                    .collect();
                let _ = write!(
                    out,
                    "{} <span class=\"muted\">(legal basis not recorded in the report)</span>",
                    list.join(", ")
                );
            }
        }
    }
    out.push_str("</dd>\n");
    let resolvers: Vec<String> = report.resolvers.iter().map(|r| r.to_string()).collect();
    if !resolvers.is_empty() {
        let list: Vec<String> = resolvers
            .iter()
            .map(|r| format!("<span class=\"mono\">{}</span>", escape(r)))
            .collect();
        let _ = writeln!(
            out,
            "<dt>DNS resolvers</dt><dd>{} <span class=\"muted\">(their upstream lookups are marked as forwarded)</span></dd>",
            list.join(", ")
        );
    }
    let _ = writeln!(out, "<dt>Hosts in the report</dt><dd>{}</dd>", hosts.len());
    out.push_str("</dl>\n</header>\n");
}

fn bar_rows(out: &mut String, rows: &[(String, usize, &str)], total: usize) {
    out.push_str("<table class=\"bars\">");
    for (label, n, class) in rows {
        let pct = if total == 0 {
            0.0
        } else {
            *n as f64 * 100.0 / total as f64
        };
        let zero = if *n == 0 { " zero" } else { "" };
        let _ = write!(
            out,
            "<tr><td class=\"k\">{label}</td><td class=\"v\">{n}</td><td><div class=\"bar {class}{zero}\" style=\"width:{pct:.1}%\"></div></td></tr>"
        );
    }
    out.push_str("</table>");
}

fn headline(
    out: &mut String,
    detected: &[&HostRow],
    active: &[&HostRow],
    quiet: &[&HostRow],
    hosts: &[HostRow],
    stale_days: u64,
) {
    out.push_str("<section class=\"headline\">\n<h2>Summary</h2>\n<div class=\"cards\">\n");
    let hiding = hosts.iter().filter(|h| h.hides()).count();
    summary_cards(
        out,
        [detected.len(), active.len(), quiet.len(), hiding],
        stale_days,
    );
    out.push_str("</div>\n<div class=\"split\">\n");
    vendor_panel(out, detected);
    severity_panel(out, detected);
    out.push_str("</div>\n");
    forwarded_note(out, hosts);
    out.push_str("</section>\n");
}

/// The four numbers at the top: hosts detected, still active, gone quiet, hiding names.
fn summary_cards(out: &mut String, [detected, active, quiet, hiding]: [usize; 4], stale_days: u64) {
    let _ = writeln!(
        out,
        "<div class=\"card alert\"><div class=\"num\">{detected}</div><div class=\"lbl\">hosts with detections</div></div>"
    );
    let _ = writeln!(
        out,
        "<div class=\"card warn\"><div class=\"num\">{}</div><div class=\"lbl\">still active (seen in the last {} day{})</div></div>",
        active,
        stale_days,
        if stale_days == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        out,
        "<div class=\"card quiet\"><div class=\"num\">{quiet}</div><div class=\"lbl\">gone quiet (not seen for longer)</div></div>"
    );
    let _ = writeln!(
        out,
        "<div class=\"card hide\"><div class=\"num\">{hiding}</div><div class=\"lbl\">hosts hiding names (ECH or encrypted DNS)</div></div>"
    );
}

/// Hosts by vendor (a host with several vendors counts once for each).
fn vendor_panel(out: &mut String, detected: &[&HostRow]) {
    let mut by_vendor: BTreeMap<String, usize> = BTreeMap::new();
    for h in detected {
        let vendors: BTreeSet<&str> = h.own().map(|d| d.vendor.as_str()).collect();
        for v in vendors {
            *by_vendor.entry(v.to_string()).or_default() += 1;
        }
    }
    out.push_str("<div class=\"panel\"><h3>Hosts by vendor</h3>");
    if by_vendor.is_empty() {
        out.push_str("<p class=\"muted\">No vendor detected.</p>");
    } else {
        let mut rows: Vec<(String, usize, &str)> =
            by_vendor.iter().map(|(v, n)| (escape(v), *n, "")).collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        bar_rows(out, &rows, detected.len());
    }
    out.push_str("</div>\n");
}

/// Hosts by their highest severity.
fn severity_panel(out: &mut String, detected: &[&HostRow]) {
    let mut by_sev: BTreeMap<Severity, usize> = BTreeMap::new();
    let mut other = 0usize;
    for h in detected {
        match severity_rank(h.max_severity()) {
            Some(x) => *by_sev.entry(x).or_default() += 1,
            None => other += 1,
        }
    }
    out.push_str("<div class=\"panel\"><h3>Hosts by highest severity</h3>");
    let mut rows: Vec<(String, usize, &str)> = SEVERITIES
        .iter()
        .map(|sev| {
            let s = sev.as_str();
            (
                format!("<span class=\"sev sev-{s}\">{s}</span>"),
                by_sev.get(sev).copied().unwrap_or(0),
                match sev {
                    Severity::Critical => "sev-critical",
                    Severity::High => "sev-high",
                    Severity::Medium => "sev-medium",
                    Severity::Low => "sev-low",
                    Severity::Info => "sev-info",
                },
            )
        })
        .collect();
    if other > 0 {
        rows.push((
            "<span class=\"sev sev-unknown\">unrated</span>".into(),
            other,
            "sev-unknown",
        ));
    }
    bar_rows(out, &rows, detected.len());
    out.push_str("</div>\n");
}

/// The resolvers left out of the numbers above: their only detections are forwarded lookups.
fn forwarded_note(out: &mut String, hosts: &[HostRow]) {
    let fwd: Vec<&HostRow> = hosts.iter().filter(|h| h.forwarded_only()).collect();
    if !fwd.is_empty() {
        let list: Vec<String> = fwd
            .iter()
            .map(|h| {
                format!(
                    "<a class=\"mono\" href=\"#host-{}\">{}</a>",
                    h.idx,
                    escape(&h.ip)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "<p class=\"note\">Not counted above: {} resolver{} whose only detections are lookups forwarded for clients ({}).</p>",
            fwd.len(),
            if fwd.len() == 1 { "" } else { "s" },
            list.join(", ")
        );
    }
}

fn vendor_table(out: &mut String, detected: &[&HostRow], is_active: &dyn Fn(&HostRow) -> bool) {
    out.push_str("<section>\n<h2>Vendors and categories</h2>\n");
    #[derive(Default)]
    struct Agg<'a> {
        hosts: BTreeSet<usize>,
        active: BTreeSet<usize>,
        findings: u64,
        severity: Rating<'a>,
        first: Option<Timestamp>,
        last: Option<Timestamp>,
    }
    impl<'a> Agg<'a> {
        fn add(&mut self, h: &HostRow, d: &Det<'a>, active: bool) {
            self.hosts.insert(h.idx);
            if active {
                self.active.insert(h.idx);
            }
            self.findings += d.count;
            if severity_rank(d.severity) > severity_rank(self.severity)
                || severity_text(self.severity).is_empty()
            {
                self.severity = d.severity;
            }
            self.first = match (self.first, d.first) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.last = match (self.last, d.last) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
    }
    let mut vendors: BTreeMap<String, (Agg, BTreeMap<String, Agg>)> = BTreeMap::new();
    for h in detected {
        let act = is_active(h);
        for d in h.own() {
            let e = vendors.entry(d.vendor.clone()).or_default();
            e.0.add(h, d, act);
            e.1.entry(d.category.clone()).or_default().add(h, d, act);
        }
    }
    if vendors.is_empty() {
        out.push_str("<p class=\"empty\">No detections in this report.</p>\n</section>\n");
        return;
    }
    out.push_str("<table class=\"data vendors\"><thead><tr><th>Vendor</th><th>Category</th><th class=\"n\">Hosts</th><th class=\"n\">Still active</th><th class=\"n\">Gone quiet</th><th class=\"n\">Findings</th><th>Highest severity</th><th>First seen</th><th>Last seen</th></tr></thead><tbody>\n");
    let row = |out: &mut String, class: &str, vendor: &str, cat: &str, a: &Agg| {
        let sev = match severity_text(a.severity) {
            "" => String::new(),
            text => format!(
                "<span class=\"sev sev-{}\">{}</span>",
                severity_class(a.severity),
                escape(text)
            ),
        };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td>{vendor}</td><td class=\"cat\">{cat}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{sev}</td><td class=\"t\">{}</td><td class=\"t\">{}</td></tr>",
            a.hosts.len(),
            a.active.len(),
            a.hosts.len() - a.active.len(),
            a.findings,
            fmt_ts(a.first),
            fmt_ts(a.last)
        );
    };
    for (vendor, (total, cats)) in &vendors {
        row(out, "vendor-row", &escape(vendor), "all categories", total);
        for (cat, a) in cats {
            row(out, "cat-row", "", &escape(cat), a);
        }
    }
    out.push_str("</tbody></table>\n<p class=\"note\">Hosts are counted once per row; a host with several categories appears in each of them and once in its vendor’s total.</p>\n</section>\n");
}

/// A "nice" tick step for an axis whose largest value is `max`, for about five ticks.
fn tick_step(max: u32) -> u32 {
    let raw = (max as f64 / 5.0).max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    ((nice * mag).round() as u32).max(1)
}

fn timeline(out: &mut String, report: &Report, detected: &[&HostRow]) {
    out.push_str("<section>\n<h2>Timeline: hosts with detections per day</h2>\n");
    let spans: Vec<Vec<(Timestamp, Timestamp)>> = detected
        .iter()
        .map(|h| {
            h.own()
                .filter_map(|d| match (d.first, d.last) {
                    (Some(a), Some(b)) => Some((a, b)),
                    (Some(a), None) => Some((a, a)),
                    (None, Some(b)) => Some((b, b)),
                    (None, None) => None,
                })
                .collect()
        })
        .collect();
    let all = spans.iter().flatten();
    let first = report
        .first_packet
        .or_else(|| all.clone().map(|s| s.0).min());
    let last = report
        .last_packet
        .or_else(|| all.clone().map(|s| s.1).max());
    let (Some(first), Some(last)) = (first, last) else {
        out.push_str("<p class=\"empty\">No dated traffic in this report.</p>\n</section>\n");
        return;
    };
    let (mut d0, d1) = (day_of(first.min(last)), day_of(first.max(last)));
    let mut clipped = false;
    if d1 - d0 + 1 > MAX_TIMELINE_DAYS as i64 {
        d0 = d1 - MAX_TIMELINE_DAYS as i64 + 1;
        clipped = true;
    }
    let counts = hosts_per_day(&spans, d0, d1);
    out.push_str("<div class=\"chart\">");
    out.push_str(&timeline_svg(&counts, d0));
    out.push_str("</div>\n");
    let _ = writeln!(
        out,
        "<p class=\"note\">For each day (UTC) from the first to the last packet, the number of hosts with a detection whose span from first to last seen touches that day. Resolvers’ forwarded lookups are not counted.{}</p>",
        if clipped {
            format!(
                " The traffic spans more than {MAX_TIMELINE_DAYS} days; only the last {MAX_TIMELINE_DAYS} are shown."
            )
        } else {
            String::new()
        }
    );
    out.push_str("</section>\n");
}

/// The frame of the day chart (SVG user units): its size and the margins around the plot.
mod frame {
    pub const W: f64 = 1000.0;
    pub const H: f64 = 280.0;
    pub const ML: f64 = 60.0;
    pub const MR: f64 = 16.0;
    pub const MT: f64 = 18.0;
    pub const MB: f64 = 58.0;
    /// The plot inside the margins.
    pub const PW: f64 = W - ML - MR;
    pub const PH: f64 = H - MT - MB;
}

/// The bar chart itself: one bar per day starting at `first_day`.
fn timeline_svg(counts: &[u32], first_day: i64) -> String {
    use frame::{H, W};
    let max = counts.iter().copied().max().unwrap_or(0);
    let step = tick_step(max.max(1));
    let ymax = (max.max(1)).div_ceil(step) * step;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"Hosts with detections per day\" font-family=\"system-ui, 'DejaVu Sans', Arial, sans-serif\" font-size=\"12\">"
    );
    y_axis(&mut s, ymax, step);
    day_bars(&mut s, counts, first_day, ymax);
    axis_titles(&mut s);
    s.push_str("</svg>");
    s
}

/// The y axis: a grid line and a label every `step` hosts up to `ymax`, and the axis line.
fn y_axis(s: &mut String, ymax: u32, step: u32) {
    use frame::{ML, MR, MT, PH, W};
    // Grid and y axis ticks.
    let mut v = 0;
    while v <= ymax {
        let y = MT + PH - (v as f64 / ymax as f64) * PH;
        let _ = write!(
            s,
            "<line x1=\"{ML}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{}\" stroke-width=\"1\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#59636e\">{v}</text>",
            W - MR,
            if v == 0 { "#59636e" } else { "#e4e8ec" },
            ML - 8.0,
            y + 4.0
        );
        v += step;
    }
    let _ = write!(
        s,
        "<line x1=\"{ML}\" y1=\"{MT}\" x2=\"{ML}\" y2=\"{:.1}\" stroke=\"#59636e\" stroke-width=\"1\"/>",
        MT + PH
    );
}

/// One bar per day (with its count above it while they fit) and a day label every few days.
fn day_bars(s: &mut String, counts: &[u32], first_day: i64, ymax: u32) {
    use frame::{ML, MT, PH, PW};
    let n = counts.len().max(1);
    let slot = (PW / n as f64).min(90.0);
    let x0 = ML + (PW - slot * n as f64) / 2.0;
    let gap = (slot * 0.18).min(6.0);
    let label_every = n.div_ceil(10).max(1);
    for (i, c) in counts.iter().enumerate() {
        let day = first_day + i as i64;
        let x = x0 + i as f64 * slot;
        let h = (*c as f64 / ymax as f64) * PH;
        let label = day_label(day);
        if *c > 0 {
            let _ = write!(
                s,
                "<rect class=\"day-bar\" x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{h:.2}\" fill=\"#c62828\"><title>{}: {c} host{}</title></rect>",
                x + gap / 2.0,
                MT + PH - h,
                (slot - gap).max(0.5),
                escape(&label),
                if *c == 1 { "" } else { "s" }
            );
            if n <= 62 {
                let _ = write!(
                    s,
                    "<text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"middle\" fill=\"#1f2328\" font-weight=\"600\">{c}</text>",
                    x + slot / 2.0,
                    MT + PH - h - 5.0
                );
            }
        }
        if i % label_every == 0 || (i + 1 == n && n <= 10) {
            let cx = x + slot / 2.0;
            let _ = write!(
                s,
                "<line x1=\"{cx:.2}\" y1=\"{:.1}\" x2=\"{cx:.2}\" y2=\"{:.1}\" stroke=\"#59636e\"/>\
                 <text x=\"{cx:.2}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#59636e\">{}</text>",
                MT + PH,
                MT + PH + 4.0,
                MT + PH + 18.0,
                escape(&label)
            );
        }
    }
}

/// The titles of both axes.
fn axis_titles(s: &mut String) {
    use frame::{H, ML, MT, PH, PW};
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#1f2328\" font-size=\"13\" font-weight=\"600\">Day (UTC)</text>\
         <text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\" fill=\"#1f2328\" font-size=\"13\" font-weight=\"600\">Hosts with detections</text>",
        ML + PW / 2.0,
        H - 10.0,
        MT + PH / 2.0
    );
}

fn vendor_cell(h: &HostRow) -> String {
    h.vendor_categories()
        .iter()
        .map(|(v, cats)| {
            let cats: Vec<String> = cats.iter().map(|c| escape(c)).collect();
            format!("<strong>{}</strong>: {}", escape(v), cats.join(", "))
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

fn host_table(out: &mut String, rows: &[&HostRow], now: Timestamp) {
    out.push_str("<table class=\"data hosts\"><thead><tr><th>Host</th><th>MAC</th><th>Role</th><th>Vendor: categories</th><th>Severity</th><th>First seen</th><th>Last seen</th><th class=\"n\">Last seen ago</th><th class=\"n\">Findings</th></tr></thead><tbody>\n");
    for h in rows {
        let sev = h.max_severity();
        let name = h
            .hostname
            .as_ref()
            .map(|n| format!("<br><span class=\"small muted\">{}</span>", escape(n)))
            .unwrap_or_default();
        let ago = h
            .last_seen()
            .map(|t| human_duration(now.0.saturating_sub(t.0)))
            .unwrap_or_else(|| "unknown".into());
        let _ = writeln!(
            out,
            "<tr><td><a class=\"mono\" href=\"#host-{}\">{}</a>{name}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td><span class=\"sev sev-{}\">{}</span></td><td class=\"t\">{}</td><td class=\"t\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            h.idx,
            escape(&h.ip),
            escape(h.mac.as_deref().unwrap_or("—")),
            escape(&h.role),
            vendor_cell(h),
            severity_class(sev),
            escape(match severity_text(sev) {
                "" => "unrated",
                text => text,
            }),
            fmt_ts(h.first_seen()),
            fmt_ts(h.last_seen()),
            ago,
            h.findings()
        );
    }
    out.push_str("</tbody></table>\n");
}

fn host_lists(
    out: &mut String,
    active: &[&HostRow],
    quiet: &[&HostRow],
    hosts: &[HostRow],
    now: Timestamp,
    stale_days: u64,
) {
    let days = if stale_days == 1 { "" } else { "s" };
    let _ = writeln!(
        out,
        "<section class=\"hostlists\">\n<h2>Hosts still active ({})</h2>\n<p class=\"note\">Seen talking to a banned vendor within the last {stale_days} day{days} before {}: remove or remediate these first.</p>",
        active.len(),
        fmt_ts(Some(now))
    );
    if active.is_empty() {
        out.push_str("<p class=\"empty\">None.</p>\n");
    } else {
        host_table(out, active, now);
    }
    out.push_str("</section>\n");
    let _ = writeln!(
        out,
        "<section>\n<h2>Hosts gone quiet ({})</h2>\n<p class=\"note\">Detected earlier but not seen for more than {stale_days} day{days}: confirm they were remediated, or that they are off the network.</p>",
        quiet.len()
    );
    if quiet.is_empty() {
        out.push_str("<p class=\"empty\">None.</p>\n");
    } else {
        host_table(out, quiet, now);
    }
    out.push_str("</section>\n");

    let hidden: Vec<&HostRow> = hosts
        .iter()
        .filter(|h| h.dets.is_empty() && h.hides())
        .collect();
    if !hidden.is_empty() {
        let _ = writeln!(
            out,
            "<section>\n<h2>Hosts hiding names, without detections ({})</h2>\n<p class=\"note\">These hosts used Encrypted Client Hello or encrypted DNS, so the sensor could not see the names they looked up or connected to.</p>",
            hidden.len()
        );
        out.push_str("<table class=\"data\"><thead><tr><th>Host</th><th>MAC</th><th>Role</th><th class=\"n\">ECH connections</th><th class=\"n\">Encrypted DNS connections</th><th>Encrypted DNS via</th></tr></thead><tbody>\n");
        for h in hidden {
            let via: Vec<String> = h.via.iter().map(|v| escape(v)).collect();
            let _ = writeln!(
                out,
                "<tr><td><a class=\"mono\" href=\"#host-{}\">{}</a></td><td class=\"mono\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"mono val\">{}</td></tr>",
                h.idx,
                escape(&h.ip),
                escape(h.mac.as_deref().unwrap_or("—")),
                escape(&h.role),
                h.ech,
                h.enc_dns,
                via.join(", ")
            );
        }
        out.push_str("</tbody></table>\n</section>\n");
    }
}

fn indicator_context(ind: &super::schema::Indicator) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(q) = non_empty(ind.query.as_deref()) {
        parts.push(format!(
            "asked as <code>{}</code> (reached through a CNAME chain)",
            escape(&q)
        ));
    }
    if let Some(n) = non_empty(ind.name.as_deref()) {
        parts.push(format!(
            "address learned from the DNS answer for <code>{}</code>",
            escape(&n)
        ));
    }
    if let Some(p) = non_empty(ind.path.as_deref()) {
        parts.push(format!("request <code>{}</code>", escape(&p)));
    }
    // Every other member, by name: the ECH flags, and what a newer report adds.
    let mut rest: BTreeMap<&str, String> = ind
        .other
        .iter()
        .filter(|(k, v)| !v.is_null() && !matches!(k.as_str(), "count" | "query" | "name" | "path"))
        .map(|(k, v)| (k.as_str(), text(v)))
        .collect();
    for (k, set) in [("ech", ind.ech), ("ech_real", ind.ech_real)] {
        if set {
            rest.insert(k, "true".into());
        }
    }
    for (k, v) in rest {
        parts.push(format!("{}: <code>{}</code>", escape(k), escape(&v)));
    }
    parts.join("<br>")
}

fn evidence(out: &mut String, hosts: &[HostRow], is_active: &dyn Fn(&HostRow) -> bool) {
    out.push_str("<section class=\"evidence\">\n<h2>Evidence per host</h2>\n");
    let shown: Vec<&HostRow> = hosts
        .iter()
        .filter(|h| !h.dets.is_empty() || h.hides())
        .collect();
    if shown.is_empty() {
        out.push_str("<p class=\"empty\">No host has evidence in this report.</p>\n</section>\n");
        return;
    }
    for h in shown {
        host_header(out, h, is_active);
        out.push_str("<div class=\"body\">\n");
        for d in &h.dets {
            detection_evidence(out, d);
        }
        identity_history(out, h);
        if h.hides() {
            hidden_names(out, h);
        }
        out.push_str("</div>\n</article>\n");
    }
    out.push_str("</section>\n");
}

/// The head of a host's card: its address, MAC, name, role and the tags that qualify it.
fn host_header(out: &mut String, h: &HostRow, is_active: &dyn Fn(&HostRow) -> bool) {
    let _ = write!(
        out,
        "<article class=\"host\" id=\"host-{}\">\n<header><h3>{}</h3>",
        h.idx,
        escape(&h.ip)
    );
    if let Some(m) = &h.mac {
        let _ = write!(out, "<span class=\"mono muted\">MAC {}</span>", escape(m));
    }
    if let Some(n) = &h.hostname {
        let _ = write!(out, "<span>{}</span>", escape(n));
    }
    let role_class = if h.role == Role::Resolver.as_str() {
        "tag resolver"
    } else {
        "tag"
    };
    let _ = write!(
        out,
        "<span class=\"{role_class}\">{}</span>",
        escape(&h.role)
    );
    if !h.proxy_for.is_empty() {
        let clients: Vec<String> = h.proxy_for.iter().map(|c| escape(c)).collect();
        let _ = write!(
            out,
            "<span class=\"tag proxy\">forward proxy</span><span class=\"small\">forwarded for {}</span>",
            clients.join(", ")
        );
    }
    if !h.sensors.is_empty() {
        let _ = write!(
            out,
            "<span class=\"muted\">seen by {}</span>",
            escape(&h.sensors.join(", "))
        );
    }
    if h.multiple_macs {
        out.push_str("<span class=\"tag moved\" title=\"DHCP bound this address to more than one MAC: it moved between machines; check which one the evidence belongs to by its time\">address used by more than one machine</span>");
    }
    if h.detected() {
        if is_active(h) {
            out.push_str("<span class=\"tag active\">still active</span>");
        } else {
            out.push_str("<span class=\"tag quiet\">gone quiet</span>");
        }
        let _ = write!(
            out,
            "<span class=\"muted small\">first seen {} · last seen {}</span>",
            fmt_ts(h.first_seen()),
            fmt_ts(h.last_seen())
        );
    } else if h.forwarded_only() {
        out.push_str("<span class=\"tag fwd\">forwarded lookups only</span>");
    }
    out.push_str("</header>\n");
}

/// One detection of a host: its head line, rules, indicators and the kept findings.
fn detection_evidence(out: &mut String, d: &Det) {
    let sc = severity_class(d.severity);
    let _ = write!(
        out,
        "<div class=\"det s-{sc}{}\">\n<div class=\"head\"><strong>{} / {}</strong><span class=\"sev sev-{sc}\">{}</span>",
        if d.forwarded { " forwarded" } else { "" },
        escape(&d.vendor),
        escape(&d.category),
        escape(match severity_text(d.severity) {
            "" => "unrated",
            text => text,
        })
    );
    if d.forwarded {
        out.push_str("<span class=\"tag fwd\">forwarded resolver lookups</span>");
    }
    let _ = writeln!(
        out,
        "<span class=\"muted small\">{} finding{} · first seen {} · last seen {}</span></div>",
        d.count,
        if d.count == 1 { "" } else { "s" },
        fmt_ts(d.first),
        fmt_ts(d.last)
    );
    if d.forwarded {
        out.push_str("<p class=\"note\">Upstream lookups this resolver made on behalf of its clients; the clients that asked are reported on their own.</p>\n");
    }
    let rules = texts(&d.raw.rules);
    if !rules.is_empty() {
        out.push_str("<div class=\"rules small\"><span class=\"muted\">Rules:</span>");
        for r in rules {
            let _ = write!(out, " <code>{}</code>", escape(&r));
        }
        out.push_str("</div>\n");
    }
    indicator_table(out, &d.raw.indicators);
    evidence_sample(out, d);
    if let Some(n) = Some(d.raw.indicators_omitted).filter(|n| *n > 0) {
        let _ = writeln!(
            out,
            "<p class=\"note\">…and {n} more finding{} with indicators beyond the kept sample (counted only).</p>",
            if n == 1 { "" } else { "s" }
        );
    }
    out.push_str("</div>\n");
}

/// The indicators of a detection: how each was seen, its value, count and context.
fn indicator_table(out: &mut String, inds: &[super::schema::Indicator]) {
    if inds.is_empty() {
        return;
    }
    out.push_str("<table class=\"data indicators\"><thead><tr><th>Seen as</th><th>Value</th><th class=\"n\">Count</th><th>Context</th></tr></thead><tbody>\n");
    for ind in inds {
        let kind = kind_text(ind.kind.as_ref());
        let label = kind_label(ind.kind.as_ref());
        let kind_cell = if label.is_empty() {
            format!("<span class=\"mono\">{}</span>", escape(kind))
        } else {
            format!(
                "{label} <span class=\"mono muted small\">{}</span>",
                escape(kind)
            )
        };
        let count = ind.count.map(|c| c.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr><td class=\"t\">{kind_cell}</td><td class=\"mono val\">{}</td><td class=\"n\">{count}</td><td class=\"small\">{}</td></tr>",
            escape(&ind.value),
            indicator_context(ind)
        );
    }
    out.push_str("</tbody></table>\n");
}

/// What the host hides from the sensor (ECH, encrypted DNS): the evidence may be partial.
fn hidden_names(out: &mut String, h: &HostRow) {
    out.push_str("<div class=\"hidden-names\"><strong>Names hidden from the sensor:</strong> ");
    let mut parts = Vec::new();
    if h.ech > 0 {
        parts.push(format!(
            "{} TLS connection{} with Encrypted Client Hello (ECH)",
            h.ech,
            if h.ech == 1 { "" } else { "s" }
        ));
    }
    if h.enc_dns > 0 {
        let via: Vec<String> = h
            .via
            .iter()
            .map(|v| format!("<code>{}</code>", escape(v)))
            .collect();
        parts.push(format!(
            "{} encrypted DNS connection{}{}",
            h.enc_dns,
            if h.enc_dns == 1 { "" } else { "s" },
            if via.is_empty() {
                String::new()
            } else {
                format!(" via {}", via.join(", "))
            }
        ));
    }
    out.push_str(&parts.join("; "));
    out.push_str(". Lookups and connections behind these are invisible, so this host may talk to more than the evidence shows.</div>\n");
}

/// The kept findings of a detection (the first few and the latest few): time, indicator, flow.
/// Kinds of indicator a client sends to a forward proxy: the Host of an absolute-form request
/// and the target of CONNECT (and the TLS name inside the tunnel, which goes to the proxy's
/// address too).
const PROXIED_KINDS: [NameKind; 3] = [NameKind::HttpHost, NameKind::HttpConnect, NameKind::TlsSni];

/// Finds forward proxies: a host with detections of its own that other hosts sent requests
/// for the same vendor names to (their evidence flows end at its address). Its detections
/// are its clients' requests, made on their behalf.
fn mark_proxies(hosts: &mut [HostRow<'_>]) {
    let values_of = |h: &HostRow<'_>| -> Vec<String> {
        h.dets
            .iter()
            .flat_map(|d| &d.raw.indicators)
            .filter_map(|i| non_empty(Some(&i.value)))
            .collect()
    };
    let mut marks: Vec<(usize, String)> = Vec::new();
    for (pi, proxy) in hosts.iter().enumerate() {
        if proxy.dets.is_empty() {
            continue;
        }
        let own = values_of(proxy);
        for client in hosts.iter().filter(|c| c.ip != proxy.ip) {
            let sent_through = client.dets.iter().any(|d| {
                d.raw.evidence.iter().any(|e| {
                    let (Some(flow), Some(ind)) = (&e.flow, &e.indicator) else {
                        return false;
                    };
                    flow.dst_ip.to_string() == proxy.ip
                        && ind
                            .kind
                            .as_ref()
                            .and_then(Label::known)
                            .is_some_and(|k| PROXIED_KINDS.contains(&k))
                        && own.contains(&ind.value)
                })
            });
            if sent_through {
                marks.push((pi, client.ip.clone()));
            }
        }
    }
    for (pi, client) in marks {
        if let Some(h) = hosts.get_mut(pi) {
            if !h.proxy_for.contains(&client) {
                h.proxy_for.push(client);
            }
        }
    }
}

/// One row of the evidence sample: a packet's time, its flow, and what it showed (kind, value).
type EvidenceRow = (Option<Timestamp>, String, Vec<(String, String)>);

fn evidence_sample(out: &mut String, d: &Det) {
    let ev: &[ReportEvidence] = &d.raw.evidence;
    if ev.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<table class=\"data evidence-sample\"><caption class=\"note\">Evidence sample: {} of {} finding{} (the first and the latest)</caption><thead><tr><th>Time</th><th>Seen as</th><th>Value</th><th>Flow</th></tr></thead><tbody>",
        ev.len(),
        d.count,
        if d.count == 1 { "" } else { "s" }
    );
    // In time order (the report keeps the first and the latest findings, not in that
    // order once they wrap), one row per packet: findings of one packet (its question and a
    // CNAME target, or two rules) share the row.
    let mut rows: Vec<EvidenceRow> = Vec::new();
    for e in ev {
        let time = e.time;
        let flow = match &e.flow {
            Some(f) => format!(
                "{}:{} → {}:{} {}",
                f.src_ip,
                f.src_port,
                f.dst_ip,
                f.dst_port,
                f.transport.as_str()
            ),
            None => ": → : ".to_string(),
        };
        let seen = e.indicator.as_ref().map_or_else(Default::default, |i| {
            (kind_text(i.kind.as_ref()).to_string(), i.value.clone())
        });
        match rows.iter_mut().find(|(t, fl, _)| *t == time && *fl == flow) {
            Some((_, _, list)) => {
                if !list.contains(&seen) {
                    list.push(seen);
                }
            }
            None => rows.push((time, flow, vec![seen])),
        }
    }
    rows.sort_by_key(|(t, _, _)| *t);
    for (time, flow, seen) in rows {
        let kinds: Vec<String> = seen.iter().map(|(k, _)| escape(k)).collect();
        let values: Vec<String> = seen.iter().map(|(_, v)| escape(v)).collect();
        let _ = writeln!(
            out,
            "<tr><td class=\"t\">{}</td><td class=\"mono small\">{}</td><td class=\"mono val\">{}</td><td class=\"mono small\">{}</td></tr>",
            // To the microsecond: two packets of one flow in the same second stay apart.
            time.map_or_else(|| "—".to_string(), |t| t.to_string()),
            kinds.join("<br>"),
            values.join("<br>"),
            escape(&flow)
        );
    }
    out.push_str("</tbody></table>\n");
}

/// What DHCP and DNS PTR answers said about the address over time; rows with a MAC other
/// than the host's current one are marked (the address belonged to another machine then).
fn identity_history(out: &mut String, h: &HostRow) {
    if h.identities.is_empty() {
        return;
    }
    out.push_str("<div class=\"identities\"><strong>Identity history</strong> <span class=\"muted small\">(DHCP and DNS PTR answers seen on the wire)</span>\n");
    out.push_str("<table class=\"data identity-history\"><thead><tr><th>Source</th><th>MAC</th><th>Host name</th><th>Client id</th><th>First seen</th><th>Last seen</th><th class=\"n\">Seen</th></tr></thead><tbody>\n");
    for i in h.identities {
        let mac = i.mac.map(|m| m.to_string());
        let other = mac.is_some() && mac != h.mac;
        let source = match i.source.as_ref().and_then(Label::known) {
            Some(IdentitySource::DhcpRequest) => "DHCP request",
            Some(IdentitySource::DhcpInform) => "DHCP inform",
            Some(IdentitySource::DhcpAck) => "DHCP ack",
            Some(IdentitySource::Dhcpv6Request) => "DHCPv6 request",
            Some(IdentitySource::Dhcpv6Reply) => "DHCPv6 reply",
            Some(IdentitySource::Ptr) => "DNS PTR",
            None => "other",
        };
        let _ = writeln!(
            out,
            "<tr{}><td>{source}</td><td class=\"mono\">{}</td><td class=\"mono val\">{}</td><td class=\"mono small val\">{}</td><td class=\"t\">{}</td><td class=\"t\">{}</td><td class=\"n\">{}</td></tr>",
            if other { " class=\"other-mac\"" } else { "" },
            escape(mac.as_deref().unwrap_or("—")),
            escape(non_empty(i.hostname.as_deref()).as_deref().unwrap_or("—")),
            escape(non_empty(i.client_id.as_deref()).as_deref().unwrap_or("—")),
            fmt_ts(i.first_seen),
            fmt_ts(i.last_seen),
            i.count
        );
    }
    out.push_str("</tbody></table></div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).expect("timestamp")
    }

    #[test]
    fn escapes_markup_quotes_and_ampersands() {
        assert_eq!(
            escape("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(escape("a&b \"c\" 'd'"), "a&amp;b &quot;c&quot; &#39;d&#39;");
        assert_eq!(escape("x.kaspersky.com"), "x.kaspersky.com");
        assert_eq!(escape("über"), "über");
    }

    #[test]
    fn escapes_controls_and_bidi_overrides_visibly() {
        assert_eq!(escape("a\u{0}b"), "a\\u{0}b");
        assert_eq!(escape("evil\u{202e}moc.x"), "evil\\u{202e}moc.x");
        assert_eq!(escape("a\u{1b}[31m"), "a\\u{1b}[31m");
    }

    #[test]
    fn hostile_values_never_become_markup() {
        let evil = "<script>alert(1)</script>";
        let report = json!({
            "generated_by": evil,
            "first_packet": "2026-11-27T23:55:59.953390Z",
            "last_packet": "2026-11-28T00:23:26.584747Z",
            "vendors": [evil],
            "resolvers": [evil],
            "hosts": [{
                "ip": evil, "mac": evil, "hostname": evil, "role": evil,
                "detections": [{
                    "vendor": evil, "category": evil, "severity": evil,
                    "first_seen": "2026-11-27T23:56:00Z", "last_seen": "2026-11-27T23:57:00Z",
                    "count": 1, "forwarded": false, "rules": [evil],
                    "indicators": [{"kind": evil, "value": evil, "count": 1, "name": evil,
                                    "query": evil, "path": evil, "other\"><b>": evil}],
                    "evidence": [{"time": evil, "indicator": {"kind": evil, "value": evil},
                                  "flow": {"src_ip": evil, "src_port": evil, "dst_ip": evil,
                                           "dst_port": evil, "transport": evil}}]
                }],
                "identities": [{"mac": evil, "hostname": evil, "client_id": evil, "source": evil,
                                "first_seen": evil, "last_seen": evil, "count": evil}],
                "multiple_macs": true,
                "names_hidden": {"ech_connections": 1, "encrypted_dns_connections": 1,
                                 "encrypted_dns_via": [evil]}
            }]
        });
        let html = render(&report, ts("2026-11-28T00:30:00Z"), 30);
        assert!(!html.contains("<script"), "a raw script tag");
        assert!(!html.contains("<b>"), "a raw key");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("Identity history") && html.contains("Evidence sample"));
    }

    #[test]
    fn days_are_utc_and_include_both_ends() {
        assert_eq!(
            day_label(day_of(ts("2026-11-27T23:59:59.999999Z"))),
            "2026-11-27"
        );
        assert_eq!(day_label(day_of(ts("2026-11-28T00:00:00Z"))), "2026-11-28");
        // An offset is converted to UTC first.
        assert_eq!(
            day_label(day_of(ts("2026-11-28T01:00:00+02:00"))),
            "2026-11-27"
        );
        assert_eq!(day_label(day_of(Timestamp(-1))), "1969-12-31");
    }

    #[test]
    fn a_host_counts_once_on_every_day_its_spans_touch() {
        let d0 = day_of(ts("2026-11-25T00:00:00Z"));
        let d4 = d0 + 4;
        let hosts = vec![
            // Spans midnight: days 2 and 3.
            vec![(ts("2026-11-27T23:55:00Z"), ts("2026-11-28T00:05:00Z"))],
            // Two detections on day 2: counted once there; and one on day 4.
            vec![
                (ts("2026-11-27T01:00:00Z"), ts("2026-11-27T02:00:00Z")),
                (ts("2026-11-27T05:00:00Z"), ts("2026-11-27T06:00:00Z")),
                (ts("2026-11-29T05:00:00Z"), ts("2026-11-29T05:00:00Z")),
            ],
            // A long span from before the window to day 1.
            vec![(ts("2026-10-01T00:00:00Z"), ts("2026-11-26T12:00:00Z"))],
            // Entirely after the window: not counted.
            vec![(ts("2026-12-05T00:00:00Z"), ts("2026-12-06T00:00:00Z"))],
        ];
        assert_eq!(hosts_per_day(&hosts, d0, d4), vec![1, 1, 2, 1, 1]);
        assert!(hosts_per_day(&hosts, d4, d0).is_empty());
        // A reversed span is read as its two ends.
        let rev = vec![vec![(
            ts("2026-11-26T00:00:00Z"),
            ts("2026-11-25T00:00:00Z"),
        )]];
        assert_eq!(hosts_per_day(&rev, d0, d0 + 2), vec![1, 1, 0]);
    }

    #[test]
    fn stale_split_is_inclusive_of_the_window_edge() {
        let now = ts("2026-12-31T12:00:00Z");
        assert_eq!(classify(Some(now), now, 7), Activity::Active);
        assert_eq!(
            classify(Some(ts("2026-12-24T12:00:00Z")), now, 7),
            Activity::Active
        );
        assert_eq!(
            classify(Some(ts("2026-12-24T11:59:59.999Z")), now, 7),
            Activity::Quiet
        );
        // Seen after "now" (a report rendered with an older clock) is active.
        assert_eq!(
            classify(Some(ts("2027-01-05T00:00:00Z")), now, 0),
            Activity::Active
        );
        assert_eq!(classify(None, now, 7), Activity::Quiet);
        assert_eq!(
            classify(Some(ts("1970-01-01T00:00:00Z")), now, u64::MAX),
            Activity::Active
        );
    }

    #[test]
    fn render_splits_hosts_and_ignores_forwarded_only_resolvers() {
        let report = json!({
            "first_packet": "2026-11-01T00:00:00Z",
            "last_packet": "2026-11-28T00:00:00Z",
            "vendors": ["kaspersky"],
            "hosts": [
                {"ip": "10.0.0.1", "detections": [{"vendor": "kaspersky", "category": "update",
                  "severity": "high", "first_seen": "2026-11-27T00:00:00Z",
                  "last_seen": "2026-11-27T10:00:00Z", "count": 3}]},
                {"ip": "10.0.0.2", "detections": [{"vendor": "kaspersky", "category": "ksn",
                  "severity": "medium", "first_seen": "2026-11-01T00:00:00Z",
                  "last_seen": "2026-11-02T00:00:00Z", "count": 1}]},
                {"ip": "10.0.0.53", "role": "resolver", "detections": [{"vendor": "kaspersky",
                  "category": "update", "severity": "high", "forwarded": true,
                  "first_seen": "2026-11-27T00:00:00Z", "last_seen": "2026-11-27T00:00:00Z",
                  "count": 9}]}
            ]
        });
        let html = render(&report, ts("2026-11-28T00:00:00Z"), 7);
        assert!(html.contains("Hosts still active (1)"));
        assert!(html.contains("Hosts gone quiet (1)"));
        let active =
            &html[html.find("Hosts still active").unwrap()..html.find("Hosts gone quiet").unwrap()];
        assert!(active.contains("10.0.0.1") && !active.contains("10.0.0.2"));
        assert!(html.contains("forwarded resolver lookups"));
        assert!(html.contains("<div class=\"num\">2</div><div class=\"lbl\">hosts with detections"));
        assert!(html.contains("<svg class=\"timeline\""));
        assert!(html.contains("legal basis not recorded"));
    }

    #[test]
    fn a_report_with_missing_keys_still_renders() {
        for report in [
            json!({}),
            json!({"hosts": []}),
            json!(null),
            json!({"hosts": [{}]}),
        ] {
            let html = render(&report, Timestamp(0), 30);
            assert!(html.starts_with("<!DOCTYPE html>"));
            assert!(html.ends_with("</html>\n"));
        }
    }

    #[test]
    fn legal_basis_is_shown_when_the_report_has_it() {
        let report = json!({
            "vendors": [{"vendor": "kaspersky", "name": "Kaspersky",
                         "legal_basis": ["DHS BOD 17-01 (2017-09-13)"]}],
            "legal_basis": {"kaspersky": "NDAA FY2018 section 1634"}
        });
        let html = render(&report, Timestamp(0), 30);
        assert!(html.contains("DHS BOD 17-01 (2017-09-13); NDAA FY2018 section 1634"));
    }

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(tick_step(1), 1);
        assert_eq!(tick_step(7), 2);
        assert_eq!(tick_step(23), 5);
        assert_eq!(tick_step(240), 50);
    }
}
