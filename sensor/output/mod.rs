//! What goes out: alerts and events as JSON Lines, the host report, and the human summary.
//!
//! The JSON shapes are contracts (DESIGN.md); fields are only ever added.

use crate::detect::{Finding, RuleSet};
use crate::extract::{Detail, FlowId, NameEvent, NameKind};
use crate::hosts::{Detection, Host};
use crate::time::Timestamp;
use schema::{Label, Role};
use std::net::IpAddr;

pub mod alertfile;
mod event_line;
pub mod html;
pub mod schema;
pub mod sink;
pub mod summary;
pub mod syslog;

/// Opens an output file for writing from its start (`--report`, `--events`, a replay's
/// `--alerts`). A path that names this process's own standard output or error
/// (`/dev/stdout`, `/dev/fd/1`, `/proc/self/fd/2`; `-` is stdout) is opened for appending
/// instead: truncating it would cut the file the shell sent stdout to (`>> log`).
pub fn create_output(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let stream = if path == std::path::Path::new("-") {
        Some(std::path::Path::new("/dev/stdout"))
    } else {
        let streams = ["/dev/stdout", "/dev/stderr", "/dev/fd/", "/proc/self/fd/"];
        let text = path.to_string_lossy();
        streams.iter().any(|s| text.starts_with(s)).then_some(path)
    };
    match stream {
        Some(stream) => std::fs::OpenOptions::new().append(true).open(stream),
        None => std::fs::File::create(path),
    }
}

/// What to do about an output `path` that could not be created: an existing file this user
/// may not write is a matter of its permissions, not of its directory.
pub fn create_advice(path: &std::path::Path) -> &'static str {
    let parent = crate::operator_input::parent_dir(path);
    if std::fs::symlink_metadata(path).is_ok() {
        "the file exists and this user may not write it: check its permissions, or give another path"
    } else if !parent.is_dir() {
        "its directory does not exist: create it (mkdir -p) or give another path"
    } else {
        "check the directory is writable for this user"
    }
}

/// Flushes what was written to `file` to stable storage (fdatasync). A device or FIFO given
/// as an output (`/dev/null`, `/dev/stdout`, a pipe to a shipper) has no storage to reach, and
/// fdatasync says EINVAL there: that is no failure of the output.
pub fn sync_to_storage(file: &std::fs::File) -> std::io::Result<()> {
    match file.sync_data() {
        Err(e)
            if e.kind() == std::io::ErrorKind::InvalidInput
                && !file.metadata().is_ok_and(|m| m.is_file()) =>
        {
            Ok(())
        }
        synced => synced,
    }
}

pub use event_line::{write_event_line, write_fingerprint_line};

/// This sensor's identity in the agency inventory (`--sensor-id`, `--site`), set once at
/// start when it ships to one: alerts and the report then say which sensor and site saw them.
pub static SENSOR_IDENTITY: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();

/// A record as one line of JSON (without the newline).
fn line<T: serde::Serialize>(record: &T) -> String {
    // The records hold strings, numbers and maps with string keys only: this cannot fail.
    serde_json::to_string(record).unwrap_or_default()
}

/// One alert.
/// `hostname`: what DHCP or a PTR answer named the host, when the wire did.
pub fn alert(
    f: &Finding,
    det: &Detection,
    rules: &RuleSet,
    hostname: Option<&str>,
) -> schema::Alert {
    let rule = rules.rule(f.rule);
    schema::Alert {
        category: rule.category.clone(),
        confidence: rule.confidence,
        count: det.count,
        description: rule.description.clone(),
        dns_server: f
            .public_resolver
            .map(|ip| schema::DnsServer { ip, public: true }),
        event_type: schema::EventType::Alert,
        explanation: f.indicator.ech_explanation(),
        first_seen: det.first_seen,
        flow: (&f.flow).into(),
        host: schema::AlertHost {
            hostname: hostname.map(str::to_string),
            ip: f.host,
            mac: f.host_mac,
        },
        indicator: schema::Indicator::of(&f.indicator, None),
        last_seen: det.last_seen,
        rule: rule.id.clone(),
        sensor: schema::SensorId::current(),
        severity: rule.severity,
        timestamp: f.ts,
        tls: f.ja4.clone().map(|ja4| schema::AlertTls { ja4 }),
        vendor: rule.vendor.clone(),
    }
}

