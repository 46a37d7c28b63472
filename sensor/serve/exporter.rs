//! Prometheus exposition: the `/metrics` text (built with the `prometheus` crate at scrape
//! time from the counters the stages keep). The HTTP endpoint that serves it, with
//! `/healthz` and `/api/hosts`, is `super::endpoint` (re-exported here as `Server`).
//!
//! Naming follows Prometheus practice: `vendorwatch_` prefix, `_total` counters, base units,
//! and labels with bounded values only — per-host series exist only for detected hosts and
//! are capped at `MAX_HOST_SERIES`.

use crate::detect::resolvers::RoleSource;
use crate::detect::{Detector, RuleSet};
use crate::extract::NameKind;
use crate::hosts::HostTable;
use crate::metrics::{CaptureStatus, Counters, DropReason, SensorState, Stage};
use crate::output::sink::Sinks;
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

/// What the exporter reads at scrape time. The pipeline's shared state provides it, so
/// metrics does not depend on the pipeline.
pub trait Observed: Send + Sync {
    fn counters(&self) -> &Counters;
    fn detector(&self) -> &Detector;
    fn hosts(&self) -> &HostTable;
    fn sinks(&self) -> &Sinks;
    /// The worker batch-time histogram ([`batch_histogram`]).
    fn batch_seconds(&self) -> &Histogram;
}

type Samples = Vec<(Vec<LabelPair>, f64)>;

/// One scrape in the making: the families built so far, and the drops, which several
/// components contribute to one family.
#[derive(Default)]
pub struct Scrape {
    families: Vec<MetricFamily>,
    drops: Samples,
}

impl Scrape {
    fn counter(&mut self, name: &str, help: &str, samples: Samples) {
        self.families
            .push(family(name, help, MetricType::COUNTER, samples));
    }

    fn gauge(&mut self, name: &str, help: &str, samples: Samples) {
        self.families
            .push(family(name, help, MetricType::GAUGE, samples));
    }

    /// Counts `n` shed for `reason` (from capture source `source`, when per source).
    fn drop(&mut self, reason: DropReason, source: Option<&str>, n: u64) {
        let mut pairs = vec![("stage", reason.stage()), ("reason", reason.reason())];
        pairs.extend(source.map(|s| ("source", s)));
        self.drops.push((labels(&pairs), n as f64));
    }

    fn finish(mut self) -> Vec<MetricFamily> {
        let drops = std::mem::take(&mut self.drops);
        self.counter(
            "vendorwatch_dropped_total",
            "Packets or items shed, by pipeline stage and reason.",
            drops,
        );
        self.families
    }
}

/// A component that exports its own metric families.
pub trait Families {
    fn families(&self, scrape: &mut Scrape);
}

/// One unlabelled sample.
fn one(value: f64) -> Samples {
    vec![(vec![], value)]
}

/// Builds every vendorwatch family from the shared state at scrape time.
struct SensorCollector<S> {
    shared: Arc<S>,
}

impl<S: Observed> Collector for SensorCollector<S> {
    fn desc(&self) -> Vec<&Desc> {
        Vec::new()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let s = &*self.shared;
        let rules = s.detector().rules();
        let mut scrape = Scrape::default();
        s.counters().families(&mut scrape);
        host_families(s.hosts(), &rules, &mut scrape);
        s.detector().families(&mut scrape);
        s.sinks().families(&mut scrape);
        s.counters().sensor.families(&mut scrape);
        scrape.finish()
    }
}

impl Families for Counters {
    fn families(&self, scrape: &mut Scrape) {
        self.traffic_families(scrape);
        self.anomaly_families(scrape);
        self.detection_families(scrape);
        scrape.counter(
            "vendorwatch_rule_reloads_total",
            "Rule reloads, by result.",
            vec![
                (
                    labels(&[("result", "success")]),
                    get(&self.reloads_ok) as f64,
                ),
                (
                    labels(&[("result", "failure")]),
                    get(&self.reloads_failed) as f64,
                ),
            ],
        );
    }
}

