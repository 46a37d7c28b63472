//! Prometheus exposition: the `/metrics` text (built with the `prometheus` crate at scrape
//! time from the counters the stages keep). The HTTP endpoint that serves it, with
//! `/healthz` and `/api/hosts`, is `super::endpoint` (re-exported here as `Server`).
//!
//! Naming follows Prometheus practice: `vendorwatch_` prefix, `_total` counters, base units,
//! and labels with bounded values only — per-host series exist only for detected hosts and
//! are capped at `MAX_HOST_SERIES`.

use crate::extract::NameKind;
use crate::pipeline::Shared;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, Histogram, HistogramOpts, Registry, TextEncoder};
use std::collections::BTreeMap;
use std::sync::Arc;

pub use super::endpoint::Server;

/// Per-host series cap: the most recently seen detections are kept.
pub const MAX_HOST_SERIES: usize = 500;

/// The worker batch-time histogram, shared with the pipeline.
pub fn batch_histogram() -> Histogram {
    let opts = HistogramOpts::new(
        "vendorwatch_stage_duration_seconds",
        "Time spent per batch of packets, by pipeline stage.",
    )
    .const_label("stage", "worker")
    .buckets(vec![
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    ]);
    // ok: the options are constants (a valid name, increasing buckets); a failure here is a
    // programming error caught by every test that starts the pipeline.
    #[allow(clippy::expect_used)]
    Histogram::with_opts(opts).expect("constant histogram options are valid")
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut lp = LabelPair::default();
            lp.set_name((*k).to_string());
            lp.set_value((*v).to_string());
            lp
        })
        .collect()
}

fn family(
    name: &str,
    help: &str,
    kind: MetricType,
    samples: Vec<(Vec<LabelPair>, f64)>,
) -> MetricFamily {
    let mut mf = MetricFamily::default();
    mf.set_name(name.to_string());
    mf.set_help(help.to_string());
    mf.set_field_type(kind);
    for (label, value) in samples {
        let mut m = Metric::from_label(label);
        match kind {
            MetricType::COUNTER => {
                let mut c = Counter::default();
                c.set_value(value);
                m.set_counter(c);
            }
            _ => {
                let mut g = Gauge::default();
                g.set_value(value);
                m.set_gauge(g);
            }
        }
        mf.mut_metric().push(m);
    }
    mf
}

/// Builds every vendorwatch family from the shared state at scrape time.
struct SensorCollector {
    shared: Arc<Shared>,
}

