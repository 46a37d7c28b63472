//! Hostile traffic at small scale, through the real binary: random 5-tuples, IPv4 and IPv6
//! fragment floods, TCP segments into reassembly, hostile DNS, QUIC Initials with garbage,
//! vendor-like names from many hosts. For each: the legitimate detections mixed into the
//! flood (copied from golden captures, expected values from tshark) are all still found,
//! every shed item is counted (the expected counts derived from what the generator sent),
//! peak memory stays under a bound derived from the caps given on the command line, and the
//! replay exits 0 without a panic. `scripts/flood.sh` runs the same floods at scale.
//!
//! Peak memory is the largest child's `ru_maxrss` (`getrusage(RUSAGE_CHILDREN)`), so each
//! test needs a process of its own: nextest gives it one; under `cargo test` a test re-runs
//! itself alone in a child process.

mod common;

use common::*;
use std::path::Path;

/// Re-runs test `name` alone in a child process unless it already has a process of its own.
/// Returns true when it did (the caller then returns: the child made the assertions).
fn in_own_process(name: &str) -> bool {
    let own = std::env::var("NEXTEST_EXECUTION_MODE").is_ok_and(|m| m == "process-per-test")
        || std::env::var_os("VW_FLOODS_CHILD").is_some();
    if own {
        return false;
    }
    let exe = std::env::current_exe().expect("test binary");
    let status = std::process::Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env("VW_FLOODS_CHILD", "1")
        .status()
        .expect("re-run the test alone");
    assert!(status.success(), "{name} failed in its own process");
    true
}

const MIB: u64 = 1024;

/// How much bigger than the test sizes the floods are: `VW_FLOODS_SCALE` (`scripts/flood.sh`
/// runs them at scale in release builds), 1 by default. The bounds do not depend on it: they
/// come from the caps.
fn scale() -> u64 {
    std::env::var("VW_FLOODS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1u64)
        .max(1)
}

/// Appends a result row to `VW_FLOODS_RESULTS`, when set (`scripts/flood.sh` makes the table).
fn record(name: &str, run: &Run, baseline: &Run, bound_kib: Option<u64>, legit: &Legit) {
    let Some(path) = std::env::var_os("VW_FLOODS_RESULTS") else {
        return;
    };
    let read = run
        .stderr
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("read "))
        .unwrap_or_default();
    let packets = read
        .split(", ")
        .find_map(|p| p.strip_suffix(" packets"))
        .unwrap_or("?");
    let seconds = read
        .split(" in ")
        .nth(1)
        .and_then(|t| t.split(" s").next())
        .unwrap_or("?");
    let found = legit.detections.intersection(&run.detections()).count();
    let shed: Vec<String> = run
        .counts
        .iter()
        .filter(|(k, _)| *k != "defrag_reassembled")
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let row = format!(
        "| {name} | {packets} | {seconds} | {:.1} | {:.1} | {} | {found}/{} | {} | {} |\n",
        run.max_rss_kib as f64 / 1024.0,
        baseline.max_rss_kib as f64 / 1024.0,
        bound_kib.map_or("none".to_string(), |b| format!("{:.1}", b as f64 / 1024.0)),
        legit.detections.len(),
        run.code.map_or("signal".to_string(), |c| c.to_string()),
        shed.join(", ")
    );
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(row.as_bytes());
    }
}

/// A scratch directory, kept (and named on stderr) when `VW_FLOODS_KEEP` is set.
struct Work {
    _tmp: Option<tempfile::TempDir>,
    path: std::path::PathBuf,
}

impl Work {
    fn path(&self) -> &Path {
        &self.path
    }
}

fn workdir() -> Work {
    let tmp = tempfile::tempdir().expect("tmp");
    if std::env::var_os("VW_FLOODS_KEEP").is_some() {
        let path = tmp.keep();
        eprintln!("keeping {}", path.display());
        return Work { _tmp: None, path };
    }
    Work {
        path: tmp.path().to_path_buf(),
        _tmp: Some(tmp),
    }
}

