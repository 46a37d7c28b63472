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
                        RData::Svcb { priority, target, alpn, ech } => {
                            json!({"priority": priority, "target": target, "alpn": alpn, "ech": ech})
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
    let hosts: Vec<serde_json::Value> = hosts
        .iter()
        .map(|(ip, h)| {
            json!({
                "ip": ip,
                "mac": mac_string(h.mac),
                "hostname": h.identity.hostname,
                "identities": identities_json(h),
                "multiple_macs": h.identity.macs().len() > 1,
                "role": if resolvers.contains(ip) { "resolver" } else { "client" },
                "detections": h.detections,
                "names_hidden": {
                    "ech_connections": h.ech_connections,
                    "encrypted_dns_connections": h.encrypted_dns_connections,
                    "encrypted_dns_via": h.encrypted_dns_via,
                },
            })
        })
        .collect();
    let mut report = json!({
        "generated_by": format!("vendorwatch {}", env!("CARGO_PKG_VERSION")),
        "first_packet": generated_from.first_packet,
        "last_packet": generated_from.last_packet,
        "vendors": generated_from.vendors,
        "resolvers": resolvers,
        "hosts": hosts,
    });
    if let (Some((id, site)), Some(obj)) = (SENSOR_IDENTITY.get(), report.as_object_mut()) {
        obj.insert("sensor".into(), json!({"id": id, "site": site}));
    }
    report
}

#[derive(Debug, Clone, Default)]
pub struct ReportMeta {
    pub first_packet: Option<Timestamp>,
    pub last_packet: Option<Timestamp>,
    pub vendors: Vec<String>,
}