impl Collector for SensorCollector {
    fn desc(&self) -> Vec<&Desc> {
        Vec::new()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        use prometheus::proto::MetricType::{COUNTER, GAUGE};
        let s = &self.shared;
        let c = &s.counters;
        let get = crate::metrics::Counters::get;
        let mut out = Vec::new();

        let sources = c
            .sensor
            .sources
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        let per_source = c
            .sensor
            .source_packets
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        let mut packets: Vec<(Vec<LabelPair>, f64)> = per_source
            .iter()
            .map(|(n, (p, _))| (labels(&[("source", n)]), *p as f64))
            .collect();
        let mut bytes: Vec<(Vec<LabelPair>, f64)> = per_source
            .iter()
            .map(|(n, (_, b))| (labels(&[("source", n)]), *b as f64))
            .collect();
        if per_source.is_empty() {
            packets.push((labels(&[("source", "replay")]), get(&c.packets) as f64));
            bytes.push((labels(&[("source", "replay")]), get(&c.bytes) as f64));
        }
        out.push(family(
            "vendorwatch_packets_received_total",
            "Packets read from each capture source.",
            COUNTER,
            packets,
        ));
        out.push(family(
            "vendorwatch_bytes_received_total",
            "Bytes (on the wire) read from each capture source.",
            COUNTER,
            bytes,
        ));

        let anomalies = c.anomalies();
        let mut drops = vec![
            (
                labels(&[("stage", "queue"), ("reason", "queue_full")]),
                get(&c.queue_dropped) as f64,
            ),
            (
                labels(&[("stage", "flow_table"), ("reason", "evicted")]),
                get(&c.flows_evicted) as f64,
            ),
            (
                labels(&[("stage", "link"), ("reason", "unsupported_link_type")]),
                get(&c.unsupported_link) as f64,
            ),
            // Findings for new hosts while the host table was full (--max-hosts).
            (
                labels(&[("stage", "hosts"), ("reason", "table_full")]),
                get(&s.hosts.shed) as f64,
            ),
            // Identities of not-yet-detected addresses evicted from their full map.
            (
                labels(&[("stage", "identities"), ("reason", "evicted")]),
                get(&s.hosts.identities_evicted) as f64,
            ),
            // Older vendor answers passive DNS let go for newer ones (--pdns-max), and host
            // pairs the Security Center port tracker could not follow.
            (
                labels(&[("stage", "passive_dns"), ("reason", "evicted")]),
                get(&s.detector.pdns_dropped) as f64,
            ),
            (
                labels(&[("stage", "port_pairs"), ("reason", "table_full")]),
                get(&s.detector.port_pairs_dropped) as f64,
            ),
            // Hosts that earned the resolver role beyond RESOLVERS_MAX, and client queries
            // the resolver evidence could not remember.
            (
                labels(&[("stage", "resolvers"), ("reason", "table_full")]),
                get(&s.detector.resolver_roles().shed) as f64,
            ),
            (
                labels(&[("stage", "resolver_queries"), ("reason", "table_full")]),
                (get(&s.detector.resolver_roles().pending_shed)
                    + get(&s.detector.resolver_roles().asked_shed)) as f64,
            ),
        ];
        for (name, _, dropped, if_dropped) in &sources {
            drops.push((
                labels(&[("stage", "kernel"), ("reason", "dropped"), ("source", name)]),
                *dropped as f64,
            ));
            drops.push((
                labels(&[
                    ("stage", "interface"),
                    ("reason", "dropped"),
                    ("source", name),
                ]),
                *if_dropped as f64,
            ));
        }
        let mut decode = Vec::new();
        for (reason, n) in &anomalies {
            if *reason == "duplicates" {
                // SPAN copies of a packet already read (`extract::dedup`).
                drops.push((
                    labels(&[("stage", "dedup"), ("reason", "duplicates")]),
                    *n as f64,
                ));
                continue;
            }
            if *reason == "reassembly_cap" || *reason == "reassembly_budget" {
                let why = if *reason == "reassembly_cap" {
                    "buffer_cap"
                } else {
                    "worker_budget"
                };
                drops.push((
                    labels(&[("stage", "reassembly"), ("reason", why)]),
                    *n as f64,
                ));
                continue;
            }
            if let Some(r) = reason
                .strip_prefix("defrag_")
                .filter(|r| !matches!(*r, "reassembled"))
            {
                drops.push((labels(&[("stage", "defrag"), ("reason", r)]), *n as f64));
            } else if *reason != "defrag_reassembled" {
                decode.push((
                    labels(&[("layer", layer_of(reason)), ("reason", reason)]),
                    *n as f64,
                ));
            }
        }
        out.push(family(
            "vendorwatch_dropped_total",
            "Packets or items shed, by pipeline stage and reason.",
            COUNTER,
            drops,
        ));
        out.push(family(
            "vendorwatch_decode_anomalies_total",
            "Malformed or unreadable input, by layer and reason.",
            COUNTER,
            decode,
        ));
        let reassembled = anomalies.get("defrag_reassembled").copied().unwrap_or(0);
        out.push(family(
            "vendorwatch_ip_datagrams_reassembled_total",
            "IP datagrams rebuilt from fragments.",
            COUNTER,
            vec![(vec![], reassembled as f64)],
        ));
        let encaps = c.encaps();
        out.push(family(
            "vendorwatch_encapsulated_packets_total",
            "Packets that came through each encapsulation (VLAN, MPLS, GRE, VXLAN, …).",
            COUNTER,
            encaps
                .iter()
                .map(|(k, v)| (labels(&[("encapsulation", k)]), *v as f64))
                .collect(),
        ));
        let names = c.names();
        out.push(family(
            "vendorwatch_names_extracted_total",
            "Names and fingerprints extracted, by kind.",
            COUNTER,
            NameKind::ALL
                .iter()
                .map(|k| {
                    (
                        labels(&[("kind", k.as_str())]),
                        names.get(k).copied().unwrap_or(0) as f64,
                    )
                })
                .collect(),
        ));

        let rules = s.detector.rules();
        out.push(family(
            "vendorwatch_matches_total",
            "Rule matches (findings), by vendor, category and indicator kind.",
            COUNTER,
            c.matches()
                .iter()
                .map(|((v, cat, k), n)| {
                    (
                        labels(&[("vendor", v), ("category", cat), ("kind", k.as_str())]),
                        *n as f64,
                    )
                })
                .collect(),
        ));
        out.push(family(
            "vendorwatch_alerts_total",
            "Alerts raised (one per host, vendor and category), by vendor and category.",
            COUNTER,
            c.alerts_by_category()
                .iter()
                .map(|((v, cat), n)| (labels(&[("vendor", v), ("category", cat)]), *n as f64))
                .collect(),
        ));

        out.push(family(
            "vendorwatch_suppressed_findings_total",
            "Findings covered by a configured suppression (recorded, no alert).",
            COUNTER,
            vec![(vec![], get(&c.alerts_suppressed) as f64)],
        ));
        let hosts = s.hosts.snapshot();
        let mut detected: BTreeMap<&str, u64> =
            rules.packs.iter().map(|p| (p.vendor.as_str(), 0)).collect();
        let mut host_series = Vec::new();
        for (ip, h) in &hosts {
            let mut vendors: Vec<&str> = h
                .detections
                .iter()
                .filter(|d| !d.forwarded)
                .map(|d| d.vendor.as_str())
                .collect();
            vendors.dedup();
            for v in vendors {
                *detected.entry(v).or_default() += 1;
            }
            for d in h.detections.iter().filter(|d| !d.forwarded) {
                host_series.push((
                    d.last_seen,
                    ip.to_string(),
                    d.vendor.as_str(),
                    d.category.as_str(),
                    d.severity.as_str(),
                ));
            }
        }
        out.push(family(
            "vendorwatch_hosts_detected",
            "Home-net hosts with at least one detection, by vendor.",
            GAUGE,
            detected
                .iter()
                .map(|(v, n)| (labels(&[("vendor", v)]), *n as f64))
                .collect(),
        ));
        host_series.sort_by_key(|h| std::cmp::Reverse(h.0));
        let capped = host_series.len().saturating_sub(MAX_HOST_SERIES);
        host_series.truncate(MAX_HOST_SERIES);
        out.push(family(
            "vendorwatch_host_last_seen_timestamp_seconds",
            "Packet time a detected host was last seen talking to a vendor (detected hosts only, capped).",
            GAUGE,
            host_series
                .iter()
                .map(|(ts, ip, v, cat, sev)| (labels(&[("host", ip), ("vendor", v), ("category", cat), ("severity", sev)]), ts.0 as f64 / 1e9))
                .collect(),
        ));
        out.push(family(
            "vendorwatch_host_series_capped",
            "Detected host series left out because of the cap.",
            GAUGE,
            vec![(vec![], capped as f64)],
        ));

        let flows: u64 = c
            .sensor
            .flows_active
            .lock()
            .map(|f| f.values().sum())
            .unwrap_or(0);
        out.push(family(
            "vendorwatch_flows_active",
            "Flows tracked by the workers.",
            GAUGE,
            vec![(vec![], flows as f64)],
        ));
        let held: u64 = c
            .sensor
            .reassembly_bytes
            .lock()
            .map(|f| f.values().sum())
            .unwrap_or(0);
        out.push(family(
            "vendorwatch_reassembly_bytes",
            "Bytes held by the workers' TCP reassembly buffers (at most --reassembly-mb each).",
            GAUGE,
            vec![(vec![], held as f64)],
        ));
        let depths = c
            .sensor
            .queue_depth
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default();
        out.push(family(
            "vendorwatch_queue_depth_batches",
            "Batches waiting in each worker's queue.",
            GAUGE,
            depths
                .iter()
                .enumerate()
                .map(|(i, d)| (labels(&[("worker", &i.to_string())]), *d as f64))
                .collect(),
        ));
        let mut per_vendor: BTreeMap<&str, u64> =
            rules.packs.iter().map(|p| (p.vendor.as_str(), 0)).collect();
        for r in &rules.rules {
            *per_vendor.entry(r.vendor.as_str()).or_default() += 1;
        }
        out.push(family(
            "vendorwatch_rules_loaded",
            "Rules in force, by vendor.",
            GAUGE,
            per_vendor
                .iter()
                .map(|(v, n)| (labels(&[("vendor", v)]), *n as f64))
                .collect(),
        ));
        out.push(family(
            "vendorwatch_rule_reloads_total",
            "Rule reloads, by result.",
            COUNTER,
            vec![
                (labels(&[("result", "success")]), get(&c.reloads_ok) as f64),
                (
                    labels(&[("result", "failure")]),
                    get(&c.reloads_failed) as f64,
                ),
            ],
        ));
        let loaded_at = c.sensor.rules_loaded_at.lock().map(|t| *t).unwrap_or(0.0);
        out.push(family(
            "vendorwatch_rules_last_load_timestamp_seconds",
            "Unix time of the last successful rule load.",
            GAUGE,
            vec![(vec![], loaded_at)],
        ));
        let roles = s.detector.resolver_roles().list();
        let by_source = |src: crate::detect::resolvers::RoleSource| {
            roles.iter().filter(|(_, r)| r.source == src).count() as f64
        };
        out.push(family(
            "vendorwatch_resolvers",
            "Home-net resolvers: pinned in the configuration, or answering other hosts' queries.",
            GAUGE,
            vec![
                (
                    labels(&[("source", "pinned")]),
                    by_source(crate::detect::resolvers::RoleSource::Pinned),
                ),
                (
                    labels(&[("source", "answered")]),
                    by_source(crate::detect::resolvers::RoleSource::Answered),
                ),
            ],
        ));
        out.push(family(
            "vendorwatch_passive_dns_entries",
            "Addresses remembered from DNS answers to vendor names.",
            GAUGE,
            vec![(vec![], s.detector.pdns_len() as f64)],
        ));
        // The alert outputs: the alerts file and syslog, each with its own queue.
        let mut written = Vec::new();
        let mut errors = Vec::new();
        let mut dropped = Vec::new();
        let mut backlog = Vec::new();
        let mut rotations = Vec::new();
        if let Some(a) = &s.alerts {
            let st = a.stats();
            let l = || labels(&[("output", "alerts")]);
            written.push((l(), st.written as f64));
            errors.push((l(), st.errors as f64));
            dropped.push((l(), st.dropped as f64));
            backlog.push((l(), st.backlog as f64));
            rotations.push((l(), st.rotations as f64));
        }
        if let Ok(Some(sink)) = s.syslog.lock().as_deref() {
            let st = sink.stats();
            let l = || labels(&[("output", "syslog")]);
            written.push((l(), st.sent as f64));
            errors.push((l(), st.errors as f64));
            dropped.push((l(), (st.dropped + st.rejected) as f64));
            backlog.push((l(), st.queued as f64));
        }
        out.push(family(
            "vendorwatch_output_written_total",
            "Alerts written (file) or handed to the transport (syslog), by output.",
            COUNTER,
            written,
        ));
        out.push(family(
            "vendorwatch_output_errors_total",
            "Failed writes, syncs, rotations, connects, by output (each retried).",
            COUNTER,
            errors,
        ));
        out.push(family(
            "vendorwatch_output_dropped_total",
            "Alerts an output gave up on because its backlog was full (still in the report and inventory).",
            COUNTER,
            dropped,
        ));
        out.push(family(
            "vendorwatch_output_backlog",
            "Alerts accepted by an output and not yet written or sent.",
            GAUGE,
            backlog,
        ));
        out.push(family(
            "vendorwatch_output_rotations_total",
            "Size-based rotations of the alerts file.",
            COUNTER,
            rotations,
        ));
        let inventory = c
            .sensor
            .inventory_saves
            .lock()
            .map(|i| i.clone())
            .unwrap_or_default();
        if let Some((ok, failed)) = inventory {
            out.push(family(
                "vendorwatch_inventory_saves_total",
                "Saves of the host inventory, by result (a failed save is retried).",
                COUNTER,
                vec![
                    (labels(&[("result", "success")]), get(&ok) as f64),
                    (labels(&[("result", "failure")]), get(&failed) as f64),
                ],
            ));
        }
        if let Some(ship) = c.sensor.agency.lock().ok().and_then(|a| a.clone()) {
            for (name, help, counter, samples) in ship.samples() {
                out.push(family(
                    name,
                    help,
                    if counter { COUNTER } else { GAUGE },
                    samples
                        .into_iter()
                        .map(|(l, v)| {
                            let pairs: Vec<(&str, &str)> =
                                l.iter().map(|(k, v)| (*k, v.as_str())).collect();
                            (labels(&pairs), v)
                        })
                        .collect(),
                ));
            }
        }
        out.push(family(
            "vendorwatch_build_info",
            "Build information (always 1).",
            GAUGE,
            vec![(labels(&[("version", env!("CARGO_PKG_VERSION"))]), 1.0)],
        ));
        let captures = c
            .sensor
            .captures
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        out.push(family(
            "vendorwatch_capture_up",
            "1 while a live capture interface can deliver packets (link up, handle bound), 0 while it is down or gone.",
            GAUGE,
            captures
                .iter()
                .map(|(i, st)| (labels(&[("interface", i)]), if st.up { 1.0 } else { 0.0 }))
                .collect(),
        ));
        out.push(family(
            "vendorwatch_capture_interruptions_total",
            "Times a live capture interface stopped delivering: its link went down, or it was removed.",
            COUNTER,
            captures
                .iter()
                .flat_map(|(i, st)| {
                    crate::metrics::CaptureStatus::REASONS.iter().map(move |r| {
                        (
                            labels(&[("interface", i), ("reason", r)]),
                            st.interruptions.get(r).copied().unwrap_or(0) as f64,
                        )
                    })
                })
                .collect(),
        ));
        let healthy = c
            .sensor
            .unhealthy
            .lock()
            .map(|u| u.is_none())
            .unwrap_or(false);
        out.push(family(
            "vendorwatch_up",
            "1 when capturing with rules loaded, 0 otherwise.",
            GAUGE,
            vec![(vec![], if healthy { 1.0 } else { 0.0 })],
        ));
        out
    }
}