impl Counters {
    /// Packets and bytes per capture source, and what the capture path shed.
    fn traffic_families(&self, scrape: &mut Scrape) {
        let sensor = &self.sensor;
        let per_source = locked(&sensor.source_packets);
        let mut packets: Samples = per_source
            .iter()
            .map(|(n, (p, _))| (labels(&[("source", n)]), *p as f64))
            .collect();
        let mut bytes: Samples = per_source
            .iter()
            .map(|(n, (_, b))| (labels(&[("source", n)]), *b as f64))
            .collect();
        if per_source.is_empty() {
            packets.push((labels(&[("source", "replay")]), get(&self.packets) as f64));
            bytes.push((labels(&[("source", "replay")]), get(&self.bytes) as f64));
        }
        scrape.counter(
            "vendorwatch_packets_received_total",
            "Packets read from each capture source.",
            packets,
        );
        scrape.counter(
            "vendorwatch_bytes_received_total",
            "Bytes (on the wire) read from each capture source.",
            bytes,
        );
        scrape.drop(DropReason::QueueFull, None, get(&self.queue_dropped));
        scrape.drop(DropReason::FlowEvicted, None, get(&self.flows_evicted));
        scrape.drop(
            DropReason::UnsupportedLinkType,
            None,
            get(&self.unsupported_link),
        );
        for (name, _, dropped, if_dropped) in &locked(&sensor.sources) {
            scrape.drop(DropReason::KernelDropped, Some(name), *dropped);
            scrape.drop(DropReason::InterfaceDropped, Some(name), *if_dropped);
        }
        let encaps = self.encaps();
        scrape.counter(
            "vendorwatch_encapsulated_packets_total",
            "Packets that came through each encapsulation (VLAN, MPLS, GRE, VXLAN, …).",
            encaps
                .iter()
                .map(|(k, v)| (labels(&[("encapsulation", k)]), *v as f64))
                .collect(),
        );
    }

    /// Each anomaly in the family its stage says.
    fn anomaly_families(&self, scrape: &mut Scrape) {
        let mut decode = Vec::new();
        let mut reassembled = 0;
        for (anomaly, n) in self.anomalies() {
            match anomaly.stage() {
                Stage::Decode(layer) => decode.push((
                    labels(&[("layer", layer.as_str()), ("reason", anomaly.reason())]),
                    n as f64,
                )),
                Stage::Dropped(reason) => scrape.drop(reason, None, n),
                Stage::Reassembled => reassembled += n,
            }
        }
        scrape.counter(
            "vendorwatch_decode_anomalies_total",
            "Malformed or unreadable input, by layer and reason.",
            decode,
        );
        scrape.counter(
            "vendorwatch_ip_datagrams_reassembled_total",
            "IP datagrams rebuilt from fragments.",
            one(reassembled as f64),
        );
    }

    /// Names extracted, findings, alerts and suppressed findings.
    fn detection_families(&self, scrape: &mut Scrape) {
        let names = self.names();
        scrape.counter(
            "vendorwatch_names_extracted_total",
            "Names and fingerprints extracted, by kind.",
            NameKind::ALL
                .iter()
                .map(|k| {
                    (
                        labels(&[("kind", k.as_str())]),
                        names.get(k).copied().unwrap_or(0) as f64,
                    )
                })
                .collect(),
        );
        scrape.counter(
            "vendorwatch_matches_total",
            "Rule matches (findings), by vendor, category and indicator kind.",
            self.matches()
                .iter()
                .map(|((v, cat, k), n)| {
                    (
                        labels(&[("vendor", v), ("category", cat), ("kind", k.as_str())]),
                        *n as f64,
                    )
                })
                .collect(),
        );
        scrape.counter(
            "vendorwatch_alerts_total",
            "Alerts raised (one per host, vendor and category), by vendor and category.",
            self.alerts_by_category()
                .iter()
                .map(|((v, cat), n)| (labels(&[("vendor", v), ("category", cat)]), *n as f64))
                .collect(),
        );
        scrape.counter(
            "vendorwatch_suppressed_findings_total",
            "Findings covered by a configured suppression (recorded, no alert).",
            one(get(&self.alerts_suppressed) as f64),
        );
    }
}

/// Detected hosts by vendor, and the capped per-host series; the host table's drops.
fn host_families(hosts: &HostTable, rules: &RuleSet, scrape: &mut Scrape) {
    // Findings for new hosts while the host table was full (--max-hosts), and identities of
    // not-yet-detected addresses evicted from their full map.
    scrape.drop(DropReason::HostTableFull, None, get(&hosts.shed));
    scrape.drop(
        DropReason::IdentityEvicted,
        None,
        get(&hosts.identities_evicted),
    );
    let snapshot = hosts.snapshot();
    let mut detected: BTreeMap<&str, u64> =
        rules.packs.iter().map(|p| (p.vendor.as_str(), 0)).collect();
    let mut series = Vec::new();
    for (ip, h) in &snapshot {
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
            let l = labels(&[
                ("host", &ip.to_string()),
                ("vendor", &d.vendor),
                ("category", &d.category),
                ("severity", d.severity.as_str()),
            ]);
            series.push((d.last_seen, l));
        }
    }
    scrape.gauge(
        "vendorwatch_hosts_detected",
        "Home-net hosts with at least one detection, by vendor.",
        detected
            .iter()
            .map(|(v, n)| (labels(&[("vendor", v)]), *n as f64))
            .collect(),
    );
    series.sort_by_key(|h| std::cmp::Reverse(h.0));
    let capped = series.len().saturating_sub(MAX_HOST_SERIES);
    series.truncate(MAX_HOST_SERIES);
    scrape.gauge(
        "vendorwatch_host_last_seen_timestamp_seconds",
        "Packet time a detected host was last seen talking to a vendor (detected hosts only, capped).",
        series
            .into_iter()
            .map(|(ts, l)| (l, ts.0 as f64 / 1e9))
            .collect(),
    );
    scrape.gauge(
        "vendorwatch_host_series_capped",
        "Detected host series left out because of the cap.",
        one(capped as f64),
    );
}