/// Memory a replay may use beyond the legitimate-only baseline whatever the flood: batches in
/// flight, allocator slack, the summary and report. Measured at about 5 MiB in debug builds.
const SLACK_KIB: u64 = 24 * MIB;

/// What every flood must keep: exit 0, no panic, every legitimate detection, and the peak
/// memory under the baseline (the legitimate traffic alone) plus `cap_kib` plus slack.
fn assert_survived(name: &str, run: &Run, baseline: &Run, legit: &Legit, cap_kib: u64) {
    let bound = baseline.max_rss_kib + cap_kib + SLACK_KIB;
    record(name, run, baseline, Some(bound), legit);
    assert!(
        !run.stderr.contains("panicked"),
        "{name}: a panic:\n{}",
        run.stderr
    );
    assert_eq!(run.code, Some(0), "{name}: exit code:\n{}", run.stderr);
    let got = run.detections();
    let lost: Vec<_> = legit.detections.difference(&got).collect();
    assert!(
        lost.is_empty(),
        "{name}: legitimate detections lost in the flood: {lost:?}\n{}",
        run.stderr
    );
    eprintln!(
        "{name}: peak RSS {} KiB (baseline {} KiB, bound {bound} KiB)",
        run.max_rss_kib, baseline.max_rss_kib
    );
    assert!(
        run.max_rss_kib <= bound,
        "{name}: peak RSS {} KiB over the bound {bound} KiB (baseline {} + caps {cap_kib} + slack {SLACK_KIB})",
        run.max_rss_kib,
        baseline.max_rss_kib
    );
}

/// The legitimate traffic alone, replayed with the same options: the memory floor.
fn baseline(dir: &Path, legit: &Legit, args: &[&str]) -> Run {
    let path = dir.join("legit-only.pcap");
    legit.write_alone(&path);
    let run = replay(dir, &path, args);
    assert_eq!(run.code, Some(0), "baseline:\n{}", run.stderr);
    assert!(
        legit.detections.is_subset(&run.detections()),
        "the legitimate traffic alone misses detections tshark expects: {:?} vs {:?}",
        legit.detections,
        run.detections()
    );
    run
}

/// Detections of hosts that are not in the legitimate captures.
fn flood_detections(run: &Run, legit: &Legit) -> Vec<(String, String, String)> {
    run.detections()
        .into_iter()
        .filter(|(h, _, _)| !legit.hosts.contains(h))
        .collect()
}

#[test]
fn random_5_tuples_evict_counted_and_keep_the_legitimate_flows() {
    if in_own_process("random_5_tuples_evict_counted_and_keep_the_legitimate_flows") {
        return;
    }
    let tmp = workdir();
    let legit = Legit::load(&["dns.pcap", "tls.pcap", "quic.pcap"]);
    let max_flows = 1_000u64;
    let args = ["--max-flows", "1000"];
    let base = baseline(tmp.path(), &legit, &args);
    let n = 150_000 * scale() as u32;
    let path = tmp.path().join("flows.pcap");
    let mut m = Mixer::create(&path, &legit, u64::from(n));
    let flows = flood_flows(&mut m, &mut Rng::new(1), n);
    m.finish();
    let run = replay(tmp.path(), &path, &args);
    // Each flow entry is a few hundred bytes: 4 KiB each is generous. Unbounded, the 150,000
    // flows would take tens of MiB more.
    assert_survived("flows", &run, &base, &legit, max_flows * 4);
    // Every flow beyond the table's size was evicted, and counted; the table ends between
    // 90% and 100% full (it evicts the longest-idle tenth at a time), so at most a tenth of
    // it more, plus the legitimate flows.
    let evicted = run.count("flow_table_evictions");
    assert!(
        evicted >= flows - max_flows && evicted <= flows - max_flows * 9 / 10 + 100,
        "{evicted} evictions for {flows} flows through {max_flows}:\n{}",
        run.stderr
    );
    assert_eq!(
        flood_detections(&run, &legit),
        vec![],
        "the flood names nothing"
    );
}