/// Which layer an anomaly reason belongs to (a bounded label).
fn layer_of(reason: &str) -> &'static str {
    match reason.split('_').next().unwrap_or_default() {
        "link" | "vlan" => "link",
        "ip" => "ip",
        "transport" => "transport",
        "gre" | "erspan" | "vxlan" | "geneve" | "teredo" | "ayiya" | "gtp" | "mpls" | "pppoe"
        | "ppp" | "tunnel" => "tunnel",
        "dns" => "dns",
        "tls" => "tls",
        "quic" => "quic",
        "http" => "http",
        _ => "other",
    }
}

/// The registry `/metrics` renders: every vendorwatch family (built from the shared state
/// at scrape time), the batch-time histogram and the process metrics.
pub fn registry(shared: &Arc<Shared>) -> Registry {
    // A sensor of the agency inventory labels every series with its identity, so one
    // Prometheus scraping every site tells the sensors apart without relabelling.
    let identity = crate::output::SENSOR_IDENTITY.get().map(|(id, site)| {
        std::collections::HashMap::from([
            ("sensor".to_string(), id.clone()),
            ("site".to_string(), site.clone()),
        ])
    });
    let registry = Registry::new_custom(None, identity).unwrap_or_default();
    let _ = registry.register(Box::new(SensorCollector {
        shared: Arc::clone(shared),
    }));
    let _ = registry.register(Box::new(shared.batch_seconds.clone()));
    #[cfg(target_os = "linux")]
    {
        let pc = prometheus::process_collector::ProcessCollector::new(
            std::process::id() as i32,
            "vendorwatch",
        );
        let _ = registry.register(Box::new(pc));
    }
    registry
}

/// `/metrics`: the registry in the Prometheus text format, with its content type.
pub fn render(registry: &Registry) -> Result<(Vec<u8>, String), prometheus::Error> {
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    encoder.encode(&registry.gather(), &mut buf)?;
    Ok((buf, encoder.format_type().to_string()))
}
