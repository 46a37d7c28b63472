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