/// Fragments a datagram may have before it is dropped (`decode/defrag.rs`).
const MAX_FRAGMENTS_PER_DATAGRAM: u64 = 128;
/// The defragmenter's limits (`DefragLimits::default()`): datagrams, bytes, per source.
const DEFRAG_MAX_DATAGRAMS: u64 = 8192;
const DEFRAG_MAX_BYTES: u64 = 32 << 20;
const DEFRAG_MAX_PER_SOURCE: u64 = 256;

/// Fragments that tshark does not reassemble with reassembly off: datagrams in `captures`
/// (first fragments: More Fragments set at offset 0).
fn tshark_fragmented_datagrams(captures: &[String]) -> u64 {
    captures
        .iter()
        .map(|c| {
            let out = std::process::Command::new("tshark")
                .arg("-r")
                .arg(pcap_path(c))
                .args(["-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE", "-Y"])
                .arg("(ip.flags.mf == 1 && ip.frag_offset == 0) || (ipv6.fraghdr.offset == 0 && ipv6.fraghdr.more == 1)")
                .output()
                .expect("tshark");
            assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).lines().count() as u64
        })
        .sum()
}

fn fragment_flood(v6: bool) {
    let name = if v6 { "fragments-v6" } else { "fragments-v4" };
    let tmp = workdir();
    let legit = Legit::load(&["dns-fragmented.pcap", "dns.pcap"]).fragments_in_the_middle();
    let base = baseline(tmp.path(), &legit, &[]);
    let plan = FragPlan {
        overlapping: 200 * scale(),
        tiny_datagrams: 20 * scale(),
        tiny_fragments_each: 300,
        fill_sources: 40 * scale(),
        fill_per_source: 300,
        // Bytes on disk: grows slower than the rest.
        big_datagrams: 1_400 * scale().min(3),
        big_fragments_each: 40,
        after_timeout: 50,
        fragments: 0,
    };
    let path = tmp.path().join(format!("{name}.pcap"));
    let mut m = Mixer::create(&path, &legit, plan.flood_packets());
    let plan = flood_fragments(&mut m, &mut Rng::new(2), v6, plan);
    m.finish();
    let run = replay(tmp.path(), &path, &[]);
    // The bytes cap bounds the payload held, with the bookkeeping of each fragment charged
    // to it; a quarter more for the table itself and allocator rounding.
    assert_survived(name, &run, &base, &legit, DEFRAG_MAX_BYTES / 1024 * 5 / 4);
    // Every legitimate fragmented datagram was rebuilt, whatever the flood held (tshark runs
    // after the measured replays: its memory would count as theirs).
    let legit_datagrams = tshark_fragmented_datagrams(&legit.captures);
    assert!(legit_datagrams > 0);
    assert_eq!(
        run.count("defrag_reassembled"),
        legit_datagrams,
        "{name}:\n{}",
        run.stderr
    );
    // Shed by reason, as the flood was built.
    assert_eq!(
        run.count("defrag_overlap"),
        plan.overlapping,
        "{}",
        run.stderr
    );
    let per_tiny = plan.tiny_fragments_each / (MAX_FRAGMENTS_PER_DATAGRAM + 1);
    let tiny_left = u64::from(plan.tiny_fragments_each % (MAX_FRAGMENTS_PER_DATAGRAM + 1) > 0);
    assert_eq!(
        run.count("defrag_too_many_fragments"),
        plan.tiny_datagrams * per_tiny,
        "{}",
        run.stderr
    );
    let admitted_per_source = plan.fill_per_source.min(DEFRAG_MAX_PER_SOURCE);
    assert_eq!(
        run.count("defrag_source_cap"),
        plan.fill_sources * (plan.fill_per_source - admitted_per_source),
        "{}",
        run.stderr
    );
    // More datagrams than the table holds, more bytes than the cap: both shed, the oldest
    // first, so nothing legitimate that came later was refused.
    assert!(run.count("defrag_table_full") > 0, "{}", run.stderr);
    assert!(run.count("defrag_memory_cap") > 0, "{}", run.stderr);
    // Every datagram the flood started ends counted exactly once: dropped for a reason,
    // shed, timed out, or still held at the end.
    let started = plan.overlapping
        + plan.tiny_datagrams * (per_tiny + tiny_left)
        + plan.fill_sources * admitted_per_source
        + plan.big_datagrams
        + plan.after_timeout;
    let ended: u64 = [
        "defrag_overlap",
        "defrag_too_many_fragments",
        "defrag_table_full",
        "defrag_memory_cap",
        "defrag_timeout",
        "defrag_incomplete_at_end",
    ]
    .iter()
    .map(|r| run.count(r))
    .sum();
    assert_eq!(ended, started, "{name}: {:?}", run.counts);
    // What was held when packet time passed the timeout expired; only the last few remain.
    assert!(run.count("defrag_timeout") <= DEFRAG_MAX_DATAGRAMS);
    assert_eq!(run.count("defrag_incomplete_at_end"), plan.after_timeout);
    assert_eq!(flood_detections(&run, &legit), vec![]);
}

