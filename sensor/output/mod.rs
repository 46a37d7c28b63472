//! What goes out: alerts and events as JSON Lines, the host report, and the human summary.
//!
//! The JSON shapes are contracts (DESIGN.md); fields are only ever added.

use crate::decode::Proto;
use crate::detect::{Finding, RuleSet};
use crate::extract::{Detail, FlowId, NameEvent};
use crate::hosts::{Detection, Host};
use crate::time::Timestamp;
use serde::Serialize;
use serde_json::json;
use std::net::IpAddr;

pub mod alertfile;
pub mod html;
pub mod sink;
pub mod summary;
pub mod syslog;

/// This sensor's identity in the agency inventory (`--sensor-id`, `--site`), set once at
/// start when it ships to one: alerts and the report then say which sensor and site saw them.
pub static SENSOR_IDENTITY: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();

pub fn mac_string(mac: Option<[u8; 6]>) -> Option<String> {
    mac.map(|m| {
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    })
}

#[derive(Serialize)]
struct FlowJson {
    src_ip: IpAddr,
    src_port: u16,
    dst_ip: IpAddr,
    dst_port: u16,
    transport: Proto,
}

fn flow_json(f: &FlowId) -> FlowJson {
    FlowJson {
        src_ip: f.client.ip(),
        src_port: f.client.port(),
        dst_ip: f.server.ip(),
        dst_port: f.server.port(),
        transport: f.proto,
    }
}