/// One alert line (without the newline).
pub fn alert_line(f: &Finding, det: &Detection, rules: &RuleSet, hostname: Option<&str>) -> String {
    line(&alert(f, det, rules, hostname))
}

/// One event: every extracted name, matched or not. The event line (`write_event_line`) is
/// written by hand; this is the reference it is tested against, byte for byte.
pub fn event(ev: &NameEvent<'_>) -> schema::Event {
    let mut out = schema::Event {
        cert: None,
        dns: None,
        flow: (&ev.flow).into(),
        http: None,
        kind: ev.kind,
        timestamp: ev.ts,
        tls: None,
        value: ev.value.to_string(),
    };
    match &ev.detail {
        Detail::Dns(d) => out.dns = Some(dns_event(d)),
        Detail::Tls { version, ech, ja4 } => {
            out.tls = Some(schema::TlsEvent {
                ech: *ech,
                ja4: ja4.clone(),
                version: crate::extract::tls::version_name(*version).into(),
            })
        }
        Detail::Cert(c) => out.cert = Some(cert_event(c)),
        Detail::Http {
            method,
            target,
            user_agent,
        } => out.http = Some(http_event(method, target, user_agent.as_deref())),
    }
    out
}

/// The event of a ClientHello that named no server (its JA4 is the only name it has): the
/// reference `write_fingerprint_line` is tested against.
pub fn fingerprint_event(ts: Timestamp, flow: &FlowId, ja4: &str) -> schema::Event {
    schema::Event {
        cert: None,
        dns: None,
        flow: flow.into(),
        http: None,
        kind: NameKind::Ja4,
        timestamp: ts,
        tls: None,
        value: ja4.to_string(),
    }
}

fn cert_event(c: &crate::extract::cert::CertSummary) -> schema::CertEvent {
    schema::CertEvent {
        common_name: c.common_name.clone(),
        issuer: c.issuer.clone(),
        sans: c.sans.clone(),
        sha256: c.sha256.clone(),
        subject: c.subject.clone(),
    }
}

fn http_event(method: &str, target: &str, user_agent: Option<&str>) -> schema::HttpEvent {
    schema::HttpEvent {
        method: method.to_string(),
        uri: target.to_string(),
        user_agent: user_agent.map(str::to_string),
    }
}

fn dns_event(d: &crate::extract::DnsDetail) -> schema::DnsEvent {
    use crate::extract::dns::RData;
    use schema::AnswerData;
    schema::DnsEvent {
        answers: d
            .answers
            .iter()
            .map(|a| schema::DnsAnswer {
                data: match &a.data {
                    RData::A(ip) => Some(AnswerData::Text(
                        schema::ipv4_text(ip.octets()).as_str().to_owned(),
                    )),
                    RData::Aaaa(ip) => Some(AnswerData::Text(ip.to_string())),
                    RData::Cname(n) | RData::Ptr(n) => Some(AnswerData::Text(n.to_string())),
                    RData::Svcb {
                        priority,
                        target,
                        alpn,
                        ech,
                        ech_public_names,
                    } => Some(AnswerData::Svcb(schema::SvcbData {
                        alpn: alpn.clone(),
                        ech: *ech,
                        ech_public_names: ech_public_names.clone(),
                        priority: *priority,
                        target: target.to_string(),
                    })),
                    RData::Other => None,
                },
                name: a.name.to_string(),
                ttl: a.ttl,
                rtype: a.rtype,
            })
            .collect(),
        qtype: d.qtype,
        rcode: d.rcode,
        message: if d.is_response {
            schema::DnsMessage::Answer
        } else {
            schema::DnsMessage::Query
        },
    }
}