impl Families for Detector {
    fn families(&self, scrape: &mut Scrape) {
        // Older vendor answers passive DNS let go for newer ones (--pdns-max), host pairs the
        // Security Center port tracker could not follow, hosts that earned the resolver role
        // beyond its cap, client queries the resolver evidence could not remember, and
        // judgements on the roles made before the packets ahead of them were read.
        let roles = self.resolver_roles();
        scrape.drop(DropReason::PassiveDnsEvicted, None, get(&self.pdns_dropped));
        scrape.drop(
            DropReason::PortPairsTableFull,
            None,
            get(&self.port_pairs_dropped),
        );
        scrape.drop(DropReason::ResolversTableFull, None, get(&roles.shed));
        scrape.drop(
            DropReason::ResolverQueriesTableFull,
            None,
            get(&roles.pending_shed) + get(&roles.asked_shed),
        );
        scrape.drop(
            DropReason::ResolverJudgedEarly,
            None,
            get(&roles.judged_early),
        );
        let rules = self.rules();
        let mut per_vendor: BTreeMap<&str, u64> =
            rules.packs.iter().map(|p| (p.vendor.as_str(), 0)).collect();
        for r in &rules.rules {
            *per_vendor.entry(r.vendor.as_str()).or_default() += 1;
        }
        scrape.gauge(
            "vendorwatch_rules_loaded",
            "Rules in force, by vendor.",
            per_vendor
                .iter()
                .map(|(v, n)| (labels(&[("vendor", v)]), *n as f64))
                .collect(),
        );
        let list = roles.list();
        let by_source =
            |src: RoleSource| list.iter().filter(|(_, r)| r.source == src).count() as f64;
        scrape.gauge(
            "vendorwatch_resolvers",
            "Home-net resolvers: pinned in the configuration, or answering other hosts' queries.",
            vec![
                (
                    labels(&[("source", "pinned")]),
                    by_source(RoleSource::Pinned),
                ),
                (
                    labels(&[("source", "answered")]),
                    by_source(RoleSource::Answered),
                ),
            ],
        );
        scrape.gauge(
            "vendorwatch_passive_dns_entries",
            "Addresses remembered from DNS answers to vendor names.",
            one(self.pdns_len() as f64),
        );
    }
}

/// The alert outputs, each with its own queue: `vendorwatch_output_*{output}`.
impl Families for Sinks {
    fn families(&self, scrape: &mut Scrape) {
        let mut written = Vec::new();
        let mut errors = Vec::new();
        let mut dropped = Vec::new();
        let mut backlog = Vec::new();
        let mut rotations = Vec::new();
        for sink in self.iter() {
            let Some(d) = sink.delivery() else {
                continue;
            };
            let l = || labels(&[("output", sink.output())]);
            written.push((l(), d.written as f64));
            errors.push((l(), d.errors as f64));
            dropped.push((l(), d.dropped as f64));
            backlog.push((l(), d.backlog as f64));
            if let Some(r) = d.rotations {
                rotations.push((l(), r as f64));
            }
        }
        scrape.counter(
            "vendorwatch_output_written_total",
            "Alerts written (file) or handed to the transport (syslog), by output.",
            written,
        );
        scrape.counter(
            "vendorwatch_output_errors_total",
            "Failed writes, syncs, rotations, connects, by output (each retried).",
            errors,
        );
        scrape.counter(
            "vendorwatch_output_dropped_total",
            "Alerts an output gave up on because its backlog was full (still in the report and inventory).",
            dropped,
        );
        scrape.gauge(
            "vendorwatch_output_backlog",
            "Alerts accepted by an output and not yet written or sent.",
            backlog,
        );
        scrape.counter(
            "vendorwatch_output_rotations_total",
            "Size-based rotations of the alerts file.",
            rotations,
        );
    }
}