/// One alert line (without the newline).
/// `hostname`: what DHCP or a PTR answer named the host, when the wire did.
pub fn alert_line(f: &Finding, det: &Detection, rules: &RuleSet, hostname: Option<&str>) -> String {
    let rule = rules.rule(f.rule);
    let mut host = json!({"ip": f.host, "mac": mac_string(f.host_mac)});
    if let (Some(name), Some(obj)) = (hostname, host.as_object_mut()) {
        obj.insert("hostname".into(), json!(name));
    }
    let mut v = json!({
        "timestamp": f.ts,
        "event_type": "alert",
        "host": host,
        "vendor": rule.vendor,
        "category": rule.category,
        "rule": rule.id,
        "severity": rule.severity,
        "confidence": rule.confidence,
        "description": rule.description,
        "indicator": f.indicator,
        "flow": flow_json(&f.flow),
        "first_seen": det.first_seen,
        "last_seen": det.last_seen,
        "count": det.count,
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(ip) = f.public_resolver {
            obj.insert("dns_server".into(), json!({"ip": ip, "public": true}));
        }
        if let Some(j) = &f.ja4 {
            obj.insert("tls".into(), json!({"ja4": j}));
        }
        if let Some(why) = f.indicator.ech_explanation() {
            obj.insert("explanation".into(), json!(why));
        }
        if let Some((id, site)) = SENSOR_IDENTITY.get() {
            obj.insert("sensor".into(), json!({"id": id, "site": site}));
        }
    }
    v.to_string()
}

/// One event line: every extracted name, matched or not.
pub fn event_line(ev: &NameEvent) -> String {
    let mut v = json!({
        "timestamp": ev.ts,
        "kind": ev.kind,
        "value": ev.value,
        "flow": flow_json(&ev.flow),
    });
    let extra = match &ev.detail {
        Detail::Dns(d) => (
            "dns",
            json!({
                "type": if d.is_response { "answer" } else { "query" },
                "qtype": d.qtype,
                "rcode": d.rcode,
                "answers": d.answers.iter().map(|a| {
                    use crate::extract::dns::RData;
                    let data = match &a.data {
                        RData::A(ip) => json!(ip.to_string()),
                        RData::Aaaa(ip) => json!(ip.to_string()),
                        RData::Cname(n) | RData::Ptr(n) => json!(n),
                        RData::Svcb { priority, target, alpn, ech, ech_public_names } => {
                            json!({"priority": priority, "target": target, "alpn": alpn, "ech": ech, "ech_public_names": ech_public_names})
                        }
                        RData::Other => serde_json::Value::Null,
                    };
                    json!({"name": a.name, "type": a.rtype, "ttl": a.ttl, "data": data})
                }).collect::<Vec<_>>(),
            }),
        ),
        Detail::Tls { version, ech, ja4 } => (
            "tls",
            json!({"version": crate::extract::tls::version_name(*version), "ech": ech, "ja4": ja4}),
        ),
        Detail::Cert(c) => (
            "cert",
            json!({"subject": c.subject, "issuer": c.issuer, "common_name": c.common_name, "sans": c.sans, "sha256": c.sha256}),
        ),
        Detail::Http {
            method,
            target,
            user_agent,
        } => (
            "http",
            json!({"method": method, "uri": target, "user_agent": user_agent}),
        ),
    };
    if let Some(obj) = v.as_object_mut() {
        obj.insert(extra.0.into(), extra.1);
    }
    v.to_string()
}

/// An event for a ClientHello that named no server: its JA4 is the only name it has.
pub fn fingerprint_line(ts: Timestamp, flow: &FlowId, ja4: &str) -> String {
    json!({"timestamp": ts, "kind": "ja4", "value": ja4, "flow": flow_json(flow)}).to_string()
}

/// A host's identity history: what DHCP and DNS PTR answers said about its address.
pub fn identities_json(h: &Host) -> Vec<serde_json::Value> {
    h.identity
        .history
        .iter()
        .map(|r| {
            json!({
                "mac": mac_string(r.mac),
                "hostname": r.hostname,
                "client_id": r.client_id,
                "source": r.source,
                "first_seen": r.first_seen,
                "last_seen": r.last_seen,
                "count": r.count,
            })
        })
        .collect()
}

/// The host report (`--report`, `vendorwatch hosts --format json`).
pub fn report_json(
    hosts: &[(IpAddr, Host)],
    resolvers: &[IpAddr],
    generated_from: &ReportMeta,
) -> serde_json::Value {
    let role_of = |ip: &IpAddr| {
        generated_from
            .resolver_roles
            .iter()
            .find(|(r, _)| r == ip)
            .map(|(_, info)| resolver_json(info))
    };
    let hosts: Vec<serde_json::Value> = hosts
        .iter()
        .map(|(ip, h)| {
            let mut host = host_json(*ip, h, resolvers.contains(ip));
            if let Some(obj) = host.as_object_mut() {
                // Why the host is a resolver: pinned, or how many client queries it answered.
                if let Some(r) = role_of(ip).filter(|_| resolvers.contains(ip)) {
                    obj.insert("resolver".into(), r);
                }
                if let Some(known) = &generated_from.known_before {
                    obj.insert("already_known".into(), json!(known.contains(ip)));
                }
            }
            host
        })
        .collect();
    let mut report = json!({
        "generated_by": format!("vendorwatch {}", env!("CARGO_PKG_VERSION")),
        "first_packet": generated_from.first_packet,
        "last_packet": generated_from.last_packet,
        "vendors": generated_from.vendors,
        "packs": generated_from.packs.iter().map(|p| json!({
            "vendor": p.vendor,
            "name": p.name,
            "legal_basis": p.legal_basis,
        })).collect::<Vec<_>>(),
        "resolvers": resolvers,
        "hosts": hosts,
    });
    if let (Some((id, site)), Some(obj)) = (SENSOR_IDENTITY.get(), report.as_object_mut()) {
        obj.insert("sensor".into(), json!({"id": id, "site": site}));
    }
    report
}

/// Why a host holds the resolver role, as the report's `resolver` field says it.
pub fn resolver_json(info: &crate::detect::resolvers::ResolverInfo) -> serde_json::Value {
    json!({"source": info.source, "answered": info.answered})
}

/// One entry of the report's `hosts` (the metrics endpoint streams them one by one).
pub fn host_json(ip: IpAddr, h: &Host, is_resolver: bool) -> serde_json::Value {
    json!({
        "ip": ip,
        "mac": mac_string(h.mac),
        "hostname": h.identity.hostname,
        "identities": identities_json(h),
        "multiple_macs": h.identity.macs().len() > 1,
        "role": if is_resolver { "resolver" } else { "client" },
        "detections": h.detections,
        "names_hidden": {
            "ech_connections": h.ech_connections,
            "encrypted_dns_connections": h.encrypted_dns_connections,
            "encrypted_dns_via": h.encrypted_dns_via,
        },
    })
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
    pub fn start(writer: crate::pipeline::SharedWriter) -> std::io::Result<Flusher> {
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