#[test]
fn ipv4_fragment_flood_is_bounded_counted_and_legitimate_datagrams_are_rebuilt() {
    if in_own_process("ipv4_fragment_flood_is_bounded_counted_and_legitimate_datagrams_are_rebuilt")
    {
        return;
    }
    fragment_flood(false);
}

#[test]
fn ipv6_fragment_flood_is_bounded_counted_and_legitimate_datagrams_are_rebuilt() {
    if in_own_process("ipv6_fragment_flood_is_bounded_counted_and_legitimate_datagrams_are_rebuilt")
    {
        return;
    }
    fragment_flood(true);
}

/// `ExtractorLimits::default().stream_cap`: bytes per direction, in order and parked each.
const STREAM_CAP_KIB: u64 = 16;

#[test]
fn tcp_segment_flood_into_tls_reassembly_is_capped_per_flow_and_counted() {
    if in_own_process("tcp_segment_flood_into_tls_reassembly_is_capped_per_flow_and_counted") {
        return;
    }
    let tmp = workdir();
    let legit = Legit::load(&["tls.pcap", "dns.pcap"]);
    let max_flows = 100u64;
    let args = ["--max-flows", "100"];
    let base = baseline(tmp.path(), &legit, &args);
    let plan = TcpPlan {
        flows: 1_200 * scale().min(4),
        out_of_order: 14,
        server_out_of_order: 13,
    };
    let path = tmp.path().join("tcp.pcap");
    let mut m = Mixer::create(&path, &legit, plan.flood_packets());
    let plan = flood_tcp(&mut m, &mut Rng::new(3), plan);
    m.finish();
    let run = replay(tmp.path(), &path, &args);
    // Per flow at most the cap in order and the cap parked, each direction; 1 KiB for the
    // flow itself. Unbounded, 1,200 such flows hold about 43 MiB.
    assert_survived(
        "tcp",
        &run,
        &base,
        &legit,
        max_flows * (4 * STREAM_CAP_KIB + 1),
    );
    // Every flood flow parked more than its buffer holds: each counted once as a reassembly
    // drop (dropped_total{stage="reassembly"}), when it left the table or at the end.
    assert_eq!(
        run.count("reassembly_cap"),
        plan.flows,
        "{:?}\n{}",
        run.counts,
        run.stderr
    );
    let evicted = run.count("flow_table_evictions");
    assert!(
        evicted >= plan.flows - max_flows && evicted <= plan.flows - max_flows * 9 / 10 + 100,
        "{evicted} evictions:\n{}",
        run.stderr
    );
    assert_eq!(flood_detections(&run, &legit), vec![]);
    // Through the default table (262,144 flows) every flood flow stays, and only the
    // worker's reassembly budget bounds what their buffers hold together: the flows that
    // began buffering first give theirs up, counted.
    let budget_mib = 4u64;
    let wide = replay(tmp.path(), &path, &["--reassembly-mb", "4"]);
    assert_survived(
        "tcp, default --max-flows, --reassembly-mb 4",
        &wide,
        &base,
        &legit,
        budget_mib * 1024 + plan.flows,
    );
    assert!(
        wide.count("reassembly_budget") > 0,
        "{:?}\n{}",
        wide.counts,
        wide.stderr
    );
    assert_eq!(flood_detections(&wide, &legit), vec![]);
}

