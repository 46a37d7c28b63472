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
    let bound = baseline.max_rss_kib + cap_kib + SLACK_KIB;
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
    let n = 150_000u32;
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
        overlapping: 200,
        tiny_datagrams: 20,
        tiny_fragments_each: 300,
        fill_sources: 40,
        fill_per_source: 300,
        big_datagrams: 2_000,
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