/// The host report (`--report`, `vendorwatch hosts --format json`).
pub fn report(
    hosts: &[(IpAddr, Host)],
    resolvers: &[IpAddr],
    generated_from: &ReportMeta,
) -> schema::Report {
    let role_of = |ip: &IpAddr| {
        generated_from
            .resolver_roles
            .iter()
            .find(|(r, _)| r == ip)
            .map(|(_, info)| schema::ResolverRole::from(info))
    };
    let hosts = hosts
        .iter()
        .map(|(ip, h)| {
            let is_resolver = resolvers.contains(ip);
            let mut host = report_host(*ip, h, is_resolver);
            // Why the host is a resolver: pinned, or how many client queries it answered.
            host.resolver = role_of(ip).filter(|_| is_resolver);
            host.already_known = generated_from
                .known_before
                .as_ref()
                .map(|known| known.contains(ip));
            host
        })
        .collect();
    schema::Report {
        hosts: Some(hosts),
        ..report_head(resolvers, generated_from)
    }
}

/// `report`, as a JSON value (for callers that add members of their own or merge reports;
/// one that only writes the report serializes `report` itself).
pub fn report_json(
    hosts: &[(IpAddr, Host)],
    resolvers: &[IpAddr],
    generated_from: &ReportMeta,
) -> serde_json::Value {
    serde_json::to_value(report(hosts, resolvers, generated_from)).unwrap_or_default()
}

/// The agency's host report: the `--report` format, each host with its `site` and the
/// `sensors` that saw it.
pub fn agency_report(hosts: &[crate::hosts::agency::AgencyHost]) -> schema::Report {
    let plain: Vec<(IpAddr, Host)> = hosts
        .iter()
        .filter_map(|a| Some((a.ip?, a.host.clone())))
        .collect();
    let seen = plain.iter().flat_map(|(_, h)| h.detections.iter());
    let mut meta = ReportMeta {
        first_packet: seen.clone().map(|d| d.first_seen).min(),
        last_packet: seen.clone().map(|d| d.last_seen).max(),
        vendors: {
            let mut v: Vec<String> = seen.map(|d| d.vendor.clone()).collect();
            v.sort();
            v.dedup();
            v
        },
        ..ReportMeta::default()
    };
    // The legal basis of each vendor comes from the shipped packs (the inventory keeps no rules).
    meta.packs = crate::detect::rules::load_embedded()
        .map(|l| l.packs)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| meta.vendors.contains(&p.vendor))
        .collect();
    let mut report = report(&plain, &[], &meta);
    for (host, a) in report
        .hosts
        .iter_mut()
        .flatten()
        .zip(hosts.iter().filter(|a| a.ip.is_some()))
    {
        host.site = Some(a.site.clone());
        host.sensors = Some(a.sensors.iter().cloned().collect());
    }
    let mut sites: Vec<String> = hosts.iter().map(|a| a.site.clone()).collect();
    sites.sort_unstable();
    sites.dedup();
    report.sites = Some(sites);
    report
}

/// `agency_report`, as a JSON value (for callers that add members of their own).
pub fn agency_report_json(hosts: &[crate::hosts::agency::AgencyHost]) -> serde_json::Value {
    serde_json::to_value(agency_report(hosts)).unwrap_or_default()
}