#[test]
fn hostile_dns_names_are_counted_by_kind_and_long_vendor_names_still_match() {
    if in_own_process("hostile_dns_names_are_counted_by_kind_and_long_vendor_names_still_match") {
        return;
    }
    let tmp = workdir();
    let legit = Legit::load(&["dns.pcap", "tls.pcap"]);
    let base = baseline(tmp.path(), &legit, &[]);
    let (n, hosts) = (40_000 * scale(), 500 * scale() as u32);
    let path = tmp.path().join("dns.pcap");
    let mut m = Mixer::create(&path, &legit, n);
    let plan = flood_dns(&mut m, &mut Rng::new(4), n, hosts);
    m.finish();
    let run = replay(tmp.path(), &path, &[]);
    // DNS over UDP keeps no state but the transaction table (65,536 entries of a few dozen
    // bytes; 8 MiB is generous); the hosts the long KSN names detect cost what any detected
    // host costs (the names flood below measures it).
    let detected = (0..n)
        .filter(|i| i % 8 == 7)
        .map(|i| i % u64::from(hosts))
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;
    assert_survived(
        "dns",
        &run,
        &base,
        &legit,
        8 * MIB + detected * PER_HOST_KIB,
    );
    // One anomaly per hostile message, by kind (a message with a broken name is counted once).
    assert_eq!(
        run.count("dns_name_pointer_loop"),
        plan.self_loops + plan.mutual_loops + plan.long_chains,
        "{plan:?}\n{}",
        run.stderr
    );
    assert_eq!(
        run.count("dns_name_too_long"),
        plan.overlong_names,
        "{plan:?}\n{}",
        run.stderr
    );
    assert_eq!(
        run.count("dns_name_out_of_bounds"),
        plan.bad_label_types + plan.out_of_bounds,
        "{plan:?}\n{}",
        run.stderr
    );
    // The longest legal names (255 octets, 63-octet labels) are read, not flagged: every
    // host that asked for one under the KSN zone is detected, and no other flood host.
    let want: std::collections::BTreeSet<_> = (0..n)
        .filter(|i| i % 8 == 7)
        .map(|i| {
            let h = home_v4((i % u64::from(hosts)) as u32);
            (
                std::net::Ipv4Addr::from(h).to_string(),
                "kaspersky".to_string(),
                "ksn".to_string(),
            )
        })
        .collect();
    assert!(plan.vendor_max_names > 0 && plan.max_names > 0);
    let got: std::collections::BTreeSet<_> = flood_detections(&run, &legit).into_iter().collect();
    assert_eq!(got, want);
}

#[test]
fn quic_initials_with_garbage_are_counted_and_the_flows_bounded() {
    if in_own_process("quic_initials_with_garbage_are_counted_and_the_flows_bounded") {
        return;
    }
    let tmp = workdir();
    let legit = Legit::load(&["quic.pcap", "dns.pcap"]);
    let max_flows = 500u64;
    let args = ["--max-flows", "500"];
    let base = baseline(tmp.path(), &legit, &args);
    let flows = 5_000 * scale();
    let path = tmp.path().join("quic.pcap");
    let mut m = Mixer::create(&path, &legit, flows * 2);
    let plan = flood_quic(&mut m, &mut Rng::new(5), flows);
    m.finish();
    let run = replay(tmp.path(), &path, &args);
    // A QUIC flow waiting for its ClientHello holds its keys' DCID and a CRYPTO stream that
    // received nothing: 4 KiB each is generous.
    assert_survived("quic", &run, &base, &legit, max_flows * 4);
    // Every garbage Initial counted by what is wrong with it.
    assert_eq!(
        run.count("quic_decrypt_failed"),
        plan.random_payload,
        "{}",
        run.stderr
    );
    assert_eq!(
        run.count("quic_truncated"),
        plan.bogus_length,
        "{}",
        run.stderr
    );
    let evicted = run.count("flow_table_evictions");
    assert!(
        evicted >= flows - max_flows && evicted <= flows - max_flows * 9 / 10 + 100,
        "{evicted} evictions:\n{}",
        run.stderr
    );
    assert_eq!(flood_detections(&run, &legit), vec![]);
}