/// The running sensor: workers, rule loads, saves and shipping, capture health.
impl Families for SensorState {
    fn families(&self, scrape: &mut Scrape) {
        self.worker_families(scrape);
        scrape.gauge(
            "vendorwatch_rules_last_load_timestamp_seconds",
            "Unix time of the last successful rule load.",
            one(self.rules_loaded_at.lock().map(|t| *t).unwrap_or(0.0)),
        );
        self.persistence_families(scrape);
        scrape.gauge(
            "vendorwatch_build_info",
            "Build information (always 1).",
            vec![(labels(&[("version", env!("CARGO_PKG_VERSION"))]), 1.0)],
        );
        self.capture_families(scrape);
        let healthy = self.unhealthy.lock().map(|u| u.is_none()).unwrap_or(false);
        scrape.gauge(
            "vendorwatch_up",
            "1 when capturing with rules loaded, 0 otherwise.",
            one(if healthy { 1.0 } else { 0.0 }),
        );
    }
}

impl SensorState {
    /// Flows, reassembly bytes and queue depths of the workers.
    fn worker_families(&self, scrape: &mut Scrape) {
        let flows: u64 = locked(&self.flows_active).values().sum();
        scrape.gauge(
            "vendorwatch_flows_active",
            "Flows tracked by the workers.",
            one(flows as f64),
        );
        let held: u64 = locked(&self.reassembly_bytes).values().sum();
        scrape.gauge(
            "vendorwatch_reassembly_bytes",
            "Bytes held by the workers' TCP reassembly buffers (at most --reassembly-mb each).",
            one(held as f64),
        );
        scrape.gauge(
            "vendorwatch_queue_depth_batches",
            "Batches waiting in each worker's queue.",
            locked(&self.queue_depth)
                .iter()
                .enumerate()
                .map(|(i, d)| (labels(&[("worker", &i.to_string())]), *d as f64))
                .collect(),
        );
    }

    /// Inventory saves and, for a sensor of the agency inventory, the shipper's figures.
    fn persistence_families(&self, scrape: &mut Scrape) {
        if let Some((ok, failed)) = locked(&self.inventory_saves) {
            scrape.counter(
                "vendorwatch_inventory_saves_total",
                "Saves of the host inventory, by result (a failed save is retried).",
                vec![
                    (labels(&[("result", "success")]), get(&ok) as f64),
                    (labels(&[("result", "failure")]), get(&failed) as f64),
                ],
            );
        }
        let Some(ship) = locked(&self.agency) else {
            return;
        };
        for (name, help, counter, samples) in ship.samples() {
            let samples = samples
                .into_iter()
                .map(|(l, v)| {
                    let pairs: Vec<(&str, &str)> =
                        l.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    (labels(&pairs), v)
                })
                .collect();
            if counter {
                scrape.counter(name, help, samples);
            } else {
                scrape.gauge(name, help, samples);
            }
        }
    }

    /// Per live capture interface: up, and interruptions by reason.
    fn capture_families(&self, scrape: &mut Scrape) {
        let captures = locked(&self.captures);
        scrape.gauge(
            "vendorwatch_capture_up",
            "1 while a live capture interface can deliver packets (link up, handle bound), 0 while it is down or gone.",
            captures
                .iter()
                .map(|(i, st)| (labels(&[("interface", i)]), if st.up { 1.0 } else { 0.0 }))
                .collect(),
        );
        scrape.counter(
            "vendorwatch_capture_interruptions_total",
            "Times a live capture interface stopped delivering: its link went down, or it was removed.",
            captures
                .iter()
                .flat_map(|(i, st)| {
                    CaptureStatus::REASONS.iter().map(move |r| {
                        (
                            labels(&[("interface", i), ("reason", r)]),
                            st.interruptions.get(r).copied().unwrap_or(0) as f64,
                        )
                    })
                })
                .collect(),
        );
    }
}

/// A copy of what a lock guards (the default if it is poisoned).
fn locked<T: Clone + Default>(m: &std::sync::Mutex<T>) -> T {
    m.lock().map(|v| v.clone()).unwrap_or_default()
}

/// A counter's value now.
fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
    Counters::get(c)
}

/// The registry `/metrics` renders: every vendorwatch family (built from the shared state
/// at scrape time), the batch-time histogram and the process metrics.
pub fn registry<S: Observed + 'static>(shared: &Arc<S>) -> Registry {
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
    let _ = registry.register(Box::new(shared.batch_seconds().clone()));
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

/// What the exporter reads at scrape time.
impl Observed for crate::pipeline::Shared {
    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn detector(&self) -> &Detector {
        &self.detector
    }

    fn hosts(&self) -> &HostTable {
        &self.hosts
    }

    fn sinks(&self) -> &Sinks {
        &self.sinks
    }

    fn batch_seconds(&self) -> &prometheus::Histogram {
        &self.batch_seconds
    }
}