/// The report's members other than its hosts (`/api/hosts` streams the hosts apart).
pub fn report_head(resolvers: &[IpAddr], generated_from: &ReportMeta) -> schema::Report {
    schema::Report {
        first_packet: generated_from.first_packet,
        generated_by: format!("vendorwatch {}", env!("CARGO_PKG_VERSION")),
        hosts: None,
        last_packet: generated_from.last_packet,
        next_after: None,
        packs: Some(
            generated_from
                .packs
                .iter()
                .map(|p| {
                    schema::VendorEntry::Pack(schema::PackEntry {
                        id: None,
                        legal_basis: p.legal_basis.clone(),
                        name: Some(p.name.clone()),
                        vendor: Some(p.vendor.clone()),
                    })
                })
                .collect(),
        ),
        resolvers: resolvers.to_vec(),
        rule_packs: None,
        sensor: schema::SensorId::current(),
        sites: None,
        vendors: Some(
            generated_from
                .vendors
                .iter()
                .cloned()
                .map(schema::VendorEntry::Id)
                .collect(),
        ),
        legal_basis: None,
    }
}

/// One entry of the report's `hosts` (the metrics endpoint streams them one by one).
pub fn report_host(ip: IpAddr, h: &Host, is_resolver: bool) -> schema::ReportHost {
    schema::ReportHost {
        already_known: None,
        detections: h.detections.iter().map(Into::into).collect(),
        hostname: h.identity.hostname.clone(),
        identities: h.identity.history.iter().map(Into::into).collect(),
        ip: Some(ip),
        mac: h.mac,
        multiple_macs: h.identity.macs().len() > 1,
        names_hidden: schema::NamesHidden {
            ech_connections: h.ech_connections,
            encrypted_dns_connections: h.encrypted_dns_connections,
            encrypted_dns_via: h.encrypted_dns_via.clone(),
        },
        resolver: None,
        role: Some(Label::Known(if is_resolver {
            Role::Resolver
        } else {
            Role::Client
        })),
        sensors: None,
        site: None,
    }
}

/// The earliest and latest packet times a run has read so far (shared with `/api/hosts`).
pub type PacketSpan = std::sync::Arc<std::sync::Mutex<(Option<Timestamp>, Option<Timestamp>)>>;

#[derive(Debug, Clone, Default)]
pub struct ReportMeta {
    pub first_packet: Option<Timestamp>,
    pub last_packet: Option<Timestamp>,
    pub vendors: Vec<String>,
    /// Why each resolver holds the role (pinned, or queries answered).
    pub resolver_roles: Vec<(IpAddr, crate::detect::resolvers::ResolverInfo)>,
    /// The packs in force (vendor, name, legal basis): the report says on what grounds each
    /// vendor is watched.
    pub packs: Vec<crate::detect::rules::Pack>,
    /// A replay that kept an inventory: the hosts it already held (each host then says
    /// `already_known`).
    pub known_before: Option<std::collections::HashSet<IpAddr>>,
}

/// Line-oriented output shared by the workers (the events file or stdout).
pub type SharedWriter = std::sync::Arc<std::sync::Mutex<Box<dyn std::io::Write + Send>>>;

/// How often a live sensor's events file is flushed: someone tailing it as a DNS log sees
/// each name within about this long (alerts are flushed one by one by their own writer).
pub const EVENTS_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Flushes a shared writer every `EVENTS_FLUSH_EVERY` until dropped (then once more). The
/// workers write events through a large buffer and never flush it themselves, which suits a
/// replay; a live sensor runs this beside them.
pub struct Flusher {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    pub fn start(writer: SharedWriter) -> std::io::Result<Flusher> {
        use std::io::Write as _;
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = std::sync::Arc::clone(&stop);
        let flush = move || {
            // A write error is the workers' to report (they see it on their next write).
            if let Ok(mut w) = writer.lock() {
                let _ = w.flush();
            }
        };
        let handle = std::thread::Builder::new()
            .name("events-flush".into())
            .spawn(move || {
                let step = std::time::Duration::from_millis(100);
                let mut waited = std::time::Duration::ZERO;
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(step);
                    waited += step;
                    if waited >= EVENTS_FLUSH_EVERY {
                        waited = std::time::Duration::ZERO;
                        flush();
                    }
                }
                flush();
            })?;
        Ok(Flusher {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