/// What a detected host may cost at most: two detections with their 32 indicators each, and
/// its share of the host report, which is built whole in memory before it is written
/// (about ten times its size on disk). Measured at about 130 KiB.
const PER_HOST_KIB: u64 = 160;

/// `MAX_HOST_SERIES` in `sensor/metrics/exporter.rs`.
const MAX_HOST_SERIES: usize = 500;

#[test]
fn vendor_like_names_from_many_hosts_bound_memory_per_host_and_metric_cardinality() {
    if in_own_process(
        "vendor_like_names_from_many_hosts_bound_memory_per_host_and_metric_cardinality",
    ) {
        return;
    }
    let tmp = workdir();
    let pdns_max = 1_000usize;
    let pdns = pdns_max.to_string();
    let help = bin().args(["replay", "--help"]).output().expect("help");
    let host_cap = String::from_utf8_lossy(&help.stdout).contains("--max-hosts");
    // The legitimate traffic comes after the flood has filled passive DNS (passive-dns.pcap
    // first: its client looks a vendor name up, then connects by address only, no SNI) ...
    let legit = Legit::load(&["passive-dns.pcap", "dns.pcap", "tls.pcap", "quic.pcap"]);
    // ... except with a host cap: a cap can only promise to keep the hosts it already holds
    // (a host first seen when the table is full is shed, and counted), so they come first.
    let legit = legit.all_in(if host_cap { 0 } else { 2 });
    let max_hosts = 100 * scale() as u32;
    let cap_arg = max_hosts.to_string();
    let mut args = vec!["--pdns-max", pdns.as_str()];
    if host_cap {
        args.extend(["--max-hosts", cap_arg.as_str()]);
    }
    let base = baseline(tmp.path(), &legit, &args);
    let write = |file: &str, hosts: u32, per_host: u32| {
        let path = tmp.path().join(file);
        let mut m = Mixer::create(&path, &legit, u64::from(hosts * per_host * 2));
        let names = flood_names(&mut m, &mut Rng::new(6), hosts, per_host);
        m.finish();
        (path, names)
    };
    // Each host asks for more distinct names per category than a detection keeps (32
    // indicators; the rest only counted), then twice as many, then twice the hosts. Memory
    // is measured smallest first: a reading is the largest child so far.
    let (hosts, per_host) = (120 * scale() as u32, 66 * scale() as u32);
    let (path_a, _) = write("names-a.pcap", hosts, per_host);
    let a = replay(tmp.path(), &path_a, &args);
    let (path_b, n) = write("names-b-twice-the-names.pcap", hosts, 2 * per_host);
    let b = replay(tmp.path(), &path_b, &args);
    let (path_c, _) = write("names-c-twice-the-hosts.pcap", 2 * hosts, per_host);
    let c = replay(tmp.path(), &path_c, &args);
    // What a host may cost at most (its detections, capped indicators, its share of the
    // report written at the end); passive DNS is capped (entries of ~100 bytes).
    let per_host_kib = PER_HOST_KIB;
    for (label, run, h) in [
        ("names", &a, hosts),
        ("names ×2", &b, hosts),
        ("hosts ×2", &c, 2 * hosts),
    ] {
        assert_survived(label, run, &base, &legit, u64::from(h) * per_host_kib);
    }
    // The connection by address after the flood is still tied to the name the DNS answer
    // gave it (what tshark lists as the capture's connection without a name, and its name).
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(pcap_path("expected/passive-dns.pcap.json")).expect("read"),
    )
    .expect("json");
    let conn = &expected["connections_without_name"][0];
    let (host, dst) = (
        conn["host"].as_str().expect("host"),
        conn["dst_ip"].as_str().expect("dst_ip"),
    );
    let name = expected["names"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["host"] == host)
        .and_then(|n| n["value"].as_str())
        .expect("the name the client looked up");
    for (label, run) in [("names", &a), ("names ×2", &b), ("hosts ×2", &c)] {
        assert!(
            run.ip_indicators(host)
                .contains(&(dst.to_string(), name.to_string())),
            "{label}: the connection to {dst} by address is no longer tied to {name}: {:?}",
            run.ip_indicators(host)
        );
    }
    let flood_hosts = |run: &Run| {
        flood_detections(run, &legit)
            .into_iter()
            .map(|(h, _, _)| h)
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u32
    };
    if host_cap {
        // What the host cap guarantees: the table never holds more than the cap, a host
        // already in it keeps its detections, and every host shed is counted.
        for run in [&a, &b, &c] {
            assert!(run.hosts_reported() <= max_hosts as usize, "{}", run.stderr);
        }
        let body = replay_and_scrape(&path_c, &args);
        let shed: f64 = samples(&body, "vendorwatch_dropped_total")
            .iter()
            .filter(|(l, _)| l.contains("stage=\"hosts\"") && l.contains("reason=\"table_full\""))
            .map(|(_, v)| v)
            .sum();
        assert!(
            shed >= f64::from((2 * hosts).saturating_sub(max_hosts)),
            "{shed} hosts shed of {} through a table of {max_hosts}",
            2 * hosts
        );
    } else {
        // No host cap yet: every flood host is reported, with its detections.
        assert_eq!(flood_hosts(&a), hosts, "{}", a.stderr);
        assert_eq!(flood_hosts(&c), 2 * hosts);
        // Twice the names per host cost no more (indicators are capped per detection) ...
        let more = b.max_rss_kib.saturating_sub(a.max_rss_kib);
        assert!(
            more <= 4 * MIB,
            "{more} KiB more for {n} names than for half of them"
        );
        // ... and each host costs a bounded amount: what the host cap must bound.
        let per_host = c.max_rss_kib.saturating_sub(b.max_rss_kib) / u64::from(hosts);
        eprintln!("names: about {per_host} KiB per host");
        assert!(per_host <= per_host_kib, "{per_host} KiB per host");
    }
    // Metric cardinality stays bounded whatever the hosts: per-host series are capped, and
    // passive DNS holds at most its cap.
    let (path_d, _) = write(
        "names-d-more-hosts-than-series.pcap",
        MAX_HOST_SERIES as u32 + 200,
        2,
    );
    let body = replay_and_scrape(&path_d, &args);
    let per_host = samples(&body, "vendorwatch_host_last_seen_timestamp_seconds");
    let host_series = per_host.len();
    if host_cap {
        // One series per (host, vendor, category): capped in number, and only for hosts the
        // table holds (the cap is soft by at most one host per worker).
        let hosts_in_series: std::collections::BTreeSet<&str> = per_host
            .iter()
            .filter_map(|(labels, _)| labels.split(',').find(|l| l.starts_with("host=")))
            .collect();
        assert!(
            host_series > 0 && host_series <= MAX_HOST_SERIES,
            "{host_series} per-host series"
        );
        assert!(
            hosts_in_series.len() <= max_hosts as usize + 2,
            "{} hosts in per-host series through a table of {max_hosts}",
            hosts_in_series.len()
        );
    } else {
        // 700 detected hosts, 500 series: capped.
        assert_eq!(host_series, MAX_HOST_SERIES, "per-host series");
    }
    let series = body.lines().filter(|l| !l.starts_with('#')).count();
    assert!(
        series <= MAX_HOST_SERIES + 1_000,
        "{series} series in /metrics"
    );
    let pdns_entries = samples(&body, "vendorwatch_passive_dns_entries");
    assert!(
        pdns_entries.len() == 1 && pdns_entries[0].1 <= pdns_max as f64,
        "{pdns_entries:?}"
    );
}
